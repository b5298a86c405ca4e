package datacat

import (
	"context"
	"errors"
	"testing"
)

// A Session written as a literal (not made by the client) answers ErrUnbound instead of
// panicking in the application.
func TestLiteralSessionAnswersErrUnbound(t *testing.T) {
	s := &Session{ID: "literal"}
	ctx := context.Background()
	for name, err := range map[string]error{
		"LogEvent":     s.LogEvent(ctx, "e", nil),
		"LogGauge":     s.LogGauge(ctx, "g", 1),
		"LogException": s.LogException(ctx, errors.New("boom"), nil),
		"End":          s.End(ctx),
		"Crash":        s.Crash(ctx, "why"),
	} {
		if !errors.Is(err, ErrUnbound) {
			t.Errorf("%s: got %v, want ErrUnbound", name, err)
		}
	}
	if _, err := s.StartTimer("t").Stop(ctx); !errors.Is(err, ErrUnbound) {
		t.Errorf("timer: got %v, want ErrUnbound", err)
	}
	func() {
		defer func() {
			if recover() != "p" {
				t.Error("the panic did not go on")
			}
		}()
		defer s.Finish()
		panic("p")
	}()
}

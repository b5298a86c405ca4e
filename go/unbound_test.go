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

// A nil *Session or *AsyncSession (StartSession failed and the error was ignored) answers
// ErrNilSession from every call, and a deferred Finish lets a panic go on.
func TestNilSessionAnswersErrNilSession(t *testing.T) {
	ctx := context.Background()
	var s *Session
	var a *AsyncSession
	_, sessionMonitor := s.StartHeartbeatMonitor(ctx, 1, 0)
	_, asyncMonitor := a.StartHeartbeatMonitor(ctx, 1, 0)
	_, sessionTimer := s.StartTimer("t").Stop(ctx)
	_, asyncTimer := a.StartTimer("t").Stop(ctx)
	for name, err := range map[string]error{
		"UpdateState":                 s.UpdateState(ctx, map[string]any{"a": 1}),
		"LogEvent":                    s.LogEvent(ctx, "e", nil),
		"LogEventWith":                s.LogEventWith(ctx, Event{Name: "e"}),
		"LogMetricWith":               s.LogMetricWith(ctx, Metric{Name: "m"}),
		"LogGauge":                    s.LogGauge(ctx, "g", 1),
		"LogCounter":                  s.LogCounter(ctx, "c", 1),
		"LogHistogram":                s.LogHistogram(ctx, "h", 1, nil),
		"LogTimer":                    s.LogTimer(ctx, "t", 1),
		"LogException":                s.LogException(ctx, errors.New("boom"), nil),
		"Heartbeat":                   s.Heartbeat(ctx),
		"StartHeartbeatMonitor":       sessionMonitor,
		"StopHeartbeatMonitor":        s.StopHeartbeatMonitor(ctx),
		"PauseHeartbeat":              s.PauseHeartbeat(ctx),
		"ResumeHeartbeat":             s.ResumeHeartbeat(ctx),
		"StartTimer":                  sessionTimer,
		"End":                         s.End(ctx),
		"Crash":                       s.Crash(ctx, "why"),
		"async UpdateState":           a.UpdateState(ctx, map[string]any{"a": 1}),
		"async LogEvent":              a.LogEvent(ctx, "e", nil),
		"async LogEventWith":          a.LogEventWith(ctx, Event{Name: "e"}),
		"async LogMetricWith":         a.LogMetricWith(ctx, Metric{Name: "m"}),
		"async LogGauge":              a.LogGauge(ctx, "g", 1),
		"async LogException":          a.LogException(ctx, errors.New("boom"), nil),
		"async Heartbeat":             a.Heartbeat(ctx),
		"async StartHeartbeatMonitor": asyncMonitor,
		"async StopHeartbeatMonitor":  a.StopHeartbeatMonitor(ctx),
		"async PauseHeartbeat":        a.PauseHeartbeat(ctx),
		"async ResumeHeartbeat":       a.ResumeHeartbeat(ctx),
		"async StartTimer":            asyncTimer,
		"async Flush":                 a.Flush(ctx),
		"async End":                   a.End(ctx),
		"async Crash":                 a.Crash(ctx, "why"),
	} {
		if !errors.Is(err, ErrNilSession) {
			t.Errorf("%s: got %v, want ErrNilSession", name, err)
		}
	}
	if a.Stats() != (AsyncStats{}) {
		t.Error("a nil async session has no stats")
	}
	for _, finish := range []func(){s.Finish, a.Finish, s.RecoverPanic, a.RecoverPanic} {
		func() {
			defer func() {
				if recover() != "p" {
					t.Error("the panic did not go on")
				}
			}()
			defer finish()
			panic("p")
		}()
	}
}

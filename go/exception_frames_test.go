package datacat

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// The innermost frame of a logged error is the caller's, not the client's own methods,
// for a Session and an AsyncSession alike.
func TestLogExceptionsInnermostFrameIsTheCallers(t *testing.T) {
	var mu sync.Mutex
	var innermost []string
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		_ = json.NewDecoder(r.Body).Decode(&body)
		items := []any{body}
		if list, ok := body["items"].([]any); ok {
			items = list
		}
		for _, item := range items {
			event, _ := item.(map[string]any)
			if exc, ok := event["exception"].(map[string]any); ok {
				frames, _ := exc["frames"].([]any)
				last, _ := frames[len(frames)-1].(map[string]any)
				mu.Lock()
				innermost = append(innermost, last["function"].(string))
				mu.Unlock()
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"session_id":"s-1","seq":1}`))
	}))
	defer server.Close()
	ctx := context.Background()
	c := NewClient(server.URL)
	defer c.Close()
	s, err := c.StartSession(ctx, "frames", "1.0")
	if err != nil {
		t.Fatal(err)
	}
	must(t, s.LogException(ctx, errors.New("sync"), nil))
	a := c.StartAsyncSession("frames", "1.0", AsyncOptions{})
	must(t, a.LogException(ctx, errors.New("async"), nil))
	must(t, a.Flush(ctx))
	mu.Lock()
	defer mu.Unlock()
	if len(innermost) != 2 {
		t.Fatalf("%d exceptions reached the server", len(innermost))
	}
	for _, function := range innermost {
		if !strings.HasSuffix(function, "TestLogExceptionsInnermostFrameIsTheCallers") {
			t.Errorf("innermost frame %q, want the test's", function)
		}
	}
}

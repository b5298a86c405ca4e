package datacat

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// A server that accepts connections and never answers (a hung proxy, a paused VM) in place
// of the query service and of NATS: the application is held up by one timeout at most,
// ending is bounded, and calls that could not be delivered are errors and counted. The
// bounds are wide: what they catch took 10 to 70 s; the targets are a second or two.

// blackHole accepts connections and never reads or writes them.
func blackHole(t *testing.T) string {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var held []net.Conn
	go func() {
		for {
			conn, err := listener.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, conn)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		listener.Close()
		mu.Lock()
		for _, conn := range held {
			conn.Close()
		}
		mu.Unlock()
	})
	return listener.Addr().String()
}

func within(t *testing.T, started time.Time, bound time.Duration, what string) {
	t.Helper()
	if took := time.Since(started); took > bound {
		t.Fatalf("%s took %v (bound %v)", what, took, bound)
	}
}

func TestAsyncSessionAgainstABlackHoleCostsTheCallerNothing(t *testing.T) {
	c := NewClient("http://" + blackHole(t))
	started := time.Now()
	a := c.StartAsyncSession("p", "1", AsyncOptions{})
	within(t, started, time.Second, "StartAsyncSession")
	if len(a.ID) != 36 {
		t.Fatalf("the id is minted at once: %q", a.ID)
	}
	for i := 0; i < 100; i++ {
		if err := a.LogEvent(context.Background(), "tick", map[string]any{"i": i}); err != nil {
			t.Fatalf("a buffered call: %v", err)
		}
	}
	within(t, started, time.Second, "100 buffered calls")
	started = time.Now()
	_ = a.End(context.Background())
	within(t, started, 6*time.Second, "End (its deadline is 3 s)")
	if err := a.LogEvent(context.Background(), "late", nil); !errors.Is(err, ErrEnded) {
		t.Fatalf("a call after End: %v", err)
	}
	if stats := a.Stats(); stats.Failed != 101 || stats.Sent != 0 {
		t.Fatalf("stats: %+v", stats)
	}
	started = time.Now()
	_ = c.Close()
	within(t, started, 4*time.Second, "Close")
}

func TestACallToABlackHoleCostsOneTimeoutThenBacksOff(t *testing.T) {
	c := NewClient("http://" + blackHole(t))
	started := time.Now()
	if _, err := c.CreateSession(context.Background(), "p", "1"); err == nil {
		t.Fatal("a black hole cannot register a session")
	}
	for i := 0; i < 5; i++ {
		err := c.UpdateState(context.Background(), "01939d5e-7c2a-7b3e-9c1d-2f4a5b6c7d8e", map[string]any{"i": i})
		if !errors.Is(err, ErrBackoff) {
			t.Fatalf("call %d: want the backoff, got %v", i, err)
		}
	}
	// One 5 s timeout; the 5 calls after it fail at once (they were 5 timeouts more).
	within(t, started, 12*time.Second, "a registration and 5 calls")
	if stats := c.Stats(); stats.Failed != 6 {
		t.Fatalf("stats: %+v", stats)
	}
}

func TestDaemonAnswersWithNATSAndTheQueryServiceBlackHoled(t *testing.T) {
	needDaemon(t)
	ctx := context.Background()
	started := time.Now()
	c, err := NewClientWithOptions(ctx, Options{NATSURL: "nats://" + blackHole(t), ServerURL: "http://" + blackHole(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := c.StartSession(ctx, "space-game", "1.5.0")
	if err != nil {
		t.Fatal(err)
	}
	within(t, started, 5*time.Second, "starting the daemon and a session")
	started = time.Now()
	if err := s.UpdateState(ctx, map[string]any{"level": 3}); err != nil {
		t.Fatal(err)
	}
	if err := s.LogEvent(ctx, "launch", nil); err != nil {
		t.Fatal(err)
	}
	within(t, started, time.Second, "two calls")
	started = time.Now()
	view, err := c.GetSession(ctx, s.ID)
	if err != nil {
		t.Fatal(err)
	}
	within(t, started, 8*time.Second, "reading back")
	if view["source"] != "daemon" || view["active"] != true {
		t.Fatalf("the daemon's own view: %v", view)
	}
	if state, _ := view["state"].(map[string]any); state["level"] != float64(3) {
		t.Fatalf("state: %v", view["state"])
	}
	for _, key := range []string{"events", "metrics", "state_history", "created_at", "updated_at", "ended_at"} {
		if _, ok := view[key]; !ok {
			t.Fatalf("%s missing: %v", key, view)
		}
	}
	started = time.Now()
	delivered, err := c.EndSessionWith(ctx, s.ID, "", false)
	if err != nil || delivered {
		t.Fatalf("end: delivered=%v err=%v", delivered, err)
	}
	within(t, started, 4*time.Second, "ending with NATS unreachable (the data is in the spool)")
}

// recorder is a query service stand-in that answers direct writes and records them.
type recorder struct {
	mu    sync.Mutex
	paths []string
	ends  []map[string]any
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	var decoded map[string]any
	_ = json.Unmarshal(body, &decoded)
	r.mu.Lock()
	r.paths = append(r.paths, req.Method+" "+req.URL.Path)
	if strings.HasSuffix(req.URL.Path, "/end") || strings.HasSuffix(req.URL.Path, "/crash") {
		r.ends = append(r.ends, decoded)
	}
	r.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if req.URL.Path == "/api/sessions" {
		fmt.Fprintf(w, `{"session_id": %q, "seq": 0}`, decoded["session_id"])
		return
	}
	fmt.Fprint(w, `{"status": "ok", "seq": 1}`)
}

func (r *recorder) endPaths() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, p := range r.paths {
		if strings.HasSuffix(p, "/end") || strings.HasSuffix(p, "/crash") {
			out = append(out, p[strings.LastIndexByte(p, '/')+1:])
		}
	}
	return out
}

// recordingClient is a client without a daemon whose query service is a recorder.
func recordingClient(t *testing.T) (*recorder, *Client) {
	rec := &recorder{}
	server := httptest.NewServer(rec)
	t.Cleanup(server.Close)
	return rec, NewClient(server.URL)
}

func TestCloseEndsTheSessionsLeftOpen(t *testing.T) {
	rec, c := recordingClient(t)
	ctx := context.Background()
	if _, err := c.StartSession(ctx, "p", "1"); err != nil {
		t.Fatal(err)
	}
	a := c.StartAsyncSession("p", "1", AsyncOptions{})
	_ = a.LogEvent(ctx, "buffered", nil)
	ended, err := c.StartSession(ctx, "p", "1")
	if err != nil {
		t.Fatal(err)
	}
	_ = ended.End(ctx)
	_ = c.Close()
	if got := rec.endPaths(); len(got) != 3 || got[1] != "end" || got[2] != "end" {
		t.Fatalf("want the ended one and the two left open ended: %v", got)
	}
	for _, end := range rec.ends[1:] {
		if end["reason"] != closedWithoutEndReason {
			t.Fatalf("reason: %v", end)
		}
	}
	if stats := a.Stats(); stats.Sent != 1 {
		t.Fatalf("the buffered call was flushed before the end: %+v", stats)
	}
}

func TestFinishEndsOnReturnAndCrashesOnPanic(t *testing.T) {
	rec, c := recordingClient(t)
	ctx := context.Background()
	run := func(fail bool) (recovered any) {
		s, err := c.StartSession(ctx, "p", "1")
		if err != nil {
			t.Fatal(err)
		}
		defer func() { recovered = recover() }()
		defer s.Finish()
		if fail {
			panic("engine failure")
		}
		return nil
	}
	if run(false) != nil {
		t.Fatal("no panic")
	}
	if run(true) != "engine failure" {
		t.Fatal("the panic goes on after Finish reports it")
	}
	if got := rec.endPaths(); len(got) != 2 || got[0] != "end" || got[1] != "crash" {
		t.Fatalf("ended, then crashed: %v", got)
	}
	if reason, _ := rec.ends[1]["reason"].(string); !strings.Contains(reason, "engine failure") {
		t.Fatalf("crash reason: %v", rec.ends[1])
	}
	_ = c.Close()
}

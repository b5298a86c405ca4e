package datacat

import (
	"context"
	"errors"
	"math"
	"strings"
	"sync"
	"testing"
	"time"
)

func newClient(t *testing.T) *Client {
	t.Helper()
	needServers(t)
	c, err := NewClientWithDaemon("http://127.0.0.1:8080", "auto")
	if err != nil {
		t.Fatalf("NewClientWithDaemon: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// startSession starts a session of a new client.
func startSession(t *testing.T) (*Client, *Session) {
	t.Helper()
	c := newClient(t)
	s, err := c.StartSession(context.Background(), "go-game", "1.0")
	must(t, err)
	return c, s
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestSessionCallsReachTheDaemonAndAreDelivered(t *testing.T) {
	ctx := context.Background()
	c, s := startSession(t)
	must(t, s.UpdateState(ctx, map[string]any{"player": map[string]any{"level": 1, "hp": 10}, "scene": "menu"}))
	must(t, s.UpdateState(ctx, map[string]any{"player": map[string]any{"hp": nil}, "scene": "space"}))
	must(t, s.LogEvent(ctx, "level_loaded", map[string]any{"level": 1}))
	must(t, s.LogEventWith(ctx, Event{Name: "low_fuel", Level: Warning, Labels: []string{"fuel"}, Message: "fuel low"}))
	must(t, s.LogGauge(ctx, "fps", 59.5, "scene:space"))
	must(t, s.LogCounter(ctx, "kills", 2))
	must(t, s.LogHistogram(ctx, "frame_ms", 16.4, []float64{8, 16, 33, math.Inf(1)}))
	must(t, s.LogTimer(ctx, "load", 1250*time.Millisecond))
	_, err := s.StartTimer("step").Stop(ctx)
	must(t, err)
	must(t, s.LogException(ctx, errors.New("probe lost"), map[string]any{"probe": "alpha"}))
	must(t, s.Heartbeat(ctx))
	must(t, c.LogMetric(ctx, s.ID, "memory", 512, []string{"app:go"}))

	view := daemonView(t, c, s.ID)
	state := view["state"].(map[string]any)
	if state["scene"] != "space" || state["player"].(map[string]any)["level"] != float64(1) {
		t.Fatalf("state at the daemon: %v", state)
	}
	if _, has := state["player"].(map[string]any)["hp"]; has {
		t.Fatalf("nil must delete: %v", state)
	}
	must(t, s.End(ctx))
	// End answered after JetStream acknowledged the data: no waiting here.
	if n := streamMessages(t, s.ID); n < 1 {
		t.Fatalf("no batch in JetStream")
	}
	must(t, s.End(ctx)) // already ended: nothing to do

	other, err := c.StartSession(ctx, "go-game", "1.0")
	must(t, err)
	delivered, err := c.EndSessionWith(ctx, other.ID, "finished", false)
	must(t, err)
	if !delivered {
		t.Fatal("end must report the data delivered")
	}
}

func TestBadInputIsAnErrorNotAPanic(t *testing.T) {
	ctx := context.Background()
	c, s := startSession(t)
	if _, err := c.CreateSession(ctx, "", "1"); err == nil {
		t.Fatal("a session without a product must be refused")
	}
	if err := s.LogGauge(ctx, "nan", math.NaN()); err == nil {
		t.Fatal("NaN must be refused")
	}
	if err := s.LogEvent(ctx, "", nil); err == nil {
		t.Fatal("an event without a name must be refused")
	}
	if err := s.LogEventWith(ctx, Event{Name: "e", Level: "loud"}); err == nil {
		t.Fatal("the daemon refuses an unknown level")
	} else {
		var apiErr *APIError
		if !errors.As(err, &apiErr) || apiErr.Status != 400 {
			t.Fatalf("want a 400 APIError, got %v", err)
		}
	}
	if err := c.UpdateState(ctx, "no-such-session", map[string]any{"a": 1}); err == nil {
		t.Fatal("an unknown session must be an error")
	}
	if err := c.UpdateState(ctx, "", map[string]any{"a": 1}); !errors.Is(err, ErrNoSession) {
		t.Fatalf("want ErrNoSession, got %v", err)
	}
	if err := s.End(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestContextsBoundEveryCall(t *testing.T) {
	_, s := startSession(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.LogEvent(ctx, "late", nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("a cancelled context must stop the call, got %v", err)
	}
	_ = s.End(context.Background())
}

func TestDaemonGoneIsAnErrorAndANewOneStarts(t *testing.T) {
	ctx := context.Background()
	c, s := startSession(t)
	_ = c.Daemon().Stop(10 * time.Second)
	if err := s.LogEvent(ctx, "after", nil); err == nil {
		t.Fatal("the new daemon does not know the old session: an error, not a panic")
	}
	s2, err := c.StartSession(ctx, "go-game", "1.0")
	if err != nil {
		t.Fatalf("a new daemon must be started: %v", err)
	}
	if err := s2.End(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestAsyncSessionShipsEverythingAndCountsDrops(t *testing.T) {
	ctx := context.Background()
	c, s := startSession(t)
	a := NewAsyncSession(s, AsyncOptions{BatchSize: 200})
	state := map[string]any{"level": 1}
	_ = a.UpdateState(ctx, state)
	state["level"] = 99 // after the call: not sent
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 1000; i++ {
				_ = a.LogEvent(ctx, "tick", map[string]any{"g": g, "i": i})
			}
		}(g)
	}
	wg.Wait()
	_ = a.LogCounter(ctx, "kills", 3)
	_ = a.LogGauge(ctx, "nan", math.NaN())
	flushCtx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := a.Flush(flushCtx); err != nil {
		t.Fatal(err)
	}
	stats := a.Stats()
	if stats.Sent != 4002 || stats.Dropped != 0 || stats.Failed != 0 || stats.Invalid != 1 || stats.Queued != 0 {
		t.Fatalf("stats: %+v", stats)
	}
	if got := daemonView(t, c, s.ID)["state"].(map[string]any)["level"]; got != float64(1) {
		t.Fatalf("the state must be what was passed at the call, got %v", got)
	}
	if err := a.End(ctx); err != nil {
		t.Fatal(err)
	}

	// A full buffer drops (and counts) instead of blocking.
	s2, _ := c.StartSession(ctx, "go-game", "1.0")
	small := NewAsyncSession(s2, AsyncOptions{QueueSize: 10, BatchSize: 10, FlushInterval: time.Hour})
	dropped := 0
	for i := 0; i < 100; i++ {
		if errors.Is(small.LogEvent(ctx, "burst", nil), ErrDropped) {
			dropped++
		}
	}
	if err := small.End(ctx); err != nil {
		t.Fatal(err)
	}
	stats = small.Stats()
	if dropped == 0 || stats.Dropped != int64(dropped) || stats.Sent+stats.Dropped != 100 {
		t.Fatalf("dropped %d, stats %+v", dropped, stats)
	}
}

func TestHeartbeatMonitorTellsTheDaemonAndReportsStacks(t *testing.T) {
	ctx := context.Background()
	c, s := startSession(t)
	m, err := s.StartHeartbeatMonitor(ctx, 2*time.Second, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	watched := daemonView(t, c, s.ID)["heartbeat_monitor"].(map[string]any)
	if watched["enabled"] != true || watched["timeout_seconds"] != float64(2) {
		t.Fatalf("daemon's monitor: %v", watched)
	}
	deadline := time.Now().Add(10 * time.Second)
	for m.Hangs() == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if m.Hangs() != 1 {
		t.Fatal("an overdue heartbeat must be reported once")
	}
	if err := s.Heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.PauseHeartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	if daemonView(t, c, s.ID)["heartbeat_monitor"].(map[string]any)["paused"] != true {
		t.Fatal("pause must reach the daemon")
	}
	if err := s.End(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestExceptionsCarryFramesAndSource(t *testing.T) {
	exc := ExceptionFromError(errors.New("boom"), 0)
	last := exc.Frames[len(exc.Frames)-1]
	if !strings.HasSuffix(last.Function, "TestExceptionsCarryFramesAndSource") || !strings.Contains(last.Code, "ExceptionFromError") {
		t.Fatalf("innermost frame: %+v", last)
	}
	if exc.Type != "*errors.errorString" || exc.Message != "boom" {
		t.Fatalf("exception: %+v", exc)
	}
	func() {
		defer func() {
			p := ExceptionFromPanic(recover())
			if p.Type != "panic" || p.Message != "index out of range" {
				t.Fatalf("panic: %+v", p)
			}
		}()
		panic("index out of range")
	}()
	if !strings.Contains(AllStacks(), "TestExceptionsCarryFramesAndSource") {
		t.Fatal("AllStacks must include this goroutine")
	}
}

func TestWithoutADaemonTheURLIsChecked(t *testing.T) {
	if _, err := NewClientWithOptions(context.Background(), Options{NoDaemon: true, ServerURL: "localhost:8080"}); err == nil {
		t.Fatal("a URL without a scheme must be refused")
	}
	bad := NewClient("localhost:8080") // no scheme: every call says so, none panics
	if _, err := bad.CreateSession(context.Background(), "p", "1"); err == nil || !strings.Contains(err.Error(), "http(s) URL") {
		t.Fatalf("want the URL error, got %v", err)
	}
	c := NewClient("http://127.0.0.1:1")
	if _, err := c.CreateSession(context.Background(), "p", "1"); err == nil {
		t.Fatal("nothing listens there: an error")
	}
	route, _ := c.route("POST", "/event", "a b")
	if route != "/api/sessions/a%20b/events" {
		t.Fatalf("route: %s", route)
	}
}

func TestAsyncMonitorCallsWaitForTheSessionsRegistration(t *testing.T) {
	ctx := context.Background()
	c := newClient(t)
	for i := 0; i < 5; i++ {
		a := c.StartAsyncSession("go-game", "1.0", AsyncOptions{})
		// Straight after starting: the registration is still queued in the shipper.
		if _, err := a.StartHeartbeatMonitor(ctx, 30*time.Second, time.Second); err != nil {
			t.Fatal(err)
		}
		if err := a.PauseHeartbeat(ctx); err != nil {
			t.Fatal(err)
		}
		if err := a.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		watched := daemonView(t, c, a.ID)["heartbeat_monitor"].(map[string]any)
		if watched["enabled"] != true || watched["paused"] != true {
			t.Fatalf("the daemon got the monitor calls after the registration: %v", watched)
		}
		if stats := a.Stats(); stats.Failed != 0 || stats.Sent != 2 {
			t.Fatalf("stats: %+v", stats)
		}
		if err := a.End(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := a.StartHeartbeatMonitor(ctx, 30*time.Second, time.Second); !errors.Is(err, ErrEnded) {
			t.Fatalf("after End: %v", err)
		}
	}
}

// After End, every call of the session returns ErrEnded, the error the documentation
// names (and counts it); End again does nothing.
func TestCallsAfterEndReturnErrEnded(t *testing.T) {
	c, s := startSession(t)
	ctx := context.Background()
	must(t, s.End(ctx))
	failedBefore := c.Stats().Failed
	_, monitor := s.StartHeartbeatMonitor(ctx, time.Minute, 0)
	_, timer := s.StartTimer("t").Stop(ctx)
	calls := map[string]error{
		"UpdateState":           s.UpdateState(ctx, map[string]any{"a": 1}),
		"LogEvent":              s.LogEvent(ctx, "late", nil),
		"LogGauge":              s.LogGauge(ctx, "g", 1),
		"LogException":          s.LogException(ctx, errors.New("late"), nil),
		"Heartbeat":             s.Heartbeat(ctx),
		"StartHeartbeatMonitor": monitor,
		"PauseHeartbeat":        s.PauseHeartbeat(ctx),
		"ResumeHeartbeat":       s.ResumeHeartbeat(ctx),
		"StopHeartbeatMonitor":  s.StopHeartbeatMonitor(ctx),
		"StartTimer":            timer,
	}
	for name, err := range calls {
		if !errors.Is(err, ErrEnded) {
			t.Errorf("%s after End: got %v, want ErrEnded", name, err)
		}
	}
	if counted := c.Stats().Failed - failedBefore; counted != int64(len(calls)) {
		t.Errorf("%d calls after End counted as failed, want %d", counted, len(calls))
	}
	if err := s.End(ctx); err != nil {
		t.Errorf("End again: %v", err)
	}
}

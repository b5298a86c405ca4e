package datacat

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Session is one run of the application, bound to its client. Its methods send at once
// (see AsyncSession for the buffered form).
//
// End it when the run is over. A Go program has no exit hook: a session that is never
// ended is reported crashed by the daemon when the process exits. So, right after starting
// it:
//
//	s, err := c.StartSession(ctx, "space-game", "1.5.0")
//	defer s.Finish()   // returns: ended; panics: crashed (with the panic), then panics on
//
// and defer c.Close(), which ends the sessions still open. os.Exit and log.Fatal skip
// deferred calls: end the session (or Close the client) before them.
type Session struct {
	Client *Client
	ID     string

	mu      sync.Mutex
	monitor *HeartbeatMonitor
	ended   bool
}

// ErrEnded is returned (and counted) for a call on a session that has ended.
var ErrEnded = errors.New("datacat: the session has ended")

// StartSession creates a session and returns it.
func (c *Client) StartSession(ctx context.Context, product, version string) (*Session, error) {
	id, err := c.CreateSession(ctx, product, version)
	if err != nil {
		return nil, err
	}
	s := &Session{Client: c, ID: id}
	c.track(s)
	return s, nil
}

// ender is a session Close can end (a Session, or an AsyncSession, which flushes first).
type ender interface {
	endWithin(ctx context.Context, reason string) error
}

// track remembers an open session, for Close to end.
func (c *Client) track(s ender) {
	c.mu.Lock()
	c.open[s] = struct{}{}
	c.mu.Unlock()
}

func (c *Client) untrack(s ender) {
	c.mu.Lock()
	delete(c.open, s)
	c.mu.Unlock()
}

func (s *Session) endWithin(ctx context.Context, reason string) error {
	return s.end(ctx, reason, false)
}

// refused is the error for a call the session cannot send any more (counted), or nil.
func (s *Session) refused() error {
	s.mu.Lock()
	ended := s.ended
	s.mu.Unlock()
	if ended {
		return s.Client.count(ErrEnded)
	}
	return nil
}

// UpdateState deep-merges state into the session's state.
func (s *Session) UpdateState(ctx context.Context, state map[string]any) error {
	if err := s.refused(); err != nil {
		return err
	}
	return s.Client.UpdateState(ctx, s.ID, state)
}

// LogEvent logs an event with data; LogEventWith takes every field.
func (s *Session) LogEvent(ctx context.Context, name string, data map[string]any) error {
	return s.LogEventWith(ctx, Event{Name: name, Data: data})
}

// LogEventWith logs an event.
func (s *Session) LogEventWith(ctx context.Context, e Event) error {
	if err := s.refused(); err != nil {
		return err
	}
	return s.Client.LogEventWith(ctx, s.ID, e)
}

// LogMetricWith logs a metric point.
func (s *Session) LogMetricWith(ctx context.Context, m Metric) error {
	if err := s.refused(); err != nil {
		return err
	}
	return s.Client.LogMetricWith(ctx, s.ID, m)
}

// LogGauge logs a value that goes up and down.
func (s *Session) LogGauge(ctx context.Context, name string, value float64, tags ...string) error {
	return s.LogMetricWith(ctx, gaugeMetric(name, value, tags))
}

// LogCounter adds delta to a running total.
func (s *Session) LogCounter(ctx context.Context, name string, delta float64, tags ...string) error {
	return s.LogMetricWith(ctx, counterMetric(name, delta, tags))
}

// LogHistogram logs one observation of a distribution with bucket upper bounds.
func (s *Session) LogHistogram(ctx context.Context, name string, value float64, buckets []float64, tags ...string) error {
	return s.LogMetricWith(ctx, histogramMetric(name, value, buckets, tags))
}

// LogTimer logs a measured duration in seconds.
func (s *Session) LogTimer(ctx context.Context, name string, d time.Duration, tags ...string) error {
	return s.LogMetricWith(ctx, timerMetric(name, d, tags))
}

// LogException logs err as an exception event with the caller's stack.
func (s *Session) LogException(ctx context.Context, err error, data map[string]any) error {
	if err == nil {
		return nil
	}
	return s.LogEventWith(ctx, exceptionEvent(ExceptionFromError(err, 1), Error, data))
}

// Heartbeat tells the daemon (and this session's monitor) the application is alive.
func (s *Session) Heartbeat(ctx context.Context) error {
	s.mu.Lock()
	monitor := s.monitor
	s.mu.Unlock()
	if monitor != nil {
		monitor.Beat()
	}
	if err := s.refused(); err != nil {
		return err
	}
	return s.Client.Heartbeat(ctx, s.ID)
}

// End ends the session normally and stops its heartbeat monitor, within the context's
// deadline (the client's EndTimeout when it has none). Calling it again does nothing.
func (s *Session) End(ctx context.Context) error {
	return s.end(ctx, "", false)
}

// Finish, deferred right after the session starts, ends it when the function returns:
// normally, or, if the function panics, crashed with the panic and its stack as an
// exception event, and then the panic goes on as it would have.
//
//	defer s.Finish()
func (s *Session) Finish() {
	if value := recover(); value != nil {
		s.reportPanic(value)
		panic(value)
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.Client.opts.EndTimeout)
	defer cancel()
	_ = s.End(ctx)
}

// Crash ends the session as crashed with a reason.
func (s *Session) Crash(ctx context.Context, reason string) error {
	return s.end(ctx, reason, true)
}

func (s *Session) end(ctx context.Context, reason string, crashed bool) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.Client.opts.EndTimeout)
		defer cancel()
	}
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return nil
	}
	s.ended = true
	monitor := s.monitor
	s.mu.Unlock()
	s.Client.untrack(s)
	if monitor != nil {
		monitor.stopWithin(ctx)
	}
	_, err := s.Client.EndSessionWith(ctx, s.ID, reason, crashed)
	return err
}

// RecoverPanic, deferred at the top of main (or a goroutine), reports a panic: the panic
// and its stack as a critical exception event, the session ended crashed. Then it panics
// again with the same value, so the program fails as it would have.
//
//	defer session.RecoverPanic()
func (s *Session) RecoverPanic() {
	value := recover()
	if value == nil {
		return
	}
	s.reportPanic(value)
	panic(value)
}

func (s *Session) reportPanic(value any) {
	exc := ExceptionFromPanic(value)
	ctx, cancel := context.WithTimeout(context.Background(), s.Client.opts.EndTimeout)
	defer cancel()
	_ = s.LogEventWith(ctx, exceptionEvent(exc, Critical, map[string]any{"uncaught": true}))
	_ = s.Crash(ctx, fmt.Sprintf("panic: %s", exc.Message))
}

// StartTimer starts timing; Stop logs the timer metric.
func (s *Session) StartTimer(name string, tags ...string) *TimerHandle {
	return &TimerHandle{log: s.LogMetricWith, name: name, tags: tags, started: time.Now()}
}

// TimerHandle is a started timer.
type TimerHandle struct {
	log     func(context.Context, Metric) error
	name    string
	tags    []string
	started time.Time
}

// Stop logs the elapsed time (seconds) and returns it.
func (t *TimerHandle) Stop(ctx context.Context) (time.Duration, error) {
	elapsed := time.Since(t.started)
	return elapsed, t.log(ctx, timerMetric(t.name, elapsed, t.tags))
}

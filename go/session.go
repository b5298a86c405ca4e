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
	sessionCalls

	mu      sync.Mutex
	monitor *HeartbeatMonitor
	ended   bool
}

// ErrEnded is returned (and counted) for a call on a session that has ended.
var ErrEnded = errors.New("datacat: the session has ended")

// ErrNilSession is returned by the calls of a nil *Session (StartSession returns nil with
// its error: a program that ignores the error gets this at each call instead of a panic).
var ErrNilSession = errors.New("datacat: the session is nil (StartSession failed)")

// nilSession is where a nil *Session's shared calls go.
type nilSession struct{}

func (nilSession) LogEventWith(context.Context, Event) error   { return ErrNilSession }
func (nilSession) LogMetricWith(context.Context, Metric) error { return ErrNilSession }
func (nilSession) end(context.Context, string, bool) error     { return ErrNilSession }
func (nilSession) reportPanic(any)                             {}

// calls is where this session's shared calls go: a nil *Session's answer ErrNilSession.
// The shared calls are defined on *Session too (not only promoted from sessionCalls), since
// reaching an embedded field of a nil pointer panics.
func (s *Session) calls() *sessionCalls {
	if s == nil {
		return &sessionCalls{core: nilSession{}}
	}
	return &s.sessionCalls
}

// LogEvent logs an event with data; LogEventWith takes every field.
func (s *Session) LogEvent(ctx context.Context, name string, data map[string]any) error {
	return s.calls().LogEvent(ctx, name, data)
}

// LogGauge logs a value that goes up and down.
func (s *Session) LogGauge(ctx context.Context, name string, value float64, tags ...string) error {
	return s.calls().LogGauge(ctx, name, value, tags...)
}

// LogCounter adds delta to a running total.
func (s *Session) LogCounter(ctx context.Context, name string, delta float64, tags ...string) error {
	return s.calls().LogCounter(ctx, name, delta, tags...)
}

// LogHistogram logs one observation of a distribution with bucket upper bounds.
func (s *Session) LogHistogram(ctx context.Context, name string, value float64, buckets []float64, tags ...string) error {
	return s.calls().LogHistogram(ctx, name, value, buckets, tags...)
}

// LogTimer logs a measured duration in seconds.
func (s *Session) LogTimer(ctx context.Context, name string, d time.Duration, tags ...string) error {
	return s.calls().LogTimer(ctx, name, d, tags...)
}

// LogException logs err as an exception event with the caller's stack and the errors
// behind it.
func (s *Session) LogException(ctx context.Context, err error, data map[string]any) error {
	return s.calls().logException(ctx, err, data)
}

// End ends the session normally, within the context's deadline (the client's EndTimeout
// when it has none), and stops its heartbeat monitor. Calling it again does nothing.
func (s *Session) End(ctx context.Context) error { return s.calls().End(ctx) }

// Crash ends the session as crashed with a reason.
func (s *Session) Crash(ctx context.Context, reason string) error {
	return s.calls().Crash(ctx, reason)
}

// StartTimer starts timing; Stop logs the timer metric.
func (s *Session) StartTimer(name string, tags ...string) *TimerHandle {
	return s.calls().StartTimer(name, tags...)
}

// Finish, deferred right after the session starts, ends it when the function returns:
// normally, or, if the function panics, crashed with the panic and its stack as an
// exception event, and then the panic goes on as it would have. (recover works only in
// the deferred function itself: Session and AsyncSession each have their own.)
//
//	defer s.Finish()
func (s *Session) Finish() {
	if value := recover(); value != nil {
		s.calls().target().reportPanic(value)
		panic(value)
	}
	_ = s.End(context.Background())
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
	s.calls().target().reportPanic(value)
	panic(value)
}

// StartSession creates a session and returns it.
func (c *Client) StartSession(ctx context.Context, product, version string) (*Session, error) {
	id, err := c.CreateSession(ctx, product, version)
	if err != nil {
		return nil, err
	}
	s := newSession(c, id)
	c.track(s)
	return s, nil
}

// newSession is a Session whose shared calls go straight to itself.
func newSession(c *Client, id string) *Session {
	s := &Session{Client: c, ID: id}
	s.sessionCalls = sessionCalls{s}
	return s
}

// sessionCore is what each kind of session does its own way: a Session sends at once, an
// AsyncSession buffers (and flushes before it ends).
type sessionCore interface {
	LogEventWith(ctx context.Context, e Event) error
	LogMetricWith(ctx context.Context, m Metric) error
	end(ctx context.Context, reason string, crashed bool) error
	reportPanic(value any)
}

// sessionCalls are the calls Session and AsyncSession share, made through the core of the
// one that embeds them: an AsyncSession's shadow those of the Session it wraps.
type sessionCalls struct {
	core sessionCore
}

// target is the session the shared calls go to. A Session or AsyncSession written as a
// literal instead of made by the client has none: its calls return ErrUnbound (and a
// deferred Finish or RecoverPanic lets a panic go on) rather than panic in the application.
func (s *sessionCalls) target() sessionCore {
	if s.core == nil {
		return unbound{}
	}
	return s.core
}

// ErrUnbound is returned by the calls of a Session or AsyncSession that was not made by
// StartSession, StartAsyncSession or NewAsyncSession.
var ErrUnbound = errors.New("datacat: this session was not made by the client (use StartSession)")

type unbound struct{}

func (unbound) LogEventWith(context.Context, Event) error   { return ErrUnbound }
func (unbound) LogMetricWith(context.Context, Metric) error { return ErrUnbound }
func (unbound) end(context.Context, string, bool) error     { return ErrUnbound }
func (unbound) reportPanic(any)                             {}

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

func (s *sessionCalls) endWithin(ctx context.Context, reason string) error {
	return s.target().end(ctx, reason, false)
}

// refused is the error for a call the session cannot send any more (counted), or nil.
func (s *Session) refused() error {
	if s == nil {
		return ErrNilSession
	}
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
func (s *sessionCalls) LogEvent(ctx context.Context, name string, data map[string]any) error {
	return s.target().LogEventWith(ctx, Event{Name: name, Data: data})
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
func (s *sessionCalls) LogGauge(ctx context.Context, name string, value float64, tags ...string) error {
	return s.target().LogMetricWith(ctx, gaugeMetric(name, value, tags))
}

// LogCounter adds delta to a running total.
func (s *sessionCalls) LogCounter(ctx context.Context, name string, delta float64, tags ...string) error {
	return s.target().LogMetricWith(ctx, counterMetric(name, delta, tags))
}

// LogHistogram logs one observation of a distribution with bucket upper bounds.
func (s *sessionCalls) LogHistogram(ctx context.Context, name string, value float64, buckets []float64, tags ...string) error {
	return s.target().LogMetricWith(ctx, histogramMetric(name, value, buckets, tags))
}

// LogTimer logs a measured duration in seconds.
func (s *sessionCalls) LogTimer(ctx context.Context, name string, d time.Duration, tags ...string) error {
	return s.target().LogMetricWith(ctx, timerMetric(name, d, tags))
}

// logException logs err with the stack of whoever called the exported LogException that
// called this (skip 2: this frame and that method's).
func (s *sessionCalls) logException(ctx context.Context, err error, data map[string]any) error {
	if err == nil {
		return nil
	}
	return s.target().LogEventWith(ctx, exceptionEvent(ExceptionFromError(err, 2), Error, data))
}

// Heartbeat tells the daemon (and this session's monitor) the application is alive.
func (s *Session) Heartbeat(ctx context.Context) error {
	if s == nil {
		return ErrNilSession
	}
	if m := s.currentMonitor(); m != nil {
		m.Beat()
	}
	if err := s.refused(); err != nil {
		return err
	}
	return s.Client.Heartbeat(ctx, s.ID)
}

// End ends the session normally and stops its heartbeat monitor, within the context's
// deadline (the client's EndTimeout when it has none); an AsyncSession flushes first, and
// counts the calls still buffered then as failed. Calling it again does nothing.
func (s *sessionCalls) End(ctx context.Context) error {
	return s.target().end(ctx, "", false)
}

// Crash ends the session as crashed with a reason (an AsyncSession flushes first).
func (s *sessionCalls) Crash(ctx context.Context, reason string) error {
	return s.target().end(ctx, reason, true)
}

func (s *Session) end(ctx context.Context, reason string, crashed bool) error {
	ctx, cancel := withDefaultTimeout(ctx, s.Client.opts.EndTimeout)
	defer cancel()
	monitor, first := s.markEnded()
	if !first {
		return nil
	}
	s.Client.untrack(s)
	if monitor != nil {
		monitor.stopWithin(ctx)
	}
	_, err := s.Client.EndSessionWith(ctx, s.ID, reason, crashed)
	return err
}

// markEnded refuses the session's calls from now on; first is false when it had ended
// already, monitor is the heartbeat monitor left to stop.
func (s *Session) markEnded() (monitor *HeartbeatMonitor, first bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return nil, false
	}
	s.ended = true
	return s.monitor, true
}

func (s *Session) reportPanic(value any) {
	exc := ExceptionFromPanic(value)
	ctx, cancel := context.WithTimeout(context.Background(), s.Client.opts.EndTimeout)
	defer cancel()
	_ = s.LogEventWith(ctx, exceptionEvent(exc, Critical, map[string]any{"uncaught": true}))
	_ = s.Crash(ctx, fmt.Sprintf("panic: %s", exc.Message))
}

// StartTimer starts timing; Stop logs the timer metric.
func (s *sessionCalls) StartTimer(name string, tags ...string) *TimerHandle {
	return &TimerHandle{log: s.target().LogMetricWith, name: name, tags: tags, started: time.Now()}
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

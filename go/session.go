package datacat

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Session is one run of the application, bound to its client. Its methods send at once
// (see AsyncSession for the buffered form).
type Session struct {
	Client *Client
	ID     string

	mu      sync.Mutex
	monitor *HeartbeatMonitor
	ended   bool
}

// StartSession creates a session and returns it.
func (c *Client) StartSession(ctx context.Context, product, version string) (*Session, error) {
	id, err := c.CreateSession(ctx, product, version)
	if err != nil {
		return nil, err
	}
	return &Session{Client: c, ID: id}, nil
}

// UpdateState deep-merges state into the session's state.
func (s *Session) UpdateState(ctx context.Context, state map[string]any) error {
	return s.Client.UpdateState(ctx, s.ID, state)
}

// LogEvent logs an event with data; LogEventWith takes every field.
func (s *Session) LogEvent(ctx context.Context, name string, data map[string]any) error {
	return s.Client.LogEvent(ctx, s.ID, name, data)
}

// LogEventWith logs an event.
func (s *Session) LogEventWith(ctx context.Context, e Event) error {
	return s.Client.LogEventWith(ctx, s.ID, e)
}

// LogMetricWith logs a metric point.
func (s *Session) LogMetricWith(ctx context.Context, m Metric) error {
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
	return s.Client.Heartbeat(ctx, s.ID)
}

// End ends the session normally and stops its heartbeat monitor. Calling it again does
// nothing.
func (s *Session) End(ctx context.Context) error {
	return s.end(ctx, "", false)
}

// Crash ends the session as crashed with a reason.
func (s *Session) Crash(ctx context.Context, reason string) error {
	return s.end(ctx, reason, true)
}

func (s *Session) end(ctx context.Context, reason string, crashed bool) error {
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return nil
	}
	s.ended = true
	monitor := s.monitor
	s.mu.Unlock()
	if monitor != nil {
		monitor.Stop()
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
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
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

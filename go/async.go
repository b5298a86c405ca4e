package datacat

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"
)

// AsyncOptions configure an AsyncSession.
type AsyncOptions struct {
	// QueueSize is how many calls are buffered at most (default 10 000).
	QueueSize int
	// Block makes a call wait for room when the buffer is full; by default it is dropped
	// (and counted).
	Block bool
	// BatchSize is how many calls go in one request (default 1000).
	BatchSize int
	// FlushInterval is how long the shipper waits for more calls (default 50 ms).
	FlushInterval time.Duration
}

// AsyncStats counts what happened to an AsyncSession's calls.
type AsyncStats struct {
	Sent    int64 // accepted by the daemon (or the query service)
	Dropped int64 // the buffer was full
	Failed  int64 // their request was lost
	Invalid int64 // refused (here or by the receiver)
	Queued  int   // waiting now
	Batches int64 // requests sent
}

// AsyncSession buffers a session's calls: each returns at once after appending to a bounded
// buffer, and a goroutine sends them in batches (POST /batch) in order. Flush waits for
// what was logged; End flushes and ends the session.
type AsyncSession struct {
	*Session
	opts AsyncOptions

	mu      sync.Mutex
	room    *sync.Cond
	idle    *sync.Cond
	buffer  []json.RawMessage
	busy    bool
	closing bool
	stats   AsyncStats
	wake    chan struct{}
	done    chan struct{}
}

// NewAsyncSession wraps s; calls through it are buffered and shipped in batches.
func NewAsyncSession(s *Session, opts AsyncOptions) *AsyncSession {
	if opts.QueueSize <= 0 {
		opts.QueueSize = 10000
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = 1000
	}
	if opts.FlushInterval <= 0 {
		opts.FlushInterval = 50 * time.Millisecond
	}
	a := &AsyncSession{Session: s, opts: opts, wake: make(chan struct{}, 1), done: make(chan struct{})}
	a.room = sync.NewCond(&a.mu)
	a.idle = sync.NewCond(&a.mu)
	go a.ship()
	return a
}

// enqueue appends one encoded item; false when it was dropped.
func (a *AsyncSession) enqueue(item json.RawMessage) bool {
	a.mu.Lock()
	for len(a.buffer) >= a.opts.QueueSize && a.opts.Block && !a.closing {
		a.room.Wait()
	}
	if a.closing || len(a.buffer) >= a.opts.QueueSize {
		a.stats.Dropped++
		a.mu.Unlock()
		return false
	}
	a.buffer = append(a.buffer, item)
	full := len(a.buffer) >= a.opts.BatchSize
	a.mu.Unlock()
	if full {
		select {
		case a.wake <- struct{}{}:
		default:
		}
	}
	return true
}

func (a *AsyncSession) invalid(err error) error {
	a.mu.Lock()
	a.stats.Invalid++
	a.mu.Unlock()
	return err
}

// UpdateState buffers a state update. The map is encoded now: changing it after the call
// does not change what is sent.
func (a *AsyncSession) UpdateState(_ context.Context, state map[string]any) error {
	body, err := stateBody(state, time.Time{})
	if err != nil {
		return a.invalid(err)
	}
	return a.push("state", body)
}

// LogEvent buffers an event with data.
func (a *AsyncSession) LogEvent(ctx context.Context, name string, data map[string]any) error {
	return a.LogEventWith(ctx, Event{Name: name, Data: data})
}

// LogEventWith buffers an event.
func (a *AsyncSession) LogEventWith(_ context.Context, e Event) error {
	body, err := eventBody(e)
	if err != nil {
		return a.invalid(err)
	}
	return a.push("event", body)
}

// LogMetricWith buffers a metric point.
func (a *AsyncSession) LogMetricWith(_ context.Context, m Metric) error {
	m = a.Client.totalCounter(a.ID, m)
	body, err := metricBody(m)
	if err != nil {
		return a.invalid(err)
	}
	return a.push("metric", body)
}

// LogGauge buffers a gauge point.
func (a *AsyncSession) LogGauge(ctx context.Context, name string, value float64, tags ...string) error {
	return a.LogMetricWith(ctx, gaugeMetric(name, value, tags))
}

// LogCounter buffers a counter increment.
func (a *AsyncSession) LogCounter(ctx context.Context, name string, delta float64, tags ...string) error {
	return a.LogMetricWith(ctx, counterMetric(name, delta, tags))
}

// LogHistogram buffers a histogram observation.
func (a *AsyncSession) LogHistogram(ctx context.Context, name string, value float64, buckets []float64, tags ...string) error {
	return a.LogMetricWith(ctx, histogramMetric(name, value, buckets, tags))
}

// LogTimer buffers a duration.
func (a *AsyncSession) LogTimer(ctx context.Context, name string, d time.Duration, tags ...string) error {
	return a.LogMetricWith(ctx, timerMetric(name, d, tags))
}

// StartTimer starts timing; Stop buffers the timer metric.
func (a *AsyncSession) StartTimer(name string, tags ...string) *TimerHandle {
	return &TimerHandle{log: a.LogMetricWith, name: name, tags: tags, started: time.Now()}
}

// LogException buffers err as an exception event with the caller's stack (taken now).
func (a *AsyncSession) LogException(ctx context.Context, err error, data map[string]any) error {
	if err == nil {
		return nil
	}
	return a.LogEventWith(ctx, exceptionEvent(ExceptionFromError(err, 1), Error, data))
}

// Heartbeat buffers a heartbeat (and tells the session's monitor).
func (a *AsyncSession) Heartbeat(_ context.Context) error {
	if m := a.currentMonitor(); m != nil {
		m.Beat()
	}
	return a.push("heartbeat", map[string]any{"timestamp": seconds(time.Time{})})
}

// push freezes the body (JSON now, so later changes to the caller's maps are not sent).
func (a *AsyncSession) push(kind string, body map[string]any) error {
	body["kind"] = kind
	frozen, err := json.Marshal(body)
	if err != nil {
		return a.invalid(fmt.Errorf("datacat: cannot encode the %s: %w", kind, err))
	}
	if !a.enqueue(frozen) {
		return ErrDropped
	}
	return nil
}

// ErrDropped is returned when the buffer was full and the call was dropped (counted).
var ErrDropped = errors.New("datacat: buffer full, call dropped")

func (a *AsyncSession) ship() {
	defer close(a.done)
	timer := time.NewTimer(a.opts.FlushInterval)
	defer timer.Stop()
	for {
		a.mu.Lock()
		if len(a.buffer) == 0 {
			if a.closing {
				a.mu.Unlock()
				return
			}
			a.mu.Unlock()
			select {
			case <-a.wake:
			case <-timer.C:
				timer.Reset(a.opts.FlushInterval)
			}
			continue
		}
		n := len(a.buffer)
		if n > a.opts.BatchSize {
			n = a.opts.BatchSize
		}
		items := append([]json.RawMessage(nil), a.buffer[:n]...)
		a.buffer = append(a.buffer[:0:0], a.buffer[n:]...)
		a.busy = true
		a.room.Broadcast()
		a.mu.Unlock()

		sent, failed, invalid := a.send(items)

		a.mu.Lock()
		a.stats.Sent += sent
		a.stats.Failed += failed
		a.stats.Invalid += invalid
		if sent > 0 {
			a.stats.Batches++
		}
		a.busy = false
		a.idle.Broadcast()
		a.mu.Unlock()
	}
}

// send posts one batch; returns how many items were accepted, lost and refused.
func (a *AsyncSession) send(items []json.RawMessage) (sent, failed, invalid int64) {
	ctx, cancel := context.WithTimeout(context.Background(), a.Client.opts.Timeout)
	defer cancel()
	_, err := a.Client.sessionCall(ctx, "/batch", a.ID, map[string]any{"items": items})
	if err == nil {
		return int64(len(items)), 0, 0
	}
	var apiErr *APIError
	if errors.As(err, &apiErr) && apiErr.Code == "invalid_items" {
		accepted, _ := apiErr.Body["accepted"].(float64)
		rejected, _ := apiErr.Body["rejected"].([]any)
		return int64(accepted), int64(len(items)) - int64(accepted) - int64(len(rejected)), int64(len(rejected))
	}
	return 0, int64(len(items)), 0
}

// Flush waits until every call made before it was sent (or counted as lost), or ctx ends.
func (a *AsyncSession) Flush(ctx context.Context) error {
	select {
	case a.wake <- struct{}{}:
	default:
	}
	finished := make(chan struct{})
	go func() {
		a.mu.Lock()
		for len(a.buffer) > 0 || a.busy {
			a.idle.Wait()
		}
		a.mu.Unlock()
		close(finished)
	}()
	select {
	case <-finished:
		return nil
	case <-ctx.Done():
		a.mu.Lock()
		a.idle.Broadcast() // let the waiter re-check; it exits when the shipper is done
		a.mu.Unlock()
		return ctx.Err()
	}
}

// Stats counts what happened to the calls so far.
func (a *AsyncSession) Stats() AsyncStats {
	a.mu.Lock()
	defer a.mu.Unlock()
	stats := a.stats
	stats.Queued = len(a.buffer)
	return stats
}

// End flushes (within ctx), stops the shipper, and ends the session. Calls still buffered
// when ctx ends are counted as failed.
func (a *AsyncSession) End(ctx context.Context) error {
	return a.close(ctx, "", false)
}

// Crash flushes and ends the session as crashed.
func (a *AsyncSession) Crash(ctx context.Context, reason string) error {
	return a.close(ctx, reason, true)
}

func (a *AsyncSession) close(ctx context.Context, reason string, crashed bool) error {
	flushErr := a.Flush(ctx)
	a.mu.Lock()
	a.closing = true
	if flushErr != nil {
		a.stats.Failed += int64(len(a.buffer))
		a.buffer = nil
	}
	a.room.Broadcast()
	a.mu.Unlock()
	select {
	case a.wake <- struct{}{}:
	default:
	}
	<-a.done
	if err := a.Session.end(ctx, reason, crashed); err != nil {
		return err
	}
	return flushErr
}

// RecoverPanic, deferred, reports a panic (flushing what was buffered first) and panics
// again with the same value.
func (a *AsyncSession) RecoverPanic() {
	value := recover()
	if value == nil {
		return
	}
	exc := ExceptionFromPanic(value)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = a.LogEventWith(ctx, exceptionEvent(exc, Critical, map[string]any{"uncaught": true}))
	_ = a.Crash(ctx, "panic: "+exc.Message)
	panic(value)
}

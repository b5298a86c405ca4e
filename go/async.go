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
// what was logged; End flushes and ends the session, all within one deadline. Calls after
// End, or on a session that could not be registered, return ErrEnded or ErrNotRegistered
// and are counted as failed.
type AsyncSession struct {
	*Session
	sessionCalls
	opts AsyncOptions

	mu      sync.Mutex
	room    *sync.Cond
	idle    *sync.Cond
	buffer  []asyncItem
	busy    bool
	closing bool
	// refusing is why calls are refused now (nil: they are taken).
	refusing error
	// register holds the product and version of a session still to be registered by the
	// shipper (StartAsyncSession), before it sends anything.
	register    []string
	registering bool
	// inFlight is how many items the shipper is sending now.
	inFlight  int
	abandoned bool
	stats     AsyncStats
	wake      chan struct{}
	done      chan struct{}
}

// asyncItem is one buffered call: a /batch item, or a control call (heartbeat monitoring)
// made in order with the others.
type asyncItem struct {
	body    json.RawMessage
	control func(context.Context) error
}

// ErrNotRegistered is returned (and counted) for calls on a session that could not be
// registered.
var ErrNotRegistered = errors.New("datacat: the session could not be registered")

// StartAsyncSession returns at once with a session whose calls are buffered: its id is
// minted here and it is registered by the shipping goroutine, so starting it costs no
// request either. Calls made meanwhile are sent after the registration.
func (c *Client) StartAsyncSession(product, version string, opts AsyncOptions) *AsyncSession {
	session := newSession(c, newSessionID())
	a := newAsyncSession(session, opts, []string{product, version})
	if product == "" || version == "" {
		a.refusing = errors.New("datacat: product and version are required to create a session")
		a.register, a.registering = nil, false
	} else {
		c.track(a)
	}
	go a.ship()
	return a
}

// NewAsyncSession wraps s; calls through it are buffered and shipped in batches.
func NewAsyncSession(s *Session, opts AsyncOptions) *AsyncSession {
	a := newAsyncSession(s, opts, nil)
	// Close ends it through the buffer, which is flushed first.
	s.Client.untrack(s)
	s.Client.track(a)
	go a.ship()
	return a
}

func newAsyncSession(s *Session, opts AsyncOptions, register []string) *AsyncSession {
	if opts.QueueSize <= 0 {
		opts.QueueSize = 10000
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = 1000
	}
	if opts.FlushInterval <= 0 {
		opts.FlushInterval = 50 * time.Millisecond
	}
	a := &AsyncSession{Session: s, opts: opts, wake: make(chan struct{}, 1), done: make(chan struct{}),
		register: register, registering: register != nil}
	a.sessionCalls = sessionCalls{a}
	a.room = sync.NewCond(&a.mu)
	a.idle = sync.NewCond(&a.mu)
	return a
}

// enqueue appends one encoded item; an error when it was not taken (counted).
func (a *AsyncSession) enqueue(item asyncItem) error {
	a.mu.Lock()
	for len(a.buffer) >= a.opts.QueueSize && a.opts.Block && a.refusing == nil {
		a.room.Wait()
	}
	if a.refusing != nil {
		err := a.refusing
		a.stats.Failed++
		a.mu.Unlock()
		undelivered.failed.Add(1)
		return err
	}
	if len(a.buffer) >= a.opts.QueueSize {
		a.stats.Dropped++
		a.mu.Unlock()
		undelivered.dropped.Add(1)
		return ErrDropped
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
	return nil
}

func (a *AsyncSession) invalid(err error) error {
	a.mu.Lock()
	a.stats.Invalid++
	a.mu.Unlock()
	undelivered.invalid.Add(1)
	return err
}

// UpdateState buffers a state update. The map is encoded now: changing it after the call
// does not change what is sent.
func (a *AsyncSession) UpdateState(_ context.Context, state map[string]any) error {
	if a == nil {
		return ErrNilSession
	}
	body, err := stateBody(state, time.Time{})
	if err != nil {
		return a.invalid(err)
	}
	return a.push("state", body)
}

// LogEventWith buffers an event.
func (a *AsyncSession) LogEventWith(_ context.Context, e Event) error {
	if a == nil {
		return ErrNilSession
	}
	body, err := eventBody(e)
	if err != nil {
		return a.invalid(err)
	}
	return a.push("event", body)
}

// LogMetricWith buffers a metric point.
func (a *AsyncSession) LogMetricWith(_ context.Context, m Metric) error {
	if a == nil {
		return ErrNilSession
	}
	m = a.Client.totalCounter(a.ID, m)
	body, err := metricBody(m)
	if err != nil {
		return a.invalid(err)
	}
	return a.push("metric", body)
}

// Heartbeat buffers a heartbeat (and tells the session's monitor).
func (a *AsyncSession) Heartbeat(_ context.Context) error {
	if a == nil {
		return ErrNilSession
	}
	if m := a.currentMonitor(); m != nil {
		m.Beat()
	}
	return a.push("heartbeat", heartbeatBody())
}

// push freezes the body (JSON now, so later changes to the caller's maps are not sent).
func (a *AsyncSession) push(kind string, body map[string]any) error {
	body["kind"] = kind
	frozen, err := json.Marshal(body)
	if err != nil {
		return a.invalid(fmt.Errorf("datacat: cannot encode the %s: %w", kind, err))
	}
	return a.enqueue(asyncItem{body: frozen})
}

// ErrDropped is returned when the buffer was full and the call was dropped (counted).
var ErrDropped = errors.New("datacat: buffer full, call dropped")

// registerFirst registers a session started by StartAsyncSession.
func (a *AsyncSession) registerFirst() {
	// The transport's own timeout bounds it (a timeout then counts against the peer).
	_, err := a.Client.register(context.Background(), a.register[0], a.register[1], a.ID)
	a.mu.Lock()
	a.registering = false
	if err != nil && a.refusing == nil {
		a.refusing = fmt.Errorf("%w: %v", ErrNotRegistered, err)
	}
	a.idle.Broadcast()
	a.mu.Unlock()
	if err != nil {
		a.Client.untrack(a)
	}
}

func (a *AsyncSession) ship() {
	defer close(a.done)
	if a.register != nil {
		a.registerFirst()
	}
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
		// A batch of calls up to the next control call; a control call alone.
		n := 1
		if a.buffer[0].control == nil {
			for n < len(a.buffer) && n < a.opts.BatchSize && a.buffer[n].control == nil {
				n++
			}
		}
		taken := append([]asyncItem(nil), a.buffer[:n]...)
		a.buffer = append(a.buffer[:0:0], a.buffer[n:]...)
		a.busy = true
		a.inFlight = n
		a.room.Broadcast()
		notRegistered := errors.Is(a.refusing, ErrNotRegistered)
		a.mu.Unlock()

		var sent, failed, invalid int64
		switch {
		case notRegistered:
			failed = int64(n)
		case taken[0].control != nil:
			sent, failed = a.runControl(taken[0].control)
		default:
			items := make([]json.RawMessage, n)
			for i, item := range taken {
				items[i] = item.body
			}
			sent, failed, invalid = a.send(items)
		}

		a.mu.Lock()
		if a.abandoned {
			// End counted these as failed when it stopped waiting for them.
			a.stats.Failed -= int64(n)
			undelivered.failed.Add(-int64(n))
			a.abandoned = false
		}
		a.stats.Sent += sent
		a.stats.Failed += failed
		a.stats.Invalid += invalid
		undelivered.failed.Add(failed)
		undelivered.invalid.Add(invalid)
		if sent > 0 {
			a.stats.Batches++
		}
		a.busy = false
		a.inFlight = 0
		a.idle.Broadcast()
		a.mu.Unlock()
	}
}

// runControl makes one queued control call; (1, 0) when it went through.
func (a *AsyncSession) runControl(call func(context.Context) error) (sent, failed int64) {
	if err := call(context.Background()); err != nil {
		return 0, 1
	}
	return 1, 0
}

// control queues a call to the daemon behind the calls made before it (and the session's
// registration).
func (a *AsyncSession) control(call func(context.Context) error) error {
	return a.enqueue(asyncItem{control: call})
}

// StartHeartbeatMonitor starts hang detection here at once; the daemon is told in order
// with the other calls.
func (a *AsyncSession) StartHeartbeatMonitor(_ context.Context, timeout, interval time.Duration) (*HeartbeatMonitor, error) {
	if a == nil {
		return nil, ErrNilSession
	}
	a.mu.Lock()
	refusing := a.refusing
	a.mu.Unlock()
	if refusing != nil {
		return nil, refusing
	}
	m, err := a.Session.watch(timeout, interval)
	if err != nil {
		return nil, err
	}
	return m, a.control(func(ctx context.Context) error {
		return a.Client.StartHeartbeatMonitor(ctx, a.ID, timeout)
	})
}

// StopHeartbeatMonitor stops hang detection (the daemon is told in order).
func (a *AsyncSession) StopHeartbeatMonitor(context.Context) error {
	if a == nil {
		return ErrNilSession
	}
	a.replaceMonitor(nil)
	return a.control(func(ctx context.Context) error { return a.Client.StopHeartbeatMonitor(ctx, a.ID) })
}

// PauseHeartbeat suspends hang detection (the daemon is told in order).
func (a *AsyncSession) PauseHeartbeat(context.Context) error {
	if a == nil {
		return ErrNilSession
	}
	a.pauseMonitor()
	return a.control(func(ctx context.Context) error { return a.Client.PauseHeartbeat(ctx, a.ID) })
}

// ResumeHeartbeat restarts hang detection's clock (the daemon is told in order).
func (a *AsyncSession) ResumeHeartbeat(context.Context) error {
	if a == nil {
		return ErrNilSession
	}
	a.resumeMonitor()
	return a.control(func(ctx context.Context) error { return a.Client.ResumeHeartbeat(ctx, a.ID) })
}

// send posts one batch; returns how many items were accepted, lost and refused.
func (a *AsyncSession) send(items []json.RawMessage) (sent, failed, invalid int64) {
	ctx := context.Background() // bounded by the transport's own timeout
	body := map[string]any{"items": items}
	if a.Client.daemon != nil {
		body["session_id"] = a.ID
	}
	_, err := a.Client.call(ctx, "POST", "/batch", a.ID, body)
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
	if a == nil {
		return ErrNilSession
	}
	select {
	case a.wake <- struct{}{}:
	default:
	}
	finished := make(chan struct{})
	go func() {
		a.mu.Lock()
		for len(a.buffer) > 0 || a.busy || a.registering {
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
	if a == nil {
		return AsyncStats{}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	stats := a.stats
	stats.Queued = len(a.buffer)
	return stats
}

// end flushes, stops the shipper and ends the session, all within the context's deadline
// (the client's EndTimeout when it has none).
func (a *AsyncSession) end(ctx context.Context, reason string, crashed bool) error {
	ctx, cancel := withDefaultTimeout(ctx, a.Client.opts.EndTimeout)
	defer cancel()
	a.mu.Lock()
	if a.closing {
		a.mu.Unlock()
		return nil
	}
	a.closing = true
	a.Client.untrack(a)
	registered := !errors.Is(a.refusing, ErrNotRegistered)
	if a.refusing == nil {
		a.refusing = ErrEnded
	}
	a.mu.Unlock()
	// Flush until shortly before the deadline: the rest is for the end request.
	deadline, _ := ctx.Deadline()
	reserve := time.Until(deadline) / 4
	if reserve > endAnswerMargin {
		reserve = endAnswerMargin
	}
	flushCtx, cancelFlush := context.WithDeadline(ctx, deadline.Add(-reserve))
	flushErr := a.Flush(flushCtx)
	cancelFlush()
	a.mu.Lock()
	registered = registered && !errors.Is(a.refusing, ErrNotRegistered) // it may have failed meanwhile
	left := int64(len(a.buffer))
	a.buffer = nil
	if a.busy {
		// Not known to have arrived: failed, unless its request still succeeds.
		a.abandoned = true
		left += int64(a.inFlight)
	}
	a.stats.Failed += left
	undelivered.failed.Add(left)
	a.room.Broadcast()
	a.mu.Unlock()
	select {
	case a.wake <- struct{}{}:
	default:
	}
	if !registered {
		a.Session.markEnded()
		return ErrNotRegistered
	}
	if err := a.Session.end(ctx, reason, crashed); err != nil {
		return err
	}
	return flushErr
}

// calls is where this session's shared calls go: a nil *AsyncSession's answer
// ErrNilSession. They are defined here too, as on Session: this type embeds both a
// *Session and its own sessionCalls, and its own must win.
func (a *AsyncSession) calls() *sessionCalls {
	if a == nil {
		return &sessionCalls{core: nilSession{}}
	}
	return &a.sessionCalls
}

// LogEvent queues an event with data.
func (a *AsyncSession) LogEvent(ctx context.Context, name string, data map[string]any) error {
	return a.calls().LogEvent(ctx, name, data)
}

// LogGauge queues a value that goes up and down.
func (a *AsyncSession) LogGauge(ctx context.Context, name string, value float64, tags ...string) error {
	return a.calls().LogGauge(ctx, name, value, tags...)
}

// LogCounter queues an addition to a running total.
func (a *AsyncSession) LogCounter(ctx context.Context, name string, delta float64, tags ...string) error {
	return a.calls().LogCounter(ctx, name, delta, tags...)
}

// LogHistogram queues one observation of a distribution.
func (a *AsyncSession) LogHistogram(ctx context.Context, name string, value float64, buckets []float64, tags ...string) error {
	return a.calls().LogHistogram(ctx, name, value, buckets, tags...)
}

// LogTimer queues a measured duration in seconds.
func (a *AsyncSession) LogTimer(ctx context.Context, name string, d time.Duration, tags ...string) error {
	return a.calls().LogTimer(ctx, name, d, tags...)
}

// LogException queues err as an exception event with the caller's stack (see
// Session.LogException).
func (a *AsyncSession) LogException(ctx context.Context, err error, data map[string]any) error {
	return a.calls().logException(ctx, err, data)
}

// End flushes and ends the session normally.
func (a *AsyncSession) End(ctx context.Context) error { return a.calls().End(ctx) }

// Crash flushes and ends the session as crashed with a reason.
func (a *AsyncSession) Crash(ctx context.Context, reason string) error {
	return a.calls().Crash(ctx, reason)
}

// StartTimer starts timing; Stop queues the timer metric.
func (a *AsyncSession) StartTimer(name string, tags ...string) *TimerHandle {
	return a.calls().StartTimer(name, tags...)
}

// Finish, deferred: see Session.Finish.
func (a *AsyncSession) Finish() {
	if value := recover(); value != nil {
		a.calls().target().reportPanic(value)
		panic(value)
	}
	_ = a.End(context.Background())
}

// RecoverPanic, deferred: see Session.RecoverPanic.
func (a *AsyncSession) RecoverPanic() {
	value := recover()
	if value == nil {
		return
	}
	a.calls().target().reportPanic(value)
	panic(value)
}

func (a *AsyncSession) reportPanic(value any) {
	exc := ExceptionFromPanic(value)
	_ = a.LogEventWith(context.Background(), exceptionEvent(exc, Critical, map[string]any{"uncaught": true}))
	_ = a.Crash(context.Background(), "panic: "+exc.Message)
}

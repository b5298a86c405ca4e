package datacat

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// HeartbeatMonitor watches one session's heartbeats. The daemon decides that the session
// is hung (its clock survives the application); the monitor tells it the timeout and, since
// only the process can see where it is stuck, sends the stacks of all goroutines as an
// application_hang_stacks event when a heartbeat is overdue (once per hang).
type HeartbeatMonitor struct {
	session  *Session
	timeout  time.Duration
	interval time.Duration

	mu       sync.Mutex
	last     time.Time
	paused   bool
	reported bool
	hangs    int
	stop     chan struct{}
	stopped  chan struct{}
}

// StartHeartbeatMonitor starts hang detection with the timeout, checking every interval
// (0: a fifth of the timeout). A second call replaces the first monitor.
func (s *Session) StartHeartbeatMonitor(ctx context.Context, timeout, interval time.Duration) (*HeartbeatMonitor, error) {
	if err := s.refused(); err != nil {
		return nil, err
	}
	if timeout <= 0 {
		return nil, fmt.Errorf("datacat: heartbeat timeout must be positive, got %v", timeout)
	}
	if err := s.Client.StartHeartbeatMonitor(ctx, s.ID, timeout); err != nil {
		return nil, err
	}
	return s.watch(timeout, interval)
}

// watch starts this process's side of hang detection: the monitor goroutine.
func (s *Session) watch(timeout, interval time.Duration) (*HeartbeatMonitor, error) {
	if timeout <= 0 {
		return nil, fmt.Errorf("datacat: heartbeat timeout must be positive, got %v", timeout)
	}
	if interval <= 0 {
		interval = timeout / 5
	}
	m := &HeartbeatMonitor{session: s, timeout: timeout, interval: interval, last: time.Now(),
		stop: make(chan struct{}), stopped: make(chan struct{})}
	s.replaceMonitor(m)
	go m.run()
	return m, nil
}

// StopHeartbeatMonitor stops hang detection.
func (s *Session) StopHeartbeatMonitor(ctx context.Context) error {
	if err := s.refused(); err != nil {
		return err
	}
	s.replaceMonitor(nil)
	return s.Client.StopHeartbeatMonitor(ctx, s.ID)
}

// replaceMonitor makes m (nil: none) the session's monitor and stops the one it replaces.
func (s *Session) replaceMonitor(m *HeartbeatMonitor) {
	s.mu.Lock()
	previous := s.monitor
	s.monitor = m
	s.mu.Unlock()
	if previous != nil {
		previous.Stop()
	}
}

// PauseHeartbeat suspends hang detection (here and at the daemon).
func (s *Session) PauseHeartbeat(ctx context.Context) error {
	if err := s.refused(); err != nil {
		return err
	}
	s.pauseMonitor()
	return s.Client.PauseHeartbeat(ctx, s.ID)
}

// ResumeHeartbeat restarts hang detection's clock.
func (s *Session) ResumeHeartbeat(ctx context.Context) error {
	if err := s.refused(); err != nil {
		return err
	}
	s.resumeMonitor()
	return s.Client.ResumeHeartbeat(ctx, s.ID)
}

func (s *Session) pauseMonitor() {
	if m := s.currentMonitor(); m != nil {
		m.mu.Lock()
		m.paused = true
		m.mu.Unlock()
	}
}

func (s *Session) resumeMonitor() {
	if m := s.currentMonitor(); m != nil {
		m.mu.Lock()
		m.paused, m.reported, m.last = false, false, time.Now()
		m.mu.Unlock()
	}
}

func (s *Session) currentMonitor() *HeartbeatMonitor {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.monitor
}

// Beat records a heartbeat (Session.Heartbeat calls it and sends the heartbeat).
func (m *HeartbeatMonitor) Beat() {
	m.mu.Lock()
	m.last, m.reported = time.Now(), false
	m.mu.Unlock()
}

// Hangs is how many hangs the monitor reported.
func (m *HeartbeatMonitor) Hangs() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.hangs
}

// Stop ends the monitor's goroutine (waiting at most a second for it).
func (m *HeartbeatMonitor) Stop() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	m.stopWithin(ctx)
}

// stopWithin ends the monitor's goroutine, waiting for it until ctx ends: a hang report in
// flight is not waited for past an ending's deadline.
func (m *HeartbeatMonitor) stopWithin(ctx context.Context) {
	m.mu.Lock()
	select {
	case <-m.stop:
	default:
		close(m.stop)
	}
	m.mu.Unlock()
	select {
	case <-m.stopped:
	case <-ctx.Done():
	}
}

func (m *HeartbeatMonitor) run() {
	defer close(m.stopped)
	ticker := time.NewTicker(m.interval)
	defer ticker.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-ticker.C:
		}
		m.mu.Lock()
		overdue := time.Since(m.last)
		due := !m.paused && !m.reported && overdue > m.timeout
		if due {
			m.reported = true
			m.hangs++
		}
		m.mu.Unlock()
		if due {
			m.report(overdue)
		}
	}
}

func (m *HeartbeatMonitor) report(overdue time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = m.session.LogEventWith(ctx, Event{
		Name: "application_hang_stacks", Level: Error, Category: "hang", Group: "datacat",
		Message: fmt.Sprintf("no heartbeat for %.0f s (timeout %.0f s)", overdue.Seconds(), m.timeout.Seconds()),
		Data: map[string]any{
			"seconds_since_heartbeat": overdue.Seconds(),
			"timeout_seconds":         m.timeout.Seconds(),
			"goroutines":              AllStacks(),
		},
	})
}

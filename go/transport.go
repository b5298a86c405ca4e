package datacat

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// transport sends JSON requests over kept-alive connections to one base URL. A peer that
// fails to answer (refused, reset, timed out) is left alone for a backoff, 1 s after the
// first failure and doubling up to 30 s, during which requests fail at once with
// ErrBackoff: a dead or black-holed server costs the application one timeout, not one
// per call.
type transport struct {
	base    string
	token   string
	timeout time.Duration
	http    *http.Client
	backoff backoff
}

// ErrBackoff is returned, wrapped in a TransportError, for a request not sent because its
// peer failed recently and is left alone for a while.
var ErrBackoff = errors.New("the peer failed recently; not tried until its backoff is over")

const (
	firstBackoff = time.Second
	maxBackoff   = 30 * time.Second
)

// backoff counts a peer's failures in a row and says until when it is left alone.
type backoff struct {
	mu       sync.Mutex
	failures int
	retryAt  time.Time
}

func (b *backoff) check() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if wait := time.Until(b.retryAt); wait > 0 {
		return fmt.Errorf("%w (%d failure(s) in a row; next try in %.1f s)", ErrBackoff, b.failures, wait.Seconds())
	}
	return nil
}

func (b *backoff) failed() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.failures++
	shift := b.failures - 1
	if shift > 5 {
		shift = 5
	}
	wait := firstBackoff << uint(shift)
	if wait > maxBackoff {
		wait = maxBackoff
	}
	b.retryAt = time.Now().Add(wait)
}

func (b *backoff) succeeded() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.failures = 0
	b.retryAt = time.Time{}
}

func newTransport(base, token string, timeout time.Duration) *transport {
	// http.DefaultTransport's settings, proxies from the environment (HTTP_PROXY,
	// HTTPS_PROXY, NO_PROXY) among them: they apply to the query service, never to the
	// daemon, which is on loopback.
	h := http.DefaultTransport.(*http.Transport).Clone()
	h.MaxIdleConns = 4
	h.MaxIdleConnsPerHost = 4
	h.IdleConnTimeout = 90 * time.Second
	h.DisableCompression = true
	return &transport{
		base:    base,
		token:   token,
		timeout: timeout,
		http:    &http.Client{Transport: h},
	}
}

// do sends one request (body: nil, raw JSON bytes or a value to encode) and decodes the
// JSON answer. The context bounds the whole exchange; without a deadline, the transport's
// timeout applies.
func (t *transport) do(ctx context.Context, method, path string, body any) (map[string]any, error) {
	// A request cut short by the caller's own deadline says nothing about the peer.
	cutShort := false
	if deadline, ok := ctx.Deadline(); ok {
		cutShort = time.Until(deadline) < t.timeout
	} else if t.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, t.timeout)
		defer cancel()
	}
	var reader io.Reader
	if body != nil {
		data, ok := body.([]byte)
		if !ok {
			var err error
			if data, err = json.Marshal(body); err != nil {
				return nil, fmt.Errorf("datacat: %s %s: cannot encode the body: %w", method, path, err)
			}
		}
		reader = bytes.NewReader(data)
	}
	request, err := http.NewRequestWithContext(ctx, method, t.base+path, reader)
	if err != nil {
		return nil, fmt.Errorf("datacat: %s %s: %w", method, path, err)
	}
	request.Header.Set("Accept", "application/json")
	request.Header.Set("User-Agent", "datacat-go")
	if body != nil {
		request.Header.Set("Content-Type", "application/json")
	}
	if t.token != "" {
		request.Header.Set("Authorization", "Bearer "+t.token)
	}
	if err := t.backoff.check(); err != nil {
		return nil, &TransportError{Op: method + " " + t.base + path, Err: err}
	}
	response, err := t.http.Do(request)
	if err != nil {
		if ctx.Err() == nil || (errors.Is(ctx.Err(), context.DeadlineExceeded) && !cutShort) {
			t.backoff.failed()
		}
		return nil, &TransportError{Op: method + " " + t.base + path, Err: err}
	}
	defer response.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(response.Body, 16<<20))
	if err != nil {
		t.backoff.failed()
		return nil, &TransportError{Op: "reading the answer to " + method + " " + path, Err: err}
	}
	t.backoff.succeeded()
	var answer map[string]any
	if len(bytes.TrimSpace(raw)) > 0 {
		if err := json.Unmarshal(raw, &answer); err != nil && response.StatusCode < 300 {
			return nil, &TransportError{Op: method + " " + path, Err: fmt.Errorf("answer is not JSON: %.200q", raw)}
		}
	}
	if response.StatusCode >= 300 {
		apiErr := &APIError{Status: response.StatusCode, Code: fmt.Sprintf("http_%d", response.StatusCode), Message: string(raw), Body: answer}
		if code, ok := answer["error"].(string); ok {
			apiErr.Code = code
		}
		if message, ok := answer["message"].(string); ok {
			apiErr.Message = message
		}
		return nil, apiErr
	}
	if answer == nil {
		answer = map[string]any{}
	}
	return answer, nil
}

func (t *transport) close() {
	t.http.CloseIdleConnections()
}

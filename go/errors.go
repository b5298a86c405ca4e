package datacat

import (
	"errors"
	"fmt"
)

// ErrNoSession is returned for calls on a session id that is empty.
var ErrNoSession = errors.New("datacat: no session id")

// ErrClosed is returned by calls on a closed client or an ended AsyncSession.
var ErrClosed = errors.New("datacat: closed")

// APIError is an HTTP error answer from the daemon or the query service: its
// {"error", "message"} body and status.
type APIError struct {
	Status  int
	Code    string
	Message string
	// Body is the whole decoded answer (for /batch: accepted and rejected items).
	Body map[string]any
}

func (e *APIError) Error() string {
	return fmt.Sprintf("datacat: HTTP %d %s: %s", e.Status, e.Code, e.Message)
}

// TransportError means the request got no HTTP answer (refused, reset, timed out).
type TransportError struct {
	Op  string
	Err error
}

func (e *TransportError) Error() string { return fmt.Sprintf("datacat: %s: %v", e.Op, e.Err) }

func (e *TransportError) Unwrap() error { return e.Err }

package datacat

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// transport sends JSON requests over kept-alive connections to one base URL.
type transport struct {
	base    string
	token   string
	timeout time.Duration
	http    *http.Client
}

func newTransport(base, token string, timeout time.Duration) *transport {
	return &transport{
		base:    base,
		token:   token,
		timeout: timeout,
		http: &http.Client{Transport: &http.Transport{
			MaxIdleConns:        4,
			MaxIdleConnsPerHost: 4,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		}},
	}
}

// do sends one request (body: nil, raw JSON bytes or a value to encode) and decodes the
// JSON answer. The context bounds the whole exchange; without a deadline, the transport's
// timeout applies.
func (t *transport) do(ctx context.Context, method, path string, body any) (map[string]any, error) {
	if _, ok := ctx.Deadline(); !ok && t.timeout > 0 {
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
	response, err := t.http.Do(request)
	if err != nil {
		return nil, &TransportError{Op: method + " " + t.base + path, Err: err}
	}
	defer response.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(response.Body, 16<<20))
	if err != nil {
		return nil, &TransportError{Op: "reading the answer to " + method + " " + path, Err: err}
	}
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

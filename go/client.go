package datacat

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Default bounds of calls: a loopback daemon answers in well under a millisecond, the query
// service over a network in a few. End is bounded as a whole: with a daemon the data is in
// its spool when /end answers (JetStream's acknowledgement is waited for only while time is
// left). Reads wait up to 2 s in the query service for the writer's last batch.
const (
	DefaultTimeout          = 2 * time.Second
	DefaultDirectTimeout    = 5 * time.Second
	DefaultEndTimeout       = 2 * time.Second
	DefaultDirectEndTimeout = 3 * time.Second
	DefaultReadTimeout      = 5 * time.Second
	endAnswerMargin         = 500 * time.Millisecond
	closedWithoutEndReason  = "client closed without calling End()"
	envQueryURL             = "DATACAT_QUERY_URL"
)

// Options configure a Client. The zero value talks to a daemon it starts itself.
type Options struct {
	// ServerURL is the query service (default $DATACAT_QUERY_URL). Without a daemon the
	// calls go there; with one, the daemon reads sessions back from it (GetSession).
	ServerURL string
	// NoDaemon sends calls to ServerURL's direct-write endpoints instead of a daemon.
	NoDaemon bool
	// DaemonPort is "auto" (default) or a fixed loopback port for the daemon.
	DaemonPort string
	// DaemonBinary overrides FindDaemonBinary.
	DaemonBinary string
	// NATSURL is handed to the daemon (default $DATACAT_NATS_URL).
	NATSURL string
	// DaemonArgs are extra command-line flags for the daemon.
	DaemonArgs []string
	// Token is the write token of the query service (default $DATACAT_WRITE_TOKEN).
	Token string
	// Timeout bounds each call whose context has no deadline (default 2 s with a daemon,
	// 5 s without).
	Timeout time.Duration
	// EndTimeout bounds ending a session as a whole, requests included, when the context
	// has no deadline; Close uses it for all the sessions it ends (default 2 s with a
	// daemon, 3 s without).
	EndTimeout time.Duration
	// ReadTimeout bounds GetSession (default 5 s).
	ReadTimeout time.Duration
	// Environment is where the program runs ("production", "ci", ...; default
	// $DATACAT_ENVIRONMENT), and Tags are free labels: every session of the client carries
	// them, and the API filters on them (environment=, tag=key:value).
	Environment string
	Tags        map[string]string
}

// ClientStats counts a client's calls (an AsyncSession counts its own too).
type ClientStats struct {
	Sent    int64 // accepted
	Failed  int64 // not delivered: lost in transport, or not sendable (ended, never registered)
	Invalid int64 // refused as invalid
}

// Client sends a process's sessions to a daemon or to the query service. It is safe for
// concurrent use. Close it when done: a daemon it started then flushes and exits.
type Client struct {
	opts      Options
	daemon    *DaemonManager
	mu        sync.Mutex
	transport *transport
	closed    bool
	totals    map[string]float64 // counter totals, without a daemon only
	// lastSeq is, per session, the last batch a write of it was published as: a read
	// names it to see its own writes.
	lastSeq map[string]uint64
	// open are the sessions started and not ended; Close ends them.
	open map[ender]struct{}
	// broken is why the client cannot send (a bad URL given to NewClient): every call
	// returns it rather than panicking.
	broken error

	sent, failed, invalid atomic.Int64
}

// NewClient returns a client that talks to the query service at baseURL directly (no
// daemon): nothing watches the process, so a hard crash is only seen when ingest marks the
// session lost.
func NewClient(baseURL string) *Client {
	c, err := NewClientWithOptions(context.Background(), Options{ServerURL: baseURL, NoDaemon: true})
	if err != nil {
		c.broken = err
	}
	return c
}

// NewClientWithDaemon starts a datacat-daemon beside this process ("auto" or a port) and
// returns a client that talks to it.
func NewClientWithDaemon(serverURL, daemonPort string) (*Client, error) {
	return NewClientWithOptions(context.Background(), Options{ServerURL: serverURL, DaemonPort: daemonPort})
}

// NewClientWithOptions returns a client configured by opts (starting its daemon, unless
// NoDaemon).
func NewClientWithOptions(ctx context.Context, opts Options) (*Client, error) {
	if opts.ServerURL == "" {
		opts.ServerURL = os.Getenv(envQueryURL)
	}
	if opts.Environment == "" {
		opts.Environment = strings.TrimSpace(os.Getenv("DATACAT_ENVIRONMENT"))
	}
	labelsErr := keepLabels(&opts)
	opts.ServerURL = strings.TrimRight(opts.ServerURL, "/")
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
		if opts.NoDaemon {
			opts.Timeout = DefaultDirectTimeout
		}
	}
	if opts.EndTimeout <= 0 {
		opts.EndTimeout = DefaultEndTimeout
		if opts.NoDaemon {
			opts.EndTimeout = DefaultDirectEndTimeout
		}
	}
	if opts.ReadTimeout <= 0 {
		opts.ReadTimeout = DefaultReadTimeout
	}
	c := &Client{opts: opts, totals: map[string]float64{}, lastSeq: map[string]uint64{},
		open: map[ender]struct{}{}}
	if opts.NoDaemon {
		base := strings.TrimRight(opts.ServerURL, "/")
		if parsed, err := url.Parse(base); err != nil || (parsed.Scheme != "http" && parsed.Scheme != "https") {
			return c, fmt.Errorf("datacat: without a daemon the client needs the query service's http(s) URL, got %q", opts.ServerURL)
		}
		token := opts.Token
		if token == "" {
			token = os.Getenv("DATACAT_WRITE_TOKEN")
		}
		c.transport = newTransport(base, token, opts.Timeout)
		return c, labelsErr
	}
	c.daemon = &DaemonManager{
		Binary:     opts.DaemonBinary,
		DaemonPort: opts.DaemonPort,
		NATSURL:    opts.NATSURL,
		ExtraArgs:  opts.DaemonArgs,
	}
	if err := c.startDaemon(ctx); err != nil {
		return nil, err
	}
	return c, labelsErr
}

// The limits of a session's environment and tags, as the daemon and the query service
// take them (beyond them they refuse the whole registration).
const (
	MaxEnvironmentBytes = 64
	MaxTags             = 32
	MaxTagKeyBytes      = 64
	MaxTagValueBytes    = 256
)

// keepLabels leaves out of opts the environment and the tags beyond the limits, so that
// sessions are still registered, and says which it left out (nil: none).
func keepLabels(opts *Options) error {
	var left []string
	if len(opts.Environment) > MaxEnvironmentBytes {
		left = append(left, fmt.Sprintf("environment (%d bytes)", len(opts.Environment)))
		opts.Environment = ""
	}
	keys := make([]string, 0, len(opts.Tags))
	for key := range opts.Tags {
		keys = append(keys, key)
	}
	sort.Strings(keys)
	kept := map[string]string{}
	for _, key := range keys {
		value := opts.Tags[key]
		if strings.TrimSpace(key) == "" || strings.Contains(key, ":") || len(key) > MaxTagKeyBytes ||
			len(value) > MaxTagValueBytes || len(kept) == MaxTags {
			left = append(left, fmt.Sprintf("tag %q", key))
			continue
		}
		kept[key] = value
	}
	if opts.Tags != nil {
		opts.Tags = kept
	}
	if len(left) == 0 {
		return nil
	}
	return fmt.Errorf("datacat: left out (at most %d tags; keys of 1 to %d bytes without ':', values of at most %d, an environment of at most %d): %s",
		MaxTags, MaxTagKeyBytes, MaxTagValueBytes, MaxEnvironmentBytes, strings.Join(left, ", "))
}

func (c *Client) startDaemon(ctx context.Context) error {
	port, err := c.daemon.Start(ctx)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.transport != nil {
		c.transport.close()
	}
	c.transport = newTransport(fmt.Sprintf("http://127.0.0.1:%d", port), c.daemon.Token(), c.opts.Timeout)
	return nil
}

// Daemon is the daemon this client started (nil without one).
func (c *Client) Daemon() *DaemonManager { return c.daemon }

// Stats counts the client's calls so far.
func (c *Client) Stats() ClientStats {
	return ClientStats{Sent: c.sent.Load(), Failed: c.failed.Load(), Invalid: c.invalid.Load()}
}

// Close ends the sessions still open (as ended, "client closed without calling End()") and
// releases the client; a daemon it started flushes what it holds and exits on its own. All
// of it within EndTimeout. If some calls of this process were not delivered, one line on
// stderr says how many.
func (c *Client) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.EndTimeout)
	defer cancel()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	open := make([]ender, 0, len(c.open))
	for s := range c.open {
		open = append(open, s)
	}
	c.mu.Unlock()
	for _, s := range open {
		_ = s.endWithin(ctx, closedWithoutEndReason)
	}
	c.mu.Lock()
	c.closed = true
	t := c.transport
	c.mu.Unlock()
	if t != nil {
		t.close()
	}
	reportUndelivered(stderr)
	if c.daemon != nil {
		// The daemon delivers what it holds after this, on its own; it is not killed.
		c.daemon.release(ctx)
	}
	return nil
}

// count records how a call went.
func (c *Client) count(err error) error {
	var apiErr *APIError
	switch {
	case err == nil:
		c.sent.Add(1)
	case errors.As(err, &apiErr) && (apiErr.Status == http.StatusBadRequest || apiErr.Status == http.StatusRequestEntityTooLarge):
		c.invalid.Add(1)
		undelivered.invalid.Add(1)
	default:
		c.failed.Add(1)
		undelivered.failed.Add(1)
	}
	return err
}

// wrote remembers that a write of session was published as batch seq (from a write's
// answer: a daemon's /end says last_seq, a direct write says seq).
func (c *Client) wrote(session string, answer map[string]any) {
	seq, ok := answer["seq"].(float64)
	if !ok {
		seq, ok = answer["last_seq"].(float64)
	}
	if !ok || session == "" {
		return
	}
	c.mu.Lock()
	if last, seen := c.lastSeq[session]; !seen || uint64(seq) > last {
		c.lastSeq[session] = uint64(seq)
	}
	c.mu.Unlock()
}

// call sends one daemon-API call (mapped onto the query service without a daemon). A
// daemon that has exited (it does after its last session ended) is started again and the
// call retried once.
func (c *Client) call(ctx context.Context, method, path, session string, body any) (map[string]any, error) {
	c.mu.Lock()
	closed, t := c.closed, c.transport
	c.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	if c.broken != nil {
		return nil, c.broken
	}
	if t == nil {
		return nil, errors.New("datacat: the client has no connection")
	}
	query := ""
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path, query = path[:i], path[i:]
	}
	route, ok := c.route(method, path, session)
	if !ok {
		return map[string]any{"status": "ok"}, nil
	}
	route += query
	answer, err := t.do(ctx, method, route, body)
	var transportErr *TransportError
	if err != nil && c.daemon != nil && errors.As(err, &transportErr) && errors.Is(err, syscall.ECONNREFUSED) && !c.daemon.IsRunning() {
		if startErr := c.startDaemon(ctx); startErr != nil {
			return nil, fmt.Errorf("%w (and restarting the daemon failed: %v)", err, startErr)
		}
		c.mu.Lock()
		t = c.transport
		c.mu.Unlock()
		answer, err = t.do(ctx, method, route, body)
	}
	var apiErr *APIError
	switch {
	case err == nil && method == "POST":
		c.wrote(session, answer)
	case errors.As(err, &apiErr) && apiErr.Body != nil:
		c.wrote(session, apiErr.Body) // some items of a batch were refused, the rest written
	}
	return answer, err
}

// route maps a daemon path onto the query service's when there is no daemon; false: the
// call has nothing to do there (hang monitoring lives in the daemon).
func (c *Client) route(method, path, session string) (string, bool) {
	if c.daemon != nil {
		return path, true
	}
	escaped := url.PathEscape(session)
	switch path {
	case "/register":
		return "/api/sessions", true
	case "/state", "/heartbeat", "/batch", "/end", "/crash":
		return "/api/sessions/" + escaped + path, true
	case "/event":
		return "/api/sessions/" + escaped + "/events", true
	case "/metric":
		return "/api/sessions/" + escaped + "/metrics", true
	case "/session":
		return "/api/sessions/" + escaped, true
	}
	return "", false
}

func (c *Client) sessionCall(ctx context.Context, path, session string, body map[string]any) (map[string]any, error) {
	if session == "" {
		return nil, c.count(ErrNoSession)
	}
	if c.daemon != nil {
		body["session_id"] = session
	}
	answer, err := c.call(ctx, "POST", path, session, body)
	return answer, c.count(err)
}

// CreateSession registers a session and returns its id (minted here: a time-ordered UUID).
func (c *Client) CreateSession(ctx context.Context, product, version string) (string, error) {
	return c.register(ctx, product, version, newSessionID())
}

// register registers a session under the id the client chose; registering it again is
// harmless.
func (c *Client) register(ctx context.Context, product, version, id string) (string, error) {
	if product == "" || version == "" {
		return "", errors.New("datacat: product and version are required to create a session")
	}
	body := map[string]any{"session_id": id, "product": product, "version": version,
		"timestamp": seconds(time.Time{})}
	if c.opts.Environment != "" {
		body["environment"] = c.opts.Environment
	}
	if len(c.opts.Tags) > 0 {
		body["tags"] = c.opts.Tags
	}
	if c.daemon != nil {
		body["parent_pid"] = os.Getpid()
		if c.opts.ServerURL != "" {
			body["query_url"] = c.opts.ServerURL
		}
	} else if host, err := os.Hostname(); err == nil {
		body["hostname"] = host
	}
	answer, err := c.call(ctx, "POST", "/register", "", body)
	if c.count(err) != nil {
		return "", err
	}
	answered, _ := answer["session_id"].(string)
	if answered == "" {
		return "", fmt.Errorf("datacat: the answer has no session_id: %v", answer)
	}
	return answered, nil
}

// UpdateState deep-merges state into the session's state: maps merge, other values
// replace, nil deletes the key.
func (c *Client) UpdateState(ctx context.Context, session string, state map[string]any) error {
	body, err := stateBody(state, time.Time{})
	if err != nil {
		return err
	}
	_, err = c.sessionCall(ctx, "/state", session, body)
	return err
}

// LogEvent logs an event with data; LogEventWith takes every field.
func (c *Client) LogEvent(ctx context.Context, session, name string, data map[string]any) error {
	return c.LogEventWith(ctx, session, Event{Name: name, Data: data})
}

// LogEventWith logs an event.
func (c *Client) LogEventWith(ctx context.Context, session string, e Event) error {
	body, err := eventBody(e)
	if err != nil {
		return err
	}
	_, err = c.sessionCall(ctx, "/event", session, body)
	return err
}

// LogException logs err as an "exception" event with the caller's stack.
func (c *Client) LogException(ctx context.Context, session string, err error, data map[string]any) error {
	if err == nil {
		return nil
	}
	return c.LogEventWith(ctx, session, exceptionEvent(ExceptionFromError(err, 1), Error, data))
}

func exceptionEvent(exc *Exception, level Level, data map[string]any) Event {
	return Event{Name: "exception", Level: level, Category: "exception", Group: "exception",
		Labels: []string{"exception", exc.Type}, Message: exc.Message, Data: data, Exception: exc}
}

// LogMetric logs a gauge point with tags; LogMetricWith takes every
// field.
func (c *Client) LogMetric(ctx context.Context, session, name string, value float64, tags []string) error {
	return c.LogMetricWith(ctx, session, Metric{Name: name, Value: value, Tags: tags})
}

// LogMetricWith logs a metric point.
func (c *Client) LogMetricWith(ctx context.Context, session string, m Metric) error {
	m = c.totalCounter(session, m)
	body, err := metricBody(m)
	if err != nil {
		return err
	}
	_, err = c.sessionCall(ctx, "/metric", session, body)
	return err
}

// totalCounter: the query service keeps no running totals (it refuses a delta), so without
// a daemon the client adds deltas up itself and sends the total.
func (c *Client) totalCounter(session string, m Metric) Metric {
	if c.daemon != nil || m.Type != Counter || m.Delta == nil {
		return m
	}
	tags := append([]string(nil), m.Tags...)
	sort.Strings(tags)
	key := session + "\x00" + m.Name + "\x00" + strings.Join(tags, "\x00")
	c.mu.Lock()
	c.totals[key] += *m.Delta
	m.Value = c.totals[key]
	c.mu.Unlock()
	m.Delta = nil
	return m
}

// Heartbeat tells the daemon the application is alive.
func (c *Client) Heartbeat(ctx context.Context, session string) error {
	_, err := c.sessionCall(ctx, "/heartbeat", session, heartbeatBody())
	return err
}

// StartHeartbeatMonitor asks the daemon to mark the session hung when a heartbeat is
// more than timeout overdue (and recovered at the next one).
func (c *Client) StartHeartbeatMonitor(ctx context.Context, session string, timeout time.Duration) error {
	_, err := c.sessionCall(ctx, "/start_heartbeat_monitor", session, map[string]any{"timeout": timeout.Seconds()})
	return err
}

// StopHeartbeatMonitor stops hang detection for the session.
func (c *Client) StopHeartbeatMonitor(ctx context.Context, session string) error {
	_, err := c.sessionCall(ctx, "/stop_heartbeat_monitor", session, map[string]any{})
	return err
}

// PauseHeartbeat suspends hang detection (a long load that cannot beat).
func (c *Client) PauseHeartbeat(ctx context.Context, session string) error {
	_, err := c.sessionCall(ctx, "/pause_heartbeat", session, map[string]any{})
	return err
}

// ResumeHeartbeat restarts hang detection's clock.
func (c *Client) ResumeHeartbeat(ctx context.Context, session string) error {
	_, err := c.sessionCall(ctx, "/resume_heartbeat", session, map[string]any{})
	return err
}

// withDefaultTimeout bounds ctx by timeout unless the caller gave it a deadline.
func withDefaultTimeout(ctx context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, timeout)
}

// EndSession ends the session normally; it returns once the daemon has delivered the
// session's data (or, after its wait, still holds it queued).
func (c *Client) EndSession(ctx context.Context, session string) error {
	_, err := c.EndSessionWith(ctx, session, "", false)
	return err
}

// EndSessionWith ends the session with a reason, as crashed if asked, within the
// context's deadline (EndTimeout when it has none). delivered tells whether the data was
// acknowledged by JetStream before the answer; when it was not, a daemon holds it in its
// spool and delivers it later.
func (c *Client) EndSessionWith(ctx context.Context, session, reason string, crashed bool) (bool, error) {
	ctx, cancel := withDefaultTimeout(ctx, c.opts.EndTimeout)
	defer cancel()
	body := map[string]any{"timestamp": seconds(time.Time{})}
	if deadline, ok := ctx.Deadline(); ok {
		wait := time.Until(deadline) - endAnswerMargin
		if wait < 0 {
			wait = 0
		}
		body["wait"] = wait.Seconds()
	}
	if reason != "" {
		body["reason"] = reason
	}
	path := "/end"
	if crashed {
		body["crashed"] = true
		if c.daemon == nil {
			path = "/crash"
		}
	}
	answer, err := c.sessionCall(ctx, path, session, body)
	if err != nil {
		return false, err
	}
	delivered, ok := answer["delivered"].(bool)
	return delivered || !ok, nil
}

// GetSession is the whole session as the query service holds it (state, state_history,
// events, metrics, active, created_at, ended_at, ...), including every write this client
// made before the call. With a daemon and no reachable query service it is what the daemon
// holds (state, no events; "source" says which).
func (c *Client) GetSession(ctx context.Context, session string) (map[string]any, error) {
	if session == "" {
		return nil, ErrNoSession
	}
	ctx, cancel := withDefaultTimeout(ctx, c.opts.ReadTimeout)
	defer cancel()
	params := url.Values{}
	c.mu.Lock()
	if seq, ok := c.lastSeq[session]; ok {
		params.Set("min_seq", strconv.FormatUint(seq, 10))
	}
	c.mu.Unlock()
	if c.daemon != nil {
		params.Set("session_id", session)
		if c.opts.ServerURL != "" {
			params.Set("query_url", c.opts.ServerURL)
		}
	}
	path := "/session"
	if len(params) > 0 {
		path += "?" + params.Encode()
	}
	return c.call(ctx, "GET", path, session, nil)
}

// Package datacat is the Go client of DataCat, session-based application monitoring.
//
// A session is one run of an application: a deep-merged JSON state, events (with errors and
// panics), metrics, and a final status. The client talks to a datacat-daemon that it starts
// beside the application (NewClientWithDaemon), which batches everything to NATS JetStream
// and notices when the application dies; or, without a daemon, to the query service's
// direct-write endpoints (NewClient).
//
//	c, err := datacat.NewClientWithDaemon("http://localhost:8080", "auto")
//	if err != nil { ... }
//	defer c.Close()
//	s, err := c.StartSession(ctx, "space-game", "1.5.0")
//	defer s.Finish() // ended on return; crashed (with the panic) if it panics
//	s.UpdateState(ctx, map[string]any{"level": 3})
//	s.LogEvent(ctx, "level_loaded", map[string]any{"seconds": 1.2})
//	s.LogGauge(ctx, "fps", 59.5)
//
// Every call takes a context and has a timeout (Options.Timeout); errors are returned,
// never panicked. A peer that does not answer costs one timeout, then calls to it fail at
// once (ErrBackoff) for a while. Ending is bounded as a whole (Options.EndTimeout), and
// Close ends the sessions left open. AsyncSession makes calls non-blocking: they append to
// a bounded buffer that a goroutine ships in batches, with every call that is not
// delivered counted.
//
// Standard library only; builds with Go 1.19.
package datacat

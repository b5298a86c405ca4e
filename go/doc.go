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
//	s.UpdateState(ctx, map[string]any{"level": 3})
//	s.LogEvent(ctx, "level_loaded", map[string]any{"seconds": 1.2})
//	s.LogGauge(ctx, "fps", 59.5)
//	s.End(ctx)
//
// Every call takes a context and has a timeout (Options.Timeout); errors are returned,
// never panicked. AsyncSession makes calls non-blocking: they append to a bounded buffer
// that a goroutine ships in batches, with every dropped call counted.
//
// Standard library only; builds with Go 1.19.
package datacat

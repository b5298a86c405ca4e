// Command demo is a small Go application monitored by DataCat: it starts a daemon, logs a
// session's state, events, metrics and an error through an AsyncSession, and prints the
// session id as its last line.
//
//	DATACAT_NATS_URL=nats://127.0.0.1:4222 go run ./examples/demo
//
// With -direct URL it talks to the query service instead of a daemon; with -panic it ends
// by panicking, and the session is reported crashed. After ending the session it reads it
// back (through the daemon, from $DATACAT_QUERY_URL, or from the -direct URL) and fails
// unless the read shows the session ended with every event it logged.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	datacat "github.com/datacat/datacat/go"
)

func main() {
	direct := flag.String("direct", "", "query service URL: no daemon")
	panics := flag.Bool("panic", false, "end with a panic")
	events := flag.Int("events", 300, "tick events to log")
	flag.Parse()
	if err := run(*direct, *panics, *events); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(direct string, panics bool, events int) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	options := datacat.Options{DaemonPort: "auto"}
	if direct != "" {
		options = datacat.Options{ServerURL: direct, NoDaemon: true}
	}
	client, err := datacat.NewClientWithOptions(ctx, options)
	if err != nil {
		return err
	}
	defer client.Close()
	session, err := client.StartSession(ctx, "go-demo", "1.0.0")
	if err != nil {
		return err
	}
	s := datacat.NewAsyncSession(session, datacat.AsyncOptions{})
	defer s.RecoverPanic()

	_ = s.UpdateState(ctx, map[string]any{"scene": "menu", "player": map[string]any{"level": 1}})
	timer := s.StartTimer("level_load")
	time.Sleep(10 * time.Millisecond)
	_, _ = timer.Stop(ctx)
	_ = s.UpdateState(ctx, map[string]any{"scene": "space", "player": map[string]any{"level": 2}})
	for i := 0; i < events; i++ {
		_ = s.LogEvent(ctx, "tick", map[string]any{"i": i})
	}
	for _, fps := range []float64{58, 60, 61} {
		_ = s.LogGauge(ctx, "fps", fps)
	}
	_ = s.LogCounter(ctx, "asteroids", 2)
	_ = s.LogCounter(ctx, "asteroids", 3)
	_ = s.LogException(ctx, errors.New("probe lost"), map[string]any{"probe": "alpha"})
	fmt.Println(session.ID)
	if panics {
		var engines []int
		_ = engines[3] // index out of range: reported, then the program fails
	}
	if err := s.End(ctx); err != nil {
		return err
	}
	if stats := s.Stats(); stats.Dropped+stats.Failed+stats.Invalid > 0 {
		return fmt.Errorf("calls lost: %+v", stats)
	}
	return readBack(ctx, client, session.ID, events+1)
}

// readBack reads the session straight after ending it: the read sees every write made
// before it (the query service waits for ingest to apply them).
func readBack(ctx context.Context, client *datacat.Client, id string, events int) error {
	view, err := client.GetSession(ctx, id)
	if err != nil {
		return fmt.Errorf("reading the session back: %w", err)
	}
	logged, _ := view["events"].([]any)
	source, _ := view["source"].(string)
	if source == "" {
		source = "query service"
	}
	fmt.Fprintf(os.Stderr, "read back: active=%v, %d events, from the %s\n", view["active"], len(logged), source)
	if view["active"] != false || len(logged) != events {
		return fmt.Errorf("read back active=%v with %d events, not ended with %d", view["active"], len(logged), events)
	}
	return nil
}

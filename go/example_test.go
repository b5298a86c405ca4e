package datacat_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	datacat "github.com/datacat/datacat/go"
)

// A whole run: the client starts the daemon, the session records state, an event and a
// metric, and ends when main returns (crashed, with the panic, if it panics).
func Example() {
	ctx := context.Background()
	c, err := datacat.NewClientWithDaemon("http://localhost:8080", "auto")
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	s, err := c.StartSession(ctx, "space-game", "1.5.0")
	if err != nil {
		log.Print(err) // monitoring never stops the game: s is nil, and its calls say so
	}
	defer s.Finish()
	_ = s.UpdateState(ctx, map[string]any{"player": map[string]any{"level": 3}})
	_ = s.LogEvent(ctx, "level_loaded", map[string]any{"seconds": 1.2})
	_ = s.LogGauge(ctx, "fps", 59.5, "scene:space")
}

// Without a daemon, the calls go to the query service's direct-write endpoints.
func ExampleNewClient() {
	c := datacat.NewClient("http://query.example.com:8080")
	defer c.Close()
	s, err := c.StartSession(context.Background(), "build-tool", "2.0")
	if err != nil {
		log.Print(err)
		return
	}
	defer s.Finish()
}

// A session whose calls cost the caller nothing: they go to a buffer that a goroutine
// ships in batches; what could not be delivered is counted.
func ExampleClient_StartAsyncSession() {
	c, err := datacat.NewClientWithDaemon("http://localhost:8080", "auto")
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	a := c.StartAsyncSession("space-game", "1.5.0", datacat.AsyncOptions{})
	defer a.Finish()
	ctx := context.Background()
	for frame := 0; frame < 1000; frame++ {
		_ = a.LogGauge(ctx, "frame_ms", 16.4)
	}
	fmt.Println(a.Stats().Dropped)
}

// Errors are reported with their stack; a panic ends the session crashed.
func ExampleSession_LogException() {
	ctx := context.Background()
	c, err := datacat.NewClientWithDaemon("http://localhost:8080", "auto")
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	s, _ := c.StartSession(ctx, "space-game", "1.5.0")
	defer s.Finish()
	if err := load("level-3"); err != nil {
		_ = s.LogException(ctx, err, map[string]any{"level": "level-3"})
	}
}

// Hang detection: the daemon marks the session hung when a heartbeat is overdue, and the
// monitor sends the stacks of all goroutines.
func ExampleSession_StartHeartbeatMonitor() {
	ctx := context.Background()
	c, err := datacat.NewClientWithDaemon("http://localhost:8080", "auto")
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	s, _ := c.StartSession(ctx, "space-game", "1.5.0")
	defer s.Finish()
	if _, err := s.StartHeartbeatMonitor(ctx, 30*time.Second, 0); err != nil {
		log.Print(err)
	}
	for tick := 0; tick < 3; tick++ {
		_ = s.Heartbeat(ctx) // from the main loop
	}
}

// A session StartSession could not make is nil; its calls answer ErrNilSession rather
// than panic.
func ExampleErrNilSession() {
	var s *datacat.Session
	err := s.LogEvent(context.Background(), "level_loaded", nil)
	fmt.Println(errors.Is(err, datacat.ErrNilSession))
	// Output: true
}

func load(level string) error {
	return fmt.Errorf("loading %s: %w", level, errors.New("file not found"))
}

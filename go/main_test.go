package datacat

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The tests that need them run the REAL datacat-daemon ($DATACAT_DAEMON_BIN, default the
// workspace's target/debug/datacat-daemon) against a real nats-server
// ($DATACAT_NATS_SERVER_BIN or nats-server on PATH): they call needDaemon or needServers,
// and fail, never skip, when either is missing. The others run without them.

var natsURL string

var (
	daemonOnce, serversOnce sync.Once
	daemonErr, serversErr   error
	// cleanups undo what the servers' setup made, after every test has run.
	cleanups []func()
)

func TestMain(m *testing.M) {
	code := m.Run()
	for i := len(cleanups) - 1; i >= 0; i-- {
		cleanups[i]()
	}
	os.Exit(code)
}

// needDaemon makes sure the daemon binary is there (DATACAT_DAEMON_BIN set), with a spool
// and a log of the test run's own.
func needDaemon(t *testing.T) {
	t.Helper()
	daemonOnce.Do(func() { daemonErr = findDaemon() })
	if daemonErr != nil {
		t.Fatalf("test setup: %v", daemonErr)
	}
}

func findDaemon() error {
	if os.Getenv("DATACAT_DAEMON_BIN") == "" {
		path, _ := filepath.Abs(filepath.Join("..", "target", "debug", "datacat-daemon"))
		if _, err := os.Stat(path); err != nil {
			return fmt.Errorf("datacat-daemon not built at %s (cargo build -p datacat-daemon) and DATACAT_DAEMON_BIN unset", path)
		}
		os.Setenv("DATACAT_DAEMON_BIN", path)
	}
	dir, err := os.MkdirTemp("", "datacat-go-test-")
	if err != nil {
		return err
	}
	cleanups = append(cleanups, func() { os.RemoveAll(dir) })
	os.Setenv("DATACAT_SPOOL_DIR", filepath.Join(dir, "spool"))
	os.Setenv("DATACAT_DAEMON_LOG", filepath.Join(dir, "daemon.log"))
	return nil
}

// needServers: the daemon, and a nats-server with the session stream, which the daemons
// the tests start send to (DATACAT_NATS_URL).
func needServers(t *testing.T) {
	t.Helper()
	needDaemon(t)
	serversOnce.Do(func() { serversErr = startNATS() })
	if serversErr != nil {
		t.Fatalf("test setup: %v", serversErr)
	}
}

func startNATS() error {
	server := os.Getenv("DATACAT_NATS_SERVER_BIN")
	if server == "" {
		server = "nats-server"
	}
	dir, err := os.MkdirTemp("", "datacat-go-nats-")
	if err != nil {
		return err
	}
	cleanups = append(cleanups, func() { os.RemoveAll(dir) })
	port := freePort()
	nats := exec.Command(server, "-a", "127.0.0.1", "-p", strconv.Itoa(port), "-js", "-sd", filepath.Join(dir, "js"))
	if err := nats.Start(); err != nil {
		return fmt.Errorf("starting nats-server %q: %w", server, err)
	}
	cleanups = append(cleanups, func() {
		_ = nats.Process.Kill()
		_ = nats.Wait()
	})
	natsURL = fmt.Sprintf("nats://127.0.0.1:%d", port)
	os.Setenv("DATACAT_NATS_URL", natsURL)
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err := jsRequest("$JS.API.STREAM.CREATE.DATACAT", map[string]any{
			"name": "DATACAT", "subjects": []string{"datacat.session.>"}, "storage": "memory",
			"duplicate_window": int64(120 * time.Second),
		})
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("creating the stream: %w", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func freePort() int {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer listener.Close()
	return listener.Addr().(*net.TCPAddr).Port
}

// jsRequest sends one JetStream API request over the plain NATS protocol (stdlib only).
func jsRequest(subject string, payload any) (map[string]any, error) {
	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(natsURL, "nats://"), 5*time.Second)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	reader := bufio.NewReader(conn)
	if _, err := reader.ReadString('\n'); err != nil { // INFO
		return nil, err
	}
	data, _ := json.Marshal(payload)
	fmt.Fprintf(conn, "CONNECT {\"verbose\":false}\r\nSUB _INBOX.go 1\r\nPUB %s _INBOX.go %d\r\n%s\r\n", subject, len(data), data)
	for {
		line, err := reader.ReadString('\n')
		if err != nil {
			return nil, err
		}
		line = strings.TrimSpace(line)
		switch {
		case line == "PING":
			fmt.Fprint(conn, "PONG\r\n")
		case strings.HasPrefix(line, "-ERR"):
			return nil, fmt.Errorf("nats: %s", line)
		case strings.HasPrefix(line, "MSG "):
			fields := strings.Fields(line)
			size, _ := strconv.Atoi(fields[len(fields)-1])
			body := make([]byte, size+2)
			if _, err := io.ReadFull(reader, body); err != nil {
				return nil, err
			}
			var answer map[string]any
			if err := json.Unmarshal(body[:size], &answer); err != nil {
				return nil, err
			}
			if e, ok := answer["error"].(map[string]any); ok && e["err_code"] != float64(10058) {
				return nil, fmt.Errorf("jetstream: %v", e)
			}
			return answer, nil
		}
	}
}

// streamMessages is how many batches of the session JetStream holds.
func streamMessages(t *testing.T, session string) int {
	t.Helper()
	subject := "datacat.session." + session
	answer, err := jsRequest("$JS.API.STREAM.INFO.DATACAT", map[string]any{"subjects_filter": subject})
	if err != nil {
		t.Fatalf("stream info: %v", err)
	}
	state, _ := answer["state"].(map[string]any)
	subjects, _ := state["subjects"].(map[string]any)
	n, _ := subjects[subject].(float64)
	return int(n)
}

// daemonView is what the daemon holds of the session (GET /session).
func daemonView(t *testing.T, c *Client, session string) map[string]any {
	t.Helper()
	url := fmt.Sprintf("http://127.0.0.1:%d/session?session_id=%s", c.Daemon().Port(), session)
	request, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatalf("daemon /session: %v", err)
	}
	request.Header.Set("Authorization", "Bearer "+c.Daemon().Token())
	response, err := http.DefaultClient.Do(request)
	if err != nil {
		t.Fatalf("daemon /session: %v", err)
	}
	defer response.Body.Close()
	var view map[string]any
	if err := json.NewDecoder(response.Body).Decode(&view); err != nil {
		t.Fatalf("daemon /session: %v", err)
	}
	return view
}

package datacat

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// readyPrefix starts the daemon's one line on stdout: "DATACAT_DAEMON_READY <port> <token>".
// Every call carries the token (other local users' processes can reach the port).
const readyPrefix = "DATACAT_DAEMON_READY"

// DaemonManager starts and stops a datacat-daemon for this process (docs/daemon-api.md):
// the daemon prints its port on stdout, and watches its stdin, which this process holds
// open and never writes: when the application dies, the pipe closes and the daemon marks
// its open sessions crashed.
type DaemonManager struct {
	// Binary is the daemon to run; empty: FindDaemonBinary.
	Binary string
	// DaemonPort is "auto" (the OS picks) or a fixed loopback port.
	DaemonPort string
	// NATSURL is handed to the daemon (default $DATACAT_NATS_URL).
	NATSURL string
	// ExtraArgs are appended to the daemon's command line.
	ExtraArgs []string
	// StartupTimeout bounds the handshake (default 10 s).
	StartupTimeout time.Duration
	// LogPath receives the daemon's stderr (default: a file in the temp dir).
	LogPath string

	mu    sync.Mutex
	cmd   *exec.Cmd
	stdin io.WriteCloser
	port  int
	token string
	done  chan struct{}
}

// FindDaemonBinary looks for datacat-daemon at $DATACAT_DAEMON_BIN, on PATH, then in the
// target/debug and target/release directories of a workspace above the working directory.
func FindDaemonBinary() (string, error) {
	name := "datacat-daemon"
	if runtime.GOOS == "windows" {
		name += ".exe"
	}
	if env := os.Getenv("DATACAT_DAEMON_BIN"); env != "" {
		return env, nil
	}
	if path, err := exec.LookPath(name); err == nil {
		return path, nil
	}
	dir, err := os.Getwd()
	for err == nil {
		for _, profile := range []string{"debug", "release"} {
			candidate := filepath.Join(dir, "target", profile, name)
			if info, statErr := os.Stat(candidate); statErr == nil && !info.IsDir() {
				return candidate, nil
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	return "", errors.New("datacat: datacat-daemon not found: set DATACAT_DAEMON_BIN, put it on PATH, " +
		"or build it in this workspace (cargo build -p datacat-daemon)")
}

// Start runs the daemon unless it is running, and returns its port.
func (m *DaemonManager) Start(ctx context.Context) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.runningLocked() {
		return m.port, nil
	}
	binary := m.Binary
	if binary == "" {
		var err error
		if binary, err = FindDaemonBinary(); err != nil {
			return 0, err
		}
	}
	args := []string{"--parent-pid", strconv.Itoa(os.Getpid())}
	natsURL := m.NATSURL
	if natsURL == "" {
		natsURL = os.Getenv("DATACAT_NATS_URL")
	}
	// The NATS URL goes in the daemon's environment, never on its command line: it may
	// carry a password, and any local user can read another process's arguments.
	env := os.Environ()
	if natsURL != "" {
		env = append(env, "DATACAT_NATS_URL="+natsURL)
	}
	if m.DaemonPort != "" && m.DaemonPort != "auto" && m.DaemonPort != "0" {
		if _, err := strconv.Atoi(m.DaemonPort); err != nil {
			return 0, fmt.Errorf("datacat: daemon port must be \"auto\" or a number, got %q", m.DaemonPort)
		}
		args = append(args, "--listen", "127.0.0.1:"+m.DaemonPort)
	}
	args = append(args, m.ExtraArgs...)
	cmd := exec.Command(binary, args...)
	cmd.Env = env
	// Its own process group: a Ctrl-C aimed at the application must not kill the daemon
	// before the application's last calls reach it.
	cmd.SysProcAttr = daemonProcAttr()
	logFile, err := m.openLog()
	if err != nil {
		return 0, err
	}
	defer logFile.Close()
	cmd.Stderr = logFile
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return 0, fmt.Errorf("datacat: daemon stdin: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return 0, fmt.Errorf("datacat: daemon stdout: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("datacat: starting %s: %w", binary, err)
	}
	port, token, err := readReadyLine(ctx, stdout, m.startupTimeout())
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return 0, fmt.Errorf("datacat: daemon %s %v (log: %s)", binary, err, logFile.Name())
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	m.cmd, m.stdin, m.port, m.token, m.done = cmd, stdin, port, token, done
	return port, nil
}

func (m *DaemonManager) startupTimeout() time.Duration {
	if m.StartupTimeout > 0 {
		return m.StartupTimeout
	}
	return 10 * time.Second
}

func (m *DaemonManager) openLog() (*os.File, error) {
	path := m.LogPath
	if path == "" {
		path = os.Getenv("DATACAT_DAEMON_LOG")
	}
	if path == "" {
		// A fresh file of a random name, created here (0600, O_EXCL): a predictable name in
		// the shared temp dir could be a link another user planted.
		file, err := os.CreateTemp("", fmt.Sprintf("datacat-daemon-go-%d-*.log", os.Getpid()))
		if err != nil {
			return nil, fmt.Errorf("datacat: daemon log: %w", err)
		}
		return file, nil
	}
	file, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("datacat: daemon log %s: %w", path, err)
	}
	return file, nil
}

// readReadyLine reads the daemon's stdout until its ready line, within the timeout: the port
// and the token (empty from a daemon that prints none).
func readReadyLine(ctx context.Context, stdout io.Reader, timeout time.Duration) (int, string, error) {
	type result struct {
		port  int
		token string
		err   error
	}
	found := make(chan result, 1)
	go func() {
		scanner := bufio.NewScanner(stdout)
		for scanner.Scan() {
			fields := strings.Fields(scanner.Text())
			if (len(fields) == 2 || len(fields) == 3) && fields[0] == readyPrefix {
				port, err := strconv.Atoi(fields[1])
				if err != nil || port <= 0 || port > 65535 {
					found <- result{err: fmt.Errorf("printed a malformed ready line %q", scanner.Text())}
					return
				}
				token := ""
				if len(fields) == 3 {
					token = fields[2]
				}
				found <- result{port: port, token: token}
				// The daemon never writes stdout again; drain in case it does.
				_, _ = io.Copy(io.Discard, stdout)
				return
			}
		}
		found <- result{err: errors.New("exited before printing " + readyPrefix)}
	}()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case r := <-found:
		return r.port, r.token, r.err
	case <-timer.C:
		return 0, "", fmt.Errorf("did not print %s within %v", readyPrefix, timeout)
	case <-ctx.Done():
		return 0, "", ctx.Err()
	}
}

func (m *DaemonManager) runningLocked() bool {
	if m.cmd == nil {
		return false
	}
	select {
	case <-m.done:
		return false
	default:
		return true
	}
}

// IsRunning tells whether the daemon process is alive.
func (m *DaemonManager) IsRunning() bool {
	if m == nil {
		return false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.runningLocked()
}

// Token is what every call to the daemon must carry (empty before Start).
func (m *DaemonManager) Token() string {
	if m == nil {
		return ""
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.token
}

// Port is the daemon's loopback port (0 before Start).
func (m *DaemonManager) Port() int {
	if m == nil {
		return 0
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.port
}

// Stop closes the daemon's stdin (it flushes and exits) and waits up to the timeout,
// then kills it.
func (m *DaemonManager) Stop(timeout time.Duration) error {
	if m == nil {
		return nil
	}
	m.mu.Lock()
	cmd, stdin, done := m.cmd, m.stdin, m.done
	m.cmd, m.stdin = nil, nil
	m.mu.Unlock()
	if cmd == nil {
		return nil
	}
	_ = stdin.Close()
	select {
	case <-done:
		return nil
	case <-time.After(timeout):
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-done
		return fmt.Errorf("datacat: daemon did not exit within %v; killed", timeout)
	}
}

// release closes the daemon's stdin (it flushes, delivers what it can and exits on its own)
// and waits for it to exit until ctx ends; a daemon still delivering then is left to
// finish, not killed.
func (m *DaemonManager) release(ctx context.Context) {
	if m == nil {
		return
	}
	m.mu.Lock()
	cmd, stdin, done := m.cmd, m.stdin, m.done
	m.cmd, m.stdin = nil, nil
	m.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = stdin.Close()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

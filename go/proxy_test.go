package datacat

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"testing"
)

// Without a daemon, calls to the query service go through the proxy the environment names
// (HTTP_PROXY), as with net/http's default transport. The environment is read once per
// process, so the client runs in a process of its own: this test binary, run again.
func TestTheQueryServiceIsReachedThroughTheEnvironmentsProxy(t *testing.T) {
	if os.Getenv("DATACAT_PROXY_TEST_CHILD") == "1" {
		c := NewClient("http://query.datacat.invalid:8080")
		defer c.Close()
		if _, err := c.CreateSession(context.Background(), "proxied", "1.0"); err != nil {
			t.Fatalf("through the proxy: %v", err)
		}
		return
	}
	seen := make(chan string, 8)
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Method + " " + r.URL.String()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"session_id":"s-1","seq":1}`))
	}))
	defer proxy.Close()
	child := exec.Command(os.Args[0], "-test.run=^TestTheQueryServiceIsReachedThroughTheEnvironmentsProxy$", "-test.count=1")
	child.Env = append(os.Environ(), "DATACAT_PROXY_TEST_CHILD=1", "HTTP_PROXY="+proxy.URL, "NO_PROXY=")
	if out, err := child.CombinedOutput(); err != nil {
		t.Fatalf("the client in its own process failed: %v\n%s", err, out)
	}
	select {
	case request := <-seen:
		if want := "POST http://query.datacat.invalid:8080/api/sessions"; len(request) < len(want) || request[:len(want)] != want {
			t.Errorf("the proxy saw %q, want a request for %s...", request, want)
		}
	default:
		t.Fatal("the proxy saw no request")
	}
}

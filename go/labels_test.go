package datacat

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// A client's environment (default $DATACAT_ENVIRONMENT) and tags go with every session it
// registers.
func TestSessionsCarryTheClientsEnvironmentAndTags(t *testing.T) {
	registered := make(chan map[string]any, 4)
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		_ = json.NewDecoder(r.Body).Decode(&body)
		if r.URL.Path == "/api/sessions" {
			registered <- body
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"session_id":"s-1","seq":0}`))
	}))
	defer server.Close()
	t.Setenv("DATACAT_ENVIRONMENT", "ci")
	ctx := context.Background()
	for _, tags := range []map[string]string{{"team": "render"}, nil} {
		c, err := NewClientWithOptions(ctx, Options{NoDaemon: true, ServerURL: server.URL, Tags: tags})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.CreateSession(ctx, "labelled", "1.0"); err != nil {
			t.Fatal(err)
		}
		body := <-registered
		if body["environment"] != "ci" {
			t.Errorf("environment: %v", body["environment"])
		}
		if got, _ := json.Marshal(body["tags"]); (tags == nil) != (body["tags"] == nil) || (tags != nil && string(got) != `{"team":"render"}`) {
			t.Errorf("tags: %s (client's: %v)", got, tags)
		}
		_ = c.Close()
	}
}

// Labels beyond the limits are left out (and said), the rest kept: the client still works.
func TestLabelsBeyondTheLimitsAreLeftOut(t *testing.T) {
	tags := map[string]string{"a:b": "colon", "long": strings.Repeat("x", MaxTagValueBytes+1),
		"edge": strings.Repeat("y", MaxTagValueBytes)}
	for i := 0; i < MaxTags+5; i++ {
		tags[fmt.Sprintf("k%02d", i)] = "v"
	}
	opts := Options{Environment: strings.Repeat("e", MaxEnvironmentBytes), Tags: tags}
	err := keepLabels(&opts)
	if err == nil || !strings.Contains(err.Error(), `tag "a:b"`) || !strings.Contains(err.Error(), `tag "long"`) {
		t.Errorf("error: %v", err)
	}
	if opts.Environment == "" || len(opts.Tags) != MaxTags || opts.Tags["edge"] == "" {
		t.Errorf("kept environment %q and %d tags (edge %q)", opts.Environment, len(opts.Tags), opts.Tags["edge"])
	}
	opts = Options{Environment: strings.Repeat("e", MaxEnvironmentBytes+1)}
	if err := keepLabels(&opts); err == nil || opts.Environment != "" {
		t.Errorf("a long environment: %v, kept %q", err, opts.Environment)
	}
	if err := keepLabels(&Options{Tags: map[string]string{"team": "render"}}); err != nil {
		t.Errorf("good labels: %v", err)
	}
}

package datacat

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
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

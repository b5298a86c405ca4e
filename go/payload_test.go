package datacat

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

// The client contract (api/fixtures/client-calls.json): every call produces exactly the
// body the fixture gives, the same bodies the Python client and the daemon's parser are
// tested against.
type contractCase struct {
	Name string         `json:"name"`
	Kind string         `json:"kind"`
	Call map[string]any `json:"call"`
	Body map[string]any `json:"body"`
}

func contractCases(t *testing.T) []contractCase {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "api", "fixtures", "client-calls.json"))
	if err != nil {
		t.Fatal(err)
	}
	var fixture struct {
		Calls []contractCase `json:"calls"`
	}
	if err := json.Unmarshal(raw, &fixture); err != nil {
		t.Fatal(err)
	}
	return fixture.Calls
}

func stringList(values any) []string {
	var out []string
	for _, v := range asSlice(values) {
		out = append(out, v.(string))
	}
	return out
}

func asSlice(values any) []any {
	list, _ := values.([]any)
	return list
}

// contractBody is the body the Go client builds for a case's call.
func contractBody(c contractCase) (map[string]any, error) {
	args := c.Call
	text := func(key string) string { s, _ := args[key].(string); return s }
	number := func(key string) float64 { f, _ := args[key].(float64); return f }
	switch c.Kind {
	case "state":
		return stateBody(args["state"].(map[string]any), time.Time{})
	case "event":
		data, _ := args["data"].(map[string]any)
		return eventBody(Event{Name: text("name"), Level: Level(text("level")), Category: text("category"),
			Group: text("group"), Labels: stringList(args["labels"]), Message: text("message"), Data: data})
	case "heartbeat":
		return heartbeatBody(), nil
	}
	switch text("metric") {
	case "gauge":
		return metricBody(Metric{Name: text("name"), Value: number("value"), Type: Gauge,
			Unit: text("unit"), Tags: stringList(args["tags"])})
	case "counter":
		return metricBody(counterMetric(text("name"), number("delta"), nil))
	case "histogram":
		var buckets []float64
		for _, b := range asSlice(args["buckets"]) {
			if b == "+Inf" {
				buckets = append(buckets, math.Inf(1))
			} else {
				buckets = append(buckets, b.(float64))
			}
		}
		return metricBody(histogramMetric(text("name"), number("value"), buckets, nil))
	}
	return metricBody(timerMetric(text("name"), time.Duration(number("seconds")*float64(time.Second)), nil))
}

func TestEveryCallSendsTheContractsBody(t *testing.T) {
	cases := contractCases(t)
	if len(cases) < 10 {
		t.Fatalf("only %d cases", len(cases))
	}
	for _, c := range cases {
		body, err := contractBody(c)
		if err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
		delete(body, "timestamp")
		// Compared as JSON, as the daemon reads it.
		encoded, _ := json.Marshal(body)
		var sent map[string]any
		if err := json.Unmarshal(encoded, &sent); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(sent, c.Body) {
			t.Errorf("%s: sends %v, the contract says %v", c.Name, sent, c.Body)
		}
	}
}

package datacat

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// Level of an event.
type Level string

const (
	Debug    Level = "debug"
	Info     Level = "info"
	Warning  Level = "warning"
	Error    Level = "error"
	Critical Level = "critical"
)

// MetricType says how a metric's points are read.
type MetricType string

const (
	Gauge     MetricType = "gauge"
	Counter   MetricType = "counter"
	Histogram MetricType = "histogram"
	Timer     MetricType = "timer"
)

// Event is one thing that happened. Only Name is required.
type Event struct {
	Name      string
	Level     Level
	Category  string
	Group     string
	Labels    []string
	Message   string
	Data      map[string]any
	Exception *Exception
	// Time of the event; zero: when the call is made.
	Time time.Time
}

// Metric is one point. A Counter with Delta adds to a running total (the daemon keeps it);
// a Histogram value is one observation, bucketed by Buckets (upper bounds).
type Metric struct {
	Name    string
	Value   float64
	Type    MetricType
	Unit    string
	Tags    []string
	Count   *int64
	Delta   *float64
	Buckets []float64
	Time    time.Time
}

// Frame is one stack frame of an exception.
type Frame struct {
	File     string `json:"file"`
	Line     int    `json:"line"`
	Function string `json:"function"`
	Code     string `json:"code"`
}

// Exception describes an error or panic: its type, message and stack, and the errors it
// wraps.
type Exception struct {
	Type       string   `json:"type"`
	Message    string   `json:"message"`
	Stacktrace []string `json:"stacktrace"`
	Frames     []Frame  `json:"frames"`
	// Causes are the errors behind this one, nearest first (at most MaxCauses).
	Causes []Cause `json:"causes,omitempty"`
}

// Cause is an error behind an Exception: one it wraps (Relation "wrapped", through
// Unwrap() error) or one of those it joins ("joined", Unwrap() []error, as errors.Join
// makes).
type Cause struct {
	Type     string `json:"type"`
	Message  string `json:"message"`
	Relation string `json:"relation"`
}

// MaxCauses is the most causes an Exception carries; a longer chain is cut.
const MaxCauses = 10

// The typed metrics, built once for Session and AsyncSession.

func gaugeMetric(name string, value float64, tags []string) Metric {
	return Metric{Name: name, Value: value, Type: Gauge, Tags: tags}
}

func counterMetric(name string, delta float64, tags []string) Metric {
	return Metric{Name: name, Type: Counter, Delta: &delta, Tags: tags}
}

func histogramMetric(name string, value float64, buckets []float64, tags []string) Metric {
	return Metric{Name: name, Value: value, Type: Histogram, Buckets: buckets, Tags: tags}
}

func timerMetric(name string, d time.Duration, tags []string) Metric {
	return Metric{Name: name, Value: d.Seconds(), Type: Timer, Unit: "seconds", Tags: tags}
}

func seconds(t time.Time) float64 {
	if t.IsZero() {
		t = time.Now()
	}
	return float64(t.UnixNano()) / 1e9
}

func eventBody(e Event) (map[string]any, error) {
	if e.Name == "" {
		return nil, errors.New("datacat: an event needs a name")
	}
	body := map[string]any{"name": e.Name, "timestamp": seconds(e.Time)}
	if e.Level != "" {
		body["level"] = string(e.Level)
	}
	if e.Category != "" {
		body["category"] = e.Category
	}
	if e.Group != "" {
		body["group"] = e.Group
	}
	if len(e.Labels) > 0 {
		body["labels"] = e.Labels
	}
	if e.Message != "" {
		body["message"] = e.Message
	}
	if e.Data != nil {
		body["data"] = e.Data
	}
	if e.Exception != nil {
		body["exception"] = e.Exception
	}
	return body, nil
}

func metricBody(m Metric) (map[string]any, error) {
	if m.Name == "" {
		return nil, errors.New("datacat: a metric needs a name")
	}
	if math.IsNaN(m.Value) || math.IsInf(m.Value, 0) {
		return nil, fmt.Errorf("datacat: metric %q has a non-finite value (%v)", m.Name, m.Value)
	}
	kind := m.Type
	if kind == "" {
		kind = Gauge
	}
	switch kind {
	case Gauge, Counter, Histogram, Timer:
	default:
		return nil, fmt.Errorf("datacat: metric type must be gauge, counter, histogram or timer, got %q", kind)
	}
	body := map[string]any{"name": m.Name, "value": m.Value, "type": string(kind), "timestamp": seconds(m.Time)}
	if m.Unit != "" {
		body["unit"] = m.Unit
	}
	if len(m.Tags) > 0 {
		body["tags"] = m.Tags
	}
	if m.Count != nil {
		body["count"] = *m.Count
	}
	if m.Delta != nil {
		if math.IsNaN(*m.Delta) || math.IsInf(*m.Delta, 0) {
			return nil, fmt.Errorf("datacat: counter %q has a non-finite delta", m.Name)
		}
		body["delta"] = *m.Delta
	}
	if len(m.Buckets) > 0 {
		bounds := make([]any, len(m.Buckets))
		for i, b := range m.Buckets {
			if math.IsInf(b, 1) {
				bounds[i] = "+Inf"
			} else {
				bounds[i] = b
			}
		}
		body["buckets"] = bounds
	}
	return body, nil
}

func heartbeatBody() map[string]any {
	return map[string]any{"timestamp": seconds(time.Time{})}
}

func stateBody(state map[string]any, at time.Time) (map[string]any, error) {
	if state == nil {
		return nil, errors.New("datacat: a state update must be a map")
	}
	return map[string]any{"state": state, "timestamp": seconds(at)}, nil
}

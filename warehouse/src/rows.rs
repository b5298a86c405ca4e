//! Row types, one per table, field for field in column order.
//!
//! A row type that drifts from its table only shows up as garbage or `NotEnoughData` (the
//! 18.16 server cannot validate types), so each is round-tripped against a real server by the
//! integration tests.

use clickhouse::Row;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Row, Serialize, Deserialize)]
pub struct SessionRow {
    pub session_id: String,
    pub product: String,
    pub version: String,
    pub status: String,
    pub end_reason: String,
    /// Days since the Unix epoch (ClickHouse `Date`).
    pub started_date: u16,
    pub started_ms: u64,
    pub updated_ms: u64,
    /// 0 while the session has not ended.
    pub ended_ms: u64,
    pub last_heartbeat_ms: u64,
    pub hostname: String,
    pub machine_id: String,
    /// [`datacat_protocol::MachineInfo`] as JSON.
    pub machine: String,
    /// The merged state as JSON.
    pub state: String,
    pub event_count: u64,
    pub last_seq: u64,
    pub hang_count: u32,
    /// When the current or last hang started (0: never hung).
    pub hung_ms: u64,
    pub dropped_records: u64,
    pub gaps: u64,
    /// When ingest last applied a batch of the session (ingest's clock).
    pub seen_ms: u64,
    pub environment: String,
    /// The tags' keys, in order, and their values.
    pub tag_keys: Vec<String>,
    pub tag_values: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct StateHistoryRow {
    pub session_id: String,
    pub seq: u64,
    pub idx: u32,
    pub ts_ms: u64,
    pub date: u16,
    pub update: String,
    pub state: String,
    /// The client's time when `ts_ms` is the receive time instead, else 0 (see
    /// `datacat_protocol::time::believed_ts_ms`).
    pub client_ts_ms: u64,
}

/// One state leaf that changed (see `datacat_protocol::merge::flatten`).
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct StatePathRow {
    pub session_id: String,
    pub seq: u64,
    pub idx: u32,
    pub ts_ms: u64,
    pub date: u16,
    /// Object keys joined with `.`.
    pub path: String,
    /// A string leaf as its text; any other leaf as JSON. Empty when removed.
    pub value: String,
    /// An array leaf's elements, encoded like `value`.
    pub elements: Vec<String>,
    /// 1 when the path stopped existing.
    pub removed: u8,
}

#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct EventRow {
    pub session_id: String,
    pub seq: u64,
    pub idx: u32,
    pub ts_ms: u64,
    pub date: u16,
    pub name: String,
    pub level: String,
    pub category: String,
    pub group_name: String,
    pub labels: Vec<String>,
    pub message: String,
    pub data: String,
    /// [`datacat_protocol::ExceptionInfo`] as JSON, or empty.
    pub exception: String,
    /// The client's time when `ts_ms` is the receive time instead, else 0 (see
    /// `datacat_protocol::time::believed_ts_ms`).
    pub client_ts_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct MetricRow {
    pub session_id: String,
    pub seq: u64,
    pub idx: u32,
    pub ts_ms: u64,
    pub date: u16,
    pub name: String,
    pub kind: String,
    pub value: f64,
    pub unit: String,
    pub tags: Vec<String>,
    pub count: Option<u64>,
    /// Histogram upper bounds; `bucket_counts` has one more entry (the +Inf bucket).
    pub bucket_bounds: Vec<f64>,
    pub bucket_counts: Vec<u64>,
    pub hist_sum: f64,
    /// The client's time when `ts_ms` is the receive time instead, else 0 (see
    /// `datacat_protocol::time::believed_ts_ms`).
    pub client_ts_ms: u64,
}

/// A metric summarised over a session so far: what ingest keeps in the session's progress,
/// and the last columns of its `metric_sessions` row (a test holds them to it).
///
/// Its floats read `null` as 0: JSON writes a non-finite float as `null`, and a progress
/// record must stay readable whatever a client sent.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MetricSummary {
    #[serde(deserialize_with = "null_as_zero")]
    pub peak: f64,
    #[serde(deserialize_with = "null_as_zero")]
    pub min: f64,
    #[serde(deserialize_with = "null_as_zero")]
    pub sum: f64,
    pub points: u64,
    #[serde(deserialize_with = "null_as_zero")]
    pub last: f64,
    pub last_ts_ms: u64,
}

fn null_as_zero<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(deserializer)?.unwrap_or(0.0))
}

impl MetricSummary {
    /// A metric's first point.
    pub fn first(value: f64, ts_ms: u64) -> Self {
        Self {
            peak: value,
            min: value,
            sum: value,
            points: 1,
            last: value,
            last_ts_ms: ts_ms,
        }
    }

    /// Another point. The last is the latest by time; on a tie the later record (batches
    /// apply in order).
    pub fn add(&mut self, value: f64, ts_ms: u64) {
        self.peak = self.peak.max(value);
        self.min = self.min.min(value);
        // Saturates instead of overflowing to infinity, which JSON (the progress record)
        // cannot hold.
        self.sum = (self.sum + value).clamp(f64::MIN, f64::MAX);
        self.points += 1;
        if ts_ms >= self.last_ts_ms {
            self.last = value;
            self.last_ts_ms = ts_ms;
        }
    }
}

#[cfg(test)]
mod summary_tests {
    use super::MetricSummary;

    #[test]
    fn a_sum_saturates_and_a_summary_stays_readable() {
        let mut summary = MetricSummary::first(1e308, 1);
        summary.add(1e308, 2);
        assert_eq!(summary.sum, f64::MAX);
        let json = serde_json::to_string(&summary).unwrap();
        assert_eq!(
            serde_json::from_str::<MetricSummary>(&json).unwrap(),
            summary
        );
        // What an overflow wrote before sums saturated.
        let old = r#"{"peak":1.0,"min":1.0,"sum":null,"points":2,"last":1.0,"last_ts_ms":2}"#;
        assert_eq!(serde_json::from_str::<MetricSummary>(old).unwrap().sum, 0.0);
    }
}

/// One metric summarised over a session so far (versioned by the batch that last changed
/// it): what the metric explorer reads instead of every point.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct MetricSessionRow {
    pub name: String,
    pub session_id: String,
    /// How many batches of the session were applied when this summary held; the highest
    /// wins (ReplacingMergeTree's version, and `argMax` on read).
    pub version: u64,
    /// The session's start date (its partition, so retention drops it with the session).
    pub date: u16,
    pub peak: f64,
    pub min: f64,
    pub sum: f64,
    pub points: u64,
    pub last: f64,
    pub last_ts_ms: u64,
}

impl MetricSessionRow {
    /// The row of metric `name` of a session, at `version`.
    pub fn new(
        name: &str,
        session_id: &str,
        version: u64,
        date: u16,
        summary: &MetricSummary,
    ) -> Self {
        let MetricSummary {
            peak,
            min,
            sum,
            points,
            last,
            last_ts_ms,
        } = *summary;
        Self {
            name: name.to_string(),
            session_id: session_id.to_string(),
            version,
            date,
            peak,
            min,
            sum,
            points,
            last,
            last_ts_ms,
        }
    }
}

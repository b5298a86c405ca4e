//! The JSON shapes the query service answers with, shared with the dashboard.
//!
//! Session detail has the field names the client API reads a session with (`state`,
//! `state_history`, `events`, `metrics`, `active`, `created_at`, `ended_at`, `crashed`,
//! `hung`, ...), beside the status and counts the service adds.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use datacat_protocol::record::{ExceptionInfo, Histogram, MachineInfo};
use datacat_protocol::{Level, MetricKind, Status};

/// One row of the sessions list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionSummary {
    pub id: String,
    pub product: String,
    pub version: String,
    pub status: Status,
    /// Why the session ended (empty while active).
    pub end_reason: String,
    pub created_at: String,
    pub updated_at: String,
    pub ended_at: Option<String>,
    pub hostname: String,
    pub machine_id: String,
    pub event_count: u64,
    /// Where it ran (`production`, `ci`, ...); empty when the client did not say.
    #[serde(default)]
    pub environment: String,
    /// The client's free tags.
    #[serde(default)]
    pub tags: std::collections::BTreeMap<String, String>,
}

/// Everything about one session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionDetail {
    pub id: String,
    pub product: String,
    pub version: String,
    pub status: Status,
    pub end_reason: String,
    pub created_at: String,
    pub updated_at: String,
    pub ended_at: Option<String>,
    pub last_heartbeat: Option<String>,
    /// `status == "active"`.
    pub active: bool,
    /// `status == "crashed"`.
    pub crashed: bool,
    /// `status == "hung"`.
    pub hung: bool,
    pub hostname: String,
    pub machine_id: String,
    pub machine: MachineInfo,
    #[serde(default)]
    pub environment: String,
    #[serde(default)]
    pub tags: std::collections::BTreeMap<String, String>,
    /// How often the session was detected hung (it stays remembered after recovery).
    pub hang_count: u32,
    /// When the current or last hang started.
    pub hung_at: Option<String>,
    /// Records the daemon could not keep (its spool was full).
    pub dropped_records: u64,
    /// Batches that never arrived (given up on after the gap wait).
    pub gaps: u64,
    /// The sequence number of the last batch ingest applied to this session. A writer that
    /// knows the sequence of its last write passes it as `min_seq` to read its own writes.
    pub last_seq: u64,
    pub state: Value,
    pub state_history: Vec<StateSnapshot>,
    pub events: Vec<EventView>,
    pub metrics: Vec<MetricView>,
    /// Present when a list was cut at `limit` rows (`?limit=`, 10 000 by default): which
    /// lists, and the `?offset=` that gives their next rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub more: Option<MoreRows>,
}

/// The lists of a session's detail that hold only part of their rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MoreRows {
    /// The most rows each list held.
    pub limit: u64,
    /// Each cut list's next rows start here (absent when the latest rows were asked for,
    /// and earlier ones left out).
    pub next_offset: Option<u64>,
    /// The lists cut: `state_history`, `events`, `metrics`.
    pub lists: Vec<String>,
}

/// The whole state right after one accepted update.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StateSnapshot {
    pub seq: u64,
    pub timestamp: String,
    /// The update as applied (after the daemon's change filter).
    pub update: Value,
    pub state: Value,
    /// The client's own time, when `timestamp` is the receive time instead: the client's
    /// was more than 30 days before, or a minute after, the record was received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_timestamp: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EventView {
    pub timestamp: String,
    pub name: String,
    pub level: Level,
    pub category: String,
    pub group: String,
    pub labels: Vec<String>,
    pub message: String,
    pub data: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exception: Option<ExceptionInfo>,
    /// The client's own time, when `timestamp` is the receive time instead: the client's
    /// was more than 30 days before, or a minute after, the record was received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_timestamp: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MetricView {
    pub timestamp: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: MetricKind,
    pub value: f64,
    pub unit: String,
    pub tags: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub histogram: Option<Histogram>,
    /// The client's own time, when `timestamp` is the receive time instead: the client's
    /// was more than 30 days before, or a minute after, the record was received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_timestamp: Option<String>,
}

pub use crate::query::{MetricStat, Order, PathValue, SessionQuery, SortKey, Tag};

/// A page of the sessions list; `next_cursor` fetches the next one (absent on the last).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionPage {
    pub sessions: Vec<SessionSummary>,
    pub next_cursor: Option<String>,
}

/// `GET /api/products`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProductsAnswer {
    pub products: Vec<ProductSummary>,
}

/// Sessions started on one day (UTC) and how many of them crashed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TrendPoint {
    /// `YYYY-MM-DD`.
    pub date: String,
    pub sessions: u64,
    pub crashed: u64,
    pub crash_free_rate: f64,
}

/// `GET /api/products/trend`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TrendAnswer {
    pub days: Vec<TrendPoint>,
}

/// `GET /api/sessions/{id}/metrics`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MetricsAnswer {
    pub metrics: Vec<MetricSeries>,
}

/// A write was accepted: `{"status": "ok"}` (a batch adds how many items it took).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WriteAnswer {
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accepted: Option<usize>,
    /// The batch sequence number the write was published as. A read that passes it as
    /// `min_seq` sees the write (read your own writes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
}

/// `POST /api/sessions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreatedSession {
    pub session_id: String,
    /// The batch sequence number of the session's first batch (always 0).
    pub seq: u64,
}

/// One product version: its sessions by status and how many did not crash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProductSummary {
    pub product: String,
    pub version: String,
    pub sessions: u64,
    /// Sessions per status (`active`, `hung`, `ended`, `crashed`, `lost`).
    pub statuses: std::collections::BTreeMap<String, u64>,
    /// Share of sessions that did not crash (0..1).
    pub crash_free_rate: f64,
    pub last_started_at: String,
}

/// A metric summarised over one session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionMetric {
    pub session_id: String,
    pub product: String,
    pub version: String,
    pub status: Status,
    pub peak: f64,
    pub min: f64,
    pub avg: f64,
    pub last: f64,
    pub points: u64,
}

/// Sessions whose chosen figure falls in `[lower, upper)` (the last bucket includes `upper`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DistributionBucket {
    pub lower: f64,
    pub upper: f64,
    pub sessions: u64,
}

/// A metric across the sessions matching a filter: a table (ranked by `stat`, highest
/// first) and the distribution of `stat` over all of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MetricAcrossSessions {
    pub metric: String,
    pub stat: MetricStat,
    /// Sessions that matched and have the metric (the table may be cut at its limit).
    pub matched_sessions: u64,
    pub sessions: Vec<SessionMetric>,
    pub distribution: Vec<DistributionBucket>,
}

/// One metric of one session over time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MetricSeries {
    pub name: String,
    pub kind: MetricKind,
    pub unit: String,
    pub points: Vec<MetricView>,
}

/// A page of one session's events; `next_offset` fetches the next one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EventPage {
    pub events: Vec<EventView>,
    pub next_offset: Option<u64>,
}

/// The difference between two points of a session's state history: applying `diff` (a deep
/// merge, `null` deletes) to the state at `from_seq` gives the state at `to_seq`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StateDiffView {
    pub from: StateSnapshot,
    pub to: StateSnapshot,
    pub diff: Value,
}

/// A JSON error body: `{"error": "<code>", "message": "<human text>"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub error: String,
    pub message: String,
}

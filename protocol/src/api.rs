//! The JSON shapes the query service answers with, shared with the dashboard.
//!
//! Session detail keeps the seed-compatible field names (`state`, `state_history`, `events`,
//! `metrics`, `created_at`, `ended_at`, `crashed`, `hung`, ...) so the original's clients and
//! tests can be pointed at the new service.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::record::{ExceptionInfo, Histogram, MachineInfo};

/// Lifecycle status of a session.
pub const STATUS_ACTIVE: &str = "active";

/// One row of the sessions list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionSummary {
    pub id: String,
    pub product: String,
    pub version: String,
    /// `active`, `ended`, `crashed`, `hung` or `lost`.
    pub status: String,
    /// Why the session ended (empty while active).
    pub end_reason: String,
    pub created_at: String,
    pub updated_at: String,
    pub ended_at: Option<String>,
    pub hostname: String,
    pub machine_id: String,
    pub event_count: u64,
}

/// Everything about one session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionDetail {
    pub id: String,
    pub product: String,
    pub version: String,
    pub status: String,
    pub end_reason: String,
    pub created_at: String,
    pub updated_at: String,
    pub ended_at: Option<String>,
    pub last_heartbeat: Option<String>,
    /// Seed compatibility: `status == "active"`.
    pub active: bool,
    /// Seed compatibility: `status == "crashed"`.
    pub crashed: bool,
    /// Seed compatibility: `status == "hung"`.
    pub hung: bool,
    pub hostname: String,
    pub machine_id: String,
    pub machine: MachineInfo,
    /// How often the session was detected hung (it stays remembered after recovery).
    pub hang_count: u32,
    /// When the current or last hang started.
    pub hung_at: Option<String>,
    /// Records the daemon could not keep (its spool was full).
    pub dropped_records: u64,
    /// Batches that never arrived (given up on after the gap wait).
    pub gaps: u64,
    pub state: Value,
    pub state_history: Vec<StateSnapshot>,
    pub events: Vec<EventView>,
    pub metrics: Vec<MetricView>,
}

/// The whole state right after one accepted update.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateSnapshot {
    pub seq: u64,
    pub timestamp: String,
    /// The update as applied (after the daemon's change filter).
    pub update: Value,
    pub state: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventView {
    pub timestamp: String,
    pub name: String,
    pub level: String,
    pub category: String,
    pub group: String,
    pub labels: Vec<String>,
    pub message: String,
    pub data: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exception: Option<ExceptionInfo>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricView {
    pub timestamp: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub value: f64,
    pub unit: String,
    pub tags: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub histogram: Option<Histogram>,
}

/// Filters of the sessions list.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SessionQuery {
    pub product: Option<String>,
    pub version: Option<String>,
    pub status: Option<String>,
    pub limit: Option<u32>,
}

/// A JSON error body: `{"error": "<code>", "message": "<human text>"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    pub message: String,
}

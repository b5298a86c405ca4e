//! The records a session produces, as the daemon publishes them and ingest stores them.
//!
//! Every record carries `ts_ms`: Unix milliseconds of the client call (or of the daemon's
//! observation, for what the daemon detects itself).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One thing that happened in a session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Record {
    Start(SessionStart),
    State(StateUpdate),
    Event(Event),
    Metric(Metric),
    Heartbeat(Heartbeat),
    End(SessionEnd),
}

impl Record {
    /// When the record happened, in Unix milliseconds.
    pub fn ts_ms(&self) -> u64 {
        match self {
            Record::Start(r) => r.ts_ms,
            Record::State(r) => r.ts_ms,
            Record::Event(r) => r.ts_ms,
            Record::Metric(r) => r.ts_ms,
            Record::Heartbeat(r) => r.ts_ms,
            Record::End(r) => r.ts_ms,
        }
    }
}

/// The first record of a session: what ran, and where.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionStart {
    pub ts_ms: u64,
    pub product: String,
    pub version: String,
    #[serde(default)]
    pub machine: MachineInfo,
}

/// The machine and process a session ran on, captured by the daemon at session start.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MachineInfo {
    pub hostname: String,
    /// A stable machine id: a hash of the OS machine id, never the raw value.
    pub machine_id: String,
    pub os_name: String,
    pub os_version: String,
    pub cpu_model: String,
    pub cpu_count: u32,
    pub total_memory_bytes: u64,
    pub pid: u32,
    pub executable: String,
    pub user: String,
}

/// A partial state to deep-merge into the session state (see [`crate::merge`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateUpdate {
    pub ts_ms: u64,
    /// Always a JSON object.
    pub update: Value,
}

/// Severity of an event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Debug,
    #[default]
    Info,
    Warning,
    Error,
    Critical,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warning => "warning",
            Level::Error => "error",
            Level::Critical => "critical",
        }
    }

    /// Parses a level name leniently (`warn`, `fatal` and any case are accepted).
    pub fn parse(name: &str) -> Option<Level> {
        match name.to_ascii_lowercase().as_str() {
            "debug" | "trace" => Some(Level::Debug),
            "info" | "information" => Some(Level::Info),
            "warning" | "warn" => Some(Level::Warning),
            "error" | "err" => Some(Level::Error),
            "critical" | "fatal" => Some(Level::Critical),
            _ => None,
        }
    }
}

/// Something that happened, with optional structured data and exception.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub ts_ms: u64,
    pub name: String,
    #[serde(default)]
    pub level: Level,
    #[serde(default)]
    pub category: String,
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub labels: Vec<String>,
    #[serde(default)]
    pub message: String,
    /// A JSON object; `{}` when the client sent none.
    #[serde(default = "empty_object")]
    pub data: Value,
    #[serde(default)]
    pub exception: Option<ExceptionInfo>,
}

/// An exception as the client saw it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ExceptionInfo {
    #[serde(rename = "type")]
    pub type_name: String,
    pub message: String,
    /// Formatted traceback chunks, as the language prints them.
    pub stacktrace: Vec<String>,
    /// Structured frames, innermost last.
    pub frames: Vec<Frame>,
}

/// One stack frame of an exception.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Frame {
    pub file: String,
    pub line: u32,
    pub function: String,
    pub code: String,
}

/// How a metric value is to be read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    #[default]
    Gauge,
    Counter,
    Histogram,
    Timer,
}

impl MetricKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Gauge => "gauge",
            MetricKind::Counter => "counter",
            MetricKind::Histogram => "histogram",
            MetricKind::Timer => "timer",
        }
    }

    pub fn parse(name: &str) -> Option<MetricKind> {
        match name.to_ascii_lowercase().as_str() {
            "gauge" => Some(MetricKind::Gauge),
            "counter" => Some(MetricKind::Counter),
            "histogram" => Some(MetricKind::Histogram),
            "timer" => Some(MetricKind::Timer),
            _ => None,
        }
    }
}

/// One metric point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    pub ts_ms: u64,
    pub name: String,
    #[serde(default)]
    pub kind: MetricKind,
    pub value: f64,
    #[serde(default)]
    pub unit: String,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Iteration count, for timers.
    #[serde(default)]
    pub count: Option<u64>,
}

/// The application is alive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub ts_ms: u64,
}

/// How a session ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndStatus {
    /// The client ended it.
    #[default]
    Ended,
    /// The process died without ending it.
    Crashed,
    /// The daemon itself vanished.
    Lost,
}

impl EndStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            EndStatus::Ended => "ended",
            EndStatus::Crashed => "crashed",
            EndStatus::Lost => "lost",
        }
    }
}

/// The last record of a session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionEnd {
    pub ts_ms: u64,
    #[serde(default)]
    pub status: EndStatus,
    #[serde(default)]
    pub reason: String,
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

//! The records a session produces, as the daemon publishes them and ingest stores them.
//!
//! Every record carries `ts_ms`: Unix milliseconds of the client call (or of the daemon's
//! observation, for what the daemon detects itself).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use crate::vocabulary::{EndStatus, Level, MetricKind, Status};

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
    /// The daemon detected a hang, or the recovery from one.
    Hang(HangChange),
    /// The daemon had to drop data (its spool was full); what and how much.
    Dropped(DataDropped),
    /// The daemon is alive and the session open, though nothing else happened.
    Alive(Alive),
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
            Record::Hang(r) => r.ts_ms,
            Record::Dropped(r) => r.ts_ms,
            Record::Alive(r) => r.ts_ms,
        }
    }
}

/// The first record of a session: what ran, and where.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SessionStart {
    pub ts_ms: u64,
    pub product: String,
    pub version: String,
    #[serde(default)]
    pub machine: MachineInfo,
    /// Where the program ran (`production`, `staging`, `ci`, ...); empty when not said.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub environment: String,
    /// Free tags (`team: rendering`, `branch: main`): the API filters on them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

/// The longest environment name, in bytes.
pub const MAX_ENVIRONMENT_BYTES: usize = 64;
/// The most tags a session carries, and the longest tag key and value, in bytes.
pub const MAX_TAGS: usize = 32;
pub const MAX_TAG_KEY_BYTES: usize = 64;
pub const MAX_TAG_VALUE_BYTES: usize = 256;

/// Why a session's environment and tags cannot be kept, if they cannot.
pub fn labels_refusal(environment: &str, tags: &BTreeMap<String, String>) -> Option<String> {
    if environment.len() > MAX_ENVIRONMENT_BYTES {
        return Some(format!(
            "environment is {} bytes long; at most {MAX_ENVIRONMENT_BYTES}",
            environment.len()
        ));
    }
    if tags.len() > MAX_TAGS {
        return Some(format!("{} tags; at most {MAX_TAGS}", tags.len()));
    }
    tags.iter().find_map(|(key, value)| {
        if key.trim().is_empty() || key.len() > MAX_TAG_KEY_BYTES || key.contains(':') {
            Some(format!(
                "tag key {key:?}: 1 to {MAX_TAG_KEY_BYTES} bytes, without ':'"
            ))
        } else if value.len() > MAX_TAG_VALUE_BYTES {
            Some(format!(
                "tag {key:?}: its value is {} bytes long; at most {MAX_TAG_VALUE_BYTES}",
                value.len()
            ))
        } else {
            None
        }
    })
}

/// The machine and process a session ran on, captured by the daemon at session start.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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

impl StateUpdate {
    /// The deepest a state may nest (objects and arrays): the merged state is kept in the
    /// session's progress record, a level or two further down, and every reader of that
    /// record must decode it (JSON decoders stop at 128 levels).
    pub const MAX_DEPTH: usize = 64;

    /// Why `update` cannot be a state update (not an object, or nested too deeply), if so.
    pub fn refusal(update: &Value) -> Option<String> {
        if !update.is_object() {
            return Some("a state update must be a JSON object".into());
        }
        // Every update ingest decodes is checked: the walk stops below the limit.
        nests_deeper_than(update, Self::MAX_DEPTH).then(|| {
            format!(
                "the state nests {} levels deep; at most {} are kept",
                json_depth(update),
                Self::MAX_DEPTH
            )
        })
    }
}

/// Whether `value` nests more than `levels` levels (looking no deeper than that).
fn nests_deeper_than(value: &Value, levels: usize) -> bool {
    match value {
        Value::Object(map) => levels == 0 || map.values().any(|v| nests_deeper_than(v, levels - 1)),
        Value::Array(items) => {
            levels == 0 || items.iter().any(|v| nests_deeper_than(v, levels - 1))
        }
        _ => false,
    }
}

/// How deep a JSON value nests: 0 for a scalar, 1 for an object of scalars. (Iterative: a
/// value nested deeper than the stack allows must still be measured.)
pub fn json_depth(value: &Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(value, 0)];
    while let Some((value, depth)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match value {
            Value::Object(map) => Box::new(map.values()),
            Value::Array(items) => Box::new(items.iter()),
            _ => continue,
        };
        deepest = deepest.max(depth + 1);
        stack.extend(children.map(|child| (child, depth + 1)));
    }
    deepest
}

/// Something that happened, with optional structured data and exception.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub ts_ms: u64,
    pub name: String,
    #[serde(default)]
    pub level: Level,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub category: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub group: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// A JSON object; `{}` when the client sent none.
    #[serde(default = "empty_object")]
    pub data: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exception: Option<Box<ExceptionInfo>>,
}

impl Event {
    /// An event with only a name: info level, no labels, message or data.
    pub fn named(ts_ms: u64, name: &str) -> Self {
        Self {
            ts_ms,
            name: name.to_string(),
            level: Level::Info,
            category: String::new(),
            group: String::new(),
            labels: Vec::new(),
            message: String::new(),
            data: empty_object(),
            exception: None,
        }
    }
}

/// An exception as the client saw it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct ExceptionInfo {
    #[serde(rename = "type")]
    pub type_name: String,
    pub message: String,
    /// Formatted traceback chunks, as the language prints them.
    pub stacktrace: Vec<String>,
    /// Structured frames, innermost last.
    pub frames: Vec<Frame>,
    /// The errors behind this one, nearest first: what it was raised from or while
    /// handling (Python's `__cause__`, `__context__`), what it wraps (Go's `Unwrap`,
    /// `errors.Join`). Clients send at most [`MAX_CAUSES`].
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub causes: Vec<Cause>,
}

/// The most causes a client sends with one exception (deeper chains are cut).
pub const MAX_CAUSES: usize = 10;

/// An error behind an exception.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct Cause {
    #[serde(rename = "type")]
    pub type_name: String,
    pub message: String,
    /// How it relates to the error before it in the chain: `cause` (raised from it),
    /// `context` (raised while handling it), `wrapped`, `joined`.
    pub relation: String,
    /// Its own frames, innermost last, when the language keeps them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub frames: Vec<Frame>,
}

/// One stack frame of an exception.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct Frame {
    pub file: String,
    pub line: u32,
    pub function: String,
    pub code: String,
    /// The frame's local variables as text (`repr`), when the application opted in; the
    /// clients send at most 30 of the innermost 10 frames' variables, each cut to 200
    /// characters.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub locals: BTreeMap<String, String>,
}

/// The longest a name kept in a session's progress record may be (a metric's, a product's
/// or a version's), in bytes: that record must stay well within a NATS message.
pub const MAX_NAME_BYTES: usize = 256;

/// `text`'s first `bytes` bytes at most, cut at a character boundary.
pub fn cut_to(text: &str, bytes: usize) -> &str {
    let mut end = text.len().min(bytes);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Why `name` (a metric's, a product's, a version's) cannot be kept, if it cannot.
pub fn name_refusal(what: &str, name: &str) -> Option<String> {
    if name.trim().is_empty() {
        return Some(format!("{what} must not be empty"));
    }
    (name.len() > MAX_NAME_BYTES).then(|| {
        format!(
            "{what} is {} bytes; at most {MAX_NAME_BYTES} are kept",
            name.len()
        )
    })
}

/// One metric point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    pub ts_ms: u64,
    pub name: String,
    #[serde(default)]
    pub kind: MetricKind,
    pub value: f64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub unit: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Iteration count, for timers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// Bucketed observations, for histograms aggregated by the daemon.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub histogram: Option<Histogram>,
}

impl Metric {
    /// A plain gauge point: no unit, tags, count or buckets.
    pub fn gauge(ts_ms: u64, name: impl Into<String>, value: f64) -> Self {
        Self {
            ts_ms,
            name: name.into(),
            kind: MetricKind::Gauge,
            value,
            unit: String::new(),
            tags: Vec::new(),
            count: None,
            histogram: None,
        }
    }
}

/// A histogram's state: per-bucket (not cumulative) counts.
///
/// `counts` has one more entry than `bounds`: the last counts observations above the last
/// bound (the +Inf bucket), so every number stays finite and JSON-safe.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Histogram {
    /// Upper bounds, ascending, finite.
    pub bounds: Vec<f64>,
    pub counts: Vec<u64>,
    pub sum: f64,
    pub count: u64,
}

/// The bucket bounds used when a client gives none (in seconds).
pub const DEFAULT_HISTOGRAM_BOUNDS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

impl Histogram {
    /// An empty histogram over `bounds` (sorted, deduplicated, non-finite ones dropped: the
    /// +Inf bucket always exists).
    pub fn new(bounds: &[f64]) -> Self {
        let mut bounds: Vec<f64> = bounds.iter().copied().filter(|b| b.is_finite()).collect();
        bounds.sort_by(f64::total_cmp);
        bounds.dedup();
        let counts = vec![0; bounds.len() + 1];
        Self {
            bounds,
            counts,
            sum: 0.0,
            count: 0,
        }
    }

    pub fn observe(&mut self, value: f64) {
        let bucket = self
            .bounds
            .iter()
            .position(|bound| value <= *bound)
            .unwrap_or(self.bounds.len());
        self.counts[bucket] += 1;
        self.sum += value;
        self.count += 1;
    }

    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum / self.count as f64
        }
    }
}

/// The application is alive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub ts_ms: u64,
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

/// A change of the hang state of a session with heartbeat monitoring.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HangChange {
    pub ts_ms: u64,
    /// `true`: heartbeats stopped; `false`: they resumed.
    pub hung: bool,
    pub last_heartbeat_ms: u64,
    /// The client's timeout that was exceeded.
    pub timeout_ms: u64,
}

/// Data of this session the daemon could not keep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataDropped {
    pub ts_ms: u64,
    pub batches: u64,
    pub records: u64,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alive {
    pub ts_ms: u64,
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_per_bucket_with_an_overflow() {
        let mut h = Histogram::new(&[1.0, f64::INFINITY, 0.5, 1.0, f64::NAN]);
        assert_eq!(h.bounds, vec![0.5, 1.0]);
        for v in [0.1, 0.5, 0.7, 1.0, 9.0] {
            h.observe(v);
        }
        assert_eq!(h.counts, vec![2, 2, 1]);
        assert_eq!((h.count, h.sum), (5, 11.3));
        assert!((h.mean() - 2.26).abs() < 1e-9);
        assert_eq!(Histogram::new(&[]).mean(), 0.0);
    }

    #[test]
    fn environment_and_tags_are_kept_up_to_their_limits_and_refused_beyond() {
        let tags = |n: usize, key: usize, value: usize| -> BTreeMap<String, String> {
            (0..n)
                .map(|i| (format!("{i:0key$}"), "v".repeat(value)))
                .collect()
        };
        let at_most = tags(MAX_TAGS, MAX_TAG_KEY_BYTES, MAX_TAG_VALUE_BYTES);
        assert_eq!(
            labels_refusal(&"e".repeat(MAX_ENVIRONMENT_BYTES), &at_most),
            None
        );
        assert_eq!(labels_refusal("", &BTreeMap::new()), None);
        let refused = [
            labels_refusal(&"e".repeat(MAX_ENVIRONMENT_BYTES + 1), &BTreeMap::new()),
            labels_refusal("", &tags(MAX_TAGS + 1, 2, 1)),
            labels_refusal("", &tags(1, MAX_TAG_KEY_BYTES + 1, 1)),
            labels_refusal("", &tags(1, 2, MAX_TAG_VALUE_BYTES + 1)),
            labels_refusal("", &[("a:b".to_string(), "c".to_string())].into()),
            labels_refusal("", &[(" ".to_string(), "c".to_string())].into()),
        ];
        for (i, refusal) in refused.iter().enumerate() {
            assert!(refusal.is_some(), "case {i} was kept");
        }
    }
}

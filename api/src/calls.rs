//! Calls as clients send them (JSON bodies to the daemon, or to the query service's direct
//! writes), and their conversion into records. One parser for both, so a call means the same
//! wherever it is sent.
//!
//! The field names are the client API's (docs/daemon-api.md): applications written against
//! it keep working.

use std::time::Duration;

use datacat_protocol::record::{
    name_refusal, EndStatus, Event, ExceptionInfo, Heartbeat, Histogram, Level, Metric, MetricKind,
    Record, StateUpdate, DEFAULT_HISTOGRAM_BOUNDS,
};
use datacat_protocol::time::{client_ts_ms, now_ms, parse_time_ms};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

/// A request that cannot be served as sent.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{0}")]
pub struct BadBody(pub String);

/// Parses JSON, accepting the bare `Infinity`, `-Infinity` and `NaN` tokens that Python's
/// `json` module writes (they become the strings `"+Inf"`, `"-Inf"`, `"NaN"`).
pub fn parse_lenient<T: DeserializeOwned>(body: &[u8]) -> Result<T, BadBody> {
    match serde_json::from_slice(body) {
        Ok(value) => Ok(value),
        Err(first_error) => {
            let rewritten = rewrite_non_finite_tokens(body).ok_or_else(|| invalid(&first_error))?;
            serde_json::from_slice(&rewritten).map_err(|_| invalid(&first_error))
        }
    }
}

fn invalid(error: &serde_json::Error) -> BadBody {
    BadBody(format!("invalid JSON body: {error}"))
}

/// Replaces the non-finite tokens outside strings; `None` if there were none.
fn rewrite_non_finite_tokens(body: &[u8]) -> Option<Vec<u8>> {
    const TOKENS: [(&[u8], &[u8]); 3] = [
        (b"-Infinity", b"\"-Inf\""),
        (b"Infinity", b"\"+Inf\""),
        (b"NaN", b"\"NaN\""),
    ];
    let mut out = Vec::with_capacity(body.len() + 16);
    let (mut in_string, mut escaped, mut changed) = (false, false, false);
    let mut i = 0;
    'scan: while i < body.len() {
        let byte = body[i];
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
        } else if byte == b'"' {
            in_string = true;
        } else {
            for (token, replacement) in TOKENS {
                if body[i..].starts_with(token) {
                    out.extend_from_slice(replacement);
                    i += token.len();
                    changed = true;
                    continue 'scan;
                }
            }
        }
        out.push(byte);
        i += 1;
    }
    changed.then_some(out)
}

/// A client's timestamp: Unix seconds (what the clients send) or RFC 3339 text.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum ClientTime {
    Seconds(f64),
    Text(String),
}

/// The record time of a call: the client's timestamp when it makes sense, else now.
pub fn ts(timestamp: Option<ClientTime>) -> u64 {
    let seconds = match timestamp {
        Some(ClientTime::Seconds(seconds)) => Some(seconds),
        Some(ClientTime::Text(text)) => parse_time_ms(&text).map(|ms| ms as f64 / 1000.0),
        None => None,
    };
    client_ts_ms(seconds, now_ms())
}

#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StateBody {
    pub state: Value,
    pub timestamp: Option<ClientTime>,
}

impl StateBody {
    pub fn into_call(self) -> Result<Call, BadBody> {
        if let Some(refusal) = StateUpdate::refusal(&self.state) {
            return Err(BadBody(refusal));
        }
        Ok(Call::State(StateUpdate {
            ts_ms: ts(self.timestamp),
            update: self.state,
        }))
    }
}

/// An event. Its exception is an `exception` object, or the flat `stacktrace`,
/// `exception_type` and `exception_msg` fields.
#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EventBody {
    name: String,
    level: Option<String>,
    category: Option<String>,
    group: Option<String>,
    labels: Option<Vec<String>>,
    message: Option<String>,
    data: Option<Value>,
    exception: Option<ExceptionInfo>,
    stacktrace: Option<Vec<String>>,
    exception_type: Option<String>,
    exception_msg: Option<String>,
    timestamp: Option<ClientTime>,
}

impl EventBody {
    pub fn into_call(self) -> Result<Call, BadBody> {
        self.into_event().map(Call::Record)
    }

    fn into_event(self) -> Result<Record, BadBody> {
        if self.name.trim().is_empty() {
            return Err(BadBody("event name must not be empty".into()));
        }
        let level = match (&self.level, &self.category) {
            (Some(level), _) => Level::parse(level).ok_or_else(|| {
                BadBody(format!(
                    "unknown level {level:?}: use debug, info, warning, error or critical"
                ))
            })?,
            // Without a level, a category that names one is the level.
            (None, Some(category)) => Level::parse(category).unwrap_or_default(),
            (None, None) => Level::default(),
        };
        let data = match self.data {
            None | Some(Value::Null) => json!({}),
            Some(data @ Value::Object(_)) => data,
            Some(_) => return Err(BadBody("event data must be a JSON object".into())),
        };
        let exception = self.exception.or_else(|| {
            self.exception_type.map(|type_name| ExceptionInfo {
                type_name,
                message: self.exception_msg.unwrap_or_default(),
                stacktrace: self.stacktrace.unwrap_or_default(),
                ..ExceptionInfo::default()
            })
        });
        Ok(Record::Event(Event {
            ts_ms: ts(self.timestamp),
            name: self.name,
            level,
            category: self.category.unwrap_or_default(),
            group: self.group.unwrap_or_default(),
            labels: self.labels.unwrap_or_default(),
            message: self.message.unwrap_or_default(),
            data,
            exception: exception.map(Box::new),
        }))
    }
}

/// One client call, checked: what it does to its session. A daemon applies it to the
/// session it keeps (merging state, aggregating counters and histograms); the query
/// service's direct writes turn it into its record ([`Call::into_record`]).
#[derive(Debug, PartialEq)]
pub enum Call {
    /// A partial state to deep-merge.
    State(StateUpdate),
    /// A record kept as it is: an event, or a metric point.
    Record(Record),
    /// Add `delta` to the running total of a counter (name, tags).
    CounterDelta {
        ts_ms: u64,
        name: String,
        tags: Vec<String>,
        unit: String,
        delta: f64,
    },
    /// One observation of a histogram, bucketed by `bounds`.
    Observation {
        ts_ms: u64,
        name: String,
        tags: Vec<String>,
        unit: String,
        bounds: Vec<f64>,
        value: f64,
    },
    /// The application is alive; `timeout` starts (or retunes) hang monitoring.
    Heartbeat {
        ts_ms: u64,
        timeout: Option<Duration>,
    },
}

impl Call {
    /// About how many bytes the call's record takes encoded (measured, not guessed: a
    /// client may log megabytes of data); what a size limit is checked against.
    pub fn encoded_size(&self) -> usize {
        use datacat_protocol::codec::encoded_size;
        // The timestamp, the kind and the field names of a metric record.
        const METRIC_FIELDS: usize = 96;
        match self {
            Call::State(update) => encoded_size(update),
            Call::Record(record) => encoded_size(record),
            Call::CounterDelta {
                name, tags, unit, ..
            } => encoded_size(&(name, tags, unit)) + METRIC_FIELDS,
            // A histogram holds its bounds and a count per bucket.
            Call::Observation {
                name,
                tags,
                unit,
                bounds,
                ..
            } => encoded_size(&(name, tags, unit)) + 2 * encoded_size(bounds) + METRIC_FIELDS,
            Call::Heartbeat { .. } => METRIC_FIELDS,
        }
    }

    /// The record a call is on its own, where nothing keeps running totals (the query
    /// service's direct writes): a counter delta is refused (send the total), and an
    /// observation is a histogram of that one value.
    pub fn into_record(self) -> Result<Record, BadBody> {
        Ok(match self {
            Call::State(update) => Record::State(update),
            Call::Record(record) => record,
            Call::CounterDelta { .. } => {
                return Err(BadBody(
                    "a counter delta needs a daemon to keep the total; send the total as value"
                        .into(),
                ))
            }
            Call::Observation {
                ts_ms,
                name,
                tags,
                unit,
                bounds,
                value,
            } => {
                let mut histogram = Histogram::new(&bounds);
                histogram.observe(value);
                Record::Metric(Metric {
                    ts_ms,
                    name,
                    kind: MetricKind::Histogram,
                    value,
                    unit,
                    tags,
                    count: Some(1),
                    histogram: Some(histogram),
                })
            }
            Call::Heartbeat { ts_ms, .. } => Record::Heartbeat(Heartbeat { ts_ms }),
        })
    }
}

#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MetricBody {
    name: String,
    value: Option<Value>,
    #[serde(rename = "type")]
    kind: Option<String>,
    unit: Option<String>,
    tags: Option<Vec<String>>,
    count: Option<u64>,
    /// For counters: add this to the running total (the daemon aggregates).
    delta: Option<Value>,
    /// For histograms: bucket upper bounds (also accepted as `metadata.buckets`).
    buckets: Option<Vec<Value>>,
    metadata: Option<Value>,
    timestamp: Option<ClientTime>,
}

fn finite(value: &Value, what: &str) -> Result<f64, BadBody> {
    value
        .as_f64()
        .filter(|v| v.is_finite())
        .ok_or_else(|| BadBody(format!("{what} must be a finite number")))
}

/// A bucket bound: a number, or `+Inf` / `inf` / `Infinity` (the overflow bucket, implicit).
fn bound(value: &Value) -> Result<f64, BadBody> {
    match value {
        Value::String(s)
            if matches!(s.to_ascii_lowercase().as_str(), "+inf" | "inf" | "infinity") =>
        {
            Ok(f64::INFINITY)
        }
        other => finite(other, "a bucket bound"),
    }
}

impl MetricBody {
    pub fn into_call(self) -> Result<Call, BadBody> {
        if let Some(refusal) = name_refusal("metric name", &self.name) {
            return Err(BadBody(refusal));
        }
        let kind = match self.kind.as_deref() {
            None | Some("") => MetricKind::Gauge,
            Some(kind) => MetricKind::parse(kind).ok_or_else(|| {
                BadBody(format!(
                    "unknown metric type {kind:?}: use gauge, counter, histogram or timer"
                ))
            })?,
        };
        let tags = self.tags.unwrap_or_default();
        let unit = self.unit.unwrap_or_default();
        let ts_ms = ts(self.timestamp);
        if kind == MetricKind::Counter {
            if let Some(delta) = &self.delta {
                let delta = finite(delta, "counter delta")?;
                return Ok(Call::CounterDelta {
                    ts_ms,
                    name: self.name,
                    tags,
                    unit,
                    delta,
                });
            }
        }
        let value = finite(self.value.as_ref().unwrap_or(&Value::Null), "metric value")?;
        if kind == MetricKind::Histogram {
            let listed = self
                .buckets
                .or_else(|| self.metadata.as_ref()?.get("buckets")?.as_array().cloned())
                .map(|bounds| bounds.iter().map(bound).collect::<Result<Vec<_>, _>>())
                .transpose()?;
            let bounds = listed.unwrap_or_else(|| DEFAULT_HISTOGRAM_BOUNDS.to_vec());
            return Ok(Call::Observation {
                ts_ms,
                name: self.name,
                tags,
                unit,
                bounds,
                value,
            });
        }
        Ok(Call::Record(Record::Metric(Metric {
            ts_ms,
            name: self.name,
            kind,
            value,
            unit,
            tags,
            count: self.count,
            histogram: None,
        })))
    }
}

/// The product and version a new session needs: both present and not blank.
pub fn product_and_version(
    product: Option<String>,
    version: Option<String>,
) -> Result<(String, String), BadBody> {
    let product = product.filter(|p| !p.trim().is_empty());
    let version = version.filter(|v| !v.trim().is_empty());
    match (product, version) {
        (Some(product), Some(version)) => {
            let refusal =
                name_refusal("product", &product).or_else(|| name_refusal("version", &version));
            match refusal {
                Some(refusal) => Err(BadBody(refusal)),
                None => Ok((product, version)),
            }
        }
        _ => Err(BadBody("product and version are required".into())),
    }
}

/// A new session's environment and tags, checked (`labels_refusal`'s limits).
pub fn session_labels(
    environment: Option<String>,
    tags: Option<std::collections::BTreeMap<String, String>>,
) -> Result<(String, std::collections::BTreeMap<String, String>), BadBody> {
    let environment = environment.unwrap_or_default().trim().to_string();
    let tags = tags.unwrap_or_default();
    match datacat_protocol::record::labels_refusal(&environment, &tags) {
        Some(refusal) => Err(BadBody(refusal)),
        None => Ok((environment, tags)),
    }
}

/// The id a client chose for a new session, if it chose one: a UUID, written in its
/// canonical lowercase hyphenated form. A client mints the id itself so that registering
/// never holds up the application (the registration is sent later, from a background
/// thread, while calls already carry the id); registering the same id again is harmless.
pub fn client_session_id(id: Option<String>) -> Result<Option<String>, BadBody> {
    let Some(id) = id.filter(|id| !id.is_empty()) else {
        return Ok(None);
    };
    match uuid::Uuid::try_parse(&id) {
        Ok(uuid) if !uuid.is_nil() && !uuid.is_max() => Ok(Some(uuid.hyphenated().to_string())),
        _ => Err(BadBody(format!(
            "session_id must be a UUID (the client may choose one), got {id:?}"
        ))),
    }
}

/// The longest heartbeat timeout a client may ask for.
pub const MAX_HEARTBEAT_TIMEOUT_SECS: f64 = 86_400.0;

/// Seconds from a client, as a heartbeat timeout (positive and finite, at most a day).
pub fn heartbeat_timeout(seconds: Option<f64>) -> Result<Option<Duration>, BadBody> {
    match seconds {
        None => Ok(None),
        Some(s) if s.is_finite() && s > 0.0 && s <= MAX_HEARTBEAT_TIMEOUT_SECS => {
            Ok(Some(Duration::from_secs_f64(s)))
        }
        Some(s) => Err(BadBody(format!(
            "timeout must be between 0 and {MAX_HEARTBEAT_TIMEOUT_SECS} seconds, not {s}"
        ))),
    }
}

/// A heartbeat; `timeout` (seconds without one after which the session is hung) starts
/// hang monitoring where a daemon watches.
#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HeartbeatBody {
    pub timeout: Option<f64>,
    pub timestamp: Option<ClientTime>,
}

impl HeartbeatBody {
    pub fn into_call(self) -> Result<Call, BadBody> {
        Ok(Call::Heartbeat {
            ts_ms: ts(self.timestamp),
            timeout: heartbeat_timeout(self.timeout)?,
        })
    }
}

/// The end of a session, normal or not.
#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EndBody {
    pub reason: Option<String>,
    /// True ends the session as `crashed` (a client that caught its application's uncaught
    /// exception); the default is `ended`.
    pub crashed: Option<bool>,
    pub timestamp: Option<ClientTime>,
    /// The longest the client will wait for the session's data to be acknowledged by
    /// JetStream, in seconds (a daemon's `/end`; the daemon's own bound applies too).
    pub wait: Option<f64>,
}

impl EndBody {
    /// The status this body asks for, given the endpoint's own default.
    pub fn status(&self, default: EndStatus) -> EndStatus {
        match self.crashed {
            Some(true) => EndStatus::Crashed,
            _ => default,
        }
    }
}

/// One item of a batch call.
#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BatchItem {
    State(StateBody),
    Event(Box<EventBody>),
    Metric(Box<MetricBody>),
    Heartbeat(HeartbeatBody),
}

impl BatchItem {
    pub fn into_call(self) -> Result<Call, BadBody> {
        match self {
            BatchItem::State(state) => state.into_call(),
            BatchItem::Event(event) => event.into_call(),
            BatchItem::Metric(metric) => metric.into_call(),
            BatchItem::Heartbeat(beat) => beat.into_call(),
        }
    }
}

/// Many calls in one request, applied in order. Items stay JSON until each is checked, so
/// one bad item is reported by index and the rest still apply.
#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BatchBody {
    /// The session, when the endpoint does not name it (a daemon's `/batch`).
    #[serde(default)]
    pub session_id: Option<String>,
    pub items: Vec<Value>,
}

/// A batch call's body: its session (when the body names it) and each item's call, or why
/// the item cannot be one.
pub struct Batch {
    pub session_id: Option<String>,
    pub calls: Vec<Result<Call, BadBody>>,
}

impl Batch {
    /// Parses a `/batch` body. The usual batch is all good: it is read in one typed pass (no
    /// JSON tree per item: a client shipping 200 000 events a second spends most of a
    /// daemon's time here otherwise); only a batch with a bad item is read item by item.
    pub fn parse(body: &[u8]) -> Result<Self, BadBody> {
        #[derive(Deserialize)]
        struct Typed {
            #[serde(default)]
            session_id: Option<String>,
            items: Vec<BatchItem>,
        }
        if let Ok(typed) = parse_lenient::<Typed>(body) {
            return Ok(Self {
                session_id: typed.session_id,
                calls: typed.items.into_iter().map(BatchItem::into_call).collect(),
            });
        }
        let body: BatchBody = parse_lenient(body)?;
        let calls = body
            .items
            .into_iter()
            .map(|item| {
                serde_json::from_value::<BatchItem>(item)
                    .map_err(|e| BadBody(e.to_string()))
                    .and_then(BatchItem::into_call)
            })
            .collect();
        Ok(Self {
            session_id: body.session_id,
            calls,
        })
    }

    /// Applies the calls in order with `apply`. A call that is invalid, or that `apply`
    /// refuses, is listed with its index and why; the others are still applied. `apply`
    /// may stop the batch instead (with an error every item would meet: an unknown session).
    pub fn apply<E>(
        self,
        mut apply: impl FnMut(Call) -> Result<(), Refusal<E>>,
    ) -> Result<Applied, E> {
        let mut applied = Applied::default();
        for (index, call) in self.calls.into_iter().enumerate() {
            let outcome = match call {
                Ok(call) => apply(call),
                Err(bad) => Err(Refusal::Item(bad.0)),
            };
            match outcome {
                Ok(()) => applied.accepted += 1,
                Err(Refusal::Item(message)) => applied.rejected.push(Rejected { index, message }),
                Err(Refusal::Batch(error)) => return Err(error),
            }
        }
        Ok(applied)
    }
}

/// Why a call of a batch was not applied.
pub enum Refusal<E> {
    /// This call is wrong; the others go on.
    Item(String),
    /// Every call would fail the same way: the batch stops.
    Batch(E),
}

impl<E> From<BadBody> for Refusal<E> {
    fn from(bad: BadBody) -> Self {
        Refusal::Item(bad.0)
    }
}

/// What a batch did: how many calls were applied, and those that were not.
#[derive(Debug, Default, PartialEq)]
pub struct Applied {
    pub accepted: usize,
    pub rejected: Vec<Rejected>,
}

/// A call of a batch that was not applied: its index in the batch, and why.
#[derive(Debug, PartialEq, serde::Serialize)]
pub struct Rejected {
    pub index: usize,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(body: Value) -> Result<Call, BadBody> {
        serde_json::from_value::<MetricBody>(body)
            .unwrap()
            .into_call()
    }

    #[test]
    fn python_non_finite_tokens_are_accepted_outside_strings() {
        let parsed: Value =
            parse_lenient(br#"{"a": [1, Infinity, -Infinity, NaN], "s": "NaN Infinity \" NaN"}"#)
                .unwrap();
        assert_eq!(
            parsed,
            json!({"a": [1, "+Inf", "-Inf", "NaN"], "s": "NaN Infinity \" NaN"})
        );
        assert!(parse_lenient::<Value>(b"{bad")
            .unwrap_err()
            .0
            .starts_with("invalid JSON body"));
    }

    #[test]
    fn metric_calls() {
        assert!(matches!(
            call(json!({"name": "fps", "value": 60})),
            Ok(Call::Record(_))
        ));
        assert_eq!(
            call(
                json!({"name": "hits", "type": "counter", "value": 0, "delta": 2, "timestamp": 5})
            ),
            Ok(Call::CounterDelta {
                ts_ms: 5000,
                name: "hits".into(),
                tags: vec![],
                unit: String::new(),
                delta: 2.0
            })
        );
        assert!(matches!(
            call(json!({"name": "hits", "type": "counter", "value": 7})),
            Ok(Call::Record(_))
        ));
        let observation = call(
            json!({"name": "t", "type": "histogram", "value": 0.3, "metadata": {"buckets": [0.1, 1, "+Inf"]}, "timestamp": 7}),
        )
        .unwrap();
        let Call::Observation { bounds, ts_ms, .. } = &observation else {
            panic!("a histogram observation")
        };
        assert_eq!(bounds, &vec![0.1, 1.0, f64::INFINITY]);
        assert_eq!(*ts_ms, 7000);
        // Where nothing aggregates, an observation is a histogram of one value, at its time.
        let Record::Metric(metric) = observation.into_record().unwrap() else {
            panic!("a metric record")
        };
        assert_eq!((metric.ts_ms, metric.count), (7000, Some(1)));
        assert!(call(json!({"name": "fps", "value": "NaN"})).is_err());
        assert!(call(json!({"name": "fps"})).is_err());
        assert!(call(json!({"name": "fps", "value": 1, "type": "pie"})).is_err());
    }
}

#[cfg(test)]
mod batch_tests {
    use super::*;

    #[test]
    fn a_batch_applies_its_good_calls_and_lists_the_others() {
        let body = br#"{"session_id": "s", "items": [
            {"kind": "event", "name": "a"},
            {"kind": "event", "name": ""},
            {"kind": "nonsense"},
            {"kind": "heartbeat", "timeout": 5},
            {"kind": "metric", "name": "hits", "type": "counter", "delta": 1}
        ]}"#;
        let batch = Batch::parse(body).unwrap();
        assert_eq!(batch.session_id.as_deref(), Some("s"));
        let mut seen = Vec::new();
        let applied = batch
            .apply(|call| -> Result<(), Refusal<()>> {
                seen.push(call);
                match seen.last() {
                    Some(Call::CounterDelta { .. }) => Err(Refusal::Item("no totals here".into())),
                    _ => Ok(()),
                }
            })
            .unwrap();
        assert_eq!(applied.accepted, 2);
        let indexes: Vec<usize> = applied.rejected.iter().map(|r| r.index).collect();
        assert_eq!(indexes, [1, 2, 4]);
        assert_eq!(applied.rejected[2].message, "no totals here");
        assert!(matches!(
            seen[1],
            Call::Heartbeat { timeout: Some(t), .. } if t == Duration::from_secs(5)
        ));
    }

    #[test]
    fn a_batch_stops_when_every_call_would_fail() {
        let batch =
            Batch::parse(br#"{"items": [{"kind": "heartbeat"}, {"kind": "heartbeat"}]}"#).unwrap();
        let mut calls = 0;
        let stopped = batch.apply(|_| {
            calls += 1;
            Err(Refusal::Batch("unknown session"))
        });
        assert_eq!((stopped, calls), (Err("unknown session"), 1));
    }

    #[test]
    fn heartbeat_timeouts_are_bounded() {
        assert_eq!(heartbeat_timeout(None), Ok(None));
        assert!(heartbeat_timeout(Some(86_400.0)).unwrap().is_some());
        for bad in [0.0, -1.0, 86_401.0, f64::NAN, f64::INFINITY] {
            assert!(heartbeat_timeout(Some(bad)).is_err(), "{bad}");
        }
    }
}

#[cfg(test)]
mod depth_tests {
    use datacat_protocol::record::json_depth;
    use serde_json::json;

    use super::*;

    fn nested(levels: usize) -> Value {
        (1..levels).fold(json!({"leaf": 1}), |inner, _| json!({ "n": inner }))
    }

    #[test]
    fn a_state_up_to_the_depth_limit_is_taken_and_a_deeper_one_refused() {
        assert_eq!(json_depth(&json!(1)), 0);
        assert_eq!(json_depth(&json!({"a": [1, {"b": 2}]})), 3);
        let body = |state| StateBody {
            state,
            timestamp: None,
        };
        let limit = StateUpdate::MAX_DEPTH;
        assert_eq!(json_depth(&nested(limit)), limit);
        assert!(body(nested(limit)).into_call().is_ok());
        let refused = body(nested(limit + 1)).into_call().unwrap_err();
        assert!(refused.0.contains("at most 64"), "{}", refused.0);
        let refused = body(json!([1])).into_call().unwrap_err();
        assert!(refused.0.contains("JSON object"), "{}", refused.0);
    }
}

#[cfg(test)]
mod contract_tests {
    use super::*;

    /// The calls every client must send alike (`api/fixtures/client-calls.json`): each body,
    /// as a single call and as a batch item, is a call the daemon and the query service take.
    #[test]
    fn every_body_of_the_client_contract_is_a_call() {
        let fixture: Value =
            serde_json::from_str(include_str!("../fixtures/client-calls.json")).unwrap();
        let calls = fixture["calls"].as_array().unwrap();
        assert!(calls.len() >= 10);
        for case in calls {
            let (name, kind, body) = (&case["name"], &case["kind"], &case["body"]);
            let mut item = body.clone();
            item["kind"] = kind.clone();
            let call = serde_json::from_value::<BatchItem>(item)
                .map_err(|e| BadBody(e.to_string()))
                .and_then(BatchItem::into_call)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let expected = match kind.as_str().unwrap() {
                "state" => matches!(call, Call::State(_)),
                "event" => matches!(call, Call::Record(Record::Event(_))),
                "heartbeat" => matches!(call, Call::Heartbeat { .. }),
                _ => match body["type"].as_str().unwrap() {
                    "counter" => matches!(call, Call::CounterDelta { .. }),
                    "histogram" => matches!(call, Call::Observation { .. }),
                    _ => matches!(call, Call::Record(Record::Metric(_))),
                },
            };
            assert!(expected, "{name}: {call:?}");
        }
    }
}

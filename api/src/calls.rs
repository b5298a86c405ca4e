//! Calls as clients send them (JSON bodies to the daemon, or to the query service's direct
//! writes), and their conversion into records. One parser for both, so a call means the same
//! wherever it is sent.
//!
//! The field names are the client API's (docs/daemon-api.md): applications written against
//! it keep working.

use datacat_protocol::record::{
    EndStatus, Event, ExceptionInfo, Level, Metric, MetricKind, Record, DEFAULT_HISTOGRAM_BOUNDS,
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
    pub fn checked(self) -> Result<(u64, Value), BadBody> {
        if !self.state.is_object() {
            return Err(BadBody("state must be a JSON object".into()));
        }
        Ok((ts(self.timestamp), self.state))
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
    pub fn into_record(self) -> Result<Record, BadBody> {
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
                frames: Vec::new(),
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
            exception,
        }))
    }
}

/// A metric call: a point to store as is, or an update of an aggregate the daemon keeps.
#[derive(Debug, PartialEq)]
pub enum MetricCall {
    Point(Record),
    CounterDelta {
        name: String,
        tags: Vec<String>,
        unit: String,
        delta: f64,
    },
    Observation {
        name: String,
        tags: Vec<String>,
        unit: String,
        bounds: Vec<f64>,
        value: f64,
    },
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
    pub fn into_call(self) -> Result<MetricCall, BadBody> {
        if self.name.trim().is_empty() {
            return Err(BadBody("metric name must not be empty".into()));
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
        if kind == MetricKind::Counter {
            if let Some(delta) = &self.delta {
                let delta = finite(delta, "counter delta")?;
                return Ok(MetricCall::CounterDelta {
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
            return Ok(MetricCall::Observation {
                name: self.name,
                tags,
                unit,
                bounds,
                value,
            });
        }
        Ok(MetricCall::Point(Record::Metric(Metric {
            ts_ms: ts(self.timestamp),
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
        (Some(product), Some(version)) => Ok((product, version)),
        _ => Err(BadBody("product and version are required".into())),
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

/// A heartbeat; `timeout` (seconds without one after which the session is hung) starts
/// hang monitoring where a daemon watches.
#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HeartbeatBody {
    pub timeout: Option<f64>,
    pub timestamp: Option<ClientTime>,
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

/// Many calls in one request, applied in order. Items stay JSON until each is checked, so
/// one bad item is reported by index and the rest still apply.
#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BatchBody {
    pub items: Vec<Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(body: Value) -> Result<MetricCall, BadBody> {
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
            Ok(MetricCall::Point(_))
        ));
        assert_eq!(
            call(json!({"name": "hits", "type": "counter", "value": 0, "delta": 2})),
            Ok(MetricCall::CounterDelta {
                name: "hits".into(),
                tags: vec![],
                unit: String::new(),
                delta: 2.0
            })
        );
        assert!(matches!(
            call(json!({"name": "hits", "type": "counter", "value": 7})),
            Ok(MetricCall::Point(_))
        ));
        let Ok(MetricCall::Observation { bounds, .. }) = call(
            json!({"name": "t", "type": "histogram", "value": 0.3, "metadata": {"buckets": [0.1, 1, "+Inf"]}}),
        ) else {
            panic!("a histogram observation")
        };
        assert_eq!(bounds, vec![0.1, 1.0, f64::INFINITY]);
        assert!(call(json!({"name": "fps", "value": "NaN"})).is_err());
        assert!(call(json!({"name": "fps"})).is_err());
        assert!(call(json!({"name": "fps", "value": 1, "type": "pie"})).is_err());
    }
}

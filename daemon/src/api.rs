//! The client-facing HTTP API (see `docs/daemon-api.md`).
//!
//! Bodies are parsed by hand rather than with axum's `Json` extractor so every rejection is
//! a JSON error with a clear message, and the daemon keeps serving whatever it is sent.

use std::sync::Arc;

use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use datacat_protocol::record::{
    Event, ExceptionInfo, Level, Metric, MetricKind, Record, SessionEnd, SessionStart,
};
use datacat_protocol::time::{client_ts_ms, now_ms};
use datacat_protocol::EndStatus;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::machine;
use crate::metrics;
use crate::sessions::{Registry, SessionError};

type AppState = Arc<Registry>;

pub fn router(registry: Arc<Registry>, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/register", post(register))
        .route("/state", post(state))
        .route("/event", post(event))
        .route("/metric", post(metric))
        .route("/heartbeat", post(heartbeat))
        .route("/end", post(end))
        .route("/batch", post(batch))
        .route("/health", get(health))
        .route("/metrics", get(metrics::render))
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .fallback(|| async { ApiError::NotFound("no such endpoint".into()) })
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(registry)
}

/// Everything a client can get wrong, each with its status.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("session has ended: {0}")]
    Ended(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("request body too large")]
    TooLarge,
    #[error("{message}")]
    InvalidItems {
        message: String,
        accepted: usize,
        rejected: Vec<Value>,
    },
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Ended(_) => (StatusCode::CONFLICT, "session_ended"),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            ApiError::InvalidItems { .. } => (StatusCode::BAD_REQUEST, "invalid_items"),
        };
        metrics::count_client_error();
        let mut body = json!({"error": code, "message": self.to_string()});
        if let ApiError::InvalidItems {
            accepted, rejected, ..
        } = self
        {
            body["accepted"] = json!(accepted);
            body["rejected"] = json!(rejected);
        }
        (status, Json(body)).into_response()
    }
}

impl From<SessionError> for ApiError {
    fn from(error: SessionError) -> Self {
        match error {
            SessionError::Unknown(_) => ApiError::NotFound(error.to_string()),
            SessionError::Ended(id) => ApiError::Ended(id),
        }
    }
}

fn parse<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    let body = body.map_err(|rejection| match rejection {
        BytesRejection::FailedToBufferBody(_) => ApiError::TooLarge,
        other => ApiError::BadRequest(other.body_text()),
    })?;
    serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))
}

fn ok() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

#[derive(Deserialize)]
struct RegisterBody {
    product: Option<String>,
    version: Option<String>,
    parent_pid: Option<u32>,
    timestamp: Option<f64>,
}

async fn register(
    State(registry): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let body: RegisterBody = parse(body)?;
    let product = body.product.filter(|p| !p.trim().is_empty());
    let version = body.version.filter(|v| !v.trim().is_empty());
    let (Some(product), Some(version)) = (product, version) else {
        return Err(ApiError::BadRequest(
            "product and version are required".into(),
        ));
    };
    let session_id = uuid::Uuid::now_v7().to_string();
    let start = SessionStart {
        ts_ms: client_ts_ms(body.timestamp, now_ms()),
        product,
        version,
        machine: machine::info(body.parent_pid),
    };
    registry.register(session_id.clone(), start);
    Ok(Json(json!({"session_id": session_id})))
}

#[derive(Deserialize)]
struct SessionRef {
    session_id: String,
}

#[derive(Deserialize)]
struct StateBody {
    state: Value,
    timestamp: Option<f64>,
}

fn apply_state(registry: &Registry, session_id: &str, body: StateBody) -> Result<(), ApiError> {
    if !body.state.is_object() {
        return Err(ApiError::BadRequest("state must be a JSON object".into()));
    }
    registry.update_state(
        session_id,
        client_ts_ms(body.timestamp, now_ms()),
        &body.state,
    )?;
    Ok(())
}

async fn state(
    State(registry): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let body: Value = parse(body)?;
    let SessionRef { session_id } = from_value(body.clone())?;
    apply_state(&registry, &session_id, from_value(body)?)?;
    Ok(ok())
}

fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, ApiError> {
    serde_json::from_value(value).map_err(|e| ApiError::BadRequest(e.to_string()))
}

/// An event as clients send it. The original's flat exception fields are still accepted.
#[derive(Deserialize)]
struct EventBody {
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
    timestamp: Option<f64>,
}

impl EventBody {
    fn into_record(self) -> Result<Record, ApiError> {
        if self.name.trim().is_empty() {
            return Err(ApiError::BadRequest("event name must not be empty".into()));
        }
        let level = match (&self.level, &self.category) {
            (Some(level), _) => Level::parse(level).ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "unknown level {level:?}: use debug, info, warning, error or critical"
                ))
            })?,
            // The original used `category` as the level.
            (None, Some(category)) => Level::parse(category).unwrap_or_default(),
            (None, None) => Level::default(),
        };
        let data = match self.data {
            None | Some(Value::Null) => json!({}),
            Some(data @ Value::Object(_)) => data,
            Some(_) => {
                return Err(ApiError::BadRequest(
                    "event data must be a JSON object".into(),
                ))
            }
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
            ts_ms: client_ts_ms(self.timestamp, now_ms()),
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

async fn event(
    State(registry): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let body: Value = parse(body)?;
    let SessionRef { session_id } = from_value(body.clone())?;
    let record = from_value::<EventBody>(body)?.into_record()?;
    registry.push(&session_id, record)?;
    Ok(ok())
}

#[derive(Deserialize)]
struct MetricBody {
    name: String,
    value: f64,
    #[serde(rename = "type")]
    kind: Option<String>,
    unit: Option<String>,
    tags: Option<Vec<String>>,
    count: Option<u64>,
    timestamp: Option<f64>,
}

impl MetricBody {
    fn into_record(self) -> Result<Record, ApiError> {
        if self.name.trim().is_empty() {
            return Err(ApiError::BadRequest("metric name must not be empty".into()));
        }
        if !self.value.is_finite() {
            return Err(ApiError::BadRequest(
                "metric value must be a finite number".into(),
            ));
        }
        let kind = match self.kind.as_deref() {
            None | Some("") => MetricKind::Gauge,
            Some(kind) => MetricKind::parse(kind).ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "unknown metric type {kind:?}: use gauge, counter, histogram or timer"
                ))
            })?,
        };
        Ok(Record::Metric(Metric {
            ts_ms: client_ts_ms(self.timestamp, now_ms()),
            name: self.name,
            kind,
            value: self.value,
            unit: self.unit.unwrap_or_default(),
            tags: self.tags.unwrap_or_default(),
            count: self.count,
        }))
    }
}

async fn metric(
    State(registry): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let body: Value = parse(body)?;
    let SessionRef { session_id } = from_value(body.clone())?;
    let record = from_value::<MetricBody>(body)?.into_record()?;
    registry.push(&session_id, record)?;
    Ok(ok())
}

#[derive(Deserialize)]
struct HeartbeatBody {
    session_id: String,
    timestamp: Option<f64>,
}

async fn heartbeat(
    State(registry): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let body: HeartbeatBody = parse(body)?;
    registry.heartbeat(&body.session_id, client_ts_ms(body.timestamp, now_ms()))?;
    Ok(ok())
}

#[derive(Deserialize)]
struct EndBody {
    session_id: String,
    reason: Option<String>,
    timestamp: Option<f64>,
}

/// Ends the session and answers once its batches are acknowledged by JetStream (or the
/// wait runs out: then the data stays queued here and `delivered` is false).
async fn end(
    State(registry): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let body: EndBody = parse(body)?;
    let end = SessionEnd {
        ts_ms: client_ts_ms(body.timestamp, now_ms()),
        status: EndStatus::Ended,
        reason: body.reason.unwrap_or_default(),
    };
    let mut unacked = registry.end(&body.session_id, end)?;
    let delivered = tokio::time::timeout(registry.end_wait, unacked.wait_for(|n| *n == 0))
        .await
        .is_ok();
    registry.flush_all();
    Ok(Json(json!({"status": "ok", "delivered": delivered})))
}

#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum BatchItem {
    State(StateBody),
    Event(Box<EventBody>),
    Metric(MetricBody),
    Heartbeat { timestamp: Option<f64> },
}

#[derive(Deserialize)]
struct BatchBody {
    session_id: String,
    items: Vec<Value>,
}

/// Many calls in one request, applied in order. Items that are invalid are reported (with
/// their index) in a 400 answer; the valid ones around them are still applied.
async fn batch(
    State(registry): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let body: BatchBody = parse(body)?;
    let mut accepted = 0;
    let mut rejected = Vec::new();
    for (index, item) in body.items.into_iter().enumerate() {
        let applied = from_value::<BatchItem>(item).and_then(|item| match item {
            BatchItem::State(state) => apply_state(&registry, &body.session_id, state),
            BatchItem::Event(event) => Ok(registry.push(&body.session_id, event.into_record()?)?),
            BatchItem::Metric(metric) => {
                Ok(registry.push(&body.session_id, metric.into_record()?)?)
            }
            BatchItem::Heartbeat { timestamp } => {
                Ok(registry.heartbeat(&body.session_id, client_ts_ms(timestamp, now_ms()))?)
            }
        });
        match applied {
            Ok(()) => accepted += 1,
            // An unknown or ended session fails every item the same way: say it once.
            Err(error @ (ApiError::NotFound(_) | ApiError::Ended(_))) => return Err(error),
            Err(error) => rejected.push(json!({"index": index, "message": error.to_string()})),
        }
    }
    if rejected.is_empty() {
        return Ok(Json(json!({"status": "ok", "accepted": accepted})));
    }
    Err(ApiError::InvalidItems {
        message: format!("{} of the items are invalid", rejected.len()),
        accepted,
        rejected,
    })
}

async fn health(State(registry): State<AppState>) -> Json<Value> {
    Json(json!({
        "status": "ok",
        "sessions": registry.session_count(),
        "pending_records": registry.pending_records(),
        "queued_batches": registry.queued_batches(),
    }))
}

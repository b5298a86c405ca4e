//! The client-facing HTTP API (see `docs/daemon-api.md`).
//!
//! Bodies are parsed by hand rather than with axum's `Json` extractor so every rejection is
//! a JSON error with a clear message, and the daemon keeps serving whatever it is sent.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use datacat_protocol::record::{SessionEnd, SessionStart};
use datacat_protocol::{EndStatus, Status};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::machine;
use crate::metrics;
use crate::sessions::Registry;
use crate::upstream::{Answer, Upstream};
use datacat_api::calls::{
    client_session_id, heartbeat_timeout, parse_lenient, product_and_version, session_labels, ts,
    BadBody, Batch, Call, ClientTime, EndBody, EventBody, HeartbeatBody, MetricBody, Refusal,
    StateBody,
};

/// What the handlers reach: the sessions, and the query service to read them back from.
pub struct Daemon {
    pub registry: Arc<Registry>,
    pub upstream: Upstream,
    /// The query service sessions are read from when their client named none.
    pub query_url: Option<String>,
}

impl Daemon {
    /// Refuses a call whose record could never be published (see [`crate::limits`]).
    fn admit(&self, body_len: usize, call: &Call) -> Result<(), String> {
        let admitted = self.registry.publisher().limits.admit(body_len, call);
        if admitted.is_err() {
            metrics::count_oversize_call();
        }
        admitted
    }
}

type AppState = Arc<Daemon>;
type Body = Result<Bytes, BytesRejection>;

/// The heartbeat timeout when a client starts monitoring without one.
const DEFAULT_HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(60);

/// `/health` and `/metrics` (counts only): what a monitor calls, not the application. They
/// need no token and do not keep an idle daemon alive.
fn is_monitoring(request: &axum::extract::Request) -> bool {
    matches!(request.uri().path(), "/health" | "/metrics")
}

/// Notes that the application called: the daemon lingers while it does.
async fn note_call(
    State(daemon): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if !is_monitoring(&request) {
        daemon.registry.called();
    }
    next.run(request).await
}

/// Every call but the monitoring ones carries the daemon's token: other local users'
/// processes can reach the port, and must neither read sessions nor write to them.
async fn require_token(
    State(token): State<Arc<str>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    use subtle::ConstantTimeEq;
    if is_monitoring(&request) {
        return next.run(request).await;
    }
    let presented = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim);
    match presented {
        Some(presented) if bool::from(presented.as_bytes().ct_eq(token.as_bytes())) => {
            next.run(request).await
        }
        Some(_) => ApiError::Unauthorized("the daemon's token is not this".into()).into_response(),
        None => ApiError::Unauthorized(
            "send the daemon's token (the last word of its ready line) as Authorization: Bearer <token>"
                .into(),
        )
        .into_response(),
    }
}

pub fn router(daemon: Arc<Daemon>, max_body_bytes: usize, token: String) -> Router {
    let token: Arc<str> = token.into();
    Router::new()
        .route("/register", post(register))
        .route("/state", post(state))
        .route("/event", post(event))
        .route("/metric", post(metric))
        .route("/heartbeat", post(heartbeat))
        .route("/start_heartbeat_monitor", post(start_monitor))
        .route("/stop_heartbeat_monitor", post(stop_monitor))
        .route("/pause_heartbeat", post(pause))
        .route("/resume_heartbeat", post(resume))
        .route("/end", post(end))
        .route("/batch", post(batch))
        .route("/health", get(health))
        .route(
            "/metrics",
            get(|State(daemon): State<AppState>| async move { metrics::render(&daemon.registry) }),
        )
        .route("/session", get(session))
        .route("/sessions", get(sessions))
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .fallback(|| async { ApiError::NotFound("no such endpoint".into()) })
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            daemon.clone(),
            note_call,
        ))
        .layer(axum::middleware::from_fn_with_state(token, require_token))
        .with_state(daemon)
}

/// The request body, or why it could not be read (too large: 413).
fn buffered(body: Body) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| match rejection {
        BytesRejection::FailedToBufferBody(_) => {
            ApiError::TooLarge("the request body is larger than the daemon takes".into())
        }
        other => ApiError::BadRequest(other.body_text()),
    })
}

fn parse<T: DeserializeOwned>(body: Body) -> Result<T, ApiError> {
    Ok(parse_lenient(&buffered(body)?)?)
}

fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, ApiError> {
    serde_json::from_value(value).map_err(|e| ApiError::BadRequest(e.to_string()))
}

/// Splits a body into its `session_id` and the rest.
fn with_session<T: DeserializeOwned>(body: Body) -> Result<(String, T), ApiError> {
    #[derive(Deserialize)]
    struct SessionRef {
        session_id: String,
    }
    let value: Value = parse(body)?;
    let SessionRef { session_id } =
        SessionRef::deserialize(&value).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    Ok((session_id, from_value(value)?))
}

fn ok() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

#[derive(Deserialize)]
struct RegisterBody {
    /// The id the client minted (a UUID); the daemon mints one when absent.
    session_id: Option<String>,
    product: Option<String>,
    version: Option<String>,
    parent_pid: Option<u32>,
    timestamp: Option<ClientTime>,
    /// The query service to read this session back from (`GET /session`).
    query_url: Option<String>,
    environment: Option<String>,
    tags: Option<std::collections::BTreeMap<String, String>>,
}

/// A query service URL a client named, as given (without a trailing `/`). It is only ever
/// read from: one the daemon cannot use (an `https://` one: it reads over plain HTTP) makes
/// reads answer from the daemon, it never fails a call.
fn query_url(url: Option<String>) -> Option<String> {
    url.map(|u| u.trim().trim_end_matches('/').to_string())
        .filter(|u| !u.is_empty())
}

async fn register(State(daemon): State<AppState>, body: Body) -> Result<Json<Value>, ApiError> {
    let body: RegisterBody = parse(body)?;
    let (product, version) = product_and_version(body.product, body.version)?;
    let (environment, tags) = session_labels(body.environment, body.tags)?;
    let query_url = query_url(body.query_url);
    let session_id =
        client_session_id(body.session_id)?.unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let start = SessionStart {
        ts_ms: ts(body.timestamp),
        product,
        version,
        machine: machine::info(body.parent_pid),
        environment,
        tags,
    };
    daemon
        .registry
        .register(session_id.clone(), start, query_url)?;
    Ok(Json(json!({"session_id": session_id})))
}

/// A single-call endpoint: its body is one call about the session it names.
fn apply_one<T: DeserializeOwned>(
    daemon: &Daemon,
    body: Body,
    into_call: fn(T) -> Result<Call, BadBody>,
) -> Result<Json<Value>, ApiError> {
    let bytes = buffered(body)?;
    let (session_id, body): (String, T) = with_session(Ok(bytes.clone()))?;
    let call = into_call(body)?;
    daemon
        .admit(bytes.len(), &call)
        .map_err(ApiError::TooLarge)?;
    daemon.registry.apply(&session_id, call)?;
    Ok(ok())
}

async fn state(State(daemon): State<AppState>, body: Body) -> Result<Json<Value>, ApiError> {
    apply_one(&daemon, body, StateBody::into_call)
}

async fn event(State(daemon): State<AppState>, body: Body) -> Result<Json<Value>, ApiError> {
    apply_one(&daemon, body, EventBody::into_call)
}

async fn metric(State(daemon): State<AppState>, body: Body) -> Result<Json<Value>, ApiError> {
    apply_one(&daemon, body, MetricBody::into_call)
}

async fn heartbeat(State(daemon): State<AppState>, body: Body) -> Result<Json<Value>, ApiError> {
    apply_one(&daemon, body, HeartbeatBody::into_call)
}

async fn start_monitor(
    State(daemon): State<AppState>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let registry = &daemon.registry;
    let (session_id, body): (String, HeartbeatBody) = with_session(body)?;
    let timeout = heartbeat_timeout(body.timeout)?.unwrap_or(DEFAULT_HEARTBEAT_TIMEOUT);
    registry.start_monitor(&session_id, timeout)?;
    Ok(ok())
}

async fn stop_monitor(State(daemon): State<AppState>, body: Body) -> Result<Json<Value>, ApiError> {
    let registry = &daemon.registry;
    let (session_id, _): (String, Value) = with_session(body)?;
    registry.stop_monitor(&session_id)?;
    Ok(ok())
}

async fn pause(State(daemon): State<AppState>, body: Body) -> Result<Json<Value>, ApiError> {
    let registry = &daemon.registry;
    let (session_id, _): (String, Value) = with_session(body)?;
    registry.pause_monitor(&session_id, true)?;
    Ok(ok())
}

async fn resume(State(daemon): State<AppState>, body: Body) -> Result<Json<Value>, ApiError> {
    let registry = &daemon.registry;
    let (session_id, _): (String, Value) = with_session(body)?;
    registry.pause_monitor(&session_id, false)?;
    Ok(ok())
}

/// Ends the session and answers once its batches are acknowledged by JetStream, or when the
/// wait runs out (`--end-wait-ms`, or the client's shorter `wait`): then `delivered` is
/// false and the batches, already in the spool, are delivered later. `last_seq` is the
/// session's last batch, for reading it back (`GET /session`).
async fn end(State(daemon): State<AppState>, body: Body) -> Result<Json<Value>, ApiError> {
    let registry = &daemon.registry;
    let (session_id, body): (String, EndBody) = with_session(body)?;
    let wait = match body.wait {
        Some(seconds) if seconds.is_finite() && seconds >= 0.0 => {
            registry.end_wait.min(Duration::from_secs_f64(seconds))
        }
        Some(seconds) => {
            return Err(ApiError::BadRequest(format!(
                "wait must be a number of seconds, not {seconds}"
            )))
        }
        None => registry.end_wait,
    };
    let end = SessionEnd {
        status: body.status(EndStatus::Ended),
        ts_ms: ts(body.timestamp),
        reason: body.reason.unwrap_or_default(),
    };
    let (mut unacked, last_seq) = registry.end(&session_id, end)?;
    let delivered = tokio::time::timeout(wait, unacked.wait_for(|n| *n == 0))
        .await
        .is_ok();
    registry.flush_all();
    Ok(Json(
        json!({"status": "ok", "delivered": delivered, "last_seq": last_seq}),
    ))
}

/// Many calls in one request, applied in order. Items that are invalid are reported (with
/// their index) in a 400 answer; the valid ones around them are still applied.
async fn batch(State(daemon): State<AppState>, body: Body) -> Result<Json<Value>, ApiError> {
    let bytes = buffered(body)?;
    let batch = Batch::parse(&bytes)?;
    let session_id = batch
        .session_id
        .clone()
        .ok_or_else(|| ApiError::BadRequest("missing field `session_id`".into()))?;
    // An unknown or ended session fails every call the same way: say it once.
    let applied = batch.apply(|call| {
        daemon.admit(bytes.len(), &call).map_err(Refusal::Item)?;
        daemon
            .registry
            .apply(&session_id, call)
            .map_err(|error| Refusal::Batch(ApiError::from(error)))
    })?;
    if applied.rejected.is_empty() {
        return Ok(Json(json!({"status": "ok", "accepted": applied.accepted})));
    }
    Err(ApiError::InvalidItems {
        message: format!("{} of the items are invalid", applied.rejected.len()),
        accepted: applied.accepted,
        rejected: applied.rejected.iter().map(|r| json!(r)).collect(),
    })
}

async fn health(State(daemon): State<AppState>) -> Json<Value> {
    let registry = &daemon.registry;
    let spool = &registry.publisher().spool.stats;
    use std::sync::atomic::Ordering::Relaxed;
    Json(json!({
        "status": "ok",
        "sessions": registry.session_count(),
        "pending_records": registry.pending_records(),
        "spooled_bytes": spool.pending_bytes.load(Relaxed),
        "dropped_batches": spool.dropped_batches.load(Relaxed),
        "dropped_records": spool.dropped_records.load(Relaxed),
        "published_batches": registry.publisher().stats.published.load(Relaxed),
    }))
}

/// `GET /session?session_id=&query_url=&min_seq=`: the whole session from the query
/// service (events, metrics, history), including everything the client logged before this
/// read; what the daemon holds when the query service cannot say (`source` tells which).
/// The daemon's bookkeeping (`pending_records`, `unacked_batches`, `next_seq`,
/// `heartbeat_monitor`) is added when it still holds the session.
async fn session(
    State(daemon): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let id = params
        .get("session_id")
        .filter(|id| !id.is_empty())
        .ok_or_else(|| ApiError::BadRequest("missing session_id parameter".into()))?;
    let asked_seq = match params.get("min_seq") {
        Some(seq) => Some(seq.parse::<u64>().map_err(|_| {
            ApiError::BadRequest(format!(
                "min_seq must be a non-negative integer, got {seq:?}"
            ))
        })?),
        None => None,
    };
    let local = daemon.registry.snapshot(id);
    let base_url = query_url(params.get("query_url").cloned())
        .or_else(|| local.as_ref().and_then(|l| l.query_url.clone()))
        .or_else(|| daemon.query_url.clone());
    let min_seq = local.as_ref().and_then(|l| l.last_seq).max(asked_seq);
    let answer = match &base_url {
        Some(url) => daemon.upstream.session(url, id, min_seq).await,
        None => Answer::Unavailable("no query service is configured".into()),
    };
    match (answer, local) {
        (Answer::Session(server), local) => Ok(Json(from_server(server, local, min_seq))),
        (_, Some(local)) => {
            let mut view = local.view;
            view["source"] = json!("daemon");
            Ok(Json(view))
        }
        (Answer::Unknown, None) => Err(ApiError::NotFound(format!(
            "session {id} is known neither to this daemon nor to the query service"
        ))),
        (Answer::Unavailable(why), None) => Err(ApiError::NotFound(format!(
            "session {id} is not known to this daemon, and the query service cannot say ({why})"
        ))),
    }
}

/// The query service's session, with the daemon's bookkeeping added. When ingest had not
/// applied the daemon's last batch by the end of the query service's wait, what the daemon
/// knows better (the state, and an end) is laid over it.
fn from_server(
    mut server: Value,
    local: Option<crate::sessions::SessionSnapshot>,
    min_seq: Option<u64>,
) -> Value {
    let applied = server["last_seq"].as_u64();
    let caught_up = match (min_seq, applied) {
        (Some(wanted), Some(applied)) => applied >= wanted,
        (Some(_), None) => false,
        (None, _) => true,
    };
    server["source"] = json!("server");
    server["caught_up"] = json!(caught_up);
    let Some(local) = local else {
        return server;
    };
    if !caught_up {
        server["state"] = local.view["state"].clone();
        let ended = serde_json::from_value::<Status>(local.view["status"].clone())
            .is_ok_and(Status::is_terminal);
        if ended {
            for key in [
                "status",
                "end_reason",
                "active",
                "crashed",
                "hung",
                "ended_at",
            ] {
                server[key] = local.view[key].clone();
            }
        }
    }
    for key in [
        "pending_records",
        "unacked_batches",
        "next_seq",
        "heartbeat_monitor",
    ] {
        if let Some(value) = local.view.get(key) {
            server[key] = value.clone();
        }
    }
    server
}

/// `GET /sessions`: this daemon's sessions (open, and the latest ended ones) as a list, each
/// as the daemon holds it. Only this daemon's: it serves one application, not the whole
/// warehouse.
async fn sessions(State(daemon): State<AppState>) -> Json<Value> {
    Json(Value::Array(daemon.registry.snapshots()))
}

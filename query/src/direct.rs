//! The direct-write endpoints, for clients without a daemon:
//! `POST /api/sessions`, `/api/sessions/{id}/state|events|metrics|heartbeat|end|crash|batch`.
//! Bodies are parsed by the same code as the daemon's, so a call means the same either way.

use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Request, State};
use axum::Json;
use datacat_api::answers::{CreatedSession, ErrorBody, WriteAnswer};
use datacat_api::calls::{
    client_session_id, parse_lenient, product_and_version, session_labels, ts, BadBody, Batch,
    BatchBody, ClientTime, EndBody, EventBody, HeartbeatBody, MetricBody, Refusal, StateBody,
};
use datacat_protocol::codec::encoded_size;
use datacat_protocol::record::{SessionEnd, SessionStart};
use datacat_protocol::{EndStatus, MachineInfo, Record};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::AppState;

/// The largest body a direct write takes.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// A request body of at most [`MAX_BODY_BYTES`]; anything else is a JSON 413 / 400.
pub struct Body(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = ApiError;

    async fn from_request(request: Request, _: &S) -> Result<Self, ApiError> {
        // A browser's cross-site form or `no-cors` fetch cannot send this type: with writes
        // open, a web page must not be able to write.
        let json = request
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
        let body = request.into_body();
        match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
            Ok(bytes) if !json && !bytes.is_empty() => Err(ApiError::UnsupportedMediaType(
                "a write's body must be sent as Content-Type: application/json".into(),
            )),
            Ok(bytes) => Ok(Body(bytes)),
            Err(error) => {
                let too_large = std::error::Error::source(&error)
                    .is_some_and(|e| e.is::<http_body_util::LengthLimitError>());
                if too_large {
                    Err(ApiError::PayloadTooLarge(format!(
                        "the body is larger than {MAX_BODY_BYTES} bytes"
                    )))
                } else {
                    Err(ApiError::BadRequest(format!(
                        "reading the body failed: {error}"
                    )))
                }
            }
        }
    }
}

impl From<BadBody> for ApiError {
    fn from(error: BadBody) -> Self {
        ApiError::BadRequest(error.0)
    }
}

/// A write published as batch `seq`.
fn ok(seq: u64) -> Json<WriteAnswer> {
    Json(WriteAnswer {
        status: "ok".into(),
        accepted: None,
        seq: Some(seq),
    })
}

/// An empty body is `{}` (heartbeat, end and crash take none).
fn parse_or_empty<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::from_value(json!({}))?);
    }
    Ok(parse_lenient(body)?)
}

impl From<serde_json::Error> for ApiError {
    fn from(error: serde_json::Error) -> Self {
        ApiError::BadRequest(format!("invalid body: {error}"))
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct CreateBody {
    /// The session's id, if the client chose one (a UUID; a time-ordered v7 is best).
    /// Creating an existing session again is harmless.
    session_id: Option<String>,
    product: Option<String>,
    version: Option<String>,
    machine_id: Option<String>,
    hostname: Option<String>,
    timestamp: Option<ClientTime>,
    /// Where the program runs (`production`, `ci`, ...), at most 64 bytes.
    environment: Option<String>,
    /// Free tags, at most 32; keys of 1 to 64 bytes without `:`, values of at most 256.
    tags: Option<std::collections::BTreeMap<String, String>>,
}

#[utoipa::path(post, path = "/api/sessions", tag = "direct writes", request_body = CreateBody,
    responses((status = 200, body = CreatedSession), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 413, body = ErrorBody), (status = 503, body = ErrorBody)))]
/// `POST /api/sessions`: `{"product", "version", "session_id"?, "machine_id"?, "hostname"?}`
/// -> `{"session_id", "seq": 0}`.
pub async fn create(
    State(state): State<AppState>,
    Body(body): Body,
) -> Result<Json<CreatedSession>, ApiError> {
    let body: CreateBody = parse_lenient(&body)?;
    let (product, version) = product_and_version(body.product, body.version)?;
    let (environment, tags) = session_labels(body.environment, body.tags)?;
    let session_id =
        client_session_id(body.session_id)?.unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let start = Record::Start(SessionStart {
        ts_ms: ts(body.timestamp),
        product,
        version,
        machine: MachineInfo {
            hostname: body.hostname.unwrap_or_default(),
            machine_id: body.machine_id.unwrap_or_default(),
            ..Default::default()
        },
        environment,
        tags,
    });
    state.writer.create(&session_id, vec![start]).await?;
    Ok(Json(CreatedSession { session_id, seq: 0 }))
}

/// A state update: `{"state": {...}, "timestamp"?}` (what the daemon takes), or the partial
/// state itself.
fn state_record(body: Value) -> Result<Record, ApiError> {
    let wrapped = body.get("state").is_some_and(Value::is_object);
    let body: StateBody = if wrapped {
        serde_json::from_value(body)?
    } else {
        StateBody {
            state: body,
            timestamp: None,
        }
    };
    Ok(body.into_call()?.into_record()?)
}

#[utoipa::path(post, path = "/api/sessions/{id}/state", tag = "direct writes",
    params(("id" = String, Path, description = "A session created with POST /api/sessions")),
    request_body = Object,
    responses((status = 200, body = WriteAnswer), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn state(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Body(body): Body,
) -> Result<Json<WriteAnswer>, ApiError> {
    let record = state_record(parse_lenient(&body)?)?;
    Ok(ok(app.writer.append(&id, vec![record]).await?))
}

#[utoipa::path(post, path = "/api/sessions/{id}/events", tag = "direct writes",
    params(("id" = String, Path, description = "A session created with POST /api/sessions")),
    request_body = EventBody,
    responses((status = 200, body = WriteAnswer), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn event(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Body(body): Body,
) -> Result<Json<WriteAnswer>, ApiError> {
    let record = parse_lenient::<EventBody>(&body)?
        .into_call()?
        .into_record()?;
    Ok(ok(app.writer.append(&id, vec![record]).await?))
}

#[utoipa::path(post, path = "/api/sessions/{id}/metrics", tag = "direct writes",
    params(("id" = String, Path, description = "A session created with POST /api/sessions")),
    request_body = MetricBody,
    responses((status = 200, body = WriteAnswer), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn metric(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Body(body): Body,
) -> Result<Json<WriteAnswer>, ApiError> {
    let record = parse_lenient::<MetricBody>(&body)?
        .into_call()?
        .into_record()?;
    Ok(ok(app.writer.append(&id, vec![record]).await?))
}

#[utoipa::path(post, path = "/api/sessions/{id}/heartbeat", tag = "direct writes",
    params(("id" = String, Path, description = "A session created with POST /api/sessions")),
    request_body = HeartbeatBody,
    responses((status = 200, body = WriteAnswer), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn heartbeat(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Body(body): Body,
) -> Result<Json<WriteAnswer>, ApiError> {
    let record = parse_or_empty::<HeartbeatBody>(&body)?
        .into_call()?
        .into_record()?;
    Ok(ok(app.writer.append(&id, vec![record]).await?))
}

async fn finish(
    app: &AppState,
    id: &str,
    body: &Bytes,
    status: EndStatus,
) -> Result<u64, ApiError> {
    let body: EndBody = parse_or_empty(body)?;
    let status = body.status(status);
    let default_reason = match status {
        EndStatus::Crashed => "abnormal_termination",
        _ => "",
    };
    let record = Record::End(SessionEnd {
        ts_ms: ts(body.timestamp),
        status,
        reason: body.reason.unwrap_or_else(|| default_reason.to_string()),
    });
    app.writer.append(id, vec![record]).await
}

#[utoipa::path(post, path = "/api/sessions/{id}/end", tag = "direct writes",
    params(("id" = String, Path, description = "A session created with POST /api/sessions")),
    request_body = EndBody,
    responses((status = 200, body = WriteAnswer), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn end(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Body(body): Body,
) -> Result<Json<WriteAnswer>, ApiError> {
    Ok(ok(finish(&app, &id, &body, EndStatus::Ended).await?))
}

#[utoipa::path(post, path = "/api/sessions/{id}/crash", tag = "direct writes",
    params(("id" = String, Path, description = "A session created with POST /api/sessions")),
    request_body = EndBody,
    responses((status = 200, body = WriteAnswer), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn crash(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Body(body): Body,
) -> Result<Json<WriteAnswer>, ApiError> {
    Ok(ok(finish(&app, &id, &body, EndStatus::Crashed).await?))
}

#[utoipa::path(post, path = "/api/sessions/{id}/batch", tag = "direct writes",
    params(("id" = String, Path, description = "A session created with POST /api/sessions")),
    request_body = BatchBody,
    responses((status = 200, body = WriteAnswer), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 503, body = ErrorBody)))]
/// `POST /api/sessions/{id}/batch` `{"items": [{"kind": "state"|"event"|"metric"|"heartbeat",
/// ...}]}`: the valid items are published as one batch, in order; invalid ones are listed
/// by index (400) and the rest still written.
pub async fn batch(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Body(body): Body,
) -> Result<Json<WriteAnswer>, ApiError> {
    let mut records = Vec::new();
    let room = app.writer.batch_room();
    let applied = Batch::parse(&body)?.apply(|call| -> Result<(), Refusal<ApiError>> {
        let record = call.into_record()?;
        let size = encoded_size(&record);
        if size > room {
            return Err(Refusal::Item(format!(
                "this item is {size} bytes encoded; the largest batch NATS takes is {room} bytes"
            )));
        }
        records.push(record);
        Ok(())
    })?;
    let rejected: Vec<Value> = applied.rejected.iter().map(|r| json!(r)).collect();
    let accepted = records.len();
    // Items that together exceed one batch go as several, each with its own sequence number.
    let seq = match records.is_empty() {
        true => None,
        false => Some(app.writer.append_all(&id, records).await?),
    };
    if rejected.is_empty() {
        Ok(Json(WriteAnswer {
            status: "ok".into(),
            accepted: Some(accepted),
            seq,
        }))
    } else {
        Err(ApiError::InvalidItems {
            message: format!("{} of the items are invalid", rejected.len()),
            accepted,
            rejected,
            seq,
        })
    }
}

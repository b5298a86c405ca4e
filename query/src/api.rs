//! The REST API.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use datacat_protocol::api::{SessionDetail, SessionQuery};
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::{metrics, AppState};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics::render))
        .route("/api/sessions", get(list_sessions))
        .route("/api/sessions/{id}", get(session))
        .method_not_allowed_fallback(|| async {
            (
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                Json(json!({"error": "method_not_allowed", "message": "method not allowed"})),
            )
        })
}

/// Healthy when ClickHouse answers.
async fn health(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    state.reader.ping().await?;
    Ok(Json(json!({"status": "ok"})))
}

/// `GET /api/sessions?product=&version=&status=&limit=`: newest first.
async fn list_sessions(
    State(state): State<AppState>,
    query: Result<Query<SessionQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query.map_err(|rejection| ApiError::BadRequest(rejection.body_text()))?;
    let sessions = state.reader.list_sessions(&query).await?;
    Ok(Json(json!({"sessions": sessions})))
}

/// `GET /api/sessions/{id}`: the session with state, state history, events and metrics.
async fn session(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<SessionDetail>, ApiError> {
    state
        .reader
        .session(&id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no session {id}")))
}

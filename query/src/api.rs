//! The read endpoints of the REST API (routes: `routes.rs`; parameters: `params.rs`).

use axum::extract::{Path, RawQuery, State};
use axum::Json;
use datacat_api::answers::{
    ErrorBody, EventPage, MetricAcrossSessions, MetricStat, MetricsAnswer, ProductsAnswer,
    SessionDetail, SessionPage, StateDiffView, StateSnapshot, TrendAnswer,
};
use datacat_api::query::{pairs, param};
use datacat_warehouse::{EventFilter, StatePoint};
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::freshness::wait_applied;
use crate::params::{
    detail_rows, number, params, session_query, DetailParams, EventParams, MinSeq, SessionFilters,
    MIN_SEQ,
};
use crate::AppState;

#[utoipa::path(get, path = "/health", tag = "service",
    responses((status = 200, description = "ClickHouse answers", body = Object),
              (status = 503, description = "ClickHouse does not answer", body = ErrorBody)))]
/// Healthy when ClickHouse answers.
pub async fn health(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    state.reader.ping().await?;
    Ok(Json(json!({"status": "ok"})))
}

#[utoipa::path(get, path = "/api/sessions", tag = "sessions", params(SessionFilters),
    responses((status = 200, body = SessionPage), (status = 400, body = ErrorBody)))]
/// `GET /api/sessions`: the sessions matching every filter given, a page at a time.
pub async fn list_sessions(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<SessionPage>, ApiError> {
    let query = session_query(&query, &[])?;
    Ok(Json(state.reader.list_sessions(&query).await?))
}

#[utoipa::path(get, path = "/api/sessions/{id}", tag = "sessions",
    params(("id" = String, Path), MinSeq, DetailParams),
    responses((status = 200, body = SessionDetail), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
/// `GET /api/sessions/{id}?min_seq=&limit=&offset=`: the session with state, state history,
/// events and metrics (each list bounded: `more` says when there are more rows).
pub async fn session(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<SessionDetail>, ApiError> {
    let pairs = params(&query, &[MIN_SEQ, "limit", "offset"])?;
    let rows = detail_rows(&pairs)?;
    wait_applied(&state, &id, number(&pairs, MIN_SEQ)?).await?;
    state
        .reader
        .session(&id, rows)
        .await?
        .map(Json)
        .ok_or_else(|| not_found(&id))
}

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("no session {id}"))
}

#[utoipa::path(get, path = "/api/sessions/{id}/events", tag = "sessions",
    params(("id" = String, Path), EventParams, MinSeq),
    responses((status = 200, body = EventPage), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
/// `GET /api/sessions/{id}/events?level=&name=&category=&limit=&offset=&min_seq=`.
pub async fn session_events(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<EventPage>, ApiError> {
    let pairs = params(
        &query,
        &["level", "name", "category", "limit", "offset", MIN_SEQ],
    )?;
    wait_applied(&state, &id, number(&pairs, MIN_SEQ)?).await?;
    if !state.reader.session_exists(&id).await? {
        return Err(not_found(&id));
    }
    let filter = EventFilter {
        level: param(&pairs, "level").map(str::to_string),
        name: param(&pairs, "name").map(str::to_string),
        category: param(&pairs, "category").map(str::to_string),
        limit: number(&pairs, "limit")?,
        offset: number(&pairs, "offset")?.unwrap_or(0),
    };
    Ok(Json(state.reader.session_events(&id, &filter).await?))
}

#[utoipa::path(get, path = "/api/sessions/{id}/metrics", tag = "sessions",
    params(("id" = String, Path), ("name" = Option<String>, Query, description = "Only this metric"), MinSeq),
    responses((status = 200, body = MetricsAnswer), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
/// `GET /api/sessions/{id}/metrics?name=&min_seq=`: one series per metric name.
pub async fn session_metrics(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<MetricsAnswer>, ApiError> {
    let pairs = params(&query, &["name", MIN_SEQ])?;
    wait_applied(&state, &id, number(&pairs, MIN_SEQ)?).await?;
    if !state.reader.session_exists(&id).await? {
        return Err(not_found(&id));
    }
    let metrics = state
        .reader
        .session_metrics(&id, param(&pairs, "name"))
        .await?;
    Ok(Json(MetricsAnswer { metrics }))
}

#[utoipa::path(get, path = "/api/sessions/{id}/state", tag = "sessions",
    params(("id" = String, Path),
           ("seq" = Option<u64>, Query, description = "The state after this batch"),
           ("at" = Option<String>, Query, description = "The state as of this time (Unix ms or RFC 3339)"),
           MinSeq),
    responses((status = 200, body = StateSnapshot), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
/// `GET /api/sessions/{id}/state?seq=|at=&min_seq=`: the state after batch `seq`, or as of
/// `at`.
pub async fn session_state(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<StateSnapshot>, ApiError> {
    let pairs = params(&query, &["seq", "at", MIN_SEQ])?;
    wait_applied(&state, &id, number(&pairs, MIN_SEQ)?).await?;
    let point = StatePoint::parse(param(&pairs, "seq"), param(&pairs, "at"))?;
    state
        .reader
        .state_at(&id, point)
        .await?
        .map(Json)
        .ok_or_else(|| not_found(&id))
}

#[utoipa::path(get, path = "/api/sessions/{id}/state/diff", tag = "sessions",
    params(("id" = String, Path),
           ("from_seq" = Option<u64>, Query), ("from_at" = Option<String>, Query),
           ("to_seq" = Option<u64>, Query), ("to_at" = Option<String>, Query)),
    responses((status = 200, body = StateDiffView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
/// `GET /api/sessions/{id}/state/diff?from_seq=|from_at=&to_seq=|to_at=`.
pub async fn session_state_diff(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<StateDiffView>, ApiError> {
    let pairs = params(&query, &["from_seq", "from_at", "to_seq", "to_at"])?;
    let from = StatePoint::parse(param(&pairs, "from_seq"), param(&pairs, "from_at"))?;
    let to = StatePoint::parse(param(&pairs, "to_seq"), param(&pairs, "to_at"))?;
    state
        .reader
        .state_diff(&id, from, to)
        .await?
        .map(Json)
        .ok_or_else(|| not_found(&id))
}

#[utoipa::path(get, path = "/api/products", tag = "analysis", params(SessionFilters),
    responses((status = 200, body = ProductsAnswer), (status = 400, body = ErrorBody)))]
/// `GET /api/products`: per product and version, sessions by status and the crash-free
/// rate; takes the sessions-list filters.
pub async fn products(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<ProductsAnswer>, ApiError> {
    let query = session_query(&query, &[])?;
    let products = state.reader.products(&query).await?;
    Ok(Json(ProductsAnswer { products }))
}

#[utoipa::path(get, path = "/api/products/trend", tag = "analysis", params(SessionFilters),
    responses((status = 200, body = TrendAnswer), (status = 400, body = ErrorBody)))]
/// `GET /api/products/trend`: sessions and crashes per start day of the matching sessions.
pub async fn product_trend(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<TrendAnswer>, ApiError> {
    let query = session_query(&query, &[])?;
    let days = state.reader.product_trend(&query).await?;
    Ok(Json(TrendAnswer { days }))
}

#[utoipa::path(get, path = "/api/metrics/{name}/sessions", tag = "analysis",
    params(("name" = String, Path, description = "Metric name"),
           ("stat" = Option<MetricStat>, Query, description = "Figure to rank and distribute"),
           SessionFilters),
    responses((status = 200, body = MetricAcrossSessions), (status = 400, body = ErrorBody)))]
/// `GET /api/metrics/{name}/sessions?stat=peak|min|avg|last&<session filters>`: the metric
/// summarised per matching session, ranked by `stat`, with its distribution.
pub async fn metric_across_sessions(
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<MetricAcrossSessions>, ApiError> {
    let pairs = pairs(query.as_deref().unwrap_or_default());
    let stat = match param(&pairs, "stat") {
        None => MetricStat::default(),
        Some(name) => MetricStat::from_name(name).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "stat must be {}, got {name:?}",
                MetricStat::names()
            ))
        })?,
    };
    let mut filters = session_query(&query, &["stat"])?;
    let limit = filters.limit.take().unwrap_or(100);
    filters.cursor = None;
    Ok(Json(
        state
            .reader
            .metric_across_sessions(&name, &filters, stat, limit)
            .await?,
    ))
}

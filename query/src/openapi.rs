//! The OpenAPI document, generated from the handlers' annotations and the API types
//! (`GET /api/openapi.json`).

use axum::Json;
use datacat_api::answers::{
    CreatedSession, DistributionBucket, ErrorBody, EventPage, EventView, MetricAcrossSessions,
    MetricSeries, MetricStat, MetricView, MetricsAnswer, MoreRows, ProductSummary, ProductsAnswer,
    SessionDetail, SessionMetric, SessionPage, SessionSummary, StateDiffView, StateSnapshot,
    TrendAnswer, TrendPoint, WriteAnswer,
};
use datacat_api::calls::{
    BatchBody, ClientTime, EndBody, EventBody, HeartbeatBody, MetricBody, StateBody,
};
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "DataCat API",
        description = "Sessions of applications: their state, history, events and metrics. \
                       Reads from ClickHouse; direct writes go through NATS JetStream.",
        version = env!("CARGO_PKG_VERSION")
    ),
    paths(
        crate::api::health,
        crate::metrics::render,
        crate::auth::login_form,
        crate::auth::login,
        crate::auth::logout,
        crate::api::list_sessions,
        crate::api::session,
        crate::api::session_events,
        crate::api::session_metrics,
        crate::api::session_state,
        crate::api::session_state_diff,
        crate::api::products,
        crate::api::product_trend,
        crate::api::metric_across_sessions,
        crate::direct::create,
        crate::direct::state,
        crate::direct::event,
        crate::direct::metric,
        crate::direct::heartbeat,
        crate::direct::end,
        crate::direct::crash,
        crate::direct::batch,
        crate::export::export,
        crate::export::data_sessions,
        crate::export::grafana_sessions,
        document,
    ),
    components(schemas(
        ErrorBody, SessionPage, SessionSummary, SessionDetail, MoreRows, StateSnapshot, EventView,
        MetricView, EventPage, MetricsAnswer, MetricSeries, StateDiffView, ProductsAnswer,
        ProductSummary, TrendAnswer, TrendPoint, MetricAcrossSessions, SessionMetric, DistributionBucket, MetricStat,
        CreatedSession, WriteAnswer, ClientTime, StateBody, EventBody, MetricBody,
        HeartbeatBody, EndBody, BatchBody, crate::direct::CreateBody, crate::auth::LoginForm,
        datacat_protocol::Status, datacat_protocol::Level, datacat_protocol::MetricKind,
        datacat_api::answers::SortKey, datacat_api::answers::Order,
    ))
)]
pub struct ApiDoc;

/// `GET /api/openapi.json`: this document.
#[utoipa::path(get, path = "/api/openapi.json", tag = "service",
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object)))]
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

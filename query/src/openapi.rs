//! The OpenAPI document, generated from the handlers' annotations and the API types
//! (`GET /api/openapi.json`).

use axum::Json;
use datacat_protocol::api::{
    CreatedSession, DistributionBucket, ErrorBody, EventPage, EventView, MetricAcrossSessions,
    MetricSeries, MetricStat, MetricView, MetricsAnswer, ProductSummary, ProductsAnswer,
    SessionDetail, SessionMetric, SessionPage, SessionSummary, StateDiffView, StateSnapshot,
    TrendAnswer, TrendPoint, WriteAnswer,
};
use datacat_protocol::calls::{
    BatchBody, ClientTime, EndBody, EventBody, HeartbeatBody, MetricBody, StateBody,
};
use utoipa::{IntoParams, OpenApi};

/// Read your own writes: the sequence number of the writer's last batch (a daemon's, or a
/// direct write's `seq`). The read waits (at most `--read-wait-ms`, 2 s by default) until
/// ingest has applied it, then answers with what is there.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct MinSeq {
    min_seq: Option<u64>,
}

/// The sessions-list filters, as query parameters (parsed by `SessionQuery::parse`; this
/// struct only documents them).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct SessionFilters {
    product: Option<String>,
    version: Option<String>,
    /// active, hung, ended, crashed or lost.
    #[param(pattern = "^(active|hung|ended|crashed|lost)$")]
    status: Option<String>,
    /// Started at or after: Unix milliseconds or RFC 3339.
    from: Option<String>,
    /// Started before: Unix milliseconds or RFC 3339.
    to: Option<String>,
    hostname: Option<String>,
    machine_id: Option<String>,
    /// `path=value`: the state now has this leaf (repeatable).
    #[param(pattern = "^[^=]+=.*$")]
    state: Option<Vec<String>>,
    /// `path=value`: the state had this leaf at some point (repeatable).
    #[param(pattern = "^[^=]+=.*$")]
    ever: Option<Vec<String>>,
    /// `path=value`: the array at path contains value now (repeatable).
    #[param(pattern = "^[^=]+=.*$")]
    contains: Option<Vec<String>>,
    /// `path=value`: the array at path contained value at some point (repeatable).
    #[param(pattern = "^[^=]+=.*$")]
    ever_contains: Option<Vec<String>>,
    /// Has an event with this name.
    event: Option<String>,
    /// Has an event at this level: debug, info, warning, error or critical.
    #[param(pattern = "^(debug|info|warning|error|critical)$")]
    level: Option<String>,
    /// Text search over id, product, version, host, end reason and state.
    q: Option<String>,
    /// started (default), updated, ended or events.
    #[param(pattern = "^(started|updated|ended|events)$")]
    sort: Option<String>,
    /// desc (default) or asc.
    #[param(pattern = "^(asc|desc)$")]
    order: Option<String>,
    /// Page size (list: at most 1000).
    #[param(minimum = 1)]
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// Filters of a session's events.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct EventParams {
    #[param(pattern = "^(debug|info|warning|error|critical)$")]
    level: Option<String>,
    name: Option<String>,
    category: Option<String>,
    /// At most 5000.
    #[param(minimum = 1)]
    limit: Option<u32>,
    offset: Option<u64>,
}

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
        ErrorBody, SessionPage, SessionSummary, SessionDetail, StateSnapshot, EventView,
        MetricView, EventPage, MetricsAnswer, MetricSeries, StateDiffView, ProductsAnswer,
        ProductSummary, TrendAnswer, TrendPoint, MetricAcrossSessions, SessionMetric, DistributionBucket, MetricStat,
        CreatedSession, WriteAnswer, ClientTime, StateBody, EventBody, MetricBody,
        HeartbeatBody, EndBody, BatchBody, crate::direct::CreateBody, crate::auth::LoginForm,
    ))
)]
pub struct ApiDoc;

/// `GET /api/openapi.json`: this document.
#[utoipa::path(get, path = "/api/openapi.json", tag = "service",
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object)))]
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

//! Every route of the service, in one place.

use axum::routing::{get, post};
use axum::Router;
use datacat_api::errors::ErrorCode;

use crate::{api, direct, export, metrics, openapi, AppState};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/health", get(api::health))
        .route("/metrics", get(metrics::render))
        .route(
            "/api/sessions",
            get(api::list_sessions).post(direct::create),
        )
        .route("/api/sessions/{id}", get(api::session))
        .route(
            "/api/sessions/{id}/events",
            get(api::session_events).post(direct::event),
        )
        .route(
            "/api/sessions/{id}/metrics",
            get(api::session_metrics).post(direct::metric),
        )
        .route(
            "/api/sessions/{id}/state",
            get(api::session_state).post(direct::state),
        )
        .route("/api/sessions/{id}/heartbeat", post(direct::heartbeat))
        .route("/api/sessions/{id}/end", post(direct::end))
        .route("/api/sessions/{id}/crash", post(direct::crash))
        .route("/api/sessions/{id}/batch", post(direct::batch))
        .route(
            "/api/sessions/{id}/state/diff",
            get(api::session_state_diff),
        )
        .route("/api/products", get(api::products))
        .route("/api/products/trend", get(api::product_trend))
        .route("/api/export/{kind}", get(export::export))
        .route("/api/data/sessions", get(export::data_sessions))
        .route("/api/grafana/sessions", get(export::grafana_sessions))
        .route("/api/openapi.json", get(openapi::document))
        .route(
            "/api/metrics/{name}/sessions",
            get(api::metric_across_sessions),
        )
        .method_not_allowed_fallback(|| async {
            datacat_service::error_response(
                ErrorCode::MethodNotAllowed,
                "method not allowed".into(),
                Default::default(),
            )
        })
}

//! The one error type of the HTTP API, mapped to statuses and JSON bodies.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use datacat_protocol::api::ErrorBody;
use tracing::error;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("the warehouse is unavailable: {0}")]
    Warehouse(#[from] datacat_warehouse::WarehouseError),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Warehouse(error) => {
                error!(%error, "warehouse error");
                (StatusCode::SERVICE_UNAVAILABLE, "warehouse_unavailable")
            }
        };
        (
            status,
            Json(ErrorBody {
                error: code.to_string(),
                message: self.to_string(),
            }),
        )
            .into_response()
    }
}

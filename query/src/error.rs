//! The one error type of the HTTP API, mapped to statuses and JSON bodies.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use datacat_protocol::api::ErrorBody;
use datacat_warehouse::WarehouseError;
use tracing::error;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("the warehouse is unavailable: {0}")]
    Warehouse(datacat_warehouse::WarehouseError),
}

impl From<WarehouseError> for ApiError {
    fn from(error: WarehouseError) -> Self {
        match error {
            // The request asked for something impossible (a bad cursor): the caller's fault.
            WarehouseError::InvalidInput(message) => ApiError::BadRequest(message),
            other => ApiError::Warehouse(other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
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

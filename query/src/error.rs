//! The one error type of the HTTP API, mapped to statuses and JSON bodies.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use datacat_api::answers::ErrorBody;
use datacat_warehouse::WarehouseError;
use tracing::error;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    Unauthorized(String),
    /// Some items of a batch were invalid (the others were written, as batch `seq`).
    #[error("{message}")]
    InvalidItems {
        message: String,
        accepted: usize,
        rejected: Vec<serde_json::Value>,
        seq: Option<u64>,
    },
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
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::InvalidItems { .. } => (StatusCode::BAD_REQUEST, "invalid_items"),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::Warehouse(error) => {
                error!(%error, "warehouse error");
                (StatusCode::SERVICE_UNAVAILABLE, "warehouse_unavailable")
            }
        };
        let mut body = serde_json::json!(ErrorBody {
            error: code.to_string(),
            message: self.to_string(),
        });
        if let ApiError::InvalidItems {
            accepted,
            rejected,
            seq,
            ..
        } = self
        {
            body["accepted"] = serde_json::json!(accepted);
            body["rejected"] = serde_json::json!(rejected);
            if let Some(seq) = seq {
                body["seq"] = serde_json::json!(seq);
            }
        }
        (status, Json(body)).into_response()
    }
}

//! The one error type of the HTTP API, answered as JSON with its code's status
//! (`datacat_api::errors`).

use axum::response::{IntoResponse, Response};
use datacat_api::errors::ErrorCode;
use datacat_warehouse::{RequestFault, WarehouseError};
use serde_json::json;
use tracing::error;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
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
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    TooManyRequests(String),
    #[error("the query is too expensive to answer; narrow it (fewer sessions, a shorter time range, a smaller page): {0}")]
    QueryTooExpensive(String),
    #[error("the warehouse is unavailable: {0}")]
    Warehouse(datacat_warehouse::WarehouseError),
}

impl From<WarehouseError> for ApiError {
    fn from(error: WarehouseError) -> Self {
        match error {
            // The request asked for something impossible (a bad cursor): the caller's fault.
            WarehouseError::InvalidInput(message) => ApiError::BadRequest(message),
            // ClickHouse refused the read for what it asked: still the caller's to change.
            other => match other.request_fault() {
                Some(RequestFault::TooExpensive) => ApiError::QueryTooExpensive(other.to_string()),
                Some(RequestFault::Invalid) => ApiError::BadRequest(other.to_string()),
                None => ApiError::Warehouse(other),
            },
        }
    }
}

impl ApiError {
    fn code(&self) -> ErrorCode {
        match self {
            ApiError::BadRequest(_) => ErrorCode::BadRequest,
            ApiError::NotFound(_) => ErrorCode::NotFound,
            ApiError::Unavailable(_) => ErrorCode::Unavailable,
            ApiError::PayloadTooLarge(_) => ErrorCode::PayloadTooLarge,
            ApiError::InvalidItems { .. } => ErrorCode::InvalidItems,
            ApiError::Unauthorized(_) => ErrorCode::Unauthorized,
            ApiError::Forbidden(_) => ErrorCode::Forbidden,
            ApiError::UnsupportedMediaType(_) => ErrorCode::UnsupportedMediaType,
            ApiError::TooManyRequests(_) => ErrorCode::TooManyRequests,
            ApiError::QueryTooExpensive(_) => ErrorCode::QueryTooExpensive,
            ApiError::Warehouse(_) => ErrorCode::WarehouseUnavailable,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Warehouse(warehouse) = &self {
            error!(error = %warehouse, "warehouse error");
        }
        let (code, message) = (self.code(), self.to_string());
        let mut extra = serde_json::Map::new();
        if let ApiError::InvalidItems {
            accepted,
            rejected,
            seq,
            ..
        } = self
        {
            extra.insert("accepted".into(), json!(accepted));
            extra.insert("rejected".into(), json!(rejected));
            if let Some(seq) = seq {
                extra.insert("seq".into(), json!(seq));
            }
        }
        datacat_service::error_response(code, message, extra)
    }
}

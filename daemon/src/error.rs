//! Everything a client of the daemon can get wrong, each answered as a JSON error with its
//! code's status (`datacat_api::errors`).

use axum::response::{IntoResponse, Response};
use datacat_api::calls::BadBody;
use datacat_api::errors::ErrorCode;
use serde_json::{json, Value};

use crate::metrics;
use crate::sessions::SessionError;

/// Everything a client can get wrong, each with its status.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("session has ended: {0}")]
    Ended(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The call does not carry this daemon's token.
    #[error("{0}")]
    Unauthorized(String),
    /// The body, or the record a call makes, is larger than the daemon takes.
    #[error("{0}")]
    TooLarge(String),
    #[error("{message}")]
    InvalidItems {
        message: String,
        accepted: usize,
        rejected: Vec<Value>,
    },
}

impl ApiError {
    fn code(&self) -> ErrorCode {
        match self {
            ApiError::BadRequest(_) => ErrorCode::BadRequest,
            ApiError::NotFound(_) => ErrorCode::NotFound,
            ApiError::Ended(_) => ErrorCode::SessionEnded,
            ApiError::MethodNotAllowed => ErrorCode::MethodNotAllowed,
            ApiError::Unauthorized(_) => ErrorCode::Unauthorized,
            ApiError::TooLarge(_) => ErrorCode::PayloadTooLarge,
            ApiError::InvalidItems { .. } => ErrorCode::InvalidItems,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        metrics::count_client_error();
        let (code, message) = (self.code(), self.to_string());
        let mut extra = serde_json::Map::new();
        if let ApiError::InvalidItems {
            accepted, rejected, ..
        } = self
        {
            extra.insert("accepted".into(), json!(accepted));
            extra.insert("rejected".into(), Value::Array(rejected));
        }
        datacat_service::error_response(code, message, extra)
    }
}

impl From<SessionError> for ApiError {
    fn from(error: SessionError) -> Self {
        match error {
            SessionError::Unknown(_) => ApiError::NotFound(error.to_string()),
            SessionError::Ended(id) => ApiError::Ended(id),
        }
    }
}

impl From<BadBody> for ApiError {
    fn from(error: BadBody) -> Self {
        ApiError::BadRequest(error.0)
    }
}

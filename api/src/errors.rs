//! The `error` codes of JSON error answers (`{"error": "<code>", "message": "..."}`), each
//! with the one HTTP status it is answered with, by the daemon and the query service alike.

datacat_protocol::named_enum! {
    pub enum ErrorCode {
        /// The request cannot be served as sent (bad JSON, a missing field, a bad parameter).
        BadRequest = "bad_request",
        /// Some items of a batch are invalid; the others were applied.
        InvalidItems = "invalid_items",
        /// No valid token.
        Unauthorized = "unauthorized",
        /// A token that may not do this (the read token on a write).
        Forbidden = "forbidden",
        /// No such session or endpoint.
        NotFound = "not_found",
        MethodNotAllowed = "method_not_allowed",
        /// The session has already ended.
        SessionEnded = "session_ended",
        /// A write's body is not declared `application/json`.
        UnsupportedMediaType = "unsupported_media_type",
        /// Too many attempts (failed sign-ins from one address); wait.
        TooManyRequests = "too_many_requests",
        /// The body is larger than the service takes.
        PayloadTooLarge = "payload_too_large",
        /// A read ClickHouse would not finish within its limits (time, rows, query size):
        /// narrow it (fewer sessions, a shorter time range, a smaller page).
        QueryTooExpensive = "query_too_expensive",
        /// A dependency (NATS) is not available; try again.
        Unavailable = "unavailable",
        /// ClickHouse is not available; try again.
        WarehouseUnavailable = "warehouse_unavailable",
    }
}

impl ErrorCode {
    /// The HTTP status it is answered with.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::BadRequest | ErrorCode::InvalidItems => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::SessionEnded => 409,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::TooManyRequests => 429,
            ErrorCode::QueryTooExpensive => 422,
            ErrorCode::Unavailable | ErrorCode::WarehouseUnavailable => 503,
        }
    }
}

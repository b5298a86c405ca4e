//! Prometheus `/metrics`: requests and errors by status class.

use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use datacat_service::{prometheus_text, Sample};

static REQUESTS: AtomicU64 = AtomicU64::new(0);
static CLIENT_ERRORS: AtomicU64 = AtomicU64::new(0);
static SERVER_ERRORS: AtomicU64 = AtomicU64::new(0);
static LATENCY_MICROS: AtomicU64 = AtomicU64::new(0);

pub async fn track(request: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    REQUESTS.fetch_add(1, Ordering::Relaxed);
    LATENCY_MICROS.fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
    if response.status().is_client_error() {
        CLIENT_ERRORS.fetch_add(1, Ordering::Relaxed);
    } else if response.status().is_server_error() {
        SERVER_ERRORS.fetch_add(1, Ordering::Relaxed);
    }
    response
}

/// `GET /metrics`: Prometheus text.
#[utoipa::path(get, path = "/metrics", tag = "service",
    responses((status = 200, description = "Prometheus text exposition", content_type = "text/plain", body = String)))]
pub async fn render() -> String {
    prometheus_text(&[
        Sample::counter(
            "datacat_query_requests_total",
            "HTTP requests served.",
            &REQUESTS,
        ),
        Sample::counter(
            "datacat_query_client_errors_total",
            "Requests answered 4xx.",
            &CLIENT_ERRORS,
        ),
        Sample::counter(
            "datacat_query_server_errors_total",
            "Requests answered 5xx.",
            &SERVER_ERRORS,
        ),
        Sample::counter(
            "datacat_query_request_micros_total",
            "Time spent serving requests, in microseconds.",
            &LATENCY_MICROS,
        ),
        Sample::counter(
            "datacat_query_reads_waited_total",
            "Reads that waited for the writer's last batch (min_seq) to be applied.",
            &crate::freshness::READS_WAITED,
        ),
        Sample::counter(
            "datacat_query_reads_behind_total",
            "Reads that answered before the writer's last batch was applied (the wait ran out).",
            &crate::freshness::READS_BEHIND,
        ),
    ])
}

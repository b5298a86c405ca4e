//! `/health` and Prometheus `/metrics`.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use datacat_service::{prometheus_text, Sample};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::worker::Stats;

pub async fn serve(listener: TcpListener, stats: Arc<Stats>, shutdown: CancellationToken) {
    let app = Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .with_state(stats);
    let _ = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
}

async fn health(State(stats): State<Arc<Stats>>) -> Json<Value> {
    Json(json!({
        "status": "ok",
        "messages": stats.messages.load(Ordering::Relaxed),
        "insert_errors": stats.insert_errors.load(Ordering::Relaxed),
    }))
}

async fn metrics(State(stats): State<Arc<Stats>>) -> String {
    prometheus_text(&[
        Sample::counter(
            "datacat_ingest_messages_total",
            "Messages applied.",
            &stats.messages,
        ),
        Sample::counter(
            "datacat_ingest_duplicates_total",
            "Messages already applied (redeliveries, retries).",
            &stats.duplicates,
        ),
        Sample::counter(
            "datacat_ingest_dead_letters_total",
            "Messages dead-lettered.",
            &stats.dead_letters,
        ),
        Sample::counter(
            "datacat_ingest_gaps_total",
            "Batches given up on after the gap wait.",
            &stats.gaps,
        ),
        Sample::counter("datacat_ingest_rows_total", "Rows inserted.", &stats.rows),
        Sample::counter(
            "datacat_ingest_insert_errors_total",
            "Failed insert rounds (retried).",
            &stats.insert_errors,
        ),
        Sample::counter(
            "datacat_ingest_insert_micros_total",
            "Time spent inserting, in microseconds.",
            &stats.insert_micros,
        ),
    ])
}

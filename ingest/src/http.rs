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

use crate::insert_reason::InsertReason;
use crate::stats::Stats;

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

/// The counter of groups sent on to be inserted, labelled by why then.
const GROUPS: &str = "datacat_ingest_groups_total";
const REASON: &str = "reason";

/// The `/metrics` series counting the groups sent on for `reason`.
pub fn groups_series(reason: InsertReason) -> String {
    datacat_service::series(GROUPS, (REASON, reason.name()))
}

async fn metrics(State(stats): State<Arc<Stats>>) -> String {
    let groups = InsertReason::ALL.map(|reason| {
        Sample::labelled_counter(
            GROUPS,
            "Groups of rounds sent on to be inserted, by why then: full (planning waited for ClickHouse), rows (--insert-rows), waited (--insert-wait-ms), caught_up (no more queued), stalled (more queued, none arriving), shutdown.",
            (REASON, reason.name()),
            &stats.groups_by_reason[reason as usize],
        )
    });
    let mut samples = vec![
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
            "datacat_ingest_progress_write_errors_total",
            "Progress records NATS did not store (not a conflict with another worker): their batches are retried.",
            &stats.progress_write_errors,
        ),
        Sample::counter(
            "datacat_ingest_retimed_records_total",
            "Records stored at their receive time: their own was over 30 days before it or over a minute after.",
            &stats.retimed,
        ),
        Sample::counter(
            "datacat_ingest_gaps_total",
            "Batches given up on after the gap wait.",
            &stats.gaps,
        ),
        Sample::counter(
            "datacat_ingest_waits_total",
            "Batches NAKed to wait for a predecessor not applied yet.",
            &stats.waits,
        ),
        Sample::counter(
            "datacat_ingest_forwarded_total",
            "Messages fetched by this worker and forwarded to the worker that owns their session.",
            &stats.forwarded,
        ),
        Sample::counter(
            "datacat_ingest_forwarded_in_total",
            "Messages other workers forwarded to this one (it owns their sessions).",
            &stats.forwarded_in,
        ),
        Sample::counter(
            "datacat_ingest_progress_reads_total",
            "Session progress records read from NATS KV.",
            &stats.progress_reads,
        ),
        Sample::counter(
            "datacat_ingest_voided_total",
            "Session plans void because the progress they were built on was not written (their batches come back).",
            &stats.voided,
        ),
        Sample::counter("datacat_ingest_rows_total", "Rows inserted.", &stats.rows),
        Sample::counter(
            "datacat_ingest_insert_errors_total",
            "Failed inserts (retried while ClickHouse is unavailable, narrowed down when it refuses the rows).",
            &stats.insert_errors,
        ),
        Sample::counter(
            "datacat_ingest_refused_inserts_total",
            "Inserts ClickHouse refused for the rows they carried (split until the refused batches are found, which are dead-lettered).",
            &stats.refused_inserts,
        ),
        Sample::counter(
            "datacat_ingest_insert_micros_total",
            "Time spent inserting, in microseconds (divide by inserts for the mean latency).",
            &stats.insert_micros,
        ),
        Sample::counter(
            "datacat_ingest_inserts_total",
            "Insert rounds.",
            &stats.inserts,
        ),
        Sample::counter(
            "datacat_ingest_rows_sessions_total",
            "Rows inserted into sessions.",
            &stats.rows_sessions,
        ),
        Sample::counter(
            "datacat_ingest_rows_state_history_total",
            "Rows inserted into state_history.",
            &stats.rows_state_history,
        ),
        Sample::counter(
            "datacat_ingest_rows_state_paths_total",
            "Rows inserted into state_paths.",
            &stats.rows_state_paths,
        ),
        Sample::counter(
            "datacat_ingest_rows_events_total",
            "Rows inserted into events.",
            &stats.rows_events,
        ),
        Sample::counter(
            "datacat_ingest_rows_metrics_total",
            "Rows inserted into metrics.",
            &stats.rows_metrics,
        ),
        Sample::counter(
            "datacat_ingest_rows_metric_sessions_total",
            "Rows inserted into metric_sessions (per-session metric summaries).",
            &stats.rows_metric_sessions,
        ),
        Sample::gauge(
            "datacat_ingest_consumer_lag",
            "Messages in the stream not yet delivered to the consumer.",
            stats.lag.load(Ordering::Relaxed),
        ),
        Sample::gauge(
            "datacat_ingest_workers",
            "Live ingest workers, this one included, as this one sees them (they share the sessions).",
            stats.workers.load(Ordering::Relaxed),
        ),
        Sample::gauge(
            "datacat_ingest_message_bytes",
            "Payload bytes of the messages this worker holds (fetched or forwarded to it, not yet acked), as of the last round.",
            stats.message_bytes.load(Ordering::Relaxed),
        ),
        Sample::gauge(
            "datacat_ingest_held",
            "Batches kept by this worker until their predecessor (on another worker) is applied.",
            stats.held.load(Ordering::Relaxed),
        ),
    ];
    samples.extend(groups);
    prometheus_text(&samples)
}

//! Prometheus `/metrics` for the daemon.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::State;

use crate::sessions::Registry;

static CLIENT_ERRORS: AtomicU64 = AtomicU64::new(0);

pub fn count_client_error() {
    CLIENT_ERRORS.fetch_add(1, Ordering::Relaxed);
}

pub async fn render(State(registry): State<Arc<Registry>>) -> String {
    let stats = &registry.publisher().stats;
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, kind: &str, value: u64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    };
    gauge(
        "datacat_daemon_sessions",
        "Open sessions.",
        "gauge",
        registry.session_count() as u64,
    );
    gauge(
        "datacat_daemon_pending_records",
        "Records not yet batched.",
        "gauge",
        registry.pending_records() as u64,
    );
    gauge(
        "datacat_daemon_queued_batches",
        "Batches not yet acknowledged by JetStream.",
        "gauge",
        registry.queued_batches() as u64,
    );
    gauge(
        "datacat_daemon_published_batches_total",
        "Batches acknowledged by JetStream.",
        "counter",
        stats.published.load(Ordering::Relaxed),
    );
    gauge(
        "datacat_daemon_published_bytes_total",
        "Payload bytes acknowledged by JetStream.",
        "counter",
        stats.published_bytes.load(Ordering::Relaxed),
    );
    gauge(
        "datacat_daemon_publish_errors_total",
        "Failed publish attempts (each retried).",
        "counter",
        stats.publish_errors.load(Ordering::Relaxed),
    );
    gauge(
        "datacat_daemon_client_errors_total",
        "Client requests rejected with a 4xx.",
        "counter",
        CLIENT_ERRORS.load(Ordering::Relaxed),
    );
    out
}

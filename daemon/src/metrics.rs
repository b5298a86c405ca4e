//! Prometheus `/metrics` for the daemon.

use std::sync::atomic::{AtomicU64, Ordering};

use datacat_service::{prometheus_text, Sample};

use crate::sessions::Registry;

static CLIENT_ERRORS: AtomicU64 = AtomicU64::new(0);
static OVERSIZE_CALLS: AtomicU64 = AtomicU64::new(0);

pub fn count_client_error() {
    CLIENT_ERRORS.fetch_add(1, Ordering::Relaxed);
}

pub fn count_oversize_call() {
    OVERSIZE_CALLS.fetch_add(1, Ordering::Relaxed);
}

pub fn render(registry: &Registry) -> String {
    let stats = &registry.publisher().stats;
    let spool = &registry.publisher().spool.stats;
    prometheus_text(&[
        Sample::gauge(
            "datacat_daemon_sessions",
            "Open sessions.",
            registry.session_count() as u64,
        ),
        Sample::gauge(
            "datacat_daemon_pending_records",
            "Records not yet batched.",
            registry.pending_records() as u64,
        ),
        Sample::gauge(
            "datacat_daemon_spooled_bytes",
            "Bytes of batches not yet acknowledged by JetStream.",
            spool.pending_bytes.load(Ordering::Relaxed),
        ),
        Sample::counter(
            "datacat_daemon_dropped_batches_total",
            "Batches dropped (spool full).",
            &spool.dropped_batches,
        ),
        Sample::counter(
            "datacat_daemon_dropped_records_total",
            "Records dropped (spool full).",
            &spool.dropped_records,
        ),
        Sample::counter(
            "datacat_daemon_spool_torn_bytes_total",
            "Spool bytes skipped as torn or corrupt entries (their batches are lost; the entries after them are delivered).",
            &spool.torn_bytes,
        ),
        Sample::counter(
            "datacat_daemon_spool_read_errors_total",
            "Spool segment reads that failed (tried again later).",
            &spool.read_errors,
        ),
        Sample::counter(
            "datacat_daemon_spool_unreadable_segments_total",
            "Spool segments that failed to read 5 times in a row: kept on disk as .seg.unreadable, not delivered.",
            &spool.unreadable_segments,
        ),
        Sample::counter(
            "datacat_daemon_adopted_spools_total",
            "Spools of dead daemons adopted.",
            &spool.adopted_dirs,
        ),
        Sample::counter(
            "datacat_daemon_published_batches_total",
            "Batches acknowledged by JetStream.",
            &stats.published,
        ),
        Sample::counter(
            "datacat_daemon_published_bytes_total",
            "Payload bytes acknowledged by JetStream.",
            &stats.published_bytes,
        ),
        Sample::counter(
            "datacat_daemon_publish_errors_total",
            "Failed publish attempts (each retried).",
            &stats.publish_errors,
        ),
        Sample::counter(
            "datacat_daemon_refused_batches_total",
            "Batches NATS refused for good (larger than its max_payload): moved aside, and their loss reported in their sessions.",
            &stats.refused_batches,
        ),
        Sample::counter(
            "datacat_daemon_oversize_calls_total",
            "Calls refused because their record could not fit in one NATS message.",
            &OVERSIZE_CALLS,
        ),
        Sample::counter(
            "datacat_daemon_client_errors_total",
            "Client requests rejected with a 4xx.",
            &CLIENT_ERRORS,
        ),
    ])
}

//! What a worker counts (served on /metrics by `http.rs`).

use std::sync::atomic::{AtomicU64, Ordering};

use datacat_warehouse::EncodedRows;

use crate::insert_reason::InsertReason;

#[derive(Default)]
pub struct Stats {
    pub messages: AtomicU64,
    pub duplicates: AtomicU64,
    pub dead_letters: AtomicU64,
    pub gaps: AtomicU64,
    pub rows: AtomicU64,
    pub insert_errors: AtomicU64,
    /// Inserts ClickHouse refused for the rows they carried (narrowed down, not retried).
    pub refused_inserts: AtomicU64,
    pub insert_micros: AtomicU64,
    pub inserts: AtomicU64,
    /// Groups sent on to be inserted, by `InsertReason` (its discriminant).
    pub groups_by_reason: [AtomicU64; InsertReason::ALL.len()],
    pub rows_sessions: AtomicU64,
    pub rows_state_history: AtomicU64,
    pub rows_state_paths: AtomicU64,
    pub rows_events: AtomicU64,
    pub rows_metrics: AtomicU64,
    pub rows_metric_sessions: AtomicU64,
    /// Messages in the stream not yet delivered to the consumer, as of the last delivery.
    pub lag: AtomicU64,
    /// Batches this worker keeps for a predecessor (in another worker's round), as of the
    /// last round.
    pub held: AtomicU64,
    /// Batches NAKed to wait for a predecessor (after being held, or redelivered).
    pub waits: AtomicU64,
    /// Messages forwarded to the worker that owns their session, and received from others.
    pub forwarded: AtomicU64,
    pub forwarded_in: AtomicU64,
    /// Live workers, this one included, as of the last round.
    pub workers: AtomicU64,
    /// Payload bytes of the messages this worker holds, as of the last round.
    pub message_bytes: AtomicU64,
    /// Progress records read from NATS KV (not known from this worker's own rounds).
    pub progress_reads: AtomicU64,
    /// Records whose time was replaced by the receive time (too far from it), as applied
    /// (a plan applied again counts again; the session's own count does not).
    pub retimed: AtomicU64,
    /// Progress records NATS did not store for another reason than a conflict.
    pub progress_write_errors: AtomicU64,
    /// Session plans void because the progress they were built on was not written.
    pub voided: AtomicU64,
}

impl Stats {
    pub(crate) fn count_rows(&self, sets: &[EncodedRows]) {
        let add = |counter: &AtomicU64, count: fn(&EncodedRows) -> usize| {
            let n: usize = sets.iter().map(count).sum();
            counter.fetch_add(n as u64, Ordering::Relaxed)
        };
        add(&self.rows, EncodedRows::row_count);
        add(&self.rows_sessions, |s| s.sessions.rows());
        add(&self.rows_state_history, |s| s.state_history.rows());
        add(&self.rows_state_paths, |s| s.state_paths.rows());
        add(&self.rows_events, |s| s.events.rows());
        add(&self.rows_metrics, |s| s.metrics.rows());
        add(&self.rows_metric_sessions, |s| s.metric_sessions.rows());
        self.inserts.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_group(&self, reason: InsertReason) {
        self.groups_by_reason[reason as usize].fetch_add(1, Ordering::Relaxed);
    }
}

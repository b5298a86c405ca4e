//! The consume loop: fetch a round of messages, plan it (`plan.rs`: apply each session's
//! batches in sequence order against its progress record), and hand the planned rounds to
//! ClickHouse in groups (`group.rs`: insert, then record progress by compare-and-set and
//! ack). Nothing is acked before its rows are in ClickHouse.
//!
//! Ordering across workers: a session's progress lives in NATS KV and is only advanced by a
//! compare-and-set on its revision. A batch older than the progress is a duplicate (acked);
//! the next one is applied; a newer one waits (NAK with delay) for its predecessor, up to a
//! bounded number of deliveries after which the gap is recorded and the batch applied.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use async_nats::jetstream::{AckKind, Message};
use datacat_protocol::subject;
use datacat_warehouse::{EncodedRows, Writer};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::config::Config;
use crate::group::{Group, InFlight, KEEP_ALIVE_EVERY, PLANNED_ROWS_LIMIT};
use crate::peers::{Peers, PlannedSession};
use crate::plan::Held;
use crate::progress_cache::ProgressCache;
use crate::setup::Resources;

#[derive(Default)]
pub struct Stats {
    pub messages: AtomicU64,
    pub duplicates: AtomicU64,
    pub dead_letters: AtomicU64,
    pub gaps: AtomicU64,
    pub rows: AtomicU64,
    pub insert_errors: AtomicU64,
    pub insert_micros: AtomicU64,
    pub inserts: AtomicU64,
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
    /// Session plans built on another worker's announced, not yet committed, progress.
    pub peer_plans: AtomicU64,
    /// Progress records read from NATS KV (not known from this worker's own rounds or a
    /// peer's announcement).
    pub progress_reads: AtomicU64,
    /// Session plans void because the progress they were built on was not written.
    pub voided: AtomicU64,
}

pub struct Worker {
    pub(crate) client: async_nats::Client,
    pub(crate) resources: Resources,
    pub(crate) writer: Writer,
    pub(crate) stats: Arc<Stats>,
    fetch_batch: usize,
    fetch_wait: Duration,
    pub(crate) insert_rows: usize,
    pub(crate) insert_wait: Duration,
    pub(crate) gap_max_deliveries: i64,
    pub(crate) gap_retry: Duration,
    pub(crate) max_deliveries: i64,
    /// How long a batch waiting for its predecessor is kept before it is NAKed.
    pub(crate) hold_for: Duration,
    pub(crate) shutdown: CancellationToken,
    pub(crate) cache: ProgressCache,
    /// What the other workers planned and committed, as they announced it.
    pub(crate) peers: Arc<Peers>,
}

/// The fetch wait while batches are held for a predecessor.
const HELD_FETCH_WAIT: Duration = Duration::from_millis(25);

/// Delay before a failed round's messages come back.
pub(crate) const RETRY_DELAY: Duration = Duration::from_secs(1);

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
}

impl Worker {
    pub fn new(
        client: async_nats::Client,
        resources: Resources,
        writer: Writer,
        stats: Arc<Stats>,
        config: &Config,
    ) -> Self {
        Self {
            client,
            resources,
            writer,
            stats,
            fetch_batch: config.fetch_batch.max(1),
            fetch_wait: Duration::from_millis(config.fetch_wait_ms.max(10)),
            insert_rows: config.insert_rows.max(1),
            insert_wait: Duration::from_millis(config.insert_wait_ms),
            gap_max_deliveries: config.gap_max_deliveries.max(1),
            gap_retry: Duration::from_millis(config.gap_retry_ms.max(10)),
            max_deliveries: config.max_deliveries.max(config.gap_max_deliveries + 1),
            hold_for: crate::plan::hold_for(Duration::from_secs(config.ack_wait_secs.max(1))),
            cache: ProgressCache::default(),
            peers: Arc::new(Peers::default()),
            shutdown: CancellationToken::new(),
        }
    }

    /// Work is pipelined three deep: while one group of rounds commits its progress (NATS),
    /// the next is inserted (ClickHouse), and rounds are fetched, decoded and planned
    /// (ingest) into the group after it, which is inserted as soon as ClickHouse is free (or
    /// it reaches `--max-insert-rows`). One insert at a time, and commits in round order: a
    /// plan built on an earlier round's progress knows whether that progress was written
    /// before it writes its own.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<()> {
        self.shutdown = shutdown.clone();
        let worker = Arc::new(self);
        {
            // Stops with `shutdown`.
            let (peers, client) = (worker.peers.clone(), worker.client.clone());
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                if let Err(error) = peers.listen(client, shutdown).await {
                    warn!(%error, "not receiving peers' announcements; reading KV instead");
                }
            });
        }
        info!("consuming");
        let mut in_flight: Option<InFlight> = None;
        let mut group = Group::default();
        let mut next_round = 0;
        // Batches waiting for a predecessor, looked at again with every round.
        let mut held: Vec<Held> = Vec::new();
        while !shutdown.is_cancelled() {
            // Batches held for a predecessor are looked at again after each fetch, and a
            // planned group goes to ClickHouse as soon as it is free: when the consumer has
            // nothing to hand out, neither should take the full fetch wait.
            let fetch_wait = if held.is_empty() && group.is_empty() {
                worker.fetch_wait
            } else {
                worker.fetch_wait.min(HELD_FETCH_WAIT)
            };
            let messages = tokio::select! {
                fetched = worker.fetch(fetch_wait) => fetched,
                _ = shutdown.cancelled() => break,
            };
            let (messages, backlog) = match messages {
                Ok(messages) => {
                    // Another full fetch is queued behind these: worth waiting for.
                    let queued = messages.last().and_then(|m| m.info().ok());
                    let backlog =
                        queued.is_some_and(|info| info.pending >= worker.fetch_batch as u64);
                    (messages, backlog)
                }
                Err(error) => {
                    warn!(%error, "fetch failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            if !messages.is_empty() || !held.is_empty() {
                // A round, once fetched, is finished even when shutdown arrives meanwhile.
                next_round += 1;
                let mut round = worker
                    .plan_round(next_round, messages, std::mem::take(&mut held))
                    .await;
                let planned = round.plans.iter().filter(|plan| !plan.value.is_empty());
                let planned = planned.map(|plan| PlannedSession {
                    key: &plan.key,
                    next_seq: plan.next_seq,
                    value: &plan.value,
                });
                worker
                    .peers
                    .announce_planned(&worker.client, round.id, planned)
                    .await;
                held = std::mem::take(&mut round.held);
                group.add(round);
            }
            if group.is_empty() {
                continue;
            }
            let clickhouse_free = in_flight.as_mut().is_none_or(InFlight::insert_done);
            let full = group.rows >= worker.insert_rows * PLANNED_ROWS_LIMIT;
            // Full: planning waits for ClickHouse (start_insert waits for the previous insert).
            let insert_now = full || (clickhouse_free && worker.ripe(&group, backlog));
            if !insert_now {
                group.keep_alive_if_due().await;
                continue;
            }
            let group = std::mem::take(&mut group);
            in_flight = Some(worker.start_insert(group, in_flight.take()).await);
        }
        if !group.is_empty() {
            in_flight = Some(worker.start_insert(group, in_flight.take()).await);
        }
        if let Some(previous) = in_flight {
            let _ = previous.task.await;
        }
        // Back to the stream at once: another worker (or this one, restarted) takes them.
        nak_all(
            held.into_iter().map(|held| held.message).collect(),
            Duration::ZERO,
        )
        .await;
        worker.client.flush().await?;
        info!("stopped");
        Ok(())
    }

    /// Waits for `work`, extending the ack deadline of `held` messages for as long as that
    /// takes (a ClickHouse outage must not get them redelivered).
    pub(crate) async fn keeping_alive<F: std::future::Future>(
        &self,
        work: F,
        held: &[&Message],
    ) -> F::Output {
        let mut keep_alive = tokio::time::interval(KEEP_ALIVE_EVERY);
        keep_alive.tick().await;
        tokio::pin!(work);
        loop {
            tokio::select! {
                done = &mut work => return done,
                _ = keep_alive.tick() => extend_ack_deadlines(held).await,
            }
        }
    }

    async fn fetch(&self, wait: Duration) -> Result<Vec<Message>> {
        let mut batch = self
            .resources
            .consumer
            .batch()
            .max_messages(self.fetch_batch)
            .expires(wait)
            .messages()
            .await?;
        let mut messages = Vec::new();
        while let Some(message) = batch.next().await {
            match message {
                Ok(message) => messages.push(message),
                Err(error) => {
                    debug!(%error, "fetch ended early");
                    break;
                }
            }
        }
        Ok(messages)
    }

    pub(crate) async fn dead_letter(&self, message: Message, reason: &str) {
        warn!(subject = %message.subject, %reason, "dead-lettering an unusable message");
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(subject::DEAD_LETTER_REASON_HEADER, reason);
        headers.insert("Datacat-Subject", message.subject.as_str());
        let published = self
            .resources
            .jetstream
            .publish_with_headers(
                subject::DEAD_LETTER_SUBJECT,
                headers,
                message.payload.clone(),
            )
            .await;
        let stored = match published {
            Ok(ack) => ack.await.map(drop).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match stored {
            Ok(()) => {
                self.stats.dead_letters.fetch_add(1, Ordering::Relaxed);
                ack_all(vec![message]).await;
            }
            Err(error) => {
                error!(%error, "dead-letter publish failed; retrying later");
                nak_all(vec![message], RETRY_DELAY).await;
            }
        }
    }
}

pub(crate) async fn ack_all(messages: Vec<Message>) {
    for message in messages {
        if let Err(error) = message.ack().await {
            warn!(%error, "ack failed; the message will be redelivered and skipped as a duplicate");
        }
    }
}

/// Tells JetStream the messages are still being worked on (their ack wait starts again).
/// (A slice, not an iterator: an iterator adaptor held across the awaits trips the
/// compiler's `Send` inference for the spawned group.)
pub(crate) async fn extend_ack_deadlines(messages: &[&Message]) {
    for message in messages {
        let _ = message.ack_with(AckKind::Progress).await;
    }
}

pub(crate) async fn nak_all(messages: Vec<Message>, delay: Duration) {
    for message in messages {
        if let Err(error) = message.ack_with(AckKind::Nak(Some(delay))).await {
            warn!(%error, "nak failed; the message will be redelivered after ack_wait");
        }
    }
}

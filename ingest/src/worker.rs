//! The consume loop: fetch a round of messages, apply each session's batches in sequence
//! order against its progress record, insert all rows, then record progress (compare-and-set)
//! and ack. Nothing is acked before its rows are in ClickHouse.
//!
//! Ordering across workers: a session's progress lives in NATS KV and is only advanced by a
//! compare-and-set on its revision. A batch older than the progress is a duplicate (acked);
//! the next one is applied; a newer one waits (NAK with delay) for its predecessor, up to a
//! bounded number of deliveries after which the gap is recorded and the batch applied.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use async_nats::jetstream::{self, AckKind, Message};
use datacat_protocol::{decode_batch, subject, Batch};
use datacat_warehouse::{RowSet, Writer};
use futures::{stream, StreamExt};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::apply::{apply, Progress};
use crate::config::Config;
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
    /// Messages in the stream not yet delivered to the consumer, as of the last delivery.
    pub lag: AtomicU64,
}

pub struct Worker {
    client: async_nats::Client,
    resources: Resources,
    writer: Writer,
    stats: std::sync::Arc<Stats>,
    fetch_batch: usize,
    fetch_wait: Duration,
    gap_max_deliveries: i64,
    gap_retry: Duration,
    max_deliveries: i64,
    /// The progress (and KV revision) this worker last wrote per session. Used only when a
    /// batch is exactly the cached next one; the compare-and-set catches a stale entry.
    shutdown: CancellationToken,
    cache: std::sync::Mutex<std::collections::HashMap<String, (Progress, u64)>>,
}

/// How long a cached progress may be used without reading KV again (milliseconds).
const CACHE_FRESH_MS: u64 = 10_000;

/// Sessions whose progress a worker keeps in memory before it starts over.
const CACHE_SESSIONS: usize = 100_000;

/// What one round decided for one session.
struct SessionPlan {
    key: String,
    revision: Option<u64>,
    progress: Progress,
    applied: Vec<Message>,
    duplicates: Vec<Message>,
    waiting: Vec<Message>,
}

/// Sessions whose progress is read or written at once.
const KV_CONCURRENCY: usize = 256;

/// Delay before a failed round's messages come back.
const RETRY_DELAY: Duration = Duration::from_secs(1);

impl Stats {
    fn count_rows(&self, rows: &RowSet) {
        let add = |counter: &AtomicU64, n: usize| counter.fetch_add(n as u64, Ordering::Relaxed);
        add(&self.rows, rows.row_count());
        add(&self.inserts, 1);
        add(&self.rows_sessions, rows.sessions.len());
        add(&self.rows_state_history, rows.state_history.len());
        add(&self.rows_state_paths, rows.state_paths.len());
        add(&self.rows_events, rows.events.len());
        add(&self.rows_metrics, rows.metrics.len());
    }
}

impl Worker {
    pub fn new(
        client: async_nats::Client,
        resources: Resources,
        writer: Writer,
        stats: std::sync::Arc<Stats>,
        config: &Config,
    ) -> Self {
        Self {
            client,
            resources,
            writer,
            stats,
            fetch_batch: config.fetch_batch.max(1),
            fetch_wait: Duration::from_millis(config.fetch_wait_ms.max(10)),
            gap_max_deliveries: config.gap_max_deliveries.max(1),
            gap_retry: Duration::from_millis(config.gap_retry_ms.max(10)),
            max_deliveries: config.max_deliveries.max(config.gap_max_deliveries + 1),
            cache: Default::default(),
            shutdown: CancellationToken::new(),
        }
    }

    pub async fn run(mut self, shutdown: CancellationToken) -> Result<()> {
        self.shutdown = shutdown.clone();
        info!("consuming");
        while !shutdown.is_cancelled() {
            let messages = tokio::select! {
                fetched = self.fetch() => fetched,
                _ = shutdown.cancelled() => break,
            };
            let messages = match messages {
                Ok(messages) => messages,
                Err(error) => {
                    warn!(%error, "fetch failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            if messages.is_empty() {
                continue;
            }
            // A round, once fetched, is finished even when shutdown arrives meanwhile.
            let (count, started) = (messages.len(), Instant::now());
            self.process(messages).await;
            debug!(
                messages = count,
                took_ms = started.elapsed().as_millis() as u64,
                "round done"
            );
            // Acks are fire-and-forget; flushing makes sure they reached the server.
            if let Err(error) = self.client.flush().await {
                warn!(%error, "flushing acks failed");
            }
        }
        self.client.flush().await?;
        info!("stopped");
        Ok(())
    }

    async fn fetch(&self) -> Result<Vec<Message>> {
        let mut batch = self
            .resources
            .consumer
            .batch()
            .max_messages(self.fetch_batch)
            .expires(self.fetch_wait)
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

    async fn process(&self, messages: Vec<Message>) {
        let mut by_session: BTreeMap<String, Vec<(Batch, Message)>> = BTreeMap::new();
        for message in messages {
            if let Ok(info) = message.info() {
                self.stats.lag.store(info.pending, Ordering::Relaxed);
                if info.delivered > self.max_deliveries {
                    let reason =
                        format!("delivered {} times without being applied", info.delivered);
                    self.dead_letter(message, &reason).await;
                    continue;
                }
            }
            match decode_batch(&message.payload) {
                Ok(batch) => by_session
                    .entry(batch.session_id.clone())
                    .or_default()
                    .push((batch, message)),
                Err(error) => self.dead_letter(message, &error.to_string()).await,
            }
        }

        // Sessions are independent: their progress records are read concurrently (one KV
        // round trip per session, not one after another).
        let round = Instant::now();
        let planned: Vec<_> = stream::iter(by_session)
            .map(|(session_id, batches)| async move {
                let mut rows = RowSet::default();
                let plan = self.plan_session(&session_id, batches, &mut rows).await;
                (session_id, plan, rows)
            })
            .buffer_unordered(KV_CONCURRENCY)
            .collect()
            .await;
        debug!(
            sessions = planned.len(),
            took_ms = round.elapsed().as_millis() as u64,
            "planned"
        );
        // Sized once: appending a thousand sessions' rows into growing vectors was a
        // noticeable share of ingest's time (memmove and page faults in perf).
        let mut rows = RowSet::default();
        let total = |f: fn(&RowSet) -> usize| planned.iter().map(|(_, _, r)| f(r)).sum::<usize>();
        rows.sessions.reserve(total(|r| r.sessions.len()));
        rows.state_history.reserve(total(|r| r.state_history.len()));
        rows.state_paths.reserve(total(|r| r.state_paths.len()));
        rows.events.reserve(total(|r| r.events.len()));
        rows.metrics.reserve(total(|r| r.metrics.len()));
        let mut plans = Vec::with_capacity(planned.len());
        for (session_id, plan, session_rows) in planned {
            match plan {
                Ok(plan) => {
                    rows.append(session_rows);
                    plans.push(plan);
                }
                Err((error, messages)) => {
                    warn!(%session_id, %error, "reading progress failed; retrying later");
                    nak_all(messages, RETRY_DELAY).await;
                }
            }
        }

        if !rows.is_empty() {
            let started = Instant::now();
            if !self.insert_until_done(&rows, &plans).await {
                // Shutting down mid-outage: everything comes back to some worker later.
                for plan in plans {
                    nak_all(
                        plan.applied.into_iter().chain(plan.waiting).collect(),
                        RETRY_DELAY,
                    )
                    .await;
                    ack_all(plan.duplicates).await;
                }
                return;
            }
            self.stats
                .insert_micros
                .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
            self.stats.count_rows(&rows);
            debug!(
                rows = rows.row_count(),
                took_ms = started.elapsed().as_millis() as u64,
                "inserted"
            );
        }

        stream::iter(plans)
            .for_each_concurrent(KV_CONCURRENCY, |plan| self.commit(plan))
            .await;
    }

    /// Inserts the round's rows, retrying with backoff while ClickHouse is unavailable. The
    /// round's messages are kept (their ack deadline extended), not redelivered: an outage
    /// must not count against a message's deliveries and dead-letter good data.
    /// Returns false only when shutdown interrupts the retries.
    async fn insert_until_done(&self, rows: &RowSet, plans: &[SessionPlan]) -> bool {
        let mut backoff = Duration::from_millis(500);
        loop {
            let Err(error) = self.writer.insert(rows).await else {
                return true;
            };
            self.stats.insert_errors.fetch_add(1, Ordering::Relaxed);
            error!(%error, retry_in = ?backoff, "insert failed; keeping the round and retrying");
            for message in plans
                .iter()
                .flat_map(|p| p.applied.iter().chain(&p.waiting).chain(&p.duplicates))
            {
                let _ = message.ack_with(AckKind::Progress).await;
            }
            let _ = self.client.flush().await;
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = self.shutdown.cancelled() => return false,
            }
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    }

    /// Decides, for one session's batches of this round, which apply, which are duplicates
    /// and which must wait; appends the applied batches' rows.
    async fn plan_session(
        &self,
        session_id: &str,
        mut batches: Vec<(Batch, Message)>,
        rows: &mut RowSet,
    ) -> Result<SessionPlan, (String, Vec<Message>)> {
        let key = subject::progress_key(session_id);
        batches.sort_by_key(|(batch, _)| batch.seq);
        let first_seq = batches.first().map(|(batch, _)| batch.seq);
        // Taken out, not cloned: commit puts the new progress back.
        let cached = self
            .cache_lock()
            .remove(&key)
            .filter(|(p, _)| Some(p.next_seq) == first_seq)
            // Only a fresh entry: the sweeper rewrites progress of sessions silent for
            // `lost_after`, and a stale "active" must not produce events before its CAS fails.
            .filter(|(p, _)| {
                datacat_protocol::time::now_ms().saturating_sub(p.seen_ms) < CACHE_FRESH_MS
            });
        let (progress, revision) = match cached {
            Some((progress, revision)) => (progress, Some(revision)),
            None => self.read_progress(&key).await.map_err(|error| {
                (
                    error,
                    batches.iter().map(|(_, m)| m.clone()).collect::<Vec<_>>(),
                )
            })?,
        };
        self.plan_batches(session_id, key, progress, revision, batches, rows)
    }

    fn cache_lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, (Progress, u64)>> {
        self.cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A session's progress and its KV revision (`None`: never written).
    async fn read_progress(&self, key: &str) -> Result<(Progress, Option<u64>), String> {
        let entry = self
            .resources
            .progress
            .entry(key.to_string())
            .await
            .map_err(|e| e.to_string())?;
        Ok(match entry {
            Some(entry) if entry.operation == jetstream::kv::Operation::Put => {
                let progress = serde_json::from_slice::<Progress>(&entry.value)
                    .map_err(|error| format!("progress record does not parse: {error}"))?;
                (progress, Some(entry.revision))
            }
            Some(entry) => (Progress::default(), Some(entry.revision)),
            None => (Progress::default(), None),
        })
    }

    /// Decides which batches apply, which are duplicates and which must wait, given the
    /// session's progress; appends the applied batches' rows.
    fn plan_batches(
        &self,
        session_id: &str,
        key: String,
        mut progress: Progress,
        revision: Option<u64>,
        batches: Vec<(Batch, Message)>,
        rows: &mut RowSet,
    ) -> Result<SessionPlan, (String, Vec<Message>)> {
        let mut plan = SessionPlan {
            key,
            revision,
            progress: Progress::default(),
            applied: Vec::new(),
            duplicates: Vec::new(),
            waiting: Vec::new(),
        };
        for (batch, message) in batches {
            // Older than the progress: a duplicate, unless it is a predecessor the session
            // gave up waiting for (then it is applied late, not dropped).
            let late = batch.seq < progress.next_seq && progress.skipped.contains(&batch.seq);
            // (A second copy in the same round is caught here too: applying the first moved
            // next_seq on, or took its seq out of `skipped`.)
            if batch.seq < progress.next_seq && !late {
                plan.duplicates.push(message);
                continue;
            }
            if batch.seq > progress.next_seq {
                let delivered = message.info().map(|info| info.delivered).unwrap_or(1);
                if !plan.waiting.is_empty() || delivered < self.gap_max_deliveries {
                    plan.waiting.push(message);
                    continue;
                }
                self.stats
                    .gaps
                    .fetch_add(batch.seq - progress.next_seq, Ordering::Relaxed);
                warn!(%session_id, expected = progress.next_seq, got = batch.seq, "predecessor never arrived; recording the gap");
            }
            apply(&mut progress, &batch, rows);
            plan.applied.push(message);
        }
        if !plan.applied.is_empty() {
            progress.seen_ms = datacat_protocol::time::now_ms();
            rows.sessions.push(progress.session_row(session_id));
        }
        plan.progress = progress;
        Ok(plan)
    }

    /// Records the session's new progress; acks what it covers.
    async fn commit(&self, plan: SessionPlan) {
        self.stats
            .duplicates
            .fetch_add(plan.duplicates.len() as u64, Ordering::Relaxed);
        ack_all(plan.duplicates).await;
        for message in plan.waiting {
            // Back off: a predecessor that is not here yet is usually seconds away.
            let delivered = message
                .info()
                .map(|info| info.delivered)
                .unwrap_or(1)
                .max(1) as u32;
            let delay = (self.gap_retry * delivered).min(Duration::from_secs(2));
            nak_all(vec![message], delay).await;
        }
        if plan.applied.is_empty() {
            return;
        }
        let value = match serde_json::to_vec(&plan.progress) {
            Ok(value) => value,
            Err(error) => {
                error!(%error, "progress does not serialise");
                return nak_all(plan.applied, RETRY_DELAY).await;
            }
        };
        let store = &self.resources.progress;
        let saved = match plan.revision {
            Some(revision) => store
                .update(&plan.key, value.into(), revision)
                .await
                .map_err(|e| e.to_string()),
            None => store
                .create(&plan.key, value.into())
                .await
                .map_err(|e| e.to_string()),
        };
        match saved {
            Ok(revision) => {
                {
                    let mut cache = self.cache_lock();
                    if cache.len() >= CACHE_SESSIONS {
                        cache.clear();
                    }
                    // An ended session rarely gets another batch: not worth the memory.
                    if plan.progress.status == "active" || plan.progress.status == "hung" {
                        cache.insert(plan.key.clone(), (plan.progress, revision));
                    } else {
                        cache.remove(&plan.key);
                    }
                }
                self.stats
                    .messages
                    .fetch_add(plan.applied.len() as u64, Ordering::Relaxed);
                ack_all(plan.applied).await;
            }
            Err(error) => {
                // Another worker moved this session on; its rows equal ours. Re-evaluate.
                debug!(key = %plan.key, %error, "progress changed under us; redelivering");
                self.cache_lock().remove(&plan.key);
                nak_all(plan.applied, Duration::from_millis(50)).await;
            }
        }
    }

    async fn dead_letter(&self, message: Message, reason: &str) {
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

async fn ack_all(messages: Vec<Message>) {
    for message in messages {
        if let Err(error) = message.ack().await {
            warn!(%error, "ack failed; the message will be redelivered and skipped as a duplicate");
        }
    }
}

async fn nak_all(messages: Vec<Message>, delay: Duration) {
    for message in messages {
        if let Err(error) = message.ack_with(AckKind::Nak(Some(delay))).await {
            warn!(%error, "nak failed; the message will be redelivered after ack_wait");
        }
    }
}

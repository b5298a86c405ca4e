//! The consume loop: fetch a round of messages, apply each session's batches in sequence
//! order against its progress record, insert all rows, then record progress (compare-and-set)
//! and ack. Nothing is acked before its rows are in ClickHouse.
//!
//! Ordering across workers: a session's progress lives in NATS KV and is only advanced by a
//! compare-and-set on its revision. A batch older than the progress is a duplicate (acked);
//! the next one is applied; a newer one waits (NAK with delay) for its predecessor, up to a
//! bounded number of deliveries after which the gap is recorded and the batch applied.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use async_nats::jetstream::{AckKind, Message};
use datacat_protocol::subject;
use datacat_warehouse::{EncodedRows, Writer};
use futures::{stream, StreamExt};
use tokio::sync::oneshot;
use tokio::sync::oneshot::error::TryRecvError;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::config::Config;
use crate::peers::{Peers, PlannedSession};
use crate::plan::{Held, Round, SessionPlan, KV_CONCURRENCY};
use crate::progress_cache::{Base, ProgressCache};
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
    client: async_nats::Client,
    pub(crate) resources: Resources,
    writer: Writer,
    pub(crate) stats: Arc<Stats>,
    fetch_batch: usize,
    fetch_wait: Duration,
    insert_rows: usize,
    insert_wait: Duration,
    pub(crate) gap_max_deliveries: i64,
    gap_retry: Duration,
    pub(crate) max_deliveries: i64,
    /// How long a batch waiting for its predecessor is kept before it is NAKed.
    pub(crate) hold_for: Duration,
    shutdown: CancellationToken,
    pub(crate) cache: ProgressCache,
    /// What the other workers planned and committed, as they announced it.
    pub(crate) peers: Arc<Peers>,
}

/// The fetch wait while batches are held for a predecessor.
const HELD_FETCH_WAIT: Duration = Duration::from_millis(25);

/// Delay before a failed round's messages come back.
pub(crate) const RETRY_DELAY: Duration = Duration::from_secs(1);

/// A group of rounds being inserted and committed, and the signal that its insert is done.
struct InFlight {
    task: JoinHandle<Outcomes>,
    inserted: oneshot::Receiver<()>,
    insert_done: bool,
}

impl InFlight {
    /// Whether the insert is over (ClickHouse is free for the next one), without waiting.
    fn insert_done(&mut self) -> bool {
        if !self.insert_done {
            let pending = matches!(self.inserted.try_recv(), Err(TryRecvError::Empty));
            self.insert_done = !pending;
        }
        self.insert_done
    }
}

/// Rounds planned while ClickHouse was busy with the previous insert, inserted together.
/// A busy ClickHouse so gets fewer, larger inserts: with several workers each round applies
/// only part of what it fetched (the rest waits for a peer's round), and inserts of a few
/// tens of thousands of rows cost ClickHouse about twice the CPU per row of large ones.
struct Group {
    rounds: Vec<Round>,
    rows: usize,
    /// When its first round was planned.
    started: Instant,
    /// When its messages' ack deadlines were last extended.
    kept_alive: Option<Instant>,
}

impl Default for Group {
    fn default() -> Self {
        Self {
            rounds: Vec::new(),
            rows: 0,
            started: Instant::now(),
            kept_alive: None,
        }
    }
}

impl Group {
    fn add(&mut self, round: Round) {
        self.rows += round.rows.iter().map(EncodedRows::row_count).sum::<usize>();
        if self.rounds.is_empty() {
            self.started = Instant::now();
        }
        self.kept_alive.get_or_insert_with(Instant::now);
        self.rounds.push(round);
    }

    fn is_empty(&self) -> bool {
        self.rounds.is_empty()
    }

    fn messages(&self) -> impl Iterator<Item = &Message> {
        self.rounds.iter().flat_map(Round::messages)
    }

    /// Extends the ack deadline of its messages every `KEEP_ALIVE_EVERY` while it waits for
    /// ClickHouse (an outage must not get them redelivered).
    async fn keep_alive_if_due(&mut self) {
        if self
            .kept_alive
            .is_some_and(|at| at.elapsed() < KEEP_ALIVE_EVERY)
        {
            return;
        }
        for message in self.messages() {
            let _ = message.ack_with(AckKind::Progress).await;
        }
        self.kept_alive = Some(Instant::now());
    }
}

/// A group stops growing at this many times `--insert-rows`: planning waits for ClickHouse.
/// (At 4, a group took long enough from plan to commit that with 3 workers peers' held
/// batches sometimes outwaited their 10 s hold and were NAKed, and throughput collapsed.)
const PLANNED_ROWS_LIMIT: usize = 2;

/// How often the messages of a round held back (while the previous round waits for
/// ClickHouse) get their ack deadline extended.
const KEEP_ALIVE_EVERY: Duration = Duration::from_secs(5);

/// What finished rounds did to each session's progress record: the round that last wrote it
/// (or failed to) and the new KV revision, or `None` when it was not written (plans built on
/// it are void). A plan can be built on any round still unfinished when it was planned (in
/// its own group, the one being inserted or the one committing), not only the one just
/// before it: so outcomes are carried forward. (Only the previous round's were kept once,
/// which voided, and re-applied, every chain through an older round: 4 % of the batches of
/// the wide benchmark.)
#[derive(Default)]
struct Outcomes {
    revisions: HashMap<String, (u64, Option<u64>)>,
    /// The first round of the group these outcomes are the result of.
    group_start: u64,
}

/// Sessions whose latest outcome is kept; beyond it only the last two groups' are.
const OUTCOMES_CAPACITY: usize = 100_000;

impl Stats {
    fn count_rows(&self, sets: &[EncodedRows]) {
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

    /// Whether a group is worth inserting now (ClickHouse being free): it has the rows an
    /// insert wants, or waited long enough for them, or no backlog would bring them soon.
    fn ripe(&self, group: &Group, backlog: bool) -> bool {
        !backlog || group.rows >= self.insert_rows || group.started.elapsed() >= self.insert_wait
    }

    /// Starts inserting and committing `group` once the previous group's insert is over
    /// (keeping the group's messages alive meanwhile).
    async fn start_insert(self: &Arc<Self>, group: Group, previous: Option<InFlight>) -> InFlight {
        let previous = match previous {
            Some(mut previous) => {
                if !previous.insert_done() {
                    let messages: Vec<&Message> = group.messages().collect();
                    let _ = self.keeping_alive(&mut previous.inserted, &messages).await;
                }
                Some(previous.task)
            }
            None => None,
        };
        let (inserted, inserted_rx) = oneshot::channel();
        let worker = self.clone();
        let task =
            tokio::spawn(async move { worker.finish(group.rounds, previous, inserted).await });
        InFlight {
            task,
            inserted: inserted_rx,
            insert_done: false,
        }
    }

    /// Waits for `work`, extending the ack deadline of `held` messages for as long as that
    /// takes (a ClickHouse outage must not get them redelivered).
    async fn keeping_alive<F: std::future::Future>(&self, work: F, held: &[&Message]) -> F::Output {
        let mut keep_alive = tokio::time::interval(KEEP_ALIVE_EVERY);
        keep_alive.tick().await;
        tokio::pin!(work);
        loop {
            tokio::select! {
                done = &mut work => return done,
                _ = keep_alive.tick() => {
                    for message in held {
                        let _ = message.ack_with(AckKind::Progress).await;
                    }
                }
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

    /// Inserts a group's rows (says so on `inserted`), then waits for the previous group's
    /// commits and commits each round's sessions' progress, round by round, and acks. Plans
    /// built on an earlier round's progress need its outcome (carried in the previous
    /// group's, or this group's earlier rounds').
    async fn finish(
        &self,
        rounds: Vec<Round>,
        previous: Option<JoinHandle<Outcomes>>,
        inserted: oneshot::Sender<()>,
    ) -> Outcomes {
        let started = Instant::now();
        let group_start = rounds.first().map_or(0, |round| round.id);
        let mut rows = Vec::new();
        let mut planned = Vec::with_capacity(rounds.len());
        for round in rounds {
            rows.extend(round.rows);
            planned.push((round.id, round.plans));
        }
        if !rows.is_empty() {
            if !self.insert_until_done(&rows, &planned).await {
                let _ = inserted.send(());
                if let Some(task) = previous {
                    let _ = task.await; // shutting down: let the earlier group finish first
                }
                return self.give_up(planned).await;
            }
            self.stats
                .insert_micros
                .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
            self.stats.count_rows(&rows);
            debug!(
                rows = rows.iter().map(EncodedRows::row_count).sum::<usize>(),
                rounds = planned.len(),
                took_ms = started.elapsed().as_millis() as u64,
                "inserted"
            );
        }
        // The next group's insert starts first: freeing this group's rows takes a while.
        let _ = inserted.send(());
        drop(rows);
        let mut outcomes = match previous {
            Some(task) => {
                let held: Vec<&Message> = planned
                    .iter()
                    .flat_map(|(_, plans)| plans.iter().flat_map(SessionPlan::messages))
                    .collect();
                self.keeping_alive(task, &held)
                    .await
                    .unwrap_or_else(|error| {
                        error!(%error, "a group's task failed; its successors are retried");
                        Outcomes::default()
                    })
            }
            None => Outcomes::default(),
        };
        let keep_from = outcomes.group_start;
        for (id, plans) in planned {
            let committed: Vec<_> = stream::iter(plans)
                .map(|plan| self.commit(id, plan, &outcomes))
                .buffer_unordered(KV_CONCURRENCY)
                .collect()
                .await;
            let written: Vec<_> = committed.into_iter().flatten().collect();
            let announced = written
                .iter()
                .map(|(key, revision)| (key.as_str(), *revision));
            self.peers
                .announce_outcomes(&self.client, id, announced)
                .await;
            outcomes.revisions.extend(
                written
                    .into_iter()
                    .map(|(key, revision)| (key, (id, revision))),
            );
        }
        if outcomes.revisions.len() > OUTCOMES_CAPACITY {
            // Plans of the next group are built on this group's rounds or the previous one's.
            outcomes
                .revisions
                .retain(|_, (round, _)| *round >= keep_from);
        }
        outcomes.group_start = group_start;
        if let Err(error) = self.client.flush().await {
            warn!(%error, "flushing acks failed");
        }
        debug!(
            from_round = group_start,
            took_ms = started.elapsed().as_millis() as u64,
            "group finished"
        );
        outcomes
    }

    /// Shutting down mid-outage: nothing of the group was inserted, so everything comes back
    /// to some worker later, and plans built on its rounds elsewhere are void (said now, not
    /// left to a timeout).
    async fn give_up(&self, planned: Vec<(u64, Vec<SessionPlan>)>) -> Outcomes {
        let mut outcomes = Outcomes::default();
        for (id, plans) in planned {
            let mut unwritten = Vec::with_capacity(plans.len());
            for plan in plans {
                self.cache.forget(&plan.key);
                let messages = plan.applied.into_iter().chain(plan.waiting);
                nak_all(messages.chain(plan.duplicates).collect(), RETRY_DELAY).await;
                unwritten.push(plan.key);
            }
            let announced = unwritten.iter().map(|key| (key.as_str(), None));
            self.peers
                .announce_outcomes(&self.client, id, announced)
                .await;
            outcomes
                .revisions
                .extend(unwritten.into_iter().map(|key| (key, (id, None))));
        }
        outcomes
    }

    /// Inserts the group's rows, retrying with backoff while ClickHouse is unavailable. The
    /// group's messages are kept (their ack deadline extended), not redelivered: an outage
    /// must not count against a message's deliveries and dead-letter good data.
    /// Returns false only when shutdown interrupts the retries.
    async fn insert_until_done(
        &self,
        rows: &[EncodedRows],
        planned: &[(u64, Vec<SessionPlan>)],
    ) -> bool {
        let mut backoff = Duration::from_millis(500);
        loop {
            let Err(error) = self.writer.insert_encoded(rows).await else {
                return true;
            };
            self.stats.insert_errors.fetch_add(1, Ordering::Relaxed);
            error!(%error, retry_in = ?backoff, "insert failed; keeping the round and retrying");
            // Plan by plan: a flat_map closure held across the await trips the compiler's
            // `Send` inference for the spawned round.
            for (_, plans) in planned {
                for plan in plans {
                    for message in plan.messages() {
                        let _ = message.ack_with(AckKind::Progress).await;
                    }
                }
            }
            let _ = self.client.flush().await;
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = self.shutdown.cancelled() => return false,
            }
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    }

    /// Records the session's new progress (compare-and-set on the record its plan was built
    /// on); acks what it covers. Returns the session's outcome when the plan wrote one.
    async fn commit(
        &self,
        round: u64,
        plan: SessionPlan,
        previous: &Outcomes,
    ) -> Option<(String, Option<u64>)> {
        for (message, reason) in plan.poison {
            self.dead_letter(message, &reason).await;
        }
        self.stats
            .waits
            .fetch_add(plan.waiting.len() as u64, Ordering::Relaxed);
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
        // Built on an earlier round's progress (this worker's or another's): only valid if
        // that round wrote it, at the revision this record replaces.
        let base = match plan.base {
            Base::Round(base_round) => match previous.revisions.get(&plan.key) {
                Some(&(round, revision)) if round == base_round => revision.map(Base::Revision),
                _ => None,
            },
            Base::Peer { worker, round } => {
                self.stats.peer_plans.fetch_add(1, Ordering::Relaxed);
                let wait = self.peers.outcome(worker, round, &plan.key, self.hold_for);
                wait.await.map(Base::Revision)
            }
            base @ (Base::New | Base::Revision(_)) => Some(base),
        };
        let Some(base) = base else {
            self.stats.voided.fetch_add(1, Ordering::Relaxed);
            // Duplicates were judged against that progress too: re-judge them.
            let all = plan.applied.into_iter().chain(plan.duplicates).collect();
            nak_all(all, Duration::from_millis(50)).await;
            self.cache.forget(&plan.key);
            return Some((plan.key, None));
        };
        self.stats
            .duplicates
            .fetch_add(plan.duplicates.len() as u64, Ordering::Relaxed);
        ack_all(plan.duplicates).await;
        if plan.applied.is_empty() {
            return None;
        }
        let store = &self.resources.progress;
        let saved = match base {
            Base::Revision(revision) => store
                .update(&plan.key, plan.value.into(), revision)
                .await
                .map_err(|e| e.to_string()),
            _ => store
                .create(&plan.key, plan.value.into())
                .await
                .map_err(|e| e.to_string()),
        };
        match saved {
            Ok(revision) => {
                self.cache.committed(&plan.key, round, revision);
                self.stats
                    .messages
                    .fetch_add(plan.applied.len() as u64, Ordering::Relaxed);
                ack_all(plan.applied).await;
                Some((plan.key, Some(revision)))
            }
            Err(error) => {
                // Another worker moved this session on; its rows equal ours. Re-evaluate.
                debug!(key = %plan.key, %error, "progress changed under us; redelivering");
                self.cache.forget(&plan.key);
                nak_all(plan.applied, Duration::from_millis(50)).await;
                Some((plan.key, None))
            }
        }
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

pub(crate) async fn nak_all(messages: Vec<Message>, delay: Duration) {
    for message in messages {
        if let Err(error) = message.ack_with(AckKind::Nak(Some(delay))).await {
            warn!(%error, "nak failed; the message will be redelivered after ack_wait");
        }
    }
}

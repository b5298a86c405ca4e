//! The consume loop: fetch messages (forwarding those of sessions another worker owns to it,
//! `affinity.rs`), plan a round of this worker's (`plan.rs`: apply each session's batches in
//! sequence order against its progress record), and hand the planned rounds to ClickHouse in
//! groups (`group.rs`: insert, then record progress by compare-and-set and ack). Nothing is
//! acked before its rows are in ClickHouse.
//!
//! Ordering across workers: a session's progress lives in NATS KV and is only advanced by a
//! compare-and-set on its revision. A batch older than the progress is a duplicate (acked);
//! the next one is applied; a newer one waits (held, then NAKed with delay) for its
//! predecessor, up to a bounded number of deliveries after which the gap is recorded and the
//! batch applied.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use async_nats::jetstream::Message;
use datacat_warehouse::Writer;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::ack::{nak_all, DeadLetters};
use crate::affinity::{self, Members};
use crate::config::Config;
use crate::group::{Committer, Group, InFlight, KeepAlive, PLANNED_ROWS_LIMIT};
use crate::inbox::{self, InboxSender};
use crate::insert_reason::{Backlog, InsertReason};
use crate::message_budget::MessageBudget;
use crate::plan::{Held, Planner};
use crate::progress_cache::ProgressCache;
use crate::setup::Resources;
use crate::stats::Stats;

pub struct Worker {
    client: async_nats::Client,
    resources: Resources,
    stats: Arc<Stats>,
    planner: Arc<Planner>,
    committer: Arc<Committer>,
    fetch_batch: usize,
    fetch_wait: Duration,
    insert_rows: usize,
    /// How often the ack deadlines of messages kept waiting are extended.
    keep_alive_every: Duration,
    shutdown: CancellationToken,
    /// The live workers, which own the sessions between them.
    members: Arc<Members>,
    /// What the messages held may take in memory (`--message-budget-mib`).
    budget: Arc<MessageBudget>,
}

/// How long a round waits for messages while batches are held for a predecessor or a
/// planned group waits for ClickHouse.
const HELD_FETCH_WAIT: Duration = Duration::from_millis(25);

/// Hand-overs (a fetch's messages, or what other workers forwarded) waiting to be planned.
const INBOX_CHUNKS: usize = 2;

/// How long a round keeps taking in messages after the first (up to `--fetch-batch`).
const GATHER: Duration = Duration::from_millis(10);

/// What a fetch may bring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FetchLimit {
    /// Up to `--fetch-batch` messages within the room the message budget has left.
    Budget,
    /// One message, however large.
    OneMessage,
}

impl Worker {
    /// A worker that stops with `shutdown`.
    pub fn new(
        client: async_nats::Client,
        resources: Resources,
        writer: Writer,
        stats: Arc<Stats>,
        config: &Config,
        shutdown: CancellationToken,
    ) -> Self {
        let ack_wait = Duration::from_secs(config.ack_wait_secs.max(1));
        let keep_alive_every = crate::group::keep_alive_every(ack_wait);
        // The sweeper marks sessions silent for `lost_after` lost: half of that, a
        // committed progress cannot be stale.
        let cache = Arc::new(ProgressCache::new(
            Duration::from_secs(config.lost_after_secs.max(2)) / 2,
        ));
        // NATS's own default, should the server not have said (1 MiB).
        let max_payload = match client.server_info().max_payload {
            0 => 1 << 20,
            max_payload => max_payload,
        };
        let dead_letters = DeadLetters {
            jetstream: resources.jetstream.clone(),
            stats: stats.clone(),
            max_payload,
        };
        let planner = Planner {
            stats: stats.clone(),
            cache: cache.clone(),
            progress: resources.progress.clone(),
            dead_letters: dead_letters.clone(),
            gap_max_deliveries: config.gap_max_deliveries.max(1),
            max_deliveries: config.max_deliveries.max(config.gap_max_deliveries + 1),
            hold_for: crate::plan::hold_for(ack_wait),
        };
        let committer = Committer {
            client: client.clone(),
            writer,
            stats: stats.clone(),
            cache,
            progress: resources.progress.clone(),
            dead_letters,
            insert_rows: config.insert_rows.max(1),
            insert_wait: Duration::from_millis(config.insert_wait_ms),
            gap_retry: Duration::from_millis(config.gap_retry_ms.max(10)),
            keep_alive_every,
            shutdown: shutdown.clone(),
        };
        Self {
            resources,
            stats,
            planner: Arc::new(planner),
            committer: Arc::new(committer),
            fetch_batch: config.fetch_batch.max(1),
            fetch_wait: Duration::from_millis(config.fetch_wait_ms.max(10)),
            insert_rows: config.insert_rows.max(1),
            keep_alive_every,
            members: Arc::new(Members::default()),
            budget: MessageBudget::new(
                config.message_budget_mib.saturating_mul(1 << 20),
                max_payload,
            ),
            client,
            shutdown,
        }
    }

    /// Work is pipelined three deep: while one group of rounds commits its progress (NATS),
    /// the next is inserted (ClickHouse), and rounds are planned (ingest) into the group
    /// after it, which is inserted as soon as ClickHouse is free (or it reaches
    /// `--insert-rows`). One insert at a time, and commits in round order: a plan built on an
    /// earlier round's progress knows whether that progress was written before it writes
    /// its own. A round takes what arrived in the inbox: this worker's sessions' messages from
    /// its own fetches, and those other workers forwarded to it (`affinity.rs`).
    pub async fn run(self) -> Result<()> {
        let shutdown = self.shutdown.clone();
        let worker = Arc::new(self);
        // Subscribed before the first heartbeat: a peer forwards as soon as it hears it.
        let forwarded = worker
            .client
            .subscribe(affinity::inbox_subject(worker.members.id))
            .await?;
        {
            // Stops with `shutdown`, saying goodbye to the others.
            let (members, client) = (worker.members.clone(), worker.client.clone());
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                if let Err(error) = members.run(client, shutdown).await {
                    warn!(%error, "no heartbeats: this worker applies every session it fetches");
                }
            });
        }
        worker.members.settle().await;
        let (sender, mut inbox) =
            inbox::channel(INBOX_CHUNKS, worker.client.clone(), worker.keep_alive_every);
        let receiver = {
            let (worker, sender) = (worker.clone(), sender.clone());
            let jetstream = worker.resources.jetstream.clone();
            tokio::spawn(async move {
                let received = &worker.stats.forwarded_in;
                affinity::receive_forwarded(
                    forwarded,
                    jetstream,
                    sender,
                    received,
                    &worker.budget,
                    worker.shutdown.clone(),
                )
                .await
            })
        };
        let fetcher = tokio::spawn(worker.clone().fetch_loop(sender));
        info!(worker = %format!("{:016x}", worker.members.id), "consuming");
        let mut in_flight: Option<InFlight> = None;
        let mut group = Group::default();
        let mut next_round = 0;
        // Batches waiting for a predecessor, looked at again with every round.
        let mut held: Vec<Held> = Vec::new();
        let mut held_kept_alive = KeepAlive::new();
        let (mut queued, mut last_arrival) = (false, std::time::Instant::now());
        while !shutdown.is_cancelled() {
            // Batches held for a predecessor are looked at again soon, and a planned group
            // goes to ClickHouse as soon as it is free: neither waits for a full inbox.
            let wait = if held.is_empty() && group.is_empty() {
                worker.fetch_wait
            } else {
                HELD_FETCH_WAIT
            };
            let arrived = tokio::select! {
                arrived = inbox.recv() => arrived,
                _ = tokio::time::sleep(wait) => Some(Vec::new()),
                _ = shutdown.cancelled() => break,
            };
            let Some(mut messages) = arrived else { break };
            // Forwarded messages arrive a few at a time: a round takes what comes within a
            // moment, not each trickle on its own.
            let gathered = tokio::time::Instant::now() + GATHER;
            while !messages.is_empty() && messages.len() < worker.fetch_batch {
                match tokio::time::timeout_at(gathered, inbox.recv()).await {
                    Ok(Some(more)) => messages.extend(more),
                    Ok(None) | Err(_) => break,
                }
            }
            // Another full fetch is queued behind the last messages that came (a round with
            // none, only held batches, says nothing about it): worth waiting for.
            if let Some(info) = messages.last().and_then(|m| m.info().ok()) {
                queued = info.pending >= worker.fetch_batch as u64;
                last_arrival = std::time::Instant::now();
            }
            let backlog = if !queued {
                Backlog::CaughtUp
            } else if last_arrival.elapsed() >= worker.fetch_wait {
                Backlog::Stalled
            } else {
                Backlog::Queued
            };
            worker
                .stats
                .workers
                .store(worker.members.live().len() as u64, Ordering::Relaxed);
            worker
                .stats
                .message_bytes
                .store(worker.budget.held() as u64, Ordering::Relaxed);
            if !messages.is_empty() || !held.is_empty() {
                // A round, once taken in, is finished even when shutdown arrives meanwhile.
                next_round += 1;
                let mut round = worker
                    .planner
                    .plan_round(next_round, messages, std::mem::take(&mut held))
                    .await;
                held = std::mem::take(&mut round.held);
                group.add(round);
            }
            // Held past the ack wait, if need be (see `plan::hold_for`).
            let held_messages = held.iter().map(|held| &held.message);
            held_kept_alive
                .extend_if_due(worker.keep_alive_every, held_messages)
                .await;
            if group.is_empty() {
                continue;
            }
            let clickhouse_free = in_flight.as_mut().is_none_or(InFlight::insert_done);
            // Full: planning waits for ClickHouse (start_insert waits for the previous insert).
            let reason = if group.rows >= worker.insert_rows * PLANNED_ROWS_LIMIT {
                Some(InsertReason::Full)
            } else if clickhouse_free {
                worker.committer.ripe(&group, backlog)
            } else {
                None
            };
            let Some(reason) = reason else {
                group.keep_alive_if_due(worker.keep_alive_every).await;
                continue;
            };
            worker.stats.count_group(reason);
            let group = std::mem::take(&mut group);
            in_flight = Some(
                worker
                    .committer
                    .start_insert(group, &held, in_flight.take())
                    .await,
            );
        }
        // Rows of rounds taken in before shutdown, inserted (and their batches acknowledged)
        // before this worker stops.
        let rows_at_shutdown = group.rows;
        if !group.is_empty() {
            worker.stats.count_group(InsertReason::Shutdown);
            in_flight = Some(
                worker
                    .committer
                    .start_insert(group, &held, in_flight.take())
                    .await,
            );
        }
        // What arrived but was not planned goes back to the stream at once: another worker
        // (or this one, restarted) takes it. The fetcher and the inbox stop on `shutdown`.
        inbox.close();
        let mut unplanned: Vec<Message> = held.into_iter().map(|held| held.message).collect();
        while let Some(messages) = inbox.recv().await {
            unplanned.extend(messages);
        }
        let handed_back = unplanned.len();
        nak_all(unplanned, Duration::ZERO).await;
        let _ = tokio::join!(fetcher, receiver);
        if let Some(previous) = in_flight {
            let _ = previous.task.await;
        }
        worker.client.flush().await?;
        info!(rows_at_shutdown, handed_back, "stopped");
        Ok(())
    }

    /// Fetches from the shared consumer until shutdown: messages of sessions another worker
    /// owns are forwarded to it, this worker's go to its inbox (whose bound stops the
    /// fetching while planning is behind, as does the message budget).
    async fn fetch_loop(self: Arc<Self>, inbox: InboxSender) {
        let mut limit = FetchLimit::Budget;
        while !self.shutdown.is_cancelled() {
            self.budget.wait_for_room(&self.shutdown).await;
            if self.shutdown.is_cancelled() {
                break;
            }
            let (messages, refused) = match self.fetch(self.fetch_wait, limit).await {
                Ok(fetched) => fetched,
                Err(error) => {
                    warn!(%error, "fetch failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            // NATS refuses a fetch whose next message exceeds its byte limit (possible only
            // if servers disagree on the largest payload): that message is fetched alone,
            // without a limit, or it would stall the consumer. Refused again: a pause.
            let refused_outright = refused && messages.is_empty();
            if refused_outright && limit == FetchLimit::OneMessage {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            limit = if refused_outright {
                FetchLimit::OneMessage
            } else {
                FetchLimit::Budget
            };
            let forwarded = &self.stats.forwarded;
            let mine =
                affinity::forward_foreign(&self.members, &self.client, messages, forwarded).await;
            if mine.is_empty() {
                continue;
            }
            if let Err(mine) = inbox.send(mine).await {
                nak_all(mine, Duration::ZERO).await;
                break;
            }
        }
    }

    /// Messages fetched (charged to the budget), and whether NATS ended the fetch with an
    /// error status.
    async fn fetch(&self, wait: Duration, limit: FetchLimit) -> Result<(Vec<Message>, bool)> {
        let request = self.resources.consumer.batch().expires(wait);
        let request = match limit {
            FetchLimit::Budget => request
                .max_messages(self.fetch_batch)
                .max_bytes(self.budget.fetch_bytes()),
            FetchLimit::OneMessage => request.max_messages(1),
        };
        let mut batch = request.messages().await?;
        let mut messages = Vec::new();
        while let Some(message) = batch.next().await {
            match message {
                Ok(mut message) => {
                    self.budget.charge(&mut message.message);
                    messages.push(message);
                }
                Err(error) => {
                    debug!(%error, "fetch ended early");
                    return Ok((messages, true));
                }
            }
        }
        Ok((messages, false))
    }
}

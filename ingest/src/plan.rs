//! Planning a round: decode the fetched messages, group them by session, and decide against
//! each session's progress which batches apply now, which are duplicates and which must wait
//! for a predecessor. Applying produces the round's rows; nothing is written here.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use async_nats::jetstream::{self, Message};
use datacat_protocol::{decode_batch, decode_batch_head, subject, BatchHead};
use datacat_warehouse::RowSet;
use futures::{stream, StreamExt};
use tracing::{debug, error, warn};

use crate::apply::{apply, Progress};
use crate::progress_cache::Base;
use crate::worker::{nak_all, Worker, RETRY_DELAY};

/// Sessions whose progress is read at once.
pub const KV_CONCURRENCY: usize = 256;

/// What one round decided for one session.
pub struct SessionPlan {
    pub key: String,
    /// The progress record this plan replaces.
    pub base: Base,
    /// The new progress record, serialised (empty when nothing applied).
    pub value: Vec<u8>,
    pub applied: Vec<Message>,
    pub duplicates: Vec<Message>,
    pub waiting: Vec<Message>,
    /// Batches whose records do not decode (found when they were due): dead-lettered.
    pub poison: Vec<(Message, String)>,
}

/// A planned round: its rows and, per session, what to commit once they are inserted.
pub struct Round {
    pub id: u64,
    pub rows: RowSet,
    pub plans: Vec<SessionPlan>,
}

impl SessionPlan {
    /// The messages this plan holds until its commit (poison is dead-lettered on its own).
    pub fn messages(&self) -> impl Iterator<Item = &Message> {
        self.applied
            .iter()
            .chain(&self.waiting)
            .chain(&self.duplicates)
    }
}

impl Round {
    pub fn messages(&self) -> impl Iterator<Item = &Message> {
        self.plans.iter().flat_map(SessionPlan::messages)
    }
}

impl Worker {
    /// Plans a round. Decoding and applying are CPU work, so sessions are split into one
    /// shard per core and planned in parallel (a session stays in one shard: shards are
    /// chosen by subject, and a batch whose session id disagrees with its subject is refused).
    pub(crate) async fn plan_round(self: &Arc<Self>, id: u64, messages: Vec<Message>) -> Round {
        let shards = std::thread::available_parallelism().map_or(1, |n| n.get().clamp(1, 8));
        let mut sharded: Vec<Vec<Message>> = (0..shards).map(|_| Vec::new()).collect();
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
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            message.subject.as_str().hash(&mut hasher);
            sharded[hasher.finish() as usize % shards].push(message);
        }
        let started = Instant::now();
        let tasks: Vec<_> = sharded
            .into_iter()
            .filter(|shard| !shard.is_empty())
            .map(|shard| {
                let worker = self.clone();
                tokio::spawn(async move { worker.plan_shard(id, shard, shards).await })
            })
            .collect();
        let mut planned = Vec::new();
        for task in tasks {
            match task.await {
                Ok(shard) => planned.extend(shard),
                // The shard's messages are not acked: they come back after the ack wait.
                Err(error) => error!(%error, "planning a shard failed"),
            }
        }
        debug!(
            sessions = planned.len(),
            took_ms = started.elapsed().as_millis() as u64,
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
        Round { id, rows, plans }
    }

    /// Reads which batch each of one shard's messages holds and plans its sessions. Records
    /// are decoded only for batches that apply now: with several workers, many messages
    /// arrive before their predecessor is committed and only wait.
    async fn plan_shard(
        &self,
        round: u64,
        messages: Vec<Message>,
        shards: usize,
    ) -> Vec<(String, Result<SessionPlan, (String, Vec<Message>)>, RowSet)> {
        let mut by_session: BTreeMap<String, Vec<(BatchHead, Message)>> = BTreeMap::new();
        for message in messages {
            match decode_batch_head(&message.payload) {
                Ok(head)
                    if subject::session_subject(&head.session_id) == message.subject.as_str() =>
                {
                    by_session
                        .entry(head.session_id.clone())
                        .or_default()
                        .push((head, message))
                }
                Ok(head) => {
                    let reason = format!(
                        "batch of session {:?} published on subject {:?}",
                        head.session_id, message.subject
                    );
                    self.dead_letter(message, &reason).await
                }
                Err(error) => self.dead_letter(message, &error.to_string()).await,
            }
        }
        // Sessions are independent: their progress records are read concurrently (one KV
        // round trip per session, not one after another).
        stream::iter(by_session)
            .map(|(session_id, batches)| async move {
                let mut rows = RowSet::default();
                let plan = self
                    .plan_session(round, &session_id, batches, &mut rows)
                    .await;
                (session_id, plan, rows)
            })
            .buffer_unordered((KV_CONCURRENCY / shards).max(16))
            .collect()
            .await
    }

    /// Decides, for one session's batches of this round, which apply, which are duplicates
    /// and which must wait; appends the applied batches' rows.
    async fn plan_session(
        &self,
        round: u64,
        session_id: &str,
        mut batches: Vec<(BatchHead, Message)>,
        rows: &mut RowSet,
    ) -> Result<SessionPlan, (String, Vec<Message>)> {
        let key = subject::progress_key(session_id);
        batches.sort_by_key(|(head, _)| head.seq);
        let first_seq = batches.first().map_or(0, |(head, _)| head.seq);
        let (progress, base) = match self.cache.take(&key, first_seq) {
            Some(cached) => cached,
            None => self.read_progress(&key).await.map_err(|error| {
                let messages = batches.iter().map(|(_, m)| m.clone()).collect();
                (error, messages)
            })?,
        };
        self.plan_batches(round, session_id, key, progress, base, batches, rows)
    }

    /// A session's progress and the base a new record replaces.
    async fn read_progress(&self, key: &str) -> Result<(Progress, Base), String> {
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
                (progress, Base::Revision(entry.revision))
            }
            Some(entry) => (Progress::default(), Base::Revision(entry.revision)),
            None => (Progress::default(), Base::New),
        })
    }

    /// Decides which batches apply, which are duplicates and which must wait, given the
    /// session's progress; appends the applied batches' rows and keeps the new progress in
    /// the cache as the next round's base.
    #[allow(clippy::too_many_arguments)]
    fn plan_batches(
        &self,
        round: u64,
        session_id: &str,
        key: String,
        mut progress: Progress,
        base: Base,
        batches: Vec<(BatchHead, Message)>,
        rows: &mut RowSet,
    ) -> Result<SessionPlan, (String, Vec<Message>)> {
        let mut plan = SessionPlan {
            key,
            base,
            value: Vec::new(),
            applied: Vec::new(),
            duplicates: Vec::new(),
            waiting: Vec::new(),
            poison: Vec::new(),
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
                    // Checked once, at its first delivery, so a bad batch is dead-lettered at
                    // once rather than after the gap wait; redeliveries are not decoded again.
                    if delivered <= 1 {
                        if let Err(error) = decode_batch(&message.payload) {
                            plan.poison.push((message, error.to_string()));
                            continue;
                        }
                    }
                    plan.waiting.push(message);
                    continue;
                }
                self.stats
                    .gaps
                    .fetch_add(batch.seq - progress.next_seq, Ordering::Relaxed);
                warn!(%session_id, expected = progress.next_seq, got = batch.seq, "predecessor never arrived; recording the gap");
            }
            // Due now: decode its records. One that does not decode is dead-lettered; its
            // successors wait for it like for any missing batch.
            match decode_batch(&message.payload) {
                Ok(full) => {
                    apply(&mut progress, &full, rows);
                    plan.applied.push(message);
                }
                Err(error) => plan.poison.push((message, error.to_string())),
            }
        }
        if plan.applied.is_empty() {
            // Unchanged; a base still waiting for its round's commit is not kept (the next
            // round reads KV after that commit).
            if let Base::Revision(_) = base {
                self.cache.put(plan.key.clone(), progress, base);
            }
            return Ok(plan);
        }
        progress.seen_ms = datacat_protocol::time::now_ms();
        rows.sessions.push(progress.session_row(session_id));
        plan.value = serde_json::to_vec(&progress).map_err(|error| {
            let messages = plan
                .applied
                .iter()
                .chain(&plan.waiting)
                .chain(&plan.duplicates);
            (
                format!("progress does not serialise: {error}"),
                messages.cloned().collect(),
            )
        })?;
        self.cache
            .put(plan.key.clone(), progress, Base::Round(round));
        Ok(plan)
    }
}

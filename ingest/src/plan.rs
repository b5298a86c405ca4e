//! Planning a round: decode the fetched messages, group them by session, and decide against
//! each session's progress which batches apply now, which are duplicates and which must wait
//! for a predecessor. Applying produces the round's rows; nothing is written here.

use std::collections::{BTreeMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, Message};
use datacat_protocol::{decode_batch, decode_batch_head, subject, Batch, BatchHead};
use datacat_warehouse::{EncodedRows, RowSink};
use futures::{stream, StreamExt};
use tracing::{debug, error, warn};

use crate::ack::{nak_all, DeadLetters, RETRY_DELAY};
use crate::apply::{apply, Progress};
use crate::progress_cache::{Base, ProgressCache};
use crate::stats::Stats;

/// Sessions whose progress is read at once.
pub const KV_CONCURRENCY: usize = 256;

/// How long a batch that arrived before its predecessor is kept by the worker that owns its
/// session (its ack deadline extended meanwhile) before it is NAKed into the slower,
/// delivery-counted wait: longer than the ack wait, so a predecessor in the hands of a
/// killed worker comes back first. A predecessor is usually on its way (fetched by another
/// worker, forwarded here), a round or two away; NAKing its successors instead cost
/// redeliveries that fed on themselves.
pub fn hold_for(ack_wait: Duration) -> Duration {
    ack_wait + Duration::from_secs(10)
}

/// How often a held batch whose session got no new batch is looked at again anyway (its
/// predecessor may have been applied by another worker while ownership moved).
const RELOOK_EVERY: Duration = Duration::from_secs(1);

/// A batch this worker keeps for its predecessor (first delivery only, for `hold_for`).
pub struct Held {
    pub head: BatchHead,
    pub message: Message,
    pub since: Instant,
    /// When it was last planned.
    looked: Instant,
    /// Its records, decoded when it was first seen (to dead-letter a bad batch at once) and
    /// kept, so applying it does not decode them again: with several workers, most batches
    /// are held first.
    pub batch: Option<Box<Batch>>,
}

/// A batch being planned: fetched this round, or held from an earlier one.
struct Pending {
    head: BatchHead,
    message: Message,
    held_since: Option<Instant>,
    batch: Option<Box<Batch>>,
}

/// What one round decided for one session.
pub struct SessionPlan {
    pub key: String,
    /// The progress record this plan replaces.
    pub base: Base,
    /// The new progress record, serialised (empty when nothing applied).
    pub value: Vec<u8>,
    /// The batch sequence the new progress record expects next.
    pub next_seq: u64,
    pub applied: Vec<Message>,
    pub duplicates: Vec<Message>,
    pub waiting: Vec<Message>,
    /// Batches waiting for their predecessor that this worker keeps for the next round.
    pub held: Vec<Held>,
    /// Batches whose records do not decode (found when they were due): dead-lettered.
    pub poison: Vec<(Message, String)>,
}

/// One session's rows of a round, in sequence order.
pub struct SessionRows {
    pub session_id: String,
    pub rows: EncodedRows,
}

/// A planned round: its rows and, per session, what to commit once they are inserted.
pub struct Round {
    pub id: u64,
    /// Each session's rows (inserted together, never concatenated).
    pub rows: Vec<SessionRows>,
    pub plans: Vec<SessionPlan>,
    /// Batches kept for the next round (taken out of the plans).
    pub held: Vec<Held>,
}

impl Pending {
    /// Kept for a later round (it was held before: `held_since` is set).
    fn into_held(self) -> Held {
        Held {
            head: self.head,
            message: self.message,
            since: self.held_since.unwrap_or_else(Instant::now),
            looked: Instant::now(),
            batch: self.batch,
        }
    }
}

impl SessionPlan {
    fn new(key: String, base: Base) -> Self {
        Self {
            key,
            base,
            value: Vec::new(),
            next_seq: 0,
            applied: Vec::new(),
            duplicates: Vec::new(),
            waiting: Vec::new(),
            held: Vec::new(),
            poison: Vec::new(),
        }
    }

    /// The messages this plan holds until its commit (poison is dead-lettered on its own).
    pub fn messages(&self) -> impl Iterator<Item = &Message> {
        self.applied
            .iter()
            .chain(&self.waiting)
            .chain(&self.duplicates)
    }
}

impl Round {
    /// Every message the round holds, the ones kept for the next round included.
    pub fn messages(&self) -> impl Iterator<Item = &Message> {
        let held = self.held.iter().map(|held| &held.message);
        self.plans
            .iter()
            .flat_map(SessionPlan::messages)
            .chain(held)
    }
}

/// Plans rounds: which of the batches that arrived apply now (each session's in sequence
/// order, against its progress record), which are duplicates, and which wait for a
/// predecessor; and the rows of those that apply.
pub(crate) struct Planner {
    pub(crate) stats: Arc<Stats>,
    pub(crate) cache: Arc<ProgressCache>,
    pub(crate) progress: jetstream::kv::Store,
    pub(crate) dead_letters: DeadLetters,
    pub(crate) gap_max_deliveries: i64,
    pub(crate) max_deliveries: i64,
    /// How long a batch waiting for its predecessor is kept before it is NAKed.
    pub(crate) hold_for: Duration,
}

impl Planner {
    /// Plans a round. Decoding and applying are CPU work, so sessions are split into one
    /// shard per core and planned in parallel (a session stays in one shard: shards are
    /// chosen by subject, and a batch whose session id disagrees with its subject is refused).
    /// A held batch is planned again when its session has a new batch in this round (its
    /// predecessor, perhaps), or now and then: not every round, which cost a deep backlog's
    /// rounds more than their own batches.
    pub(crate) async fn plan_round(
        self: &Arc<Self>,
        id: u64,
        messages: Vec<Message>,
        held: Vec<Held>,
    ) -> Round {
        let due: Vec<bool> = {
            let mut due: HashSet<&str> = messages.iter().map(|m| m.subject.as_str()).collect();
            let stale = held.iter().filter(|h| h.looked.elapsed() >= RELOOK_EVERY);
            due.extend(stale.map(|h| h.message.subject.as_str()));
            held.iter()
                .map(|h| due.contains(h.message.subject.as_str()))
                .collect()
        };
        let (held, mut unlooked): (Vec<Held>, Vec<Held>) = {
            let (due, unlooked): (Vec<_>, Vec<_>) =
                held.into_iter().zip(due).partition(|(_, due)| *due);
            let batches = |pairs: Vec<(Held, bool)>| pairs.into_iter().map(|(h, _)| h).collect();
            (batches(due), batches(unlooked))
        };
        let shards = std::thread::available_parallelism().map_or(1, |n| n.get().clamp(1, 8));
        let shard_of = |subject: &str| {
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            subject.hash(&mut hasher);
            hasher.finish() as usize % shards
        };
        let mut sharded: Vec<(Vec<Message>, Vec<Held>)> =
            (0..shards).map(|_| (Vec::new(), Vec::new())).collect();
        for batch in held {
            sharded[shard_of(batch.message.subject.as_str())]
                .1
                .push(batch);
        }
        for message in messages {
            if let Ok(info) = message.info() {
                self.stats.lag.store(info.pending, Ordering::Relaxed);
                if info.delivered > self.max_deliveries {
                    let reason =
                        format!("delivered {} times without being applied", info.delivered);
                    self.dead_letters.send(message, &reason).await;
                    continue;
                }
            }
            sharded[shard_of(message.subject.as_str())].0.push(message);
        }
        let started = Instant::now();
        let tasks: Vec<_> = sharded
            .into_iter()
            .filter(|(messages, held)| !messages.is_empty() || !held.is_empty())
            .map(|(messages, held)| {
                let worker = self.clone();
                tokio::spawn(async move { worker.plan_shard(id, messages, held, shards).await })
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
            round = id,
            sessions = planned.len(),
            took_ms = started.elapsed().as_millis() as u64,
            applied = planned
                .iter()
                .map(|(_, p, _)| p.as_ref().map_or(0, |p| p.applied.len()))
                .sum::<usize>(),
            held = planned
                .iter()
                .map(|(_, p, _)| p.as_ref().map_or(0, |p| p.held.len()))
                .sum::<usize>(),
            waiting = planned
                .iter()
                .map(|(_, p, _)| p.as_ref().map_or(0, |p| p.waiting.len()))
                .sum::<usize>(),
            "planned"
        );
        let mut rows = Vec::with_capacity(planned.len());
        let mut plans = Vec::with_capacity(planned.len());
        let mut held = Vec::new();
        held.append(&mut unlooked);
        for (session_id, plan, session_rows) in planned {
            match plan {
                Ok(mut plan) => {
                    if !session_rows.is_empty() {
                        rows.push(SessionRows {
                            session_id,
                            rows: session_rows,
                        });
                    }
                    held.append(&mut plan.held);
                    plans.push(plan);
                }
                Err((error, messages)) => {
                    warn!(%session_id, %error, "reading progress failed; retrying later");
                    nak_all(messages, RETRY_DELAY).await;
                }
            }
        }
        self.stats.held.store(held.len() as u64, Ordering::Relaxed);
        Round {
            id,
            rows,
            plans,
            held,
        }
    }

    /// Reads which batch each of one shard's messages holds and plans its sessions. Records
    /// are decoded only for batches that apply now: with several workers, many messages
    /// arrive before their predecessor is committed and only wait.
    async fn plan_shard(
        &self,
        round: u64,
        messages: Vec<Message>,
        held: Vec<Held>,
        shards: usize,
    ) -> Vec<(
        String,
        Result<SessionPlan, (String, Vec<Message>)>,
        EncodedRows,
    )> {
        let mut by_session: BTreeMap<String, Vec<Pending>> = BTreeMap::new();
        let mut add = |pending: Pending| {
            let session_id = pending.head.session_id.clone();
            by_session.entry(session_id).or_default().push(pending)
        };
        for held in held {
            add(Pending {
                held_since: Some(held.since),
                head: held.head,
                message: held.message,
                batch: held.batch,
            });
        }
        for message in messages {
            match decode_batch_head(&message.payload) {
                Ok(head)
                    if subject::session_subject(&head.session_id) == message.subject.as_str() =>
                {
                    add(Pending {
                        head,
                        message,
                        held_since: None,
                        batch: None,
                    })
                }
                Ok(head) => {
                    let reason = format!(
                        "batch of session {:?} published on subject {:?}",
                        head.session_id, message.subject
                    );
                    self.dead_letters.send(message, &reason).await
                }
                Err(error) => self.dead_letters.send(message, &error.to_string()).await,
            }
        }
        // Sessions are independent: their progress records are read concurrently (one KV
        // round trip per session, not one after another).
        stream::iter(by_session)
            .map(|(session_id, batches)| async move {
                let mut rows = EncodedRows::default();
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
        mut batches: Vec<Pending>,
        rows: &mut EncodedRows,
    ) -> Result<SessionPlan, (String, Vec<Message>)> {
        let key = subject::progress_key(session_id);
        batches.sort_by_key(|batch| batch.head.seq);
        let first_seq = batches.first().map_or(0, |batch| batch.head.seq);
        let known = self.cache.take(&key).filter(|(progress, base)| {
            // These batches continue it, or are old: it knows.
            progress.next_seq >= first_seq
                // Written by a round of ours in flight, whose commit settles it either way.
                || matches!(base, Base::Round(_))
                // Behind them: their predecessor is usually on its way (forwarded by another
                // worker), but after a while KV may know better.
                || self.cache.briefly_behind(&key, progress.next_seq)
        });
        let still_held = |batch: &Pending| {
            batch
                .held_since
                .is_some_and(|since| since.elapsed() < self.hold_for)
        };
        let (progress, base) = match known {
            Some(known) => known,
            // KV was behind a moment ago: keep holding, unread.
            None if self.cache.still_behind(&key, first_seq) && batches.iter().all(still_held) => {
                // Nothing applies, so the plan writes no record and its base is never used.
                let mut plan = SessionPlan::new(key, Base::New);
                plan.held = batches.into_iter().map(Pending::into_held).collect();
                return Ok(plan);
            }
            None => {
                let read = self.read_progress(&key).await.map_err(|error| {
                    let messages = batches.iter().map(|b| b.message.clone()).collect();
                    (error, messages)
                })?;
                if read.0.next_seq < first_seq {
                    self.cache.behind(&key, read.0.next_seq);
                }
                read
            }
        };
        self.plan_batches(round, session_id, key, progress, base, batches, rows)
    }

    /// A session's progress and the base a new record replaces.
    async fn read_progress(&self, key: &str) -> Result<(Progress, Base), String> {
        self.stats.progress_reads.fetch_add(1, Ordering::Relaxed);
        let entry = self
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
        batches: Vec<Pending>,
        rows: &mut EncodedRows,
    ) -> Result<SessionPlan, (String, Vec<Message>)> {
        let mut plan = SessionPlan::new(key, base);
        for Pending {
            head: batch,
            message,
            held_since,
            batch: mut decoded,
        } in batches
        {
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
                let behind_waiting = !plan.waiting.is_empty() || !plan.held.is_empty();
                if behind_waiting || delivered < self.gap_max_deliveries {
                    // Decoded once, when first seen, so a bad batch is dead-lettered at once
                    // rather than after the gap wait; redeliveries are not decoded again.
                    if delivered <= 1 && held_since.is_none() {
                        match decode_batch(&message.payload) {
                            Ok(full) => decoded = Some(Box::new(full)),
                            Err(error) => {
                                plan.poison.push((message, error.to_string()));
                                continue;
                            }
                        }
                    }
                    // Kept here on its first delivery only, so the delivery-counted bound on
                    // the gap wait grows by `hold_for` at most.
                    let since = held_since.unwrap_or_else(Instant::now);
                    if delivered <= 1 && since.elapsed() < self.hold_for {
                        plan.held.push(Held {
                            head: batch,
                            message,
                            since,
                            looked: Instant::now(),
                            batch: decoded,
                        });
                    } else {
                        plan.waiting.push(message);
                    }
                    continue;
                }
                self.stats
                    .gaps
                    .fetch_add(batch.seq - progress.next_seq, Ordering::Relaxed);
                warn!(%session_id, expected = progress.next_seq, got = batch.seq, "predecessor never arrived; recording the gap");
            }
            // Due now: its records (decoded already if it was held). One that does not decode
            // is dead-lettered; its successors wait for it like for any missing batch.
            let full = match decoded {
                Some(full) => Ok(*full),
                None => decode_batch(&message.payload),
            };
            match full {
                Ok(full) => {
                    // When the batch reached the stream: the same on every delivery, so a
                    // batch applied again gives the same rows.
                    let received_ms = message.info().map_or_else(
                        |_| datacat_protocol::time::now_ms(),
                        |info| (info.published.unix_timestamp_nanos() / 1_000_000) as u64,
                    );
                    let retimed = apply(&mut progress, &full, received_ms, rows);
                    self.stats.retimed.fetch_add(retimed, Ordering::Relaxed);
                    plan.applied.push(message);
                }
                Err(error) => plan.poison.push((message, error.to_string())),
            }
        }
        if plan.applied.is_empty() {
            // Unchanged, and still the base for the batches held for it (a round's commit
            // settles an entry waiting for it, or forgets it).
            if base != Base::New {
                self.cache.put(plan.key.clone(), progress, base);
            }
            return Ok(plan);
        }
        progress.seen_ms = datacat_protocol::time::now_ms();
        plan.next_seq = progress.next_seq;
        rows.session(progress.session_row(session_id));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_batch_outwaits_the_ack_wait() {
        assert_eq!(hold_for(Duration::from_secs(30)), Duration::from_secs(40));
        assert!(hold_for(Duration::from_secs(1)) > Duration::from_secs(1));
    }
}

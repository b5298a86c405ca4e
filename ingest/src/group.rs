//! A group of planned rounds: inserted together once ClickHouse is free, then committed
//! round by round (each session's progress by compare-and-set, then acks), in round order.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{kv, Message};
use datacat_warehouse::{EncodedRows, Writer};
use futures::{stream, StreamExt};
use tokio::sync::oneshot;
use tokio::sync::oneshot::error::TryRecvError;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, warn};

use crate::ack::{ack_all, extend_ack_deadlines, nak_all, DeadLetters, RETRY_DELAY};
use crate::insert_reason::{Backlog, InsertReason};
use crate::plan::{Held, Round, SessionPlan, SessionRows, KV_CONCURRENCY};
use crate::progress_cache::{Base, ProgressCache};
use crate::stats::Stats;
use datacat_protocol::decode_batch_head;

/// A group of rounds being inserted and committed, and the signal that its insert is done.
pub(crate) struct InFlight {
    pub(crate) task: JoinHandle<Outcomes>,
    inserted: oneshot::Receiver<()>,
    insert_done: bool,
}

impl InFlight {
    /// Whether the insert is over (ClickHouse is free for the next one), without waiting.
    pub(crate) fn insert_done(&mut self) -> bool {
        if !self.insert_done {
            let pending = matches!(self.inserted.try_recv(), Err(TryRecvError::Empty));
            self.insert_done = !pending;
        }
        self.insert_done
    }
}

/// Rounds planned while ClickHouse was busy with the previous insert, inserted together.
/// A busy ClickHouse so gets fewer, larger inserts: inserts of a few tens of thousands of
/// rows cost ClickHouse about twice the CPU per row of large ones.
pub(crate) struct Group {
    rounds: Vec<Round>,
    pub(crate) rows: usize,
    /// When its first round was planned.
    started: Instant,
    /// Its messages' ack deadlines, extended from its first round on.
    kept_alive: KeepAlive,
}

impl Default for Group {
    fn default() -> Self {
        Self {
            rounds: Vec::new(),
            rows: 0,
            started: Instant::now(),
            kept_alive: KeepAlive::new(),
        }
    }
}

impl Group {
    pub(crate) fn add(&mut self, round: Round) {
        self.rows += round.rows.iter().map(|s| s.rows.row_count()).sum::<usize>();
        if self.rounds.is_empty() {
            self.started = Instant::now();
            self.kept_alive = KeepAlive::new();
        }
        self.rounds.push(round);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rounds.is_empty()
    }

    fn messages(&self) -> impl Iterator<Item = &Message> {
        self.rounds.iter().flat_map(Round::messages)
    }

    /// Extends the ack deadline of its messages every `every` while it waits for
    /// ClickHouse (an outage must not get them redelivered).
    pub(crate) async fn keep_alive_if_due(&mut self, every: Duration) {
        let messages = self.rounds.iter().flat_map(Round::messages);
        self.kept_alive.extend_if_due(every, messages).await;
    }
}

/// When some waiting messages' ack deadlines were last extended.
pub(crate) struct KeepAlive(Instant);

impl KeepAlive {
    pub(crate) fn new() -> Self {
        Self(Instant::now())
    }

    /// Extends the messages' ack deadlines when `every` has passed since the last time (or
    /// since `new`).
    pub(crate) async fn extend_if_due<'a>(
        &mut self,
        every: Duration,
        messages: impl Iterator<Item = &'a Message>,
    ) {
        if self.0.elapsed() < every {
            return;
        }
        let messages: Vec<&Message> = messages.collect();
        extend_ack_deadlines(&messages).await;
        self.0 = Instant::now();
    }
}

/// The group's rows ordered by session id, each session's rounds in order (the sort is
/// stable). ClickHouse sorts every block it inserts by its table's key unless the block is
/// sorted already, and then writes it reordered: a large share of its work per row. The keys
/// of the session, history, event and metric tables start with the session id and go on
/// with the sequence, in which order a session's rows are made, so ordering whole sessions
/// (thousands of items, not millions of rows) sends those tables sorted.
fn in_key_order(mut sessions: Vec<SessionRows>) -> (Vec<String>, Vec<EncodedRows>) {
    sessions.sort_by(|a, b| a.session_id.cmp(&b.session_id));
    sessions
        .into_iter()
        .map(|session| (session.session_id, session.rows))
        .unzip()
}

/// How an insert ended.
enum Inserted {
    All,
    /// ClickHouse refused the rows themselves (`WarehouseError::refuses_the_rows`).
    Refused(String),
    /// Shutdown interrupted the retries of an unavailable ClickHouse.
    ShuttingDown,
}

/// Batches whose rows ClickHouse refused, by the progress key of their session: the batch's
/// seq (`None`: rows that came after every batch, the session's own row) and ClickHouse's
/// message.
#[derive(Default)]
pub(crate) struct Refusals(HashMap<String, Vec<(Option<u64>, String)>>);

impl Refusals {
    fn add(&mut self, session_id: &str, seq: Option<u64>, reason: String) {
        let key = datacat_protocol::subject::progress_key(session_id);
        self.0.entry(key).or_default().push((seq, reason));
    }

    /// Why the batch at `seq` of the session with progress key `key` was refused, if it was.
    fn reason(&self, key: &str, seq: Option<u64>) -> Option<&str> {
        let refused = self.0.get(key)?;
        let matching = refused
            .iter()
            .find(|(refused_seq, _)| refused_seq.is_none() || *refused_seq == seq);
        matching.map(|(_, reason)| reason.as_str())
    }
}

/// A group stops growing at this many times `--insert-rows`: planning waits for ClickHouse
/// (and the memory a worker holds stays bounded).
pub(crate) const PLANNED_ROWS_LIMIT: usize = 2;

/// How often messages a worker keeps (planned while ClickHouse is busy, being inserted, held
/// for a predecessor) get their ack deadline extended: every 5 s, or three times per ack wait
/// if that is shorter (at 5 s, an ack wait of a few seconds would run out between two).
pub(crate) fn keep_alive_every(ack_wait: Duration) -> Duration {
    (ack_wait / 3).min(Duration::from_secs(5))
}

/// What finished rounds did to each session's progress record: the round that last wrote it
/// (or failed to) and the new KV revision, or `None` when it was not written (plans built on
/// it are void). A plan can be built on any round still unfinished when it was planned (in
/// its own group, the one being inserted or the one committing), not only the one just
/// before it: so outcomes are carried forward. (Only the previous round's were kept once,
/// which voided, and re-applied, every chain through an older round: 4 % of the batches of
/// the wide benchmark.)
#[derive(Default)]
pub(crate) struct Outcomes {
    revisions: HashMap<String, (u64, Option<u64>)>,
    /// The first round of the group these outcomes are the result of.
    group_start: u64,
}

/// Sessions whose latest outcome is kept; beyond it only the last two groups' are.
const OUTCOMES_CAPACITY: usize = 100_000;

/// Inserts groups of planned rounds into ClickHouse and commits them: each session's new
/// progress by compare-and-set, then the acks. One insert at a time; commits in round order.
pub(crate) struct Committer {
    pub(crate) client: async_nats::Client,
    pub(crate) writer: Writer,
    pub(crate) stats: Arc<Stats>,
    pub(crate) cache: Arc<ProgressCache>,
    pub(crate) progress: kv::Store,
    pub(crate) dead_letters: DeadLetters,
    pub(crate) insert_rows: usize,
    pub(crate) insert_wait: Duration,
    pub(crate) gap_retry: Duration,
    /// How often the ack deadlines of messages kept waiting are extended.
    pub(crate) keep_alive_every: Duration,
    pub(crate) shutdown: CancellationToken,
}

impl Committer {
    /// Waits for `work`, extending the ack deadline of `held` messages for as long as that
    /// takes (a ClickHouse outage must not get them redelivered).
    pub(crate) async fn keeping_alive<F: std::future::Future>(
        &self,
        work: F,
        held: &[&Message],
    ) -> F::Output {
        let mut keep_alive = tokio::time::interval(self.keep_alive_every);
        keep_alive.tick().await;
        tokio::pin!(work);
        loop {
            tokio::select! {
                done = &mut work => return done,
                _ = keep_alive.tick() => extend_ack_deadlines(held).await,
            }
        }
    }

    /// Why a group is worth inserting now (ClickHouse being free), if it is.
    pub(crate) fn ripe(&self, group: &Group, backlog: Backlog) -> Option<InsertReason> {
        let waited = group.started.elapsed() >= self.insert_wait;
        InsertReason::when_free(group.rows >= self.insert_rows, waited, backlog)
    }

    /// Starts inserting and committing `group` once the previous group's insert is over
    /// (keeping the group's messages, and the batches held for a predecessor, alive
    /// meanwhile).
    pub(crate) async fn start_insert(
        self: &Arc<Self>,
        group: Group,
        held: &[Held],
        previous: Option<InFlight>,
    ) -> InFlight {
        let previous = match previous {
            Some(mut previous) => {
                if !previous.insert_done() {
                    let held = held.iter().map(|held| &held.message);
                    let messages: Vec<&Message> = group.messages().chain(held).collect();
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
        let mut sessions = Vec::new();
        let mut planned = Vec::with_capacity(rounds.len());
        for round in rounds {
            sessions.extend(round.rows);
            planned.push((round.id, round.plans));
        }
        let (session_ids, rows) = in_key_order(sessions);
        // Kept alive while the insert is retried and while the previous group commits.
        let messages: Vec<&Message> = planned
            .iter()
            .flat_map(|(_, plans)| plans.iter().flat_map(SessionPlan::messages))
            .collect();
        let mut refusals = Refusals::default();
        if !rows.is_empty() {
            let mut outcome = self.insert_until_done(&rows, &messages).await;
            if let Inserted::Refused(reason) = outcome {
                outcome = self
                    .isolate_refused(&session_ids, &rows, reason, &messages, &mut refusals)
                    .await;
            }
            if let Inserted::ShuttingDown = outcome {
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
            Some(task) => self
                .keeping_alive(task, &messages)
                .await
                .unwrap_or_else(|error| {
                    error!(%error, "a group's task failed; its successors are retried");
                    Outcomes::default()
                }),
            None => Outcomes::default(),
        };
        let keep_from = outcomes.group_start;
        for (id, plans) in planned {
            let committed: Vec<_> = stream::iter(plans)
                .map(|plan| self.commit(id, plan, &outcomes, &refusals))
                .buffer_unordered(KV_CONCURRENCY)
                .collect()
                .await;
            outcomes.revisions.extend(
                committed
                    .into_iter()
                    .flatten()
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
    /// to some worker later, and plans built on its rounds are void.
    async fn give_up(&self, planned: Vec<(u64, Vec<SessionPlan>)>) -> Outcomes {
        let mut outcomes = Outcomes::default();
        for (id, plans) in planned {
            for plan in plans {
                self.cache.forget(&plan.key);
                let messages = plan.applied.into_iter().chain(plan.waiting);
                nak_all(messages.chain(plan.duplicates).collect(), RETRY_DELAY).await;
                outcomes.revisions.insert(plan.key, (id, None));
            }
        }
        outcomes
    }

    /// Inserts the group's rows, retrying with backoff while ClickHouse is unavailable. The
    /// group's messages are kept (their ack deadline extended), not redelivered: an outage
    /// must not count against a message's deliveries and dead-letter good data. Rows
    /// ClickHouse refuses are not retried as they are (see `isolate_refused`).
    async fn insert_until_done(&self, rows: &[EncodedRows], messages: &[&Message]) -> Inserted {
        let mut backoff = Duration::from_millis(500);
        loop {
            // A slow insert (a busy ClickHouse) must not outlast the messages' ack wait either.
            let inserted = self.keeping_alive(self.writer.insert_encoded(rows), messages);
            let Err(error) = inserted.await else {
                return Inserted::All;
            };
            self.stats.insert_errors.fetch_add(1, Ordering::Relaxed);
            if error.refuses_the_rows() {
                self.stats.refused_inserts.fetch_add(1, Ordering::Relaxed);
                warn!(%error, "ClickHouse refused the rows; narrowing them down");
                return Inserted::Refused(error.to_string());
            }
            error!(%error, retry_in = ?backoff, "insert failed; keeping the round and retrying");
            extend_ack_deadlines(messages).await;
            let _ = self.client.flush().await;
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = self.shutdown.cancelled() => return Inserted::ShuttingDown,
            }
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    }

    /// Rows ClickHouse refused as a whole are inserted in halves, and halves of those, until
    /// what it refuses is one session's rows; those go batch by batch, in order, up to the
    /// first batch it refuses, which is listed in `refusals` (dead-lettered at commit, with
    /// ClickHouse's message). What follows that batch is not inserted: the session's plan
    /// is void, and its later batches are applied again without it. A refusal that comes
    /// from the size of the whole (too many partitions for one insert) so ends with
    /// everything inserted in parts and nothing refused.
    async fn isolate_refused(
        &self,
        session_ids: &[String],
        rows: &[EncodedRows],
        reason: String,
        messages: &[&Message],
        refusals: &mut Refusals,
    ) -> Inserted {
        let refused_sessions = match self.bisect(rows, reason, messages).await {
            Ok(refused) => refused,
            Err(()) => return Inserted::ShuttingDown,
        };
        for (index, _) in refused_sessions {
            for (seq, part) in rows[index].batches() {
                match self
                    .insert_until_done(std::slice::from_ref(&part), messages)
                    .await
                {
                    Inserted::All => self.stats.count_rows(std::slice::from_ref(&part)),
                    Inserted::ShuttingDown => return Inserted::ShuttingDown,
                    Inserted::Refused(reason) => {
                        error!(session_id = %session_ids[index], ?seq, %reason, "ClickHouse refuses a batch's rows; dead-lettering it");
                        refusals.add(&session_ids[index], seq, reason);
                        break;
                    }
                }
            }
        }
        Inserted::All
    }

    /// Inserts `units` (which ClickHouse refused together, saying `reason`) in ever smaller
    /// runs; returns the units it refuses alone, with its message. `Err` on shutdown.
    async fn bisect(
        &self,
        units: &[EncodedRows],
        reason: String,
        messages: &[&Message],
    ) -> Result<Vec<(usize, String)>, ()> {
        let mut refused = Vec::new();
        let mut runs = vec![(0..units.len(), Some(reason))];
        while let Some((run, known)) = runs.pop() {
            let outcome = match known {
                Some(reason) => Inserted::Refused(reason),
                None => self.insert_until_done(&units[run.clone()], messages).await,
            };
            match outcome {
                Inserted::All => self.stats.count_rows(&units[run]),
                Inserted::ShuttingDown => return Err(()),
                Inserted::Refused(reason) if run.len() == 1 => refused.push((run.start, reason)),
                Inserted::Refused(_) => {
                    let middle = run.start + run.len() / 2;
                    runs.push((middle..run.end, None));
                    runs.push((run.start..middle, None));
                }
            }
        }
        Ok(refused)
    }

    /// Records the session's new progress (compare-and-set on the record its plan was built
    /// on); acks what it covers. Returns the session's outcome when the plan wrote one.
    async fn commit(
        &self,
        round: u64,
        mut plan: SessionPlan,
        previous: &Outcomes,
        refusals: &Refusals,
    ) -> Option<(String, Option<u64>)> {
        for (message, reason) in plan.poison {
            self.dead_letters.send(message, &reason).await;
        }
        // Batches whose rows ClickHouse refused: dead-lettered, and the plan, whose progress
        // counts them, is void (the others are applied again, without them).
        let mut refused = false;
        let messages = if refusals.0.contains_key(&plan.key) {
            std::mem::take(&mut plan.applied)
        } else {
            Vec::new()
        };
        for message in messages {
            let seq = decode_batch_head(&message.payload)
                .ok()
                .map(|head| head.seq);
            match refusals.reason(&plan.key, seq) {
                Some(reason) => {
                    refused = true;
                    let reason = format!("ClickHouse refused its rows: {reason}");
                    self.dead_letters.send(message, &reason).await;
                }
                None => plan.applied.push(message),
            }
        }
        if refused {
            self.stats.voided.fetch_add(1, Ordering::Relaxed);
            let all = plan.applied.into_iter().chain(plan.duplicates).collect();
            nak_all(all, Duration::from_millis(50)).await;
            nak_all(plan.waiting, Duration::from_millis(50)).await;
            self.cache.forget(&plan.key);
            return Some((plan.key, None));
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
        let store = &self.progress;
        // Err(true): another worker wrote the record first (a real compare-and-set conflict).
        let saved = match base {
            Base::Revision(revision) => store
                .update(&plan.key, plan.value.into(), revision)
                .await
                .map_err(|e| {
                    let conflict = e.kind() == kv::UpdateErrorKind::WrongLastRevision;
                    (conflict, e.to_string())
                }),
            _ => store
                .create(&plan.key, plan.value.into())
                .await
                .map_err(|e| {
                    (
                        e.kind() == kv::CreateErrorKind::AlreadyExists,
                        e.to_string(),
                    )
                }),
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
            Err((true, error)) => {
                // Another worker moved this session on; its rows equal ours. Re-evaluate.
                debug!(key = %plan.key, %error, "progress changed under us; redelivering");
                self.cache.forget(&plan.key);
                nak_all(plan.applied, Duration::from_millis(50)).await;
                Some((plan.key, None))
            }
            Err((false, error)) => {
                // NATS did not store it (timed out, unavailable): the same batches come back
                // later; nothing is known to have moved on.
                self.stats
                    .progress_write_errors
                    .fetch_add(1, Ordering::Relaxed);
                warn!(key = %plan.key, %error, "progress not written; the batches come back");
                self.cache.forget(&plan.key);
                nak_all(plan.applied, RETRY_DELAY).await;
                Some((plan.key, None))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datacat_warehouse::RowSink;

    /// One session's rows of a round, told apart by how many events they hold.
    fn rows(session_id: &str, events: usize) -> SessionRows {
        let mut rows = EncodedRows::default();
        for idx in 0..events {
            let key = datacat_warehouse::rowbinary::RowKey {
                session_id,
                seq: 1,
                idx: idx as u32,
                ts_ms: 1,
                date: 1,
                client_ts_ms: 0,
            };
            rows.event(datacat_warehouse::rowbinary::EventRef::named(key, "e"));
        }
        SessionRows {
            session_id: session_id.into(),
            rows,
        }
    }

    #[test]
    fn a_group_is_inserted_by_session_and_each_sessions_rounds_in_order() {
        let group = vec![
            rows("b", 1),
            rows("a", 2),
            rows("c", 3),
            rows("a", 4),
            rows("b", 5),
        ];
        let order: Vec<usize> = in_key_order(group)
            .1
            .iter()
            .map(|r| r.events.rows())
            .collect();
        assert_eq!(order, [2, 4, 1, 5, 3]);
    }
}

//! What the other workers have planned but not yet committed.
//!
//! With several workers on one consumer, a session's next batch often reaches a worker while
//! its predecessor is still in another worker's round: planned, being inserted, a commit
//! away. Waiting for that commit made workers take turns on a deep backlog (plan, insert,
//! commit, and only then could the next worker plan). So every worker announces, over core
//! NATS, each session's progress as soon as a round is planned, and each round's commit
//! outcome (the new KV revision, or that it was not written). A worker that holds the next
//! batch plans on the announced progress at once, inserts its rows, and commits only after
//! the announcing round committed exactly that progress (compare-and-set on its revision);
//! if that round did not commit, the plan is void and its batches come back, as with a plan
//! built on this worker's own uncommitted round.
//!
//! Announcements are an optimisation only: one that is lost or late costs a KV read or a
//! redelivery, never a wrong result, because the compare-and-set decides.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::StreamExt;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::apply::Progress;
use crate::progress_cache::Base;

/// The core NATS subject announcements travel on (outside every stream).
pub const PEERS_SUBJECT: &str = "datacat.ingest.peers";

/// How long an announced progress is kept for a successor batch to plan on. Successors of a
/// backlog arrive within a round or two; live traffic reads KV like before.
const PLANNED_KEEP: Duration = Duration::from_secs(10);

/// How long an outcome this worker waits for is kept once it arrived.
const OUTCOME_KEEP: Duration = Duration::from_secs(120);

/// Announced sessions kept at most (each holds its progress record).
const PLANNED_CAPACITY: usize = 50_000;

/// Announcements are split into messages of at most this size (NATS' default payload limit
/// is 1 MiB).
const CHUNK_BYTES: usize = 512 * 1024;

const PLANNED: u8 = b'P';
const OUTCOMES: u8 = b'O';

/// A session's progress as another worker's round planned it.
struct Planned {
    worker: u64,
    round: u64,
    next_seq: u64,
    value: Bytes,
    at: Instant,
    /// The revision that round wrote it at, once its outcome arrived.
    committed: Option<u64>,
}

/// The outcome of another worker's round, for the sessions this worker planned on it.
struct Awaited {
    since: Instant,
    revisions: HashMap<String, Option<u64>>,
}

#[derive(Default)]
struct State {
    planned: HashMap<String, Planned>,
    awaited: HashMap<(u64, u64), Awaited>,
    pruned: Option<Instant>,
}

pub struct Peers {
    /// This worker's id in announcements (random per process).
    pub id: u64,
    state: Mutex<State>,
    arrived: Notify,
}

impl Default for Peers {
    fn default() -> Self {
        Self {
            id: RandomState::new().build_hasher().finish(),
            state: Mutex::default(),
            arrived: Notify::new(),
        }
    }
}

/// One session of an announcement: its key, its next sequence and its progress record.
pub struct PlannedSession<'a> {
    pub key: &'a str,
    pub next_seq: u64,
    pub value: &'a [u8],
}

impl Peers {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Another worker's planned progress of the session when it continues at `next_seq`,
    /// and what a record replacing it must compare against: the revision it was committed
    /// at, or the announcing round (whose outcome the commit then waits for).
    pub fn take(&self, key: &str, next_seq: u64) -> Option<(Progress, Base)> {
        let mut state = self.lock();
        let planned = state.planned.get(key)?;
        if planned.next_seq != next_seq || planned.at.elapsed() > PLANNED_KEEP {
            return None;
        }
        let planned = state.planned.remove(key)?;
        let progress = match serde_json::from_slice::<Progress>(&planned.value) {
            Ok(progress) => progress,
            Err(error) => {
                warn!(%key, %error, "a peer's announced progress does not parse; reading KV");
                return None;
            }
        };
        let base = match planned.committed {
            Some(revision) => Base::Revision(revision),
            None => {
                state
                    .awaited
                    .entry((planned.worker, planned.round))
                    .or_insert_with(|| Awaited {
                        since: Instant::now(),
                        revisions: HashMap::new(),
                    });
                Base::Peer {
                    worker: planned.worker,
                    round: planned.round,
                }
            }
        };
        Some((progress, base))
    }

    /// The revision round `round` of `worker` wrote the session's progress at; `None` when
    /// it did not write it, or no outcome arrived within `wait`.
    pub async fn outcome(&self, worker: u64, round: u64, key: &str, wait: Duration) -> Option<u64> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.arrived.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(outcome) = self.known_outcome(worker, round, key) {
                return outcome;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                debug!(%key, worker, round, "no outcome from the peer's round; the plan is void");
                return None;
            }
        }
    }

    fn known_outcome(&self, worker: u64, round: u64, key: &str) -> Option<Option<u64>> {
        let state = self.lock();
        state
            .awaited
            .get(&(worker, round))?
            .revisions
            .get(key)
            .copied()
    }

    /// Takes in one announcement of another worker (its own are ignored).
    pub fn receive(&self, payload: Bytes) -> Result<(), &'static str> {
        let mut reader = payload.clone();
        if reader.remaining() < 1 + 8 + 8 + 4 {
            return Err("announcement too short");
        }
        let kind = reader.get_u8();
        let (worker, round, count) = (reader.get_u64(), reader.get_u64(), reader.get_u32());
        if worker == self.id {
            return Ok(());
        }
        let mut state = self.lock();
        state.prune();
        match kind {
            PLANNED => {
                for _ in 0..count {
                    let key = read_key(&mut reader)?;
                    if reader.remaining() < 12 {
                        return Err("announcement truncated");
                    }
                    let next_seq = reader.get_u64();
                    let len = reader.get_u32() as usize;
                    if reader.remaining() < len {
                        return Err("announcement truncated");
                    }
                    let start = payload.len() - reader.remaining();
                    let value = payload.slice(start..start + len);
                    reader.advance(len);
                    if state.planned.len() >= PLANNED_CAPACITY {
                        state.planned.clear(); // costs KV reads, nothing else
                    }
                    let at = Instant::now();
                    let planned = Planned {
                        worker,
                        round,
                        next_seq,
                        value,
                        at,
                        committed: None,
                    };
                    state.planned.insert(key, planned);
                }
            }
            OUTCOMES => {
                let State {
                    planned, awaited, ..
                } = &mut *state;
                let mut awaited = awaited.get_mut(&(worker, round));
                for _ in 0..count {
                    let key = read_key(&mut reader)?;
                    if reader.remaining() < 9 {
                        return Err("announcement truncated");
                    }
                    let revision = (reader.get_u8() == 1).then_some(reader.get_u64());
                    if let Some(entry) = planned.get_mut(&key) {
                        if (entry.worker, entry.round) == (worker, round) {
                            match revision {
                                Some(revision) => entry.committed = Some(revision),
                                None => drop(planned.remove(&key)),
                            }
                        }
                    }
                    if let Some(awaited) = awaited.as_mut() {
                        awaited.revisions.insert(key, revision);
                    }
                }
                drop(state);
                self.arrived.notify_waiters();
            }
            _ => return Err("unknown announcement"),
        }
        Ok(())
    }

    /// Announces a planned round's sessions.
    pub async fn announce_planned<'a>(
        &self,
        client: &async_nats::Client,
        round: u64,
        sessions: impl Iterator<Item = PlannedSession<'a>>,
    ) {
        publish(client, self.encode_planned(round, sessions)).await;
    }

    /// Announces what a round's commit did to each session it planned: the new revision,
    /// or `None` when the progress was not written.
    pub async fn announce_outcomes<'a>(
        &self,
        client: &async_nats::Client,
        round: u64,
        outcomes: impl Iterator<Item = (&'a str, Option<u64>)>,
    ) {
        publish(client, self.encode_outcomes(round, outcomes)).await;
    }

    fn encode_planned<'a>(
        &self,
        round: u64,
        sessions: impl Iterator<Item = PlannedSession<'a>>,
    ) -> Vec<Bytes> {
        let mut chunks = Chunks::new(PLANNED, self.id, round);
        for session in sessions {
            let buffer = chunks.entry(session.key.len() + session.value.len() + 16);
            put_key(buffer, session.key);
            buffer.put_u64(session.next_seq);
            buffer.put_u32(session.value.len() as u32);
            buffer.put_slice(session.value);
        }
        chunks.finish()
    }

    fn encode_outcomes<'a>(
        &self,
        round: u64,
        outcomes: impl Iterator<Item = (&'a str, Option<u64>)>,
    ) -> Vec<Bytes> {
        let mut chunks = Chunks::new(OUTCOMES, self.id, round);
        for (key, revision) in outcomes {
            let buffer = chunks.entry(key.len() + 12);
            put_key(buffer, key);
            buffer.put_u8(u8::from(revision.is_some()));
            buffer.put_u64(revision.unwrap_or(0));
        }
        chunks.finish()
    }

    /// Receives the other workers' announcements until shutdown.
    pub async fn listen(
        &self,
        client: async_nats::Client,
        shutdown: CancellationToken,
    ) -> Result<(), async_nats::SubscribeError> {
        let mut subscriber = client.subscribe(PEERS_SUBJECT).await?;
        loop {
            let message = tokio::select! {
                message = subscriber.next() => message,
                _ = shutdown.cancelled() => return Ok(()),
            };
            let Some(message) = message else {
                return Ok(());
            };
            if let Err(error) = self.receive(message.payload) {
                warn!(%error, "ignoring a malformed announcement from a peer");
            }
        }
    }
}

impl State {
    /// Drops announcements nobody used in time and outcomes nobody waits for any more.
    fn prune(&mut self) {
        if self
            .pruned
            .is_some_and(|at| at.elapsed() < Duration::from_secs(1))
        {
            return;
        }
        self.pruned = Some(Instant::now());
        self.planned
            .retain(|_, planned| planned.at.elapsed() <= PLANNED_KEEP);
        self.awaited
            .retain(|_, awaited| awaited.since.elapsed() <= OUTCOME_KEEP);
    }
}

fn put_key(buffer: &mut BytesMut, key: &str) {
    buffer.put_u16(key.len() as u16);
    buffer.put_slice(key.as_bytes());
}

fn read_key(reader: &mut Bytes) -> Result<String, &'static str> {
    if reader.remaining() < 2 {
        return Err("announcement truncated");
    }
    let len = reader.get_u16() as usize;
    if reader.remaining() < len {
        return Err("announcement truncated");
    }
    let key = reader.split_to(len);
    String::from_utf8(key.to_vec()).map_err(|_| "announcement key is not UTF-8")
}

/// An announcement being written, split into messages of at most [`CHUNK_BYTES`].
struct Chunks {
    kind: u8,
    worker: u64,
    round: u64,
    done: Vec<Bytes>,
    current: BytesMut,
    count: u32,
}

const HEADER_BYTES: usize = 1 + 8 + 8 + 4;

impl Chunks {
    fn new(kind: u8, worker: u64, round: u64) -> Self {
        Self {
            kind,
            worker,
            round,
            done: Vec::new(),
            current: BytesMut::new(),
            count: 0,
        }
    }

    /// The buffer to write the next entry (about `size` bytes) into.
    fn entry(&mut self, size: usize) -> &mut BytesMut {
        if self.count > 0 && self.current.len() + size > CHUNK_BYTES {
            self.seal();
        }
        if self.count == 0 {
            self.current.put_u8(self.kind);
            self.current.put_u64(self.worker);
            self.current.put_u64(self.round);
            self.current.put_u32(0); // the count, filled in by `seal`
        }
        self.count += 1;
        &mut self.current
    }

    fn seal(&mut self) {
        if self.count == 0 {
            return;
        }
        let mut chunk = std::mem::take(&mut self.current);
        chunk[HEADER_BYTES - 4..HEADER_BYTES].copy_from_slice(&self.count.to_be_bytes());
        self.done.push(chunk.freeze());
        self.count = 0;
    }

    fn finish(mut self) -> Vec<Bytes> {
        self.seal();
        self.done
    }
}

async fn publish(client: &async_nats::Client, chunks: Vec<Bytes>) {
    for chunk in chunks {
        if let Err(error) = client.publish(PEERS_SUBJECT, chunk).await {
            debug!(%error, "announcing to peers failed; they read KV instead");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(next_seq: u64) -> Vec<u8> {
        serde_json::to_vec(&Progress {
            next_seq,
            status: "active".into(),
            ..Progress::default()
        })
        .unwrap()
    }

    fn chunks_of(peer: &Peers, round: u64, sessions: &[(&str, u64)]) -> Vec<Bytes> {
        let values: Vec<Vec<u8>> = sessions.iter().map(|(_, seq)| progress(*seq)).collect();
        let sessions = sessions.iter().zip(&values);
        peer.encode_planned(
            round,
            sessions.map(|((key, next_seq), value)| PlannedSession {
                key,
                next_seq: *next_seq,
                value,
            }),
        )
    }

    fn outcomes_of(peer: &Peers, round: u64, outcomes: &[(&str, Option<u64>)]) -> Bytes {
        let mut chunks = peer.encode_outcomes(round, outcomes.iter().copied());
        assert_eq!(chunks.len(), 1);
        chunks.pop().unwrap()
    }

    #[tokio::test]
    async fn a_plan_on_an_announced_round_waits_for_its_outcome() {
        let (me, peer) = (Peers::default(), Peers::default());
        for chunk in chunks_of(&peer, 7, &[("s.a", 3), ("s.b", 5)]) {
            me.receive(chunk).unwrap();
        }
        assert!(me.take("s.a", 4).is_none(), "does not continue at 4");
        let (progress, base) = me.take("s.a", 3).unwrap();
        assert_eq!(progress.next_seq, 3);
        let expected = Base::Peer {
            worker: peer.id,
            round: 7,
        };
        assert_eq!(base, expected);
        assert!(me.take("s.a", 3).is_none(), "taken once");
        let short = Duration::from_millis(20);
        assert_eq!(me.outcome(peer.id, 7, "s.a", short).await, None, "none yet");
        me.receive(outcomes_of(
            &peer,
            7,
            &[("s.a", Some(42)), ("s.b", Some(43))],
        ))
        .unwrap();
        assert_eq!(me.outcome(peer.id, 7, "s.a", short).await, Some(42));
        // Committed before anyone planned on it: a plain revision base.
        assert_eq!(me.take("s.b", 5).map(|(_, b)| b), Some(Base::Revision(43)));
    }

    #[tokio::test]
    async fn an_outcome_arriving_while_waiting_wakes_the_waiter() {
        let (me, peer) = (std::sync::Arc::new(Peers::default()), Peers::default());
        for chunk in chunks_of(&peer, 1, &[("s.a", 2)]) {
            me.receive(chunk).unwrap();
        }
        me.take("s.a", 2).unwrap();
        let waiter = {
            let me = me.clone();
            let id = peer.id;
            tokio::spawn(async move { me.outcome(id, 1, "s.a", Duration::from_secs(30)).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        me.receive(outcomes_of(&peer, 1, &[("s.a", Some(9))]))
            .unwrap();
        assert_eq!(waiter.await.unwrap(), Some(9));
    }

    #[test]
    fn an_unwritten_round_takes_its_announcements_back() {
        let (me, peer) = (Peers::default(), Peers::default());
        for chunk in chunks_of(&peer, 2, &[("s.a", 2)]) {
            me.receive(chunk).unwrap();
        }
        me.receive(outcomes_of(&peer, 2, &[("s.a", None)])).unwrap();
        assert!(me.take("s.a", 2).is_none());
    }

    #[test]
    fn own_announcements_are_ignored_and_bad_ones_refused() {
        let me = Peers::default();
        for chunk in chunks_of(&me, 1, &[("s.a", 2)]) {
            me.receive(chunk).unwrap();
        }
        assert!(me.take("s.a", 2).is_none());
        let peer = Peers::default();
        let chunk = chunks_of(&peer, 1, &[("s.a", 2)]).pop().unwrap();
        assert!(me.receive(chunk.slice(..chunk.len() - 3)).is_err());
        assert!(me.receive(Bytes::from_static(b"P")).is_err());
    }

    #[test]
    fn large_announcements_are_split_into_chunks() {
        let peer = Peers::default();
        let key = "s.x".repeat(100);
        let sessions: Vec<(&str, u64)> = (0..5000).map(|i| (key.as_str(), i)).collect();
        let chunks = chunks_of(&peer, 1, &sessions);
        assert!(chunks.len() > 1);
        assert!(chunks.iter().all(|chunk| chunk.len() <= CHUNK_BYTES));
        let me = Peers::default();
        for chunk in chunks {
            me.receive(chunk).unwrap();
        }
        assert!(me.take(&key, 4999).is_some(), "the last announcement wins");
    }
}

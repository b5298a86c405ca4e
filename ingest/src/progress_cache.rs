//! The session progress a worker keeps in memory between rounds.
//!
//! Reading a session's progress from NATS KV is a round trip per session; a worker that
//! applied a session's last batch usually gets its next one too, so it keeps what it wrote.
//! With rounds pipelined (the next round is planned while the previous one is inserted and
//! committed), an entry can also be the not yet committed result of the round in flight.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::apply::Progress;

/// What a session's progress record in KV must look like for a new one to replace it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Base {
    /// No record yet: create it.
    New,
    /// The record at this KV revision.
    Revision(u64),
    /// The record the given round writes; its commit tells the revision (or that it failed).
    Round(u64),
}

/// How long a committed progress may be used without reading KV again, by default. The
/// sweeper rewrites progress of sessions silent for `--lost-after-secs`, and a stale "active"
/// must not produce rows before its compare-and-set fails: a worker uses half of that.
const FRESH: Duration = Duration::from_secs(10);

/// Sessions in one generation of the cache (it keeps two).
const GENERATION: usize = 100_000;

/// How long a session whose progress is behind the batches this worker holds for it is not
/// read from KV again. Its predecessor is usually on its way (forwarded by another worker,
/// or in a round of this one's in flight); reading KV again every round was most of the KV
/// reads with several workers, and their latency most of a round's planning time.
const BEHIND_RECHECK: Duration = Duration::from_secs(2);

/// Entries in two generations: when the current one is full it becomes the older one (and
/// the one before goes), so the sessions used lately stay. (Starting over when full made a
/// wide backlog, more sessions than fit, read most of them from KV twice.)
struct Generations<V> {
    current: HashMap<String, V>,
    older: HashMap<String, V>,
}

impl<V> Default for Generations<V> {
    fn default() -> Self {
        Self {
            current: HashMap::new(),
            older: HashMap::new(),
        }
    }
}

impl<V> Generations<V> {
    fn remove(&mut self, key: &str) -> Option<V> {
        self.current.remove(key).or_else(|| self.older.remove(key))
    }

    fn get_mut(&mut self, key: &str) -> Option<&mut V> {
        match self.current.get_mut(key) {
            Some(value) => Some(value),
            None => self.older.get_mut(key),
        }
    }

    fn insert(&mut self, key: String, value: V) {
        self.older.remove(&key);
        if self.current.len() >= GENERATION {
            self.older = std::mem::take(&mut self.current);
        }
        self.current.insert(key, value);
    }
}

pub struct ProgressCache {
    entries: Mutex<Generations<(Progress, Base)>>,
    /// Sessions whose progress was last known at this next sequence, behind the batches held
    /// for them, and since when.
    behind: Mutex<Generations<(u64, Instant)>>,
    /// How long a committed entry is used without reading KV.
    fresh_for: Duration,
}

impl Default for ProgressCache {
    fn default() -> Self {
        Self::new(FRESH)
    }
}

impl ProgressCache {
    pub fn new(fresh_for: Duration) -> Self {
        Self {
            entries: Mutex::default(),
            behind: Mutex::default(),
            fresh_for,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Generations<(Progress, Base)>> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn lock_behind(&self) -> MutexGuard<'_, Generations<(u64, Instant)>> {
        self.behind
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes the entry out (no clone of the state) when it is either in flight or fresh.
    pub fn take(&self, key: &str) -> Option<(Progress, Base)> {
        let (progress, base) = self.lock().remove(key)?;
        let fresh = match base {
            Base::Round(_) => true,
            Base::Revision(_) => {
                let age_ms = datacat_protocol::time::now_ms().saturating_sub(progress.seen_ms);
                u128::from(age_ms) < self.fresh_for.as_millis()
            }
            Base::New => false,
        };
        fresh.then_some((progress, base))
    }

    /// Keeps the entry. Losing entries only costs KV reads: the compare-and-set guards
    /// correctness.
    pub fn put(&self, key: String, progress: Progress, base: Base) {
        self.lock().insert(key, (progress, base));
    }

    /// Round `round` committed the session at `revision`: an entry still waiting for exactly
    /// that commit becomes a committed one (or goes, when the session ended).
    pub fn committed(&self, key: &str, round: u64, revision: u64) {
        let mut entries = self.lock();
        if let Some((progress, base)) = entries.get_mut(key) {
            if *base == Base::Round(round) {
                if !progress.status.is_terminal() {
                    *base = Base::Revision(revision);
                } else {
                    // An ended session rarely gets another batch: not worth the memory.
                    entries.remove(key);
                }
            }
        }
    }

    /// The session's record moved on without us: whatever we hold is no base for anything.
    pub fn forget(&self, key: &str) {
        self.lock().remove(key);
    }

    /// KV showed the session at `next_seq`, behind the batches held for it.
    pub fn behind(&self, key: &str, next_seq: u64) {
        self.lock_behind()
            .insert(key.to_string(), (next_seq, Instant::now()));
    }

    /// Whether the session has been known at `next_seq`, behind the batches held for it, for
    /// less than [`BEHIND_RECHECK`] (the clock starts now if it was not known there yet).
    /// The predecessor is usually on its way; after that, KV is read again (another worker
    /// may have applied it).
    pub fn briefly_behind(&self, key: &str, next_seq: u64) -> bool {
        let mut behind = self.lock_behind();
        match behind.get_mut(key) {
            Some(&mut (known, at)) if known == next_seq => at.elapsed() < BEHIND_RECHECK,
            _ => {
                behind.insert(key.to_string(), (next_seq, Instant::now()));
                true
            }
        }
    }

    /// Whether KV showed the session behind `first_seq` a moment ago (so reading it again
    /// is not worth it yet).
    pub fn still_behind(&self, key: &str, first_seq: u64) -> bool {
        let mut behind = self.lock_behind();
        match behind.get_mut(key) {
            Some(&mut (next_seq, at)) if next_seq < first_seq && at.elapsed() < BEHIND_RECHECK => {
                true
            }
            Some(_) => {
                behind.remove(key);
                false
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datacat_protocol::Status;

    fn progress(next_seq: u64, status: &str) -> Progress {
        let status = Status::from_name(status).unwrap();
        Progress {
            next_seq,
            status,
            seen_ms: datacat_protocol::time::now_ms(),
            ..Progress::default()
        }
    }

    #[test]
    fn an_entry_is_taken_once() {
        let cache = ProgressCache::default();
        cache.put("a".into(), progress(3, "active"), Base::Revision(7));
        assert_eq!(cache.take("a").map(|(_, b)| b), Some(Base::Revision(7)));
        assert!(cache.take("a").is_none());
    }

    #[test]
    fn a_session_behind_its_held_batches_is_trusted_for_a_moment() {
        let cache = ProgressCache::default();
        assert!(cache.briefly_behind("a", 3), "the clock starts");
        assert!(cache.briefly_behind("a", 3));
        cache.lock_behind().get_mut("a").unwrap().1 -= BEHIND_RECHECK;
        assert!(!cache.briefly_behind("a", 3), "too long: read KV");
        assert!(
            cache.briefly_behind("a", 4),
            "moved on: the clock starts again"
        );
    }

    #[test]
    fn stale_committed_entries_are_not_used_but_in_flight_ones_are() {
        let cache = ProgressCache::default();
        let mut old = progress(1, "active");
        old.seen_ms -= FRESH.as_millis() as u64 + 1;
        cache.put("a".into(), old.clone(), Base::Revision(1));
        assert!(cache.take("a").is_none());
        cache.put("a".into(), old, Base::Round(5));
        assert_eq!(cache.take("a").map(|(_, b)| b), Some(Base::Round(5)));
    }

    #[test]
    fn a_session_behind_is_not_reread_for_a_moment() {
        let cache = ProgressCache::default();
        assert!(!cache.still_behind("a", 5));
        cache.behind("a", 3);
        assert!(cache.still_behind("a", 5));
        assert!(!cache.still_behind("a", 3), "seq 3 is due: read it");
        assert!(!cache.still_behind("a", 5), "forgotten once due");
        cache.behind("a", 3);
        cache.lock_behind().get_mut("a").unwrap().1 -= BEHIND_RECHECK;
        assert!(!cache.still_behind("a", 5), "stale");
    }

    #[test]
    fn a_full_generation_keeps_the_sessions_used_lately() {
        let cache = ProgressCache::default();
        for i in 0..GENERATION + 10 {
            cache.put(format!("s{i}"), progress(1, "active"), Base::Revision(1));
        }
        assert!(cache.take("s0").is_some(), "in the older generation");
        cache.put("s1".into(), progress(2, "active"), Base::Revision(2));
        assert_eq!(
            cache.take("s1").map(|(p, _)| p.next_seq),
            Some(2),
            "the newer entry"
        );
        for i in 0..GENERATION {
            cache.put(format!("t{i}"), progress(1, "active"), Base::Revision(1));
        }
        assert!(cache.take("s2").is_none(), "two generations ago");
        assert!(cache.take(&format!("s{}", GENERATION + 5)).is_some());
    }

    #[test]
    fn a_commit_settles_only_its_own_round() {
        let cache = ProgressCache::default();
        cache.put("a".into(), progress(2, "active"), Base::Round(5));
        cache.committed("a", 4, 10);
        assert_eq!(cache.take("a").map(|(_, b)| b), Some(Base::Round(5)));
        cache.put("a".into(), progress(2, "active"), Base::Round(5));
        cache.committed("a", 5, 11);
        assert_eq!(cache.take("a").map(|(_, b)| b), Some(Base::Revision(11)));
        cache.put("b".into(), progress(2, "ended"), Base::Round(5));
        cache.committed("b", 5, 12);
        assert!(cache.take("b").is_none(), "ended sessions are not kept");
    }
}

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

/// How long a committed progress may be used without reading KV again (milliseconds). The
/// sweeper rewrites progress of sessions silent for `lost_after`, and a stale "active" must
/// not produce rows before its compare-and-set fails.
const FRESH_MS: u64 = 10_000;

/// Sessions kept before the cache starts over.
const CAPACITY: usize = 100_000;

/// How long a session whose progress KV showed behind the batches this worker holds for it
/// is not read again. Its predecessor is usually in another worker's round, whose
/// announcement says when it is planned; reading KV again every round was most of the KV
/// reads with several workers, and their latency most of a round's planning time.
const BEHIND_RECHECK: Duration = Duration::from_secs(2);

#[derive(Default)]
pub struct ProgressCache {
    entries: Mutex<HashMap<String, (Progress, Base)>>,
    /// Sessions whose progress KV last showed at this next sequence, and when.
    behind: Mutex<HashMap<String, (u64, Instant)>>,
}

impl ProgressCache {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, (Progress, Base)>> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes the entry out (no clone of the state) when it is either in flight or fresh.
    pub fn take(&self, key: &str) -> Option<(Progress, Base)> {
        let (progress, base) = self.lock().remove(key)?;
        let fresh = match base {
            Base::Round(_) => true,
            Base::Revision(_) => {
                datacat_protocol::time::now_ms().saturating_sub(progress.seen_ms) < FRESH_MS
            }
            Base::New => false,
        };
        fresh.then_some((progress, base))
    }

    pub fn put(&self, key: String, progress: Progress, base: Base) {
        let mut entries = self.lock();
        if entries.len() >= CAPACITY {
            // Losing entries only costs KV reads: the compare-and-set guards correctness.
            entries.clear();
        }
        entries.insert(key, (progress, base));
    }

    /// Round `round` committed the session at `revision`: an entry still waiting for exactly
    /// that commit becomes a committed one (or goes, when the session ended).
    pub fn committed(&self, key: &str, round: u64, revision: u64) {
        let mut entries = self.lock();
        if let Some((progress, base)) = entries.get_mut(key) {
            if *base == Base::Round(round) {
                if matches!(progress.status.as_str(), "active" | "hung") {
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
        let mut behind = self.behind.lock().unwrap_or_else(|p| p.into_inner());
        if behind.len() >= CAPACITY {
            behind.retain(|_, (_, at)| at.elapsed() < BEHIND_RECHECK);
        }
        behind.insert(key.to_string(), (next_seq, Instant::now()));
    }

    /// Whether the session has been known at `next_seq`, behind the batches held for it, for
    /// less than [`BEHIND_RECHECK`] (the clock starts now if it was not known there yet).
    /// The predecessor is usually on its way; after that, KV is read again (another worker
    /// may have applied it).
    pub fn briefly_behind(&self, key: &str, next_seq: u64) -> bool {
        let mut behind = self.behind.lock().unwrap_or_else(|p| p.into_inner());
        match behind.get(key) {
            Some(&(known, at)) if known == next_seq => at.elapsed() < BEHIND_RECHECK,
            _ => {
                if behind.len() >= CAPACITY {
                    behind.retain(|_, (_, at)| at.elapsed() < BEHIND_RECHECK);
                }
                behind.insert(key.to_string(), (next_seq, Instant::now()));
                true
            }
        }
    }

    /// Whether KV showed the session behind `first_seq` a moment ago (so reading it again
    /// is not worth it yet).
    pub fn still_behind(&self, key: &str, first_seq: u64) -> bool {
        let mut behind = self.behind.lock().unwrap_or_else(|p| p.into_inner());
        match behind.get(key) {
            Some(&(next_seq, at)) if next_seq < first_seq && at.elapsed() < BEHIND_RECHECK => true,
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

    fn progress(next_seq: u64, status: &str) -> Progress {
        Progress {
            next_seq,
            status: status.into(),
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
        cache.behind.lock().unwrap().get_mut("a").unwrap().1 -= BEHIND_RECHECK;
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
        old.seen_ms -= FRESH_MS + 1;
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
        cache.behind.lock().unwrap().get_mut("a").unwrap().1 -= BEHIND_RECHECK;
        assert!(!cache.still_behind("a", 5), "stale");
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

//! Per-session buffers: the change filter, sequencing into batches, and end-of-session
//! bookkeeping.
//!
//! Client calls only append to a session's pending records (under one short lock); the
//! flush loop turns pending records into numbered batches and hands them to the publisher.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use datacat_protocol::record::{Heartbeat, StateUpdate};
use datacat_protocol::{
    deep_merge, encode_batch, state_diff, Batch, Record, SessionEnd, SessionStart,
};
use serde_json::Value;
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::config::Config;
use crate::publisher::{Outgoing, Publisher};

/// Why a call about a session cannot be served.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SessionError {
    #[error("session {0} is not known to this daemon")]
    Unknown(String),
    #[error("session {0} has already ended")]
    Ended(String),
}

struct Session {
    pending: Vec<Record>,
    next_seq: u64,
    /// The merged state as the client sees it, to send only what changed.
    state: Value,
    ended: bool,
    /// Batches handed to the publisher and not yet acknowledged.
    unacked: watch::Sender<u64>,
}

pub struct Registry {
    sessions: Mutex<HashMap<String, Session>>,
    publisher: Publisher,
    flush_now: Notify,
    flush_records: usize,
    max_batch_bytes: usize,
    flush_interval: Duration,
    pub end_wait: Duration,
}

impl Registry {
    pub fn new(config: &Config, publisher: Publisher) -> Self {
        Self {
            sessions: Mutex::new(HashMap::new()),
            publisher,
            flush_now: Notify::new(),
            flush_records: config.flush_records,
            max_batch_bytes: config.max_batch_bytes,
            flush_interval: Duration::from_millis(config.flush_interval_ms),
            end_wait: Duration::from_millis(config.end_wait_ms),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Session>> {
        // A panic while holding the lock cannot leave a session half-updated in a way that
        // matters more than losing every session, so keep serving.
        self.sessions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Opens a session; its first record says what runs where.
    pub fn register(&self, session_id: String, start: SessionStart) {
        let state = Value::Object(Default::default());
        let session = Session {
            pending: vec![Record::Start(start)],
            next_seq: 0,
            state,
            ended: false,
            unacked: watch::channel(0).0,
        };
        self.lock().insert(session_id, session);
        self.flush_now.notify_one();
    }

    pub fn session_count(&self) -> usize {
        self.lock().len()
    }

    pub fn queued_batches(&self) -> usize {
        self.publisher.queued()
    }

    pub fn publisher(&self) -> &Publisher {
        &self.publisher
    }

    pub fn pending_records(&self) -> usize {
        self.lock().values().map(|s| s.pending.len()).sum()
    }

    /// Applies `f` to an open session, then wakes the flusher if the session filled up.
    fn with_open<T>(
        &self,
        session_id: &str,
        f: impl FnOnce(&mut Session) -> T,
    ) -> Result<T, SessionError> {
        let mut sessions = self.lock();
        let session = sessions
            .get_mut(session_id)
            .ok_or_else(|| SessionError::Unknown(session_id.to_string()))?;
        if session.ended {
            return Err(SessionError::Ended(session_id.to_string()));
        }
        let result = f(session);
        let full = session.pending.len() >= self.flush_records;
        drop(sessions);
        if full {
            self.flush_now.notify_one();
        }
        Ok(result)
    }

    /// Queues a record as is.
    pub fn push(&self, session_id: &str, record: Record) -> Result<(), SessionError> {
        self.with_open(session_id, |session| session.pending.push(record))
    }

    /// Merges a partial state; queues only the part that changes the state.
    /// Returns whether anything changed.
    pub fn update_state(
        &self,
        session_id: &str,
        ts_ms: u64,
        update: &Value,
    ) -> Result<bool, SessionError> {
        self.with_open(session_id, |session| {
            let mut merged = session.state.clone();
            deep_merge(&mut merged, update);
            let Some(diff) = state_diff(&session.state, &merged) else {
                return false;
            };
            session.state = merged;
            session.pending.push(Record::State(StateUpdate {
                ts_ms,
                update: diff,
            }));
            true
        })
    }

    pub fn heartbeat(&self, session_id: &str, ts_ms: u64) -> Result<(), SessionError> {
        self.push(session_id, Record::Heartbeat(Heartbeat { ts_ms }))
    }

    /// Ends a session and flushes it; returns a receiver of its unacknowledged batch count.
    pub fn end(
        &self,
        session_id: &str,
        end: SessionEnd,
    ) -> Result<watch::Receiver<u64>, SessionError> {
        let receiver = self.with_open(session_id, |session| {
            session.pending.push(Record::End(end));
            session.ended = true;
            session.unacked.subscribe()
        })?;
        self.flush_all();
        Ok(receiver)
    }

    /// Ends every open session (the application is gone); returns how many.
    pub fn end_all(&self, end: &SessionEnd) -> usize {
        let mut ended = 0;
        for session in self.lock().values_mut().filter(|s| !s.ended) {
            session.pending.push(Record::End(end.clone()));
            session.ended = true;
            ended += 1;
        }
        self.flush_all();
        ended
    }

    /// Turns every session's pending records into batches for the publisher, and forgets
    /// ended sessions whose batches are all acknowledged.
    pub fn flush_all(&self) {
        let mut outgoing = Vec::new();
        let mut sessions = self.lock();
        for (session_id, session) in sessions.iter_mut() {
            if session.pending.is_empty() {
                continue;
            }
            let records = std::mem::take(&mut session.pending);
            for batch_records in split_records(records, self.max_batch_bytes) {
                let batch = Batch {
                    session_id: session_id.clone(),
                    seq: session.next_seq,
                    records: batch_records,
                };
                match encode_batch(&batch) {
                    Ok(payload) => {
                        session.next_seq += 1;
                        session.unacked.send_modify(|n| *n += 1);
                        outgoing.push(Outgoing {
                            subject: datacat_protocol::subject::session_subject(session_id),
                            msg_id: batch.msg_id(),
                            payload: payload.into(),
                            unacked: session.unacked.clone(),
                        });
                    }
                    // Records come from validated JSON, so this is a bug, not bad input.
                    Err(err) => error!(%session_id, %err, "dropping a batch that does not encode"),
                }
            }
        }
        sessions.retain(|_, s| !(s.ended && s.pending.is_empty() && *s.unacked.borrow() == 0));
        drop(sessions);
        if !outgoing.is_empty() {
            self.publisher.enqueue(outgoing);
        }
    }
}

/// Splits records into chunks whose encoded size stays under `max_bytes` (a single record
/// larger than that travels alone).
fn split_records(records: Vec<Record>, max_bytes: usize) -> Vec<Vec<Record>> {
    let mut chunks = Vec::new();
    let mut current = Vec::new();
    let mut current_bytes = 0;
    for record in records {
        let size = rmp_size(&record);
        if !current.is_empty() && current_bytes + size > max_bytes {
            chunks.push(std::mem::take(&mut current));
            current_bytes = 0;
        }
        current_bytes += size;
        current.push(record);
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    chunks
}

/// Encoded size of one record; a cheap upper-bound guess is not enough when a client logs
/// megabyte-sized data, so measure.
fn rmp_size(record: &Record) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    let _ = rmp_serde::encode::write_named(&mut counter, record);
    counter.0
}

/// Flushes on the interval, or at once when a session fills up.
pub async fn flush_loop(registry: Arc<Registry>, shutdown: CancellationToken) {
    let mut interval = tokio::time::interval(registry.flush_interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = registry.flush_now.notified() => {}
            _ = shutdown.cancelled() => return,
        }
        registry.flush_all();
    }
}

/// Exits once no session is left and everything is delivered, after a short linger in case
/// the application opens another session.
pub async fn exit_when_idle(
    registry: Arc<Registry>,
    linger: Duration,
    shutdown: CancellationToken,
) {
    let mut ever_had_session = false;
    let mut idle_since: Option<tokio::time::Instant> = None;
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let idle = registry.session_count() == 0 && registry.publisher.queued() == 0;
        ever_had_session |= registry.session_count() > 0;
        if !(idle && ever_had_session) {
            idle_since = None;
            continue;
        }
        let since = *idle_since.get_or_insert_with(tokio::time::Instant::now);
        if since.elapsed() >= linger {
            info!("last session delivered; exiting");
            shutdown.cancel();
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use datacat_protocol::record::Heartbeat;

    use super::*;

    #[test]
    fn split_keeps_order_and_respects_the_limit() {
        let records: Vec<Record> = (0..100)
            .map(|i| Record::Heartbeat(Heartbeat { ts_ms: i }))
            .collect();
        let one = rmp_size(&records[0]);
        let chunks = split_records(records.clone(), one * 10);
        assert!(chunks.iter().all(|c| c.len() <= 10));
        assert_eq!(chunks.concat(), records);
        assert_eq!(split_records(records.clone(), usize::MAX).len(), 1);
        assert_eq!(split_records(Vec::new(), 10).len(), 0);
    }
}

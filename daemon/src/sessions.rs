//! Per-session buffers: the change filter, aggregation, heartbeat monitoring, sequencing
//! into batches, and end-of-session bookkeeping.
//!
//! Client calls only append to a session's pending records (under one short lock); the
//! flush loop turns pending records into numbered batches and spools them for publishing.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use datacat_api::calls::Call;
use datacat_protocol::codec::split_by_size;
use datacat_protocol::record::{Alive, DataDropped, HangChange, Heartbeat, StateUpdate};
use datacat_protocol::time::{now_ms, rfc3339_ms};
use datacat_protocol::{
    deep_merge, encode_batch, state_diff, Batch, Record, SessionEnd, SessionStart, Status,
};
use serde_json::{json, Value};
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::aggregate::Aggregates;
use crate::config::Config;
use crate::publisher::{DropReport, Publisher};
use crate::spool::SpoolEntry;

/// Why a call about a session cannot be served.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SessionError {
    #[error("session {0} is not known to this daemon")]
    Unknown(String),
    #[error("session {0} has already ended")]
    Ended(String),
}

/// Hang detection for a session whose client asked for it.
#[derive(Default)]
struct HeartbeatMonitor {
    /// `None` until the client starts monitoring: no monitoring, no false hangs.
    timeout: Option<Duration>,
    paused: bool,
    last_ms: u64,
    hung: bool,
}

struct Session {
    product: String,
    version: String,
    started_ms: u64,
    /// When what the client last sent was cut into a batch (within a flush interval of the
    /// call; no clock is read per call).
    updated_ms: u64,
    pending: Vec<Record>,
    aggregates: Aggregates,
    next_seq: u64,
    /// The merged state as the client sees it, to send only what changed.
    state: Value,
    /// How the session ended, once it has.
    end: Option<SessionEnd>,
    /// The query service the client named for reading the session back.
    query_url: Option<String>,
    heartbeat: HeartbeatMonitor,
    /// When a batch of this session was last cut (for liveness records).
    last_batch_ms: u64,
    unacked: watch::Receiver<u64>,
}

impl Session {
    fn ended(&self) -> bool {
        self.end.is_some()
    }

    /// The sequence number of the last batch cut, if any.
    fn last_seq(&self) -> Option<u64> {
        self.next_seq.checked_sub(1)
    }

    /// The session in the shape the query service answers with, from what the daemon
    /// holds: its state, but no events, metrics or history (those are not kept here).
    fn local_view(&self, session_id: &str) -> Value {
        let status = match &self.end {
            Some(end) => Status::from(end.status),
            None if self.heartbeat.hung => Status::Hung,
            None => Status::Active,
        };
        let end = self.end.as_ref();
        json!({
            "id": session_id,
            "product": self.product,
            "version": self.version,
            "status": status,
            "end_reason": end.map(|e| e.reason.as_str()).unwrap_or_default(),
            "active": status == Status::Active,
            "crashed": status == Status::Crashed,
            "hung": status == Status::Hung,
            "created_at": rfc3339_ms(self.started_ms),
            "updated_at": rfc3339_ms(self.updated_ms),
            "ended_at": end.map(|e| rfc3339_ms(e.ts_ms)),
            "state": self.state,
            "state_history": [],
            "events": [],
            "metrics": [],
        })
    }

    /// What only the daemon knows: its queue and its hang monitor.
    fn bookkeeping(&self) -> Value {
        json!({
            "pending_records": self.pending.len(),
            "unacked_batches": *self.unacked.borrow(),
            "next_seq": self.next_seq,
            "heartbeat_monitor": {
                "enabled": self.heartbeat.timeout.is_some(),
                "timeout_seconds": self.heartbeat.timeout.map(|t| t.as_secs_f64()),
                "paused": self.heartbeat.paused,
                "hung": self.heartbeat.hung,
                "last_heartbeat": (self.heartbeat.last_ms > 0).then(|| rfc3339_ms(self.heartbeat.last_ms)),
            },
        })
    }

    fn snapshot(&self, session_id: &str) -> SessionSnapshot {
        let mut view = self.local_view(session_id);
        if let (Value::Object(view), Value::Object(extra)) = (&mut view, self.bookkeeping()) {
            view.extend(extra);
        }
        SessionSnapshot {
            view,
            query_url: self.query_url.clone(),
            last_seq: self.last_seq(),
        }
    }
}

/// A session as the daemon knows it (`GET /session`, `/sessions`): its view in the query
/// service's shape, where to read the rest, and the last batch to wait for there.
#[derive(Debug, Clone)]
pub struct SessionSnapshot {
    pub view: Value,
    pub query_url: Option<String>,
    pub last_seq: Option<u64>,
}

/// How many ended-and-delivered session ids are remembered, so late calls about them get a
/// clear "has ended" rather than "unknown".
const REMEMBERED_ENDED: usize = 10_000;
/// How many ended-and-delivered sessions are kept whole, so a read straight after `end()`
/// still has the daemon's view when the query service cannot answer; and the most bytes
/// of state they keep together.
const REMEMBERED_VIEWS: usize = 256;
const REMEMBERED_VIEW_BYTES: usize = 32 * 1024 * 1024;

#[derive(Default)]
struct Sessions {
    open: HashMap<String, Session>,
    /// Ended sessions already forgotten, newest last.
    ended: VecDeque<String>,
    /// The newest of them whole, newest last, with their states' total size.
    ended_views: VecDeque<(String, SessionSnapshot, usize)>,
    ended_view_bytes: usize,
}

impl Sessions {
    fn remember_ended(&mut self, session_id: String, snapshot: SessionSnapshot) {
        let bytes = snapshot.view["state"].to_string().len();
        self.ended_view_bytes += bytes;
        self.ended_views
            .push_back((session_id.clone(), snapshot, bytes));
        while self.ended_views.len() > REMEMBERED_VIEWS
            || (self.ended_view_bytes > REMEMBERED_VIEW_BYTES && self.ended_views.len() > 1)
        {
            if let Some((_, _, bytes)) = self.ended_views.pop_front() {
                self.ended_view_bytes -= bytes;
            }
        }
        self.ended.push_back(session_id);
        if self.ended.len() > REMEMBERED_ENDED {
            self.ended.pop_front();
        }
    }

    fn has_ended(&self, session_id: &str) -> bool {
        self.ended.iter().any(|id| id == session_id)
    }
}

pub struct Registry {
    sessions: Mutex<Sessions>,
    publisher: Publisher,
    flush_now: Notify,
    flush_records: usize,
    flush_interval: Duration,
    alive_interval_ms: u64,
    pub end_wait: Duration,
    /// When the application last called (any call but health checks and metrics).
    last_call: Mutex<tokio::time::Instant>,
}

impl Registry {
    pub fn new(config: &Config, publisher: Publisher) -> Self {
        Self {
            sessions: Mutex::new(Sessions::default()),
            publisher,
            flush_now: Notify::new(),
            flush_records: config.flush_records,
            flush_interval: Duration::from_millis(config.flush_interval_ms),
            alive_interval_ms: config.alive_interval_ms,
            end_wait: Duration::from_millis(config.end_wait_ms),
            last_call: Mutex::new(tokio::time::Instant::now()),
        }
    }

    /// The application called: it is still using this daemon (reads too).
    pub fn called(&self) {
        *self.last_call.lock().unwrap_or_else(|e| e.into_inner()) = tokio::time::Instant::now();
    }

    fn quiet_for(&self) -> Duration {
        self.last_call
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .elapsed()
    }

    fn lock(&self) -> MutexGuard<'_, Sessions> {
        // A panic while holding the lock cannot leave a session half-updated in a way that
        // matters more than losing every session, so keep serving.
        self.sessions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn publisher(&self) -> &Publisher {
        &self.publisher
    }

    /// Opens a session; its first record says what runs where. Registering an open session
    /// again changes nothing (a client retrying a registration whose answer it missed).
    pub fn register(
        &self,
        session_id: String,
        start: SessionStart,
        query_url: Option<String>,
    ) -> Result<(), SessionError> {
        let mut sessions = self.lock();
        if sessions.open.contains_key(&session_id) {
            return Ok(());
        }
        if sessions.has_ended(&session_id) {
            return Err(SessionError::Ended(session_id));
        }
        let session = Session {
            product: start.product.clone(),
            version: start.version.clone(),
            started_ms: start.ts_ms,
            updated_ms: now_ms(),
            pending: vec![Record::Start(start)],
            aggregates: Aggregates::default(),
            next_seq: 0,
            state: Value::Object(Default::default()),
            end: None,
            query_url,
            heartbeat: HeartbeatMonitor::default(),
            last_batch_ms: now_ms(),
            unacked: self.publisher.track(&session_id),
        };
        sessions.open.insert(session_id, session);
        drop(sessions);
        self.flush_now.notify_one();
        Ok(())
    }

    pub fn session_count(&self) -> usize {
        self.lock().open.len()
    }

    pub fn pending_records(&self) -> usize {
        self.lock().open.values().map(|s| s.pending.len()).sum()
    }

    /// Applies `f` to an open session, then wakes the flusher if the session filled up.
    fn with_open<T>(
        &self,
        session_id: &str,
        f: impl FnOnce(&mut Session) -> T,
    ) -> Result<T, SessionError> {
        let mut sessions = self.lock();
        let Some(session) = sessions.open.get_mut(session_id) else {
            if sessions.has_ended(session_id) {
                return Err(SessionError::Ended(session_id.to_string()));
            }
            return Err(SessionError::Unknown(session_id.to_string()));
        };
        if session.ended() {
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

    /// Applies a client's call to the session: merged, aggregated, or queued as it is.
    pub fn apply(&self, session_id: &str, call: Call) -> Result<(), SessionError> {
        match call {
            Call::State(update) => self
                .update_state(session_id, update.ts_ms, &update.update)
                .map(drop),
            Call::Record(record) => self.push(session_id, record),
            Call::CounterDelta {
                name,
                tags,
                unit,
                delta,
                ..
            } => self.aggregate(session_id, |a| a.add_to_counter(name, tags, unit, delta)),
            Call::Observation {
                name,
                tags,
                unit,
                bounds,
                value,
                ..
            } => self.aggregate(session_id, |a| a.observe(name, tags, unit, &bounds, value)),
            Call::Heartbeat { ts_ms, timeout } => self.heartbeat(session_id, ts_ms, timeout),
        }
    }

    /// Queues a record as is.
    pub fn push(&self, session_id: &str, record: Record) -> Result<(), SessionError> {
        self.with_open(session_id, |session| session.pending.push(record))
    }

    /// Updates an aggregate of the session (sent at the next flush if it changed).
    pub fn aggregate(
        &self,
        session_id: &str,
        f: impl FnOnce(&mut Aggregates),
    ) -> Result<(), SessionError> {
        self.with_open(session_id, |session| f(&mut session.aggregates))
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

    /// A heartbeat: recorded (one pending at most: only the latest matters), ends a hang,
    /// and with `timeout` starts (or retunes) hang monitoring.
    pub fn heartbeat(
        &self,
        session_id: &str,
        ts_ms: u64,
        timeout: Option<Duration>,
    ) -> Result<(), SessionError> {
        self.with_open(session_id, |session| {
            let monitor = &mut session.heartbeat;
            monitor.last_ms = monitor.last_ms.max(ts_ms);
            monitor.paused = false;
            if timeout.is_some() {
                monitor.timeout = timeout;
            }
            if monitor.hung {
                monitor.hung = false;
                let timeout_ms = monitor.timeout.unwrap_or_default().as_millis() as u64;
                session.pending.push(Record::Hang(HangChange {
                    ts_ms,
                    hung: false,
                    last_heartbeat_ms: ts_ms,
                    timeout_ms,
                }));
            }
            match session
                .pending
                .iter_mut()
                .rev()
                .find(|r| matches!(r, Record::Heartbeat(_)))
            {
                Some(Record::Heartbeat(pending)) => pending.ts_ms = pending.ts_ms.max(ts_ms),
                _ => session.pending.push(Record::Heartbeat(Heartbeat { ts_ms })),
            }
        })
    }

    pub fn start_monitor(&self, session_id: &str, timeout: Duration) -> Result<(), SessionError> {
        self.with_open(session_id, |session| {
            let monitor = &mut session.heartbeat;
            monitor.timeout = Some(timeout);
            monitor.paused = false;
            monitor.last_ms = now_ms();
        })
    }

    pub fn stop_monitor(&self, session_id: &str) -> Result<(), SessionError> {
        self.with_open(session_id, |session| session.heartbeat.timeout = None)
    }

    /// Pausing stops hang detection (a long load, a debugger); resuming restarts the clock.
    pub fn pause_monitor(&self, session_id: &str, paused: bool) -> Result<(), SessionError> {
        self.with_open(session_id, |session| {
            session.heartbeat.paused = paused;
            if !paused {
                session.heartbeat.last_ms = now_ms();
            }
        })
    }

    /// Marks monitored sessions whose heartbeat is overdue as hung (once per hang).
    pub fn check_hangs(&self, now: u64) {
        let mut found = false;
        for (session_id, session) in self.lock().open.iter_mut().filter(|(_, s)| !s.ended()) {
            let monitor = &mut session.heartbeat;
            let Some(timeout) = monitor.timeout else {
                continue;
            };
            let timeout_ms = timeout.as_millis() as u64;
            if monitor.paused || monitor.hung || now.saturating_sub(monitor.last_ms) <= timeout_ms {
                continue;
            }
            monitor.hung = true;
            found = true;
            warn!(%session_id, last_heartbeat = %rfc3339_ms(monitor.last_ms), "heartbeat overdue: session hung");
            let change = HangChange {
                ts_ms: now,
                hung: true,
                last_heartbeat_ms: monitor.last_ms,
                timeout_ms,
            };
            session.pending.push(Record::Hang(change));
        }
        if found {
            self.flush_now.notify_one();
        }
    }

    /// Records that some of a session's batches were dropped (reported in the session).
    pub fn report_dropped(&self, report: &DropReport) {
        let reason = "the daemon's spool was full while NATS was unreachable".to_string();
        let dropped = Record::Dropped(DataDropped {
            ts_ms: now_ms(),
            batches: report.batches,
            records: report.records,
            reason,
        });
        let mut sessions = self.lock();
        if let Some(session) = sessions.open.get_mut(&report.session_id) {
            // Even an ended session takes this: the loss belongs in its story.
            session.pending.push(dropped);
            return;
        }
        drop(sessions);
        // A session this daemon does not have (adopted from a dead daemon's spool, or
        // forgotten): the report takes the number of the first batch lost, whose place it
        // fills; the others are gaps ingest records.
        let batch = Batch {
            session_id: report.session_id.clone(),
            seq: report.first_seq,
            records: vec![dropped],
        };
        let spooled = encode_batch(&batch).map(|payload| SpoolEntry {
            session_id: batch.session_id.clone(),
            seq: batch.seq,
            records: 1,
            payload: payload.into(),
        });
        let reported = spooled
            .map_err(|error| error.to_string())
            .and_then(|entry| self.publisher.enqueue(&[entry]).map_err(|e| e.to_string()));
        if let Err(error) = reported {
            warn!(session_id = %report.session_id, batches = report.batches, records = report.records, %error, "the loss of another daemon's session could not be reported to it");
        }
    }

    /// Ends a session and flushes it; returns a receiver of its unacknowledged batch count
    /// and the sequence number of its last batch.
    pub fn end(
        &self,
        session_id: &str,
        end: SessionEnd,
    ) -> Result<(watch::Receiver<u64>, Option<u64>), SessionError> {
        let receiver = self.with_open(session_id, |session| {
            session.pending.push(Record::End(end.clone()));
            session.end = Some(end);
            session.unacked.clone()
        })?;
        self.flush_all();
        let last_seq = self.lock().open.get(session_id).and_then(Session::last_seq);
        Ok((receiver, last_seq))
    }

    /// Ends every open session (the application is gone); returns how many.
    pub fn end_all(&self, end: &SessionEnd) -> usize {
        let mut ended = 0;
        for session in self.lock().open.values_mut().filter(|s| !s.ended()) {
            session.pending.push(Record::End(end.clone()));
            session.end = Some(end.clone());
            ended += 1;
        }
        self.flush_all();
        ended
    }

    /// What the daemon holds of one session, open or recently ended (`GET /session`). What
    /// the client logged is cut into a batch first, so `last_seq` covers all of it.
    pub fn snapshot(&self, session_id: &str) -> Option<SessionSnapshot> {
        self.flush_all();
        let sessions = self.lock();
        if let Some(session) = sessions.open.get(session_id) {
            return Some(session.snapshot(session_id));
        }
        sessions
            .ended_views
            .iter()
            .rev()
            .find(|(id, _, _)| id == session_id)
            .map(|(_, snapshot, _)| snapshot.clone())
    }

    /// Every session the daemon holds, open or recently ended, oldest first
    /// (`GET /sessions`).
    pub fn snapshots(&self) -> Vec<Value> {
        let sessions = self.lock();
        let mut open: Vec<Value> = sessions
            .open
            .iter()
            .map(|(id, session)| session.snapshot(id).view)
            .collect();
        open.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
        let open_ids: std::collections::HashSet<&str> =
            sessions.open.keys().map(String::as_str).collect();
        let ended = sessions
            .ended_views
            .iter()
            .filter(|(id, _, _)| !open_ids.contains(id.as_str()))
            .map(|(_, snapshot, _)| snapshot.view.clone());
        ended.chain(open).collect()
    }

    /// Turns every session's pending records into batches and spools them; forgets ended
    /// sessions whose batches are all acknowledged.
    pub fn flush_all(&self) {
        let now = now_ms();
        let mut entries = Vec::new();
        let mut sessions = self.lock();
        for (session_id, session) in sessions.open.iter_mut() {
            session.pending.extend(session.aggregates.take_changed(now));
            if !session.pending.is_empty() {
                session.updated_ms = now;
            } else if !session.ended()
                && now.saturating_sub(session.last_batch_ms) >= self.alive_interval_ms
            {
                session.pending.push(Record::Alive(Alive { ts_ms: now }));
            }
            if session.pending.is_empty() {
                continue;
            }
            session.last_batch_ms = now;
            let records = std::mem::take(&mut session.pending);
            for batch_records in split_by_size(records, self.publisher.limits.batch_bytes()) {
                let count = batch_records.len() as u32;
                let batch = Batch {
                    session_id: session_id.clone(),
                    seq: session.next_seq,
                    records: batch_records,
                };
                match encode_batch(&batch) {
                    Ok(payload) => {
                        session.next_seq += 1;
                        entries.push(SpoolEntry {
                            session_id: session_id.clone(),
                            seq: batch.seq,
                            records: count,
                            payload: payload.into(),
                        });
                    }
                    // Records come from validated JSON, so this is a bug, not bad input.
                    Err(err) => error!(%session_id, %err, "dropping a batch that does not encode"),
                }
            }
        }
        if !entries.is_empty() {
            if let Err(err) = self.publisher.enqueue(&entries) {
                error!(%err, batches = entries.len(), "cannot write the spool; these batches are lost");
                for entry in &entries {
                    if let Some(session) = sessions.open.get_mut(&entry.session_id) {
                        let reason = format!("the daemon could not write its spool: {err}");
                        let dropped = DataDropped {
                            ts_ms: now,
                            batches: 1,
                            records: u64::from(entry.records),
                            reason,
                        };
                        session.pending.push(Record::Dropped(dropped));
                    }
                }
            }
        }
        let done: Vec<String> = sessions
            .open
            .iter()
            .filter(|(_, s)| s.ended() && s.pending.is_empty() && *s.unacked.borrow() == 0)
            .map(|(id, _)| id.clone())
            .collect();
        for session_id in done {
            if let Some(session) = sessions.open.remove(&session_id) {
                let snapshot = session.snapshot(&session_id);
                sessions.remember_ended(session_id.clone(), snapshot);
            }
            self.publisher.forget(&session_id);
        }
    }
}

/// Flushes on the interval, or at once when a session fills up; checks for hangs.
pub async fn flush_loop(registry: Arc<Registry>, shutdown: CancellationToken) {
    let mut interval = tokio::time::interval(registry.flush_interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = registry.flush_now.notified() => {}
            _ = shutdown.cancelled() => return,
        }
        registry.check_hangs(now_ms());
        registry.flush_all();
    }
}

/// Exits once no session is left and everything is delivered, after a short linger in case
/// the application opens another session, and once the application has not called for as
/// long: one that still reads its ended sessions back (or lists them) keeps its daemon.
pub async fn exit_when_idle(
    registry: Arc<Registry>,
    linger: Duration,
    shutdown: CancellationToken,
) {
    let mut ever_had_session = false;
    let mut idle_since: Option<tokio::time::Instant> = None;
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let sessions = registry.session_count();
        ever_had_session |= sessions > 0;
        let idle = sessions == 0 && registry.publisher.spool.pending_bytes() == 0;
        if !(idle && ever_had_session) {
            idle_since = None;
            continue;
        }
        let since = *idle_since.get_or_insert_with(tokio::time::Instant::now);
        if since.elapsed() >= linger && registry.quiet_for() >= linger {
            info!("last session delivered; exiting");
            shutdown.cancel();
            return;
        }
    }
}

//! Applying one batch to a session's progress: the pure heart of ingest.
//!
//! Given the progress after batch `seq - 1` and batch `seq`, this produces the progress after
//! `seq` and the rows to write. It is deterministic, so a batch applied twice (a redelivery,
//! or two workers racing) produces identical rows, which the warehouse collapses.

use datacat_protocol::codec::{json_size, json_size_bound};
use datacat_protocol::merge::{deep_merge, merge_reporting};
use datacat_protocol::record::{cut_to, StateUpdate, MAX_NAME_BYTES};
use datacat_protocol::time::{believed_ts_ms, epoch_days, rfc3339_ms};
use datacat_protocol::{
    Batch, DataDropped, EndStatus, Event, HangChange, Level, MachineInfo, Metric, Record,
    SessionEnd, SessionStart, Status,
};
use datacat_warehouse::rowbinary::{
    state_text, EventRef, MetricRef, RowKey, StateHistoryRef, StatePathRef,
};
use datacat_warehouse::rows::SessionRow;
use datacat_warehouse::RowSink;

use crate::metric_summary::{self, observe, MetricSummary};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// What ingest remembers about a session between batches (kept in NATS KV).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Progress {
    /// The sequence number of the next batch to apply.
    pub next_seq: u64,
    /// Batches skipped because they never arrived within the wait (recorded, not hidden).
    pub gaps: u64,
    /// Their sequence numbers (the latest 1000), so one arriving late is applied then.
    pub skipped: Vec<u64>,
    pub product: String,
    pub version: String,
    pub machine: MachineInfo,
    pub environment: String,
    pub tags: std::collections::BTreeMap<String, String>,
    pub state: Value,
    pub status: Status,
    pub end_reason: String,
    pub started_ms: u64,
    pub updated_ms: u64,
    pub ended_ms: u64,
    pub last_heartbeat_ms: u64,
    pub event_count: u64,
    pub hang_count: u32,
    pub hung_ms: u64,
    pub dropped_records: u64,
    /// When ingest last applied a batch (ingest's clock): what the lost sweeper trusts.
    pub seen_ms: u64,
    /// Each metric summarised so far (peak, min, sum, points, last).
    pub metrics: std::collections::BTreeMap<String, MetricSummary>,
    /// Batches applied: the version of the summaries' rows (always increasing).
    pub applied_batches: u64,
    /// Records whose time was not believed (too far from when they were received) and
    /// was replaced by the receive time.
    pub retimed_records: u64,
    /// An upper bound of the state's size as JSON (exact after each time it was measured):
    /// the state is measured only when this passes [`MAX_STATE_BYTES`].
    pub state_bytes: u64,
}

/// The largest a session's merged state may grow, as JSON: it lives in the session's
/// progress record, which NATS must be able to store (a message of at most 1 MiB by
/// default). An update that would grow it further is not merged; the session shows why.
pub const MAX_STATE_BYTES: usize = 256 * 1024;

/// The most metric names a session keeps: each has a summary in the progress record.
/// Points of further names are dropped (and counted); the session shows why.
pub const MAX_METRIC_NAMES: usize = 1000;

/// The longest end reason a session keeps (a longer one is cut).
const MAX_END_REASON_BYTES: usize = 4096;

impl Progress {
    fn is_terminal(&self) -> bool {
        self.status.is_terminal()
    }

    /// The session row as of this progress.
    pub fn session_row(&self, session_id: &str) -> SessionRow {
        SessionRow {
            session_id: session_id.to_string(),
            product: self.product.clone(),
            version: self.version.clone(),
            status: self.status.as_str().to_string(),
            end_reason: self.end_reason.clone(),
            started_date: epoch_days(self.started_ms),
            started_ms: self.started_ms,
            updated_ms: self.updated_ms,
            ended_ms: self.ended_ms,
            last_heartbeat_ms: self.last_heartbeat_ms,
            hostname: self.machine.hostname.clone(),
            machine_id: self.machine.machine_id.clone(),
            machine: serde_json::to_string(&self.machine).unwrap_or_default(),
            state: state_text(&self.state),
            event_count: self.event_count,
            last_seq: self.next_seq.saturating_sub(1),
            hang_count: self.hang_count,
            hung_ms: self.hung_ms,
            dropped_records: self.dropped_records,
            gaps: self.gaps,
            seen_ms: self.seen_ms,
            environment: self.environment.clone(),
            tag_keys: self.tags.keys().cloned().collect(),
            tag_values: self.tags.values().cloned().collect(),
        }
    }
}

/// Identifies the sweeper's `session_lost` event: no record of a batch has this index.
const LOST_EVENT_IDX: u32 = u32::MAX;

/// Marks a session whose daemon went silent as `lost`, with its event. Returns false (and
/// changes nothing) when the session already ended.
pub fn mark_lost(
    progress: &mut Progress,
    session_id: &str,
    now_ms: u64,
    reason: &str,
    rows: &mut impl RowSink,
) -> bool {
    if progress.is_terminal() {
        return false;
    }
    progress.status = Status::Lost;
    progress.end_reason = reason.to_string();
    progress.ended_ms = now_ms;
    progress.event_count += 1;
    lost_rows(progress, session_id, rows);
    true
}

/// The rows that show a lost session (again, if an earlier write of them failed).
pub fn lost_rows(progress: &mut Progress, session_id: &str, rows: &mut impl RowSink) {
    let seq = progress.next_seq.saturating_sub(1);
    let (ended_ms, reason) = (progress.ended_ms, progress.end_reason.clone());
    let data = json!({"reason": reason, "last_seen": rfc3339_ms(progress.seen_ms)});
    let event = ("session_lost", Level::Critical, reason.as_str(), data);
    // The event is counted once, by mark_lost; rebuilding the rows must not count it again.
    let event_count = progress.event_count;
    let key = RowKey {
        session_id,
        seq,
        idx: LOST_EVENT_IDX,
        ts_ms: ended_ms,
        date: epoch_days(ended_ms),
        client_ts_ms: 0,
    };
    system_event(progress, rows, key, event);
    progress.event_count = event_count;
    rows.session(progress.session_row(session_id));
}

/// A status transition the system detected, shown on the session's timeline as an event of
/// the `datacat` group.
fn system_event(
    progress: &mut Progress,
    rows: &mut impl RowSink,
    key: RowKey<'_>,
    (name, level, message, data): (&str, Level, &str, Value),
) {
    progress.event_count += 1;
    rows.event(EventRef {
        key,
        name,
        level: level.as_str(),
        category: "datacat",
        group_name: "datacat",
        labels: &[],
        message,
        data: &data,
        exception: "",
    });
}

/// Applies `batch` (whose seq must be `progress.next_seq`, or later when a gap is accepted)
/// and appends its rows to `rows`. `received_ms` is when the batch reached the stream: a
/// record time too far from it is replaced by it (`believed_ts_ms`), the client's kept
/// beside it. Returns how many records were so retimed.
pub fn apply(
    progress: &mut Progress,
    batch: &Batch,
    received_ms: u64,
    rows: &mut impl RowSink,
) -> u64 {
    let session_id = batch.session_id.as_str();
    progress.account_for_gap(batch.seq);
    let mut touched_metrics = std::collections::BTreeSet::new();
    let mut retimed = 0;
    // Points of metric names past the limit: how many, and where the first was.
    let mut refused_points: Option<(RowKey<'_>, u64)> = None;
    for (idx, record) in batch.records.iter().enumerate() {
        let (ts_ms, client_ts_ms) = believed_ts_ms(record.ts_ms(), received_ms);
        retimed += u64::from(client_ts_ms != 0);
        if progress.started_ms == 0 {
            progress.started_ms = ts_ms;
        }
        progress.updated_ms = progress.updated_ms.max(ts_ms);
        let key = RowKey {
            session_id,
            seq: batch.seq,
            idx: idx as u32,
            ts_ms,
            date: epoch_days(ts_ms),
            client_ts_ms,
        };
        let mut at = At {
            progress: &mut *progress,
            rows: &mut *rows,
            key,
        };
        match record {
            Record::Start(start) => at.start(start),
            Record::State(update) => at.state(update),
            Record::Event(event) => at.event(event),
            Record::Metric(metric) if at.takes_metric(&metric.name) => {
                at.metric(metric);
                touched_metrics.insert(metric.name.clone());
            }
            Record::Metric(_) => {
                let (_, points) = refused_points.get_or_insert((key, 0));
                *points += 1;
            }
            Record::Heartbeat(_) => at.heartbeat(),
            Record::End(end) => at.end(end),
            Record::Hang(hang) if hang.hung => at.hang(hang),
            Record::Hang(_) => at.recovery(),
            Record::Dropped(dropped) => at.dropped(dropped),
            Record::Alive(_) => {}
        }
    }
    if let Some((key, points)) = refused_points {
        progress.dropped_records += points;
        let message = format!(
            "{points} metric points dropped: a session keeps at most {MAX_METRIC_NAMES} metric \
             names, each at most {MAX_NAME_BYTES} bytes"
        );
        let data = json!({
            "points": points,
            "max_metric_names": MAX_METRIC_NAMES,
            "max_name_bytes": MAX_NAME_BYTES,
        });
        let event = ("metrics_refused", Level::Error, message.as_str(), data);
        system_event(progress, rows, key, event);
    }
    progress.next_seq = progress.next_seq.max(batch.seq.saturating_add(1));
    // Summaries are versioned by applied batches, not by seq: a late predecessor applied
    // after its successors must still win over the summary written before it.
    progress.applied_batches += 1;
    for row in metric_summary::rows(
        &progress.metrics,
        &touched_metrics,
        session_id,
        progress.applied_batches,
        epoch_days(progress.started_ms),
    ) {
        rows.metric_session(row);
    }
    progress.retimed_records += retimed;
    rows.end_batch(batch.seq);
    retimed
}

impl Progress {
    /// Counts the batches a batch at `seq` jumps over as a gap (remembering them, so one
    /// arriving late is applied then), or closes the gap a late one filled.
    fn account_for_gap(&mut self, seq: u64) {
        if seq < self.next_seq {
            // A predecessor that was given up on: applied now, and no longer a gap.
            if self.skipped.contains(&seq) {
                self.skipped.retain(|skipped| *skipped != seq);
                self.gaps = self.gaps.saturating_sub(1);
            }
        } else if seq > self.next_seq {
            self.gaps += seq - self.next_seq;
            // A corrupt or absurd seq must not allocate billions of entries.
            let from = self.next_seq.max(seq.saturating_sub(MAX_SKIPPED as u64));
            self.skipped.extend(from..seq);
            let excess = self.skipped.len().saturating_sub(MAX_SKIPPED);
            self.skipped.drain(..excess);
        }
    }
}

/// One record being applied: the session's progress, the rows it adds, and where they sit.
struct At<'a, R> {
    progress: &'a mut Progress,
    rows: &'a mut R,
    key: RowKey<'a>,
}

impl<R: RowSink> At<'_, R> {
    /// A status transition's event sits where the record that caused it sits.
    fn system_event(&mut self, event: (&str, Level, &str, Value)) {
        system_event(self.progress, self.rows, self.key, event);
    }

    fn start(&mut self, start: &SessionStart) {
        let progress = &mut *self.progress;
        // Cut as the door would have refused them (an older client's may be longer).
        progress.product = cut_to(&start.product, MAX_NAME_BYTES).to_string();
        progress.version = cut_to(&start.version, MAX_NAME_BYTES).to_string();
        progress.machine = start.machine.clone();
        // Checked at the door (the daemon, direct writes); a record from elsewhere that is
        // out of bounds keeps none of them rather than some.
        if datacat_protocol::record::labels_refusal(&start.environment, &start.tags).is_none() {
            progress.environment = start.environment.clone();
            progress.tags = start.tags.clone();
        }
        progress.started_ms = self.key.ts_ms;
    }

    /// Whether the session's state can take `update` within [`MAX_STATE_BYTES`]. Measures
    /// the merged state only when the running bound says it might not.
    fn state_takes(&mut self, update: &Value) -> bool {
        let progress = &mut *self.progress;
        let grown = progress.state_bytes as usize + json_size_bound(update);
        if grown <= MAX_STATE_BYTES {
            // Merging adds at most the update's own text to the state's (bounded here).
            progress.state_bytes = grown as u64;
            return true;
        }
        let mut merged = progress.state.clone();
        deep_merge(&mut merged, update);
        let exact = json_size(&merged);
        if exact <= MAX_STATE_BYTES {
            progress.state_bytes = exact as u64;
            return true;
        }
        progress.state_bytes = json_size(&progress.state) as u64;
        progress.dropped_records += 1;
        let message = format!(
            "a state update was not merged: the state would be {exact} bytes of JSON, and a \
             session's state holds at most {MAX_STATE_BYTES}"
        );
        let data = json!({"state_bytes": exact, "max_state_bytes": MAX_STATE_BYTES});
        self.system_event(("state_refused", Level::Error, &message, data));
        false
    }

    /// Whether a point of metric `name` is kept: its name is known, or there is room for
    /// another ([`MAX_METRIC_NAMES`]) and it is not too long to keep (`MAX_NAME_BYTES`).
    fn takes_metric(&self, name: &str) -> bool {
        let metrics = &self.progress.metrics;
        metrics.contains_key(name)
            || (metrics.len() < MAX_METRIC_NAMES && name.len() <= MAX_NAME_BYTES)
    }

    fn state(&mut self, update: &StateUpdate) {
        if !self.state_takes(&update.update) {
            return;
        }
        let (key, rows) = (self.key, &mut *self.rows);
        // Removal rows (the old value of a leaf that changed or went) make "the state now
        // has" an index range on (path, value), like "ever had".
        merge_reporting(
            &mut self.progress.state,
            &update.update,
            |path, value, removed| {
                rows.state_path(StatePathRef {
                    key,
                    path,
                    value,
                    removed,
                });
            },
        );
        rows.state_history(StateHistoryRef {
            key,
            update: &update.update,
            state: &self.progress.state,
        });
    }

    fn event(&mut self, event: &Event) {
        self.progress.event_count += 1;
        let exception = event
            .exception
            .as_ref()
            .map(|e| serde_json::to_string(e).unwrap_or_default())
            .unwrap_or_default();
        self.rows.event(EventRef {
            key: self.key,
            name: &event.name,
            level: event.level.as_str(),
            category: &event.category,
            group_name: &event.group,
            labels: &event.labels,
            message: &event.message,
            data: &event.data,
            exception: &exception,
        });
    }

    fn metric(&mut self, metric: &Metric) {
        observe(&mut self.progress.metrics, metric, self.key.ts_ms);
        let histogram = metric.histogram.as_ref();
        self.rows.metric(MetricRef {
            key: self.key,
            name: &metric.name,
            kind: metric.kind.as_str(),
            value: metric.value,
            unit: &metric.unit,
            tags: &metric.tags,
            count: histogram.map(|h| h.count).or(metric.count),
            bucket_bounds: histogram.map_or(&[], |h| &h.bounds),
            bucket_counts: histogram.map_or(&[], |h| &h.counts),
            hist_sum: histogram.map(|h| h.sum).unwrap_or_default(),
        })
    }

    fn heartbeat(&mut self) {
        let progress = &mut *self.progress;
        progress.last_heartbeat_ms = progress.last_heartbeat_ms.max(self.key.ts_ms);
    }

    /// The first terminal status wins.
    fn end(&mut self, end: &SessionEnd) {
        if self.progress.is_terminal() {
            return;
        }
        let progress = &mut *self.progress;
        progress.status = end.status.into();
        progress.end_reason = cut_to(&end.reason, MAX_END_REASON_BYTES).to_string();
        progress.ended_ms = self.key.ts_ms;
        if end.status != EndStatus::Ended {
            let name = format!("session_{}", end.status.as_str());
            let data = json!({"reason": end.reason});
            self.system_event((&name, Level::Critical, &end.reason, data));
        }
    }

    fn hang(&mut self, hang: &HangChange) {
        if self.progress.is_terminal() || self.progress.status == Status::Hung {
            return;
        }
        let ts_ms = self.key.ts_ms;
        let progress = &mut *self.progress;
        progress.status = Status::Hung;
        progress.hang_count += 1;
        progress.hung_ms = ts_ms;
        let silent_s = ts_ms.saturating_sub(hang.last_heartbeat_ms) / 1000;
        let message = format!(
            "no heartbeat for {silent_s} s (timeout {} s)",
            hang.timeout_ms / 1000
        );
        let data = json!({
            "last_heartbeat": rfc3339_ms(hang.last_heartbeat_ms),
            "seconds_since_heartbeat": silent_s,
            "timeout_seconds": hang.timeout_ms as f64 / 1000.0,
        });
        self.system_event(("application_appears_hung", Level::Error, &message, data));
    }

    fn recovery(&mut self) {
        if self.progress.status != Status::Hung {
            return;
        }
        self.progress.status = Status::Active;
        let hung_s = self.key.ts_ms.saturating_sub(self.progress.hung_ms) / 1000;
        let message = format!("heartbeats resumed after {hung_s} s");
        let data = json!({"hung_seconds": hung_s});
        self.system_event(("application_recovered", Level::Info, &message, data));
    }

    fn dropped(&mut self, dropped: &DataDropped) {
        self.progress.dropped_records += dropped.records;
        let message = format!(
            "{} records in {} batches dropped: {}",
            dropped.records, dropped.batches, dropped.reason
        );
        let data = json!({"batches": dropped.batches, "records": dropped.records, "reason": dropped.reason});
        self.system_event(("data_dropped", Level::Error, &message, data));
    }
}

/// How many skipped sequence numbers a session remembers.
const MAX_SKIPPED: usize = 1000;

#[cfg(test)]
#[path = "apply_tests.rs"]
mod tests;

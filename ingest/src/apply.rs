//! Applying one batch to a session's progress: the pure heart of ingest.
//!
//! Given the progress after batch `seq - 1` and batch `seq`, this produces the progress after
//! `seq` and the rows to write. It is deterministic, so a batch applied twice (a redelivery,
//! or two workers racing) produces identical rows, which the warehouse collapses.

use datacat_protocol::api::STATUS_ACTIVE;
use datacat_protocol::merge::flatten;
use datacat_protocol::time::{epoch_days, rfc3339_ms};
use datacat_protocol::{deep_merge, Batch, EndStatus, Level, MachineInfo, Record};
use datacat_warehouse::rows::{EventRow, MetricRow, SessionRow, StateHistoryRow, StatePathRow};
use datacat_warehouse::RowSet;

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
    pub state: Value,
    pub status: String,
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
}

impl Progress {
    fn is_terminal(&self) -> bool {
        matches!(self.status.as_str(), "ended" | "crashed" | "lost")
    }

    /// The session row as of this progress.
    pub fn session_row(&self, session_id: &str) -> SessionRow {
        SessionRow {
            session_id: session_id.to_string(),
            product: self.product.clone(),
            version: self.version.clone(),
            status: if self.status.is_empty() {
                STATUS_ACTIVE.to_string()
            } else {
                self.status.clone()
            },
            end_reason: self.end_reason.clone(),
            started_date: epoch_days(self.started_ms),
            started_ms: self.started_ms,
            updated_ms: self.updated_ms,
            ended_ms: self.ended_ms,
            last_heartbeat_ms: self.last_heartbeat_ms,
            hostname: self.machine.hostname.clone(),
            machine_id: self.machine.machine_id.clone(),
            machine: serde_json::to_string(&self.machine).unwrap_or_default(),
            state: state_json(&self.state),
            event_count: self.event_count,
            last_seq: self.next_seq.saturating_sub(1),
            hang_count: self.hang_count,
            hung_ms: self.hung_ms,
            dropped_records: self.dropped_records,
            gaps: self.gaps,
            seen_ms: self.seen_ms,
        }
    }
}

const STATUS_HUNG: &str = "hung";

/// Identifies the sweeper's `session_lost` event: no record of a batch has this index.
const LOST_EVENT_IDX: u32 = u32::MAX;

/// Marks a session whose daemon went silent as `lost`, with its event. Returns false (and
/// changes nothing) when the session already ended.
pub fn mark_lost(
    progress: &mut Progress,
    session_id: &str,
    now_ms: u64,
    reason: &str,
    rows: &mut RowSet,
) -> bool {
    if progress.is_terminal() {
        return false;
    }
    progress.status = "lost".to_string();
    progress.end_reason = reason.to_string();
    progress.ended_ms = now_ms;
    progress.event_count += 1;
    lost_rows(progress, session_id, rows);
    true
}

/// The rows that show a lost session (again, if an earlier write of them failed).
pub fn lost_rows(progress: &mut Progress, session_id: &str, rows: &mut RowSet) {
    let seq = progress.next_seq.saturating_sub(1);
    let (ended_ms, reason) = (progress.ended_ms, progress.end_reason.clone());
    let data = json!({"reason": reason, "last_seen": rfc3339_ms(progress.seen_ms)});
    let event = ("session_lost", Level::Critical, reason.as_str(), data);
    // The event is counted once, by mark_lost; rebuilding the rows must not count it again.
    let event_count = progress.event_count;
    system_event(
        progress,
        rows,
        session_id,
        seq,
        LOST_EVENT_IDX,
        ended_ms,
        event,
    );
    progress.event_count = event_count;
    rows.sessions.push(progress.session_row(session_id));
}

/// Calls `f(path, value, removed)` for every leaf that changed between `before` and
/// `after`: a removal (`removed = true`, the old value) for each leaf that changed or went,
/// then the new value of each leaf that is new or changed. The removal rows are what make
/// "the state now has" an index range on (path, value).
fn changed_paths(
    before: &[(String, Value)],
    after: &[(String, Value)],
    mut f: impl FnMut(&str, &Value, bool),
) {
    let old: std::collections::HashMap<&str, &Value> =
        before.iter().map(|(p, v)| (p.as_str(), v)).collect();
    let new: std::collections::HashMap<&str, &Value> =
        after.iter().map(|(p, v)| (p.as_str(), v)).collect();
    for (path, value) in before {
        if new.get(path.as_str()) != Some(&value) {
            f(path, value, true);
        }
    }
    for (path, value) in after {
        if old.get(path.as_str()) != Some(&value) {
            f(path, value, false);
        }
    }
}

/// How a leaf is stored for lookups: a string as its text, anything else as JSON.
pub fn leaf_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

fn path_row(
    session_id: &str,
    seq: u64,
    idx: u32,
    ts_ms: u64,
    path: &str,
    value: &Value,
    removed: bool,
) -> StatePathRow {
    StatePathRow {
        session_id: session_id.to_string(),
        seq,
        idx,
        ts_ms,
        date: epoch_days(ts_ms),
        path: path.to_string(),
        value: leaf_text(value),
        elements: match value {
            Value::Array(items) => items.iter().map(leaf_text).collect(),
            _ => Vec::new(),
        },
        removed: u8::from(removed),
    }
}

/// A status transition the system detected, shown on the session's timeline as an event of
/// the `datacat` group.
fn system_event(
    progress: &mut Progress,
    rows: &mut RowSet,
    session_id: &str,
    seq: u64,
    idx: u32,
    ts_ms: u64,
    (name, level, message, data): (&str, Level, &str, Value),
) {
    progress.event_count += 1;
    rows.events.push(EventRow {
        session_id: session_id.to_string(),
        seq,
        idx,
        ts_ms,
        date: epoch_days(ts_ms),
        name: name.to_string(),
        level: level.as_str().to_string(),
        category: "datacat".to_string(),
        group_name: "datacat".to_string(),
        labels: Vec::new(),
        message: message.to_string(),
        data: data.to_string(),
        exception: String::new(),
    });
}

fn state_json(state: &Value) -> String {
    if state.is_null() {
        "{}".to_string()
    } else {
        state.to_string()
    }
}

/// Applies `batch` (whose seq must be `progress.next_seq`, or later when a gap is accepted)
/// and appends its rows to `rows`.
pub fn apply(progress: &mut Progress, batch: &Batch, rows: &mut RowSet) {
    let session_id = batch.session_id.as_str();
    if batch.seq < progress.next_seq {
        // A predecessor that was given up on: applied now, and no longer a gap.
        if progress.skipped.contains(&batch.seq) {
            progress.skipped.retain(|seq| *seq != batch.seq);
            progress.gaps = progress.gaps.saturating_sub(1);
        }
    } else if batch.seq > progress.next_seq {
        progress.gaps += batch.seq - progress.next_seq;
        // A corrupt or absurd seq must not allocate billions of entries.
        let from = progress
            .next_seq
            .max(batch.seq.saturating_sub(MAX_SKIPPED as u64));
        progress.skipped.extend(from..batch.seq);
        let excess = progress.skipped.len().saturating_sub(MAX_SKIPPED);
        progress.skipped.drain(..excess);
    }
    // The state's leaves after the previous update of this batch: the next update's "before".
    // (Only state updates change the state, so it stays valid between them.)
    let mut leaves: Option<Vec<(String, Value)>> = None;
    let mut touched_metrics = std::collections::BTreeSet::new();
    for (idx, record) in batch.records.iter().enumerate() {
        let ts_ms = record.ts_ms();
        if progress.started_ms == 0 {
            progress.started_ms = ts_ms;
        }
        progress.updated_ms = progress.updated_ms.max(ts_ms);
        let idx = idx as u32;
        let date = epoch_days(ts_ms);
        // A status transition's event sits where the record that caused it sits.
        let system_event_here = |progress: &mut Progress, rows: &mut RowSet, event| {
            system_event(progress, rows, session_id, batch.seq, idx, ts_ms, event)
        };
        match record {
            Record::Start(start) => {
                progress.product = start.product.clone();
                progress.version = start.version.clone();
                progress.machine = start.machine.clone();
                progress.started_ms = start.ts_ms;
            }
            Record::State(update) => {
                let before = leaves.take().unwrap_or_else(|| flatten(&progress.state));
                deep_merge(&mut progress.state, &update.update);
                let after = flatten(&progress.state);
                changed_paths(&before, &after, |path, value, removed| {
                    rows.state_paths.push(path_row(
                        session_id, batch.seq, idx, ts_ms, path, value, removed,
                    ));
                });
                leaves = Some(after);
                rows.state_history.push(StateHistoryRow {
                    session_id: session_id.to_string(),
                    seq: batch.seq,
                    idx,
                    ts_ms,
                    date,
                    update: update.update.to_string(),
                    state: state_json(&progress.state),
                });
            }
            Record::Event(event) => {
                progress.event_count += 1;
                rows.events.push(EventRow {
                    session_id: session_id.to_string(),
                    seq: batch.seq,
                    idx,
                    ts_ms,
                    date,
                    name: event.name.clone(),
                    level: event.level.as_str().to_string(),
                    category: event.category.clone(),
                    group_name: event.group.clone(),
                    labels: event.labels.clone(),
                    message: event.message.clone(),
                    data: event.data.to_string(),
                    exception: event
                        .exception
                        .as_ref()
                        .map(|e| serde_json::to_string(e).unwrap_or_default())
                        .unwrap_or_default(),
                });
            }
            Record::Metric(metric) => {
                observe(&mut progress.metrics, metric, ts_ms);
                touched_metrics.insert(metric.name.clone());
                rows.metrics.push(MetricRow {
                    bucket_bounds: metric
                        .histogram
                        .as_ref()
                        .map(|h| h.bounds.clone())
                        .unwrap_or_default(),
                    bucket_counts: metric
                        .histogram
                        .as_ref()
                        .map(|h| h.counts.clone())
                        .unwrap_or_default(),
                    hist_sum: metric.histogram.as_ref().map(|h| h.sum).unwrap_or_default(),
                    session_id: session_id.to_string(),
                    seq: batch.seq,
                    idx,
                    ts_ms,
                    date,
                    name: metric.name.clone(),
                    kind: metric.kind.as_str().to_string(),
                    value: metric.value,
                    unit: metric.unit.clone(),
                    tags: metric.tags.clone(),
                    count: metric.histogram.as_ref().map(|h| h.count).or(metric.count),
                })
            }
            Record::Heartbeat(_) => {
                progress.last_heartbeat_ms = progress.last_heartbeat_ms.max(ts_ms)
            }
            Record::End(end) => {
                // The first terminal status wins.
                if progress.is_terminal() {
                    continue;
                }
                progress.status = end.status.as_str().to_string();
                progress.end_reason = end.reason.clone();
                progress.ended_ms = ts_ms;
                if end.status != EndStatus::Ended {
                    let name = format!("session_{}", end.status.as_str());
                    let data = json!({"reason": end.reason});
                    system_event_here(progress, rows, (&name, Level::Critical, &end.reason, data));
                }
            }
            Record::Hang(hang) if hang.hung => {
                if progress.is_terminal() || progress.status == STATUS_HUNG {
                    continue;
                }
                progress.status = STATUS_HUNG.to_string();
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
                system_event_here(
                    progress,
                    rows,
                    ("application_appears_hung", Level::Error, &message, data),
                );
            }
            Record::Hang(_) => {
                if progress.status != STATUS_HUNG {
                    continue;
                }
                progress.status = STATUS_ACTIVE.to_string();
                let hung_s = ts_ms.saturating_sub(progress.hung_ms) / 1000;
                let message = format!("heartbeats resumed after {hung_s} s");
                system_event_here(
                    progress,
                    rows,
                    (
                        "application_recovered",
                        Level::Info,
                        &message,
                        json!({"hung_seconds": hung_s}),
                    ),
                );
            }
            Record::Dropped(dropped) => {
                progress.dropped_records += dropped.records;
                let message = format!(
                    "{} records in {} batches dropped: {}",
                    dropped.records, dropped.batches, dropped.reason
                );
                let data = json!({"batches": dropped.batches, "records": dropped.records, "reason": dropped.reason});
                system_event_here(
                    progress,
                    rows,
                    ("data_dropped", Level::Error, &message, data),
                );
            }
            Record::Alive(_) => {}
        }
    }
    if progress.status.is_empty() {
        progress.status = STATUS_ACTIVE.to_string();
    }
    progress.next_seq = progress.next_seq.max(batch.seq.saturating_add(1));
    // Summaries are versioned by applied batches, not by seq: a late predecessor applied
    // after its successors must still win over the summary written before it.
    progress.applied_batches += 1;
    rows.metric_sessions.extend(metric_summary::rows(
        &progress.metrics,
        &touched_metrics,
        session_id,
        progress.applied_batches,
        epoch_days(progress.started_ms),
    ));
}

/// How many skipped sequence numbers a session remembers.
const MAX_SKIPPED: usize = 1000;

#[cfg(test)]
mod tests {
    use datacat_protocol::record::{Heartbeat, StateUpdate};
    use datacat_protocol::{EndStatus, Event, SessionEnd, SessionStart};
    use serde_json::json;

    use super::*;

    fn batch(seq: u64, records: Vec<Record>) -> Batch {
        Batch {
            session_id: "s".into(),
            seq,
            records,
        }
    }

    fn state(ts_ms: u64, update: Value) -> Record {
        Record::State(StateUpdate { ts_ms, update })
    }

    fn end(ts_ms: u64, status: EndStatus) -> Record {
        Record::End(SessionEnd {
            ts_ms,
            status,
            reason: status.as_str().into(),
        })
    }

    #[test]
    fn applies_records_in_order_and_produces_rows() {
        let mut progress = Progress::default();
        let mut rows = RowSet::default();
        apply(
            &mut progress,
            &batch(
                0,
                vec![
                    Record::Start(SessionStart {
                        ts_ms: 10,
                        product: "p".into(),
                        version: "1".into(),
                        machine: Default::default(),
                    }),
                    state(11, json!({"a": {"b": 1}})),
                    Record::Event(Event::named(12, "e")),
                ],
            ),
            &mut rows,
        );
        apply(
            &mut progress,
            &batch(
                1,
                vec![
                    state(13, json!({"a": {"c": 2}})),
                    Record::Heartbeat(Heartbeat { ts_ms: 14 }),
                ],
            ),
            &mut rows,
        );

        assert_eq!(progress.next_seq, 2);
        assert_eq!(progress.state, json!({"a": {"b": 1, "c": 2}}));
        assert_eq!(progress.status, "active");
        assert_eq!(progress.last_heartbeat_ms, 14);
        assert_eq!(rows.state_history.len(), 2);
        assert_eq!(rows.state_history[1].state, r#"{"a":{"b":1,"c":2}}"#);
        assert_eq!(
            (rows.state_history[1].seq, rows.state_history[1].idx),
            (1, 0)
        );
        assert_eq!(rows.events.len(), 1);
        let row = progress.session_row("s");
        assert_eq!(
            (
                row.started_ms,
                row.updated_ms,
                row.last_seq,
                row.event_count
            ),
            (10, 14, 1, 1)
        );
    }

    #[test]
    fn changed_state_leaves_become_path_rows() {
        let mut progress = Progress::default();
        let mut rows = RowSet::default();
        apply(
            &mut progress,
            &batch(
                0,
                vec![state(
                    1,
                    json!({"w": {"open": ["a", "space probe"], "active": "a"}, "n": 1}),
                )],
            ),
            &mut rows,
        );
        apply(
            &mut progress,
            &batch(
                1,
                vec![state(2, json!({"w": {"active": "space probe"}, "n": null}))],
            ),
            &mut rows,
        );
        let paths: Vec<_> = rows
            .state_paths
            .iter()
            .map(|r| {
                (
                    r.seq,
                    r.path.as_str(),
                    r.value.as_str(),
                    r.elements.clone(),
                    r.removed,
                )
            })
            .collect();
        assert_eq!(
            paths,
            vec![
                (
                    0,
                    "w.open",
                    r#"["a","space probe"]"#,
                    vec!["a".to_string(), "space probe".to_string()],
                    0
                ),
                (0, "w.active", "a", vec![], 0),
                (0, "n", "1", vec![], 0),
                // The old values leave (what "now" filters see), then the new one arrives.
                (1, "w.active", "a", vec![], 1),
                (1, "n", "1", vec![], 1),
                (1, "w.active", "space probe", vec![], 0),
            ]
        );
    }

    #[test]
    fn a_lost_session_is_marked_once_and_rows_can_be_rebuilt() {
        let mut progress = Progress {
            next_seq: 4,
            seen_ms: 5,
            status: "active".into(),
            event_count: 2,
            ..Default::default()
        };
        let mut rows = RowSet::default();
        assert!(mark_lost(&mut progress, "s", 9_000, "silent", &mut rows));
        assert_eq!(
            (
                progress.status.as_str(),
                progress.ended_ms,
                progress.event_count
            ),
            ("lost", 9_000, 3)
        );
        let mut again = RowSet::default();
        lost_rows(&mut progress, "s", &mut again);
        assert_eq!(again, rows, "a repair writes the same rows");
        assert_eq!(progress.event_count, 3);
        assert!(
            !mark_lost(&mut progress, "s", 9_500, "silent", &mut RowSet::default()),
            "first terminal status wins"
        );
        assert_eq!(
            (rows.events[0].seq, rows.events[0].name.as_str()),
            (3, "session_lost")
        );
    }

    #[test]
    fn path_rows_do_not_depend_on_how_updates_are_batched() {
        let updates = [
            json!({"w": {"open": ["a"], "active": "a"}}),
            json!({"w": {"open": ["a", "b"]}, "x": 1}),
            json!({"w": null}),
        ];
        let paths = |rows: &RowSet| -> Vec<_> {
            rows.state_paths
                .iter()
                .map(|r| {
                    (
                        r.path.clone(),
                        r.value.clone(),
                        r.elements.clone(),
                        r.removed,
                    )
                })
                .collect()
        };
        let mut together = RowSet::default();
        let records = updates
            .iter()
            .enumerate()
            .map(|(i, u)| state(i as u64, u.clone()))
            .collect();
        apply(&mut Progress::default(), &batch(0, records), &mut together);
        let mut apart = RowSet::default();
        let mut progress = Progress::default();
        for (i, update) in updates.iter().enumerate() {
            apply(
                &mut progress,
                &batch(i as u64, vec![state(i as u64, update.clone())]),
                &mut apart,
            );
        }
        assert_eq!(paths(&together), paths(&apart));
        // Two new leaves; open changes (out, in) and x arrives; open and active go.
        assert_eq!(paths(&together).len(), 7, "{:?}", paths(&together));
    }

    #[test]
    fn first_terminal_status_wins() {
        let mut progress = Progress::default();
        let mut rows = RowSet::default();
        apply(
            &mut progress,
            &batch(0, vec![end(5, EndStatus::Crashed)]),
            &mut rows,
        );
        apply(
            &mut progress,
            &batch(1, vec![end(6, EndStatus::Ended)]),
            &mut rows,
        );
        assert_eq!(
            (progress.status.as_str(), progress.ended_ms),
            ("crashed", 5)
        );
    }

    #[test]
    fn applying_twice_from_the_same_progress_gives_identical_rows() {
        let start = Progress {
            next_seq: 3,
            state: json!({"x": 1}),
            ..Default::default()
        };
        let b = batch(
            3,
            vec![state(1, json!({"y": [1, 2]})), end(2, EndStatus::Ended)],
        );
        let (mut p1, mut r1) = (start.clone(), RowSet::default());
        let (mut p2, mut r2) = (start, RowSet::default());
        apply(&mut p1, &b, &mut r1);
        apply(&mut p2, &b, &mut r2);
        assert_eq!((p1, r1), (p2, r2));
    }

    #[test]
    fn an_accepted_gap_is_counted_and_a_late_predecessor_still_applied() {
        let mut progress = Progress {
            next_seq: 2,
            ..Default::default()
        };
        apply(&mut progress, &batch(5, vec![]), &mut RowSet::default());
        assert_eq!(
            (progress.gaps, progress.next_seq, progress.skipped.clone()),
            (3, 6, vec![2, 3, 4])
        );
        let mut rows = RowSet::default();
        apply(
            &mut progress,
            &batch(3, vec![state(9, json!({"late": true}))]),
            &mut rows,
        );
        assert_eq!(
            (progress.gaps, progress.next_seq, progress.skipped.clone()),
            (2, 6, vec![2, 4])
        );
        assert_eq!(progress.state, json!({"late": true}));
        assert_eq!(rows.state_history.len(), 1);
    }

    #[test]
    fn metric_summaries_count_each_point_once_and_a_late_batch_still_wins() {
        let fps = |ts_ms: u64, value: f64| {
            Record::Metric(datacat_protocol::Metric {
                ts_ms,
                name: "fps".into(),
                kind: datacat_protocol::MetricKind::Gauge,
                value,
                unit: String::new(),
                tags: vec![],
                count: None,
                histogram: None,
            })
        };
        let mut progress = Progress::default();
        let mut rows = RowSet::default();
        apply(&mut progress, &batch(0, vec![fps(1, 10.0)]), &mut rows);
        apply(&mut progress, &batch(2, vec![fps(3, 30.0)]), &mut rows);
        // Batch 1 arrives after 2 (its gap was given up on): applied late, counted once.
        apply(&mut progress, &batch(1, vec![fps(2, 20.0)]), &mut rows);
        let latest = rows
            .metric_sessions
            .iter()
            .max_by_key(|r| r.version)
            .unwrap();
        assert_eq!(latest.version, 3, "versions follow application, not seq");
        assert_eq!((latest.points, latest.sum, latest.peak), (3, 60.0, 30.0));
        assert_eq!(latest.last, 30.0, "the latest point by time");
        let mut again = RowSet::default();
        let mut replay = Progress::default();
        for seq in [0, 2, 1] {
            let value = [10.0, 20.0, 30.0][seq as usize];
            apply(
                &mut replay,
                &batch(seq, vec![fps(seq + 1, value)]),
                &mut again,
            );
        }
        assert_eq!(again.metric_sessions, rows.metric_sessions, "deterministic");
    }

    fn hang(ts_ms: u64, hung: bool) -> Record {
        Record::Hang(datacat_protocol::HangChange {
            ts_ms,
            hung,
            last_heartbeat_ms: 1_000,
            timeout_ms: 5_000,
        })
    }

    #[test]
    fn hang_and_recovery_are_remembered_and_shown_as_events() {
        let mut progress = Progress::default();
        let mut rows = RowSet::default();
        apply(
            &mut progress,
            &batch(0, vec![hang(7_000, true), hang(7_500, true)]),
            &mut rows,
        );
        assert_eq!(
            (
                progress.status.as_str(),
                progress.hang_count,
                progress.hung_ms
            ),
            ("hung", 1, 7_000)
        );
        apply(
            &mut progress,
            &batch(1, vec![hang(9_000, false), hang(9_100, false)]),
            &mut rows,
        );
        assert_eq!(
            (progress.status.as_str(), progress.hang_count),
            ("active", 1)
        );
        let names: Vec<_> = rows
            .events
            .iter()
            .map(|e| (e.name.as_str(), e.level.as_str()))
            .collect();
        assert_eq!(
            names,
            vec![
                ("application_appears_hung", "error"),
                ("application_recovered", "info")
            ]
        );
        assert!(
            rows.events[0]
                .data
                .contains(r#""seconds_since_heartbeat":6"#),
            "{}",
            rows.events[0].data
        );
        assert_eq!(progress.event_count, 2);
    }

    #[test]
    fn a_crash_is_an_event_and_ends_a_hang() {
        let mut progress = Progress::default();
        let mut rows = RowSet::default();
        apply(
            &mut progress,
            &batch(
                0,
                vec![hang(1, true), end(2, EndStatus::Crashed), hang(3, false)],
            ),
            &mut rows,
        );
        assert_eq!(progress.status, "crashed");
        assert_eq!(
            rows.events.last().map(|e| e.name.as_str()),
            Some("session_crashed")
        );
        assert_eq!(rows.events.len(), 2, "no recovery after the end");
    }

    #[test]
    fn drops_are_counted() {
        let mut progress = Progress::default();
        let dropped = Record::Dropped(datacat_protocol::DataDropped {
            ts_ms: 1,
            batches: 2,
            records: 30,
            reason: "spool full".into(),
        });
        apply(
            &mut progress,
            &batch(0, vec![dropped]),
            &mut RowSet::default(),
        );
        assert_eq!(progress.dropped_records, 30);
        assert_eq!(progress.session_row("s").dropped_records, 30);
    }
}

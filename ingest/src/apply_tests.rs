//! Tests of [`super`]: applying batches to a session's progress.

use datacat_protocol::record::{Heartbeat, StateUpdate};
use datacat_protocol::{EndStatus, Event, SessionEnd, SessionStart};
use datacat_warehouse::RowSet;
use serde_json::json;

use super::*;

fn batch(seq: u64, records: Vec<Record>) -> Batch {
    Batch {
        session_id: "s".into(),
        seq,
        records,
    }
}

/// Applies a batch received just after its last record (every time in it believed, as long
/// as they span less than 30 days).
fn apply(progress: &mut Progress, batch: &Batch, rows: &mut impl RowSink) {
    let received_ms = batch.records.iter().map(Record::ts_ms).max().unwrap_or(0);
    super::apply(progress, batch, received_ms, rows);
}

/// A session's progress and the rows its batches produced, applied one batch at a time.
#[derive(Default)]
struct Applied {
    progress: Progress,
    rows: RowSet,
}

impl Applied {
    fn batch(&mut self, seq: u64, records: Vec<Record>) {
        apply(&mut self.progress, &batch(seq, records), &mut self.rows);
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
    let mut session = Applied::default();
    session.batch(
        0,
        vec![
            Record::Start(SessionStart {
                ts_ms: 10,
                product: "p".into(),
                version: "1".into(),
                machine: Default::default(),
                ..Default::default()
            }),
            state(11, json!({"a": {"b": 1}})),
            Record::Event(Event::named(12, "e")),
        ],
    );
    session.batch(
        1,
        vec![
            state(13, json!({"a": {"c": 2}})),
            Record::Heartbeat(Heartbeat { ts_ms: 14 }),
        ],
    );

    assert_eq!(session.progress.next_seq, 2);
    assert_eq!(session.progress.state, json!({"a": {"b": 1, "c": 2}}));
    assert_eq!(session.progress.status, Status::Active);
    assert_eq!(session.progress.last_heartbeat_ms, 14);
    assert_eq!(session.rows.state_history.len(), 2);
    assert_eq!(
        session.rows.state_history[1].state,
        r#"{"a":{"b":1,"c":2}}"#
    );
    assert_eq!(
        (
            session.rows.state_history[1].seq,
            session.rows.state_history[1].idx
        ),
        (1, 0)
    );
    assert_eq!(session.rows.events.len(), 1);
    let row = session.progress.session_row("s");
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
    let mut session = Applied::default();
    session.batch(
        0,
        vec![state(
            1,
            json!({"w": {"open": ["a", "space probe"], "active": "a"}, "n": 1}),
        )],
    );
    session.batch(
        1,
        vec![state(2, json!({"w": {"active": "space probe"}, "n": null}))],
    );
    let paths: Vec<_> = session
        .rows
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
        status: Status::Active,
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
    let mut session = Applied::default();
    session.batch(0, vec![end(5, EndStatus::Crashed)]);
    session.batch(1, vec![end(6, EndStatus::Ended)]);
    assert_eq!(
        (session.progress.status.as_str(), session.progress.ended_ms),
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
    let mut session = Applied::default();
    session.batch(0, vec![fps(1, 10.0)]);
    session.batch(2, vec![fps(3, 30.0)]);
    // Batch 1 arrives after 2 (its gap was given up on): applied late, counted once.
    session.batch(1, vec![fps(2, 20.0)]);
    let latest = session
        .rows
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
    assert_eq!(
        again.metric_sessions, session.rows.metric_sessions,
        "deterministic"
    );
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
    let mut session = Applied::default();
    session.batch(0, vec![hang(7_000, true), hang(7_500, true)]);
    assert_eq!(
        (
            session.progress.status.as_str(),
            session.progress.hang_count,
            session.progress.hung_ms
        ),
        ("hung", 1, 7_000)
    );
    session.batch(1, vec![hang(9_000, false), hang(9_100, false)]);
    assert_eq!(
        (
            session.progress.status.as_str(),
            session.progress.hang_count
        ),
        ("active", 1)
    );
    let names: Vec<_> = session
        .rows
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
        session.rows.events[0]
            .data
            .contains(r#""seconds_since_heartbeat":6"#),
        "{}",
        session.rows.events[0].data
    );
    assert_eq!(session.progress.event_count, 2);
}

#[test]
fn a_crash_is_an_event_and_ends_a_hang() {
    let mut session = Applied::default();
    session.batch(
        0,
        vec![hang(1, true), end(2, EndStatus::Crashed), hang(3, false)],
    );
    assert_eq!(session.progress.status, Status::Crashed);
    assert_eq!(
        session.rows.events.last().map(|e| e.name.as_str()),
        Some("session_crashed")
    );
    assert_eq!(session.rows.events.len(), 2, "no recovery after the end");
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

#[test]
fn a_time_too_far_from_the_receive_time_is_replaced_and_the_clients_kept() {
    let received = 1_800_000_000_000;
    let days = 86_400_000;
    let records = vec![
        Record::Start(SessionStart {
            ts_ms: 0,
            product: "p".into(),
            version: "1".into(),
            machine: MachineInfo::default(),
            ..Default::default()
        }),
        Record::Event(Event::named(received - 31 * days, "old")),
        Record::Event(Event::named(received - 29 * days, "believed")),
        Record::Event(Event::named(received + 3_600_000, "future")),
        state(received + 61_000, json!({"a": 1})),
    ];
    let mut progress = Progress::default();
    let mut rows = RowSet::default();
    let retimed = super::apply(&mut progress, &batch(0, records), received, &mut rows);
    assert_eq!((retimed, progress.retimed_records), (4, 4));
    assert_eq!(progress.started_ms, received);
    let times: Vec<(u64, u64)> = rows
        .events
        .iter()
        .map(|e| (e.ts_ms, e.client_ts_ms))
        .collect();
    assert_eq!(
        times,
        [
            (received, received - 31 * days),
            (received - 29 * days, 0),
            (received, received + 3_600_000),
        ]
    );
    let history = &rows.state_history[0];
    assert_eq!(
        (history.ts_ms, history.client_ts_ms),
        (received, received + 61_000)
    );
    // One day's partition for all of it but the believed event.
    let dates: std::collections::BTreeSet<u16> = rows.events.iter().map(|e| e.date).collect();
    assert_eq!(dates.len(), 2);
}

#[test]
fn a_state_update_past_the_size_limit_is_not_merged_and_the_session_says_so() {
    let chunk = "x".repeat(60 * 1024);
    let mut session = Applied::default();
    for (seq, key) in ["a", "b", "c", "d"].into_iter().enumerate() {
        session.batch(seq as u64, vec![state(1, json!({ key: chunk }))]);
    }
    assert_eq!(session.progress.state.as_object().unwrap().len(), 4);
    // A fifth would take it past 256 KiB: refused, shown, counted.
    session.batch(4, vec![state(2, json!({ "e": chunk }))]);
    assert!(session.progress.state.get("e").is_none());
    assert_eq!(session.progress.dropped_records, 1);
    let refused = session.rows.events.last().unwrap();
    assert_eq!(refused.name, "state_refused");
    assert!(
        refused.message.contains("at most 262144"),
        "{}",
        refused.message
    );
    assert_eq!(session.rows.state_history.len(), 4);
    // Replacing a value instead of adding one still fits, and is merged.
    session.batch(5, vec![state(3, json!({ "a": "small" }))]);
    assert_eq!(session.progress.state["a"], "small");
    assert!(session.progress.state_bytes as usize <= MAX_STATE_BYTES);
    // The running bound never falls below the truth.
    let exact = serde_json::to_string(&session.progress.state)
        .unwrap()
        .len();
    assert!(session.progress.state_bytes as usize >= exact);
}

#[test]
fn points_of_metric_names_past_the_limit_are_dropped_counted_and_shown_once() {
    let point = |name: String| {
        Record::Metric(datacat_protocol::Metric {
            ts_ms: 1,
            name,
            kind: datacat_protocol::MetricKind::Gauge,
            value: 1.0,
            unit: String::new(),
            tags: vec![],
            count: None,
            histogram: None,
        })
    };
    let records = (0..MAX_METRIC_NAMES + 5)
        .map(|i| point(format!("m{i}")))
        .collect();
    let mut session = Applied::default();
    session.batch(0, records);
    assert_eq!(session.progress.metrics.len(), MAX_METRIC_NAMES);
    assert_eq!(session.rows.metrics.len(), MAX_METRIC_NAMES);
    assert_eq!(session.progress.dropped_records, 5);
    let events: Vec<&str> = session
        .rows
        .events
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(events, ["metrics_refused"]);
    // A name the session has keeps being recorded.
    session.batch(1, vec![point("m0".into()), point("new".into())]);
    assert_eq!(session.progress.metrics["m0"].points, 2);
    assert_eq!(session.progress.dropped_records, 6);
}

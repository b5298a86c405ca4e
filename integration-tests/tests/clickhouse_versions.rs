//! The warehouse on current ClickHouse (26.9: chdb-core, ClickHouse in process, behind
//! `integration-tests/chdb/gateway.py`) beside Debian's 18.16 server: the printed schema
//! builds the same tables, ingest writes the same rows, and every read of the query API gives
//! the same answer. What this cannot check is listed in docs/clickhouse-versions.md.

use std::process::Command;
use std::time::Duration;

use datacat_integration_tests::binaries::datacat_bin;
use datacat_integration_tests::chdb::Chdb;
use datacat_integration_tests::same_answers::{assert_every_read_same, assert_same};
use datacat_integration_tests::servers::post_sql;
use datacat_integration_tests::workload::{check_expected, ingested, Workload};
use datacat_integration_tests::{ClickHouse, Stack, Warehouse};
use datacat_protocol::record::{
    Event, ExceptionInfo, Heartbeat, Level, MachineInfo, Metric, SessionEnd, SessionStart,
    StateUpdate,
};
use datacat_protocol::{Batch, EndStatus, Histogram, MetricKind, Record};
use datacat_warehouse::rows::{
    EventRow, MetricRow, MetricSessionRow, SessionRow, StateHistoryRow, StatePathRow,
};
use datacat_warehouse::{migrate, Connection, DetailRows, Maintenance, Reader};
use serde_json::json;

/// `datacat-ingest migrate --print-sql`'s statements for `database` (and a cluster).
fn printed_schema(database: &str, cluster: Option<&str>) -> Vec<String> {
    let mut command = Command::new(datacat_bin("datacat-ingest").unwrap());
    command
        .args(["migrate", "--print-sql"])
        .env("DATACAT_CLICKHOUSE_DATABASE", database)
        .env_remove("DATACAT_CLICKHOUSE_CLUSTER");
    if let Some(cluster) = cluster {
        command.env("DATACAT_CLICKHOUSE_CLUSTER", cluster);
    }
    let output = command.output().unwrap();
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout)
        .unwrap()
        .split(";\n")
        .map(str::trim)
        .filter(|sql| !sql.is_empty())
        .map(str::to_string)
        .collect()
}

const COLUMNS: &str = "SELECT table, name, type FROM system.columns \
    WHERE database = 'datacat' ORDER BY table, name FORMAT TabSeparated";
const APPLIED: &str =
    "SELECT version, name FROM datacat.schema_migrations ORDER BY version FORMAT TabSeparated";

#[tokio::test]
async fn the_printed_schema_builds_the_same_tables_on_current_clickhouse() {
    let (chdb, server) = tokio::join!(Chdb::start(), ClickHouse::start());
    let (chdb, server) = (chdb.unwrap(), server.unwrap());
    migrate(&server.connection("datacat")).await.unwrap();

    // The script as clickhouse-client runs it: each statement in the database of the
    // last `USE`.
    let schema = printed_schema("datacat", None);
    assert!(schema.len() > 10, "{schema:?}");
    let mut url = chdb.url.clone();
    for sql in &schema {
        if let Some(database) = sql.strip_prefix("USE ") {
            url = format!("{}/?database={database}", chdb.url);
            continue;
        }
        post_sql(&url, sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    let current = chdb.sql(COLUMNS).await.unwrap();
    assert!(current.contains("sessions\tlast_seq\tUInt64"), "{current}");
    assert_eq!(current, server.sql(COLUMNS).await.unwrap());
    assert_eq!(
        chdb.sql(APPLIED).await.unwrap(),
        server.sql(APPLIED).await.unwrap()
    );
    // `migrate` on current ClickHouse reads what the printed schema recorded: nothing to do.
    assert_eq!(
        migrate(&chdb.connection("datacat")).await.unwrap(),
        Vec::<u32>::new()
    );
    // And on an empty database it builds the same tables itself.
    migrate(&chdb.connection("again")).await.unwrap();
    let again = chdb
        .sql(&COLUMNS.replace("'datacat'", "'again'"))
        .await
        .unwrap();
    assert_eq!(again, current);

    // The cluster variant cannot run without a cluster here (the replicated test runs it);
    // current ClickHouse's parser takes every statement of it.
    let cluster_schema = printed_schema("datacat", Some("prod"));
    assert!(cluster_schema
        .iter()
        .any(|sql| sql.contains("ReplicatedReplacingMergeTree")));
    for sql in &cluster_schema {
        let quoted = sql.replace('\\', "\\\\").replace('\'', "\\'");
        let formatted = chdb
            .sql(&format!("SELECT formatQuery('{quoted}')"))
            .await
            .unwrap_or_else(|e| panic!("current ClickHouse does not parse {sql}: {e}"));
        assert!(!formatted.trim().is_empty(), "{sql}");
    }
}

/// Sessions the generated workload does not make: machines, exceptions, labels, categories,
/// histograms, timers, a crash with a reason, and one still running.
fn extra_sessions(product: &str, start_ms: u64) -> Vec<Batch> {
    let machine = MachineInfo {
        hostname: "build-agent-7".into(),
        machine_id: "machine-b".into(),
        os_name: "Linux".into(),
        cpu_count: 16,
        ..Default::default()
    };
    let start = |ts_ms: u64, version: &str| {
        Record::Start(SessionStart {
            ts_ms,
            product: product.to_string(),
            version: version.to_string(),
            machine: machine.clone(),
            ..Default::default()
        })
    };
    let mut histogram = Histogram::new(&[0.008, 0.016, 0.033]);
    for value in [0.007, 0.012, 0.015, 0.02, 0.05] {
        histogram.observe(value);
    }
    let event = |ts_ms: u64, name: &str, level: Level| Event {
        ts_ms,
        name: name.into(),
        level,
        category: "ui".into(),
        group: "menus".into(),
        labels: vec!["first".into(), "second".into()],
        message: format!("{name} happened, \"quoted\", ünïcode"),
        data: json!({"nested": {"list": [1, 2.5, null, "x"]}}),
        exception: None,
    };
    let t = start_ms;
    vec![
        Batch {
            session_id: format!("{product}-crashing"),
            seq: 0,
            records: vec![
                start(t, "2.0"),
                Record::State(StateUpdate {
                    ts_ms: t + 10,
                    update: json!({"scene": "map", "window_state": {"open": ["map", "inventory"]}}),
                }),
                Record::Event(event(t + 20, "event_1", Level::Warning)),
                Record::Metric(Metric {
                    kind: MetricKind::Histogram,
                    unit: "s".into(),
                    tags: vec!["gpu".into()],
                    histogram: Some(histogram),
                    ..Metric::gauge(t + 30, "frame_time", 0.0208)
                }),
                Record::Metric(Metric {
                    kind: MetricKind::Timer,
                    count: Some(12),
                    ..Metric::gauge(t + 31, "load_time", 1.25)
                }),
            ],
        },
        Batch {
            session_id: format!("{product}-crashing"),
            seq: 1,
            records: vec![
                Record::State(StateUpdate {
                    ts_ms: t + 40,
                    update: json!({"scene": null, "player": {"level": 3}}),
                }),
                Record::Event(Event {
                    exception: Some(Box::new(ExceptionInfo {
                        type_name: "MemoryError".into(),
                        message: "out of memory".into(),
                        stacktrace: vec!["  File \"game.py\", line 3, in load\n".into()],
                        ..Default::default()
                    })),
                    ..event(t + 50, "load_failed", Level::Error)
                }),
                Record::End(SessionEnd {
                    ts_ms: t + 60,
                    status: EndStatus::Crashed,
                    reason: "out of memory".into(),
                }),
            ],
        },
        Batch {
            session_id: format!("{product}-running"),
            seq: 0,
            records: vec![
                start(t + 5, "1.1"),
                Record::State(StateUpdate {
                    ts_ms: t + 15,
                    update: json!({"scene": "settings", "window_state": {"active": "inventory"}}),
                }),
                Record::Event(event(t + 25, "event_3", Level::Info)),
                Record::Heartbeat(Heartbeat { ts_ms: t + 35 }),
                Record::Metric(Metric::gauge(t + 45, "fps", 59.5)),
            ],
        },
    ]
}

/// Every row of the warehouse as reads see it (`FINAL`: which versions of a row are merged
/// away yet is each server's own business), in one order. `seen_ms` (when ingest last heard
/// of the session) is the receive time: it cannot match.
async fn stored_rows(connection: &Connection) -> String {
    let client = connection.client().unwrap();
    async fn all<T>(client: &clickhouse::Client, table: &str, key: &str) -> Vec<T>
    where
        T: clickhouse::RowOwned + clickhouse::RowRead,
    {
        client
            .query(&format!("SELECT ?fields FROM {table} FINAL ORDER BY {key}"))
            .fetch_all::<T>()
            .await
            .unwrap_or_else(|e| panic!("{table}: {e}"))
    }
    let identity = "session_id, seq, idx";
    let mut sessions: Vec<SessionRow> =
        all(&client, "sessions", "session_id, last_seq, event_count").await;
    for session in &mut sessions {
        session.seen_ms = 0;
    }
    let history: Vec<StateHistoryRow> = all(&client, "state_history", identity).await;
    let paths: Vec<StatePathRow> = all(
        &client,
        "state_paths",
        "session_id, path, seq, idx, value, removed",
    )
    .await;
    let events: Vec<EventRow> = all(&client, "events", identity).await;
    let metrics: Vec<MetricRow> = all(&client, "metrics", identity).await;
    let metric_sessions: Vec<MetricSessionRow> =
        all(&client, "metric_sessions", "name, session_id, version").await;
    format!(
        "{sessions:#?}\n{history:#?}\n{paths:#?}\n{events:#?}\n{metrics:#?}\n{metric_sessions:#?}"
    )
}

/// The first line where two texts differ, with the lines before it.
fn first_difference(expected: &str, actual: &str) -> Option<String> {
    let (want, got): (Vec<&str>, Vec<&str>) =
        (expected.lines().collect(), actual.lines().collect());
    let at = (0..want.len().max(got.len())).find(|&i| want.get(i) != got.get(i))?;
    let context = want[at.saturating_sub(20)..at.min(want.len())].join("\n");
    Some(format!(
        "after\n{context}\nexpected {:?}\nactual   {:?}",
        want.get(at),
        got.get(at)
    ))
}

#[tokio::test]
async fn ingest_and_every_read_agree_on_current_clickhouse() {
    // No session goes lost while the test runs: both stacks must see the same.
    let ingest_env = [("DATACAT_LOST_AFTER_SECS", "3600")];
    let reference = Stack::start_with(&ingest_env).await.unwrap();
    let chdb = Chdb::start().await.unwrap();
    let current = Stack::start_with_warehouse(Warehouse::Chdb(chdb), &ingest_env)
        .await
        .unwrap();

    let product = "versions";
    let workload = Workload::generate(product, 40, 4, 12, 31);
    let start_ms = datacat_protocol::time::now_ms() - 1_800_000;
    let extras = extra_sessions(product, start_ms);
    for stack in [&reference, &current] {
        stack.publish_workload(&workload, 3).await.unwrap();
        stack.publish(&extras).await.unwrap();
    }
    for stack in [&reference, &current] {
        let sessions = ingested(stack, &workload, Duration::from_secs(120)).await;
        check_expected(&workload, &sessions);
        stack
            .wait_status(&format!("{product}-crashing"), "crashed")
            .await
            .unwrap();
        stack
            .wait_for_events(&format!("{product}-running"), Duration::from_secs(60))
            .await
            .unwrap();
    }

    let (reference_db, current_db) = (reference.connection(), current.connection());
    let stored = stored_rows(&reference_db).await;
    assert!(stored.contains("out of memory"), "the extras are stored");
    let difference = first_difference(&stored, &stored_rows(&current_db).await);
    assert!(
        difference.is_none(),
        "ingest wrote different rows to ClickHouse 18.16 and 26.9: {difference:?}"
    );

    // Reads the API does not route: the dashboard's live page and the sweeper's.
    let (reference_reader, current_reader) = (
        Reader::new(&reference_db).unwrap(),
        Reader::new(&current_db).unwrap(),
    );
    let ids: Vec<String> = workload
        .expected
        .keys()
        .take(3)
        .cloned()
        .chain([format!("{product}-crashing"), format!("{product}-running")])
        .collect();
    for id in &ids {
        let live = DetailRows::Latest { limit: 5 };
        let want = reference_reader.session(id, live).await.unwrap();
        assert!(want.is_some(), "{id}");
        assert_eq!(
            want,
            current_reader.session(id, live).await.unwrap(),
            "{id}"
        );
        assert_eq!(
            reference_reader.applied_seq(id).await.unwrap(),
            current_reader.applied_seq(id).await.unwrap()
        );
    }
    let now = datacat_protocol::time::now_ms();
    let (reference_sweep, current_sweep) = (
        Maintenance::new(&reference_db).unwrap(),
        Maintenance::new(&current_db).unwrap(),
    );
    let stale = reference_sweep.stale_sessions(now, 100).await.unwrap();
    assert_eq!(stale, [format!("{product}-running")]);
    assert_eq!(stale, current_sweep.stale_sessions(now, 100).await.unwrap());

    // Every read of the query API.
    let listed = reference
        .get_json("/api/sessions?limit=1000")
        .await
        .unwrap();
    assert_eq!(listed["sessions"].as_array().unwrap().len(), 42);
    let (reads, compared) =
        assert_every_read_same(&reference.query_url, &current.query_url, product, ids)
            .await
            .unwrap();
    eprintln!(
        "{reads} reads ({compared} with further pages) answered the same on ClickHouse 18.16 and 26.9"
    );

    // Retention drops the same partitions, and with them every session.
    let now = datacat_protocol::time::now_ms();
    let keep_from = datacat_protocol::time::iso_date(now + 86_400_000);
    let dropped = reference_sweep
        .drop_partitions_before(&keep_from)
        .await
        .unwrap();
    assert!(dropped > 0);
    assert_eq!(
        dropped,
        current_sweep
            .drop_partitions_before(&keep_from)
            .await
            .unwrap()
    );
    let empty = ["/api/sessions".to_string(), "/api/products".to_string()];
    assert_same(&reference.query_url, &current.query_url, &empty)
        .await
        .unwrap();
}

/// Current ClickHouse refuses an insert that touches more than 100 partitions (18.16 takes
/// it). Sessions from 150 different days, ingested together: every record's time falls in the
/// month before it arrived (older ones are retimed), so no insert is refused.
#[tokio::test]
async fn no_insert_touches_more_partitions_than_current_clickhouse_takes() {
    let chdb = Chdb::start().await.unwrap();
    let stack = Stack::start_with_warehouse(Warehouse::Chdb(chdb), &[])
        .await
        .unwrap();
    let now = datacat_protocol::time::now_ms();
    let day = 86_400_000;
    let batches: Vec<Batch> = (0..150u64)
        .map(|k| {
            let ts = now - k * day;
            Batch {
                session_id: format!("day-{k:03}"),
                seq: 0,
                records: vec![
                    Record::Start(SessionStart {
                        ts_ms: ts,
                        product: "days".into(),
                        version: "1".into(),
                        machine: MachineInfo::default(),
                        ..Default::default()
                    }),
                    Record::Event(Event::named(ts + 1, "started")),
                    Record::Metric(Metric::gauge(ts + 2, "fps", 60.0)),
                    Record::End(SessionEnd {
                        ts_ms: ts + 3,
                        status: EndStatus::Ended,
                        reason: String::new(),
                    }),
                ],
            }
        })
        .collect();
    stack.publish(&batches).await.unwrap();
    for k in (0..150).step_by(7) {
        let id = format!("day-{k:03}");
        stack.wait_status(&id, "ended").await.unwrap();
        let events = stack.session_events(&id).await.unwrap();
        assert_eq!(events.len(), 1, "{id}");
    }
    let listed = stack.get_json("/api/sessions?limit=1000").await.unwrap();
    assert_eq!(listed["sessions"].as_array().unwrap().len(), 150);
    let refused = stack
        .ingest_metric(0, "datacat_ingest_refused_inserts_total")
        .await
        .unwrap();
    assert_eq!(refused, 0, "current ClickHouse refused an insert");
    let retimed = stack
        .ingest_metric(0, "datacat_ingest_retimed_records_total")
        .await
        .unwrap();
    assert!(retimed > 100, "{retimed} records retimed");
}

//! Every row type round-trips through a real ClickHouse server, and migrations are idempotent.

use datacat_integration_tests::ClickHouse;
use datacat_warehouse::rows::{
    EventRow, MetricRow, MetricSessionRow, SessionRow, StateHistoryRow, StatePathRow,
};
use datacat_warehouse::{
    migrate, Connection, EncodedRows, RowSet, WireCompression, Writer, MIGRATIONS,
};

fn rows() -> RowSet {
    let set_path = StatePathRow {
        session_id: "s-1".into(),
        seq: 3,
        idx: 1,
        ts_ms: 1_728_000_000_200,
        date: 20_000,
        path: "a.b".into(),
        value: "[1,2]".into(),
        elements: vec!["1".into(), "2".into()],
        removed: 0,
    };
    RowSet {
        sessions: vec![SessionRow {
            session_id: "s-1".into(),
            product: "game".into(),
            version: "1.0".into(),
            status: "crashed".into(),
            end_reason: "signal 9 (SIGKILL)".into(),
            started_date: 20_000,
            started_ms: 1_728_000_000_123,
            updated_ms: 1_728_000_001_000,
            ended_ms: 1_728_000_002_000,
            last_heartbeat_ms: 1_728_000_000_500,
            hostname: "host-ü".into(),
            machine_id: "abc".into(),
            machine: r#"{"hostname":"host-ü","cpu_count":8}"#.into(),
            state: r#"{"a":{"b":[1,2]}}"#.into(),
            event_count: 2,
            last_seq: u64::MAX - 1,
            hang_count: 2,
            hung_ms: 1_728_000_000_900,
            dropped_records: 17,
            gaps: 1,
            seen_ms: 1_728_000_003_000,
            environment: "prod-ü".into(),
            tag_keys: vec!["branch".into(), "team".into()],
            tag_values: vec!["main".into(), "rendering".into()],
        }],
        state_paths: vec![
            set_path.clone(),
            StatePathRow {
                path: "gone".into(),
                value: String::new(),
                elements: vec![],
                removed: 1,
                ..set_path
            },
        ],
        state_history: vec![StateHistoryRow {
            session_id: "s-1".into(),
            seq: 3,
            idx: 1,
            ts_ms: 1_728_000_000_200,
            date: 20_000,
            update: r#"{"a":{"b":[1,2]}}"#.into(),
            state: r#"{"a":{"b":[1,2]}}"#.into(),
            client_ts_ms: 0,
        }],
        events: vec![EventRow {
            session_id: "s-1".into(),
            seq: 3,
            idx: 2,
            ts_ms: 1_728_000_000_300,
            date: 20_000,
            name: "boom".into(),
            level: "error".into(),
            category: "c".into(),
            group_name: "g".into(),
            labels: vec!["x".into(), "".into()],
            message: "it's \"quoted\"\n".into(),
            data: "{}".into(),
            exception: r#"{"type":"E"}"#.into(),
            client_ts_ms: 4_102_444_800_000,
        }],
        metrics: vec![
            MetricRow {
                session_id: "s-1".into(),
                seq: 3,
                idx: 3,
                ts_ms: 1_728_000_000_400,
                date: 20_000,
                name: "fps".into(),
                kind: "gauge".into(),
                value: -0.25,
                unit: "".into(),
                tags: vec![],
                count: None,
                bucket_bounds: vec![],
                bucket_counts: vec![],
                hist_sum: 0.0,
                client_ts_ms: 1,
            },
            MetricRow {
                session_id: "s-1".into(),
                seq: 3,
                idx: 4,
                ts_ms: 1_728_000_000_400,
                date: 20_000,
                name: "load".into(),
                kind: "timer".into(),
                value: 1e300,
                unit: "seconds".into(),
                tags: vec!["a:b".into()],
                count: Some(7),
                bucket_bounds: vec![0.5, 1.0],
                bucket_counts: vec![3, 0, 4],
                hist_sum: 12.25,
                client_ts_ms: 0,
            },
        ],
        metric_sessions: vec![MetricSessionRow {
            name: "fps".into(),
            session_id: "s-1".into(),
            version: 4,
            date: 20_000,
            peak: 60.5,
            min: -0.25,
            sum: 120.0,
            points: 3,
            last: 59.0,
            last_ts_ms: 1_728_000_000_400,
        }],
    }
}

/// A connection to `database` on the test's server (no credentials).
fn connection(server: &ClickHouse, database: &str) -> Connection {
    Connection {
        url: server.url.clone(),
        database: database.into(),
        user: None,
        password: None,
        cluster: None,
        compression: WireCompression::Lz4,
    }
}

async fn read_all<T: clickhouse::RowOwned + clickhouse::RowRead>(
    client: &clickhouse::Client,
    table: &str,
) -> Vec<T> {
    client
        .query(&format!(
            "SELECT ?fields FROM {table} FINAL ORDER BY session_id"
        ))
        .fetch_all::<T>()
        .await
        .unwrap_or_else(|error| panic!("reading {table}: {error}"))
}

#[tokio::test]
async fn rows_round_trip_and_duplicates_collapse() {
    let server = ClickHouse::start().await.expect("clickhouse starts");
    let connection = connection(&server, "roundtrip");

    let applied = migrate(&connection).await.expect("first migration");
    assert_eq!(
        applied,
        MIGRATIONS.iter().map(|m| m.version).collect::<Vec<_>>()
    );
    assert!(
        migrate(&connection)
            .await
            .expect("second migration")
            .is_empty(),
        "migrations are idempotent"
    );

    let writer = Writer::new(&connection).unwrap();
    let expected = rows();
    // First encoded by ingest's RowBinary writer, as two sets in one insert per table (as
    // ingest writes each session's rows)...
    let (mut first, mut rest) = (RowSet::default(), expected.clone());
    first.sessions = rest.sessions.drain(..1).collect();
    first.events = rest.events.drain(..1).collect();
    first.state_paths = rest.state_paths.drain(..1).collect();
    let sets = [&first, &rest].map(EncodedRows::from_row_set);
    writer.insert_encoded(&sets).await.expect("insert");
    let client = connection.client().unwrap();
    for (table, rows) in [
        ("sessions", expected.sessions.len()),
        ("events", expected.events.len()),
        ("state_paths", expected.state_paths.len()),
        ("metrics", expected.metrics.len()),
    ] {
        let count: u64 = client
            .query(&format!("SELECT count() FROM {table}"))
            .fetch_one()
            .await
            .unwrap();
        assert_eq!(
            count as usize, rows,
            "every set's {table} rows are inserted"
        );
    }
    // ...then again as owned rows, as a redelivered batch would be: FINAL shows each row
    // once, and both copies must read back as the rows they were made from.
    writer.insert(&expected).await.expect("insert again");

    assert_eq!(
        read_all::<SessionRow>(&client, "sessions").await,
        expected.sessions
    );
    assert_eq!(
        read_all::<StateHistoryRow>(&client, "state_history").await,
        expected.state_history
    );
    assert_eq!(
        read_all::<EventRow>(&client, "events").await,
        expected.events
    );
    let mut paths = read_all::<StatePathRow>(&client, "state_paths").await;
    paths.sort_by(|a, b| a.path.cmp(&b.path));
    assert_eq!(paths, expected.state_paths);
    let mut metrics = read_all::<MetricRow>(&client, "metrics").await;
    metrics.sort_by_key(|m| m.idx);
    assert_eq!(metrics, expected.metrics);
    assert_eq!(
        read_all::<MetricSessionRow>(&client, "metric_sessions").await,
        expected.metric_sessions
    );
}

/// ClickHouse's count of blocks it wrote into parts that arrived already sorted by key.
async fn blocks_already_sorted(server: &ClickHouse) -> u64 {
    let blocks = server.written_blocks().await.expect("system.events");
    blocks.already_sorted
}

/// State paths are sent in their table's key order (path, value, session_id, seq, idx),
/// whatever order the sets hold them in, so ClickHouse need not sort them; and no row is
/// lost or changed on the way.
#[tokio::test]
async fn state_paths_arrive_sorted_and_whole() {
    let server = ClickHouse::start().await.expect("clickhouse starts");
    let connection = connection(&server, "sorted");
    migrate(&connection).await.expect("migration");
    let writer = Writer::new(&connection).unwrap();
    let client = connection.client().unwrap();
    let row = |session: &str, seq: u64, idx: u32, path: &str, value: &str| StatePathRow {
        session_id: session.into(),
        seq,
        idx,
        ts_ms: 1_728_000_000_000 + seq,
        date: 20_000,
        path: path.into(),
        value: value.into(),
        elements: if value.starts_with('[') {
            vec![value.into(), "x".into()]
        } else {
            vec![]
        },
        removed: u8::from(value.is_empty()),
    };
    let sets: Vec<RowSet> = ["s-3", "s-1", "s-2"]
        .iter()
        .map(|session| RowSet {
            state_paths: (0..40)
                .map(|n| {
                    let path = ["z.last", "a", "m.middle", "a.b"][n % 4];
                    let value = ["", "10", "9", "[1]", "héllo"][(n * 7) % 5];
                    row(session, 40 - n as u64 / 3, (n % 3) as u32, path, value)
                })
                .collect(),
            ..RowSet::default()
        })
        .collect();
    let mut expected: Vec<StatePathRow> = sets.iter().flat_map(|s| s.state_paths.clone()).collect();

    // The plain row writer sends them as they come: ClickHouse has to sort.
    let before = blocks_already_sorted(&server).await;
    writer.insert(&sets[0]).await.expect("insert");
    assert_eq!(
        blocks_already_sorted(&server).await,
        before,
        "these rows are not in key order"
    );
    client
        .query("TRUNCATE TABLE state_paths")
        .execute()
        .await
        .unwrap();

    let encoded: Vec<EncodedRows> = sets.iter().map(EncodedRows::from_row_set).collect();
    let before = blocks_already_sorted(&server).await;
    writer.insert_encoded(&encoded).await.expect("insert");
    assert_eq!(
        blocks_already_sorted(&server).await,
        before + 1,
        "the one block written came sorted"
    );
    let key = |r: &StatePathRow| {
        (
            r.path.clone(),
            r.value.clone(),
            r.session_id.clone(),
            r.seq,
            r.idx,
        )
    };
    let mut stored = read_all::<StatePathRow>(&client, "state_paths").await;
    stored.sort_by_key(key);
    expected.sort_by_key(key);
    expected.dedup_by_key(|r| key(r));
    assert_eq!(stored, expected);

    // Rows said to be sorted already are sent as they are (these are not: ClickHouse sorts).
    client
        .query("TRUNCATE TABLE state_paths")
        .execute()
        .await
        .unwrap();
    let before = blocks_already_sorted(&server).await;
    writer
        .insert_encoded_presorted(&encoded)
        .await
        .expect("insert");
    assert_eq!(blocks_already_sorted(&server).await, before);
    let mut stored = read_all::<StatePathRow>(&client, "state_paths").await;
    stored.sort_by_key(key);
    assert_eq!(stored, expected);
}

/// Replicas of ingest start together and each migrates: none of them may fail.
#[tokio::test]
async fn concurrent_migrations_all_succeed() {
    let server = ClickHouse::start().await.expect("clickhouse starts");
    let connection = connection(&server, "concurrent");
    let results = futures::future::join_all((0..4).map(|_| migrate(&connection))).await;
    for result in results {
        result.expect("every concurrent migration succeeds");
    }
    let columns: Vec<String> = connection
        .client()
        .unwrap()
        .query(
            "SELECT name FROM system.columns WHERE database = 'concurrent' AND table = 'sessions'",
        )
        .fetch_all()
        .await
        .unwrap();
    assert!(
        columns.contains(&"dropped_records".to_string()),
        "{columns:?}"
    );
}

/// The plain list by start reads a window of the newest rows; with many unmerged versions
/// per session it must still return whole pages of each session's latest version, in order,
/// and its cursor pages must walk every session once (newest first and oldest first).
#[tokio::test]
async fn plain_lists_walk_every_session_once_whatever_the_versions() {
    let server = ClickHouse::start().await.expect("clickhouse starts");
    let connection = connection(&server, "windowed");
    migrate(&connection).await.unwrap();
    let template = rows().sessions.remove(0);
    let writer = Writer::new(&connection).unwrap();
    // 60 sessions; session n has n % 7 + 1 versions, each written in its own insert (parts
    // that are not merged yet); the latest says "ended".
    for version in 0..7u64 {
        let mut set = RowSet::default();
        for n in 0..60u64 {
            if version <= n % 7 {
                let last = version == n % 7;
                set.sessions.push(SessionRow {
                    session_id: format!("w-{n:02}"),
                    started_ms: 1_728_000_000_000 + n * 1000,
                    last_seq: version,
                    status: if last { "ended" } else { "active" }.into(),
                    ..template.clone()
                });
            }
        }
        writer.insert(&set).await.unwrap();
    }
    let reader = datacat_warehouse::Reader::new(&connection).unwrap();
    for order in ["desc", "asc"] {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut text = format!("limit=5&order={order}");
            if let Some(cursor) = &cursor {
                text.push_str(&format!("&cursor={cursor}"));
            }
            let query = datacat_api::answers::SessionQuery::parse(&text, &[]).unwrap();
            let page = reader.list_sessions(&query).await.unwrap();
            for session in &page.sessions {
                assert_eq!(
                    session.status.as_str(),
                    "ended",
                    "{}: the latest version",
                    session.id
                );
            }
            seen.extend(page.sessions.into_iter().map(|s| s.id));
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        let mut expected: Vec<String> = (0..60).map(|n| format!("w-{n:02}")).collect();
        if order == "desc" {
            expected.reverse();
        }
        assert_eq!(seen, expected, "{order}");
    }
}

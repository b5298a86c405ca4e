//! Benchmark: query latency over a large warehouse. Seeds (server-side, `INSERT ... SELECT
//! FROM numbers()`) 1 M sessions, 10 M events, 10 M metric points and 4 M state-path rows,
//! starts `datacat-query` and prints p50 / p95 of:
//!   - the sessions list with a state filter ("now"), target p95 <= 100 ms
//!   - the sessions list with an "ever had" filter
//!   - a metric aggregated across sessions (the seeds' example: peak `memory_usage` of
//!     sessions whose `window.open` contained "space probe"), target p95 <= 500 ms
//!
//! Prints figures; asserts nothing. Run it with `deploy/bench.sh query`.
//!
//! Options (environment): `BENCH_SESSIONS` (1 000 000), `BENCH_EVENTS` (10 000 000),
//! `BENCH_METRICS` (10 000 000), `BENCH_REQUESTS` per question (40).

use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use datacat_bench::measure::env_or;

use datacat_integration_tests::binaries::datacat_bin;
use datacat_integration_tests::process::{free_port, wait_http_ok, ChildGuard};
use datacat_integration_tests::ClickHouse;
use datacat_warehouse::{migrate, Connection, WireCompression};

/// Sessions start one second apart, ending an hour ago.
fn seed_sql(sessions: u64, events: u64, metrics: u64, t0: u64) -> Vec<String> {
    vec![
        format!(
            "INSERT INTO bench.sessions (session_id, product, version, status, end_reason,
                started_date, started_ms, updated_ms, ended_ms, last_heartbeat_ms, hostname,
                machine_id, machine, state, event_count, last_seq, hang_count, hung_ms,
                dropped_records, gaps, seen_ms)
             SELECT concat('s-', toString(number)), concat('product-', toString(number % 5)),
                concat('1.', toString(number % 7)),
                arrayElement(['ended', 'crashed', 'active', 'lost'], (number % 4) + 1), '',
                toDate(toDateTime(intDiv({t0} + number * 1000, 1000))), {t0} + number * 1000,
                {t0} + number * 1000 + 600000, {t0} + number * 1000 + 600000, 0,
                concat('host-', toString(number % 1000)), concat('m-', toString(number % 1000)),
                '{{}}', concat('{{\"pilot\":\"pilot-', toString((number + 1) % 1000), '\"}}'),
                10, 1, 0, 0, 0, 0, 0
             FROM numbers({sessions})"
        ),
        // "pilot" changes once: "now" and "ever" differ. Rows as ingest writes them: the
        // first value; at the change, the old value's removal and the new value.
        format!(
            "INSERT INTO bench.state_paths (session_id, seq, idx, ts_ms, date, path, value,
                elements, removed)
             SELECT concat('s-', toString(intDiv(number, 3))), if(number % 3 = 0, 0, 1), 0,
                {t0} + intDiv(number, 3) * 1000 + if(number % 3 = 0, 0, 1),
                toDate(toDateTime(intDiv({t0} + intDiv(number, 3) * 1000, 1000))), 'pilot',
                concat('pilot-', toString((intDiv(number, 3) + if(number % 3 = 2, 1, 0)) % 1000)),
                [], if(number % 3 = 1, 1, 0)
             FROM numbers({sessions} * 3)"
        ),
        // One session in ten had "space probe" open.
        format!(
            "INSERT INTO bench.state_paths (session_id, seq, idx, ts_ms, date, path, value,
                elements, removed)
             SELECT concat('s-', toString(number)), 0, 1, {t0} + number * 1000,
                toDate(toDateTime(intDiv({t0} + number * 1000, 1000))), 'window.open',
                if(number % 10 = 0, '[\"main menu\",\"space probe\"]', '[\"main menu\"]'),
                if(number % 10 = 0, ['main menu', 'space probe'], ['main menu']), 0
             FROM numbers({sessions})"
        ),
        format!(
            "INSERT INTO bench.events (session_id, seq, idx, ts_ms, date, name, level, category,
                group_name, labels, message, data, exception)
             SELECT concat('s-', toString(number % {sessions})), intDiv(number, {sessions}), 0,
                {t0} + (number % {sessions}) * 1000 + intDiv(number, {sessions}),
                toDate(toDateTime(intDiv({t0} + (number % {sessions}) * 1000, 1000))),
                concat('event_', toString(number % 20)),
                arrayElement(['debug', 'info', 'warning', 'error', 'critical'], (number % 5) + 1),
                'game', '', [], 'something happened', '{{\"n\":1}}', ''
             FROM numbers({events})"
        ),
        format!(
            "INSERT INTO bench.metrics (session_id, seq, idx, ts_ms, date, name, kind, value,
                unit, tags, count, bucket_bounds, bucket_counts, hist_sum)
             SELECT concat('s-', toString(number % {sessions})), intDiv(number, {sessions}), 1,
                {t0} + (number % {sessions}) * 1000 + intDiv(number, {sessions}),
                toDate(toDateTime(intDiv({t0} + (number % {sessions}) * 1000, 1000))),
                if(number % 2 = 0, 'memory_usage', 'fps'), 'gauge',
                toFloat64((number * 7919) % 1000), '', [], NULL, [], [], 0
             FROM numbers({metrics})"
        ),
        // What ingest keeps per session and metric (here computed from the points).
        format!(
            "INSERT INTO bench.metric_sessions (name, session_id, version, date, peak, min, sum,
                points, last, last_ts_ms)
             SELECT name, session_id, max(seq) + 1, any(date), max(value), min(value),
                sum(value), count(), argMax(value, ts_ms), max(ts_ms)
             FROM bench.metrics GROUP BY name, session_id"
        ),
    ]
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// The tables the benchmark seeds (emptied first, merged after).
const SEEDED_TABLES: [&str; 5] = [
    "sessions",
    "state_paths",
    "events",
    "metrics",
    "metric_sessions",
];

#[tokio::main]
async fn main() -> Result<()> {
    let sessions = env_or("BENCH_SESSIONS", 1_000_000u64);
    let events = env_or("BENCH_EVENTS", 10_000_000u64);
    let metrics = env_or("BENCH_METRICS", 10_000_000u64);
    let requests = env_or("BENCH_REQUESTS", 40usize);
    // BENCH_CLICKHOUSE_URL: use a running server (and BENCH_SKIP_SEED=1 to keep its data).
    let (_server, url) = match std::env::var("BENCH_CLICKHOUSE_URL") {
        Ok(url) => (None, url),
        Err(_) => {
            let server = ClickHouse::start().await?;
            let url = server.url.clone();
            (Some(server), url)
        }
    };
    let connection = Connection {
        url: url.clone(),
        database: "bench".into(),
        user: None,
        password: None,
        cluster: None,
        compression: WireCompression::Lz4,
    };
    migrate(&connection).await?;
    let t0 = datacat_protocol::time::now_ms() - sessions * 1000 - 3_600_000;
    let seeding = Instant::now();
    let sql = |text: String| {
        let url = url.clone();
        async move {
            let response = reqwest::Client::new().post(&url).body(text).send().await?;
            let status = response.status();
            let body = response.text().await?;
            ensure!(status.is_success(), "clickhouse answered {status}: {body}");
            Ok(())
        }
    };
    if std::env::var_os("BENCH_SKIP_SEED").is_none() {
        for table in SEEDED_TABLES {
            sql(format!("TRUNCATE TABLE bench.{table}")).await?;
        }
        for text in seed_sql(sessions, events, metrics, t0) {
            sql(text).await?;
        }
        // Merged parts, as a warehouse that has been running a while has them.
        for table in SEEDED_TABLES {
            sql(format!("OPTIMIZE TABLE bench.{table} FINAL")).await?;
        }
    }
    let seeded = seeding.elapsed().as_secs_f64();

    let port = free_port();
    let mut command = std::process::Command::new(datacat_bin("datacat-query")?);
    command
        .env("DATACAT_LISTEN", format!("127.0.0.1:{port}"))
        .env("DATACAT_CLICKHOUSE_URL", &url)
        .env("DATACAT_CLICKHOUSE_DATABASE", "bench")
        .env("RUST_LOG", "warn");
    let log = tempfile::NamedTempFile::new()?;
    let _query = ChildGuard::spawn("datacat-query", command, log.path())?;
    let base = format!("http://127.0.0.1:{port}");
    wait_http_ok(&format!("{base}/health"), Duration::from_secs(30), "query").await?;

    let questions = [
        (
            "list, state now (pilot = pilot-42), 100 per page",
            "/api/sessions?state=pilot%3Dpilot-42&limit=100",
            100.0,
        ),
        (
            "list, ever had (pilot = pilot-42), 100 per page",
            "/api/sessions?ever=pilot%3Dpilot-42&limit=100",
            f64::NAN,
        ),
        (
            "list, no filter, newest 100",
            "/api/sessions?limit=100",
            f64::NAN,
        ),
        (
            "peak memory_usage where window.open contained 'space probe'",
            "/api/metrics/memory_usage/sessions?ever_contains=window.open%3Dspace%20probe&limit=100",
            500.0,
        ),
    ];
    println!(
        "query benchmark: {sessions} sessions, {events} events, {metrics} metric points, {} state-path rows (seeded in {seeded:.1} s)",
        sessions * 4
    );
    let client = reqwest::Client::new();
    for (name, path, target) in questions {
        let mut timings = Vec::with_capacity(requests);
        let mut matched = String::new();
        for i in 0..requests + 3 {
            let started = Instant::now();
            let response = client.get(format!("{base}{path}")).send().await?;
            ensure!(
                response.status().is_success(),
                "{path}: {}",
                response.status()
            );
            let body: serde_json::Value = response.json().await?;
            let took = started.elapsed().as_secs_f64() * 1000.0;
            if i >= 3 {
                timings.push(took);
            }
            matched = match (&body["sessions"], &body["matched_sessions"]) {
                (_, serde_json::Value::Number(n)) => format!("{n} sessions matched"),
                (serde_json::Value::Array(list), _) => format!("{} sessions returned", list.len()),
                _ => String::new(),
            };
        }
        timings.sort_by(f64::total_cmp);
        let target = if target.is_nan() {
            String::new()
        } else {
            format!("   target p95 <= {target:.0} ms")
        };
        println!(
            "  {name:<64} p50 {:>7.1} ms   p95 {:>7.1} ms   ({matched}){target}",
            percentile(&timings, 0.5),
            percentile(&timings, 0.95),
        );
    }
    Ok(())
}

//! The raw-insert baseline: the rows ingest wrote, read back, sorted by each table's key and
//! encoded before any clock starts, then inserted straight into a fresh database and timed.

use std::time::{Duration, Instant};

use anyhow::Result;
use datacat_integration_tests::{ClickHouse, WrittenBlocks};
use datacat_warehouse::rows::{
    EventRow, MetricRow, MetricSessionRow, SessionRow, StateHistoryRow, StatePathRow,
};
use datacat_warehouse::{migrate, Connection, EncodedRows, RowSet, Writer};

use crate::CpuUse;

/// Every row of every table of the database but those of sessions whose id starts with
/// `skipped` (the cool-down workload's, there only to keep ingest busy).
async fn read_rows(connection: &Connection, skipped: &str) -> Result<RowSet> {
    let client = connection.client()?;
    let read = |table: &str| {
        let sql = format!("SELECT ?fields FROM {table} WHERE session_id NOT LIKE ?");
        client.query(&sql).bind(format!("{skipped}%"))
    };
    Ok(RowSet {
        sessions: read("sessions").fetch_all::<SessionRow>().await?,
        state_history: read("state_history").fetch_all::<StateHistoryRow>().await?,
        state_paths: read("state_paths").fetch_all::<StatePathRow>().await?,
        events: read("events").fetch_all::<EventRow>().await?,
        metrics: read("metrics").fetch_all::<MetricRow>().await?,
        metric_sessions: read("metric_sessions")
            .fetch_all::<MetricSessionRow>()
            .await?,
    })
}

/// Sorts every table's rows by the table's key: then every insert of the raw baseline comes
/// sorted, and ClickHouse skips sorting it (as it does for most of ingest's).
fn sort_by_keys(rows: &mut RowSet) {
    rows.sessions
        .sort_by(|a, b| a.session_id.cmp(&b.session_id));
    rows.state_history
        .sort_by(|a, b| (&a.session_id, a.seq, a.idx).cmp(&(&b.session_id, b.seq, b.idx)));
    rows.state_paths.sort_by(|a, b| {
        (&a.path, &a.value, &a.session_id, a.seq, a.idx).cmp(&(
            &b.path,
            &b.value,
            &b.session_id,
            b.seq,
            b.idx,
        ))
    });
    rows.events
        .sort_by(|a, b| (&a.session_id, a.seq, a.idx).cmp(&(&b.session_id, b.seq, b.idx)));
    rows.metrics
        .sort_by(|a, b| (&a.session_id, a.seq, a.idx).cmp(&(&b.session_id, b.seq, b.idx)));
    rows.metric_sessions
        .sort_by(|a, b| (&a.name, &a.session_id).cmp(&(&b.name, &b.session_id)));
}

/// The rows cut into inserts of 100 000 rows per table and encoded (RowBinary, as ingest
/// sends them), before any clock starts.
fn encode_chunks(rows: &RowSet) -> Vec<EncodedRows> {
    let chunk = 100_000;
    (0..rows.row_count().div_ceil(chunk))
        .map(|part| {
            let range = |len: usize| (part * chunk).min(len)..((part + 1) * chunk).min(len);
            EncodedRows::from_row_set(&RowSet {
                sessions: rows.sessions[range(rows.sessions.len())].to_vec(),
                state_history: rows.state_history[range(rows.state_history.len())].to_vec(),
                state_paths: rows.state_paths[range(rows.state_paths.len())].to_vec(),
                events: rows.events[range(rows.events.len())].to_vec(),
                metrics: rows.metrics[range(rows.metrics.len())].to_vec(),
                metric_sessions: rows.metric_sessions[range(rows.metric_sessions.len())].to_vec(),
            })
        })
        .collect()
}

/// The rows read back, split into the warm-up workload's and the measured workload's (by
/// session id, which starts with the workload's product name).
fn split_warmup(rows: RowSet, warmup_prefix: &str) -> (RowSet, RowSet) {
    fn split<T>(rows: Vec<T>, is_warmup: impl Fn(&T) -> bool) -> (Vec<T>, Vec<T>) {
        rows.into_iter().partition(is_warmup)
    }
    let warmup = |id: &str| id.starts_with(warmup_prefix);
    let (sessions, m_sessions) = split(rows.sessions, |r| warmup(&r.session_id));
    let (history, m_history) = split(rows.state_history, |r| warmup(&r.session_id));
    let (paths, m_paths) = split(rows.state_paths, |r| warmup(&r.session_id));
    let (events, m_events) = split(rows.events, |r| warmup(&r.session_id));
    let (metrics, m_metrics) = split(rows.metrics, |r| warmup(&r.session_id));
    let (summaries, m_summaries) = split(rows.metric_sessions, |r| warmup(&r.session_id));
    (
        RowSet {
            sessions,
            state_history: history,
            state_paths: paths,
            events,
            metrics,
            metric_sessions: summaries,
        },
        RowSet {
            sessions: m_sessions,
            state_history: m_history,
            state_paths: m_paths,
            events: m_events,
            metrics: m_metrics,
            metric_sessions: m_summaries,
        },
    )
}

/// The raw insert of the rows ingest wrote, encoded before any clock starts.
pub struct RawRows {
    /// The measured workload's rows, table by table.
    pub tables: String,
    pub warmup_rows: usize,
    pub measured_rows: usize,
    warmup: Vec<EncodedRows>,
    measured: Vec<EncodedRows>,
}

impl RawRows {
    /// The rows a run wrote into `connection`'s database, split into the warm-up's and the
    /// measured workload's, sorted by each table's key and encoded.
    pub async fn read_back(connection: &Connection) -> Result<Self> {
        let rows = read_rows(connection, "cooldown-").await?;
        let (mut warmup_rows, mut measured_rows) = split_warmup(rows, "warmup-");
        sort_by_keys(&mut warmup_rows);
        sort_by_keys(&mut measured_rows);
        let m = &measured_rows;
        let tables = format!(
            "sessions {}, state_history {}, state_paths {}, events {}, metrics {}, metric_sessions {}",
            m.sessions.len(),
            m.state_history.len(),
            m.state_paths.len(),
            m.events.len(),
            m.metrics.len(),
            m.metric_sessions.len()
        );
        Ok(Self {
            tables,
            warmup_rows: warmup_rows.row_count(),
            measured_rows: measured_rows.row_count(),
            warmup: encode_chunks(&warmup_rows),
            measured: encode_chunks(&measured_rows),
        })
    }
}

/// What one raw insert took: the warm-up's rows into an empty database, then the measured
/// workload's rows while ClickHouse still merges the warm-up's parts (as ingest's warm phase
/// does), and the CPU of the second part.
pub struct RawRun {
    warmup_seconds: f64,
    measured_seconds: f64,
    pub measured_cpu: CpuUse,
    /// Rows ClickHouse merged while the measured rows were inserted.
    pub measured_merged: u64,
    /// Blocks ClickHouse wrote over both parts.
    pub blocks: WrittenBlocks,
}

/// The raw inserts timed right after one run. One raw insert is a few seconds of a machine
/// whose speed drifts: in one full run (December 5 2026) the measured rows' raw rate was
/// 1.08, 1.14 and 1.58 M rows/s after the 1-, 2- and 3-worker runs, while ingest's own rate
/// moved less. So each run is compared with the median of a few.
pub struct RawRuns(Vec<RawRun>);

impl RawRuns {
    /// Times the raw insert once into each of `databases`, one after another.
    pub async fn time(
        raw: &RawRows,
        clickhouse: &ClickHouse,
        databases: impl Iterator<Item = Connection>,
    ) -> Result<Self> {
        let mut runs = Vec::new();
        for database in databases {
            runs.push(time_raw_insert(&database, clickhouse, raw).await?);
        }
        Ok(Self(runs))
    }

    pub fn runs(&self) -> &[RawRun] {
        &self.0
    }

    /// The run whose `rate` is the median one (the upper one of an even count).
    pub fn median_by(&self, rate: impl Fn(&RawRun) -> f64) -> &RawRun {
        let mut runs: Vec<&RawRun> = self.0.iter().collect();
        runs.sort_by(|a, b| rate(a).total_cmp(&rate(b)));
        runs[runs.len() / 2]
    }

    /// Every run's `rate`, in the order they were timed.
    pub fn rates(&self, rate: impl Fn(&RawRun) -> f64) -> String {
        let rates: Vec<String> = self
            .0
            .iter()
            .map(|run| format!("{:.0}", rate(run)))
            .collect();
        rates.join(", ")
    }
}

impl RawRun {
    /// Rows/s of all rows, from an empty database: what a cold run is compared with.
    pub fn all_rate(&self, raw: &RawRows) -> f64 {
        (raw.warmup_rows + raw.measured_rows) as f64 / (self.warmup_seconds + self.measured_seconds)
    }

    /// Rows/s of the measured rows after the warm-up's: what a warm run is compared with.
    pub fn measured_rate(&self, raw: &RawRows) -> f64 {
        raw.measured_rows as f64 / self.measured_seconds
    }
}

/// Inserts the rows into a fresh database (dropped afterwards), timing each workload's part.
async fn time_raw_insert(
    connection: &Connection,
    clickhouse: &ClickHouse,
    raw: &RawRows,
) -> Result<RawRun> {
    migrate(connection).await?;
    let writer = Writer::new(connection)?;
    wait_for_merges(connection).await?;
    let blocks_before = clickhouse.written_blocks().await?;
    let started = Instant::now();
    for encoded in &raw.warmup {
        writer
            .insert_encoded_presorted(std::slice::from_ref(encoded))
            .await?;
    }
    let warmup_seconds = started.elapsed().as_secs_f64();
    let cpu_now = || CpuUse::now(&[], clickhouse.pid(), None);
    let merged_before = clickhouse.merged_rows().await?;
    let (started, cpu_start) = (Instant::now(), cpu_now());
    for encoded in &raw.measured {
        writer
            .insert_encoded_presorted(std::slice::from_ref(encoded))
            .await?;
    }
    let measured_seconds = started.elapsed().as_secs_f64();
    let measured_cpu = cpu_now().since(cpu_start);
    let measured_merged = clickhouse.merged_rows().await? - merged_before;
    let blocks = clickhouse.written_blocks().await?.since(blocks_before);
    drop_database(connection, &connection.database).await?;
    Ok(RawRun {
        warmup_seconds,
        measured_seconds,
        measured_cpu,
        measured_merged,
        blocks,
    })
}

/// Waits (up to a minute) until ClickHouse merges no parts: a run measured while the server
/// merges an earlier run's data would be slowed by it.
pub async fn wait_for_merges(connection: &Connection) -> Result<()> {
    let client = connection.client()?;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        let merging: u64 = client
            .query("SELECT count() FROM system.merges")
            .fetch_one()
            .await?;
        if merging == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

pub async fn drop_database(connection: &Connection, database: &str) -> Result<()> {
    let client = connection.client()?;
    client
        .query(&format!("DROP DATABASE IF EXISTS {database}"))
        .execute()
        .await?;
    Ok(())
}

/// What a database's rows take on disk, table by table, once merges are done: compressed
/// bytes per row (for sizing disks: docs/benchmarks.md, Sizing).
pub async fn disk_use(connection: &Connection) -> Result<String> {
    wait_for_merges(connection).await?;
    let client = connection.client()?;
    let tables: Vec<(String, u64, u64)> = client
        .query(
            "SELECT table, sum(rows), sum(bytes_on_disk) FROM system.parts \
             WHERE database = ? AND active GROUP BY table ORDER BY table",
        )
        .bind(&connection.database)
        .fetch_all()
        .await?;
    let (rows, bytes) = tables
        .iter()
        .fold((0, 0), |(rows, bytes), (_, r, b)| (rows + r, bytes + b));
    let each: Vec<String> = tables
        .iter()
        .map(|(table, rows, bytes)| {
            format!("{table} {:.0} B/row", *bytes as f64 / (*rows).max(1) as f64)
        })
        .collect();
    Ok(format!(
        "{:.1} B per row ({rows} rows, {:.1} MB): {}",
        bytes as f64 / rows.max(1) as f64,
        bytes as f64 / 1e6,
        each.join(", ")
    ))
}

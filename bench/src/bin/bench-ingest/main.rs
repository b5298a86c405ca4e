//! Benchmark: rows per second from JetStream into ClickHouse with 1, 2 and 3 ingest workers,
//! against the raw ClickHouse insert rate of the same rows measured in the same run. The
//! workload is published before the clock starts, so the figure is ingest's, not the publisher's.
//! Prints figures; asserts nothing.
//!
//! Two figures per worker count: "cold" counts from starting the workers, "warm" from when
//! they finished a warm-up workload of the same shape queued ahead of the measured one (a
//! running deployment's throughput: a fresh process first pays for faulting in its working
//! set, which on these VMs costs about as much CPU as the work itself). Both clocks stop when
//! the measured workload is all applied, with a cool-down workload of the same shape queued
//! behind it: ingest is pipelined (a group planned, one inserted, one committing), so when
//! the warm-up's last batch is applied a good part of the measured workload is already
//! planned or inserted; the work on the cool-down in flight at the end matches it. (Without
//! it, the warm figure counted that head start as free: with `--max-ack-pending` doubled, a
//! deeper pipeline, it rose from 48 to 72 % of raw while the cold one fell.) Each is compared
//! with the same raw insert, timed in two parts: the warm-up workload's rows into an empty
//! database (cold: all rows), then the measured workload's rows while ClickHouse still merges
//! the warm-up's parts, as it does during ingest's warm phase (warm). The warm figure against
//! the all-rows rate is printed too. Also printed: CPU seconds per million rows of ingest,
//! ClickHouse and NATS, which tell where the time went on a machine whose speed drifts, and
//! how many of the blocks ClickHouse wrote came sorted by their table's key (the raw insert's
//! rows are sorted, so all of its blocks do: the best case for ClickHouse).
//!
//! Run it with `deploy/bench.sh ingest`. Options (environment): `BENCH_SESSIONS` (2000),
//! `BENCH_BATCHES` per session (10), `BENCH_RECORDS` per batch (50), `BENCH_WORKERS` (3: runs
//! 1, 2 and 3 workers), `BENCH_MIN_WORKERS` (1: the first worker count run),
//! `BENCH_RAW_REPEATS` (3: raw inserts timed after each run, whose median is the baseline),
//! `BENCH_LAYOUT` (`shared`: every process on every core; `dedicated`: ClickHouse alone on
//! half the cores, as on its own machine in a deployment, for the raw insert too; see
//! `cores.rs`).

use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use datacat_bench::cores::CoreLayout;
use datacat_bench::measure::{env_or, ProcessUse};
use datacat_ingest::http::groups_series;
use datacat_ingest::insert_reason::InsertReason;
use datacat_integration_tests::binaries::datacat_bin;
use datacat_integration_tests::process::{free_port, wait_http_ok, ChildGuard};
use datacat_integration_tests::stack::metric_at;
use datacat_integration_tests::workload::{Messages, Workload};
use datacat_integration_tests::{ClickHouse, Nats, WrittenBlocks};
use datacat_warehouse::{Connection, WireCompression};

use raw::{disk_use, drop_database, wait_for_merges, RawRows, RawRun, RawRuns};

mod raw;

/// Starts `workers` ingest workers; returns them with their metrics ports.
async fn start_workers(
    nats: &Nats,
    clickhouse: &ClickHouse,
    layout: &CoreLayout,
    workers: usize,
    database: &str,
    logs: &std::path::Path,
    attempt: &str,
) -> Result<(Vec<ChildGuard>, Vec<u16>)> {
    let mut processes = Vec::new();
    let mut ports = Vec::new();
    for w in 0..workers {
        let port = free_port();
        let mut command = std::process::Command::new(datacat_bin("datacat-ingest")?);
        command
            .env("DATACAT_NATS_URL", &nats.url)
            .env("DATACAT_CLICKHOUSE_URL", &clickhouse.url)
            .env("DATACAT_CLICKHOUSE_DATABASE", database)
            // ClickHouse is on this host: LZ4 would only cost CPU (the raw insert skips it too).
            .env("DATACAT_CLICKHOUSE_COMPRESSION", "none")
            .env("DATACAT_LISTEN", format!("127.0.0.1:{port}"))
            .env(
                "RUST_LOG",
                std::env::var("BENCH_INGEST_LOG").unwrap_or_else(|_| "warn".into()),
            );
        let process = ChildGuard::spawn(
            "datacat-ingest",
            command,
            &logs.join(format!("{database}-{attempt}-{w}.log")),
        )?;
        layout.place_other(Some(process.pid()))?;
        processes.push(process);
        ports.push(port);
    }
    for port in &ports {
        wait_http_ok(
            &format!("http://127.0.0.1:{port}/health"),
            Duration::from_secs(30),
            "datacat-ingest",
        )
        .await?;
    }
    Ok((processes, ports))
}

/// What one worker count achieved: rows and seconds from a cold start, and after warm-up.
struct Run {
    workers: usize,
    cold: (u64, f64),
    warm: (u64, f64),
    /// Batches NAKed to wait for a predecessor, and redelivered duplicates, over all workloads.
    waits: u64,
    duplicates: u64,
    /// Messages forwarded to the worker owning their session, and session plans voided.
    forwarded: u64,
    voided: u64,
    /// Progress records read from NATS KV.
    progress_reads: u64,
    /// Inserts (one per group of rounds; each up to one `INSERT` per table).
    inserts: u64,
    /// Groups of rounds sent on to be inserted, by why they went when they did.
    groups: Vec<(&'static str, u64)>,
    /// CPU used over the whole run and during the warm phase.
    cold_cpu: CpuUse,
    warm_cpu: CpuUse,
    /// Rows ClickHouse merged during the warm phase.
    warm_merged: u64,
    /// Blocks ClickHouse wrote over all workloads.
    blocks: WrittenBlocks,
}

/// CPU seconds (and fresh pages mapped) used by each part of the pipeline over a phase:
/// where a run's time went, which a noisy machine's rows/s alone does not tell.
#[derive(Default, Clone, Copy)]
struct CpuUse {
    ingest: ProcessUse,
    clickhouse: ProcessUse,
    nats: ProcessUse,
    /// This benchmark process (the raw insert's client).
    client: ProcessUse,
}

impl CpuUse {
    fn now(ingest: &[u32], clickhouse: Option<u32>, nats: Option<u32>) -> Self {
        let of = |pid: Option<u32>| pid.map_or_else(ProcessUse::default, ProcessUse::of);
        Self {
            ingest: ingest
                .iter()
                .map(|&pid| ProcessUse::of(pid))
                .fold(ProcessUse::default(), |sum, used| sum + used),
            clickhouse: of(clickhouse),
            nats: of(nats),
            client: ProcessUse::of(std::process::id()),
        }
    }

    fn since(self, start: Self) -> Self {
        Self {
            ingest: self.ingest.since(start.ingest),
            clickhouse: self.clickhouse.since(start.clickhouse),
            nats: self.nats.since(start.nats),
            client: self.client.since(start.client),
        }
    }

    fn parts(&self) -> [(&'static str, ProcessUse); 4] {
        [
            ("ingest", self.ingest),
            ("ClickHouse", self.clickhouse),
            ("NATS", self.nats),
            ("benchmark client", self.client),
        ]
    }

    /// CPU seconds per million rows, part by part.
    fn per_million_rows(&self, rows: u64) -> String {
        let per = |seconds: f64| seconds * 1e6 / rows.max(1) as f64;
        let parts: Vec<String> = self
            .parts()
            .iter()
            .map(|(name, used)| format!("{name} {:.2}", per(used.cpu_seconds())))
            .collect();
        parts.join(", ")
    }

    /// How much of each part's CPU time was the kernel's, and the fresh pages it mapped:
    /// on a virtual machine a first touch of memory can cost tens of microseconds a page.
    fn kernel_share(&self) -> String {
        let parts: Vec<String> = self
            .parts()
            .iter()
            .filter(|(_, used)| used.cpu_seconds() > 0.0)
            .map(|(name, used)| {
                format!(
                    "{name} {:.1} of {:.1} s, {} k page faults",
                    used.system_seconds,
                    used.cpu_seconds(),
                    used.minor_faults / 1000
                )
            })
            .collect();
        parts.join("; ")
    }
}

/// Sums a counter over the workers.
async fn total(ports: &[u16], name: &str) -> u64 {
    let mut sum = 0;
    for port in ports {
        sum += metric_at(*port, name).await.unwrap_or(0);
    }
    sum
}

/// Groups the workers sent on to be inserted, by reason (`datacat_ingest_groups_total`).
async fn groups_by_reason(ports: &[u16]) -> Vec<(&'static str, u64)> {
    let mut groups = Vec::new();
    for reason in InsertReason::ALL {
        groups.push((reason.name(), total(ports, &groups_series(reason)).await));
    }
    groups
}

/// Ingests the warm-up, the measured and the cool-down workload with `workers` workers into
/// `database`. All are in JetStream before the clock starts (in that order): this measures
/// ingest, not the publisher. The cold clock includes starting the workers; the warm one
/// starts when the warm-up's messages are all applied; both stop when the measured
/// workload's are (the cool-down's keep the pipeline as full as it was at the warm start).
async fn ingest_run(
    clickhouse: &ClickHouse,
    layout: &CoreLayout,
    [warmup, workload, cooldown]: [&Messages; 3],
    workers: usize,
    database: &str,
    logs: &std::path::Path,
) -> Result<Run> {
    let nats = Nats::start().await?;
    layout.place_other(nats.pid())?;
    // The first start creates the schema, stream and consumer; nothing is published yet.
    let (mut setup, _) =
        start_workers(&nats, clickhouse, layout, workers, database, logs, "setup").await?;
    for process in &mut setup {
        process.terminate(Duration::from_secs(10))?;
    }
    let client =
        datacat_jetstream::connect_client(async_nats::ConnectOptions::new(), &nats.url).await?;
    let jetstream = async_nats::jetstream::new(client);
    warmup.publish(&jetstream).await?;
    workload.publish(&jetstream).await?;
    cooldown.publish(&jetstream).await?;

    let blocks_before = clickhouse.written_blocks().await?;
    // The workers' share counts from their start (from zero).
    let cold_start_cpu = CpuUse::now(&[], clickhouse.pid(), nats.pid());
    let started = Instant::now();
    let (processes, ports) =
        start_workers(&nats, clickhouse, layout, workers, database, logs, "run").await?;
    let ingest_pids: Vec<u32> = processes.iter().map(ChildGuard::pid).collect();
    let cpu_now = || CpuUse::now(&ingest_pids, clickhouse.pid(), nats.pid());
    let warm_messages = warmup.len() as u64;
    let measured_end = warm_messages + workload.len() as u64;
    let all_messages = measured_end + cooldown.len() as u64;
    let (mut warm_start, mut measured_done) = (None, None);
    loop {
        let applied = total(&ports, "datacat_ingest_messages_total").await;
        if warm_start.is_none() && applied >= warm_messages {
            warm_start = Some((Instant::now(), cpu_now(), clickhouse.merged_rows().await?));
        }
        if measured_done.is_none() && applied >= measured_end {
            let merged = clickhouse.merged_rows().await?;
            measured_done = Some((started.elapsed().as_secs_f64(), cpu_now(), merged));
        }
        if applied >= all_messages {
            break;
        }
        ensure!(
            started.elapsed() < Duration::from_secs(900),
            "ingest did not finish ({applied} of {all_messages})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let blocks = clickhouse.written_blocks().await?.since(blocks_before);
    let rows = total(&ports, "datacat_ingest_rows_total").await;
    let (warm_at, warm_start_cpu, warm_start_merged) =
        warm_start.expect("set before the loop ends");
    let (cold_seconds, end_cpu, end_merged) = measured_done.expect("set before the loop ends");
    // Rows are counted when inserted and messages when committed, and a group of rounds
    // inserted together can hold the end of one workload and the start of the next: so a
    // workload's rows are its share of all rows (the three have the same shape).
    let share = |messages: u64| rows * messages / all_messages;
    let measured_rows = share(workload.len() as u64);
    Ok(Run {
        cold_cpu: end_cpu.since(cold_start_cpu),
        warm_cpu: end_cpu.since(warm_start_cpu),
        warm_merged: end_merged - warm_start_merged,
        blocks,
        waits: total(&ports, "datacat_ingest_waits_total").await,
        duplicates: total(&ports, "datacat_ingest_duplicates_total").await,
        forwarded: total(&ports, "datacat_ingest_forwarded_total").await,
        voided: total(&ports, "datacat_ingest_voided_total").await,
        progress_reads: total(&ports, "datacat_ingest_progress_reads_total").await,
        inserts: total(&ports, "datacat_ingest_inserts_total").await,
        groups: groups_by_reason(&ports).await,
        workers,
        cold: (share(measured_end), cold_seconds),
        warm: (
            measured_rows,
            cold_seconds - warm_at.duration_since(started).as_secs_f64(),
        ),
    })
}

#[tokio::main]
async fn main() -> Result<()> {
    let sessions = env_or("BENCH_SESSIONS", 2000usize);
    let batches = env_or("BENCH_BATCHES", 10usize);
    let records = env_or("BENCH_RECORDS", 50usize);
    let max_workers = env_or("BENCH_WORKERS", 3usize).max(1);
    let min_workers = env_or("BENCH_MIN_WORKERS", 1usize).clamp(1, max_workers);
    // Kept encoded: the records themselves take several GB per workload.
    let encoded = |product: &str, seed: u64| {
        Workload::generate(product, sessions, batches, records, seed).messages(0)
    };
    let warmup = encoded("warmup", 7)?;
    let workload = encoded("bench", 11)?;
    let cooldown = encoded("cooldown", 13)?;
    let layout = CoreLayout::from_env()?;
    let clickhouse = ClickHouse::start().await?;
    layout.place_clickhouse(clickhouse.pid())?;
    layout.place_other(Some(std::process::id()))?;
    let logs = tempfile::Builder::new()
        .prefix("bench-ingest-")
        .disable_cleanup(std::env::var_os("BENCH_INGEST_LOG").is_some())
        .tempdir()?;
    if std::env::var_os("BENCH_INGEST_LOG").is_some() {
        eprintln!("ingest logs in {}", logs.path().display());
    }

    let connection = |database: &str| Connection {
        url: clickhouse.url.clone(),
        database: database.into(),
        user: None,
        password: None,
        cluster: None,
        compression: WireCompression::None,
    };
    // After each run, the same rows inserted directly (each into a fresh database on a quiet
    // server): the machine's speed drifts over minutes, so each run is compared with the raw
    // inserts timed right after it (the median of `raw_repeats`).
    let raw_repeats = env_or("BENCH_RAW_REPEATS", 3usize).max(1);
    let mut runs = Vec::new();
    let mut raw: Option<RawRows> = None;
    let mut disk = None;
    for workers in min_workers..=max_workers {
        let database = format!("bench_w{workers}");
        // Each run starts on a quiet server: not merging the previous run's parts.
        wait_for_merges(&connection("default")).await?;
        let run = ingest_run(
            &clickhouse,
            &layout,
            [&warmup, &workload, &cooldown],
            workers,
            &database,
            logs.path(),
        )
        .await?;
        if raw.is_none() {
            raw = Some(RawRows::read_back(&connection(&database)).await?);
            disk = Some(disk_use(&connection(&database)).await?);
        }
        drop_database(&connection("default"), &database).await?;
        let raw = raw.as_ref().expect("read back after the first run");
        let databases =
            (0..raw_repeats).map(|repeat| connection(&format!("bench_raw{workers}_{repeat}")));
        runs.push((run, RawRuns::time(raw, &clickhouse, databases).await?));
    }
    let raw = raw.expect("at least one run");

    println!(
        "ingest benchmark: {sessions} sessions x {batches} batches x {records} records = {} records in {} JetStream messages, between a warm-up and a cool-down workload of the same shape",
        sessions * batches * records,
        workload.len()
    );
    println!("  cores: {}", layout.describe());
    println!("  (cold: the warm-up and measured workloads, clock from starting the workers, against the raw insert of their rows into an empty database;");
    println!("   warm: the measured workload only, against the raw insert of its rows after the warm-up's, which ClickHouse is still merging;");
    println!("   both clocks stop when the measured workload is applied, the cool-down's in flight behind it)");
    let median = |rate: &dyn Fn(&RawRun) -> f64| {
        let mut rates: Vec<f64> = runs
            .iter()
            .flat_map(|(_, raw_runs)| raw_runs.runs().iter().map(rate))
            .collect();
        rates.sort_by(f64::total_cmp);
        let spread = format!(
            "median of {}, from {:.0} to {:.0}",
            rates.len(),
            rates[0],
            rates[rates.len() - 1]
        );
        (rates[rates.len() / 2], spread)
    };
    let (all_rate, all_rates) = median(&|run| run.all_rate(&raw));
    let (measured_rate, measured_rates) = median(&|run| run.measured_rate(&raw));
    println!(
        "  raw ClickHouse insert of the same rows: all {} rows {all_rate:>9.0} rows/s ({all_rates}); the measured {} after the warm-up's {measured_rate:>9.0} rows/s ({measured_rates})",
        raw.warmup_rows + raw.measured_rows,
        raw.measured_rows,
    );
    println!("  the measured rows by table: {}", raw.tables);
    if let Some(disk) = disk {
        println!("  on disk after the first run, the three workloads merged: {disk}");
    }
    for (run, raw_runs) in runs {
        let all_rate = |raw_run: &RawRun| raw_run.all_rate(&raw);
        let measured_rate = |raw_run: &RawRun| raw_run.measured_rate(&raw);
        // The CPU and block figures are those of the raw insert whose measured rate is the median.
        let raw_run = raw_runs.median_by(measured_rate);
        let baselines = [
            all_rate(raw_runs.median_by(all_rate)),
            measured_rate(raw_run),
        ];
        for ((label, (ingested_rows, seconds)), raw_rate) in
            [("cold", run.cold), ("warm", run.warm)]
                .into_iter()
                .zip(baselines)
        {
            let rate = ingested_rows as f64 / seconds;
            println!(
                "  JetStream -> ClickHouse, {} worker(s), {label}  {:>9.0} rows/s ({ingested_rows} rows in {seconds:.2} s)   {:>5.1} % of raw   target >= 60 %",
                run.workers,
                rate,
                100.0 * rate / raw_rate
            );
        }
        println!(
            "    {} worker(s): raw insert right after it, median {:.0} rows/s of all rows ({}), {:.0} rows/s of the measured rows ({}); warm as % of the all-rows rate {:.1} %",
            run.workers,
            baselines[0],
            raw_runs.rates(all_rate),
            baselines[1],
            raw_runs.rates(measured_rate),
            100.0 * run.warm.0 as f64 / run.warm.1 / baselines[0],
        );
        println!(
            "    {} worker(s): {} batches NAKed to wait for a predecessor, {} duplicates skipped; {} messages forwarded to their session's owner, {} session plans voided; {} progress records read from KV; {} inserts of {} rows on average",
            run.workers, run.waits, run.duplicates, run.forwarded, run.voided, run.progress_reads, run.inserts, run.cold.0 / run.inserts.max(1)
        );
        let groups: Vec<String> = run
            .groups
            .iter()
            .map(|(reason, count)| format!("{reason} {count}"))
            .collect();
        println!(
            "    {} worker(s): groups inserted, by why then: {}",
            run.workers,
            groups.join(", ")
        );
        println!(
            "    {} worker(s): CPU seconds per million rows, warm: {}; the raw insert of the measured rows: {}",
            run.workers,
            run.warm_cpu.per_million_rows(run.warm.0),
            raw_run.measured_cpu.per_million_rows(raw.measured_rows as u64),
        );
        println!(
            "    {} worker(s): CPU seconds per million rows, cold: {}",
            run.workers,
            run.cold_cpu.per_million_rows(run.cold.0),
        );
        println!(
            "    {} worker(s): in the kernel, cold: {}",
            run.workers,
            run.cold_cpu.kernel_share(),
        );
        println!(
            "    {} worker(s): in the kernel, warm: {}; the raw insert of the measured rows: {}",
            run.workers,
            run.warm_cpu.kernel_share(),
            raw_run.measured_cpu.kernel_share(),
        );
        println!(
            "    {} worker(s): ClickHouse wrote {} (all three workloads); the raw insert {}",
            run.workers, run.blocks, raw_run.blocks,
        );
        // Merges are work an insert leaves behind, done whenever ClickHouse gets to it, so
        // each clock holds some of its own and of the warm-up's. (On December 5 2026 the raw
        // insert's many small parts made ClickHouse merge 1.7-2.0 rows per row within its
        // clock, ingest's larger inserts 0.75-1.5.)
        println!(
            "    {} worker(s): ClickHouse merged {:.1} M rows in the warm phase ({:.2} per row measured); the raw insert of the measured rows {:.1} M ({:.2})",
            run.workers,
            run.warm_merged as f64 / 1e6,
            run.warm_merged as f64 / run.warm.0.max(1) as f64,
            raw_run.measured_merged as f64 / 1e6,
            raw_run.measured_merged as f64 / raw.measured_rows.max(1) as f64,
        );
    }
    Ok(())
}

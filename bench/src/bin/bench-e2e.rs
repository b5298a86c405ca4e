//! Benchmark: the whole pipeline under a steady load. Starts the stack (release binaries:
//! NATS, ClickHouse, one ingest worker, query) and runs `datacat-loadgen` through real
//! daemons at a target rate: throughput, ingest lag, and freshness p50 / p99 from the client
//! call to visible in the query API (target p99 <= 1 s at 50 000 events/s).
//!
//! Run it with `deploy/bench.sh e2e`. Options (environment): `BENCH_RATE` (50000),
//! `BENCH_SECONDS` (20), `BENCH_APPS` (4), `BENCH_SESSIONS` per app (25).

use std::path::PathBuf;

use anyhow::Result;
use datacat_bench::measure::env_or;
use datacat_integration_tests::binaries::datacat_bin;
use datacat_integration_tests::Stack;
use datacat_loadgen::{run, Config, Via};

#[tokio::main]
async fn main() -> Result<()> {
    let stack = Stack::start().await?;
    let spool: PathBuf = stack.spool_dir();
    let config = Config {
        via: Via::Daemon,
        nats: datacat_jetstream::NatsArgs {
            nats_url: stack.nats_url.clone(),
        },
        query_url: stack.query_url.clone(),
        read_token: None,
        daemon_bin: datacat_bin("datacat-daemon")?,
        spool_dir: Some(spool),
        apps: env_or("BENCH_APPS", 4),
        sessions: env_or("BENCH_SESSIONS", 25),
        rate: env_or("BENCH_RATE", 50_000),
        seconds: env_or("BENCH_SECONDS", 20),
        probes_per_second: 10,
        product: "bench-e2e".into(),
    };
    let report = run(&config).await?;
    println!(
        "end-to-end benchmark (daemons -> JetStream -> 1 ingest worker -> ClickHouse -> query API)"
    );
    println!("{report}");
    Ok(())
}

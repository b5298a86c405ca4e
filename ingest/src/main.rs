//! `datacat-ingest`: JetStream consumer workers that apply session batches in order and
//! write them to ClickHouse. Run any number of them against one stream.

use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Parser;
use tokio_util::sync::CancellationToken;
use tracing::info;

use datacat_ingest::config::{Command, Config};
use datacat_ingest::{http, setup, stats, sweeper, worker};

// Ingest allocates and frees many small values per record; glibc's allocator was half of its
// CPU time (measured with perf in `deploy/bench.sh ingest`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (v3 numbering).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

#[tokio::main]
async fn main() -> Result<()> {
    // Every round allocates and frees its rows; returning that memory to the OS after 10 ms
    // (mimalloc's default) made the kernel zero fresh pages for each round: a quarter of
    // ingest's CPU time in perf. The memory is reused instead.
    // SAFETY: sets a plain integer option; mimalloc reads it on its next purge decision.
    #[allow(unsafe_code)]
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1)
    };
    datacat_service::disable_transparent_huge_pages();
    let config = Config::parse();
    datacat_service::init_tracing();

    let connection = config.clickhouse.connection();
    match config.command.unwrap_or(Command::Run) {
        Command::Migrate { print_sql: true } => {
            let cluster = connection.cluster.as_deref();
            let schema = datacat_warehouse::migrations::schema_sql(&connection.database, cluster)?;
            for sql in schema {
                println!("{sql};\n");
            }
            Ok(())
        }
        Command::Migrate { print_sql: false } => {
            let applied = datacat_warehouse::migrate(&connection)
                .await
                .context("migrating ClickHouse")?;
            info!(?applied, database = %connection.database, "schema is current");
            Ok(())
        }
        Command::Run => run(config, connection).await,
    }
}

async fn run(config: Config, connection: datacat_warehouse::Connection) -> Result<()> {
    datacat_warehouse::migrate(&connection)
        .await
        .context("migrating ClickHouse")?;
    let nats = setup::connect(&config).await?;
    let resources = setup::ensure_patiently(&nats, &config).await?;
    let stats = Arc::new(stats::Stats::default());

    let shutdown = CancellationToken::new();
    tokio::spawn(datacat_service::cancel_on_signal(shutdown.clone()));
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .context("binding /health and /metrics")?;
    info!(addr = %listener.local_addr()?, "datacat-ingest serving /health and /metrics");
    tokio::spawn(http::serve(listener, stats.clone(), shutdown.clone()));

    // One probe of the server's insert settings serves the sweeper and the workers.
    let writer = datacat_warehouse::Writer::connect(&connection).await?;
    let sweeper = sweeper::Sweeper {
        nats: nats.clone(),
        consumer: resources.consumer.clone(),
        stream: resources.stream.clone(),
        worker_id: format!(
            "{}-{}",
            std::process::id(),
            datacat_protocol::time::now_ms()
        ),
        leases: resources.leases.clone(),
        progress: resources.progress.clone(),
        maintenance: datacat_warehouse::Maintenance::new(&connection)?,
        writer: writer.clone(),
        interval: std::time::Duration::from_millis(config.sweep_interval_ms.max(100)),
        lost_after: std::time::Duration::from_secs(config.lost_after_secs),
        retention_days: config.retention_days,
    };
    tokio::spawn(sweeper.run(shutdown.clone()));

    worker::Worker::new(nats, resources, writer, stats, &config, shutdown)
        .run()
        .await
}

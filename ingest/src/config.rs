//! Command-line and environment configuration.

use std::net::SocketAddr;

use clap::{Parser, Subcommand};

/// DataCat ingest worker: consumes session batches from NATS JetStream, merges each
/// session's state in order and writes sessions, state history, events and metrics to
/// ClickHouse. Any number of workers can share one stream.
#[derive(Debug, Clone, Parser)]
#[command(name = "datacat-ingest", version)]
pub struct Config {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// NATS server with JetStream.
    #[arg(
        long,
        global = true,
        env = "DATACAT_NATS_URL",
        default_value = "nats://127.0.0.1:4222"
    )]
    pub nats_url: String,

    #[command(flatten)]
    pub clickhouse: datacat_warehouse::ClickHouseArgs,

    /// Address of the /health and /metrics endpoints.
    #[arg(
        long,
        global = true,
        env = "DATACAT_LISTEN",
        default_value = "127.0.0.1:9464"
    )]
    pub listen: SocketAddr,

    /// Most messages fetched and inserted per round.
    #[arg(
        long,
        global = true,
        env = "DATACAT_FETCH_BATCH",
        default_value_t = 1000
    )]
    pub fetch_batch: usize,

    /// How long a fetch waits for messages before inserting what it has, in milliseconds.
    #[arg(
        long,
        global = true,
        env = "DATACAT_FETCH_WAIT_MS",
        default_value_t = 200
    )]
    pub fetch_wait_ms: u64,

    /// How long stream data is kept, in days.
    #[arg(
        long,
        global = true,
        env = "DATACAT_STREAM_MAX_AGE_DAYS",
        default_value_t = 7
    )]
    pub stream_max_age_days: u64,

    /// Stream size cap in bytes (-1: unlimited).
    #[arg(long, global = true, env = "DATACAT_STREAM_MAX_BYTES", default_value_t = -1, allow_hyphen_values = true)]
    pub stream_max_bytes: i64,

    /// A batch that arrives before its predecessor is retried this many times (at
    /// `gap_retry_ms` intervals) before the gap is accepted and recorded.
    #[arg(
        long,
        global = true,
        env = "DATACAT_GAP_MAX_DELIVERIES",
        default_value_t = 50
    )]
    pub gap_max_deliveries: i64,

    #[arg(
        long,
        global = true,
        env = "DATACAT_GAP_RETRY_MS",
        default_value_t = 200
    )]
    pub gap_retry_ms: u64,
}

#[derive(Debug, Clone, Copy, Subcommand)]
pub enum Command {
    /// Consume and ingest (the default).
    Run,
    /// Apply the ClickHouse schema migrations and exit.
    Migrate,
}

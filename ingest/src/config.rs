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

    #[command(flatten)]
    pub nats: datacat_jetstream::NatsArgs,

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

    /// Most messages fetched and planned per round.
    #[arg(
        long,
        global = true,
        env = "DATACAT_FETCH_BATCH",
        default_value_t = 5000
    )]
    pub fetch_batch: usize,

    /// Rows (all tables together) an insert waits for while a backlog is queued. Rounds are
    /// planned while ClickHouse is busy and inserted together once it is free and this many
    /// rows (or `--insert-wait-ms`) are reached, or deliveries stall (`--max-ack-pending`
    /// messages are out): inserts of tens of thousands of rows cost ClickHouse about twice the
    /// CPU per row of inserts of a million (parts and merges). Without a backlog
    /// (fewer than `--fetch-batch` messages queued) a group is inserted as soon as ClickHouse
    /// is free, so live data does not wait. Planning pauses at twice this many rows.
    #[arg(
        long,
        global = true,
        env = "DATACAT_INSERT_ROWS",
        default_value_t = 1_000_000
    )]
    pub insert_rows: usize,

    /// The longest a planned round waits for more rows (with a backlog), in milliseconds.
    #[arg(
        long,
        global = true,
        env = "DATACAT_INSERT_WAIT_MS",
        default_value_t = 5000
    )]
    pub insert_wait_ms: u64,

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

    /// Copies JetStream keeps of the stream, the dead-letter stream and the KV buckets: 1 on
    /// a single server, 3 on a 3-node NATS cluster (a node can die without losing data).
    #[arg(
        long,
        global = true,
        env = "DATACAT_STREAM_REPLICAS",
        default_value_t = 1,
        value_parser = clap::value_parser!(u16).range(1..=5)
    )]
    pub stream_replicas: u16,

    /// Stream size cap in bytes (-1: unlimited).
    #[arg(long, global = true, env = "DATACAT_STREAM_MAX_BYTES", default_value_t = -1, allow_hyphen_values = true)]
    pub stream_max_bytes: i64,

    /// How many times a batch that arrived before its predecessor is looked at again before
    /// the gap is accepted and recorded. The delays grow (`gap_retry_ms` times the delivery
    /// count, at most 2 s): 80 deliveries wait about 65 s, longer than the ack wait, so a
    /// dead worker's unacknowledged batches come back first. (Before the first NAK, the worker
    /// that owns the batch's session keeps it for the ack wait plus 10 s: its predecessor is
    /// usually on its way, forwarded by another worker.) Counted in deliveries, not time since
    /// publication, so a backlog cannot make every gap look old. A predecessor arriving
    /// later still is applied then, never dropped.
    #[arg(
        long,
        global = true,
        env = "DATACAT_GAP_MAX_DELIVERIES",
        default_value_t = 80
    )]
    pub gap_max_deliveries: i64,

    /// Delay before a waiting batch is looked at again, in milliseconds (multiplied by its
    /// delivery count, at most 2 s): its predecessor is usually on another worker, a commit away.
    #[arg(
        long,
        global = true,
        env = "DATACAT_GAP_RETRY_MS",
        default_value_t = 20
    )]
    pub gap_retry_ms: u64,

    /// How long a worker may hold a message before JetStream gives it to another worker,
    /// unless the worker says it is still at it (every 5 s, or a third of this if shorter).
    #[arg(
        long,
        global = true,
        env = "DATACAT_ACK_WAIT_SECS",
        default_value_t = 30
    )]
    pub ack_wait_secs: u64,

    /// Messages handed out and not yet acknowledged, across all workers (the consumer's
    /// bound): a backlog drains in rounds of up to `--fetch-batch` per worker within it.
    #[arg(
        long,
        global = true,
        env = "DATACAT_MAX_ACK_PENDING",
        default_value_t = 40_000
    )]
    pub max_ack_pending: i64,

    /// Payload MiB of the messages one worker holds (fetched, or forwarded to it, and not
    /// yet acked): it takes in more only while under this, so large batches cannot take
    /// `--max-ack-pending` times their size in memory. Decoded records and the rows of the
    /// groups being planned and inserted (`--insert-rows`) come on top.
    #[arg(
        long,
        global = true,
        env = "DATACAT_MESSAGE_BUDGET_MIB",
        default_value_t = 256
    )]
    pub message_budget_mib: usize,

    /// A message delivered this many times without being applied is dead-lettered.
    #[arg(
        long,
        global = true,
        env = "DATACAT_MAX_DELIVERIES",
        default_value_t = 200
    )]
    pub max_deliveries: i64,

    /// How often the sweeper (one worker at a time, by lease) runs, in milliseconds.
    #[arg(
        long,
        global = true,
        env = "DATACAT_SWEEP_INTERVAL_MS",
        default_value_t = 5000
    )]
    pub sweep_interval_ms: u64,

    /// An open session whose daemon has been silent this long is marked lost (seconds),
    /// counted only while NATS is up and ingest has caught up. Keep it well above the
    /// daemons' liveness interval (10 s) plus their reconnect delay (under 1 s).
    #[arg(
        long,
        global = true,
        env = "DATACAT_LOST_AFTER_SECS",
        default_value_t = 60
    )]
    pub lost_after_secs: u64,

    /// Days of data kept in ClickHouse; older daily partitions are dropped (0: keep all).
    #[arg(
        long,
        global = true,
        env = "DATACAT_RETENTION_DAYS",
        default_value_t = 90
    )]
    pub retention_days: u64,
}

#[derive(Debug, Clone, Copy, Subcommand)]
pub enum Command {
    /// Consume and ingest (the default).
    Run,
    /// Apply the ClickHouse schema migrations and exit.
    Migrate {
        /// Print the statements that build the schema from nothing, in order, for the
        /// configured variant (single server, or the cluster of `--clickhouse-cluster`),
        /// instead of connecting to ClickHouse.
        #[arg(long)]
        print_sql: bool,
    },
}

//! Command-line and environment configuration.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

/// How the generated load enters DataCat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Via {
    /// Real datacat-daemon processes, one per simulated application, over their HTTP API.
    Daemon,
    /// Batches published straight to JetStream (what daemons would publish).
    Jetstream,
}

/// Simulates many applications and sessions and measures what DataCat does with them.
#[derive(Debug, Clone, Parser)]
#[command(name = "datacat-loadgen", version)]
pub struct Config {
    /// Where the load goes in.
    #[arg(long, env = "DATACAT_LOADGEN_VIA", value_enum, default_value_t = Via::Daemon)]
    pub via: Via,

    #[command(flatten)]
    pub nats: datacat_jetstream::NatsArgs,

    /// The query service, where freshness is measured (events becoming visible).
    #[arg(
        long,
        env = "DATACAT_QUERY_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub query_url: String,

    /// Read token of the query service, if it has one.
    #[arg(long, env = "DATACAT_READ_TOKEN", hide_env_values = true)]
    pub read_token: Option<String>,

    /// The daemon binary (with --via daemon).
    #[arg(long, env = "DATACAT_DAEMON_BIN", default_value = "datacat-daemon")]
    pub daemon_bin: PathBuf,

    /// Where the daemons spool (a temporary directory by default).
    #[arg(long, env = "DATACAT_SPOOL_DIR")]
    pub spool_dir: Option<PathBuf>,

    /// Simulated applications (one daemon each with --via daemon).
    #[arg(long, env = "DATACAT_LOADGEN_APPS", default_value_t = 4)]
    pub apps: usize,

    /// Sessions per application.
    #[arg(long, env = "DATACAT_LOADGEN_SESSIONS", default_value_t = 25)]
    pub sessions: usize,

    /// Events per second in all (state updates and metrics ride along: 1 in 10 calls).
    #[arg(long, env = "DATACAT_LOADGEN_RATE", default_value_t = 50_000)]
    pub rate: u64,

    /// How long to generate load, in seconds.
    #[arg(long, env = "DATACAT_LOADGEN_SECONDS", default_value_t = 20)]
    pub seconds: u64,

    /// Freshness probes per second (each one timed from the client call to visible in the
    /// query API).
    #[arg(long, env = "DATACAT_LOADGEN_PROBES", default_value_t = 10)]
    pub probes_per_second: u64,

    /// Product name of the generated sessions.
    #[arg(long, env = "DATACAT_LOADGEN_PRODUCT", default_value = "loadgen")]
    pub product: String,
}

impl Config {
    pub fn duration(&self) -> Duration {
        Duration::from_secs(self.seconds.max(1))
    }
}

//! Command-line and environment configuration.

use std::net::SocketAddr;

use clap::Parser;

/// DataCat query service: the REST API over ClickHouse and the dashboard.
#[derive(Debug, Clone, Parser)]
#[command(name = "datacat-query", version)]
pub struct Config {
    /// Address to serve the API and dashboard on.
    #[arg(long, env = "DATACAT_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    #[command(flatten)]
    pub nats: datacat_jetstream::NatsArgs,

    /// The longest a read that names the writer's last batch (`min_seq`) waits for ingest to
    /// apply it, in milliseconds; then it answers with what is there.
    #[arg(long, env = "DATACAT_READ_WAIT_MS", default_value_t = 2000)]
    pub read_wait_ms: u64,

    /// The longest ClickHouse works on one read, in seconds (`max_execution_time`): a read
    /// that would take longer is answered `422 query_too_expensive`.
    #[arg(long, env = "DATACAT_QUERY_TIME_LIMIT_SECS", default_value_t = 60)]
    pub query_time_limit_secs: u64,

    #[command(flatten)]
    pub clickhouse: datacat_warehouse::ClickHouseArgs,

    /// Token required to read (API and dashboard). Unset: reads are open.
    #[arg(long, env = "DATACAT_READ_TOKEN", hide_env_values = true)]
    pub read_token: Option<String>,

    /// Token required for direct writes (it also reads). Unset: writes are open.
    #[arg(long, env = "DATACAT_WRITE_TOKEN", hide_env_values = true)]
    pub write_token: Option<String>,

    /// The secret that signs sign-in cookies (with the tokens). Unset: a random one per
    /// start, so a restart signs everyone out; replicas behind one address need the same.
    #[arg(long, env = "DATACAT_SESSION_SECRET", hide_env_values = true)]
    pub session_secret: Option<String>,

    /// Origins (`scheme://host:port`, comma-separated) whose pages may open the dashboard's
    /// socket besides the service's own.
    #[arg(long, env = "DATACAT_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,

    /// Mark the sign-in cookie `Secure` always (it is already when a TLS proxy in front says
    /// `X-Forwarded-Proto: https`).
    #[arg(long, env = "DATACAT_SECURE_COOKIES")]
    pub secure_cookies: bool,
}

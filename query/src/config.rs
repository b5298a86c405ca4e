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
    pub clickhouse: datacat_warehouse::ClickHouseArgs,
}

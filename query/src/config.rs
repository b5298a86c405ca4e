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

    /// ClickHouse HTTP interface.
    #[arg(
        long,
        env = "DATACAT_CLICKHOUSE_URL",
        default_value = "http://127.0.0.1:8123"
    )]
    pub clickhouse_url: String,

    /// ClickHouse database (created by `datacat-ingest migrate`).
    #[arg(long, env = "DATACAT_CLICKHOUSE_DATABASE", default_value = "datacat")]
    pub clickhouse_database: String,

    #[arg(long, env = "DATACAT_CLICKHOUSE_USER")]
    pub clickhouse_user: Option<String>,

    #[arg(long, env = "DATACAT_CLICKHOUSE_PASSWORD", hide_env_values = true)]
    pub clickhouse_password: Option<String>,
}

impl Config {
    pub fn warehouse(&self) -> datacat_warehouse::Connection {
        datacat_warehouse::Connection {
            url: self.clickhouse_url.clone(),
            database: self.clickhouse_database.clone(),
            user: self.clickhouse_user.clone(),
            password: self.clickhouse_password.clone(),
        }
    }
}

//! The ClickHouse side of DataCat, shared by ingest (writes) and query (reads).
//!
//! Everything here works on Debian's ClickHouse 18.16 and on current ClickHouse: plain
//! String / (U)Int / Float64 / Date / Array columns, ReplacingMergeTree tables keyed by each
//! row's identity so a redelivered batch collapses into the row it duplicates, and queries
//! that read with `FINAL`. JSON work happens in Rust; ClickHouse stores JSON as text.

pub mod explore;
pub mod export;
pub mod filter;
mod key_order;
pub mod maintenance;
pub mod migrations;
pub mod read;
pub mod replicated;
pub mod rowbinary;
pub mod rows;
pub mod schema;
pub mod session_parts;
pub mod write;

use thiserror::Error;

pub use maintenance::Maintenance;
pub use migrations::{migrate, MIGRATIONS};
pub use read::Reader;
pub use rowbinary::{EncodedRows, RowSink};
pub use session_parts::{EventFilter, StatePoint};
pub use write::{RowSet, Writer};

#[derive(Debug, Error)]
pub enum WarehouseError {
    #[error("clickhouse: {0}")]
    ClickHouse(#[from] clickhouse::error::Error),
    #[error("stored JSON does not parse: {0}")]
    Json(#[from] serde_json::Error),
    #[error("invalid database name {0:?}: use letters, digits and underscores")]
    InvalidDatabase(String),
    /// A request the warehouse cannot answer as asked (a bad cursor, say): the caller's fault.
    #[error("{0}")]
    InvalidInput(String),
}

pub type Result<T, E = WarehouseError> = std::result::Result<T, E>;

/// ClickHouse connection flags, shared by every binary that talks to the warehouse.
#[derive(Debug, Clone, clap::Args)]
pub struct ClickHouseArgs {
    /// ClickHouse HTTP interface.
    #[arg(
        long,
        global = true,
        env = "DATACAT_CLICKHOUSE_URL",
        default_value = "http://127.0.0.1:8123"
    )]
    pub clickhouse_url: String,

    /// ClickHouse database (created by `datacat-ingest migrate`).
    #[arg(
        long,
        global = true,
        env = "DATACAT_CLICKHOUSE_DATABASE",
        default_value = "datacat"
    )]
    pub clickhouse_database: String,

    #[arg(long, global = true, env = "DATACAT_CLICKHOUSE_USER")]
    pub clickhouse_user: Option<String>,

    #[arg(
        long,
        global = true,
        env = "DATACAT_CLICKHOUSE_PASSWORD",
        hide_env_values = true
    )]
    pub clickhouse_password: Option<String>,

    /// A ClickHouse cluster (from its `remote_servers`) for the replicated schema variant:
    /// ReplicatedMergeTree tables behind Distributed ones, sharded by session. Unset: a
    /// single server.
    #[arg(long, global = true, env = "DATACAT_CLICKHOUSE_CLUSTER")]
    pub clickhouse_cluster: Option<String>,

    /// How inserts and answers travel: `lz4` saves bandwidth to a server across a network;
    /// `none` saves the CPU of compressing on both sides when ClickHouse runs on the same
    /// host (LZ4 was a tenth of ingest's CPU time there).
    #[arg(
        long,
        global = true,
        env = "DATACAT_CLICKHOUSE_COMPRESSION",
        value_enum,
        default_value_t = WireCompression::Lz4
    )]
    pub clickhouse_compression: WireCompression,
}

/// Compression of the HTTP bodies exchanged with ClickHouse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WireCompression {
    Lz4,
    None,
}

impl ClickHouseArgs {
    pub fn connection(&self) -> Connection {
        Connection {
            url: self.clickhouse_url.clone(),
            database: self.clickhouse_database.clone(),
            user: self.clickhouse_user.clone(),
            password: self.clickhouse_password.clone(),
            cluster: self.clickhouse_cluster.clone(),
            compression: self.clickhouse_compression,
        }
    }
}

/// Where the warehouse lives.
#[derive(Debug, Clone)]
pub struct Connection {
    pub url: String,
    pub database: String,
    pub user: Option<String>,
    pub password: Option<String>,
    /// The cluster of the replicated schema variant (see [`replicated`]).
    pub cluster: Option<String>,
    pub compression: WireCompression,
}

impl Connection {
    /// A client bound to the warehouse database.
    pub fn client(&self) -> Result<clickhouse::Client> {
        let client = self.server_client()?.with_database(&self.database);
        Ok(match &self.cluster {
            // An insert returns once the rows are on their shard: ingest acks after it.
            Some(_) => client.with_setting("insert_distributed_sync", "1"),
            None => client,
        })
    }

    /// A client not bound to a database (the database may not exist yet).
    fn server_client(&self) -> Result<clickhouse::Client> {
        validate_identifier(&self.database)?;
        if let Some(cluster) = &self.cluster {
            validate_identifier(cluster)?;
        }
        // 18.16 does not know RowBinaryWithNamesAndTypes, which validation needs.
        let mut client = clickhouse::Client::default()
            .with_url(&self.url)
            .with_validation(false)
            .with_compression(match self.compression {
                WireCompression::Lz4 => clickhouse::Compression::Lz4,
                WireCompression::None => clickhouse::Compression::None,
            });
        if let Some(user) = &self.user {
            client = client.with_user(user);
        }
        if let Some(password) = &self.password {
            client = client.with_password(password);
        }
        Ok(client)
    }
}

/// The database name is spliced into DDL (identifiers cannot be bound), so it is restricted.
fn validate_identifier(name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if valid {
        Ok(())
    } else {
        Err(WarehouseError::InvalidDatabase(name.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        clickhouse: ClickHouseArgs,
    }

    #[test]
    fn inserts_are_compressed_unless_turned_off() {
        let parse = |args: &[&str]| {
            let args = std::iter::once("datacat").chain(args.iter().copied());
            Cli::try_parse_from(args).map(|cli| cli.clickhouse.connection().compression)
        };
        assert_eq!(parse(&[]).unwrap(), WireCompression::Lz4);
        assert_eq!(
            parse(&["--clickhouse-compression", "none"]).unwrap(),
            WireCompression::None
        );
        let error = parse(&["--clickhouse-compression", "zstd"]).unwrap_err();
        assert!(
            error.to_string().contains("possible values: lz4, none"),
            "{error}"
        );
    }
}

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
pub use read::{DetailRows, Reader};
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

impl WarehouseError {
    /// The error code ClickHouse answered with (`Code: 252. DB::Exception: ...`), if any.
    pub fn clickhouse_code(&self) -> Option<u32> {
        let WarehouseError::ClickHouse(clickhouse::error::Error::BadResponse(text)) = self else {
            return None;
        };
        let digits = text.split("Code: ").nth(1)?;
        let end = digits.find(|c: char| !c.is_ascii_digit())?;
        digits[..end].parse().ok()
    }

    /// Why ClickHouse refused a read because of what it asked (too broad, too long, too
    /// large a query), if that is why: the caller's to change, not an outage.
    pub fn request_fault(&self) -> Option<RequestFault> {
        match self.clickhouse_code()? {
            // TIMEOUT_EXCEEDED, TOO_MANY_ROWS, TOO_MANY_BYTES, TOO_MANY_ROWS_OR_BYTES,
            // TOO_MANY_PARTS... of a read, MEMORY_LIMIT of one query ("for query").
            159 | 158 | 307 | 396 => Some(RequestFault::TooExpensive),
            241 if self.to_string().contains("for query") => Some(RequestFault::TooExpensive),
            // SYNTAX_ERROR from a query past max_query_size, CANNOT_COMPILE_REGEXP,
            // BAD_ARGUMENTS, ARGUMENT_OUT_OF_BOUND: the parameters made a query it cannot run.
            62 if self.to_string().contains("Max query size exceeded") => {
                Some(RequestFault::TooExpensive)
            }
            427 | 36 | 69 => Some(RequestFault::Invalid),
            _ => None,
        }
    }

    /// Whether ClickHouse refused the rows themselves (a value it cannot take, too many
    /// partitions in one insert, a row its own checks reject): sending them again will not
    /// help, while sending fewer may. Everything else (unreachable, overloaded, timed out,
    /// out of memory, read-only, a table that does not match) is taken for unavailability:
    /// the same rows go again later, and none is ever thrown away for it.
    pub fn refuses_the_rows(&self) -> bool {
        let Some(code) = self.clickhouse_code() else {
            return false;
        };
        match code {
            // TOO_MANY_PARTS: merges behind (overload), unless it is about partitions.
            252 => self.to_string().contains("partitions"),
            _ => REFUSED_ROWS.contains(&code),
        }
    }
}

/// What was wrong with a read ClickHouse refused ([`WarehouseError::request_fault`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestFault {
    /// It would take too long or too much (`max_execution_time` and the like).
    TooExpensive,
    /// Its parameters make a query ClickHouse cannot run.
    Invalid,
}

/// ClickHouse error codes that refuse the rows sent, not the request: CANNOT_PARSE_TEXT (6),
/// CANNOT_PARSE_INPUT_ASSERTION_FAILED (27), CANNOT_READ_ALL_DATA (33), CANNOT_PARSE_DATE
/// (38), CANNOT_PARSE_DATETIME (41), TYPE_MISMATCH (53), ARGUMENT_OUT_OF_BOUND (69),
/// CANNOT_CONVERT_TYPE (70), CANNOT_PARSE_NUMBER (72), INCORRECT_DATA (117),
/// TOO_LARGE_ARRAY_SIZE (128), TOO_LARGE_STRING_SIZE (131), FUNCTION_THROW_IF_VALUE_IS_NON_ZERO
/// (395), VIOLATED_CONSTRAINT (469).
const REFUSED_ROWS: &[u32] = &[6, 27, 33, 38, 41, 53, 69, 70, 72, 117, 128, 131, 395, 469];

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
            Some(_) => client
                // An insert returns once the rows are on their shard: ingest acks after it.
                .with_setting("insert_distributed_sync", "1")
                // A subquery over a distributed table (`session_id IN (SELECT session_id
                // FROM events ...)`) reads each shard's own rows on that shard: all of a
                // session's rows are on one shard, so that is the whole answer. (The default,
                // `deny`, refuses such queries.)
                .with_setting("distributed_product_mode", "local"),
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

#[cfg(test)]
mod refusal_tests {
    use super::WarehouseError;

    fn answered(text: &str) -> WarehouseError {
        WarehouseError::ClickHouse(clickhouse::error::Error::BadResponse(text.into()))
    }

    #[test]
    fn refusals_of_the_rows_are_told_from_unavailability() {
        let partitions = answered(
            "Code: 252. DB::Exception: Too many partitions for single INSERT block (more than 100).",
        );
        assert_eq!(partitions.clickhouse_code(), Some(252));
        assert!(partitions.refuses_the_rows());
        let merges_behind = answered("Code: 252, e.displayText() = DB::Exception: Too many parts (300). Merges are processing significantly slower than inserts.");
        assert!(!merges_behind.refuses_the_rows());
        let thrown = answered("Code: 395, e.displayText() = DB::Exception: Value passed to 'throwIf' function is non zero");
        assert!(thrown.refuses_the_rows());
        let memory = answered("Code: 241. DB::Exception: Memory limit (total) exceeded");
        assert!(!memory.refuses_the_rows());
        assert!(!answered("503 Service Unavailable").refuses_the_rows());
        let network = WarehouseError::ClickHouse(clickhouse::error::Error::TimedOut);
        assert!(!network.refuses_the_rows());
    }

    #[test]
    fn reads_refused_for_what_they_ask_are_the_callers_fault() {
        use super::RequestFault::{Invalid, TooExpensive};
        let timeout = answered("Code: 159, e.displayText() = DB::Exception: Timeout exceeded: elapsed 1.0 seconds, maximum: 1");
        assert_eq!(timeout.request_fault(), Some(TooExpensive));
        let size = answered("Code: 62, e.displayText() = DB::Exception: Syntax error: failed at position 262140: Max query size exceeded");
        assert_eq!(size.request_fault(), Some(TooExpensive));
        let regexp =
            answered("Code: 427. DB::Exception: OptimizedRegularExpression: cannot compile re2");
        assert_eq!(regexp.request_fault(), Some(Invalid));
        let server_memory = answered("Code: 241. DB::Exception: Memory limit (total) exceeded");
        assert_eq!(
            server_memory.request_fault(),
            None,
            "the server's state, not the query's"
        );
        let down = WarehouseError::ClickHouse(clickhouse::error::Error::TimedOut);
        assert_eq!(down.request_fault(), None);
    }
}

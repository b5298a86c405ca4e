//! Test harness: real NATS, real ClickHouse and the real DataCat binaries as local processes
//! on free loopback ports, each stopped (SIGKILL, then reaped) when its handle drops. With
//! the `containers` feature and a Docker engine, NATS and ClickHouse run as containers
//! instead (`containers.rs`; a NATS cluster on a Docker network of its own).
//!
//! Binaries are found through environment variables first (`DATACAT_NATS_SERVER_BIN`,
//! `DATACAT_CLICKHOUSE_SERVER_BIN`), then the repo's `.local/` install and `PATH`.
//! `deploy/test-all.sh` installs them and sets the variables.

pub mod answers;
pub mod binaries;
pub mod blackhole;
pub mod browser;
pub mod chdb;
pub mod cluster;
#[cfg(feature = "containers")]
pub mod containers;
pub mod daemon;
pub mod process;
pub mod python;
pub mod same_answers;
pub mod servers;
pub mod stack;
pub mod workload;

pub use answers::items;
pub use blackhole::BlackHole;
pub use daemon::Daemon;
pub use servers::{ClickHouse, Nats, NatsRole, WrittenBlocks};
pub use stack::{Stack, Warehouse};

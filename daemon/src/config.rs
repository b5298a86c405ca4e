//! Command-line and environment configuration.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

use crate::spool::SpoolSync;

/// The per-application DataCat daemon. Clients start it and talk to it over loopback HTTP;
/// it batches what they log and publishes it to NATS JetStream.
#[derive(Debug, Clone, Parser)]
#[command(name = "datacat-daemon", version)]
pub struct Config {
    #[command(flatten)]
    pub nats: datacat_jetstream::NatsArgs,

    /// Address of the client API. Port 0 lets the OS choose; the chosen port is printed on
    /// stdout as `DATACAT_DAEMON_READY <port> <token>`.
    #[arg(long, env = "DATACAT_DAEMON_LISTEN", default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,

    /// The token every call but `/health` must carry (`Authorization: Bearer <token>`), so
    /// that other local users' processes cannot read or write this daemon's sessions.
    /// Default: a fresh random one, printed in the ready line for the client that started
    /// the daemon. Set it to share a daemon started by hand.
    #[arg(long, env = "DATACAT_DAEMON_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// PID of the application; when it dies, its open sessions are marked crashed.
    /// EOF on stdin means the same thing.
    #[arg(long, env = "DATACAT_PARENT_PID")]
    pub parent_pid: Option<u32>,

    /// How often pending records are flushed into batches, in milliseconds.
    #[arg(long, env = "DATACAT_FLUSH_INTERVAL_MS", default_value_t = 100)]
    pub flush_interval_ms: u64,

    /// A session with this many pending records is flushed at once.
    #[arg(long, env = "DATACAT_FLUSH_RECORDS", default_value_t = 2000)]
    pub flush_records: usize,

    /// Largest batch payload in bytes; bigger flushes are split. The NATS server's
    /// max_payload less 16 KiB caps it too; a call whose record cannot fit in a batch of its
    /// own is refused (413).
    #[arg(long, env = "DATACAT_MAX_BATCH_BYTES", default_value_t = 512 * 1024)]
    pub max_batch_bytes: usize,

    /// Largest request body the client API accepts, in bytes.
    #[arg(long, env = "DATACAT_MAX_BODY_BYTES", default_value_t = 8 * 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Exit this long after the last session ended and was delivered, and after the
    /// application last called (reads included; health checks and metrics scrapes not).
    /// 0: never.
    #[arg(long, env = "DATACAT_IDLE_EXIT_MS", default_value_t = 2000)]
    pub idle_exit_ms: u64,

    /// The longest `/end` waits for the session's batches to be acknowledged by JetStream
    /// (a client may ask for less). The batches are in the spool by then: past the wait they
    /// are delivered in the background, or by the next daemon.
    #[arg(long, env = "DATACAT_END_WAIT_MS", default_value_t = 1000)]
    pub end_wait_ms: u64,

    /// The query service (`http://host:port`) that `GET /session` reads a session from. A
    /// client may name another one per session (`query_url` at `/register`). Unset: the
    /// daemon answers with what it holds itself.
    #[arg(long, env = "DATACAT_QUERY_URL")]
    pub query_url: Option<String>,

    /// Token for reading from the query service at `--query-url` (its read or write token;
    /// never sent to a query service a client names).
    #[arg(long, env = "DATACAT_READ_TOKEN", hide_env_values = true)]
    pub query_token: Option<String>,

    /// The longest a read from the query service may take, in milliseconds (the query
    /// service itself waits up to 2 s for the session's last batch). A query service that
    /// does not answer in time is left alone for a while (1 s, doubling up to 30 s), and the
    /// daemon answers with what it holds.
    #[arg(long, env = "DATACAT_QUERY_TIMEOUT_MS", default_value_t = 3000)]
    pub query_timeout_ms: u64,

    /// Where batches wait until JetStream acknowledges them. Default:
    /// `$XDG_STATE_HOME/datacat/spool`, else `~/.local/state/datacat/spool`.
    #[arg(long, env = "DATACAT_SPOOL_DIR")]
    pub spool_dir: Option<PathBuf>,

    /// Most bytes of undelivered batches kept on disk; above it the oldest are dropped
    /// (and the loss is reported in each affected session).
    #[arg(long, env = "DATACAT_SPOOL_MAX_BYTES", default_value_t = 256 * 1024 * 1024)]
    pub spool_max_bytes: u64,

    /// When spooled batches are forced to disk: `never` leaves it to the OS (a batch
    /// survives the daemon or the application being killed, not a power cut); `always`
    /// fsyncs every append before the call returns (survives a power cut; costs a disk
    /// flush per flush of the daemon, see docs/daemon-api.md).
    #[arg(long, env = "DATACAT_SPOOL_SYNC", value_enum, default_value_t = SpoolSync::Never)]
    pub spool_sync: SpoolSync,

    /// A session with nothing to send still tells ingest it is alive this often (ms), so a
    /// vanished daemon's sessions can be marked lost.
    #[arg(long, env = "DATACAT_ALIVE_INTERVAL_MS", default_value_t = 10_000)]
    pub alive_interval_ms: u64,

    /// How long to keep trying to deliver spooled batches when exiting (what is left stays
    /// spooled for the next daemon).
    #[arg(long, env = "DATACAT_SHUTDOWN_GRACE_MS", default_value_t = 5000)]
    pub shutdown_grace_ms: u64,
}

impl Config {
    pub fn spool_root(&self) -> PathBuf {
        if let Some(dir) = &self.spool_dir {
            return dir.clone();
        }
        let state_home = std::env::var_os("XDG_STATE_HOME")
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/state"))
            })
            .unwrap_or_else(std::env::temp_dir);
        state_home.join("datacat").join("spool")
    }
}

//! `datacat-daemon`: the per-application process that takes client calls on loopback,
//! batches them per session and publishes them to NATS JetStream.
//!
//! Start-up is a handshake: bind an OS-chosen port, print `DATACAT_DAEMON_READY <port>
//! <token>` on stdout, never write stdout again (the token is what every call must carry). The client holds our stdin open; EOF means the
//! application is gone (see `parent`).

// The daemon parses and buffers many small values per call; glibc's allocator was a third
// of its time under a fast client (perf).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod aggregate;
mod api;
mod config;
mod error;
mod limits;
mod machine;
mod metrics;
mod parent;
mod publisher;
mod sessions;
mod spool;
mod upstream;

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::Config;
use crate::publisher::Publisher;
use crate::sessions::Registry;
use crate::spool::Spool;

fn main() -> Result<()> {
    // Small beats fast beside the application: a daemon that touches a few KiB of a 2 MiB
    // page is charged the whole page (idle RSS 17 -> 8 MiB in `deploy/bench.sh daemon`).
    datacat_service::disable_transparent_huge_pages();
    let config = Config::parse();
    datacat_service::init_tracing();
    let runtime = tokio::runtime::Runtime::new()?;
    let result = runtime.block_on(run(config));
    // The stdin watcher is a blocking read that only returns when the application closes the
    // pipe; do not wait for it.
    runtime.shutdown_timeout(Duration::from_millis(100));
    result
}

async fn run(config: Config) -> Result<()> {
    let listener = TcpListener::bind(config.listen)
        .await
        .context("binding the client API")?;
    let port = listener.local_addr()?.port();

    let shutdown = CancellationToken::new();
    let daemon_id = uuid::Uuid::now_v7().to_string();
    let spool_root = config.spool_root();
    let spool = Spool::open(
        &spool_root,
        &daemon_id,
        &config.nats.nats_url,
        config.spool_sync,
    )
    .with_context(|| format!("opening the spool under {}", spool_root.display()))?;
    let (publisher, mut drops) = Publisher::start(&config, Arc::new(spool)).await?;
    let registry = Arc::new(Registry::new(&config, publisher.clone()));
    let reporter = registry.clone();
    tokio::spawn(async move {
        while let Some(report) = drops.recv().await {
            reporter.report_dropped(&report);
            reporter
                .publisher()
                .release(&report.session_id, report.batches);
        }
    });
    let daemon = Arc::new(api::Daemon {
        registry: registry.clone(),
        upstream: upstream::Upstream::new(
            Duration::from_millis(config.query_timeout_ms),
            config.query_token.clone(),
            config.query_url.as_deref(),
        ),
        query_url: config.query_url.clone().filter(|url| !url.is_empty()),
    });
    let token = match config.token.clone().filter(|t| !t.is_empty()) {
        Some(token) => token,
        None => datacat_service::random_secret().context("making the daemon's token")?,
    };
    let app = api::router(daemon, config.max_body_bytes, token.clone());

    tokio::spawn(sessions::flush_loop(registry.clone(), shutdown.clone()));
    tokio::spawn(parent::watch(
        config.parent_pid,
        registry.clone(),
        shutdown.clone(),
    ));
    if config.idle_exit_ms > 0 {
        tokio::spawn(sessions::exit_when_idle(
            registry.clone(),
            Duration::from_millis(config.idle_exit_ms),
            shutdown.clone(),
        ));
    }
    tokio::spawn(datacat_service::cancel_on_signal(shutdown.clone()));

    announce_ready(port, &token)?;
    let nats = datacat_jetstream::redacted_url(&config.nats.nats_url);
    info!(port, %nats, "datacat-daemon ready");

    let serve_shutdown = shutdown.clone();
    let server = axum::serve(listener, app)
        .with_graceful_shutdown(async move { serve_shutdown.cancelled().await });
    server.await.context("serving the client API")?;

    // Everything the clients logged is spooled; what cannot be delivered in the grace time
    // stays spooled for the next daemon.
    registry.flush_all();
    let drained = publisher
        .drain(Duration::from_millis(config.shutdown_grace_ms))
        .await;
    if !drained {
        warn!(
            spooled_bytes = publisher.spool.pending_bytes(),
            "exiting with undelivered batches"
        );
    }
    publisher.spool.close();
    info!("datacat-daemon stopped");
    Ok(())
}

/// The handshake line, then stdout is never used again (its reader may be gone).
fn announce_ready(port: u16, token: &str) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(
        stdout,
        "{}",
        datacat_api::handshake::Ready::line(port, token)
    )?;
    stdout.flush()?;
    Ok(())
}

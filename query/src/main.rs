//! `datacat-query`: the REST API over ClickHouse, and the dashboard (Dioxus LiveView).

mod api;
mod config;
mod dashboard;
mod error;
mod metrics;

use std::sync::Arc;

use anyhow::{Context, Result};
use axum::Router;
use clap::Parser;
use datacat_warehouse::Reader;
use tracing::info;

use crate::config::Config;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub reader: Arc<Reader>,
}

#[tokio::main]
async fn main() -> Result<()> {
    let config = Config::parse();
    tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();

    let reader = Arc::new(Reader::new(&config.warehouse())?);
    let state = AppState { reader };
    let app = Router::new()
        .merge(api::router())
        .merge(dashboard::router(tokio::runtime::Handle::current()))
        .layer(axum::middleware::from_fn(metrics::track))
        .with_state(state);

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .context("binding the HTTP listener")?;
    info!(addr = %listener.local_addr()?, "datacat-query serving the API and dashboard");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

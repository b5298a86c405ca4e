//! `datacat-query`: the REST API over ClickHouse, and the dashboard (Dioxus LiveView).

mod api;
mod auth;
mod config;
mod dashboard;
mod direct;
mod error;
mod export;
mod freshness;
mod metrics;
mod openapi;
mod params;
mod routes;
mod writes;

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
    pub tokens: Arc<auth::Tokens>,
    pub writer: writes::DirectWriter,
    /// The longest a read waits for a writer's last batch (`min_seq`) to be applied.
    pub read_wait: std::time::Duration,
}

#[tokio::main]
async fn main() -> Result<()> {
    let config = Config::parse();
    datacat_service::init_tracing();

    let reader = Arc::new(
        Reader::new(&config.clickhouse.connection())?.with_time_limit(config.query_time_limit_secs),
    );
    let tokens = auth::Tokens {
        read: config.read_token.clone().filter(|t| !t.is_empty()),
        write: config.write_token.clone().filter(|t| !t.is_empty()),
    };
    let state = AppState {
        reader,
        tokens: Arc::new(tokens),
        writer: writes::DirectWriter::connect_in_background(config.nats_url.clone()),
        read_wait: std::time::Duration::from_millis(config.read_wait_ms),
    };
    let app = Router::new()
        .merge(routes::router())
        .merge(dashboard::router(tokio::runtime::Handle::current()))
        .route(
            "/login",
            axum::routing::get(auth::login_form).post(auth::login),
        )
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require,
        ))
        .layer(axum::middleware::from_fn(metrics::track))
        .with_state(state);

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .context("binding the HTTP listener")?;
    info!(addr = %listener.local_addr()?, "datacat-query serving the API and dashboard");
    let shutdown = tokio_util::sync::CancellationToken::new();
    tokio::spawn(datacat_service::cancel_on_signal(shutdown.clone()));
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await?;
    info!("stopped");
    Ok(())
}

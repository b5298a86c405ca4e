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
use tracing::{info, warn};

use crate::config::Config;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub reader: Arc<Reader>,
    pub access: Arc<auth::Access>,
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
    let session_secret = match config.session_secret.clone().filter(|s| !s.is_empty()) {
        Some(secret) => secret,
        None => datacat_service::random_secret().context("making a session secret")?,
    };
    let access = auth::Access::new(
        config.read_token.as_deref(),
        config.write_token.as_deref(),
        &session_secret,
        config.allowed_origins.clone(),
        config.secure_cookies,
    );
    if access.writes_open_reads_closed() {
        warn!(
            "DATACAT_READ_TOKEN is set but DATACAT_WRITE_TOKEN is not: ANYONE WHO CAN REACH THIS \
             SERVICE CAN WRITE SESSIONS (direct writes are open). Set DATACAT_WRITE_TOKEN."
        );
    } else if access.reads_open_writes_closed() {
        warn!("DATACAT_WRITE_TOKEN is set but DATACAT_READ_TOKEN is not: reads and the dashboard are open to anyone who can reach this service");
    }
    let state = AppState {
        reader,
        access: Arc::new(access),
        writer: writes::DirectWriter::connect_in_background(config.nats.nats_url.clone()),
        read_wait: std::time::Duration::from_millis(config.read_wait_ms),
    };
    let app = Router::new()
        .merge(routes::router())
        .merge(dashboard::router(tokio::runtime::Handle::current()))
        .route(
            "/login",
            axum::routing::get(auth::login_form).post(auth::login),
        )
        .route(
            "/logout",
            axum::routing::get(auth::logout).post(auth::logout),
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
    // The peer address limits failed sign-ins per address.
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await?;
    info!("stopped");
    Ok(())
}

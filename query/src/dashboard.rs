//! Mounting the Dioxus LiveView dashboard.
//!
//! Every dashboard URL serves a small HTML shell whose script opens a websocket to
//! `/live/ws?page=<the page's path and query>`; the socket runs the page's virtual DOM.
//! Links between pages are plain links, so every page has a shareable URL.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use axum::extract::{OriginalUri, Query, State, WebSocketUpgrade};
use axum::response::{Html, Response};
use axum::routing::get;
use axum::Router;
use datacat_api::answers::{
    MetricAcrossSessions, MetricStat, ProductSummary, SessionDetail, SessionPage, SessionQuery,
    TrendPoint,
};
use datacat_dashboard::{app, url_encode, AppProps, DataSource, Page, STYLESHEET};
use datacat_warehouse::Reader;
use dioxus_liveview::{axum_socket, interpreter_glue, LiveViewPool};
use tokio::runtime::Handle;

use crate::AppState;

pub fn router(runtime: Handle) -> Router<AppState> {
    let pool = Arc::new(LiveViewPool::new());
    Router::new()
        .route("/", get(shell))
        .route("/sessions", get(shell))
        .route("/sessions/{id}", get(shell))
        .route("/products", get(shell))
        .route("/explore", get(shell))
        .route(
            "/live/ws",
            get(
                move |ws: WebSocketUpgrade,
                      query: Query<HashMap<String, String>>,
                      state: State<AppState>| {
                    live(ws, query, state, pool.clone(), runtime.clone())
                },
            ),
        )
}

/// The page shell: stylesheet, mount point, and the LiveView glue for this page.
async fn shell(OriginalUri(uri): OriginalUri) -> Html<String> {
    let page = uri.path_and_query().map(|pq| pq.as_str()).unwrap_or("/");
    let glue = interpreter_glue(&format!("/live/ws?page={}", url_encode(page)));
    Html(format!(
        r#"<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>DataCat</title><style>{STYLESHEET}</style></head>
<body><div id="main"></div>{glue}</body>
</html>"#
    ))
}

async fn live(
    ws: WebSocketUpgrade,
    Query(params): Query<HashMap<String, String>>,
    State(state): State<AppState>,
    pool: Arc<LiveViewPool>,
    runtime: Handle,
) -> Response {
    let target = params.get("page").cloned().unwrap_or_else(|| "/".into());
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let page = Page::from_path(path, query);
    let data: Arc<dyn DataSource> = Arc::new(WarehouseData {
        reader: state.reader.clone(),
        runtime,
    });
    ws.on_upgrade(move |socket| async move {
        if let Err(error) = pool
            .launch_with_props(axum_socket(socket), app, AppProps { page, data })
            .await
        {
            tracing::debug!(?error, "dashboard socket closed");
        }
    })
}

/// The dashboard's data, read through the warehouse on the service's main runtime (LiveView
/// runs pages on its own single-threaded pool).
struct WarehouseData {
    reader: Arc<Reader>,
    runtime: Handle,
}

impl WarehouseData {
    /// Runs a warehouse read on the service's runtime; errors become the page's message.
    async fn run<T, F>(
        &self,
        read: impl FnOnce(Arc<Reader>) -> F + Send + 'static,
    ) -> Result<T, String>
    where
        T: Send + 'static,
        F: std::future::Future<Output = datacat_warehouse::Result<T>> + Send + 'static,
    {
        let reader = self.reader.clone();
        self.runtime
            .spawn(async move { read(reader).await })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }
}

/// Rows of each list a session's live page shows (its latest): the page is read again every
/// 2 s while the session is active.
const LIVE_PAGE_ROWS: u64 = 2000;

#[async_trait]
impl DataSource for WarehouseData {
    async fn sessions(&self, query: SessionQuery) -> Result<SessionPage, String> {
        self.run(move |r| async move { r.list_sessions(&query).await })
            .await
    }

    async fn session(&self, id: String) -> Result<Option<SessionDetail>, String> {
        // A live page reloads this every 2 s: the latest rows only.
        let rows = datacat_warehouse::DetailRows::Latest {
            limit: LIVE_PAGE_ROWS,
        };
        self.run(move |r| async move { r.session(&id, rows).await })
            .await
    }

    async fn products(&self, query: SessionQuery) -> Result<Vec<ProductSummary>, String> {
        self.run(move |r| async move { r.products(&query).await })
            .await
    }

    async fn trend(&self, query: SessionQuery) -> Result<Vec<TrendPoint>, String> {
        self.run(move |r| async move { r.product_trend(&query).await })
            .await
    }

    async fn metric_across(
        &self,
        metric: String,
        query: SessionQuery,
        stat: MetricStat,
    ) -> Result<MetricAcrossSessions, String> {
        self.run(move |r| async move { r.metric_across_sessions(&metric, &query, stat, 100).await })
            .await
    }
}

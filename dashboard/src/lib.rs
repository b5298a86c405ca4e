//! The DataCat dashboard: Dioxus components and pages, independent of the renderer.
//!
//! Pages get their data through [`DataSource`], which the host implements (the query
//! service, over its warehouse reads), so no page ever builds SQL and the same components
//! could be compiled for a wasm build that implements `DataSource` over the REST API.

mod chart;
mod format;
mod pages;
mod style;

use std::sync::Arc;

use async_trait::async_trait;
use datacat_protocol::api::{SessionDetail, SessionQuery, SessionSummary};
use dioxus::prelude::*;

pub use format::url_encode;
pub use style::STYLESHEET;

/// Where pages get their data.
#[async_trait]
pub trait DataSource: Send + Sync {
    async fn sessions(&self, query: SessionQuery) -> Result<Vec<SessionSummary>, String>;
    async fn session(&self, id: String) -> Result<Option<SessionDetail>, String>;
}

/// Which page to show; parsed from the URL by the host.
#[derive(Debug, Clone, PartialEq)]
pub enum Page {
    Sessions(Box<SessionQuery>),
    Session(String),
    NotFound(String),
}

impl Page {
    /// Maps a dashboard path (and its query string) to a page.
    pub fn from_path(path: &str, query: &str) -> Page {
        let segments: Vec<&str> = path
            .trim_matches('/')
            .split('/')
            .filter(|s| !s.is_empty())
            .collect();
        match segments.as_slice() {
            [] | ["sessions"] => Page::Sessions(Box::new(parse_query(query))),
            ["sessions", id] => Page::Session(id.to_string()),
            _ => Page::NotFound(path.to_string()),
        }
    }
}

fn parse_query(query: &str) -> SessionQuery {
    SessionQuery::parse(query, &[]).unwrap_or_default()
}

/// The root component's props: the page and the data source.
#[derive(Clone)]
pub struct AppProps {
    pub page: Page,
    pub data: Arc<dyn DataSource>,
}

/// Shared with every page through context.
#[derive(Clone)]
pub struct Data(pub Arc<dyn DataSource>);

/// The root component.
pub fn app(props: AppProps) -> Element {
    use_context_provider(|| Data(props.data.clone()));
    let body = match props.page {
        Page::Sessions(query) => rsx! { pages::sessions::SessionsPage { query: *query.clone() } },
        Page::Session(id) => rsx! { pages::session::SessionPage { id } },
        Page::NotFound(path) => rsx! {
            div { class: "empty", "No page at {path}. " a { href: "/", "Back to sessions" } }
        },
    };
    rsx! {
        header { class: "topbar",
            a { class: "brand", href: "/", "DataCat" }
            nav { a { href: "/", "Sessions" } }
        }
        main { class: "content", {body} }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_come_from_paths() {
        assert_eq!(Page::from_path("/", ""), Page::Sessions(Box::default()));
        assert_eq!(
            Page::from_path("/sessions", "status=crashed&product=space%20game&limit=5"),
            Page::Sessions(Box::new(SessionQuery {
                product: Some("space game".into()),
                status: Some("crashed".into()),
                limit: Some(5),
                ..Default::default()
            }))
        );
        assert_eq!(
            Page::from_path("/sessions/abc", ""),
            Page::Session("abc".into())
        );
        assert_eq!(
            Page::from_path("/nope/x/y", ""),
            Page::NotFound("/nope/x/y".into())
        );
    }
}

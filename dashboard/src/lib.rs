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
use datacat_api::answers::{
    MetricAcrossSessions, MetricStat, ProductSummary, SessionDetail, SessionPage, SessionQuery,
    TrendPoint,
};
use dioxus::prelude::*;

pub use format::url_encode;
pub use style::STYLESHEET;

/// Where pages get their data.
#[async_trait]
pub trait DataSource: Send + Sync {
    async fn sessions(&self, query: SessionQuery) -> Result<SessionPage, String>;
    async fn session(&self, id: String) -> Result<Option<SessionDetail>, String>;
    async fn products(&self, query: SessionQuery) -> Result<Vec<ProductSummary>, String>;
    async fn trend(&self, query: SessionQuery) -> Result<Vec<TrendPoint>, String>;
    async fn metric_across(
        &self,
        metric: String,
        query: SessionQuery,
        stat: MetricStat,
    ) -> Result<MetricAcrossSessions, String>;
}

/// The metric explorer's question: a metric, a figure, and which sessions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Exploration {
    pub metric: String,
    pub stat: MetricStat,
    pub query: SessionQuery,
}

/// Which page to show; parsed from the URL by the host.
#[derive(Debug, Clone, PartialEq)]
pub enum Page {
    Sessions(Box<SessionQuery>),
    Session(String),
    Products(Box<SessionQuery>),
    Metrics(Box<Exploration>),
    /// The URL's filters do not parse: say why instead of showing everything.
    BadFilter(String),
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
        let parsed = |extra: &[&str]| SessionQuery::parse(query, extra);
        match segments.as_slice() {
            [] | ["sessions"] => match parsed(&[]) {
                Ok(query) => Page::Sessions(Box::new(query)),
                Err(error) => Page::BadFilter(error),
            },
            ["sessions", id] => Page::Session(datacat_api::query::decode(id)),
            ["products"] => match parsed(&[]) {
                Ok(query) => Page::Products(Box::new(query)),
                Err(error) => Page::BadFilter(error),
            },
            ["explore"] => {
                let pairs = datacat_api::query::pairs(query);
                let get = |key: &str| datacat_api::query::param(&pairs, key).unwrap_or_default();
                let stat = MetricStat::from_name(get("stat")).unwrap_or_default();
                match parsed(&["name", "stat"]) {
                    Ok(query) => Page::Metrics(Box::new(Exploration {
                        metric: get("name").to_string(),
                        stat,
                        query,
                    })),
                    Err(error) => Page::BadFilter(error),
                }
            }
            _ => Page::NotFound(path.to_string()),
        }
    }
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
        Page::Sessions(query) => rsx! { pages::sessions::SessionsPage { query: *query } },
        Page::Session(id) => rsx! { pages::session::SessionPage { id } },
        Page::Products(query) => rsx! { pages::products::ProductsPage { query: *query } },
        Page::Metrics(exploration) => {
            rsx! { pages::explorer::ExplorerPage { exploration: *exploration } }
        }
        Page::BadFilter(error) => rsx! {
            div { class: "error", "The filters in this link do not work: {error}. " a { href: "/", "All sessions" } }
        },
        Page::NotFound(path) => rsx! {
            div { class: "empty", "No page at {path}. " a { href: "/", "Back to sessions" } }
        },
    };
    rsx! {
        header { class: "topbar",
            a { class: "brand", href: "/", "DataCat" }
            nav {
                a { href: "/", "Sessions" }
                a { href: "/products", "Products" }
                a { href: "/explore", "Metric explorer" }
            }
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
                status: Some(datacat_protocol::Status::Crashed),
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
        assert!(matches!(
            Page::from_path("/", "status=exploded"),
            Page::BadFilter(_)
        ));
        let Page::Metrics(exploration) = Page::from_path(
            "/explore",
            "name=memory_usage&stat=avg&ever_contains=w.open%3Dspace%20probe",
        ) else {
            panic!("the metric explorer")
        };
        assert_eq!(exploration.metric, "memory_usage");
        assert_eq!(exploration.stat, MetricStat::Avg);
        assert_eq!(exploration.query.ever_contains[0].value, "space probe");
        assert!(matches!(
            Page::from_path("/products", "product=x"),
            Page::Products(_)
        ));
    }
}

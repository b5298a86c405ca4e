//! Products: per product and version, sessions by status and the crash-free rate, with the
//! trend of the sessions the filters select.

use datacat_api::answers::{ProductSummary, SessionQuery, TrendPoint};
use datacat_protocol::Status;
use dioxus::prelude::*;

use crate::chart::{BarChart, LineChart};
use crate::format::{short_time, url_encode};
use crate::pages::{use_answer, FilterForm, StatusBadge};

#[component]
pub fn ProductsPage(query: SessionQuery) -> Element {
    let loaded = use_answer(query.clone(), |data, filter: SessionQuery| async move {
        let products = data.products(filter.clone()).await?;
        let trend = data.trend(filter).await?;
        Ok((products, trend))
    });
    let body = match &*loaded.read() {
        None => rsx! { p { class: "muted", "Loading products…" } },
        Some(Err(error)) => rsx! { p { class: "error", "Could not load products: {error}" } },
        Some(Ok((products, _))) if products.is_empty() => {
            rsx! { p { class: "empty", "No sessions match." } }
        }
        Some(Ok((products, trend))) => rsx! {
            ProductTable { products: products.clone() }
            Trend { days: trend.clone() }
        },
    };
    rsx! {
        h1 { "Products" }
        FilterForm { query: query.clone(), action: "/products".to_string(), extra: Vec::new() }
        {body}
    }
}

#[component]
fn ProductTable(products: Vec<ProductSummary>) -> Element {
    rsx! {
        table { class: "products",
            thead { tr {
                th { "Product" } th { "Version" } th { "Sessions" }
                for status in Status::ALL { th { StatusBadge { status: *status } } }
                th { "Crash-free" } th { "Last started" }
            } }
            tbody {
                for p in products.iter() {
                    tr { key: "{p.product}/{p.version}",
                        td { a { href: "/products?product={url_encode(&p.product)}", "{p.product}" } }
                        td { a { href: "/?product={url_encode(&p.product)}&version={url_encode(&p.version)}", "{p.version}" } }
                        td { "{p.sessions}" }
                        for status in Status::ALL {
                            td {
                                a { href: "/?product={url_encode(&p.product)}&version={url_encode(&p.version)}&status={status}",
                                    "{p.statuses.get(status.as_str()).copied().unwrap_or(0)}"
                                }
                            }
                        }
                        td { class: if p.crash_free_rate < 0.99 { "rate bad" } else { "rate" },
                            "{p.crash_free_rate * 100.0:.1} %"
                        }
                        td { "{short_time(&p.last_started_at)}" }
                    }
                }
            }
        }
    }
}

/// Sessions per day (bars) and the crash-free rate per day (line).
#[component]
fn Trend(days: Vec<TrendPoint>) -> Element {
    if days.is_empty() {
        return rsx! {};
    }
    let bars: Vec<(String, f64)> = days
        .iter()
        .map(|d| (d.date.clone(), d.sessions as f64))
        .collect();
    let rates: Vec<(f64, f64)> = days
        .iter()
        .enumerate()
        .map(|(i, d)| (i as f64, d.crash_free_rate * 100.0))
        .collect();
    rsx! {
        h2 { "Trend" }
        BarChart { title: "Sessions per day".to_string(), bars }
        LineChart { title: "Crash-free sessions per day (%)".to_string(), points: rates }
    }
}

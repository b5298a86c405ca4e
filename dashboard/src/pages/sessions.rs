//! The sessions list.

use datacat_protocol::api::SessionQuery;
use dioxus::prelude::*;

use crate::format::{short_time, url_encode};
use crate::pages::StatusBadge;
use crate::Data;

const STATUSES: [&str; 5] = ["active", "ended", "crashed", "hung", "lost"];

#[component]
pub fn SessionsPage(query: SessionQuery) -> Element {
    let data = use_context::<Data>();
    let filter = query.clone();
    let sessions = use_resource(move || {
        let data = data.clone();
        let filter = filter.clone();
        async move { data.0.sessions(filter).await }
    });
    let product = query.product.clone().unwrap_or_default();
    let version = query.version.clone().unwrap_or_default();
    let status = query.status.clone().unwrap_or_default();
    let body = match &*sessions.read() {
        None => rsx! { p { class: "muted", "Loading sessions…" } },
        Some(Err(error)) => rsx! { p { class: "error", "Could not load sessions: {error}" } },
        Some(Ok(list)) if list.is_empty() => rsx! { p { class: "empty", "No sessions match." } },
        Some(Ok(list)) => rsx! {
            table { class: "sessions",
                thead { tr { th { "Status" } th { "Product" } th { "Version" } th { "Started" } th { "Host" } th { "Events" } th { "Session" } } }
                tbody {
                    for session in list.iter() {
                        tr { key: "{session.id}",
                            td { StatusBadge { status: session.status.clone() } }
                            td { a { href: "/?product={url_encode(&session.product)}", "{session.product}" } }
                            td { "{session.version}" }
                            td { "{short_time(&session.created_at)}" }
                            td { "{session.hostname}" }
                            td { "{session.event_count}" }
                            td { a { class: "mono", href: "/sessions/{session.id}", "{session.id}" } }
                        }
                    }
                }
            }
        },
    };
    rsx! {
        h1 { "Sessions" }
        form { class: "filters", method: "get", action: "/",
            label { "Product " input { name: "product", value: "{product}" } }
            label { "Version " input { name: "version", value: "{version}" } }
            label { "Status "
                select { name: "status",
                    option { value: "", selected: status.is_empty(), "any" }
                    for s in STATUSES {
                        option { value: "{s}", selected: status == s, "{s}" }
                    }
                }
            }
            button { r#type: "submit", "Filter" }
        }
        {body}
    }
}

//! The sessions list: every filter, sortable columns, cursor pages, live.

use datacat_api::answers::{Order, SessionQuery, SortKey};
use dioxus::prelude::*;

use crate::format::{short_time, url_encode};
use crate::pages::{use_live_answer, FilterForm, StatusBadge};

#[component]
pub fn SessionsPage(query: SessionQuery) -> Element {
    // Live: fetched again every few seconds, replacing the table only when the answer is in.
    let page = use_live_answer(
        query.clone(),
        |data, filter| async move { data.sessions(filter).await },
        |_| true,
    );
    let base = query.to_query_string();
    let sort_link = |key: SortKey, name: &str| {
        let mut next = query.clone();
        let order = if query.sort == key && query.order == Order::Desc {
            Order::Asc
        } else {
            Order::Desc
        };
        next.sort = key;
        next.order = order;
        next.cursor = None;
        let arrow = match (query.sort == key, query.order) {
            (true, Order::Desc) => " ↓",
            (true, Order::Asc) => " ↑",
            _ => "",
        };
        (
            format!("/?{}", next.to_query_string()),
            format!("{name}{arrow}"),
        )
    };
    let (started_href, started_label) = sort_link(SortKey::Started, "Started");
    let (updated_href, updated_label) = sort_link(SortKey::Updated, "Updated");
    let (ended_href, ended_label) = sort_link(SortKey::Ended, "Ended");
    let (events_href, events_label) = sort_link(SortKey::Events, "Events");
    let body = match &*page.read() {
        None => rsx! { p { class: "muted", "Loading sessions…" } },
        Some(Err(error)) => rsx! { p { class: "error", "Could not load sessions: {error}" } },
        Some(Ok(list)) if list.sessions.is_empty() => {
            rsx! { p { class: "empty", "No sessions match." } }
        }
        Some(Ok(list)) => rsx! {
            table { class: "sessions",
                thead { tr {
                    th { "Status" } th { "Product" } th { "Version" }
                    th { a { href: "{started_href}", "{started_label}" } }
                    th { a { href: "{updated_href}", "{updated_label}" } }
                    th { a { href: "{ended_href}", "{ended_label}" } }
                    th { "Host" } th { "Environment" }
                    th { a { href: "{events_href}", "{events_label}" } }
                    th { "End reason" } th { "Session" }
                } }
                tbody {
                    for session in list.sessions.iter() {
                        tr { key: "{session.id}", class: "session-row status-row-{session.status}",
                            td { StatusBadge { status: session.status } }
                            td { a { href: "/?product={url_encode(&session.product)}", "{session.product}" } }
                            td { "{session.version}" }
                            td { "{short_time(&session.created_at)}" }
                            td { "{short_time(&session.updated_at)}" }
                            td { "{session.ended_at.as_deref().map(short_time).unwrap_or_default()}" }
                            td { "{session.hostname}" }
                            td { class: "environment",
                                "{session.environment}"
                                for (key, value) in session.tags.iter() {
                                    " "
                                    span { class: "tag", "{key}: {value}" }
                                }
                            }
                            td { "{session.event_count}" }
                            td { "{session.end_reason}" }
                            td { a { class: "mono", href: "/sessions/{url_encode(&session.id)}", "{session.id}" } }
                        }
                    }
                }
            }
            if let Some(cursor) = &list.next_cursor {
                p { class: "pager",
                    a { href: "/?{base}&cursor={url_encode(cursor)}", "Next page →" }
                }
            }
        },
    };
    rsx! {
        h1 { "Sessions" }
        FilterForm { query: query.clone(), action: "/".to_string(), extra: Vec::new() }
        {body}
    }
}

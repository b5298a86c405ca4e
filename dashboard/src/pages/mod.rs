//! The pages, and the pieces several of them share.

pub mod explorer;
mod loading;
pub mod products;
pub mod session;
pub mod sessions;
mod state;
mod timeline;

use datacat_api::answers::{Order, PathValue, SessionQuery, SortKey, Tag};
use datacat_protocol::{Level, Status};
use dioxus::prelude::*;

pub use loading::{use_answer, use_live_answer};

/// A status as a coloured badge.
#[component]
pub fn StatusBadge(status: Status) -> Element {
    rsx! { span { class: "badge status-{status}", "{status}" } }
}

/// A repeatable filter's boxes: one per value given, and an empty one to add another.
fn boxes(values: impl Iterator<Item = String>) -> Vec<String> {
    values.chain(std::iter::once(String::new())).collect()
}

/// The tag filters as `key:value` boxes.
fn tag_values(tags: &[Tag]) -> Vec<String> {
    boxes(tags.iter().map(|tag| format!("{}:{}", tag.key, tag.value)))
}

fn path_values(list: &[PathValue]) -> Vec<String> {
    boxes(list.iter().map(|pv| format!("{}={}", pv.path, pv.value)))
}

fn time_value(ms: Option<u64>) -> String {
    ms.map(datacat_protocol::time::rfc3339_ms)
        .unwrap_or_default()
}

/// A choice of one of a vocabulary's names, `chosen` selected; with `any` first (no choice)
/// where the filter may be left out.
#[component]
fn NameSelect(
    name: &'static str,
    names: &'static [&'static str],
    chosen: &'static str,
    any: bool,
) -> Element {
    rsx! {
        select { name: "{name}",
            if any {
                option { value: "", selected: chosen.is_empty(), "any" }
            }
            for n in names {
                option { value: "{n}", selected: chosen == *n, "{n}" }
            }
        }
    }
}

/// Every sessions filter, as a GET form: submitting it puts the filters in the URL, so a
/// filtered view is a link to share. `action` is the page the form shows again; `extra`
/// inputs (name, value) ride along (the metric explorer's metric and figure).
#[component]
pub fn FilterForm(query: SessionQuery, action: String, extra: Vec<(String, String)>) -> Element {
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    let status = query.status.map(Status::as_str).unwrap_or_default();
    let level = query.level.map(Level::as_str).unwrap_or_default();
    let sort = query.sort.as_str();
    let ascending = query.order == Order::Asc;
    let state_lists = [
        ("state", "State now (path=value)", path_values(&query.state)),
        ("ever", "State ever (path=value)", path_values(&query.ever)),
        (
            "contains",
            "Array now contains (path=value)",
            path_values(&query.contains),
        ),
        (
            "ever_contains",
            "Array ever contained (path=value)",
            path_values(&query.ever_contains),
        ),
    ];
    rsx! {
        form { class: "filters", method: "get", action: "{action}",
            for (name, value) in extra.iter() {
                input { r#type: "hidden", name: "{name}", value: "{value}" }
            }
            div { class: "row",
                label { "Search " input { name: "q", value: "{text(&query.q)}", placeholder: "id, host, reason, state…" } }
                label { "Product " input { name: "product", value: "{text(&query.product)}" } }
                label { "Version " input { name: "version", value: "{text(&query.version)}", size: "8" } }
                label { "Status " NameSelect { name: "status", names: Status::NAMES, chosen: status, any: true } }
                label { "Host " input { name: "hostname", value: "{text(&query.hostname)}", size: "10" } }
                label { "Machine id " input { name: "machine_id", value: "{text(&query.machine_id)}", size: "10" } }
                label { "Environment " input { name: "environment", value: "{text(&query.environment)}", size: "10" } }
                for value in tag_values(&query.tags) {
                    label { "Tag " input { name: "tag", value: "{value}", placeholder: "key:value", size: "12" } }
                }
            }
            div { class: "row",
                label { "From " input { name: "from", value: "{time_value(query.from_ms)}", placeholder: "2026-11-01T00:00:00Z", size: "22" } }
                label { "To " input { name: "to", value: "{time_value(query.to_ms)}", size: "22" } }
                label { "Has event " input { name: "event", value: "{text(&query.event)}", size: "12" } }
                label { "Event level " NameSelect { name: "level", names: Level::NAMES, chosen: level, any: true } }
                label { "Sort " NameSelect { name: "sort", names: SortKey::NAMES, chosen: sort, any: false } }
                label { "Order "
                    select { name: "order",
                        option { value: "{Order::Desc}", selected: !ascending, "newest / most first" }
                        option { value: "{Order::Asc}", selected: ascending, "oldest / least first" }
                    }
                }
            }
            div { class: "row",
                for (name, label, values) in state_lists {
                    label { "{label} "
                        for value in values {
                            input { name: "{name}", value: "{value}", size: "18" }
                        }
                    }
                }
            }
            button { r#type: "submit", "Apply filters" }
            " "
            a { href: "{action}", "Clear" }
        }
    }
}

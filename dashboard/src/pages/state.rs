//! The state: a collapsible JSON tree, a slider through its history, and the diff between
//! two snapshots.

use datacat_api::answers::StateSnapshot;
use datacat_protocol::state_diff;
use dioxus::prelude::*;
use serde_json::{json, Value};

use crate::format::short_time;

/// A JSON value as a tree of `<details>`: objects and arrays fold, the top levels open.
#[component]
pub fn JsonTree(value: Value) -> Element {
    rsx! { div { class: "json-tree", JsonNode { name: String::new(), value, depth: 0 } } }
}

#[component]
fn JsonNode(name: String, value: Value, depth: u32) -> Element {
    let key = if name.is_empty() {
        rsx! {}
    } else {
        rsx! { span { class: "json-key", "{name}: " } }
    };
    match &value {
        Value::Object(map) => rsx! {
            details { class: "json-node", open: depth < 2,
                summary { {key} span { class: "muted", "{{…}} {map.len()} keys" } }
                for (k, v) in map.iter() {
                    JsonNode { key: "{k}", name: k.clone(), value: v.clone(), depth: depth + 1 }
                }
            }
        },
        Value::Array(items) => rsx! {
            details { class: "json-node", open: depth < 2,
                summary { {key} span { class: "muted", "[…] {items.len()} items" } }
                for (i, v) in items.iter().enumerate() {
                    JsonNode { key: "{i}", name: i.to_string(), value: v.clone(), depth: depth + 1 }
                }
            }
        },
        leaf => rsx! {
            div { class: "json-leaf", {key} span { class: "json-value", "{leaf}" } }
        },
    }
}

/// The history slider: pick a snapshot ("to") and one before it ("from"); shows the state
/// at "to" and what changed since "from".
#[component]
pub fn StateHistory(history: Vec<StateSnapshot>) -> Element {
    let last = history.len().saturating_sub(1);
    let mut to = use_signal(|| last);
    let mut from = use_signal(|| last.saturating_sub(1));
    if history.is_empty() {
        return rsx! { p { class: "muted", "No state changes." } };
    }
    let to_index = (*to.read()).min(last);
    let from_index = (*from.read()).min(to_index);
    let at = &history[to_index];
    let before = if from_index == to_index {
        json!({})
    } else {
        history[from_index].state.clone()
    };
    let diff = state_diff(&before, &at.state).unwrap_or_else(|| json!({}));
    let diff_text = serde_json::to_string_pretty(&diff).unwrap_or_default();
    rsx! {
        div { class: "history",
            label { "Snapshot "
                input { r#type: "range", class: "history-to", min: "0", max: "{last}", value: "{to_index}",
                    oninput: move |event| {
                        let chosen = event.value().parse().unwrap_or(0);
                        to.set(chosen);
                        from.set(chosen.saturating_sub(1));
                    }
                }
                " {to_index + 1} of {history.len()} · after batch {at.seq} · {short_time(&at.timestamp)}"
            }
            label { "Compare with "
                input { r#type: "range", class: "history-from", min: "0", max: "{to_index}", value: "{from_index}",
                    oninput: move |event| from.set(event.value().parse().unwrap_or(0))
                }
                " snapshot {from_index + 1}"
            }
            div { class: "columns",
                div { h3 { "State at snapshot {to_index + 1}" } JsonTree { value: at.state.clone() } }
                div { h3 { "Changed since snapshot {from_index + 1}" } pre { class: "diff", "{diff_text}" } }
            }
        }
    }
}

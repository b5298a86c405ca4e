//! A session's events as a timeline: levels, expandable data, exception tracebacks.

use datacat_api::answers::EventView;
use dioxus::prelude::*;

use crate::format::short_time;

#[component]
pub fn Timeline(events: Vec<EventView>) -> Element {
    if events.is_empty() {
        return rsx! { p { class: "muted", "No events." } };
    }
    rsx! {
        ol { class: "timeline",
            for (i, event) in events.iter().enumerate() {
                TimelineEvent { key: "{i}", event: event.clone() }
            }
        }
    }
}

#[component]
fn TimelineEvent(event: EventView) -> Element {
    let has_data = !event.data.as_object().is_some_and(|o| o.is_empty()) && !event.data.is_null();
    let data = serde_json::to_string_pretty(&event.data).unwrap_or_default();
    let traceback = event
        .exception
        .as_ref()
        .map(|e| e.stacktrace.concat())
        .unwrap_or_default();
    rsx! {
        li { class: "event level-{event.level}",
            span { class: "time", "{short_time(&event.timestamp)}" }
            span { class: "badge level-{event.level}", "{event.level}" }
            strong { class: "event-name", "{event.name}" }
            if !event.category.is_empty() {
                span { class: "muted", " [{event.category}]" }
            }
            if !event.message.is_empty() {
                span { class: "message", " {event.message}" }
            }
            if has_data {
                details { class: "event-data",
                    summary { "data" }
                    pre { "{data}" }
                }
            }
            if let Some(exception) = &event.exception {
                details { class: "exception", open: true,
                    summary { strong { "{exception.type_name}" } ": {exception.message}" }
                    if !exception.frames.is_empty() {
                        ol { class: "frames",
                            for (i, frame) in exception.frames.iter().enumerate() {
                                li { key: "{i}",
                                    span { class: "mono", "{frame.file}:{frame.line}" }
                                    " in "
                                    strong { "{frame.function}" }
                                    if !frame.code.is_empty() {
                                        pre { class: "code", "{frame.code}" }
                                    }
                                }
                            }
                        }
                    } else if !exception.stacktrace.is_empty() {
                        pre { class: "traceback", "{traceback}" }
                    }
                }
            }
        }
    }
}

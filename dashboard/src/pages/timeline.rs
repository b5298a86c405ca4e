//! A session's events as a timeline: levels, expandable data, exception tracebacks.

use datacat_api::answers::EventView;
use datacat_protocol::Frame;
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
                        Frames { frames: exception.frames.clone() }
                    } else if !exception.stacktrace.is_empty() {
                        pre { class: "traceback", "{traceback}" }
                    }
                    for (i, cause) in exception.causes.iter().enumerate() {
                        div { key: "{i}", class: "cause",
                            span { class: "muted", "{relation_text(&cause.relation)} " }
                            strong { "{cause.type_name}" }
                            ": {cause.message}"
                            if !cause.frames.is_empty() {
                                Frames { frames: cause.frames.clone() }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// An exception's frames, innermost last, each with its source line and (when the
/// application sent them) its local variables.
#[component]
fn Frames(frames: Vec<Frame>) -> Element {
    rsx! {
        ol { class: "frames",
            for (i, frame) in frames.iter().enumerate() {
                li { key: "{i}",
                    span { class: "mono", "{frame.file}:{frame.line}" }
                    " in "
                    strong { "{frame.function}" }
                    if !frame.code.is_empty() {
                        pre { class: "code", "{frame.code}" }
                    }
                    if !frame.locals.is_empty() {
                        details { class: "locals", open: true,
                            summary { "locals ({frame.locals.len()})" }
                            pre { class: "mono",
                                for (name, value) in frame.locals.iter() {
                                    "{name} = {value}\n"
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// How a cause relates to the error before it, as the dashboard says it.
fn relation_text(relation: &str) -> &str {
    match relation {
        "cause" => "raised from",
        "context" => "raised while handling",
        "wrapped" => "wrapping",
        "joined" => "joined with",
        _ => "caused by",
    }
}

//! One session's story: header, events, state and its history, metrics.

use std::collections::BTreeMap;

use datacat_protocol::api::{EventView, SessionDetail};
use dioxus::prelude::*;

use crate::chart::LineChart;
use crate::format::short_time;
use crate::pages::StatusBadge;
use crate::Data;

#[component]
pub fn SessionPage(id: String) -> Element {
    let data = use_context::<Data>();
    let session_id = id.clone();
    let detail = use_resource(move || {
        let data = data.clone();
        let id = session_id.clone();
        async move { data.0.session(id).await }
    });
    let view = match &*detail.read() {
        None => rsx! { p { class: "muted", "Loading session…" } },
        Some(Err(error)) => rsx! { p { class: "error", "Could not load the session: {error}" } },
        Some(Ok(None)) => {
            rsx! { p { class: "empty", "No session {id}. " a { href: "/", "Back to sessions" } } }
        }
        Some(Ok(Some(session))) => rsx! { SessionView { session: session.clone() } },
    };
    view
}

#[component]
fn SessionView(session: SessionDetail) -> Element {
    let state = serde_json::to_string_pretty(&session.state).unwrap_or_default();
    let ended = session
        .ended_at
        .as_deref()
        .map(short_time)
        .unwrap_or_else(|| "—".into());
    let mut series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for (i, metric) in session.metrics.iter().enumerate() {
        series
            .entry(metric.name.clone())
            .or_default()
            .push((i as f64, metric.value));
    }
    rsx! {
        section { class: "session-header",
            h1 { "{session.product} {session.version} " StatusBadge { status: session.status.clone() } }
            dl { class: "facts",
                dt { "Session" } dd { class: "mono", "{session.id}" }
                dt { "Started" } dd { "{short_time(&session.created_at)}" }
                dt { "Ended" } dd { "{ended}" }
                dt { "End reason" } dd { "{session.end_reason}" }
                dt { "Host" } dd { "{session.machine.hostname} ({session.machine.os_name} {session.machine.os_version})" }
                dt { "Process" } dd { "pid {session.machine.pid} {session.machine.executable}" }
            }
        }
        section {
            h2 { "Events ({session.events.len()})" }
            if session.events.is_empty() {
                p { class: "muted", "No events." }
            } else {
                table { class: "events",
                    thead { tr { th { "Time" } th { "Level" } th { "Name" } th { "Message" } th { "Data" } } }
                    tbody {
                        for (i, event) in session.events.iter().enumerate() {
                            EventRow { key: "{i}", event: event.clone() }
                        }
                    }
                }
            }
        }
        section {
            h2 { "State" }
            pre { class: "state", "{state}" }
            p { class: "muted", "{session.state_history.len()} state changes" }
        }
        section {
            h2 { "Metrics" }
            if series.is_empty() {
                p { class: "muted", "No metrics." }
            }
            for (name, points) in series.into_iter() {
                LineChart { key: "{name}", title: name.clone(), points }
            }
        }
    }
}

#[component]
fn EventRow(event: EventView) -> Element {
    let data = if event.data.as_object().is_some_and(|o| o.is_empty()) {
        String::new()
    } else {
        event.data.to_string()
    };
    rsx! {
        tr { class: "level-{event.level}",
            td { "{short_time(&event.timestamp)}" }
            td { span { class: "badge level-{event.level}", "{event.level}" } }
            td { "{event.name}" }
            td { "{event.message}" }
            td { class: "mono", "{data}" }
        }
    }
}

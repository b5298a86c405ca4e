//! One session's story: the header, for a crashed or hung session its last moments first,
//! the timeline, the state with its history, and the metrics. An active session's page
//! updates itself.

use std::collections::BTreeMap;

use datacat_api::answers::{MetricView, SessionDetail};
use datacat_protocol::time::parse_time_ms;
use datacat_protocol::Status;
use dioxus::prelude::*;

use crate::chart::{BarChart, LineChart};
use crate::format::{short_time, url_encode};
use crate::pages::state::{JsonTree, StateHistory};
use crate::pages::timeline::Timeline;
use crate::pages::{use_live_answer, StatusBadge};

/// Events shown in "last moments".
const LAST_MOMENTS: usize = 10;

#[component]
pub fn SessionPage(id: String) -> Element {
    let detail = use_live_answer(
        id.clone(),
        |data, id| async move { data.session(id).await },
        // An ended session changes no more.
        |answer| matches!(answer, Ok(Some(s)) if !s.status.is_terminal()),
    );
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

fn duration(session: &SessionDetail) -> String {
    let start = parse_time_ms(&session.created_at).unwrap_or_default();
    let end = session
        .ended_at
        .as_deref()
        .or(Some(session.updated_at.as_str()))
        .and_then(parse_time_ms)
        .unwrap_or(start);
    let seconds = end.saturating_sub(start) / 1000;
    let running = if session.ended_at.is_none() {
        " so far"
    } else {
        ""
    };
    match seconds {
        s if s < 60 => format!("{s} s{running}"),
        s if s < 3600 => format!("{} min {} s{running}", s / 60, s % 60),
        s => format!("{} h {} min{running}", s / 3600, (s % 3600) / 60),
    }
}

#[component]
fn SessionView(session: SessionDetail) -> Element {
    let ended = session
        .ended_at
        .as_deref()
        .map(short_time)
        .unwrap_or_else(|| "—".into());
    let troubled = matches!(
        session.status,
        Status::Crashed | Status::Hung | Status::Lost
    );
    let last_events: Vec<_> = session
        .events
        .iter()
        .rev()
        .take(LAST_MOMENTS)
        .cloned()
        .collect();
    let machine = &session.machine;
    let os = format!("{} {}", machine.os_name, machine.os_version);
    let cpus = (machine.cpu_count > 0).then(|| format!("{} CPUs", machine.cpu_count));
    let id = (!session.machine_id.is_empty()).then(|| format!("id {}", session.machine_id));
    let machine_facts: Vec<String> = [
        Some(machine.hostname.clone()),
        Some(os.trim().to_string()),
        cpus,
        id,
    ]
    .into_iter()
    .flatten()
    .filter(|fact| !fact.is_empty())
    .collect();
    let machine_line = machine_facts.join(" · ");
    let process = if machine.pid > 0 {
        format!(
            "pid {} {} ({})",
            machine.pid, machine.executable, machine.user
        )
    } else {
        "—".to_string()
    };
    rsx! {
        section { class: "session-header",
            h1 { "{session.product} {session.version} " StatusBadge { status: session.status } }
            dl { class: "facts",
                dt { "Session" } dd { class: "mono", "{session.id}" }
                dt { "Started" } dd { "{short_time(&session.created_at)}" }
                dt { "Ended" } dd { "{ended}" }
                dt { "Duration" } dd { "{duration(&session)}" }
                if !session.end_reason.is_empty() {
                    dt { "End reason" } dd { class: "end-reason", "{session.end_reason}" }
                }
                if !session.environment.is_empty() {
                    dt { "Environment" } dd { a { href: "/?environment={url_encode(&session.environment)}", "{session.environment}" } }
                }
                if !session.tags.is_empty() {
                    dt { "Tags" }
                    dd {
                        for (key, value, filter) in tag_links(&session.tags) {
                            a { class: "tag", href: "/?tag={filter}", "{key}: {value}" }
                            " "
                        }
                    }
                }
                dt { "Machine" } dd { "{machine_line}" }
                dt { "Process" } dd { "{process}" }
                if session.hang_count > 0 {
                    dt { "Hangs" } dd { "{session.hang_count}" }
                }
                if session.dropped_records > 0 || session.gaps > 0 {
                    dt { "Lost data" } dd { class: "error", "{session.dropped_records} records dropped, {session.gaps} batches never arrived" }
                }
            }
        }
        if troubled {
            section { class: "last-moments",
                h2 { "Last moments before it {session.status}" }
                p { class: "muted", "The last {last_events.len()} events, newest first, and the state at the end." }
                Timeline { events: last_events }
                JsonTree { value: session.state.clone() }
            }
        }
        section {
            h2 { "Timeline ({session.events.len()} events)" }
            if let Some(more) = &session.more {
                p { class: "muted", "The latest {more.limit} of each list are shown; earlier ones are in the API (GET /api/sessions/{session.id}?offset=)." }
            }
            Timeline { events: session.events.clone() }
        }
        section {
            h2 { "State" }
            JsonTree { value: session.state.clone() }
            h3 { "History ({session.state_history.len()} changes)" }
            StateHistory { history: session.state_history.clone() }
        }
        section {
            h2 { "Metrics" }
            Metrics { metrics: session.metrics.clone() }
        }
    }
}

/// One chart per metric: a line over time for gauges, counters and timers; bars of the
/// latest buckets for histograms.
#[component]
fn Metrics(metrics: Vec<MetricView>) -> Element {
    if metrics.is_empty() {
        return rsx! { p { class: "muted", "No metrics." } };
    }
    let mut series: BTreeMap<String, Vec<&MetricView>> = BTreeMap::new();
    for metric in &metrics {
        series.entry(metric.name.clone()).or_default().push(metric);
    }
    let charts = series.into_iter().map(|(name, points)| {
        let latest = points.last().copied();
        let unit = latest.map(|m| m.unit.clone()).unwrap_or_default();
        let title = if unit.is_empty() { name.clone() } else { format!("{name} ({unit})") };
        match latest.and_then(|m| m.histogram.clone()) {
            Some(histogram) => {
                let mut bars: Vec<(String, f64)> = histogram
                    .bounds
                    .iter()
                    .zip(&histogram.counts)
                    .map(|(bound, count)| (format!("≤{bound}"), *count as f64))
                    .collect();
                if let Some(overflow) = histogram.counts.get(histogram.bounds.len()) {
                    bars.push(("more".to_string(), *overflow as f64));
                }
                rsx! { BarChart { key: "{name}", title: format!("{title}: {} observations", histogram.count), bars } }
            }
            None => {
                let line: Vec<(f64, f64)> = points
                    .iter()
                    .map(|m| (parse_time_ms(&m.timestamp).unwrap_or_default() as f64 / 1000.0, m.value))
                    .collect();
                rsx! { LineChart { key: "{name}", title, points: line } }
            }
        }
    });
    rsx! { for chart in charts { {chart} } }
}

/// Each tag with the query value that lists the sessions having it.
fn tag_links(tags: &BTreeMap<String, String>) -> Vec<(String, String, String)> {
    tags.iter()
        .map(|(key, value)| {
            let filter = url_encode(&format!("{key}:{value}"));
            (key.clone(), value.clone(), filter)
        })
        .collect()
}

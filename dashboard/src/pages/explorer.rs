//! The metric explorer: one metric across the sessions a filter selects (peak, min, avg or
//! last per session), as a distribution chart and a ranked table.

use datacat_api::answers::{MetricAcrossSessions, MetricStat};
use dioxus::prelude::*;

use crate::chart::BarChart;
use crate::format::url_encode;
use crate::pages::{use_answer, FilterForm, StatusBadge};
use crate::Exploration;

#[component]
pub fn ExplorerPage(exploration: Exploration) -> Element {
    let answer = use_answer(exploration.clone(), |data, asked: Exploration| async move {
        if asked.metric.is_empty() {
            return Ok(None);
        }
        data.metric_across(asked.metric, asked.query, asked.stat)
            .await
            .map(Some)
    });
    let stat = exploration.stat.as_str();
    let body = match &*answer.read() {
        None => rsx! { p { class: "muted", "Loading…" } },
        Some(Err(error)) => rsx! { p { class: "error", "Could not load the metric: {error}" } },
        Some(Ok(None)) => {
            rsx! { p { class: "muted", "Name a metric to explore, e.g. memory_usage." } }
        }
        Some(Ok(Some(answer))) if answer.sessions.is_empty() => {
            rsx! { p { class: "empty", "No matching session has this metric." } }
        }
        Some(Ok(Some(answer))) => rsx! { Answer { answer: answer.clone() } },
    };
    let filters = datacat_api::query::pairs(&exploration.query.to_query_string());
    let extra = vec![
        ("name".to_string(), exploration.metric.clone()),
        ("stat".to_string(), stat.to_string()),
    ];
    rsx! {
        h1 { "Metric explorer" }
        form { class: "filters", method: "get", action: "/explore",
            // The filters below ride along when only the metric changes.
            for (name, value) in filters.iter() {
                input { r#type: "hidden", name: "{name}", value: "{value}" }
            }
            div { class: "row",
                label { "Metric " input { name: "name", value: "{exploration.metric}", placeholder: "memory_usage" } }
                label { "Per session "
                    select { name: "stat",
                        for s in MetricStat::ALL {
                            option { value: "{s}", selected: stat == s.as_str(), "{s}" }
                        }
                    }
                }
                button { r#type: "submit", "Explore" }
            }
        }
        FilterForm { query: exploration.query.clone(), action: "/explore".to_string(), extra }
        {body}
    }
}

#[component]
fn Answer(answer: MetricAcrossSessions) -> Element {
    let stat = answer.stat.as_str();
    let bars: Vec<(String, f64)> = answer
        .distribution
        .iter()
        .map(|b| (format!("{:.4}", b.lower), b.sessions as f64))
        .collect();
    rsx! {
        p { "{answer.matched_sessions} sessions have {answer.metric}; the {stat} per session:" }
        BarChart { title: format!("{} {stat}: sessions per bucket", answer.metric), bars }
        table { class: "explorer",
            thead { tr {
                th { "Session" } th { "Product" } th { "Version" } th { "Status" }
                th { "Peak" } th { "Min" } th { "Avg" } th { "Last" } th { "Points" }
            } }
            tbody {
                for s in answer.sessions.iter() {
                    tr { key: "{s.session_id}",
                        td { a { class: "mono", href: "/sessions/{url_encode(&s.session_id)}", "{s.session_id}" } }
                        td { "{s.product}" } td { "{s.version}" }
                        td { StatusBadge { status: s.status } }
                        td { "{s.peak}" } td { "{s.min}" } td { "{s.avg:.3}" } td { "{s.last}" } td { "{s.points}" }
                    }
                }
            }
        }
    }
}

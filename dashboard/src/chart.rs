//! SVG charts drawn by the dashboard itself (no CDN, works offline).

use dioxus::prelude::*;

const WIDTH: f64 = 600.0;
const HEIGHT: f64 = 160.0;
const PAD: f64 = 28.0;

/// A line chart of `(x, y)` points (x in any unit, e.g. milliseconds).
#[component]
pub fn LineChart(title: String, points: Vec<(f64, f64)>) -> Element {
    if points.is_empty() {
        return rsx! {};
    }
    let (min_x, max_x) = bounds(points.iter().map(|p| p.0));
    let (min_y, max_y) = bounds(points.iter().map(|p| p.1));
    let scale_x = |x: f64| PAD + (x - min_x) / span(min_x, max_x) * (WIDTH - 2.0 * PAD);
    let scale_y = |y: f64| HEIGHT - PAD - (y - min_y) / span(min_y, max_y) * (HEIGHT - 2.0 * PAD);
    let path: String = points
        .iter()
        .enumerate()
        .map(|(i, (x, y))| {
            format!(
                "{}{:.1},{:.1}",
                if i == 0 { "M" } else { " L" },
                scale_x(*x),
                scale_y(*y)
            )
        })
        .collect();
    let last = points.last().map(|p| p.1).unwrap_or_default();
    rsx! {
        figure { class: "chart",
            figcaption { "{title} " span { class: "muted", "last {last} · min {min_y} · max {max_y} · {points.len()} points" } }
            svg { view_box: "0 0 {WIDTH} {HEIGHT}", width: "100%", height: "{HEIGHT}",
                line { x1: "{PAD}", y1: "{HEIGHT - PAD}", x2: "{WIDTH - PAD}", y2: "{HEIGHT - PAD}", class: "axis" }
                line { x1: "{PAD}", y1: "{PAD}", x2: "{PAD}", y2: "{HEIGHT - PAD}", class: "axis" }
                text { x: "2", y: "{PAD}", class: "tick", "{max_y}" }
                text { x: "2", y: "{HEIGHT - PAD}", class: "tick", "{min_y}" }
                path { d: "{path}", class: "series" }
                for (x, y) in points.iter() {
                    circle { cx: "{scale_x(*x):.1}", cy: "{scale_y(*y):.1}", r: "2.5", class: "dot" }
                }
            }
        }
    }
}

fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    })
}

/// A zero span (one point, or a flat series) still draws.
fn span(lo: f64, hi: f64) -> f64 {
    if hi > lo {
        hi - lo
    } else {
        1.0
    }
}

/// A bar chart of labelled values (histogram buckets, counts per day).
#[component]
pub fn BarChart(title: String, bars: Vec<(String, f64)>) -> Element {
    if bars.is_empty() {
        return rsx! {};
    }
    let max = bars.iter().map(|b| b.1).fold(0.0, f64::max);
    let slot = (WIDTH - 2.0 * PAD) / bars.len() as f64;
    let bar_width = (slot * 0.8).max(1.0);
    let height = |v: f64| (v / span(0.0, max)) * (HEIGHT - 2.0 * PAD);
    // Label at most ~12 bars, evenly spaced, so labels never overlap.
    let label_every = bars.len().div_ceil(12).max(1);
    let total: f64 = bars.iter().map(|b| b.1).sum();
    rsx! {
        figure { class: "chart bar-chart",
            figcaption { "{title} " span { class: "muted", "max {max} · total {total} · {bars.len()} bars" } }
            svg { view_box: "0 0 {WIDTH} {HEIGHT}", width: "100%", height: "{HEIGHT}",
                line { x1: "{PAD}", y1: "{HEIGHT - PAD}", x2: "{WIDTH - PAD}", y2: "{HEIGHT - PAD}", class: "axis" }
                text { x: "2", y: "{PAD}", class: "tick", "{max}" }
                for (i, (label, value)) in bars.iter().enumerate() {
                    rect {
                        key: "{i}",
                        x: "{PAD + i as f64 * slot + (slot - bar_width) / 2.0:.1}",
                        y: "{HEIGHT - PAD - height(*value):.1}",
                        width: "{bar_width:.1}",
                        height: "{height(*value):.1}",
                        class: "bar",
                        title { "{label}: {value}" }
                    }
                    if i % label_every == 0 {
                        text { x: "{PAD + i as f64 * slot:.1}", y: "{HEIGHT - 8.0}", class: "tick", "{label}" }
                    }
                }
            }
        }
    }
}

//! Per-session metric summaries (peak, min, sum, points, last), kept in a session's progress
//! and written as one versioned row per metric a batch touched. Ingest applies every batch
//! exactly once and in order, so a summary counts every point exactly once; the metric
//! explorer reads these rows instead of every point.

use std::collections::BTreeMap;

use datacat_protocol::record::Metric;
use datacat_warehouse::rows::MetricSessionRow;
pub use datacat_warehouse::rows::MetricSummary;

/// Adds a metric point to the summaries; returns the metric's name (touched this batch).
pub fn observe(summaries: &mut BTreeMap<String, MetricSummary>, metric: &Metric, ts_ms: u64) {
    match summaries.get_mut(&metric.name) {
        Some(summary) => summary.add(metric.value, ts_ms),
        None => {
            summaries.insert(
                metric.name.clone(),
                MetricSummary::first(metric.value, ts_ms),
            );
        }
    }
}

/// The rows of the summaries named in `touched`, at `version`.
pub fn rows<'a>(
    summaries: &BTreeMap<String, MetricSummary>,
    touched: impl IntoIterator<Item = &'a String>,
    session_id: &str,
    version: u64,
    date: u16,
) -> Vec<MetricSessionRow> {
    touched
        .into_iter()
        .filter_map(|name| {
            let summary = summaries.get(name)?;
            Some(MetricSessionRow::new(
                name, session_id, version, date, summary,
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(value: f64) -> Metric {
        Metric::gauge(0, "fps", value)
    }

    #[test]
    fn summaries_count_every_point_and_keep_the_latest() {
        let mut summaries = BTreeMap::new();
        for (value, ts) in [(30.0, 10), (60.0, 30), (45.0, 20)] {
            observe(&mut summaries, &point(value), ts);
        }
        let fps = &summaries["fps"];
        assert_eq!(
            (fps.peak, fps.min, fps.sum, fps.points),
            (60.0, 30.0, 135.0, 3)
        );
        assert_eq!(
            (fps.last, fps.last_ts_ms),
            (60.0, 30),
            "latest by time, not by arrival"
        );
        let rows = rows(&summaries, [&"fps".to_string()], "s", 4, 7);
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].version, rows[0].date, rows[0].points), (4, 7, 3));
    }
}

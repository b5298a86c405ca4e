//! Per-session metric summaries (peak, min, sum, points, last), kept in a session's progress
//! and written as one versioned row per metric a batch touched. Ingest applies every batch
//! exactly once and in order, so a summary counts every point exactly once; the metric
//! explorer reads these rows instead of every point.

use std::collections::BTreeMap;

use datacat_protocol::record::Metric;
use datacat_warehouse::rows::MetricSessionRow;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricSummary {
    pub peak: f64,
    pub min: f64,
    pub sum: f64,
    pub points: u64,
    pub last: f64,
    pub last_ts_ms: u64,
}

impl MetricSummary {
    fn first(value: f64, ts_ms: u64) -> Self {
        Self {
            peak: value,
            min: value,
            sum: value,
            points: 1,
            last: value,
            last_ts_ms: ts_ms,
        }
    }

    fn add(&mut self, value: f64, ts_ms: u64) {
        self.peak = self.peak.max(value);
        self.min = self.min.min(value);
        self.sum += value;
        self.points += 1;
        // The latest point by time; on a tie the later record (batches apply in order).
        if ts_ms >= self.last_ts_ms {
            self.last = value;
            self.last_ts_ms = ts_ms;
        }
    }
}

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
            let s = summaries.get(name)?;
            Some(MetricSessionRow {
                name: name.clone(),
                session_id: session_id.to_string(),
                version,
                date,
                peak: s.peak,
                min: s.min,
                sum: s.sum,
                points: s.points,
                last: s.last,
                last_ts_ms: s.last_ts_ms,
            })
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

//! Counters and histograms aggregated in the daemon, sent only when they changed.
//!
//! A counter (`type: counter` with a `delta`) keeps a running total per name and tag set; a
//! histogram keeps per-bucket counts per name, tag set and bucket bounds. At each flush the
//! aggregates that changed since the previous flush become one metric record each; one that
//! did not change sends nothing.

use std::collections::BTreeMap;

use datacat_protocol::{Histogram, Metric, MetricKind, Record};

#[derive(Default)]
pub struct Aggregates {
    counters: BTreeMap<String, Aggregate<f64>>,
    histograms: BTreeMap<String, Aggregate<Histogram>>,
}

struct Aggregate<T> {
    name: String,
    tags: Vec<String>,
    unit: String,
    value: T,
    changed: bool,
}

/// What identifies one aggregate: name, tags and bounds as JSON, so that names containing
/// `:` or other separators never run into each other.
fn key(name: &str, tags: &[String], bounds: &[f64]) -> String {
    serde_json::json!([name, tags, bounds]).to_string()
}

fn sorted(tags: Vec<String>) -> Vec<String> {
    let mut tags = tags;
    tags.sort();
    tags
}

impl Aggregates {
    pub fn add_to_counter(&mut self, name: String, tags: Vec<String>, unit: String, delta: f64) {
        let tags = sorted(tags);
        let entry = self
            .counters
            .entry(key(&name, &tags, &[]))
            .or_insert_with(|| Aggregate {
                name,
                tags,
                unit,
                value: 0.0,
                changed: false,
            });
        entry.value += delta;
        entry.changed = true;
    }

    pub fn observe(
        &mut self,
        name: String,
        tags: Vec<String>,
        unit: String,
        bounds: &[f64],
        value: f64,
    ) {
        let tags = sorted(tags);
        let histogram = Histogram::new(bounds);
        let entry = self
            .histograms
            .entry(key(&name, &tags, &histogram.bounds))
            .or_insert_with(|| Aggregate {
                name,
                tags,
                unit,
                value: histogram,
                changed: false,
            });
        entry.value.observe(value);
        entry.changed = true;
    }

    /// One metric record per aggregate that changed since the last call.
    pub fn take_changed(&mut self, ts_ms: u64) -> Vec<Record> {
        let mut records = Vec::new();
        for counter in self.counters.values_mut().filter(|c| c.changed) {
            counter.changed = false;
            records.push(metric(
                ts_ms,
                counter,
                MetricKind::Counter,
                counter.value,
                None,
            ));
        }
        for histogram in self.histograms.values_mut().filter(|h| h.changed) {
            histogram.changed = false;
            let snapshot = Some(histogram.value.clone());
            records.push(metric(
                ts_ms,
                histogram,
                MetricKind::Histogram,
                histogram.value.mean(),
                snapshot,
            ));
        }
        records
    }
}

fn metric<T>(
    ts_ms: u64,
    aggregate: &Aggregate<T>,
    kind: MetricKind,
    value: f64,
    histogram: Option<Histogram>,
) -> Record {
    Record::Metric(Metric {
        ts_ms,
        name: aggregate.name.clone(),
        kind,
        value,
        unit: aggregate.unit.clone(),
        tags: aggregate.tags.clone(),
        count: None,
        histogram,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(records: &[Record]) -> Vec<(String, f64)> {
        records
            .iter()
            .map(|r| match r {
                Record::Metric(m) => (m.name.clone(), m.value),
                other => panic!("not a metric: {other:?}"),
            })
            .collect()
    }

    #[test]
    fn counters_total_per_tag_set_and_are_sent_only_when_changed() {
        let mut aggregates = Aggregates::default();
        aggregates.add_to_counter(
            "hits:total".into(),
            vec!["b".into(), "a".into()],
            String::new(),
            2.0,
        );
        aggregates.add_to_counter(
            "hits:total".into(),
            vec!["a".into(), "b".into()],
            String::new(),
            3.0,
        );
        aggregates.add_to_counter("hits:total".into(), vec![], String::new(), 1.0);
        let mut first = values(&aggregates.take_changed(1));
        first.sort_by(|a, b| a.1.total_cmp(&b.1));
        assert_eq!(
            first,
            vec![("hits:total".into(), 1.0), ("hits:total".into(), 5.0)]
        );
        assert!(
            aggregates.take_changed(2).is_empty(),
            "unchanged aggregates are not re-sent"
        );
        aggregates.add_to_counter("hits:total".into(), vec![], String::new(), 1.0);
        assert_eq!(
            values(&aggregates.take_changed(3)),
            vec![("hits:total".into(), 2.0)]
        );
    }

    #[test]
    fn histograms_bucket_observations_with_an_overflow_bucket() {
        let mut aggregates = Aggregates::default();
        for v in [0.2, 0.7, 5.0] {
            aggregates.observe("load".into(), vec![], "s".into(), &[0.5, 1.0], v);
        }
        let records = aggregates.take_changed(1);
        let Record::Metric(metric) = &records[0] else {
            panic!()
        };
        let histogram = metric.histogram.as_ref().unwrap();
        assert_eq!(
            (histogram.counts.clone(), histogram.count),
            (vec![1, 1, 1], 3)
        );
        assert_eq!(metric.kind, MetricKind::Histogram);
        assert!((metric.value - 5.9 / 3.0).abs() < 1e-9);
    }
}

//! Questions across sessions: the products summary and one metric over the sessions matching
//! a filter (the metric explorer).

use std::collections::BTreeMap;

use clickhouse::Row;
use datacat_api::answers::{
    DistributionBucket, MetricAcrossSessions, MetricStat, ProductSummary, SessionMetric,
    SessionQuery, TrendPoint,
};
use datacat_protocol::time::rfc3339_ms;
use datacat_protocol::Status;
use serde::Deserialize;

use crate::filter::{matching_session_ids, matching_sessions, Param, Sql};
use crate::{Reader, Result};

/// Most sessions the metric explorer lists (the distribution covers all of them).
pub const MAX_METRIC_SESSIONS: u32 = 10_000;
/// Buckets of the metric explorer's distribution.
pub const DISTRIBUTION_BUCKETS: usize = 20;

#[derive(Row, Deserialize)]
struct ProductStatusRow {
    product: String,
    version: String,
    status: String,
    sessions: u64,
    last_started_ms: u64,
}

#[derive(Row, Deserialize)]
struct MetricStatsRow {
    session_id: String,
    peak: f64,
    min: f64,
    sum: f64,
    last: f64,
    points: u64,
}

#[derive(Row, Deserialize)]
struct TrendRow {
    day: u16,
    sessions: u64,
    crashed: u64,
}

impl Reader {
    /// Per product and version (of the sessions matching `query`): sessions per status and
    /// the crash-free rate. Newest product versions first.
    pub async fn products(&self, query: &SessionQuery) -> Result<Vec<ProductSummary>> {
        let matching = matching_sessions(query, "product, version, status, started_ms");
        let sql = Sql {
            text: format!(
                "SELECT product, version, status, count() AS sessions,
                        max(started_ms) AS last_started_ms
                 FROM ({}) GROUP BY product, version, status",
                matching.text
            ),
            params: matching.params,
        };
        let rows = sql
            .bind_to(self.client.query(&sql.text))
            .fetch_all::<ProductStatusRow>()
            .await?;
        let mut products: BTreeMap<(String, String), (BTreeMap<String, u64>, u64)> =
            BTreeMap::new();
        for row in rows {
            let entry = products.entry((row.product, row.version)).or_default();
            *entry.0.entry(row.status).or_default() += row.sessions;
            entry.1 = entry.1.max(row.last_started_ms);
        }
        let mut summaries: Vec<ProductSummary> = products
            .into_iter()
            .map(|((product, version), (statuses, last_started_ms))| {
                let sessions: u64 = statuses.values().sum();
                let crashed = statuses.get(Status::Crashed.as_str()).copied().unwrap_or(0);
                ProductSummary {
                    product,
                    version,
                    sessions,
                    crash_free_rate: 1.0 - crashed as f64 / sessions.max(1) as f64,
                    statuses,
                    last_started_at: rfc3339_ms(last_started_ms),
                }
            })
            .collect();
        summaries.sort_by(|a, b| {
            a.product
                .cmp(&b.product)
                .then_with(|| b.last_started_at.cmp(&a.last_started_at))
        });
        Ok(summaries)
    }

    /// Sessions per start day (UTC) of the sessions matching `query`, with crashes; oldest
    /// day first, at most the last 366 days that have sessions.
    pub async fn product_trend(&self, query: &SessionQuery) -> Result<Vec<TrendPoint>> {
        let matching = matching_sessions(query, "started_date, status");
        let sql = Sql {
            text: format!(
                "SELECT toUInt16(started_date) AS day, count() AS sessions,
                        countIf(status = 'crashed') AS crashed
                 FROM ({}) GROUP BY started_date ORDER BY started_date DESC LIMIT 366",
                matching.text
            ),
            params: matching.params,
        };
        let mut days: Vec<TrendPoint> = sql
            .bind_to(self.client.query(&sql.text))
            .fetch_all::<TrendRow>()
            .await?
            .into_iter()
            .map(|row| TrendPoint {
                date: datacat_protocol::time::iso_date(u64::from(row.day) * 86_400_000),
                sessions: row.sessions,
                crashed: row.crashed,
                crash_free_rate: 1.0 - row.crashed as f64 / row.sessions.max(1) as f64,
            })
            .collect();
        days.reverse();
        Ok(days)
    }

    /// `metric` summarised per session (peak, min, avg, last) over the sessions matching
    /// `query`, ranked by `stat`, with the distribution of `stat`.
    pub async fn metric_across_sessions(
        &self,
        metric: &str,
        query: &SessionQuery,
        stat: MetricStat,
        limit: u32,
    ) -> Result<MetricAcrossSessions> {
        let matching = matching_session_ids(query);
        // Ingest keeps each session's summary of each metric (points counted exactly once);
        // the latest version per session is the answer. Keyed by name: a range read.
        let mut params = vec![Param::Str(metric.to_string())];
        params.extend(matching.params);
        let sql = Sql {
            text: format!(
                "SELECT session_id, argMax(peak, version) AS peak, argMax(min, version) AS min,
                        argMax(sum, version) AS sum, argMax(last, version) AS last,
                        argMax(points, version) AS points
                 FROM metric_sessions WHERE name = ? AND session_id IN ({})
                 GROUP BY session_id",
                matching.text
            ),
            params,
        };
        let rows = sql
            .bind_to(self.client.query(&sql.text))
            .fetch_all::<MetricStatsRow>()
            .await?;
        let mut sessions: Vec<SessionMetric> = rows
            .into_iter()
            .map(|r| SessionMetric {
                session_id: r.session_id,
                product: String::new(),
                version: String::new(),
                status: Status::default(),
                peak: r.peak,
                min: r.min,
                avg: r.sum / r.points.max(1) as f64,
                last: r.last,
                points: r.points,
            })
            .collect();
        let figure = |m: &SessionMetric| match stat {
            MetricStat::Peak => m.peak,
            MetricStat::Min => m.min,
            MetricStat::Avg => m.avg,
            MetricStat::Last => m.last,
        };
        sessions.sort_by(|a, b| {
            figure(b)
                .total_cmp(&figure(a))
                .then_with(|| a.session_id.cmp(&b.session_id))
        });
        let values: Vec<f64> = sessions.iter().map(figure).collect();
        let matched_sessions = sessions.len() as u64;
        sessions.truncate(limit.clamp(1, MAX_METRIC_SESSIONS) as usize);
        self.describe_sessions(&mut sessions).await?;
        Ok(MetricAcrossSessions {
            metric: metric.to_string(),
            stat,
            matched_sessions,
            sessions,
            distribution: distribution(&values, DISTRIBUTION_BUCKETS),
        })
    }
}

#[derive(Row, Deserialize)]
struct SessionLabelRow {
    session_id: String,
    product: String,
    version: String,
    status: String,
}

impl Reader {
    /// Fills in product, version and status of the listed sessions (a key lookup), a
    /// thousand ids per query: a list of thousands would pass ClickHouse's `max_query_size`.
    async fn describe_sessions(&self, sessions: &mut [SessionMetric]) -> Result<()> {
        for part in sessions.chunks_mut(DESCRIBED_PER_QUERY) {
            let placeholders = vec!["?"; part.len()].join(", ");
            let sql = Sql {
                text: format!(
                    "SELECT session_id, product, version, status FROM sessions
                     WHERE session_id IN ({placeholders})
                     ORDER BY session_id, last_seq DESC LIMIT 1 BY session_id"
                ),
                params: part
                    .iter()
                    .map(|s| Param::Str(s.session_id.clone()))
                    .collect(),
            };
            let labels: std::collections::HashMap<String, SessionLabelRow> = sql
                .bind_to(self.client.query(&sql.text))
                .fetch_all::<SessionLabelRow>()
                .await?
                .into_iter()
                .map(|row| (row.session_id.clone(), row))
                .collect();
            for session in part {
                if let Some(label) = labels.get(&session.session_id) {
                    session.product = label.product.clone();
                    session.version = label.version.clone();
                    session.status = Status::from_name(&label.status).unwrap_or_default();
                }
            }
        }
        Ok(())
    }
}

/// Session ids one lookup names (each at most 128 bytes, quoted: well within the 256 KiB
/// ClickHouse takes in a query by default).
const DESCRIBED_PER_QUERY: usize = 1000;

/// Equal-width buckets from the smallest to the largest value.
pub fn distribution(values: &[f64], buckets: usize) -> Vec<DistributionBucket> {
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    let (Some(low), Some(high)) = (
        finite.iter().copied().reduce(f64::min),
        finite.iter().copied().reduce(f64::max),
    ) else {
        return Vec::new();
    };
    if low == high {
        return vec![DistributionBucket {
            lower: low,
            upper: high,
            sessions: finite.len() as u64,
        }];
    }
    let width = (high - low) / buckets as f64;
    let mut counts = vec![0u64; buckets];
    for value in finite {
        let index = (((value - low) / width) as usize).min(buckets - 1);
        counts[index] += 1;
    }
    counts
        .into_iter()
        .enumerate()
        .map(|(i, sessions)| DistributionBucket {
            lower: low + width * i as f64,
            upper: if i + 1 == buckets {
                high
            } else {
                low + width * (i + 1) as f64
            },
            sessions,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distribution_covers_every_value_once() {
        let values = [0.0, 1.0, 2.5, 10.0, 10.0, f64::NAN];
        let buckets = distribution(&values, 4);
        assert_eq!(buckets.len(), 4);
        assert_eq!(buckets.iter().map(|b| b.sessions).sum::<u64>(), 5);
        assert_eq!(buckets[0].lower, 0.0);
        assert_eq!(buckets[3].upper, 10.0);
        assert_eq!(
            buckets[3].sessions, 2,
            "the maximum falls in the last bucket"
        );
        assert_eq!(distribution(&[3.0, 3.0], 4).len(), 1);
        assert!(distribution(&[], 4).is_empty());
    }
}

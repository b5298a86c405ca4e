//! One session's parts on their own: its events (filtered, paged), its metrics as series, and
//! its state at any point of its history or the diff between two points.

use datacat_api::answers::{EventPage, MetricSeries, StateDiffView, StateSnapshot};
use datacat_protocol::state_diff;
use serde_json::{json, Value};

use crate::read::{event_view, metric_view, snapshot};
use crate::rows::{EventRow, MetricRow, StateHistoryRow};
use crate::{Reader, Result, WarehouseError};

/// Most events one page returns.
pub const MAX_EVENT_PAGE: u32 = 5000;
pub const DEFAULT_EVENT_PAGE: u32 = 500;

/// Which of a session's events.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub level: Option<String>,
    pub name: Option<String>,
    pub category: Option<String>,
    pub limit: Option<u32>,
    pub offset: u64,
}

/// A point of a session's state history: after batch `seq`, or as of a time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StatePoint {
    Seq(u64),
    AtMs(u64),
    Latest,
}

impl Reader {
    /// Does the session exist (any version of its row)?
    pub async fn session_exists(&self, id: &str) -> Result<bool> {
        let count: u64 = self
            .client
            .query("SELECT count() FROM sessions WHERE session_id = ?")
            .bind(id)
            .fetch_one()
            .await?;
        Ok(count > 0)
    }

    /// The session's events in time order, filtered and paged.
    pub async fn session_events(&self, id: &str, filter: &EventFilter) -> Result<EventPage> {
        let limit = filter
            .limit
            .unwrap_or(DEFAULT_EVENT_PAGE)
            .clamp(1, MAX_EVENT_PAGE);
        let text = |v: &Option<String>| v.clone().unwrap_or_default();
        // Copies of an event row are identical, so filtering before FINAL collapses them is
        // safe here (unlike for sessions).
        let rows = self
            .client
            .query(
                "SELECT ?fields FROM events FINAL WHERE session_id = ?
                   AND (? = '' OR level = ?) AND (? = '' OR name = ?) AND (? = '' OR category = ?)
                 ORDER BY ts_ms, seq, idx LIMIT ?, ?",
            )
            .bind(id)
            .bind(text(&filter.level))
            .bind(text(&filter.level))
            .bind(text(&filter.name))
            .bind(text(&filter.name))
            .bind(text(&filter.category))
            .bind(text(&filter.category))
            .bind(filter.offset)
            .bind(limit)
            .fetch_all::<EventRow>()
            .await?;
        let full = rows.len() == limit as usize;
        Ok(EventPage {
            events: rows.into_iter().map(event_view).collect::<Result<_>>()?,
            next_offset: full.then_some(filter.offset + u64::from(limit)),
        })
    }

    /// The session's metrics, one series per name (optionally just `name`), in time order.
    pub async fn session_metrics(&self, id: &str, name: Option<&str>) -> Result<Vec<MetricSeries>> {
        let name = name.unwrap_or_default();
        let rows = self
            .client
            .query(
                "SELECT ?fields FROM metrics FINAL WHERE session_id = ? AND (? = '' OR name = ?)
                 ORDER BY name, ts_ms, seq, idx",
            )
            .bind(id)
            .bind(name)
            .bind(name)
            .fetch_all::<MetricRow>()
            .await?;
        let mut series: Vec<MetricSeries> = Vec::new();
        for row in rows {
            let point = metric_view(row);
            match series.last_mut() {
                Some(last) if last.name == point.name => last.points.push(point),
                _ => series.push(MetricSeries {
                    name: point.name.clone(),
                    kind: point.kind,
                    unit: point.unit.clone(),
                    points: vec![point],
                }),
            }
        }
        Ok(series)
    }

    async fn history(&self, id: &str) -> Result<Vec<StateHistoryRow>> {
        Ok(self
            .client
            .query("SELECT ?fields FROM state_history FINAL WHERE session_id = ? ORDER BY seq, idx")
            .bind(id)
            .fetch_all::<StateHistoryRow>()
            .await?)
    }

    /// The state at a point of the session's history (`None`: no such session). Before the
    /// first update the state is `{}`.
    pub async fn state_at(&self, id: &str, point: StatePoint) -> Result<Option<StateSnapshot>> {
        if !self.session_exists(id).await? {
            return Ok(None);
        }
        let history = self.history(id).await?;
        Ok(Some(pick(history, point)?))
    }

    /// The states at two points and the diff from the first to the second.
    pub async fn state_diff(
        &self,
        id: &str,
        from: StatePoint,
        to: StatePoint,
    ) -> Result<Option<StateDiffView>> {
        if !self.session_exists(id).await? {
            return Ok(None);
        }
        let history = self.history(id).await?;
        let from = pick(history.clone(), from)?;
        let to = pick(history, to)?;
        let diff = state_diff(&from.state, &to.state).unwrap_or_else(|| json!({}));
        Ok(Some(StateDiffView { from, to, diff }))
    }
}

/// The last snapshot at or before `point`.
fn pick(history: Vec<StateHistoryRow>, point: StatePoint) -> Result<StateSnapshot> {
    let chosen = history.into_iter().rfind(|h| match point {
        StatePoint::Seq(seq) => h.seq <= seq,
        StatePoint::AtMs(ms) => h.ts_ms <= ms,
        StatePoint::Latest => true,
    });
    match chosen {
        Some(row) => snapshot(row),
        None => Ok(StateSnapshot {
            seq: 0,
            timestamp: String::new(),
            update: Value::Null,
            state: json!({}),
            client_timestamp: None,
        }),
    }
}

impl StatePoint {
    /// `seq=<n>` or `at=<time>` (Unix ms or RFC 3339); neither is the latest state.
    pub fn parse(seq: Option<&str>, at: Option<&str>) -> Result<Self> {
        match (seq, at) {
            (Some(_), Some(_)) => Err(WarehouseError::InvalidInput(
                "give seq or at, not both".into(),
            )),
            (Some(seq), None) => seq.parse().map(StatePoint::Seq).map_err(|_| {
                WarehouseError::InvalidInput(format!("seq must be an integer, got {seq:?}"))
            }),
            (None, Some(at)) => datacat_protocol::time::parse_time_ms(at)
                .map(StatePoint::AtMs)
                .ok_or_else(|| {
                    WarehouseError::InvalidInput(format!(
                        "at must be Unix milliseconds or RFC 3339, got {at:?}"
                    ))
                }),
            (None, None) => Ok(StatePoint::Latest),
        }
    }
}

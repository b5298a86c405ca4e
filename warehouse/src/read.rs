//! Reading sessions back in the API's shapes. Every user value is bound, never spliced.

use clickhouse::{Client, Row, RowOwned, RowRead};
use datacat_api::answers::{
    EventView, MetricView, MoreRows, SessionDetail, SessionPage, SessionQuery, SessionSummary,
    SortKey, StateSnapshot,
};
use datacat_protocol::time::rfc3339_ms;
use datacat_protocol::{ExceptionInfo, Histogram, Level, MachineInfo, MetricKind, Status};
use serde::Deserialize;
use serde_json::Value;

use crate::filter::{is_plain_by_start, session_page, windowed_by_start, Cursor};
use crate::rows::{EventRow, MetricRow, SessionRow, StateHistoryRow};
use crate::{Connection, Result};

/// Rows of each list (history, events, metrics) a session's detail holds by default, and at
/// most: a session can have millions, and a detail is read whole into memory.
pub const DEFAULT_DETAIL_ROWS: u64 = 10_000;
pub const MAX_DETAIL_ROWS: u64 = 100_000;

/// Which rows of each list a session's detail holds, in time order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DetailRows {
    /// `limit` rows from `offset`.
    From { offset: u64, limit: u64 },
    /// The latest `limit` rows (a live page).
    Latest { limit: u64 },
}

impl Default for DetailRows {
    fn default() -> Self {
        DetailRows::From {
            offset: 0,
            limit: DEFAULT_DETAIL_ROWS,
        }
    }
}

impl DetailRows {
    fn limit(self) -> u64 {
        match self {
            DetailRows::From { limit, .. } | DetailRows::Latest { limit } => {
                limit.clamp(1, MAX_DETAIL_ROWS)
            }
        }
    }
}

/// The most sessions one list call returns.
pub const MAX_PAGE: u32 = 1000;
pub const DEFAULT_PAGE: u32 = 100;

pub struct Reader {
    pub(crate) client: Client,
}

#[derive(Row, Deserialize)]
pub(crate) struct SessionListRow {
    session_id: String,
    product: String,
    version: String,
    status: String,
    end_reason: String,
    started_ms: u64,
    updated_ms: u64,
    ended_ms: u64,
    hostname: String,
    machine_id: String,
    event_count: u64,
    environment: String,
    tag_keys: Vec<String>,
    tag_values: Vec<String>,
}

/// A session's tags from their two columns.
fn tags(keys: Vec<String>, values: Vec<String>) -> std::collections::BTreeMap<String, String> {
    keys.into_iter().zip(values).collect()
}

impl Reader {
    pub fn new(connection: &Connection) -> Result<Self> {
        Ok(Self {
            client: connection.client()?,
        })
    }

    /// The same reader, each of whose queries ClickHouse stops after `seconds`
    /// (`max_execution_time`): a read too broad to finish is refused, not left running.
    pub fn with_time_limit(self, seconds: u64) -> Self {
        Self {
            client: self
                .client
                .with_setting("max_execution_time", seconds.max(1).to_string()),
        }
    }

    /// Answers when the warehouse is reachable.
    pub async fn ping(&self) -> Result<()> {
        self.client.query("SELECT 1").fetch_one::<u8>().await?;
        Ok(())
    }

    /// One page of the sessions matching `query`, in its order (newest started first by
    /// default), after its cursor.
    pub async fn list_sessions(&self, query: &SessionQuery) -> Result<SessionPage> {
        let limit = query.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
        let rows = match self.plain_page_by_start(query, limit).await? {
            Some(rows) => rows,
            None => {
                let sql = session_page(query, "?fields", limit)?;
                sql.bind_to(self.client.query(&sql.text))
                    .fetch_all::<SessionListRow>()
                    .await?
            }
        };
        let next_cursor = (rows.len() == limit as usize)
            .then(|| rows.last())
            .flatten()
            .map(|last| {
                let value = match query.sort {
                    SortKey::Started => last.started_ms,
                    SortKey::Updated => last.updated_ms,
                    SortKey::Ended => last.ended_ms,
                    SortKey::Events => last.event_count,
                };
                Cursor {
                    value,
                    session_id: last.session_id.clone(),
                }
                .encode()
            });
        Ok(SessionPage {
            sessions: rows.into_iter().map(summary).collect(),
            next_cursor,
        })
    }

    /// The unfiltered list by start (the dashboard's first page, polled while open) read
    /// from a window of the newest rows: `None` when the window reaches the end of the table
    /// (then the general query is as cheap).
    async fn plain_page_by_start(
        &self,
        query: &SessionQuery,
        limit: u32,
    ) -> Result<Option<Vec<SessionListRow>>> {
        if !is_plain_by_start(query) {
            return Ok(None);
        }
        let mut window = u64::from(limit) * 4;
        loop {
            let (threshold, page) = windowed_by_start(query, "?fields", limit, window)?;
            let bound: Option<u64> = threshold
                .bind_to(self.client.query(&threshold.text))
                .fetch_optional()
                .await?;
            let Some(bound) = bound else {
                return Ok(None);
            };
            let rows = page
                .bind_to(self.client.query(&page.text).bind(bound))
                .fetch_all::<SessionListRow>()
                .await?;
            if rows.len() == limit as usize {
                return Ok(Some(rows));
            }
            // Too many unmerged versions in the window: widen it.
            window = window.saturating_mul(8);
        }
    }

    /// The sequence number of the last batch ingest applied to a session, or `None` when
    /// none is visible yet. Rows of a batch are visible in every other table before its
    /// session row (`Writer::insert`), so a session at `seq` shows all of `seq`'s data.
    pub async fn applied_seq(&self, id: &str) -> Result<Option<u64>> {
        let (rows, seq): (u64, u64) = self
            .client
            .query("SELECT count(), max(last_seq) FROM sessions WHERE session_id = ?")
            .bind(id)
            .fetch_one()
            .await?;
        Ok((rows > 0).then_some(seq))
    }

    /// One session with its whole story, or `None` if it was never seen.
    pub async fn session(&self, id: &str, rows: DetailRows) -> Result<Option<SessionDetail>> {
        let Some(row) = self
            .client
            .query("SELECT ?fields FROM sessions FINAL WHERE session_id = ? LIMIT 1")
            .bind(id)
            .fetch_optional::<SessionRow>()
            .await?
        else {
            return Ok(None);
        };
        let (history, cut_history) = self.rows_of(id, "state_history", "seq, idx", rows).await?;
        let (events, cut_events) = self.rows_of(id, "events", "ts_ms, seq, idx", rows).await?;
        let (metrics, cut_metrics) = self.rows_of(id, "metrics", "ts_ms, seq, idx", rows).await?;
        let mut detail = detail(row, history, events, metrics)?;
        let cut = [
            ("state_history", cut_history),
            ("events", cut_events),
            ("metrics", cut_metrics),
        ];
        let lists: Vec<String> = cut
            .iter()
            .filter(|(_, cut)| *cut)
            .map(|(name, _)| name.to_string())
            .collect();
        if !lists.is_empty() {
            detail.more = Some(MoreRows {
                limit: rows.limit(),
                next_offset: match rows {
                    DetailRows::From { offset, .. } => Some(offset + rows.limit()),
                    DetailRows::Latest { .. } => None,
                },
                lists,
            });
        }
        Ok(Some(detail))
    }

    /// Some rows of one session in one of the tables of its records, in `order` (columns,
    /// ascending), and whether there were more.
    async fn rows_of<R: RowOwned + RowRead>(
        &self,
        id: &str,
        table: &str,
        order: &str,
        rows: DetailRows,
    ) -> Result<(Vec<R>, bool)> {
        let limit = rows.limit();
        let (sql, offset) = match rows {
            DetailRows::From { offset, .. } => (
                format!(
                    "SELECT ?fields FROM {table} FINAL WHERE session_id = ? \
                     ORDER BY {order} LIMIT ?, ?"
                ),
                offset,
            ),
            DetailRows::Latest { .. } => {
                let descending = order.replace(',', " DESC,") + " DESC";
                (
                    format!(
                        "SELECT * FROM (SELECT ?fields FROM {table} FINAL WHERE session_id = ? \
                         ORDER BY {descending} LIMIT ?, ?) ORDER BY {order}"
                    ),
                    0,
                )
            }
        };
        // One more than asked for says whether there are more.
        let mut found = self
            .client
            .query(&sql)
            .bind(id)
            .bind(offset)
            .bind(limit + 1)
            .fetch_all::<R>()
            .await?;
        let cut = found.len() as u64 > limit;
        if cut {
            match rows {
                DetailRows::From { .. } => found.truncate(limit as usize),
                // The oldest of the latest `limit + 1` is the one too many.
                DetailRows::Latest { .. } => drop(found.remove(0)),
            }
        }
        Ok((found, cut))
    }
}

fn optional_time(ms: u64) -> Option<String> {
    (ms > 0).then(|| rfc3339_ms(ms))
}

pub(crate) fn summary(row: SessionListRow) -> SessionSummary {
    SessionSummary {
        id: row.session_id,
        product: row.product,
        version: row.version,
        status: Status::from_name(&row.status).unwrap_or_default(),
        end_reason: row.end_reason,
        created_at: rfc3339_ms(row.started_ms),
        updated_at: rfc3339_ms(row.updated_ms),
        ended_at: optional_time(row.ended_ms),
        hostname: row.hostname,
        machine_id: row.machine_id,
        event_count: row.event_count,
        environment: row.environment,
        tags: tags(row.tag_keys, row.tag_values),
    }
}

pub(crate) fn parse_json(text: &str) -> Result<Value> {
    if text.is_empty() {
        return Ok(Value::Null);
    }
    Ok(serde_json::from_str(text)?)
}

fn detail(
    row: SessionRow,
    history: Vec<StateHistoryRow>,
    events: Vec<EventRow>,
    metrics: Vec<MetricRow>,
) -> Result<SessionDetail> {
    let machine: MachineInfo = if row.machine.is_empty() {
        MachineInfo::default()
    } else {
        serde_json::from_str(&row.machine)?
    };
    let state_history = history
        .into_iter()
        .map(snapshot)
        .collect::<Result<Vec<_>>>()?;
    let events = events
        .into_iter()
        .map(event_view)
        .collect::<Result<Vec<_>>>()?;
    let metrics = metrics.into_iter().map(metric_view).collect();
    let status = Status::from_name(&row.status).unwrap_or_default();
    Ok(SessionDetail {
        active: status == Status::Active,
        crashed: status == Status::Crashed,
        hung: status == Status::Hung,
        id: row.session_id,
        product: row.product,
        version: row.version,
        status,
        end_reason: row.end_reason,
        created_at: rfc3339_ms(row.started_ms),
        updated_at: rfc3339_ms(row.updated_ms),
        ended_at: optional_time(row.ended_ms),
        last_heartbeat: optional_time(row.last_heartbeat_ms),
        hostname: row.hostname,
        machine_id: row.machine_id,
        machine,
        environment: row.environment,
        tags: tags(row.tag_keys, row.tag_values),
        hang_count: row.hang_count,
        hung_at: optional_time(row.hung_ms),
        dropped_records: row.dropped_records,
        gaps: row.gaps,
        last_seq: row.last_seq,
        state: parse_json(&row.state)?,
        state_history,
        events,
        metrics,
        more: None,
    })
}

pub(crate) fn snapshot(h: StateHistoryRow) -> Result<StateSnapshot> {
    Ok(StateSnapshot {
        seq: h.seq,
        timestamp: rfc3339_ms(h.ts_ms),
        update: parse_json(&h.update)?,
        state: parse_json(&h.state)?,
        client_timestamp: client_time(h.client_ts_ms),
    })
}

/// The client's time kept beside a replaced one (0: there is none).
fn client_time(client_ts_ms: u64) -> Option<String> {
    (client_ts_ms != 0).then(|| rfc3339_ms(client_ts_ms))
}

pub(crate) fn event_view(e: EventRow) -> Result<EventView> {
    let exception: Option<ExceptionInfo> = if e.exception.is_empty() {
        None
    } else {
        Some(serde_json::from_str(&e.exception)?)
    };
    Ok(EventView {
        timestamp: rfc3339_ms(e.ts_ms),
        name: e.name,
        level: Level::from_name(&e.level).unwrap_or_default(),
        category: e.category,
        group: e.group_name,
        labels: e.labels,
        message: e.message,
        data: parse_json(&e.data)?,
        exception,
        client_timestamp: client_time(e.client_ts_ms),
    })
}

pub(crate) fn metric_view(m: MetricRow) -> MetricView {
    MetricView {
        timestamp: rfc3339_ms(m.ts_ms),
        histogram: (!m.bucket_counts.is_empty()).then(|| Histogram {
            bounds: m.bucket_bounds,
            counts: m.bucket_counts,
            sum: m.hist_sum,
            count: m.count.unwrap_or_default(),
        }),
        name: m.name,
        kind: MetricKind::from_name(&m.kind).unwrap_or_default(),
        value: m.value,
        unit: m.unit,
        tags: m.tags,
        count: m.count,
        client_timestamp: client_time(m.client_ts_ms),
    }
}

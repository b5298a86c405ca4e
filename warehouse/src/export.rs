//! Streaming exports: every session, event or metric point of the sessions matching a
//! filter, read from ClickHouse row by row (never all in memory), in a stable order.

use clickhouse::query::RowCursor;
use clickhouse::Row;
use datacat_api::answers::{EventView, MetricView, SessionQuery, SessionSummary};
use futures::{Stream, StreamExt, TryStreamExt};

use crate::filter::{matching_sessions, Param, Sql};
use crate::read::{event_view, metric_view, summary, SessionListRow};
use crate::rows::{EventRow, MetricRow};
use crate::{Reader, Result};

/// Most rows one export returns.
pub const MAX_EXPORT_ROWS: u64 = 10_000_000;

/// An exported event or metric point, with its session.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Owned<T> {
    pub session_id: String,
    #[serde(flatten)]
    pub item: T,
}

impl<T> Owned<T> {
    fn of(session_id: String, item: T) -> Self {
        Owned { session_id, item }
    }
}

impl Reader {
    /// The rows `sql` selects, as they arrive.
    fn rows<R: Row>(&self, sql: &Sql) -> Result<impl Stream<Item = Result<R>> + Send + 'static>
    where
        RowCursor<R>: Stream<Item = clickhouse::error::Result<R>> + Send + 'static,
    {
        let cursor = sql.bind_to(self.client.query(&sql.text)).fetch::<R>()?;
        Ok(cursor.map_err(Into::into))
    }

    /// The matching sessions, oldest first.
    pub fn export_sessions(
        &self,
        query: &SessionQuery,
        limit: u64,
    ) -> Result<impl Stream<Item = Result<SessionSummary>> + Send + 'static> {
        let matching = matching_sessions(query, "?fields");
        let mut params = matching.params;
        params.push(Param::U64(limit.min(MAX_EXPORT_ROWS)));
        let sql = Sql {
            text: format!("{} ORDER BY started_ms, session_id LIMIT ?", matching.text),
            params,
        };
        Ok(self.rows::<SessionListRow>(&sql)?.map_ok(summary))
    }

    /// The events of the matching sessions, by session then time.
    pub fn export_events(
        &self,
        query: &SessionQuery,
        limit: u64,
    ) -> Result<impl Stream<Item = Result<Owned<EventView>>> + Send + 'static> {
        let sql = of_matching("events", query, "", limit, Vec::new());
        Ok(self.rows(&sql)?.map(|row: Result<EventRow>| {
            let row = row?;
            Ok(Owned::of(row.session_id.clone(), event_view(row)?))
        }))
    }

    /// The metric points (all, or of metric `name`) of the matching sessions.
    pub fn export_metrics(
        &self,
        query: &SessionQuery,
        name: Option<&str>,
        limit: u64,
    ) -> Result<impl Stream<Item = Result<Owned<MetricView>>> + Send + 'static> {
        let (condition, params) = match name {
            Some(name) => (" AND name = ?", vec![Param::Str(name.to_string())]),
            None => ("", Vec::new()),
        };
        let sql = of_matching("metrics", query, condition, limit, params);
        Ok(self.rows(&sql)?.map(|row: Result<MetricRow>| {
            let row = row?;
            Ok(Owned::of(row.session_id.clone(), metric_view(row)))
        }))
    }
}

/// `SELECT ?fields FROM <table> FINAL` for the matching sessions, in session and time order.
fn of_matching(
    table: &str,
    query: &SessionQuery,
    condition: &str,
    limit: u64,
    extra: Vec<Param>,
) -> Sql {
    let matching = matching_sessions(query, "session_id");
    let mut params = matching.params;
    params.extend(extra);
    params.push(Param::U64(limit.min(MAX_EXPORT_ROWS)));
    Sql {
        // Copies of one row are identical, so filtering before FINAL is safe here.
        text: format!(
            "SELECT ?fields FROM {table} FINAL WHERE session_id IN ({}){condition} \
             ORDER BY session_id, ts_ms, seq, idx LIMIT ?",
            matching.text
        ),
        params,
    }
}

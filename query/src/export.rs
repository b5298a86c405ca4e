//! Exports, streamed as they are read: `GET /api/export/{sessions|events|metrics}` as NDJSON
//! or CSV for any sessions filter, and `GET /api/data/sessions` (sessions with
//! their whole story) and `GET /api/grafana/sessions` (flat rows for a Grafana JSON source).

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use datacat_api::answers::{ErrorBody, SessionDetail, SessionQuery};
use datacat_api::query::{pairs, param};
use datacat_protocol::time::parse_time_ms;
use datacat_protocol::Status;
use futures::{stream, Stream, StreamExt, TryStreamExt};
use serde::Serialize;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::params::{session_query, SessionFilters};
use crate::AppState;

/// Sessions in one `/api/data/sessions` answer (each comes with its whole story).
const MAX_DATA_SESSIONS: u32 = 10_000;
const DEFAULT_DATA_SESSIONS: u32 = 1000;

#[derive(Clone, Copy, PartialEq)]
enum Format {
    Ndjson,
    Csv,
}

const SESSION_COLUMNS: &[&str] = &[
    "id",
    "product",
    "version",
    "status",
    "end_reason",
    "created_at",
    "updated_at",
    "ended_at",
    "hostname",
    "machine_id",
    "event_count",
];
const EVENT_COLUMNS: &[&str] = &[
    "session_id",
    "timestamp",
    "name",
    "level",
    "category",
    "group",
    "labels",
    "message",
    "data",
    "exception",
];
const METRIC_COLUMNS: &[&str] = &[
    "session_id",
    "timestamp",
    "name",
    "type",
    "value",
    "unit",
    "tags",
    "count",
    "histogram",
];

/// What a spreadsheet reads as the start of a formula (OWASP's list): a text cell starting
/// with one of these gets a leading `'`, so an application's strings cannot run as formulas
/// in whoever opens the export. Numbers are written as they are (`-0.25` stays a number).
const FORMULA_STARTS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// A CSV cell: text as is (but never a formula), other JSON as JSON text, null empty;
/// quoted when needed.
fn csv_cell(value: Option<&Value>) -> String {
    let text = match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(text)) if text.starts_with(FORMULA_STARTS) => format!("'{text}"),
        Some(Value::String(text)) => text.clone(),
        Some(other) => other.to_string(),
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

fn csv_line(value: &Value, columns: &[&str]) -> String {
    let cells: Vec<String> = columns.iter().map(|c| csv_cell(value.get(*c))).collect();
    cells.join(",") + "\n"
}

/// The export's format, limit and session filters from the query string.
fn export_params(
    query: &Option<String>,
    extra: &[&str],
) -> Result<(Format, u64, SessionQuery), ApiError> {
    let mut allowed = vec!["format"];
    allowed.extend_from_slice(extra);
    let mut filters = session_query(query, &allowed)?;
    let pairs = pairs(query.as_deref().unwrap_or_default());
    let format = match param(&pairs, "format") {
        None | Some("ndjson") => Format::Ndjson,
        Some("csv") => Format::Csv,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "format must be ndjson or csv, got {other:?}"
            )))
        }
    };
    let limit = filters
        .limit
        .take()
        .map_or(datacat_warehouse::export::MAX_EXPORT_ROWS, u64::from);
    filters.cursor = None;
    Ok((format, limit, filters))
}

/// Streams `items` in `format`; a read error mid-way cuts the response (the client sees an
/// incomplete transfer rather than a silently short file).
fn stream_response<T: Serialize + Send + 'static>(
    format: Format,
    name: &str,
    columns: &'static [&'static str],
    items: impl Stream<Item = datacat_warehouse::Result<T>> + Send + 'static,
) -> Response {
    let header_line = (format == Format::Csv).then(|| Ok(Bytes::from(columns.join(",") + "\n")));
    let lines = items.map(move |item| {
        let item = item.map_err(std::io::Error::other)?;
        let value = serde_json::to_value(&item).map_err(std::io::Error::other)?;
        Ok::<_, std::io::Error>(Bytes::from(match format {
            Format::Ndjson => value.to_string() + "\n",
            Format::Csv => csv_line(&value, columns),
        }))
    });
    let body = Body::from_stream(stream::iter(header_line).chain(lines));
    let (content_type, extension) = match format {
        Format::Ndjson => ("application/x-ndjson", "ndjson"),
        Format::Csv => ("text/csv; charset=utf-8", "csv"),
    };
    let disposition = format!("attachment; filename=\"datacat-{name}.{extension}\"");
    (
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response()
}

#[utoipa::path(get, path = "/api/export/{kind}", tag = "export",
    params(("kind" = String, Path, description = "sessions, events or metrics"),
           ("format" = Option<String>, Query, description = "ndjson (default) or csv"),
           ("name" = Option<String>, Query, description = "metrics only: just this metric"),
           SessionFilters),
    responses((status = 200, description = "NDJSON or CSV, streamed", content_type = "application/x-ndjson", body = String),
              (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
/// `GET /api/export/{kind}?format=ndjson|csv&limit=&<session filters>` (`name=` for metrics).
pub async fn export(
    State(state): State<AppState>,
    Path(kind): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let reader = &state.reader;
    Ok(match kind.as_str() {
        "sessions" => {
            let (format, limit, filters) = export_params(&query, &[])?;
            let rows = reader.export_sessions(&filters, limit)?;
            stream_response(format, "sessions", SESSION_COLUMNS, rows)
        }
        "events" => {
            let (format, limit, filters) = export_params(&query, &[])?;
            let rows = reader.export_events(&filters, limit)?;
            stream_response(format, "events", EVENT_COLUMNS, rows)
        }
        "metrics" => {
            let (format, limit, filters) = export_params(&query, &["name"])?;
            let pairs = pairs(query.as_deref().unwrap_or_default());
            let rows = reader.export_metrics(&filters, param(&pairs, "name"), limit)?;
            stream_response(format, "metrics", METRIC_COLUMNS, rows)
        }
        other => {
            return Err(ApiError::NotFound(format!(
                "no export {other:?}: use sessions, events or metrics"
            )))
        }
    })
}

#[utoipa::path(get, path = "/api/data/sessions", tag = "export", params(SessionFilters),
    responses((status = 200, body = Vec<SessionDetail>), (status = 400, body = ErrorBody)))]
/// `GET /api/data/sessions?<session filters>&limit=`: a JSON array of whole
/// sessions with state, history, events and metrics (at most 10 000 per call; page with the
/// filters, e.g. `from`/`to`).
pub async fn data_sessions(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let mut filters = session_query(&query, &[])?;
    let limit = filters
        .limit
        .take()
        .unwrap_or(DEFAULT_DATA_SESSIONS)
        .clamp(1, MAX_DATA_SESSIONS);
    filters.cursor = None;
    let ids: Vec<String> = state
        .reader
        .export_sessions(&filters, u64::from(limit))?
        .map(|s| s.map(|s| s.id))
        .try_collect()
        .await?;
    let reader = state.reader.clone();
    let details = stream::iter(ids)
        .then(move |id| {
            let reader = reader.clone();
            async move {
                let rows = datacat_warehouse::DetailRows::default();
                reader
                    .session(&id, rows)
                    .await
                    .map_err(std::io::Error::other)
            }
        })
        // A session deleted by retention meanwhile is skipped.
        .try_filter_map(|detail| futures::future::ready(Ok(detail)));
    Ok(json_array(details))
}

/// Streams items as one JSON array, written as they come (a read error cuts it short).
fn json_array<T: Serialize>(
    items: impl Stream<Item = std::io::Result<T>> + Send + 'static,
) -> Response {
    let elements = items.enumerate().map(|(i, item)| {
        let separator = if i == 0 { "" } else { "," };
        let text = serde_json::to_string(&item?).map_err(std::io::Error::other)?;
        Ok::<_, std::io::Error>(Bytes::from(format!("{separator}{text}")))
    });
    let body = stream::iter([Ok(Bytes::from_static(b"["))])
        .chain(elements)
        .chain(stream::iter([Ok(Bytes::from_static(b"]"))]));
    (
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(body),
    )
        .into_response()
}

#[utoipa::path(get, path = "/api/grafana/sessions", tag = "export", params(SessionFilters),
    responses((status = 200, description = "Flat session rows", body = Vec<Object>), (status = 400, body = ErrorBody)))]
/// `GET /api/grafana/sessions?<session filters>`: flat rows for Grafana's JSON data sources
/// (times as RFC 3339 and epoch milliseconds, duration in seconds).
pub async fn grafana_sessions(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let (_, limit, filters) = export_params(&query, &[])?;
    let rows = state.reader.export_sessions(&filters, limit)?;
    let rows = rows.map(|row| {
        let s = row.map_err(std::io::Error::other)?;
        let started = parse_time_ms(&s.created_at).unwrap_or_default();
        let ended = s.ended_at.as_deref().and_then(parse_time_ms);
        let updated = parse_time_ms(&s.updated_at).unwrap_or_default();
        let duration = ended.unwrap_or(updated).saturating_sub(started) as f64 / 1000.0;
        Ok::<_, std::io::Error>(json!({
            "id": s.id, "product": s.product, "version": s.version, "status": s.status,
            "crashed": s.status == Status::Crashed, "end_reason": s.end_reason,
            "started_at": s.created_at, "started_ms": started, "ended_at": s.ended_at,
            "duration_seconds": duration, "hostname": s.hostname, "machine_id": s.machine_id,
            "event_count": s.event_count,
        }))
    });
    Ok(json_array(rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_are_quoted_only_when_needed() {
        assert_eq!(csv_cell(Some(&json!("plain"))), "plain");
        assert_eq!(csv_cell(Some(&json!("a,b"))), "\"a,b\"");
        assert_eq!(csv_cell(Some(&json!("say \"hi\""))), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_cell(Some(&json!({"k": 1}))), r#""{""k"":1}""#);
        assert_eq!(csv_cell(Some(&json!(3))), "3");
        assert_eq!(csv_cell(None), "");
        assert_eq!(csv_cell(Some(&Value::Null)), "");
    }

    #[test]
    fn text_that_a_spreadsheet_would_run_is_not_a_formula() {
        assert_eq!(
            csv_cell(Some(&json!("=HYPERLINK(\"x\")"))),
            "\"'=HYPERLINK(\"\"x\"\")\""
        );
        assert_eq!(csv_cell(Some(&json!("+1"))), "'+1");
        assert_eq!(csv_cell(Some(&json!("-2"))), "'-2");
        assert_eq!(csv_cell(Some(&json!("@SUM(A1)"))), "'@SUM(A1)");
        assert_eq!(csv_cell(Some(&json!("\tx"))), "'\tx");
        assert_eq!(csv_cell(Some(&json!("a=b"))), "a=b");
        assert_eq!(csv_cell(Some(&json!(-0.25))), "-0.25");
    }
}

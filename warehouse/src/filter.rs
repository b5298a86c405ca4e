//! Sessions-list filters as SQL: the text has `?` placeholders and the values travel beside it
//! as parameters (the client escapes them); nothing a user typed is spliced into the text.
//!
//! `sessions` is a ReplacingMergeTree: a session's latest row (highest `last_seq`) is the
//! truth. On ClickHouse 18.16 a condition on a non-key column can be moved to PREWHERE and
//! run before versions collapse (an old "active" row would match after the session ended).
//! So conditions on the sorting key (`session_id IN ...`) pick the rows whose latest version
//! is taken, and conditions on other columns apply to that latest version only, outside.

use clickhouse::query::Query;
use datacat_api::answers::{Order, PathValue, SessionQuery, SortKey};

use crate::{Result, WarehouseError};

/// A value bound to a `?` placeholder.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Str(String),
    U64(u64),
}

/// SQL text with its parameters, in placeholder order.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Sql {
    pub text: String,
    pub params: Vec<Param>,
}

impl Sql {
    pub fn bind_to(&self, mut query: Query) -> Query {
        for param in &self.params {
            query = match param {
                Param::Str(value) => query.bind(value.as_str()),
                Param::U64(value) => query.bind(*value),
            };
        }
        query
    }
}

/// Conditions joined with AND, each with its parameters.
#[derive(Default)]
struct Conditions {
    parts: Vec<String>,
    params: Vec<Param>,
}

impl Conditions {
    fn add(&mut self, condition: &str, params: impl IntoIterator<Item = Param>) {
        self.parts.push(condition.to_string());
        self.params.extend(params);
    }

    fn where_clause(&self) -> String {
        if self.parts.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.parts.join(" AND "))
        }
    }
}

fn s(value: &str) -> Param {
    Param::Str(value.to_string())
}

/// Key filters: each a subquery of session ids. "Now" is an index range too: ingest writes a
/// removal row (the old value, `removed = 1`) whenever a leaf changes or goes, so within the
/// (path, value) range a session holds the value now when its latest row there is not a
/// removal (a removal and a new value at the same point: the new value wins).
const NOW_EQUALS: &str = "SELECT session_id FROM state_paths WHERE path = ? AND value = ? \
     GROUP BY session_id HAVING argMax(removed, (seq, idx, 1 - removed)) = 0";
const NOW_CONTAINS: &str =
    "SELECT session_id FROM state_paths WHERE path = ? AND has(elements, ?) \
     GROUP BY session_id HAVING argMax(removed, (seq, idx, 1 - removed)) = 0";
const EVER_EQUALS: &str =
    "SELECT session_id FROM state_paths WHERE path = ? AND value = ? AND removed = 0";
const EVER_CONTAINS: &str =
    "SELECT session_id FROM state_paths WHERE path = ? AND has(elements, ?) AND removed = 0";
const HAS_EVENT: &str = "SELECT session_id FROM events WHERE name = ?";
const HAS_LEVEL: &str = "SELECT session_id FROM events WHERE level = ?";

/// The column a sort key orders by.
pub fn sort_column(sort: SortKey) -> &'static str {
    match sort {
        SortKey::Started => "started_ms",
        SortKey::Updated => "updated_ms",
        SortKey::Ended => "ended_ms",
        SortKey::Events => "event_count",
    }
}

/// `SELECT <columns> FROM` the sessions matching `query` (no order, no limit). `columns` is
/// a constant list of `sessions` columns (or `?fields`).
/// The key filters of `query`: subqueries of session ids, all of which must hold.
fn key_subqueries(query: &SessionQuery) -> Vec<(&'static str, Vec<Param>)> {
    let mut subqueries = Vec::new();
    for (filters, subquery) in [
        (&query.state, NOW_EQUALS),
        (&query.contains, NOW_CONTAINS),
        (&query.ever, EVER_EQUALS),
        (&query.ever_contains, EVER_CONTAINS),
    ] {
        for PathValue { path, value } in filters {
            subqueries.push((subquery, vec![s(path), s(value)]));
        }
    }
    if let Some(name) = &query.event {
        subqueries.push((HAS_EVENT, vec![s(name)]));
    }
    if let Some(level) = query.level {
        subqueries.push((HAS_LEVEL, vec![s(level.as_str())]));
    }
    subqueries
}

/// Conditions on a session's latest row (applied after versions collapse).
fn attribute_conditions(query: &SessionQuery) -> Conditions {
    let mut attributes = Conditions::default();
    let status = query.status.map(|status| status.as_str().to_string());
    for (column, value) in [
        ("product", &query.product),
        ("version", &query.version),
        ("status", &status),
        ("hostname", &query.hostname),
        ("machine_id", &query.machine_id),
        ("environment", &query.environment),
    ] {
        if let Some(value) = value {
            attributes.add(&format!("{column} = ?"), [s(value)]);
        }
    }
    for tag in &query.tags {
        attributes.add(
            "arrayExists((k, v) -> k = ? AND v = ?, tag_keys, tag_values)",
            [s(&tag.key), s(&tag.value)],
        );
    }
    if let Some(from) = query.from_ms {
        attributes.add("started_ms >= ?", [Param::U64(from)]);
    }
    if let Some(to) = query.to_ms {
        attributes.add("started_ms < ?", [Param::U64(to)]);
    }
    if let Some(text) = &query.q {
        attributes.add(
            "positionCaseInsensitiveUTF8(concat(session_id, ' ', product, ' ', version, ' ', \
             hostname, ' ', end_reason, ' ', state), ?) > 0",
            [s(text)],
        );
    }
    attributes
}

/// `SELECT <columns> FROM` the sessions matching `query` (no order, no limit). `columns` is
/// a constant list of `sessions` columns (or `?fields`).
pub fn matching_sessions(query: &SessionQuery, columns: &str) -> Sql {
    let mut key = Conditions::default();
    for (subquery, params) in key_subqueries(query) {
        key.add(&format!("session_id IN ({subquery})"), params);
    }
    let attributes = attribute_conditions(query);
    // With key conditions, the latest version of each candidate is picked by sorting
    // (LIMIT 1 BY): on 18.16 that is 2-3x faster than FINAL over the same rows. Without
    // any, FINAL over the table is the cheaper way to collapse it.
    let latest = if key.parts.is_empty() {
        "SELECT * FROM sessions FINAL".to_string()
    } else {
        format!(
            "SELECT * FROM sessions{} ORDER BY session_id, last_seq DESC LIMIT 1 BY session_id",
            key.where_clause()
        )
    };
    let outer = attributes.where_clause();
    let mut params = key.params;
    params.extend(attributes.params);
    Sql {
        text: format!("SELECT {columns} FROM ({latest}){outer}"),
        params,
    }
}

/// A subquery of the matching sessions' ids. With only key filters the sessions table is not
/// read at all (the filters' own subqueries give the ids).
pub fn matching_session_ids(query: &SessionQuery) -> Sql {
    let attributes = attribute_conditions(query);
    let mut keys = key_subqueries(query).into_iter();
    match (attributes.parts.is_empty(), keys.next()) {
        (true, Some((first, mut params))) => {
            let mut text = format!("SELECT session_id FROM ({first})");
            let rest: Vec<_> = keys.collect();
            for (i, (subquery, more)) in rest.into_iter().enumerate() {
                text.push_str(if i == 0 { " WHERE " } else { " AND " });
                text.push_str(&format!("session_id IN ({subquery})"));
                params.extend(more);
            }
            Sql { text, params }
        }
        _ => matching_sessions(query, "session_id"),
    }
}

/// Where a page ended: the sort value and session id of its last row.
#[derive(Debug, Clone, PartialEq)]
pub struct Cursor {
    pub value: u64,
    pub session_id: String,
}

impl Cursor {
    /// Opaque to clients: hex of `value:session_id`.
    pub fn encode(&self) -> String {
        format!("{}:{}", self.value, self.session_id)
            .bytes()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    pub fn decode(text: &str) -> Result<Self> {
        let invalid = || WarehouseError::InvalidInput(format!("cursor {text:?} is not valid"));
        if !text.len().is_multiple_of(2) || !text.is_ascii() {
            return Err(invalid());
        }
        let bytes = (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16))
            .collect::<Result<Vec<u8>, _>>()
            .map_err(|_| invalid())?;
        let plain = String::from_utf8(bytes).map_err(|_| invalid())?;
        let (value, session_id) = plain.split_once(':').ok_or_else(invalid)?;
        Ok(Cursor {
            value: value.parse().map_err(|_| invalid())?,
            session_id: session_id.to_string(),
        })
    }
}

/// `(column < ? OR (column = ? AND session_id > ?))` (`>` when ascending) for the query's
/// cursor, with its parameters; nothing without a cursor.
fn after_cursor(query: &SessionQuery, column: &str) -> Result<Option<(String, Vec<Param>)>> {
    let Some(cursor) = &query.cursor else {
        return Ok(None);
    };
    let cursor = Cursor::decode(cursor)?;
    let comparison = match query.order {
        Order::Desc => "<",
        Order::Asc => ">",
    };
    Ok(Some((
        format!("({column} {comparison} ? OR ({column} = ? AND session_id > ?))"),
        vec![
            Param::U64(cursor.value),
            Param::U64(cursor.value),
            Param::Str(cursor.session_id),
        ],
    )))
}

/// Whether `query` filters nothing and sorts by start: then a page can be read from the
/// few newest (or oldest) rows instead of collapsing every session's versions.
pub fn is_plain_by_start(query: &SessionQuery) -> bool {
    query.sort == SortKey::Started
        && key_subqueries(query).is_empty()
        && attribute_conditions(query).parts.is_empty()
}

/// For a plain list by start: the start time of the `window`-th row past the cursor (row
/// level, versions included), and the page of sessions started at or beyond it. A session's
/// versions share its start, so the window holds whole sessions; when it holds fewer than a
/// page (many versions not merged yet) the caller widens it.
pub fn windowed_by_start(
    query: &SessionQuery,
    columns: &str,
    limit: u32,
    window: u64,
) -> Result<(Sql, Sql)> {
    let (direction, bound) = match query.order {
        Order::Desc => ("DESC", ">="),
        Order::Asc => ("ASC", "<="),
    };
    let (after, cursor_params) = match after_cursor(query, "started_ms")? {
        Some((condition, params)) => (format!(" AND {condition}"), params),
        None => (String::new(), Vec::new()),
    };
    let mut threshold_params = cursor_params.clone();
    threshold_params.push(Param::U64(window.saturating_sub(1)));
    let threshold = Sql {
        text: format!(
            "SELECT started_ms FROM sessions WHERE 1{after} \
             ORDER BY started_ms {direction} LIMIT ?, 1"
        ),
        params: threshold_params,
    };
    // The threshold is bound as the first parameter of the page query by the caller.
    let mut page_params = cursor_params;
    page_params.push(Param::U64(u64::from(limit)));
    let page = Sql {
        text: format!(
            "SELECT {columns} FROM (SELECT * FROM sessions WHERE started_ms {bound} ?{after} \
             ORDER BY session_id, last_seq DESC LIMIT 1 BY session_id) \
             ORDER BY started_ms {direction}, session_id LIMIT ?"
        ),
        params: page_params,
    };
    Ok((threshold, page))
}

/// One page of matching sessions in the query's order, starting after its cursor.
pub fn session_page(query: &SessionQuery, columns: &str, limit: u32) -> Result<Sql> {
    let matching = matching_sessions(query, "*");
    let column = sort_column(query.sort);
    let direction = match query.order {
        Order::Desc => "DESC",
        Order::Asc => "ASC",
    };
    let mut params = matching.params;
    let after = match after_cursor(query, column)? {
        Some((condition, more)) => {
            params.extend(more);
            format!(" WHERE {condition}")
        }
        None => String::new(),
    };
    params.push(Param::U64(u64::from(limit)));
    Ok(Sql {
        text: format!(
            "SELECT {columns} FROM ({}){after} ORDER BY {column} {direction}, session_id LIMIT ?",
            matching.text
        ),
        params,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_conditions_go_inside_final_and_the_rest_outside() {
        let query = SessionQuery::parse("status=crashed&state=a.b%3D1&event=boom", &[]).unwrap();
        let sql = matching_sessions(&query, "session_id");
        let inner_end = sql.text.rfind(") WHERE").expect("outer where");
        assert!(sql.text[..inner_end].contains("LIMIT 1 BY session_id"));
        assert!(sql.text[..inner_end].contains("FROM state_paths WHERE path = ?"));
        assert!(sql.text[..inner_end].contains("FROM events WHERE name = ?"));
        assert!(sql.text[inner_end..].contains("status = ?"));
        assert_eq!(
            sql.params,
            vec![s("a.b"), s("1"), s("boom"), s("crashed")],
            "parameters follow placeholder order"
        );
        assert_eq!(sql.text.matches('?').count(), sql.params.len());
    }

    #[test]
    fn ids_only_skip_the_sessions_table_when_nothing_else_is_asked() {
        let query = SessionQuery::parse("ever=a%3D1&event=boom", &[]).unwrap();
        let sql = matching_session_ids(&query);
        assert!(!sql.text.contains("FROM sessions"), "{}", sql.text);
        assert_eq!(sql.params, vec![s("a"), s("1"), s("boom")]);
        let query = SessionQuery::parse("ever=a%3D1&status=ended", &[]).unwrap();
        assert!(matching_session_ids(&query).text.contains("FROM sessions"));
        assert!(matching_session_ids(&SessionQuery::default())
            .text
            .contains("FROM sessions"));
    }

    #[test]
    fn user_text_never_reaches_the_sql_text() {
        let query = SessionQuery::parse(
            "product=x'%3B%20DROP%20TABLE%20sessions&q=%27&state=p%27%3Dv%27",
            &[],
        )
        .unwrap();
        let sql = session_page(&query, "session_id", 10).unwrap();
        assert!(!sql.text.contains("DROP"));
        assert_eq!(sql.text.matches('?').count(), sql.params.len());
    }

    #[test]
    fn cursors_round_trip_and_bad_ones_are_refused() {
        let cursor = Cursor {
            value: 1_700_000_000_000,
            session_id: "abc:def".into(),
        };
        assert_eq!(Cursor::decode(&cursor.encode()).unwrap(), cursor);
        for bad in ["zz", "abc", "31", "é1"] {
            assert!(Cursor::decode(bad).is_err(), "{bad}");
        }
        let query = SessionQuery {
            cursor: Some(cursor.encode()),
            sort: SortKey::Events,
            order: Order::Asc,
            ..Default::default()
        };
        let sql = session_page(&query, "session_id", 5).unwrap();
        assert!(sql
            .text
            .contains("event_count > ? OR (event_count = ? AND session_id > ?)"));
        assert!(sql
            .text
            .ends_with("ORDER BY event_count ASC, session_id LIMIT ?"));
    }
}

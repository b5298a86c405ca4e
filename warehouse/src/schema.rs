//! The tables as they are now: each table's columns (name and type, in order), sorting key,
//! partition and version column, declared once.
//!
//! What must agree with it is derived from it or checked against it here: the insert column
//! lists ([`Table::column_list`]), the row types' columns (`rows.rs`, read with `?fields`
//! and written by the RowBinary encoders in the same order), and the migrations, which
//! must produce exactly these tables (they are history, never edited: a new column is a new
//! migration and a line here). The replicated variant is derived from the migrations
//! (`replicated.rs`), and the key-order sorter (`key_order.rs`) is checked against
//! `state_paths`' sorting key.

/// One column: its name and ClickHouse type.
pub struct Column {
    pub name: &'static str,
    pub type_name: &'static str,
}

/// One table.
pub struct Table {
    pub name: &'static str,
    pub columns: &'static [Column],
    /// The sorting key (`ORDER BY`), which is also each row's identity: rows with the same
    /// key collapse into one (ReplacingMergeTree).
    pub order_by: &'static [&'static str],
    pub partition_by: &'static str,
    /// The version column of the ReplacingMergeTree (the highest wins), if any.
    pub version: Option<&'static str>,
}

impl Table {
    /// The column names as an `INSERT INTO table(...)` list.
    pub fn column_list(&self) -> String {
        self.columns
            .iter()
            .map(|c| c.name)
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn column_names(&self) -> Vec<&'static str> {
        self.columns.iter().map(|c| c.name).collect()
    }
}

macro_rules! columns {
    ($($name:ident: $type_name:literal),+ $(,)?) => {
        &[$(Column { name: stringify!($name), type_name: $type_name }),+]
    };
}

/// The columns every row of a batch starts with: where it comes from, in order.
macro_rules! batch_row {
    ($($name:ident: $type_name:literal),+ $(,)?) => {
        columns!(
            session_id: "String", seq: "UInt64", idx: "UInt32", ts_ms: "UInt64", date: "Date",
            $($name: $type_name),+
        )
    };
}

pub const STATE_HISTORY: Table = Table {
    name: "state_history",
    columns: batch_row!(update: "String", state: "String", client_ts_ms: "UInt64"),
    order_by: &["session_id", "seq", "idx"],
    partition_by: "date",
    version: None,
};

pub const STATE_PATHS: Table = Table {
    name: "state_paths",
    columns: batch_row!(
        path: "String",
        value: "String",
        elements: "Array(String)",
        removed: "UInt8",
    ),
    // By path and value first: "the state has path=value" is a range read.
    order_by: &["path", "value", "session_id", "seq", "idx"],
    partition_by: "date",
    version: None,
};

pub const EVENTS: Table = Table {
    name: "events",
    columns: batch_row!(
        name: "String",
        level: "String",
        category: "String",
        group_name: "String",
        labels: "Array(String)",
        message: "String",
        data: "String",
        exception: "String",
        client_ts_ms: "UInt64",
    ),
    order_by: &["session_id", "seq", "idx"],
    partition_by: "date",
    version: None,
};

pub const METRICS: Table = Table {
    name: "metrics",
    columns: batch_row!(
        name: "String",
        kind: "String",
        value: "Float64",
        unit: "String",
        tags: "Array(String)",
        count: "Nullable(UInt64)",
        bucket_bounds: "Array(Float64)",
        bucket_counts: "Array(UInt64)",
        hist_sum: "Float64",
        client_ts_ms: "UInt64",
    ),
    order_by: &["session_id", "seq", "idx"],
    partition_by: "date",
    version: None,
};

pub const METRIC_SESSIONS: Table = Table {
    name: "metric_sessions",
    columns: columns!(
        name: "String",
        session_id: "String",
        version: "UInt64",
        date: "Date",
        peak: "Float64",
        min: "Float64",
        sum: "Float64",
        points: "UInt64",
        last: "Float64",
        last_ts_ms: "UInt64",
    ),
    // By metric name first: "this metric across sessions" is a range read.
    order_by: &["name", "session_id"],
    partition_by: "date",
    version: Some("version"),
};

pub const SESSIONS: Table = Table {
    name: "sessions",
    columns: columns!(
        session_id: "String",
        product: "String",
        version: "String",
        status: "String",
        end_reason: "String",
        started_date: "Date",
        started_ms: "UInt64",
        updated_ms: "UInt64",
        ended_ms: "UInt64",
        last_heartbeat_ms: "UInt64",
        hostname: "String",
        machine_id: "String",
        machine: "String",
        state: "String",
        event_count: "UInt64",
        last_seq: "UInt64",
        hang_count: "UInt32",
        hung_ms: "UInt64",
        dropped_records: "UInt64",
        gaps: "UInt64",
        seen_ms: "UInt64",
        environment: "String",
        tag_keys: "Array(String)",
        tag_values: "Array(String)",
    ),
    order_by: &["session_id"],
    partition_by: "started_date",
    version: Some("last_seq"),
};

/// Every table in insert order: `sessions` last, so a session row never points at history
/// that is not there yet.
pub const TABLES: [&Table; 6] = [
    &STATE_HISTORY,
    &STATE_PATHS,
    &EVENTS,
    &METRICS,
    &METRIC_SESSIONS,
    &SESSIONS,
];

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use clickhouse::Row;

    use super::*;
    use crate::migrations::{Step, MIGRATIONS};
    use crate::rows::{
        EventRow, MetricRow, MetricSessionRow, MetricSummary, SessionRow, StateHistoryRow,
        StatePathRow,
    };

    /// A table as the migrations leave it: columns, sorting key, partition, engine.
    #[derive(Debug, Default, PartialEq)]
    struct Built {
        columns: Vec<(String, String)>,
        order_by: Vec<String>,
        partition_by: String,
        version: Option<String>,
    }

    /// Reads one of our `CREATE TABLE IF NOT EXISTS name (col Type, ...) ENGINE =
    /// ReplacingMergeTree(version?) PARTITION BY p ORDER BY (a, b)` statements.
    fn parse_create(sql: &str) -> Option<(String, Built)> {
        let rest = sql.trim().strip_prefix("CREATE TABLE IF NOT EXISTS ")?;
        let (name, rest) = rest.split_once('(')?;
        let (columns, rest) = rest.split_once(") ENGINE = ReplacingMergeTree(")?;
        let (version, rest) = rest.split_once(')')?;
        let (partition, order) = rest.split_once("ORDER BY")?;
        let list = |text: &str| -> Vec<String> {
            text.trim()
                .trim_start_matches('(')
                .trim_end_matches(')')
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        };
        let columns = columns
            .split(',')
            .map(|c| {
                let (n, t) = c.trim().split_once(' ').unwrap();
                (n.to_string(), t.trim().to_string())
            })
            .collect();
        Some((
            name.trim().to_string(),
            Built {
                columns,
                order_by: list(order),
                partition_by: partition
                    .trim()
                    .trim_start_matches("PARTITION BY")
                    .trim()
                    .into(),
                version: (!version.is_empty()).then(|| version.to_string()),
            },
        ))
    }

    #[test]
    fn the_migrations_build_exactly_these_tables() {
        let mut built: BTreeMap<String, Built> = BTreeMap::new();
        for step in MIGRATIONS.iter().flat_map(|m| m.steps) {
            match step {
                Step::Sql(sql) => {
                    let (name, table) = parse_create(sql).expect("a CREATE TABLE of ours");
                    built.insert(name, table);
                }
                Step::AddColumn {
                    table,
                    column,
                    definition,
                } => built
                    .get_mut(*table)
                    .expect("a column added to a table created before")
                    .columns
                    .push((column.to_string(), definition.to_string())),
            }
        }
        assert_eq!(built.len(), TABLES.len());
        for table in TABLES {
            let declared = Built {
                columns: table
                    .columns
                    .iter()
                    .map(|c| (c.name.to_string(), c.type_name.to_string()))
                    .collect(),
                order_by: table.order_by.iter().map(|s| s.to_string()).collect(),
                partition_by: table.partition_by.to_string(),
                version: table.version.map(str::to_string),
            };
            assert_eq!(built.get(table.name), Some(&declared), "{}", table.name);
        }
    }

    #[test]
    fn the_row_types_have_the_tables_columns_in_order() {
        let rows: [(&Table, &[&str]); 6] = [
            (&STATE_HISTORY, StateHistoryRow::COLUMN_NAMES),
            (&STATE_PATHS, StatePathRow::COLUMN_NAMES),
            (&EVENTS, EventRow::COLUMN_NAMES),
            (&METRICS, MetricRow::COLUMN_NAMES),
            (&METRIC_SESSIONS, MetricSessionRow::COLUMN_NAMES),
            (&SESSIONS, SessionRow::COLUMN_NAMES),
        ];
        for (table, names) in rows {
            assert_eq!(table.column_names(), names, "{}", table.name);
        }
    }

    #[test]
    fn a_metric_summary_is_the_tail_of_its_row() {
        let summary = MetricSummary::first(1.0, 2);
        let fields = serde_json::to_value(summary).unwrap();
        let names: Vec<&str> = fields
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let row = METRIC_SESSIONS.column_names();
        assert_eq!(names, row[row.len() - names.len()..]);
    }
}

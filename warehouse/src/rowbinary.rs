//! Rows written straight into ClickHouse's RowBinary format, from borrowed fields.
//!
//! Ingest used to build an owned row (a `String` per text column) for every record, have the
//! `clickhouse` crate copy it into its buffer, and free it: allocating, copying and freeing
//! those rows was a third of its CPU time. Here a row is a view of data that already exists
//! (the decoded batch, the merged state), encoded once into the table's buffer.
//!
//! [`RowSink`] is what producers of rows write to: [`EncodedRows`] encodes, [`RowSet`] keeps
//! owned rows (tests, the sweeper's few rows). The column lists here must match the owned row
//! types in [`crate::rows`] field for field; the round-trip test inserts through both.

use serde_json::Value;

use crate::rows::{
    EventRow, MetricRow, MetricSessionRow, SessionRow, StateHistoryRow, StatePathRow,
};
use crate::RowSet;

/// Where a record's row sits: the identity every table but `sessions` is keyed by.
#[derive(Debug, Clone, Copy)]
pub struct RowKey<'a> {
    pub session_id: &'a str,
    pub seq: u64,
    pub idx: u32,
    pub ts_ms: u64,
    /// Days since the Unix epoch.
    pub date: u16,
    /// The client's time when `ts_ms` is the receive time instead (it was not believed:
    /// `datacat_protocol::time::believed_ts_ms`), else 0. Kept by the tables of history,
    /// events and metrics, not by `state_paths`.
    pub client_ts_ms: u64,
}

/// A state update and the whole state after it.
pub struct StateHistoryRef<'a> {
    pub key: RowKey<'a>,
    pub update: &'a Value,
    pub state: &'a Value,
}

/// A state leaf that changed (or went).
pub struct StatePathRef<'a> {
    pub key: RowKey<'a>,
    pub path: &'a str,
    pub value: &'a Value,
    pub removed: bool,
}

/// An event row with only a name (info level, nothing else): tests' rows.
impl<'a> EventRef<'a> {
    pub fn named(key: RowKey<'a>, name: &'a str) -> Self {
        Self {
            key,
            name,
            level: "info",
            category: "",
            group_name: "",
            labels: &[],
            message: "",
            data: &Value::Null,
            exception: "",
        }
    }
}

pub struct EventRef<'a> {
    pub key: RowKey<'a>,
    pub name: &'a str,
    pub level: &'a str,
    pub category: &'a str,
    pub group_name: &'a str,
    pub labels: &'a [String],
    pub message: &'a str,
    pub data: &'a Value,
    /// The exception as JSON, or empty.
    pub exception: &'a str,
}

pub struct MetricRef<'a> {
    pub key: RowKey<'a>,
    pub name: &'a str,
    pub kind: &'a str,
    pub value: f64,
    pub unit: &'a str,
    pub tags: &'a [String],
    pub count: Option<u64>,
    pub bucket_bounds: &'a [f64],
    pub bucket_counts: &'a [u64],
    pub hist_sum: f64,
}

/// What rows are written to.
pub trait RowSink {
    fn session(&mut self, row: SessionRow);
    fn state_history(&mut self, row: StateHistoryRef<'_>);
    fn state_path(&mut self, row: StatePathRef<'_>);
    fn event(&mut self, row: EventRef<'_>);
    fn metric(&mut self, row: MetricRef<'_>);
    fn metric_session(&mut self, row: MetricSessionRow);
    /// The rows since the last call (or the start) are batch `seq`'s.
    fn end_batch(&mut self, _seq: u64) {}
}

/// How a state leaf is stored for lookups: a string as its text, anything else as JSON.
pub fn leaf_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => json_text(other),
    }
}

/// JSON text of a value. (`Value`'s `Display` goes through `fmt` and checks UTF-8 chunk by
/// chunk: measurably slower on ingest's hot path.)
pub fn json_text(value: &Value) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// The merged state as stored: an empty object before the first update.
pub fn state_text(state: &Value) -> String {
    if state.is_null() {
        "{}".to_string()
    } else {
        json_text(state)
    }
}

/// One table's encoded rows.
#[derive(Debug, Default, Clone)]
pub struct EncodedTable {
    pub(crate) bytes: Vec<u8>,
    pub(crate) rows: usize,
}

impl EncodedTable {
    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }
}

/// Rows of every table, encoded.
#[derive(Debug, Default, Clone)]
pub struct EncodedRows {
    pub sessions: EncodedTable,
    pub state_history: EncodedTable,
    pub state_paths: EncodedTable,
    pub events: EncodedTable,
    pub metrics: EncodedTable,
    pub metric_sessions: EncodedTable,
    /// Scratch space for JSON text, reused (its length prefix is written before it).
    scratch: Vec<u8>,
    /// Where each batch's rows end, so rows ClickHouse refuses can be narrowed down to the
    /// batch they came from ([`EncodedRows::batches`]).
    marks: Vec<BatchMark>,
}

/// The end of one batch's rows: bytes and rows of each table, in [`EncodedRows::tables`]'s
/// order.
#[derive(Debug, Clone, Copy)]
struct BatchMark {
    seq: u64,
    ends: [(usize, usize); 6],
}

impl EncodedRows {
    pub fn row_count(&self) -> usize {
        self.tables().iter().map(|table| table.rows).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.row_count() == 0
    }

    /// The tables in the order of [`crate::schema::TABLES`].
    pub fn tables(&self) -> [&EncodedTable; 6] {
        [
            &self.state_history,
            &self.state_paths,
            &self.events,
            &self.metrics,
            &self.metric_sessions,
            &self.sessions,
        ]
    }

    fn ends(&self) -> [(usize, usize); 6] {
        self.tables().map(|table| (table.bytes.len(), table.rows))
    }

    /// The rows split by the batch they came from (`end_batch`), in order; rows after the
    /// last batch (the session's row, say) come last, as `None`'s.
    pub fn batches(&self) -> Vec<(Option<u64>, EncodedRows)> {
        let mut parts = Vec::with_capacity(self.marks.len() + 1);
        let mut from = [(0, 0); 6];
        for mark in &self.marks {
            parts.push((Some(mark.seq), self.part(&from, &mark.ends)));
            from = mark.ends;
        }
        let tail = self.part(&from, &self.ends());
        if !tail.is_empty() || parts.is_empty() {
            parts.push((None, tail));
        }
        parts
    }

    /// The rows between two sets of table ends.
    fn part(&self, from: &[(usize, usize); 6], to: &[(usize, usize); 6]) -> EncodedRows {
        let [state_history, state_paths, events, metrics, metric_sessions, sessions] =
            std::array::from_fn(|i| EncodedTable {
                bytes: self.tables()[i].bytes[from[i].0..to[i].0].to_vec(),
                rows: to[i].1 - from[i].1,
            });
        EncodedRows {
            sessions,
            state_history,
            state_paths,
            events,
            metrics,
            metric_sessions,
            scratch: Vec::new(),
            marks: Vec::new(),
        }
    }

    /// Every row of an owned set, encoded (the raw-insert baseline, and tests).
    pub fn from_row_set(rows: &RowSet) -> Self {
        let mut encoded = Self::default();
        for row in &rows.sessions {
            encoded.session(row.clone());
        }
        for row in &rows.state_history {
            let table = &mut encoded.state_history;
            put_key(
                &mut table.bytes,
                &key_of(&row.session_id, row.seq, row.idx, row.ts_ms, row.date, 0),
            );
            put_str(&mut table.bytes, &row.update);
            put_str(&mut table.bytes, &row.state);
            table
                .bytes
                .extend_from_slice(&row.client_ts_ms.to_le_bytes());
            table.rows += 1;
        }
        for row in &rows.state_paths {
            let table = &mut encoded.state_paths;
            put_key(
                &mut table.bytes,
                &key_of(&row.session_id, row.seq, row.idx, row.ts_ms, row.date, 0),
            );
            put_str(&mut table.bytes, &row.path);
            put_str(&mut table.bytes, &row.value);
            put_strs(&mut table.bytes, &row.elements);
            table.bytes.push(row.removed);
            table.rows += 1;
        }
        for row in &rows.events {
            let key = key_of(&row.session_id, row.seq, row.idx, row.ts_ms, row.date, 0);
            let fields = [&row.name, &row.level, &row.category, &row.group_name];
            let table = &mut encoded.events;
            put_key(&mut table.bytes, &key);
            for field in fields {
                put_str(&mut table.bytes, field);
            }
            put_strs(&mut table.bytes, &row.labels);
            put_str(&mut table.bytes, &row.message);
            put_str(&mut table.bytes, &row.data);
            put_str(&mut table.bytes, &row.exception);
            table
                .bytes
                .extend_from_slice(&row.client_ts_ms.to_le_bytes());
            table.rows += 1;
        }
        for row in &rows.metrics {
            encoded.metric(MetricRef {
                key: key_of(
                    &row.session_id,
                    row.seq,
                    row.idx,
                    row.ts_ms,
                    row.date,
                    row.client_ts_ms,
                ),
                name: &row.name,
                kind: &row.kind,
                value: row.value,
                unit: &row.unit,
                tags: &row.tags,
                count: row.count,
                bucket_bounds: &row.bucket_bounds,
                bucket_counts: &row.bucket_counts,
                hist_sum: row.hist_sum,
            });
        }
        for row in &rows.metric_sessions {
            encoded.metric_session(row.clone());
        }
        encoded
    }

    /// Writes `value`'s JSON text as a RowBinary string.
    fn put_json(bytes: &mut Vec<u8>, scratch: &mut Vec<u8>, value: &Value) {
        scratch.clear();
        // Writing a `Value` into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *scratch, value);
        put_bytes(bytes, scratch);
    }

    /// A leaf as stored: a string's text, anything else as JSON.
    fn put_leaf(bytes: &mut Vec<u8>, scratch: &mut Vec<u8>, value: &Value) {
        match value {
            Value::String(text) => put_str(bytes, text),
            other => Self::put_json(bytes, scratch, other),
        }
    }
}

fn key_of(
    session_id: &str,
    seq: u64,
    idx: u32,
    ts_ms: u64,
    date: u16,
    client_ts_ms: u64,
) -> RowKey<'_> {
    RowKey {
        session_id,
        seq,
        idx,
        ts_ms,
        date,
        client_ts_ms,
    }
}

impl RowSink for EncodedRows {
    fn session(&mut self, row: SessionRow) {
        let bytes = &mut self.sessions.bytes;
        for text in [
            &row.session_id,
            &row.product,
            &row.version,
            &row.status,
            &row.end_reason,
        ] {
            put_str(bytes, text);
        }
        bytes.extend_from_slice(&row.started_date.to_le_bytes());
        for number in [
            row.started_ms,
            row.updated_ms,
            row.ended_ms,
            row.last_heartbeat_ms,
        ] {
            bytes.extend_from_slice(&number.to_le_bytes());
        }
        for text in [&row.hostname, &row.machine_id, &row.machine, &row.state] {
            put_str(bytes, text);
        }
        bytes.extend_from_slice(&row.event_count.to_le_bytes());
        bytes.extend_from_slice(&row.last_seq.to_le_bytes());
        bytes.extend_from_slice(&row.hang_count.to_le_bytes());
        for number in [row.hung_ms, row.dropped_records, row.gaps, row.seen_ms] {
            bytes.extend_from_slice(&number.to_le_bytes());
        }
        put_str(bytes, &row.environment);
        put_strs(bytes, &row.tag_keys);
        put_strs(bytes, &row.tag_values);
        self.sessions.rows += 1;
    }

    fn state_history(&mut self, row: StateHistoryRef<'_>) {
        let bytes = &mut self.state_history.bytes;
        put_key(bytes, &row.key);
        Self::put_json(bytes, &mut self.scratch, row.update);
        if row.state.is_null() {
            put_str(bytes, "{}");
        } else {
            Self::put_json(bytes, &mut self.scratch, row.state);
        }
        bytes.extend_from_slice(&row.key.client_ts_ms.to_le_bytes());
        self.state_history.rows += 1;
    }

    fn state_path(&mut self, row: StatePathRef<'_>) {
        let bytes = &mut self.state_paths.bytes;
        put_key(bytes, &row.key);
        put_str(bytes, row.path);
        Self::put_leaf(bytes, &mut self.scratch, row.value);
        match row.value {
            Value::Array(items) => {
                put_len(bytes, items.len());
                for item in items {
                    Self::put_leaf(bytes, &mut self.scratch, item);
                }
            }
            _ => put_len(bytes, 0),
        }
        bytes.push(u8::from(row.removed));
        self.state_paths.rows += 1;
    }

    fn event(&mut self, row: EventRef<'_>) {
        let bytes = &mut self.events.bytes;
        put_key(bytes, &row.key);
        for text in [row.name, row.level, row.category, row.group_name] {
            put_str(bytes, text);
        }
        put_strs(bytes, row.labels);
        put_str(bytes, row.message);
        Self::put_json(bytes, &mut self.scratch, row.data);
        put_str(bytes, row.exception);
        bytes.extend_from_slice(&row.key.client_ts_ms.to_le_bytes());
        self.events.rows += 1;
    }

    fn metric(&mut self, row: MetricRef<'_>) {
        let bytes = &mut self.metrics.bytes;
        put_key(bytes, &row.key);
        put_str(bytes, row.name);
        put_str(bytes, row.kind);
        bytes.extend_from_slice(&row.value.to_le_bytes());
        put_str(bytes, row.unit);
        put_strs(bytes, row.tags);
        match row.count {
            Some(count) => {
                bytes.push(0);
                bytes.extend_from_slice(&count.to_le_bytes());
            }
            None => bytes.push(1),
        }
        put_len(bytes, row.bucket_bounds.len());
        for bound in row.bucket_bounds {
            bytes.extend_from_slice(&bound.to_le_bytes());
        }
        put_len(bytes, row.bucket_counts.len());
        for count in row.bucket_counts {
            bytes.extend_from_slice(&count.to_le_bytes());
        }
        bytes.extend_from_slice(&row.hist_sum.to_le_bytes());
        bytes.extend_from_slice(&row.key.client_ts_ms.to_le_bytes());
        self.metrics.rows += 1;
    }

    fn metric_session(&mut self, row: MetricSessionRow) {
        let bytes = &mut self.metric_sessions.bytes;
        put_str(bytes, &row.name);
        put_str(bytes, &row.session_id);
        bytes.extend_from_slice(&row.version.to_le_bytes());
        bytes.extend_from_slice(&row.date.to_le_bytes());
        for number in [row.peak, row.min, row.sum] {
            bytes.extend_from_slice(&number.to_le_bytes());
        }
        bytes.extend_from_slice(&row.points.to_le_bytes());
        bytes.extend_from_slice(&row.last.to_le_bytes());
        bytes.extend_from_slice(&row.last_ts_ms.to_le_bytes());
        self.metric_sessions.rows += 1;
    }

    fn end_batch(&mut self, seq: u64) {
        let ends = self.ends();
        self.marks.push(BatchMark { seq, ends });
    }
}

impl RowSink for RowSet {
    fn session(&mut self, row: SessionRow) {
        self.sessions.push(row);
    }

    fn state_history(&mut self, row: StateHistoryRef<'_>) {
        let key = row.key;
        self.state_history.push(StateHistoryRow {
            session_id: key.session_id.to_string(),
            seq: key.seq,
            idx: key.idx,
            ts_ms: key.ts_ms,
            date: key.date,
            update: json_text(row.update),
            state: state_text(row.state),
            client_ts_ms: key.client_ts_ms,
        });
    }

    fn state_path(&mut self, row: StatePathRef<'_>) {
        let key = row.key;
        self.state_paths.push(StatePathRow {
            session_id: key.session_id.to_string(),
            seq: key.seq,
            idx: key.idx,
            ts_ms: key.ts_ms,
            date: key.date,
            path: row.path.to_string(),
            value: leaf_text(row.value),
            elements: match row.value {
                Value::Array(items) => items.iter().map(leaf_text).collect(),
                _ => Vec::new(),
            },
            removed: u8::from(row.removed),
        });
    }

    fn event(&mut self, row: EventRef<'_>) {
        let key = row.key;
        self.events.push(EventRow {
            session_id: key.session_id.to_string(),
            seq: key.seq,
            idx: key.idx,
            ts_ms: key.ts_ms,
            date: key.date,
            name: row.name.to_string(),
            level: row.level.to_string(),
            category: row.category.to_string(),
            group_name: row.group_name.to_string(),
            labels: row.labels.to_vec(),
            message: row.message.to_string(),
            data: json_text(row.data),
            exception: row.exception.to_string(),
            client_ts_ms: key.client_ts_ms,
        });
    }

    fn metric(&mut self, row: MetricRef<'_>) {
        let key = row.key;
        self.metrics.push(MetricRow {
            session_id: key.session_id.to_string(),
            seq: key.seq,
            idx: key.idx,
            ts_ms: key.ts_ms,
            date: key.date,
            name: row.name.to_string(),
            kind: row.kind.to_string(),
            value: row.value,
            unit: row.unit.to_string(),
            tags: row.tags.to_vec(),
            count: row.count,
            bucket_bounds: row.bucket_bounds.to_vec(),
            bucket_counts: row.bucket_counts.to_vec(),
            hist_sum: row.hist_sum,
            client_ts_ms: key.client_ts_ms,
        });
    }

    fn metric_session(&mut self, row: MetricSessionRow) {
        self.metric_sessions.push(row);
    }
}

fn put_key(bytes: &mut Vec<u8>, key: &RowKey<'_>) {
    put_str(bytes, key.session_id);
    bytes.extend_from_slice(&key.seq.to_le_bytes());
    bytes.extend_from_slice(&key.idx.to_le_bytes());
    bytes.extend_from_slice(&key.ts_ms.to_le_bytes());
    bytes.extend_from_slice(&key.date.to_le_bytes());
}

/// A length or count: unsigned LEB128.
fn put_len(bytes: &mut Vec<u8>, mut len: usize) {
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            bytes.push(byte);
            return;
        }
        bytes.push(byte | 0x80);
    }
}

fn put_bytes(bytes: &mut Vec<u8>, data: &[u8]) {
    put_len(bytes, data.len());
    bytes.extend_from_slice(data);
}

fn put_str(bytes: &mut Vec<u8>, text: &str) {
    put_bytes(bytes, text.as_bytes());
}

fn put_strs(bytes: &mut Vec<u8>, texts: &[String]) {
    put_len(bytes, texts.len());
    for text in texts {
        put_str(bytes, text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lengths_are_leb128() {
        let mut bytes = Vec::new();
        for len in [0, 1, 127, 128, 300, 16_384] {
            put_len(&mut bytes, len);
        }
        assert_eq!(
            bytes,
            [0, 1, 127, 0x80, 1, 0xac, 2, 0x80, 0x80, 1],
            "0, 1, 127, 128, 300, 16384"
        );
    }

    #[test]
    fn rows_split_by_the_batch_they_came_from() {
        let event = |rows: &mut EncodedRows, seq: u64| {
            rows.event(EventRef::named(key_of("s", seq, 0, 1, 1, 0), "e"))
        };
        let mut rows = EncodedRows::default();
        event(&mut rows, 1);
        rows.end_batch(1);
        event(&mut rows, 2);
        event(&mut rows, 2);
        rows.end_batch(2);
        let whole = rows.events.bytes.clone();
        let parts = rows.batches();
        let seqs: Vec<(Option<u64>, usize)> = parts
            .iter()
            .map(|(seq, part)| (*seq, part.events.rows()))
            .collect();
        assert_eq!(seqs, [(Some(1), 1), (Some(2), 2)]);
        let joined: Vec<u8> = parts
            .iter()
            .flat_map(|(_, p)| p.events.bytes.clone())
            .collect();
        assert_eq!(joined, whole);
        rows.session(SessionRow::default());
        let parts = rows.batches();
        assert_eq!(parts.len(), 3);
        assert_eq!((parts[2].0, parts[2].1.sessions.rows()), (None, 1));
    }

    #[test]
    fn borrowed_rows_encode_like_their_owned_rows() {
        let key = key_of("s-1", 3, 2, 1_700_000_000_123, 19_675, 5);
        let state = json!({"window": {"open": ["map", 7]}});
        let update = json!({"window": {"open": ["map", 7]}});
        let open = json!(["map", 7]);
        let data = json!({"x": 1});
        let (labels, tags) = (vec!["a".to_string()], vec!["gpu".to_string()]);
        let write = |sink: &mut dyn RowSink| {
            sink.state_history(StateHistoryRef {
                key,
                update: &update,
                state: &state,
            });
            sink.state_path(StatePathRef {
                key,
                path: "window.open",
                value: &open,
                removed: false,
            });
            sink.state_path(StatePathRef {
                key,
                path: "scene",
                value: &Value::Null,
                removed: true,
            });
            sink.event(EventRef {
                key,
                name: "boot",
                level: "info",
                category: "",
                group_name: "g",
                labels: &labels,
                message: "hello",
                data: &data,
                exception: "",
            });
            sink.metric(MetricRef {
                key,
                name: "fps",
                kind: "histogram",
                value: 1.5,
                unit: "ms",
                tags: &tags,
                count: Some(4),
                bucket_bounds: &[1.0, 2.0],
                bucket_counts: &[1, 2, 1],
                hist_sum: 6.0,
            });
        };
        let (mut direct, mut owned) = (EncodedRows::default(), RowSet::default());
        write(&mut direct);
        write(&mut owned);
        let via_owned = EncodedRows::from_row_set(&owned);
        for (a, b) in direct.tables().iter().zip(via_owned.tables()) {
            assert_eq!(a.bytes, b.bytes);
            assert_eq!(a.rows, b.rows);
        }
        assert_eq!(owned.state_paths[0].elements, ["map", "7"]);
        assert_eq!(owned.state_paths[1].value, "null");
        assert_eq!(direct.row_count(), 5);
    }
}

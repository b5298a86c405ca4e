//! Sending `state_paths` rows in their table's key order.
//!
//! ClickHouse sorts every block it writes into a part by the table's key, unless the block
//! arrives sorted (it checks), and then writes each column reordered. For `state_paths`, keyed
//! by (path, value, session_id, seq, idx) and about half of ingest's rows, that was most of
//! ClickHouse's cost for the table: a million such rows took it 1.0 s unsorted against 0.2 s
//! sorted on the development machines. Sorting the encoded rows here costs a fraction of
//! that: strings are ranked once per distinct value, the sort compares integers, and a row
//! is copied once, into the request body it is copied into anyway.

use std::collections::HashMap;

use crate::rowbinary::EncodedTable;

/// A row's place: the table it is in and its byte range there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RowSpan {
    pub table: usize,
    pub start: usize,
    pub end: usize,
}

/// Encoded `state_paths` rows that do not parse (written by something other than
/// `EncodedRows`, or cut short).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Malformed;

/// A row's key, its strings replaced by their rank among the distinct strings of their
/// column (so sorting compares integers held together, not bytes scattered over the
/// tables), and the row's position last, which makes the sort stable.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct RankedKey {
    path_and_value: u64,
    session_id: u32,
    seq: u64,
    idx: u32,
    row: u32,
}

/// Distinct strings of one column, numbered as first seen, then ranked in byte order.
#[derive(Default)]
struct Column<'a> {
    ids: HashMap<&'a [u8], u32, foldhash::fast::RandomState>,
    /// The last string looked up and its id: a session's rows come together.
    last: Option<(&'a [u8], u32)>,
}

impl<'a> Column<'a> {
    fn id(&mut self, text: &'a [u8]) -> u32 {
        if let Some((last, id)) = self.last {
            if last == text {
                return id;
            }
        }
        let next = self.ids.len() as u32;
        let id = *self.ids.entry(text).or_insert(next);
        self.last = Some((text, id));
        id
    }

    /// Each id's rank in byte order of the strings.
    fn ranks(self) -> Vec<u32> {
        let mut distinct: Vec<(&[u8], u32)> = self.ids.into_iter().collect();
        distinct.sort_unstable();
        let mut ranks = vec![0; distinct.len()];
        for (rank, (_, id)) in distinct.into_iter().enumerate() {
            ranks[id as usize] = rank as u32;
        }
        ranks
    }
}

/// The rows of `tables` (encoded `state_paths` rows), in key order. The sort is stable, so
/// rows with equal keys keep the order they came in.
pub(crate) fn state_paths_in_key_order(
    tables: &[&EncodedTable],
) -> Result<Vec<RowSpan>, Malformed> {
    let count = tables.iter().map(|t| t.rows).sum();
    let mut spans = Vec::with_capacity(count);
    let mut keys = Vec::with_capacity(count);
    let (mut paths, mut values, mut sessions) = <(Column, Column, Column)>::default();
    for (index, table) in tables.iter().enumerate() {
        let mut reader = Reader::new(&table.bytes);
        while !reader.at_end() {
            let row = reader.state_path()?;
            let row_number = u32::try_from(keys.len()).map_err(|_| Malformed)?;
            let (path, value) = (paths.id(row.path), values.id(row.value));
            keys.push(RankedKey {
                path_and_value: u64::from(path) << 32 | u64::from(value),
                session_id: sessions.id(row.session_id),
                seq: row.seq,
                idx: row.idx,
                row: row_number,
            });
            spans.push(RowSpan {
                table: index,
                start: row.start,
                end: row.end,
            });
        }
    }
    let (paths, values, sessions) = (paths.ranks(), values.ranks(), sessions.ranks());
    for key in &mut keys {
        let (path, value) = (key.path_and_value >> 32, key.path_and_value as u32);
        key.path_and_value =
            u64::from(paths[path as usize]) << 32 | u64::from(values[value as usize]);
        key.session_id = sessions[key.session_id as usize];
    }
    keys.sort_unstable();
    Ok(keys
        .into_iter()
        .map(|key| spans[key.row as usize])
        .collect())
}

/// One encoded `state_paths` row: where it lies, and its key.
struct KeyedRow<'a> {
    start: usize,
    end: usize,
    session_id: &'a [u8],
    seq: u64,
    idx: u32,
    path: &'a [u8],
    value: &'a [u8],
}

/// Reads encoded rows field by field (the layout `EncodedRows` writes).
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, at: 0 }
    }

    fn at_end(&self) -> bool {
        self.at >= self.bytes.len()
    }

    /// A `state_paths` row: key (session_id, seq, idx, ts_ms, date), path, value, elements,
    /// removed.
    fn state_path(&mut self) -> Result<KeyedRow<'a>, Malformed> {
        let start = self.at;
        let session_id = self.string()?;
        let seq = u64::from_le_bytes(self.fixed::<8>()?);
        let idx = u32::from_le_bytes(self.fixed::<4>()?);
        self.fixed::<10>()?; // ts_ms, date
        let path = self.string()?;
        let value = self.string()?;
        for _ in 0..self.len()? {
            self.string()?;
        }
        self.fixed::<1>()?; // removed
        Ok(KeyedRow {
            start,
            end: self.at,
            session_id,
            seq,
            idx,
            path,
            value,
        })
    }

    /// A length or count: unsigned LEB128.
    fn len(&mut self) -> Result<usize, Malformed> {
        let mut len = 0usize;
        for shift in (0..64).step_by(7) {
            let byte = *self.bytes.get(self.at).ok_or(Malformed)?;
            self.at += 1;
            len |= usize::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(len);
            }
        }
        Err(Malformed)
    }

    /// A length-prefixed string's bytes.
    fn string(&mut self) -> Result<&'a [u8], Malformed> {
        let len = self.len()?;
        let bytes = self.bytes.get(self.at..).and_then(|rest| rest.get(..len));
        let bytes = bytes.ok_or(Malformed)?;
        self.at += len;
        Ok(bytes)
    }

    fn fixed<const N: usize>(&mut self) -> Result<[u8; N], Malformed> {
        let bytes = self.bytes.get(self.at..).and_then(|rest| rest.get(..N));
        let bytes = bytes.ok_or(Malformed)?;
        self.at += N;
        Ok(bytes.try_into().expect("N bytes"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_sorted_by_the_tables_sorting_key() {
        // RankedKey's fields, in the order they compare.
        let sorted_by = ["path", "value", "session_id", "seq", "idx"];
        assert_eq!(crate::schema::STATE_PATHS.order_by, sorted_by);
    }
    use crate::rowbinary::{EncodedRows, RowKey, RowSink, StatePathRef};
    use serde_json::{json, Value};

    fn encode(rows: &[(&str, u64, u32, &str, Value)]) -> EncodedRows {
        let mut encoded = EncodedRows::default();
        for (session_id, seq, idx, path, value) in rows {
            let key = RowKey {
                session_id,
                seq: *seq,
                idx: *idx,
                ts_ms: 1_700_000_000_000 + seq,
                date: 20_000,
                client_ts_ms: 0,
            };
            encoded.state_path(StatePathRef {
                key,
                path,
                value,
                removed: value.is_null(),
            });
        }
        encoded
    }

    fn keys(
        tables: &[&EncodedTable],
        order: &[RowSpan],
    ) -> Vec<(String, String, String, u64, u32)> {
        order
            .iter()
            .map(|span| {
                let mut reader = Reader::new(&tables[span.table].bytes[..span.end]);
                reader.at = span.start;
                let row = reader.state_path().expect("parses");
                assert_eq!(reader.at, span.end);
                let text = |bytes: &[u8]| String::from_utf8(bytes.to_vec()).unwrap();
                (
                    text(row.path),
                    text(row.value),
                    text(row.session_id),
                    row.seq,
                    row.idx,
                )
            })
            .collect()
    }

    #[test]
    fn rows_come_out_in_the_tables_key_order() {
        let a = encode(&[
            ("s2", 1, 0, "z", json!(1)),
            ("s2", 1, 1, "a.b", json!(["x", "y"])),
            ("s2", 2, 0, "a.b", json!("x")),
        ]);
        let b = encode(&[
            ("s1", 9, 0, "a.b", json!("x")),
            ("s1", 3, 0, "a.b", json!("x")),
            ("s1", 3, 1, "a", json!(null)),
        ]);
        let tables = [&a.state_paths, &b.state_paths];
        let order = state_paths_in_key_order(&tables).expect("well formed");
        assert_eq!(order.len(), 6);
        let keys = keys(&tables, &order);
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        assert_eq!(keys[0].0, "a");
        assert_eq!(
            keys[1],
            ("a.b".into(), "[\"x\",\"y\"]".into(), "s2".into(), 1, 1)
        );
        assert_eq!(keys[2], ("a.b".into(), "x".into(), "s1".into(), 3, 0));
    }

    #[test]
    fn every_byte_is_in_exactly_one_row() {
        let a = encode(&[
            ("s", 1, 0, "p", json!({"deep": [1, 2]})),
            ("s", 1, 1, "q", json!("")),
        ]);
        let order = state_paths_in_key_order(&[&a.state_paths]).unwrap();
        let mut spans: Vec<_> = order.iter().map(|s| (s.start, s.end)).collect();
        spans.sort();
        assert_eq!(spans[0].0, 0);
        assert_eq!(spans[0].1, spans[1].0);
        assert_eq!(spans[1].1, a.state_paths.bytes.len());
    }

    #[test]
    fn cut_short_rows_are_refused() {
        let a = encode(&[("s", 1, 0, "p", json!("v"))]);
        let mut cut = a.state_paths.clone();
        cut.bytes.pop();
        assert_eq!(state_paths_in_key_order(&[&cut]), Err(Malformed));
    }
}

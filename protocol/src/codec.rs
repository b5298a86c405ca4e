//! The versioned MessagePack encoding of a [`Batch`].
//!
//! A message is one format byte followed by the MessagePack of the batch with named fields
//! (maps, not arrays), so fields can be added without breaking older readers.

use thiserror::Error;

use crate::batch::Batch;
use crate::record::Record;

/// The format byte of the current encoding.
pub const FORMAT_V1: u8 = 1;

#[derive(Debug, Error)]
pub enum CodecError {
    #[error("empty message")]
    Empty,
    #[error("unsupported batch format {0} (this build reads format {FORMAT_V1})")]
    UnsupportedFormat(u8),
    #[error("batch does not decode: {0}")]
    Decode(#[from] rmp_serde::decode::Error),
    #[error("batch does not encode: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
    #[error("invalid batch: {0}")]
    Invalid(String),
}

pub fn encode_batch(batch: &Batch) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(64 + batch.records.len() * 64);
    out.push(FORMAT_V1);
    rmp_serde::encode::write_named(&mut out, batch)?;
    Ok(out)
}

/// Counts the bytes written to it: a value's size without keeping its encoding.
struct ByteCounter(usize);

impl std::io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// How many bytes `value` takes in this encoding (measured by encoding it, without keeping
/// the bytes): what a record adds to a batch.
pub fn encoded_size<T: serde::Serialize + ?Sized>(value: &T) -> usize {
    let mut counter = ByteCounter(0);
    let _ = rmp_serde::encode::write_named(&mut counter, value);
    counter.0
}

/// An upper bound of [`json_size`], found without writing the text (several times cheaper:
/// no number is formatted, no string copied): a number counts as 24 bytes (the longest a
/// float is written), an escaped character as 6.
pub fn json_size_bound(value: &serde_json::Value) -> usize {
    use serde_json::Value;
    fn text(s: &str) -> usize {
        let escaped = s
            .bytes()
            .filter(|b| *b < 0x20 || *b == b'"' || *b == b'\\')
            .count();
        s.len() + 2 + 5 * escaped
    }
    match value {
        Value::Null => 4,
        Value::Bool(_) => 5,
        Value::Number(_) => 24,
        Value::String(s) => text(s),
        Value::Array(items) => 2 + items.iter().map(|v| json_size_bound(v) + 1).sum::<usize>(),
        Value::Object(map) => {
            2 + map
                .iter()
                .map(|(k, v)| text(k) + 1 + json_size_bound(v) + 1)
                .sum::<usize>()
        }
    }
}

/// How many bytes `value` takes as JSON text (how a session's state is kept in its progress
/// record), without building the text.
pub fn json_size(value: &serde_json::Value) -> usize {
    let mut counter = ByteCounter(0);
    let _ = serde_json::to_writer(&mut counter, value);
    counter.0
}

/// Splits records, in order, into groups whose encoded size stays under `max_bytes` (a single
/// record larger than that is a group of its own): the records of one batch each.
pub fn split_by_size(records: Vec<Record>, max_bytes: usize) -> Vec<Vec<Record>> {
    let mut groups = Vec::new();
    let mut current = Vec::new();
    let mut current_bytes = 0;
    for record in records {
        let size = encoded_size(&record);
        if !current.is_empty() && current_bytes + size > max_bytes {
            groups.push(std::mem::take(&mut current));
            current_bytes = 0;
        }
        current_bytes += size;
        current.push(record);
    }
    if !current.is_empty() {
        groups.push(current);
    }
    groups
}

pub fn decode_batch(bytes: &[u8]) -> Result<Batch, CodecError> {
    let batch: Batch = rmp_serde::from_slice(body(bytes)?)?;
    validate(&batch)?;
    Ok(batch)
}

/// Which batch a message holds, read without decoding its records (they are skipped, not
/// built): enough to decide whether it applies now, is a duplicate, or must wait.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct BatchHead {
    pub session_id: String,
    pub seq: u64,
}

pub fn decode_batch_head(bytes: &[u8]) -> Result<BatchHead, CodecError> {
    let body = body(bytes)?;
    if let Some(head) = leading_head(body) {
        return Ok(head);
    }
    // Fields in another order (or a message that does not decode): the general decoder
    // skips the records, or says what is wrong.
    Ok(rmp_serde::from_slice(body)?)
}

/// The head of a batch that starts with its `session_id` and `seq` (as [`encode_batch`]
/// writes it), read without looking at the records at all: serde's decoder walks every
/// record to skip them, which was a tenth of ingest's CPU time.
fn leading_head(mut body: &[u8]) -> Option<BatchHead> {
    let fields = rmp::decode::read_map_len(&mut body).ok()?;
    let (mut session_id, mut seq) = (None, None);
    for _ in 0..fields.min(2) {
        match read_str(&mut body)? {
            "session_id" => session_id = Some(read_str(&mut body)?.to_string()),
            "seq" => seq = Some(rmp::decode::read_int(&mut body).ok()?),
            _ => return None,
        }
    }
    Some(BatchHead {
        session_id: session_id?,
        seq: seq?,
    })
}

fn read_str<'a>(body: &mut &'a [u8]) -> Option<&'a str> {
    let len = rmp::decode::read_str_len(body).ok()? as usize;
    let text = body.get(..len)?;
    *body = &body[len..];
    std::str::from_utf8(text).ok()
}

fn body(bytes: &[u8]) -> Result<&[u8], CodecError> {
    let (&format, body) = bytes.split_first().ok_or(CodecError::Empty)?;
    if format != FORMAT_V1 {
        return Err(CodecError::UnsupportedFormat(format));
    }
    Ok(body)
}

/// Rejects batches that decode but would corrupt a session.
fn validate(batch: &Batch) -> Result<(), CodecError> {
    if batch.session_id.is_empty() || batch.session_id.len() > 128 {
        return Err(CodecError::Invalid(
            "session_id must be 1 to 128 bytes".into(),
        ));
    }
    for record in &batch.records {
        if let crate::Record::State(update) = record {
            if let Some(refusal) = crate::record::StateUpdate::refusal(&update.update) {
                return Err(CodecError::Invalid(refusal));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::record::*;

    #[test]
    fn the_head_is_read_without_the_records() {
        let bytes = encode_batch(&sample()).unwrap();
        let head = decode_batch_head(&bytes).unwrap();
        assert_eq!(
            head,
            BatchHead {
                session_id: sample().session_id,
                seq: 7
            }
        );
        assert!(matches!(
            decode_batch_head(&[2, 0x80]),
            Err(CodecError::UnsupportedFormat(2))
        ));
    }

    #[test]
    fn a_head_in_another_field_order_or_broken_is_still_judged() {
        #[derive(serde::Serialize)]
        struct SeqFirst<'a> {
            seq: u64,
            records: Vec<u8>,
            session_id: &'a str,
        }
        let mut bytes = vec![FORMAT_V1];
        let batch = SeqFirst {
            seq: 3,
            records: vec![],
            session_id: "s",
        };
        rmp_serde::encode::write_named(&mut bytes, &batch).unwrap();
        let head = decode_batch_head(&bytes).unwrap();
        assert_eq!((head.session_id.as_str(), head.seq), ("s", 3));
        let mut truncated = encode_batch(&sample()).unwrap();
        truncated.truncate(12);
        assert!(decode_batch_head(&truncated).is_err());
        assert!(decode_batch_head(&[FORMAT_V1, 0xc1]).is_err());
    }

    #[test]
    fn a_state_nested_past_the_limit_does_not_decode() {
        let nested =
            |levels: usize| (1..levels).fold(json!({"leaf": 1}), |inner, _| json!({ "n": inner }));
        let with_state = |update| {
            let mut batch = sample();
            batch.records = vec![Record::State(StateUpdate { ts_ms: 1, update })];
            encode_batch(&batch).unwrap()
        };
        assert!(decode_batch(&with_state(nested(StateUpdate::MAX_DEPTH))).is_ok());
        let error = decode_batch(&with_state(nested(StateUpdate::MAX_DEPTH + 1))).unwrap_err();
        assert!(error.to_string().contains("at most 64"), "{error}");
    }

    #[test]
    fn a_split_keeps_order_and_respects_the_limit() {
        let records: Vec<crate::Record> = (0..100)
            .map(|i| crate::Record::Heartbeat(crate::record::Heartbeat { ts_ms: i }))
            .collect();
        let one = encoded_size(&records[0]);
        let groups = split_by_size(records.clone(), one * 10);
        assert!(groups.iter().all(|g| g.len() <= 10));
        assert_eq!(groups.concat(), records);
        assert_eq!(split_by_size(records.clone(), usize::MAX).len(), 1);
        assert_eq!(split_by_size(Vec::new(), 10).len(), 0);
    }

    #[test]
    fn the_json_size_bound_is_never_below_the_size() {
        for value in [
            json!(null),
            json!({"a": [1, -2.2250738585072014e-308, true, false, null, "x\"\n\u{1}\\"]}),
            json!({"": {}, "é": [], "k": u64::MAX, "n": i64::MIN}),
            json!("plain"),
        ] {
            assert!(json_size_bound(&value) >= json_size(&value), "{value}");
        }
    }

    fn sample() -> Batch {
        Batch {
            session_id: "0190a6a4-0000-7000-8000-000000000001".into(),
            seq: 7,
            records: vec![
                Record::Start(SessionStart {
                    ts_ms: 1,
                    product: "game".into(),
                    version: "1.0".into(),
                    machine: MachineInfo {
                        hostname: "h".into(),
                        cpu_count: 8,
                        ..Default::default()
                    },
                    environment: "ci".into(),
                    tags: [("team".to_string(), "render".to_string())].into(),
                }),
                Record::State(StateUpdate {
                    ts_ms: 2,
                    update: json!({"a": {"b": [1, 2.5, "x", null]}}),
                }),
                Record::Event(Event {
                    ts_ms: 3,
                    name: "boom".into(),
                    level: Level::Error,
                    category: "c".into(),
                    group: "g".into(),
                    labels: vec!["l".into()],
                    message: "m".into(),
                    data: json!({"k": u64::MAX, "neg": -3}),
                    exception: Some(Box::new(ExceptionInfo {
                        type_name: "ValueError".into(),
                        message: "bad".into(),
                        stacktrace: vec!["tb".into()],
                        frames: vec![Frame {
                            file: "f.py".into(),
                            line: 3,
                            function: "f".into(),
                            code: "x()".into(),
                            locals: [("n".to_string(), "3".to_string())].into(),
                        }],
                        causes: vec![Cause {
                            type_name: "KeyError".into(),
                            message: "'k'".into(),
                            relation: "context".into(),
                            frames: vec![Frame::default()],
                        }],
                    })),
                }),
                Record::Metric(Metric {
                    ts_ms: 4,
                    name: "fps".into(),
                    kind: MetricKind::Timer,
                    value: 59.5,
                    unit: "ms".into(),
                    tags: vec![],
                    count: Some(3),
                    histogram: Some(Histogram {
                        bounds: vec![1.0],
                        counts: vec![2, 1],
                        sum: 3.5,
                        count: 3,
                    }),
                }),
                Record::Hang(HangChange {
                    ts_ms: 5,
                    hung: true,
                    last_heartbeat_ms: 1,
                    timeout_ms: 60_000,
                }),
                Record::Dropped(DataDropped {
                    ts_ms: 5,
                    batches: 2,
                    records: 40,
                    reason: "spool full".into(),
                }),
                Record::Alive(Alive { ts_ms: 5 }),
                Record::Heartbeat(Heartbeat { ts_ms: 5 }),
                Record::End(SessionEnd {
                    ts_ms: 6,
                    status: EndStatus::Crashed,
                    reason: "signal 9".into(),
                }),
            ],
        }
    }

    #[test]
    fn round_trips_every_record_kind() {
        let batch = sample();
        let bytes = encode_batch(&batch).unwrap();
        assert_eq!(bytes[0], FORMAT_V1);
        assert_eq!(decode_batch(&bytes).unwrap(), batch);
    }

    #[test]
    fn empty_optional_fields_stay_off_the_wire_and_come_back() {
        let event = Record::Event(Event::named(1, "e"));
        let batch = Batch {
            session_id: "s".into(),
            seq: 0,
            records: vec![event],
        };
        let bytes = encode_batch(&batch).unwrap();
        assert!(
            !bytes.windows(8).any(|w| w == b"category"),
            "empty fields are not encoded"
        );
        assert_eq!(decode_batch(&bytes).unwrap(), batch);
    }

    #[test]
    fn rejects_unknown_format_and_garbage() {
        let mut bytes = encode_batch(&sample()).unwrap();
        bytes[0] = 9;
        assert!(matches!(
            decode_batch(&bytes),
            Err(CodecError::UnsupportedFormat(9))
        ));
        assert!(matches!(decode_batch(&[]), Err(CodecError::Empty)));
        assert!(matches!(
            decode_batch(&[FORMAT_V1, 0xc1, 0xff]),
            Err(CodecError::Decode(_))
        ));
    }

    #[test]
    fn rejects_non_object_state_update() {
        let batch = Batch {
            session_id: "s".into(),
            seq: 0,
            records: vec![Record::State(StateUpdate {
                ts_ms: 1,
                update: json!([1]),
            })],
        };
        let bytes = encode_batch(&batch).unwrap();
        assert!(matches!(decode_batch(&bytes), Err(CodecError::Invalid(_))));
    }
}

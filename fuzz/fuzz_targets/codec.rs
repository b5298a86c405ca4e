//! The batch codec ingest runs on every message: whatever the bytes, decoding answers (a
//! batch or an error) without panicking, reading the head agrees with reading the whole,
//! and a batch that decodes encodes and decodes again.
#![no_main]

use datacat_protocol::{decode_batch, decode_batch_head, encode_batch};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let head = decode_batch_head(data);
    let Ok(batch) = decode_batch(data) else {
        return;
    };
    let head = head.expect("a batch that decodes has a head that does");
    assert_eq!((head.session_id.as_str(), head.seq), (batch.session_id.as_str(), batch.seq));
    let again = encode_batch(&batch).expect("a decoded batch encodes");
    let decoded = decode_batch(&again).expect("an encoded batch decodes");
    assert_eq!((decoded.session_id, decoded.seq), (batch.session_id, batch.seq));
    assert_eq!(decoded.records.len(), batch.records.len());
});

//! The batch codec ingest runs on every message: whatever the bytes, decoding answers (a
//! batch or an error) without panicking, a head that reads agrees with the whole, and a
//! batch that decodes encodes and decodes again.
#![no_main]

use datacat_protocol::{decode_batch, decode_batch_head, encode_batch};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let head = decode_batch_head(data);
    let Ok(batch) = decode_batch(data) else {
        return;
    };
    // A head that does not read (a batch written as an array, say) gets the message
    // dead-lettered before its records are looked at; one that reads must agree.
    if let Ok(head) = head {
        assert_eq!((head.session_id.as_str(), head.seq), (batch.session_id.as_str(), batch.seq));
    }
    let again = encode_batch(&batch).expect("a decoded batch encodes");
    let decoded = decode_batch(&again).expect("an encoded batch decodes");
    assert_eq!((decoded.session_id, decoded.seq), (batch.session_id, batch.seq));
    assert_eq!(decoded.records.len(), batch.records.len());
});

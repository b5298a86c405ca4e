//! The call parser the daemon and direct writes run on every request body: whatever the
//! bytes, each body type and `/batch` parse to calls or a clear refusal without panicking,
//! and every call they accept becomes a record that encodes into a batch ingest can decode.
#![no_main]

use datacat_api::calls::{
    parse_lenient, Batch, Call, EndBody, EventBody, HeartbeatBody, MetricBody, StateBody,
};
use datacat_protocol::{decode_batch, encode_batch, Batch as WireBatch};
use libfuzzer_sys::fuzz_target;

fn stored(call: Call) {
    let Ok(record) = call.into_record() else {
        return;
    };
    let batch = WireBatch {
        session_id: "fuzz".into(),
        seq: 0,
        records: vec![record],
    };
    let bytes = encode_batch(&batch).expect("an accepted call encodes");
    decode_batch(&bytes).expect("an accepted call decodes where ingest reads it");
}

fuzz_target!(|data: &[u8]| {
    if let Ok(body) = parse_lenient::<StateBody>(data) {
        if let Ok(call) = body.into_call() {
            stored(call);
        }
    }
    if let Ok(body) = parse_lenient::<EventBody>(data) {
        if let Ok(call) = body.into_call() {
            stored(call);
        }
    }
    if let Ok(body) = parse_lenient::<MetricBody>(data) {
        if let Ok(call) = body.into_call() {
            stored(call);
        }
    }
    if let Ok(body) = parse_lenient::<HeartbeatBody>(data) {
        let _ = body.into_call();
    }
    let _ = parse_lenient::<EndBody>(data);
    if let Ok(batch) = Batch::parse(data) {
        for call in batch.calls.into_iter().flatten() {
            stored(call);
        }
    }
});

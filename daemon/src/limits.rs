//! How large a batch and a record may be. A batch travels as one NATS message, which the
//! server refuses above its `max_payload` (1 MiB unless configured otherwise); the message
//! also carries headers (`Nats-Msg-Id`, and those ingest adds when it dead-letters a batch).
//! So a batch is cut at `--max-batch-bytes` or at the server's limit less `HEADROOM`,
//! whichever is smaller, and a call whose record could not travel even in a batch of its
//! own is refused at the door (413) instead of being spooled for ever.

use std::sync::atomic::{AtomicUsize, Ordering};

use datacat_api::calls::Call;

use datacat_jetstream::{batch_room, HEADROOM};

/// What a batch of one record adds to the record (its session id and sequence number).
const ENVELOPE: usize = 256;
/// MessagePack takes at most this many times the bytes of the JSON a call came as (a float
/// written `1e5,` is 4 bytes of text and 9 encoded): a smaller body cannot hold a record over
/// the limit, and is not measured.
const MAX_EXPANSION: usize = 3;

pub struct SizeLimits {
    max_batch_bytes: usize,
    /// The connected server's `max_payload`; 0 until the daemon has connected.
    server_max_payload: AtomicUsize,
}

impl SizeLimits {
    pub fn new(max_batch_bytes: usize) -> Self {
        Self {
            max_batch_bytes,
            server_max_payload: AtomicUsize::new(0),
        }
    }

    pub fn set_server_max_payload(&self, bytes: usize) {
        self.server_max_payload.store(bytes, Ordering::Relaxed);
    }

    /// The largest batch payload.
    pub fn batch_bytes(&self) -> usize {
        let server = batch_room(self.server_max_payload.load(Ordering::Relaxed));
        self.max_batch_bytes.min(server)
    }

    /// The largest record a call may make: one that travels in a batch of its own.
    pub fn record_bytes(&self) -> usize {
        self.batch_bytes() - ENVELOPE
    }

    /// Refuses a call, sent as a body of `body_len` bytes, whose record would be larger than
    /// [`Self::record_bytes`], saying why.
    pub fn admit(&self, body_len: usize, call: &Call) -> Result<(), String> {
        let limit = self.record_bytes();
        if body_len.saturating_mul(MAX_EXPANSION) <= limit {
            return Ok(());
        }
        let size = call.encoded_size();
        if size <= limit {
            return Ok(());
        }
        Err(format!(
            "this call makes a record of {size} bytes; the largest the daemon takes is {limit} \
             bytes (a batch must fit in one NATS message: --max-batch-bytes, or the server's \
             max_payload less {HEADROOM} bytes)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use datacat_protocol::{Event, Record};
    use serde_json::json;

    use super::*;

    fn event_of(bytes: usize) -> Call {
        let mut event = Event::named(1, "big");
        event.data = json!({"blob": "x".repeat(bytes)});
        Call::Record(Record::Event(event))
    }

    #[test]
    fn the_server_limit_wins_when_it_is_smaller() {
        let limits = SizeLimits::new(512 * 1024);
        assert_eq!(limits.batch_bytes(), 512 * 1024);
        limits.set_server_max_payload(64 * 1024);
        assert_eq!(limits.batch_bytes(), 48 * 1024);
        limits.set_server_max_payload(8 * 1024 * 1024);
        assert_eq!(limits.batch_bytes(), 512 * 1024);
    }

    #[test]
    fn records_up_to_the_limit_pass_and_larger_ones_are_refused() {
        let limits = SizeLimits::new(64 * 1024);
        let limit = limits.record_bytes();
        let fits = event_of(limit - 200);
        assert!(fits.encoded_size() <= limit);
        assert!(limits.admit(limit, &fits).is_ok());
        let over = event_of(limit);
        let refused = limits.admit(limit + 100, &over).unwrap_err();
        assert!(
            refused.contains("the largest the daemon takes"),
            "{refused}"
        );
        // A small body is never measured: it cannot hold a record over the limit.
        assert!(limits.admit(10, &over).is_ok());
    }
}

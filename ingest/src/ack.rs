//! What becomes of a message: acked (its rows are in ClickHouse, or it is a duplicate),
//! NAKed (to come back later), kept alive (still being worked on), or dead-lettered (it can
//! never be applied: kept, with the reason, in the dead-letter stream).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, Message};
use datacat_protocol::subject;
use tracing::{error, warn};

use crate::stats::Stats;

/// Delay before a failed round's messages come back.
pub(crate) const RETRY_DELAY: Duration = Duration::from_secs(1);

pub(crate) async fn ack_all(messages: Vec<Message>) {
    for message in messages {
        if let Err(error) = message.ack().await {
            warn!(%error, "ack failed; the message will be redelivered and skipped as a duplicate");
        }
    }
}

/// Tells JetStream the messages are still being worked on (their ack wait starts again).
/// (A slice, not an iterator: an iterator adaptor held across the awaits trips the
/// compiler's `Send` inference for the spawned group.)
pub(crate) async fn extend_ack_deadlines(messages: &[&Message]) {
    for message in messages {
        let _ = message.ack_with(AckKind::Progress).await;
    }
}

pub(crate) async fn nak_all(messages: Vec<Message>, delay: Duration) {
    for message in messages {
        if let Err(error) = message.ack_with(AckKind::Nak(Some(delay))).await {
            warn!(%error, "nak failed; the message will be redelivered after ack_wait");
        }
    }
}

/// Moves messages that can never be applied to the dead-letter stream, with the reason.
#[derive(Clone)]
pub(crate) struct DeadLetters {
    pub(crate) jetstream: jetstream::Context,
    pub(crate) stats: Arc<Stats>,
    /// The largest message the server takes (headers included).
    pub(crate) max_payload: usize,
}

/// Header names of a dead letter, besides the reason's.
const SUBJECT_HEADER: &str = "Datacat-Subject";

/// The headers of a dead letter of `payload_len` bytes, within `max_payload`: the message's
/// subject, and the reason cut to the room left (a message near the limit leaves little).
/// With no room even for those, the payload itself is cut (the headers say so): a message
/// that can never be stored must still leave the stream, and its size is kept.
fn dead_letter_headers(
    subject: &str,
    reason: &str,
    payload_len: usize,
    max_payload: usize,
) -> (async_nats::HeaderMap, usize) {
    // "NATS/1.0\r\n", each "Name: value\r\n", and the closing "\r\n".
    let header_bytes = |name: &str, value: &str| name.len() + value.len() + 4;
    let fixed = 12
        + header_bytes(SUBJECT_HEADER, subject)
        + header_bytes(subject::DEAD_LETTER_REASON_HEADER, "");
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(SUBJECT_HEADER, subject);
    let room = max_payload.saturating_sub(payload_len + fixed);
    if room > 0 {
        headers.insert(
            subject::DEAD_LETTER_REASON_HEADER,
            cut_to(reason, room).as_str(),
        );
        return (headers, payload_len);
    }
    let note = format!("payload cut to fit from {payload_len} bytes; {reason}");
    let note = cut_to(&note, 256);
    let kept = max_payload.saturating_sub(fixed + note.len());
    headers.insert(subject::DEAD_LETTER_REASON_HEADER, note.as_str());
    (headers, kept.min(payload_len))
}

/// `text` cut to at most `bytes` bytes at a character boundary, on one line.
fn cut_to(text: &str, bytes: usize) -> String {
    let line = text.replace(['\r', '\n'], " ");
    datacat_protocol::record::cut_to(&line, bytes).to_string()
}

impl DeadLetters {
    /// Stores the message in the dead-letter stream, then acks it; if it cannot be stored,
    /// NAKs it to try again later.
    pub(crate) async fn send(&self, message: Message, reason: &str) {
        warn!(subject = %message.subject, %reason, "dead-lettering an unusable message");
        let (headers, kept) = dead_letter_headers(
            message.subject.as_str(),
            reason,
            message.payload.len(),
            self.max_payload,
        );
        let published = self
            .jetstream
            .publish_with_headers(
                subject::DEAD_LETTER_SUBJECT,
                headers,
                message.payload.slice(..kept),
            )
            .await;
        let stored = match published {
            Ok(ack) => ack.await.map(drop).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match stored {
            Ok(()) => {
                self.stats.dead_letters.fetch_add(1, Ordering::Relaxed);
                ack_all(vec![message]).await;
            }
            Err(error) => {
                error!(%error, "dead-letter publish failed; retrying later");
                nak_all(vec![message], RETRY_DELAY).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a message with these headers and payload takes on the wire, as NATS counts it.
    fn size(headers: &async_nats::HeaderMap, payload: usize) -> usize {
        let mut bytes = 12;
        for (name, values) in headers.iter() {
            for value in values {
                bytes += name.to_string().len() + value.as_str().len() + 4;
            }
        }
        bytes + payload
    }

    #[test]
    fn a_dead_letter_fits_the_limit_whatever_the_message() {
        let max = 1 << 20;
        let reason = "é".repeat(5000);
        for payload in [10, max - 20_000, max - 300, max - 40, max] {
            let (headers, kept) = dead_letter_headers("datacat.b.s", &reason, payload, max);
            assert!(size(&headers, kept) <= max, "payload {payload}");
            let reason = headers.get(subject::DEAD_LETTER_REASON_HEADER).unwrap();
            assert!(!reason.as_str().is_empty(), "payload {payload}");
            if payload <= max - 300 {
                assert_eq!(kept, payload);
            }
        }
        let (headers, kept) = dead_letter_headers("s", "short", 10, max);
        assert_eq!(kept, 10);
        assert_eq!(
            headers
                .get(subject::DEAD_LETTER_REASON_HEADER)
                .unwrap()
                .as_str(),
            "short"
        );
    }
}

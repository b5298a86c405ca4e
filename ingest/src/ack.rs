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
}

impl DeadLetters {
    /// Stores the message in the dead-letter stream, then acks it; if it cannot be stored,
    /// NAKs it to try again later.
    pub(crate) async fn send(&self, message: Message, reason: &str) {
        warn!(subject = %message.subject, %reason, "dead-lettering an unusable message");
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(subject::DEAD_LETTER_REASON_HEADER, reason);
        headers.insert("Datacat-Subject", message.subject.as_str());
        let published = self
            .jetstream
            .publish_with_headers(
                subject::DEAD_LETTER_SUBJECT,
                headers,
                message.payload.clone(),
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

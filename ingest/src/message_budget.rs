//! A bound on the memory a worker's messages take: the payload bytes of every message it
//! holds (fetched, or forwarded to it by another worker, and not yet acked, NAKed or
//! forwarded on). `--max-ack-pending` bounds how many messages are out across all workers,
//! whatever their size: 40 000 batches of a few KB are 150 MB, of a MB each 40 GB. So a
//! worker fetches, and takes in forwarded messages, only while its messages hold less than
//! `--message-budget-mib`, and asks NATS for no more than the room left (but always enough
//! for the largest message NATS accepts, so one large message cannot stall the fetching).
//! What it does not cover is in docs/ingest.md ("Memory").
//!
//! A message is charged when it comes in, by wrapping its payload: the charge goes when the
//! last copy of the payload is dropped, wherever that happens (ack, NAK, forward, dead
//! letter, shutdown), so no path can leak it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Room kept above the largest payload NATS accepts, for the subject, reply subject and
/// headers it counts against a fetch's byte limit.
const ENVELOPE_BYTES: usize = 64 * 1024;

pub struct MessageBudget {
    held: AtomicUsize,
    limit: usize,
    /// The least a fetch may ask for: the largest message NATS can deliver.
    fetch_floor: usize,
    freed: Notify,
}

impl MessageBudget {
    /// A budget of `limit` payload bytes, for messages of up to `max_payload` bytes.
    pub fn new(limit: usize, max_payload: usize) -> Arc<Self> {
        Arc::new(Self {
            held: AtomicUsize::new(0),
            limit: limit.max(1),
            fetch_floor: max_payload + ENVELOPE_BYTES,
            freed: Notify::new(),
        })
    }

    /// Payload bytes of the messages held now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// Whether the messages held are under the budget.
    pub fn has_room(&self) -> bool {
        self.held() < self.limit
    }

    /// The most bytes the next fetch may bring.
    pub fn fetch_bytes(&self) -> usize {
        self.limit.saturating_sub(self.held()).max(self.fetch_floor)
    }

    /// Charges the message's payload to the budget until every copy of it is dropped.
    pub fn charge(self: &Arc<Self>, message: &mut async_nats::Message) {
        let payload = std::mem::take(&mut message.payload);
        if payload.is_empty() {
            return;
        }
        self.held.fetch_add(payload.len(), Ordering::Relaxed);
        message.payload = Bytes::from_owner(Charged {
            payload,
            budget: self.clone(),
        });
    }

    /// Waits until the messages held are under the budget (or `shutdown`).
    pub async fn wait_for_room(&self, shutdown: &CancellationToken) {
        loop {
            // Registered before the check, so a release in between is not missed.
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if self.has_room() {
                return;
            }
            tokio::select! {
                _ = freed => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    fn release(&self, bytes: usize) {
        let before = self.held.fetch_sub(bytes, Ordering::Relaxed);
        if before >= self.limit && before - bytes < self.limit {
            self.freed.notify_waiters();
        }
    }
}

/// A payload that gives its bytes back to the budget when dropped.
struct Charged {
    payload: Bytes,
    budget: Arc<MessageBudget>,
}

impl AsRef<[u8]> for Charged {
    fn as_ref(&self) -> &[u8] {
        &self.payload
    }
}

impl Drop for Charged {
    fn drop(&mut self) {
        self.budget.release(self.payload.len());
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn message(payload: &'static [u8]) -> async_nats::Message {
        async_nats::Message {
            subject: "datacat.s.x".into(),
            reply: None,
            payload: Bytes::from_static(payload),
            headers: None,
            status: None,
            description: None,
            length: payload.len(),
        }
    }

    #[tokio::test]
    async fn a_payload_is_charged_until_its_last_copy_goes() {
        let budget = MessageBudget::new(1000, 100);
        let mut first = message(b"0123456789");
        budget.charge(&mut first);
        let mut second = message(b"abc");
        budget.charge(&mut second);
        assert_eq!(budget.held(), 13);
        assert_eq!(&first.payload[..], b"0123456789");
        let copy = first.payload.slice(2..4);
        drop(first);
        assert_eq!(budget.held(), 13, "a copy of the payload still holds it");
        drop(copy);
        assert_eq!(budget.held(), 3);
        drop(second);
        assert_eq!(budget.held(), 0);
    }

    #[tokio::test]
    async fn fetches_ask_for_the_room_left_but_never_less_than_the_largest_message() {
        let budget = MessageBudget::new(1_000_000, 100);
        assert_eq!(budget.fetch_bytes(), 1_000_000);
        let mut held = message(&[7; 990_000]);
        budget.charge(&mut held);
        assert_eq!(budget.fetch_bytes(), 100 + ENVELOPE_BYTES);
        drop(held);
        assert_eq!(budget.fetch_bytes(), 1_000_000);
    }

    #[tokio::test]
    async fn fetching_waits_while_the_budget_is_spent() {
        let budget = MessageBudget::new(16, 100);
        let shutdown = CancellationToken::new();
        let mut held = message(&[1; 20]);
        budget.charge(&mut held);
        let waiting = {
            let (budget, shutdown) = (budget.clone(), shutdown.clone());
            tokio::spawn(async move { budget.wait_for_room(&shutdown).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "20 bytes held of 16: no room");
        drop(held);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("room once the message is gone")
            .unwrap();
        // And shutdown ends a wait too.
        let mut held = message(&[1; 20]);
        budget.charge(&mut held);
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), budget.wait_for_room(&shutdown))
            .await
            .expect("shutdown ends the wait");
    }
}

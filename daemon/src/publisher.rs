//! Publishing batches to JetStream: pipelined acks, `Nats-Msg-Id` dedupe, and retries until
//! every batch is acknowledged.
//!
//! Batches wait in an in-memory queue. One task takes whatever is queued, publishes it all
//! without waiting, then collects the acks; failed batches go back to the front of the
//! queue and are retried with backoff (the message id makes a retry of an applied publish a
//! no-op on the server).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use async_nats::jetstream::{self, message::PublishMessage};
use bytes::Bytes;
use futures::future::join_all;
use tokio::sync::{watch, Notify};
use tracing::{debug, warn};

use crate::config::Config;

/// Most batches published before waiting for their acks.
const PIPELINE_DEPTH: usize = 512;

/// One batch on its way to JetStream.
pub struct Outgoing {
    pub subject: String,
    pub msg_id: String,
    pub payload: Bytes,
    /// The session's count of unacknowledged batches, decremented on ack.
    pub unacked: watch::Sender<u64>,
}

#[derive(Default)]
pub struct PublisherStats {
    pub published: AtomicU64,
    pub publish_errors: AtomicU64,
    pub published_bytes: AtomicU64,
}

#[derive(Clone)]
pub struct Publisher {
    queue: Arc<Mutex<VecDeque<Outgoing>>>,
    wake: Arc<Notify>,
    idle: Arc<Notify>,
    /// Batches taken from the queue whose acks are still awaited.
    in_flight: Arc<AtomicU64>,
    pub stats: Arc<PublisherStats>,
}

impl Publisher {
    /// Connects (in the background: NATS may be down now and come up later) and starts the
    /// publishing task.
    pub async fn start(config: &Config) -> Result<Self> {
        let client = async_nats::ConnectOptions::new()
            .name("datacat-daemon")
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(2))
            .connect(&config.nats_url)
            .await?;
        let jetstream = jetstream::new(client);
        let publisher = Self {
            queue: Arc::default(),
            wake: Arc::default(),
            idle: Arc::default(),
            in_flight: Arc::default(),
            stats: Arc::default(),
        };
        tokio::spawn(publisher.clone().run(jetstream));
        Ok(publisher)
    }

    pub fn enqueue(&self, batches: Vec<Outgoing>) {
        self.lock().extend(batches);
        self.wake.notify_one();
    }

    /// Batches not yet acknowledged (queued or in flight).
    pub fn queued(&self) -> usize {
        self.lock().len() + self.in_flight()
    }

    fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed) as usize
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Outgoing>> {
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Waits until everything queued is acknowledged, or `timeout`. Returns whether it drained.
    pub async fn drain(&self, timeout: Duration) -> bool {
        let wait = async {
            while self.queued() > 0 {
                self.wake.notify_one();
                let _ = tokio::time::timeout(Duration::from_millis(50), self.idle.notified()).await;
            }
        };
        tokio::time::timeout(timeout, wait).await.is_ok()
    }

    async fn run(self, jetstream: jetstream::Context) {
        let mut backoff = Duration::from_millis(50);
        loop {
            let batch: Vec<Outgoing> = {
                let mut queue = self.lock();
                let n = queue.len().min(PIPELINE_DEPTH);
                queue.drain(..n).collect()
            };
            if batch.is_empty() {
                self.idle.notify_waiters();
                self.wake.notified().await;
                continue;
            }
            self.in_flight
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            let failed = self.publish_all(&jetstream, batch).await;
            if failed.is_empty() {
                backoff = Duration::from_millis(50);
                continue;
            }
            // Back to the front, in order, then wait before trying again.
            {
                let mut queue = self.lock();
                for outgoing in failed.into_iter().rev() {
                    queue.push_front(outgoing);
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }

    /// Publishes every batch, then awaits all acks; returns the batches that failed.
    async fn publish_all(
        &self,
        jetstream: &jetstream::Context,
        batch: Vec<Outgoing>,
    ) -> Vec<Outgoing> {
        let mut pending = Vec::with_capacity(batch.len());
        for outgoing in batch {
            let publish = PublishMessage::build()
                .payload(outgoing.payload.clone())
                .message_id(&outgoing.msg_id);
            let ack = jetstream
                .send_publish(outgoing.subject.clone(), publish)
                .await;
            pending.push((outgoing, ack));
        }
        let (outgoing, acks): (Vec<_>, Vec<_>) = pending.into_iter().unzip();
        let results = join_all(acks.into_iter().map(|ack| async move {
            match ack {
                Ok(future) => future.await.map(|_| ()).map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            }
        }))
        .await;

        let mut failed = Vec::new();
        for (outgoing, result) in outgoing.into_iter().zip(results) {
            self.in_flight.fetch_sub(1, Ordering::Relaxed);
            match result {
                Ok(()) => {
                    self.stats.published.fetch_add(1, Ordering::Relaxed);
                    self.stats
                        .published_bytes
                        .fetch_add(outgoing.payload.len() as u64, Ordering::Relaxed);
                    outgoing.unacked.send_modify(|n| *n = n.saturating_sub(1));
                    debug!(msg_id = %outgoing.msg_id, "batch acknowledged");
                }
                Err(error) => {
                    self.stats.publish_errors.fetch_add(1, Ordering::Relaxed);
                    warn!(msg_id = %outgoing.msg_id, %error, "publish failed; will retry");
                    failed.push(outgoing);
                }
            }
        }
        failed
    }
}

//! Publishing spooled batches to JetStream: pipelined acks, `Nats-Msg-Id` dedupe, retries
//! until every batch is acknowledged.
//!
//! The publisher reads chunks of batches from the [`Spool`], publishes a chunk without
//! waiting, collects the acks, retries the failed ones with backoff, and only then commits
//! the chunk (which lets the spool delete delivered segments). While the spool is over its
//! byte cap, the oldest segment is dropped instead and the loss is reported per session.
//!
//! A batch the server can never take (larger than its `max_payload`: spooled before the
//! daemon knew the limit, or adopted from another daemon's spool) is moved aside
//! ([`Spool::set_aside`]) and replaced by a batch with the same sequence number that says
//! what was lost: nothing waits on it, and the loss is in the session's story.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use async_nats::jetstream;
use datacat_jetstream::{connect_options, publish_all, Outgoing, PublishFailure};
use datacat_protocol::record::DataDropped;
use datacat_protocol::time::now_ms;
use datacat_protocol::{encode_batch, Batch, Record};
use tokio::sync::{mpsc, watch, Notify};
use tracing::{debug, warn};

use crate::config::Config;
use crate::limits::SizeLimits;
use crate::spool::{Spool, SpoolEntry};

/// Most batches published before waiting for their acks.
const PIPELINE_DEPTH: usize = 256;
/// How often to look for spools of dead daemons to adopt.
const ADOPT_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Default)]
pub struct PublisherStats {
    pub published: AtomicU64,
    pub publish_errors: AtomicU64,
    pub published_bytes: AtomicU64,
    /// Batches the server refused for good (moved aside, replaced by a report of the loss).
    pub refused_batches: AtomicU64,
}

/// Batches of one session that were dropped.
#[derive(Debug)]
pub struct DropReport {
    pub session_id: String,
    /// The lowest sequence number dropped: a session this daemon does not know (adopted
    /// from a dead one) is told of the loss in a batch of this number.
    pub first_seq: u64,
    pub batches: u64,
    pub records: u64,
}

#[derive(Clone)]
pub struct Publisher {
    pub spool: Arc<Spool>,
    wake: Arc<Notify>,
    /// Per open session, its count of batches not yet acknowledged.
    unacked: Arc<Mutex<HashMap<String, watch::Sender<u64>>>>,
    pub stats: Arc<PublisherStats>,
    pub limits: Arc<SizeLimits>,
}

/// What publishing a chunk's pending batches came to.
struct Outcome {
    /// Not stored this time; tried again.
    failed: Vec<SpoolEntry>,
    /// Never to be stored as they are.
    refused: Vec<(SpoolEntry, PublishFailure)>,
}

impl Publisher {
    /// Connects (in the background: NATS may be down now and come up later) and starts the
    /// publishing task. Dropped batches are reported on the returned channel.
    pub async fn start(
        config: &Config,
        spool: Arc<Spool>,
    ) -> Result<(Self, mpsc::UnboundedReceiver<DropReport>)> {
        // NATS may be down now and come up later: connect in the background.
        let options = connect_options("datacat-daemon").retry_on_initial_connect();
        let jetstream = datacat_jetstream::connect(options, &config.nats.nats_url).await?;
        let publisher = Self {
            spool,
            wake: Arc::default(),
            unacked: Arc::default(),
            stats: Arc::default(),
            limits: Arc::new(SizeLimits::new(config.max_batch_bytes)),
        };
        let (drops, reports) = mpsc::unbounded_channel();
        tokio::spawn(
            publisher
                .clone()
                .run(jetstream, config.spool_max_bytes, drops),
        );
        Ok((publisher, reports))
    }

    /// Starts counting a session's unacknowledged batches; the receiver sees the count.
    pub fn track(&self, session_id: &str) -> watch::Receiver<u64> {
        let mut unacked = self.lock_unacked();
        unacked
            .entry(session_id.to_string())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    /// Dropped batches of a session no longer count as unacknowledged. Called after the
    /// session recorded the loss, so it cannot be forgotten before it does.
    pub fn release(&self, session_id: &str, batches: u64) {
        self.adjust(std::iter::once(session_id), |n| n.saturating_sub(batches));
    }

    pub fn forget(&self, session_id: &str) {
        self.lock_unacked().remove(session_id);
    }

    /// Spools batches (counted as unacknowledged until published or dropped) and wakes the
    /// publishing task.
    pub fn enqueue(&self, entries: &[SpoolEntry]) -> std::io::Result<()> {
        // Counted before they can be published: an ack must never arrive before its +1.
        self.adjust(entries.iter().map(|e| e.session_id.as_str()), |n| n + 1);
        if let Err(error) = self.spool.append(entries) {
            self.adjust(entries.iter().map(|e| e.session_id.as_str()), |n| {
                n.saturating_sub(1)
            });
            return Err(error);
        }
        self.wake.notify_one();
        Ok(())
    }

    fn adjust<'a>(&self, sessions: impl Iterator<Item = &'a str>, f: impl Fn(u64) -> u64) {
        let unacked = self.lock_unacked();
        for session_id in sessions {
            if let Some(count) = unacked.get(session_id) {
                count.send_modify(|n| *n = f(*n));
            }
        }
    }

    fn lock_unacked(&self) -> std::sync::MutexGuard<'_, HashMap<String, watch::Sender<u64>>> {
        self.unacked
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Waits until the spool is empty, or `timeout`. Returns whether it emptied.
    pub async fn drain(&self, timeout: Duration) -> bool {
        let wait = async {
            while self.spool.pending_bytes() > 0 {
                self.wake.notify_one();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::time::timeout(timeout, wait).await.is_ok()
    }

    async fn run(
        self,
        jetstream: jetstream::Context,
        cap: u64,
        drops: mpsc::UnboundedSender<DropReport>,
    ) {
        let mut last_adopt = tokio::time::Instant::now();
        loop {
            // The server's limit, as of the last (re)connection: it may change with a restart.
            self.limits
                .set_server_max_payload(jetstream.client().server_info().max_payload);
            if last_adopt.elapsed() >= ADOPT_INTERVAL {
                self.spool.adopt_orphans();
                last_adopt = tokio::time::Instant::now();
            }
            let Some(chunk) = self.spool.next_chunk(PIPELINE_DEPTH) else {
                let _ = tokio::time::timeout(ADOPT_INTERVAL, self.wake.notified()).await;
                continue;
            };
            let mut pending: Vec<SpoolEntry> = chunk.entries.clone();
            let mut backoff = Duration::from_millis(50);
            // Over the cap, the oldest segment goes at once (one per pass, until under it).
            let delivered = !self.spool.over(cap)
                && loop {
                    let outcome = self.publish(&jetstream, pending).await;
                    pending = outcome.failed;
                    for (entry, why) in outcome.refused {
                        pending.push(self.set_aside(entry, &why));
                    }
                    if pending.is_empty() {
                        break true;
                    }
                    if self.spool.over(cap) {
                        break false;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                };
            if delivered {
                self.spool.commit(&chunk);
                continue;
            }
            let unsent: std::collections::HashSet<(&str, u64)> = pending
                .iter()
                .map(|e| (e.session_id.as_str(), e.seq))
                .collect();
            let acked: std::collections::HashSet<(String, u64)> = chunk
                .entries
                .iter()
                .filter(|e| !unsent.contains(&(e.session_id.as_str(), e.seq)))
                .map(|e| (e.session_id.clone(), e.seq))
                .collect();
            let mut lost = self.spool.drop_oldest(chunk);
            lost.retain(|e| !acked.contains(&(e.session_id.clone(), e.seq)));
            let stats = &self.spool.stats;
            stats
                .dropped_batches
                .fetch_add(lost.len() as u64, Ordering::Relaxed);
            stats.dropped_records.fetch_add(
                lost.iter().map(|e| u64::from(e.records)).sum(),
                Ordering::Relaxed,
            );
            warn!(
                batches = lost.len(),
                "spool over its byte cap; dropped the oldest segment"
            );
            let mut per_session: BTreeMap<&str, DropReport> = BTreeMap::new();
            for entry in &lost {
                let report = per_session
                    .entry(&entry.session_id)
                    .or_insert_with(|| DropReport {
                        session_id: entry.session_id.clone(),
                        first_seq: entry.seq,
                        batches: 0,
                        records: 0,
                    });
                report.first_seq = report.first_seq.min(entry.seq);
                report.batches += 1;
                report.records += u64::from(entry.records);
            }
            for report in per_session.into_values() {
                let _ = drops.send(report);
            }
        }
    }

    /// Moves a batch the server refused aside and answers the batch that replaces it: the
    /// same session and sequence number, holding a report of what was lost.
    fn set_aside(&self, entry: SpoolEntry, why: &PublishFailure) -> SpoolEntry {
        self.stats.refused_batches.fetch_add(1, Ordering::Relaxed);
        let kept = match self.spool.set_aside(&entry) {
            Ok(path) => format!("kept in {}", path.display()),
            Err(error) => format!("not kept: {error}"),
        };
        warn!(session = %entry.session_id, seq = entry.seq, bytes = entry.payload.len(), %why, %kept,
            "NATS refused a batch for good; its loss is reported in the session instead");
        let report = Batch {
            session_id: entry.session_id.clone(),
            seq: entry.seq,
            records: vec![Record::Dropped(DataDropped {
                ts_ms: now_ms(),
                batches: 1,
                records: u64::from(entry.records),
                reason: format!(
                    "NATS refused a batch of {} bytes ({why}); the daemon {kept}",
                    entry.payload.len()
                ),
            })],
        };
        let payload = encode_batch(&report).expect("a loss report encodes");
        SpoolEntry {
            payload: payload.into(),
            records: 1,
            ..entry
        }
    }

    /// Publishes every entry, then awaits all acks.
    async fn publish(&self, jetstream: &jetstream::Context, entries: Vec<SpoolEntry>) -> Outcome {
        let messages: Vec<Outgoing> = entries
            .iter()
            .map(|entry| Outgoing::encoded(&entry.session_id, entry.seq, entry.payload.clone()))
            .collect();
        let results = publish_all(jetstream, &messages).await;

        let mut outcome = Outcome {
            failed: Vec::new(),
            refused: Vec::new(),
        };
        for (entry, result) in entries.into_iter().zip(results) {
            match result {
                Ok(()) => {
                    self.stats.published.fetch_add(1, Ordering::Relaxed);
                    self.stats
                        .published_bytes
                        .fetch_add(entry.payload.len() as u64, Ordering::Relaxed);
                    self.adjust(std::iter::once(entry.session_id.as_str()), |n| {
                        n.saturating_sub(1)
                    });
                    debug!(session = %entry.session_id, seq = entry.seq, "batch acknowledged");
                }
                Err(error) if error.refused => outcome.refused.push((entry, error)),
                Err(error) => {
                    self.stats.publish_errors.fetch_add(1, Ordering::Relaxed);
                    debug!(session = %entry.session_id, seq = entry.seq, %error, "publish failed; will retry");
                    outcome.failed.push(entry);
                }
            }
        }
        if !outcome.failed.is_empty() {
            warn!(
                failed = outcome.failed.len(),
                "publishing to JetStream failed; retrying (batches stay spooled)"
            );
        }
        outcome
    }
}

//! The sweeper: marks sessions `lost` when their daemon went silent, and drops partitions
//! past retention. Exactly one worker sweeps at a time: the holder of a lease in NATS KV,
//! taken and renewed by compare-and-set, and taken over by another worker when it expires.

use std::time::Duration;

use async_nats::jetstream::kv;
use datacat_protocol::subject;
use datacat_protocol::time::{iso_date, now_ms};
use datacat_protocol::Status;
use datacat_warehouse::{Maintenance, RowSet, Writer};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::apply::{lost_rows, mark_lost, Progress};

const LEASE_KEY: &str = "sweeper";
const RETENTION_EVERY: Duration = Duration::from_secs(3600);

#[derive(Serialize, Deserialize)]
struct Lease {
    owner: String,
    expires_ms: u64,
}

pub struct Sweeper {
    pub worker_id: String,
    pub nats: async_nats::Client,
    pub consumer: async_nats::jetstream::consumer::PullConsumer,
    /// The session stream: when a session's daemon last published.
    pub stream: async_nats::jetstream::stream::Stream,
    pub leases: kv::Store,
    pub progress: kv::Store,
    pub maintenance: Maintenance,
    pub writer: Writer,
    pub interval: Duration,
    pub lost_after: Duration,
    /// Days of data to keep (0: keep everything).
    pub retention_days: u64,
}

impl Sweeper {
    pub async fn run(self, shutdown: CancellationToken) {
        let mut last_retention: Option<tokio::time::Instant> = None;
        // Silence only means a vanished daemon when ingest could have heard it: NATS up and
        // the consumer caught up, continuously, for `lost_after`. After an outage or a
        // backlog the sessions' liveness records may still be on their way.
        let mut unsure_since = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.interval) => {}
                _ = shutdown.cancelled() => return,
            }
            if !self.caught_up().await {
                unsure_since = tokio::time::Instant::now();
            }
            match self.hold_lease().await {
                Ok(true) => {}
                Ok(false) => continue,
                Err(error) => {
                    warn!(%error, "sweeper lease unavailable");
                    continue;
                }
            }
            if unsure_since.elapsed() >= self.lost_after {
                if let Err(error) = self.sweep_lost().await {
                    warn!(%error, "marking lost sessions failed; will retry");
                }
            }
            if self.retention_days > 0
                && last_retention.is_none_or(|at| at.elapsed() >= RETENTION_EVERY)
            {
                let keep_from = iso_date(now_ms().saturating_sub(self.retention_days * 86_400_000));
                match self.maintenance.drop_partitions_before(&keep_from).await {
                    Ok(dropped) => {
                        info!(dropped, %keep_from, "retention applied");
                        last_retention = Some(tokio::time::Instant::now());
                    }
                    Err(error) => warn!(%error, "retention failed; will retry"),
                }
            }
        }
    }

    /// When the session's newest message reached JetStream (the stream keeps messages after
    /// they are applied, for its max age), if there is one.
    async fn last_published_ms(&self, session_id: &str) -> Option<u64> {
        let message = self
            .stream
            .get_last_raw_message_by_subject(&subject::session_subject(session_id))
            .await
            .ok()?;
        u64::try_from(message.time.unix_timestamp_nanos() / 1_000_000).ok()
    }

    /// NATS is connected and every message of the stream has been delivered to ingest.
    async fn caught_up(&self) -> bool {
        if self.nats.connection_state() != async_nats::connection::State::Connected {
            return false;
        }
        match self.consumer.get_info().await {
            Ok(info) => info.num_pending == 0,
            Err(_) => false,
        }
    }

    /// Takes or renews the lease; true while this worker holds it.
    async fn hold_lease(&self) -> anyhow::Result<bool> {
        let now = now_ms();
        let lease = Lease {
            owner: self.worker_id.clone(),
            expires_ms: now + 3 * self.interval.as_millis() as u64,
        };
        let value: bytes::Bytes = serde_json::to_vec(&lease)?.into();
        match self.leases.entry(LEASE_KEY).await? {
            Some(entry) if entry.operation == kv::Operation::Put => {
                let current: Lease = serde_json::from_slice(&entry.value)?;
                if current.owner != self.worker_id && current.expires_ms > now {
                    return Ok(false);
                }
                Ok(self
                    .leases
                    .update(LEASE_KEY, value, entry.revision)
                    .await
                    .is_ok())
            }
            _ => Ok(self.leases.create(LEASE_KEY, value).await.is_ok()),
        }
    }

    /// Marks `lost` every open session ingest has not heard of for `lost_after`. The
    /// progress record decides (ClickHouse may lag behind it), changed by compare-and-set so
    /// a batch applied meanwhile wins.
    async fn sweep_lost(&self) -> anyhow::Result<()> {
        let now = now_ms();
        let cutoff = now.saturating_sub(self.lost_after.as_millis() as u64);
        let candidates = self.maintenance.stale_sessions(cutoff, 1000).await?;
        // One insert for the whole sweep (18.16 makes a part per insert). If it fails, the
        // sessions are lost in KV but not visible, and the next sweep writes them again.
        let mut rows = RowSet::default();
        for session_id in candidates {
            let key = subject::progress_key(&session_id);
            let Some(entry) = self.progress.entry(key.clone()).await? else {
                continue;
            };
            // One record that does not read must not stop the sweep for every session.
            let mut progress: Progress = match serde_json::from_slice(&entry.value) {
                Ok(progress) => progress,
                Err(error) => {
                    warn!(%session_id, %error, "progress record does not read; not swept");
                    continue;
                }
            };
            if progress.status == Status::Lost {
                // Recorded in KV but not visible: an earlier insert failed. Write it again.
                lost_rows(&mut progress, &session_id, &mut rows);
                continue;
            }
            // The daemon's last word is its newest message in the stream, applied or not:
            // a batch still on its way through ingest (held by a worker that died, waiting
            // out the ack wait) is word from a daemon that is alive.
            let heard_ms = progress
                .seen_ms
                .max(self.last_published_ms(&session_id).await.unwrap_or(0));
            if heard_ms >= cutoff {
                continue;
            }
            let silent_s = now.saturating_sub(heard_ms) / 1000;
            let reason = format!("no word from the session's daemon for {silent_s} s");
            let mut session_rows = RowSet::default();
            if !mark_lost(&mut progress, &session_id, now, &reason, &mut session_rows) {
                continue;
            }
            let value = serde_json::to_vec(&progress)?;
            if self
                .progress
                .update(&key, value.into(), entry.revision)
                .await
                .is_err()
            {
                debug!(%session_id, "session moved on while being swept; not lost");
                continue;
            }
            rows.append(session_rows);
            warn!(%session_id, silent_s, "session lost");
        }
        if !rows.is_empty() {
            self.writer.insert(&rows).await?;
        }
        Ok(())
    }
}

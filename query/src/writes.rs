//! Direct writes: sessions of clients without a daemon, published to JetStream in the same
//! batches a daemon sends, so ingest treats them alike.
//!
//! A session written here is numbered here: its next batch sequence lives in NATS KV and is
//! taken by compare-and-set, so any number of query replicas number one session without
//! gaps or repeats. Sessions a daemon writes are numbered by that daemon and refused here.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use datacat_jetstream::{
    batch_room, connect_options, publish_with_retry, Outgoing, Retry, HEADROOM,
};
use datacat_protocol::codec::encoded_size;
use datacat_protocol::codec::split_by_size;
use datacat_protocol::record::Record;
use datacat_protocol::subject::{direct_write_key, DIRECT_WRITES_BUCKET};
use datacat_protocol::Batch;
use tokio::sync::OnceCell;
use tracing::{info, warn};

use crate::error::ApiError;

/// Attempts at taking a sequence number when replicas race for the same session.
const SEQUENCE_ATTEMPTS: usize = 50;

/// Publishing a direct write: five tries in about 1.5 s.
const PUBLISH_RETRY: Retry = Retry {
    attempts: 5,
    first_delay: Duration::from_millis(100),
    max_delay: Duration::from_millis(800),
};

struct Connected {
    jetstream: jetstream::Context,
    sequences: kv::Store,
}

/// Publishes direct writes; connects to NATS in the background so reads never wait for it.
#[derive(Clone, Default)]
pub struct DirectWriter {
    connected: Arc<OnceCell<Connected>>,
}

fn unavailable(what: impl std::fmt::Display) -> ApiError {
    ApiError::Unavailable(format!("direct writes are unavailable: {what}"))
}

impl DirectWriter {
    /// Starts connecting to `nats_url`; writes answer 503 until it is done (and until ingest
    /// has created the direct-writes bucket).
    pub fn connect_in_background(nats_url: String) -> Self {
        let writer = DirectWriter::default();
        let cell = writer.connected.clone();
        tokio::spawn(async move {
            let mut delay = Duration::from_millis(200);
            loop {
                match connect(&nats_url).await {
                    Ok(connected) => {
                        let _ = cell.set(connected);
                        let nats = datacat_jetstream::redacted_url(&nats_url);
                        info!(%nats, "direct writes ready");
                        return;
                    }
                    Err(error) => warn!(%error, "direct writes: NATS not ready; retrying"),
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(1));
            }
        });
        writer
    }

    /// The most bytes of records one batch may hold, as the connected server says (NATS's
    /// default until connected).
    pub fn batch_room(&self) -> usize {
        let max_payload = self
            .connected
            .get()
            .map(|c| c.jetstream.client().server_info().max_payload)
            .unwrap_or_default();
        batch_room(max_payload)
    }

    /// Refuses records that could never be published as one batch, before a sequence number
    /// is taken for them (a number taken must be published, or ingest waits on it).
    pub fn check_size(&self, records: &[Record]) -> Result<(), ApiError> {
        let (size, room) = (encoded_size(records), self.batch_room());
        if size <= room {
            return Ok(());
        }
        Err(ApiError::PayloadTooLarge(format!(
            "this write is {size} bytes encoded; the largest batch NATS takes is {room} bytes \
             (its max_payload less {HEADROOM} bytes for headers)"
        )))
    }

    /// Appends records as as many batches as their size needs (each under
    /// [`Self::batch_room`]); returns the last batch's sequence number.
    pub async fn append_all(
        &self,
        session_id: &str,
        records: Vec<Record>,
    ) -> Result<u64, ApiError> {
        let mut last = None;
        for group in split_by_size(records, self.batch_room()) {
            last = Some(self.append(session_id, group).await?);
        }
        last.ok_or_else(|| ApiError::BadRequest("nothing to write".into()))
    }

    fn connected(&self) -> Result<&Connected, ApiError> {
        self.connected
            .get()
            .ok_or_else(|| unavailable("not connected to NATS yet"))
    }

    /// Starts a session: its first batch (seq 0) holds `records` (a start record first).
    /// Creating a session that exists publishes its first batch again, which JetStream and
    /// ingest recognise as a duplicate: a client that retries a registration whose answer
    /// it never got (a timeout) gets the same session, not an error.
    pub async fn create(&self, session_id: &str, records: Vec<Record>) -> Result<(), ApiError> {
        self.check_size(&records)?;
        let connected = self.connected()?;
        match connected
            .sequences
            .create(direct_write_key(session_id), "1".into())
            .await
        {
            Ok(_) => {}
            Err(error) if error.kind() == kv::CreateErrorKind::AlreadyExists => {}
            Err(error) => return Err(unavailable(error)),
        }
        publish(connected, session_id, 0, records).await
    }

    /// Appends `records` to a session created by [`DirectWriter::create`] as its next batch;
    /// returns the batch's sequence number.
    pub async fn append(&self, session_id: &str, records: Vec<Record>) -> Result<u64, ApiError> {
        // Ids this service hands out are UUIDs; anything else cannot be one of its sessions
        // (and may not even be a valid KV key or subject token).
        let plausible = !session_id.is_empty()
            && session_id.len() <= 128
            && session_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !plausible {
            return Err(not_created(session_id));
        }
        self.check_size(&records)?;
        let connected = self.connected()?;
        let key = direct_write_key(session_id);
        for _ in 0..SEQUENCE_ATTEMPTS {
            let entry = connected.sequences.entry(&key).await.map_err(unavailable)?;
            let Some(entry) = entry.filter(|e| e.operation == kv::Operation::Put) else {
                return Err(not_created(session_id));
            };
            let seq: u64 = std::str::from_utf8(&entry.value)
                .ok()
                .and_then(|text| text.parse().ok())
                .ok_or_else(|| {
                    unavailable(format!("sequence record of {session_id} is corrupt"))
                })?;
            let next = (seq + 1).to_string();
            match connected
                .sequences
                .update(&key, next.into(), entry.revision)
                .await
            {
                Ok(_) => {
                    publish(connected, session_id, seq, records).await?;
                    return Ok(seq);
                }
                // Another replica took this number: read again.
                Err(error) if error.kind() == kv::UpdateErrorKind::WrongLastRevision => continue,
                Err(error) => return Err(unavailable(error)),
            }
        }
        Err(unavailable(format!(
            "too many concurrent writes to session {session_id}"
        )))
    }
}

fn not_created(session_id: &str) -> ApiError {
    ApiError::NotFound(format!(
        "session {session_id:?} was not created by a direct write (POST /api/sessions); \
         a daemon's sessions are written through that daemon"
    ))
}

async fn connect(nats_url: &str) -> Result<Connected, String> {
    let jetstream = datacat_jetstream::connect(connect_options("datacat-query"), nats_url)
        .await
        .map_err(|e| e.to_string())?;
    let sequences = jetstream
        .get_key_value(DIRECT_WRITES_BUCKET)
        .await
        .map_err(|e| {
            format!("the {DIRECT_WRITES_BUCKET} bucket (datacat-ingest creates it): {e}")
        })?;
    Ok(Connected {
        jetstream,
        sequences,
    })
}

/// Publishes one batch and waits for JetStream to store it (a 200 means it is durable).
async fn publish(
    connected: &Connected,
    session_id: &str,
    seq: u64,
    records: Vec<Record>,
) -> Result<(), ApiError> {
    let batch = Batch {
        session_id: session_id.to_string(),
        seq,
        records,
    };
    let message = Outgoing::batch(&batch).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    // Once a sequence number is taken, the batch must get out or ingest waits for it (and
    // finally records a gap): retry a few times before giving up.
    publish_with_retry(&connected.jetstream, vec![message], PUBLISH_RETRY)
        .await
        .map_err(|failed| match failed.into_iter().next() {
            Some((_, error)) if error.refused => {
                ApiError::PayloadTooLarge(format!("NATS refused the write: {error}"))
            }
            Some((_, error)) => unavailable(format!("publishing failed: {error}")),
            None => unavailable("publishing failed"),
        })
}

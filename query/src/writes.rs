//! Direct writes: sessions of clients without a daemon, published to JetStream in the same
//! batches a daemon sends, so ingest treats them alike.
//!
//! A session written here is numbered here: its next batch sequence lives in NATS KV and is
//! taken by compare-and-set, so any number of query replicas number one session without
//! gaps or repeats. Sessions a daemon writes are numbered by that daemon and refused here.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, kv, message::PublishMessage};
use datacat_protocol::record::Record;
use datacat_protocol::subject::{direct_write_key, session_subject, DIRECT_WRITES_BUCKET};
use datacat_protocol::{encode_batch, Batch};
use tokio::sync::OnceCell;
use tracing::{info, warn};

use crate::error::ApiError;

/// How long a directly written session may stay silent and still be written to.
const SESSION_KEY_MAX_AGE: Duration = Duration::from_secs(30 * 86_400);

/// Attempts at taking a sequence number when replicas race for the same session.
const SEQUENCE_ATTEMPTS: usize = 50;

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
    /// Starts connecting to `nats_url`; writes answer 503 until it is done.
    pub fn connect_in_background(nats_url: String, replicas: usize) -> Self {
        let writer = DirectWriter::default();
        let cell = writer.connected.clone();
        tokio::spawn(async move {
            let mut delay = Duration::from_millis(200);
            loop {
                match connect(&nats_url, replicas).await {
                    Ok(connected) => {
                        let _ = cell.set(connected);
                        info!(%nats_url, "direct writes ready");
                        return;
                    }
                    Err(error) => warn!(%error, "direct writes: NATS not ready; retrying"),
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        });
        writer
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

async fn connect(nats_url: &str, replicas: usize) -> Result<Connected, String> {
    let client = async_nats::ConnectOptions::new()
        .name("datacat-query")
        .connection_timeout(Duration::from_secs(5))
        .connect(datacat_protocol::subject::nats_servers(nats_url))
        .await
        .map_err(|e| e.to_string())?;
    let jetstream = jetstream::new(client);
    let sequences = match jetstream.get_key_value(DIRECT_WRITES_BUCKET).await {
        Ok(store) => store,
        Err(_) => jetstream
            .create_key_value(kv::Config {
                bucket: DIRECT_WRITES_BUCKET.to_string(),
                history: 1,
                max_age: SESSION_KEY_MAX_AGE,
                storage: jetstream::stream::StorageType::File,
                num_replicas: replicas,
                ..Default::default()
            })
            .await
            .map_err(|e| e.to_string())?,
    };
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
    let payload = encode_batch(&batch).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let message = PublishMessage::build()
        .payload(payload.into())
        .message_id(format!("{session_id}:{seq}"));
    // Once a sequence number is taken, the batch must get out or ingest waits for it (and
    // finally records a gap): retry a few times before giving up.
    let mut last_error = String::new();
    for attempt in 0..5u32 {
        let sent = connected
            .jetstream
            .send_publish(session_subject(session_id), message.clone())
            .await;
        let stored = match sent {
            Ok(ack) => ack.await.map(drop).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match stored {
            Ok(()) => return Ok(()),
            Err(error) => last_error = error,
        }
        tokio::time::sleep(Duration::from_millis(100 * 2u64.pow(attempt))).await;
    }
    Err(unavailable(format!("publishing failed: {last_error}")))
}

//! The unit the daemon publishes and ingest consumes.

use serde::{Deserialize, Serialize};

use crate::record::Record;

/// Records of one session, numbered so ingest can apply them in order exactly once.
///
/// `seq` starts at 0 for a session and grows by one per batch; the pair
/// (`session_id`, `seq`) identifies a batch everywhere (it is also the `Nats-Msg-Id`:
/// `datacat-jetstream`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    pub session_id: String,
    pub seq: u64,
    pub records: Vec<Record>,
}

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

/// Splits records, in order, into groups whose encoded size stays under `max_bytes` (a single
/// record larger than that is a group of its own): the records of one batch each.
pub fn split_by_size(records: Vec<Record>, max_bytes: usize) -> Vec<Vec<Record>> {
    let mut groups = Vec::new();
    let mut current = Vec::new();
    let mut current_bytes = 0;
    for record in records {
        let size = crate::codec::encoded_size(&record);
        if !current.is_empty() && current_bytes + size > max_bytes {
            groups.push(std::mem::take(&mut current));
            current_bytes = 0;
        }
        current_bytes += size;
        current.push(record);
    }
    if !current.is_empty() {
        groups.push(current);
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Heartbeat;

    #[test]
    fn a_split_keeps_order_and_respects_the_limit() {
        let records: Vec<Record> = (0..100)
            .map(|i| Record::Heartbeat(Heartbeat { ts_ms: i }))
            .collect();
        let one = crate::codec::encoded_size(&records[0]);
        let groups = split_by_size(records.clone(), one * 10);
        assert!(groups.iter().all(|g| g.len() <= 10));
        assert_eq!(groups.concat(), records);
        assert_eq!(split_by_size(records.clone(), usize::MAX).len(), 1);
        assert_eq!(split_by_size(Vec::new(), 10).len(), 0);
    }
}

//! Names shared by everything that talks to NATS.

/// The JetStream stream that holds session batches.
pub const STREAM: &str = "DATACAT";
/// Subjects of [`STREAM`]; one subject per session.
pub const SESSION_SUBJECTS: &str = "datacat.session.>";
/// The durable pull consumer shared by all ingest workers.
pub const INGEST_CONSUMER: &str = "ingest";
/// The KV bucket where ingest keeps each session's merge progress.
pub const PROGRESS_BUCKET: &str = "datacat_progress";
/// The KV bucket of leases (which worker runs the single-instance sweeper).
pub const LEASE_BUCKET: &str = "datacat_leases";
/// The stream that keeps batches ingest could not use, with the reason.
/// NATS KV bucket holding the next batch sequence of sessions written directly through the
/// query service (no daemon), so replicas of it number a session's batches without gaps.
/// Ingest creates it with the other buckets.
pub const DIRECT_WRITES_BUCKET: &str = "datacat_direct_writes";
/// How long a directly written session may stay silent and still be written to.
pub const DIRECT_WRITES_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(30 * 86_400);
/// Its key for a session.
pub fn direct_write_key(session_id: &str) -> String {
    format!("w.{session_id}")
}

pub const DEAD_LETTER_STREAM: &str = "DATACAT_DEAD";
pub const DEAD_LETTER_SUBJECT: &str = "datacat.dead";
/// The header that carries why a message was dead-lettered.
pub const DEAD_LETTER_REASON_HEADER: &str = "Datacat-Error";

/// The subject a session's batches are published on.
pub fn session_subject(session_id: &str) -> String {
    format!("datacat.session.{session_id}")
}

/// The KV key of a session's merge progress (KV keys allow `-` and alphanumerics).
pub fn progress_key(session_id: &str) -> String {
    format!("s.{session_id}")
}

/// The servers of a NATS URL setting: one URL, or several separated by commas (the nodes
/// of a cluster; a client connects to any and fails over to the others).
pub fn nats_servers(urls: &str) -> Vec<&str> {
    urls.split(',')
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .collect()
}

#[cfg(test)]
mod server_list_tests {
    #[test]
    fn comma_separated_servers_are_split() {
        assert_eq!(
            super::nats_servers("nats://a:1, nats://b:2,,nats://c:3"),
            ["nats://a:1", "nats://b:2", "nats://c:3"]
        );
        assert_eq!(super::nats_servers("nats://a:1"), ["nats://a:1"]);
    }
}

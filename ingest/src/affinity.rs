//! Session affinity: every session belongs to one live worker, which applies all its batches.
//!
//! All workers share one durable pull consumer, so JetStream hands a session's consecutive
//! batches to different workers: on a deep backlog each fetched chunk holds the successors of
//! batches in another worker's chunk. Waiting for each other's rounds there made several
//! workers slower than one (held batches, KV reads, NAKs that fed on themselves). So a worker
//! that fetches a batch of a session it does not own forwards the message over core NATS to
//! the owner's inbox: the payload, its subject, and the JetStream subject the owner acks it
//! on. Only the owner acks, and only after its rows are in ClickHouse.
//!
//! Owners are chosen by rendezvous hashing of the session's subject over the live workers,
//! which each worker learns from heartbeats on [`MEMBERS_SUBJECT`]. A worker joining or
//! leaving moves only its own share of sessions. While views differ (a heartbeat late, a
//! worker killed), two workers may apply batches of one session; the compare-and-set on the
//! session's progress record still decides, so this costs a redelivery, never a wrong result.
//! A forwarded message is never forwarded again: the receiver applies it even when its view
//! names another owner, so messages cannot bounce between disagreeing workers.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, Message};
use async_nats::{HeaderMap, Subject};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::inbox::InboxSender;
use crate::message_budget::MessageBudget;

/// The core NATS subject heartbeats travel on (outside every stream).
pub const MEMBERS_SUBJECT: &str = "datacat.ingest.members";

/// Each worker's inbox for forwarded messages.
pub fn inbox_subject(worker: u64) -> String {
    format!("datacat.ingest.forward.{worker:016x}")
}

/// The headers carrying a forwarded message's original subject and the JetStream subject it
/// is acknowledged on (NATS refuses a publish whose own reply subject is a JetStream ack).
const SUBJECT_HEADER: &str = "Datacat-Subject";
const ACK_HEADER: &str = "Datacat-Ack";

const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);

/// A worker not heard from for this long is no longer an owner (its unacknowledged messages
/// come back after the ack wait, to the new owners).
const MEMBER_TIMEOUT: Duration = Duration::from_millis(3500);

/// How long a starting worker listens for heartbeats before it fetches: the others answer a
/// joining worker's first heartbeat at once.
const SETTLE: Duration = Duration::from_millis(300);

const JOINING: u8 = b'J';
const ALIVE: u8 = b'A';
const LEAVING: u8 = b'L';

/// The live workers as this one sees them.
pub struct Members {
    /// This worker's id (random per process).
    pub id: u64,
    /// Sorted ids of the live workers, this one included.
    live: RwLock<Arc<Vec<u64>>>,
    /// When each other worker was last heard from.
    seen: Mutex<HashMap<u64, Instant>>,
}

impl Default for Members {
    fn default() -> Self {
        let id = RandomState::new().build_hasher().finish();
        Self {
            id,
            live: RwLock::new(Arc::new(vec![id])),
            seen: Mutex::default(),
        }
    }
}

impl Members {
    /// The live workers, this one included.
    pub fn live(&self) -> Arc<Vec<u64>> {
        self.live
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Records a heartbeat (or a goodbye) of another worker; true when the live set changed.
    fn heard(&self, worker: u64, kind: u8) -> bool {
        if worker == self.id {
            return false;
        }
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let changed = if kind == LEAVING {
            seen.remove(&worker).is_some()
        } else {
            seen.insert(worker, Instant::now()).is_none()
        };
        if changed {
            self.publish_live(&seen);
        }
        changed
    }

    /// Forgets workers not heard from within [`MEMBER_TIMEOUT`]; true when any went.
    fn expire(&self) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let before = seen.len();
        seen.retain(|_, at| at.elapsed() < MEMBER_TIMEOUT);
        let changed = seen.len() != before;
        if changed {
            self.publish_live(&seen);
        }
        changed
    }

    fn publish_live(&self, seen: &HashMap<u64, Instant>) {
        let mut live: Vec<u64> = seen.keys().copied().chain([self.id]).collect();
        live.sort_unstable();
        info!(workers = live.len(), "ingest workers changed");
        *self.live.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(live);
    }

    /// Sends heartbeats and takes in the others' until shutdown, then says goodbye.
    pub async fn run(
        self: Arc<Self>,
        client: async_nats::Client,
        shutdown: CancellationToken,
    ) -> Result<(), async_nats::SubscribeError> {
        let mut heartbeats = client.subscribe(MEMBERS_SUBJECT).await?;
        self.announce(&client, JOINING).await;
        let mut every = tokio::time::interval(HEARTBEAT_EVERY);
        loop {
            tokio::select! {
                message = heartbeats.next() => {
                    let Some(message) = message else { break };
                    let Some((worker, kind)) = decode_heartbeat(&message.payload) else {
                        warn!("ignoring a malformed heartbeat");
                        continue;
                    };
                    // A joining worker learns the others at once, not after a second.
                    if self.heard(worker, kind) && kind == JOINING {
                        self.announce(&client, ALIVE).await;
                    }
                }
                _ = every.tick() => {
                    self.expire();
                    self.announce(&client, ALIVE).await;
                }
                _ = shutdown.cancelled() => break,
            }
        }
        self.announce(&client, LEAVING).await;
        let _ = client.flush().await;
        Ok(())
    }

    /// Waits for the other workers' answers to this one's first heartbeat.
    pub async fn settle(&self) {
        tokio::time::sleep(SETTLE).await;
    }

    async fn announce(&self, client: &async_nats::Client, kind: u8) {
        let mut payload = Vec::with_capacity(9);
        payload.push(kind);
        payload.extend_from_slice(&self.id.to_be_bytes());
        if let Err(error) = client.publish(MEMBERS_SUBJECT, payload.into()).await {
            debug!(%error, "heartbeat not sent");
        }
    }
}

fn decode_heartbeat(payload: &[u8]) -> Option<(u64, u8)> {
    let (&kind, id) = payload.split_first()?;
    let id: [u8; 8] = id.try_into().ok()?;
    matches!(kind, JOINING | ALIVE | LEAVING).then_some((u64::from_be_bytes(id), kind))
}

/// The owner of the session published on `subject` among `live` (sorted, not empty): the
/// worker whose hash with the subject is highest. Stable across processes and versions.
pub fn owner(subject: &str, live: &[u64]) -> u64 {
    let key = fnv1a(subject.as_bytes());
    live.iter()
        .copied()
        .max_by_key(|&worker| (mix(key ^ mix(worker)), worker))
        .expect("the live set holds this worker")
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// splitmix64's finaliser: spreads every input bit over the output.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Forwards the messages of sessions other workers own to them; returns this worker's.
pub async fn forward_foreign(
    members: &Members,
    client: &async_nats::Client,
    messages: Vec<Message>,
    forwarded: &AtomicU64,
) -> Vec<Message> {
    let live = members.live();
    if live.len() == 1 {
        return messages;
    }
    let mut mine = Vec::with_capacity(messages.len() / live.len() + 16);
    for message in messages {
        let owner = owner(message.subject.as_str(), &live);
        let Some(reply) = message.reply.clone().filter(|_| owner != members.id) else {
            mine.push(message);
            continue;
        };
        let mut headers = HeaderMap::new();
        headers.insert(SUBJECT_HEADER, message.subject.as_str());
        headers.insert(ACK_HEADER, reply.as_str());
        let sent = client
            .publish_with_headers(inbox_subject(owner), headers, message.payload.clone())
            .await;
        match sent {
            Ok(()) => {
                forwarded.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => {
                debug!(%error, "forwarding failed; applying here");
                mine.push(message);
            }
        }
    }
    mine
}

/// Receives messages other workers forwarded to this one and passes them on as JetStream
/// messages (acked through `jetstream` on their original reply subject), until shutdown.
pub async fn receive_forwarded(
    mut subscriber: async_nats::Subscriber,
    jetstream: jetstream::Context,
    inbox: InboxSender,
    received: &AtomicU64,
    budget: &Arc<MessageBudget>,
    shutdown: CancellationToken,
) {
    let unplanned = loop {
        // Within the budget, as fetching is; meanwhile forwarded messages queue in the
        // subscription (and, past its capacity, are dropped and come back after the ack wait).
        budget.wait_for_room(&shutdown).await;
        let first = tokio::select! {
            message = subscriber.next() => message,
            _ = shutdown.cancelled() => break Vec::new(),
        };
        let Some(first) = first else { return };
        // Whatever else has arrived goes along in the same hand-over.
        let messages = arrived(&mut subscriber, Some(first), &jetstream, budget);
        received.fetch_add(messages.len() as u64, Ordering::Relaxed);
        if let Err(messages) = inbox.send(messages).await {
            break messages;
        }
    };
    // Stopping: back to the stream at once, for the sessions' next owners (the others stop
    // forwarding here when they hear this worker leave).
    let left = arrived(&mut subscriber, None, &jetstream, budget);
    crate::ack::nak_all(unplanned.into_iter().chain(left).collect(), Duration::ZERO).await;
}

/// `first` and the forwarded messages already waiting behind it (a few thousand at most),
/// charged to the budget (this worker holds them now; their sender no longer does).
fn arrived(
    subscriber: &mut async_nats::Subscriber,
    first: Option<async_nats::Message>,
    jetstream: &jetstream::Context,
    budget: &Arc<MessageBudget>,
) -> Vec<Message> {
    let mut messages = Vec::new();
    let mut next = first.or_else(|| futures::FutureExt::now_or_never(subscriber.next()).flatten());
    while let Some(message) = next {
        match rebuild(message, jetstream) {
            Some(mut message) => {
                budget.charge(&mut message.message);
                messages.push(message);
            }
            None => warn!("ignoring a forwarded message without its subject or ack subject"),
        }
        if messages.len() >= 4096 || !budget.has_room() {
            break;
        }
        next = futures::FutureExt::now_or_never(subscriber.next()).flatten();
    }
    messages
}

/// A forwarded core message as the JetStream message it was delivered as.
fn rebuild(message: async_nats::Message, jetstream: &jetstream::Context) -> Option<Message> {
    let headers = message.headers.as_ref()?;
    let subject = headers.get(SUBJECT_HEADER)?.as_str();
    let reply = headers.get(ACK_HEADER)?.as_str();
    if !reply.starts_with("$JS.ACK.") {
        return None;
    }
    Some(Message {
        message: async_nats::Message {
            subject: Subject::from(subject),
            reply: Some(Subject::from(reply)),
            payload: message.payload,
            headers: None,
            status: None,
            description: None,
            length: message.length,
        },
        context: jetstream.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subjects(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("datacat.session.s-{i:06}"))
            .collect()
    }

    #[test]
    fn every_worker_owns_a_fair_share() {
        let live = vec![11, 22, 33];
        let mut counts = HashMap::new();
        for subject in subjects(30_000) {
            *counts.entry(owner(&subject, &live)).or_insert(0) += 1;
        }
        for worker in &live {
            let share = counts[worker];
            assert!((9_000..11_000).contains(&share), "{worker} owns {share}");
        }
    }

    #[test]
    fn a_joining_or_leaving_worker_moves_only_its_own_sessions() {
        let (before, after) = (vec![11, 22, 33], vec![11, 22, 33, 44]);
        for subject in subjects(5_000) {
            let (old, new) = (owner(&subject, &before), owner(&subject, &after));
            assert!(
                old == new || new == 44,
                "{subject} moved from {old} to {new}"
            );
        }
    }

    #[test]
    fn owners_are_stable_and_one_worker_owns_everything() {
        assert_eq!(owner("datacat.session.a", &[5]), 5);
        let live = vec![1, 2, 3];
        let first = owner("datacat.session.a", &live);
        assert!((0..10).all(|_| owner("datacat.session.a", &live) == first));
    }

    #[test]
    fn heartbeats_join_and_leave() {
        let members = Members::default();
        assert!(members.heard(7, ALIVE));
        assert!(!members.heard(7, ALIVE), "already known");
        assert!(!members.heard(members.id, ALIVE), "itself");
        let mut expected = vec![7, members.id];
        expected.sort_unstable();
        assert_eq!(*members.live(), expected);
        assert!(members.heard(7, LEAVING));
        assert_eq!(*members.live(), vec![members.id]);
        assert_eq!(decode_heartbeat(&[b'X', 0, 0, 0, 0, 0, 0, 0, 1]), None);
        assert_eq!(decode_heartbeat(&[ALIVE, 0, 0]), None);
        assert_eq!(
            decode_heartbeat(&[ALIVE, 0, 0, 0, 0, 0, 0, 0, 9]),
            Some((9, ALIVE))
        );
    }

    #[test]
    fn silent_workers_expire() {
        let members = Members::default();
        members.heard(7, ALIVE);
        members
            .seen
            .lock()
            .unwrap()
            .insert(7, Instant::now() - MEMBER_TIMEOUT);
        assert!(members.expire());
        assert_eq!(*members.live(), vec![members.id]);
    }
}

//! The hand-over of messages from the fetcher, and from other workers forwarding, to the
//! planning loop. Messages wait here while planning waits for ClickHouse (a full group waits
//! for the previous insert), and in the senders while the inbox is full. Their ack deadlines
//! are extended meanwhile, as for every message a worker keeps: otherwise a slow insert got
//! them redelivered, to be skipped as duplicates once the first copy was committed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{AckKind, Message};
use async_nats::{Client, Subject};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// A bounded inbox of message chunks whose waiting messages are kept alive every `every`
/// (see `group::keep_alive_every`), by publishing through `client`.
pub(crate) fn channel(chunks: usize, client: Client, every: Duration) -> (InboxSender, Inbox) {
    let (sender, receiver) = mpsc::channel(chunks);
    let waiting = Arc::new(Waiting::default());
    let keep_alive = tokio::spawn(keep_alive(waiting.clone(), client, every));
    (
        InboxSender {
            sender,
            waiting: waiting.clone(),
        },
        Inbox {
            receiver,
            waiting,
            keep_alive,
        },
    )
}

/// Hands chunks of messages to the planning loop.
#[derive(Clone)]
pub(crate) struct InboxSender {
    sender: mpsc::Sender<(u64, Vec<Message>)>,
    waiting: Arc<Waiting>,
}

impl InboxSender {
    /// Waits for room, the messages kept alive from now on; gives them back if the inbox
    /// is closed.
    pub(crate) async fn send(&self, messages: Vec<Message>) -> Result<(), Vec<Message>> {
        let id = self.waiting.add(&messages);
        match self.sender.send((id, messages)).await {
            Ok(()) => Ok(()),
            Err(mpsc::error::SendError((id, messages))) => {
                self.waiting.remove(id);
                Err(messages)
            }
        }
    }
}

/// The planning loop's end.
pub(crate) struct Inbox {
    receiver: mpsc::Receiver<(u64, Vec<Message>)>,
    waiting: Arc<Waiting>,
    keep_alive: JoinHandle<()>,
}

impl Inbox {
    /// The next chunk, which the caller keeps alive from now on; `None` once closed and
    /// empty.
    pub(crate) async fn recv(&mut self) -> Option<Vec<Message>> {
        let (id, messages) = self.receiver.recv().await?;
        self.waiting.remove(id);
        Some(messages)
    }

    /// Takes no more; what was sent can still be received.
    pub(crate) fn close(&mut self) {
        self.receiver.close();
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        self.keep_alive.abort();
    }
}

/// The reply subjects of the chunks sent and not yet received, and when each was last
/// kept alive.
#[derive(Default)]
struct Waiting {
    chunks: Mutex<HashMap<u64, (Instant, Vec<Subject>)>>,
    next_id: AtomicU64,
}

impl Waiting {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, (Instant, Vec<Subject>)>> {
        self.chunks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn add(&self, messages: &[Message]) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let replies = messages.iter().filter_map(|m| m.reply.clone()).collect();
        self.lock().insert(id, (Instant::now(), replies));
        id
    }

    fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// The reply subjects of the chunks not kept alive for `since` or longer, whose clocks
    /// start again.
    fn due(&self, since: Duration) -> Vec<Subject> {
        let mut due = Vec::new();
        for (last, replies) in self.lock().values_mut() {
            if last.elapsed() >= since {
                *last = Instant::now();
                due.extend(replies.iter().cloned());
            }
        }
        due
    }
}

/// Every `every`, extends the ack deadline of the messages that have waited half of it
/// since arriving or since their last extension: none waits longer than one and a half
/// `every` (at most half the ack wait) without one.
async fn keep_alive(waiting: Arc<Waiting>, client: Client, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        for reply in waiting.due(every / 2) {
            // What `Message::ack_with(AckKind::Progress)` sends (`extend_ack_deadlines`), from
            // the reply subject alone: a waiting message is not cloned to be kept alive. A
            // failed extension only risks a redelivery, which is skipped as a duplicate.
            let _ = client.publish(reply, AckKind::Progress.into()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_chunks_waiting_long_enough_are_due_and_their_clocks_restart() {
        let waiting = Waiting::default();
        let subject = |s: &str| Subject::from(s);
        waiting.lock().insert(
            7,
            (
                Instant::now() - Duration::from_secs(2),
                vec![subject("$JS.ACK.a"), subject("$JS.ACK.b")],
            ),
        );
        waiting
            .lock()
            .insert(8, (Instant::now(), vec![subject("$JS.ACK.c")]));
        let due = waiting.due(Duration::from_secs(1));
        assert_eq!(due, vec![subject("$JS.ACK.a"), subject("$JS.ACK.b")]);
        assert!(waiting.due(Duration::from_secs(1)).is_empty());
        waiting.remove(7);
        waiting.remove(8);
        assert!(waiting.lock().is_empty());
    }
}

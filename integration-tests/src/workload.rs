//! A recorded workload: deterministic sessions of batches, published straight to JetStream
//! as daemons would, with the outcome each session must have.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;
use async_nats::jetstream;
use datacat_jetstream::{msg_id, publish_all, Outgoing};
use datacat_protocol::record::{
    Event, Heartbeat, Level, Metric, SessionEnd, SessionStart, StateUpdate,
};
use datacat_protocol::{deep_merge, Batch, EndStatus, Record};
use serde_json::{json, Value};

/// What a session must look like once ingested.
#[derive(Debug, Clone, PartialEq)]
pub struct Expected {
    pub state: Value,
    pub history: usize,
    pub events: usize,
    pub metrics: usize,
    pub status: &'static str,
}

pub struct Workload {
    pub product: String,
    pub batches: Vec<Batch>,
    pub expected: BTreeMap<String, Expected>,
}

/// xorshift: deterministic, no dependency.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const WINDOWS: [&str; 5] = ["main menu", "space probe", "inventory", "map", "settings"];

impl Workload {
    /// `sessions` sessions of `batches` batches of about `records` records each.
    pub fn generate(
        product: &str,
        sessions: usize,
        batches: usize,
        records: usize,
        seed: u64,
    ) -> Self {
        let mut random = Random(seed.max(1));
        let mut all = Vec::new();
        let mut expected = BTreeMap::new();
        // Recent, so retention keeps it; the same for every run of one generated workload.
        let base_ms = datacat_protocol::time::now_ms() - 3_600_000;
        for s in 0..sessions {
            let id = format!("{product}-{seed}-{s:05}");
            let mut state = json!({});
            let (mut history, mut events, mut metrics) = (0, 0, 0);
            let mut ts = base_ms + s as u64 * 1000;
            for seq in 0..batches {
                let mut recs = Vec::new();
                if seq == 0 {
                    recs.push(Record::Start(SessionStart {
                        ts_ms: ts,
                        product: product.to_string(),
                        version: format!("1.{}", s % 3),
                        machine: Default::default(),
                        ..Default::default()
                    }));
                }
                for r in 0..records {
                    ts += 1 + random.below(50);
                    let record = match random.below(10) {
                        0..=2 => {
                            let open: Vec<&str> = WINDOWS
                                .iter()
                                .copied()
                                .filter(|_| random.below(2) == 0)
                                .collect();
                            let update = match random.below(4) {
                                0 => json!({"window_state": {"open": open}}),
                                1 => {
                                    json!({"player": {"level": random.below(20), "health": random.below(100)}})
                                }
                                2 => {
                                    json!({"player": {"health": null}, "scene": WINDOWS[random.below(5) as usize]})
                                }
                                _ => {
                                    json!({"window_state": {"active": WINDOWS[random.below(5) as usize]}, "tick": seq * 100 + r})
                                }
                            };
                            deep_merge(&mut state, &update);
                            // Ingest keeps every update it gets (the daemon is the filter).
                            history += 1;
                            Record::State(StateUpdate { ts_ms: ts, update })
                        }
                        3..=6 => {
                            events += 1;
                            Record::Event(Event {
                                ts_ms: ts,
                                name: format!("event_{}", random.below(8)),
                                level: [Level::Info, Level::Warning, Level::Error]
                                    [random.below(3) as usize],
                                category: String::new(),
                                group: String::new(),
                                labels: vec![],
                                message: format!("message {seq}/{r}"),
                                data: json!({"seq": seq, "r": r, "value": random.below(1000)}),
                                exception: None,
                            })
                        }
                        7..=8 => {
                            metrics += 1;
                            Record::Metric(Metric::gauge(
                                ts,
                                ["fps", "memory_usage"][random.below(2) as usize],
                                random.below(10_000) as f64 / 10.0,
                            ))
                        }
                        _ => Record::Heartbeat(Heartbeat { ts_ms: ts }),
                    };
                    recs.push(record);
                }
                let last = seq + 1 == batches;
                let crashed = s % 7 == 3;
                if last {
                    let status = if crashed {
                        EndStatus::Crashed
                    } else {
                        EndStatus::Ended
                    };
                    recs.push(Record::End(SessionEnd {
                        ts_ms: ts + 1,
                        status,
                        reason: "done".into(),
                    }));
                    if crashed {
                        events += 1; // ingest shows the crash as an event
                    }
                }
                all.push(Batch {
                    session_id: id.clone(),
                    seq: seq as u64,
                    records: recs,
                });
            }
            let status = if s % 7 == 3 { "crashed" } else { "ended" };
            expected.insert(
                id,
                Expected {
                    state,
                    history,
                    events,
                    metrics,
                    status,
                },
            );
        }
        Self {
            product: product.to_string(),
            batches: all,
            expected,
        }
    }

    /// Publishes every batch in an interleaved order (some sessions' batches out of order),
    /// plus `duplicates` re-publications under a different message id, which JetStream
    /// keeps and ingest must skip.
    pub async fn publish(&self, jetstream: &jetstream::Context, duplicates: usize) -> Result<()> {
        self.messages(duplicates)?.publish(jetstream).await
    }

    /// The messages [`Workload::publish`] sends, encoded, in its order: a workload to
    /// publish several times need not keep its records (the benchmark's take gigabytes).
    pub fn messages(&self, duplicates: usize) -> Result<Messages> {
        let mut order: Vec<usize> = (0..self.batches.len()).collect();
        let mut random = Random(0x5eed);
        // Interleave sessions, and swap some neighbours of the same session.
        let keys: Vec<(u64, u64)> = self
            .batches
            .iter()
            .map(|b| (b.seq, random.below(1 << 20)))
            .collect();
        order.sort_by_key(|&i| keys[i]);
        for i in (1..order.len()).step_by(11) {
            order.swap(i - 1, i);
        }
        let mut messages: Vec<Outgoing> = order
            .iter()
            .map(|&i| {
                let batch = &self.batches[i];
                Ok(Outgoing::batch(batch)?)
            })
            .collect::<Result<_>>()?;
        for d in 0..duplicates.min(self.batches.len()) {
            let batch = &self.batches[(d * 7919) % self.batches.len()];
            let mut message = Outgoing::batch(batch)?;
            message.msg_id = Some(format!("{}:dup{d}", msg_id(&batch.session_id, batch.seq)));
            messages.push(message);
        }
        Ok(Messages(messages))
    }
}

/// A workload's messages, encoded, in publishing order.
pub struct Messages(Vec<Outgoing>);

impl Messages {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Publishes every message, waiting for JetStream to store each.
    pub async fn publish(&self, jetstream: &jetstream::Context) -> Result<()> {
        for chunk in self.0.chunks(256) {
            for result in publish_all(jetstream, chunk).await {
                result.map_err(anyhow::Error::msg)?;
            }
        }
        Ok(())
    }
}

/// Every session of the workload as the API shows it, once all of them have ended.
pub async fn ingested(
    stack: &crate::Stack,
    workload: &Workload,
    timeout: Duration,
) -> BTreeMap<String, Value> {
    let mut sessions = BTreeMap::new();
    for (id, expected) in &workload.expected {
        // Every list whole: on a replicated cluster a read may come from a replica that is
        // still fetching the newest rows.
        let session = stack
            .wait_session(id, timeout, |s| {
                let at_least = |key: &str, count: usize| {
                    s[key].as_array().is_some_and(|list| list.len() >= count)
                };
                s["status"] == expected.status
                    && at_least("events", expected.events)
                    && at_least("state_history", expected.history)
                    && at_least("metrics", expected.metrics)
            })
            .await
            .unwrap();
        sessions.insert(id.clone(), session);
    }
    sessions
}

pub fn check_expected(workload: &Workload, sessions: &BTreeMap<String, Value>) {
    for (id, expected) in &workload.expected {
        let session = &sessions[id];
        let len = |key: &str| session[key].as_array().map(Vec::len).unwrap_or_default();
        assert_eq!(session["state"], expected.state, "{id} state");
        assert_eq!(len("state_history"), expected.history, "{id} history");
        assert_eq!(len("events"), expected.events, "{id} events");
        assert_eq!(len("metrics"), expected.metrics, "{id} metrics");
        assert_eq!(session["status"], expected.status, "{id} status");
        assert_eq!(session["gaps"], 0, "{id} gaps");
    }
}

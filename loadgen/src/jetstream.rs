//! Publishing batches straight to JetStream, as daemons would, without daemons.

use std::collections::HashMap;

use std::time::Duration;

use anyhow::{anyhow, Result};
use async_nats::jetstream;
use datacat_jetstream::{connect_options, publish_with_retry, Outgoing, Retry};
use datacat_protocol::record::{Event, Level, Metric, SessionEnd, SessionStart, StateUpdate};
use datacat_protocol::{Batch, EndStatus, Record};
use serde_json::Value;

use crate::load::Call;

pub struct Publisher {
    jetstream: jetstream::Context,
    next_seq: HashMap<String, u64>,
}

impl Publisher {
    pub async fn connect(nats_url: &str) -> Result<Self> {
        Ok(Self {
            jetstream: datacat_jetstream::connect(connect_options("datacat-loadgen"), nats_url)
                .await?,
            next_seq: HashMap::new(),
        })
    }

    pub fn new_session(&mut self) -> String {
        let id = uuid::Uuid::now_v7().to_string();
        self.next_seq.insert(id.clone(), 0);
        id
    }

    pub async fn start(&mut self, session: &str, product: &str) -> Result<()> {
        let record = Record::Start(SessionStart {
            ts_ms: datacat_protocol::time::now_ms(),
            product: product.to_string(),
            version: "1.0".to_string(),
            machine: Default::default(),
            ..Default::default()
        });
        self.publish(session, vec![record]).await
    }

    pub async fn send(&mut self, session: &str, calls: Vec<Call>) -> Result<()> {
        let records = calls.into_iter().map(record).collect();
        self.publish(session, records).await
    }

    pub async fn end(&mut self, session: &str) -> Result<()> {
        let record = Record::End(SessionEnd {
            ts_ms: datacat_protocol::time::now_ms(),
            status: EndStatus::Ended,
            reason: String::new(),
        });
        self.publish(session, vec![record]).await
    }

    async fn publish(&mut self, session: &str, records: Vec<Record>) -> Result<()> {
        let seq = self.next_seq.entry(session.to_string()).or_default();
        let batch = Batch {
            session_id: session.to_string(),
            seq: *seq,
            records,
        };
        *seq += 1;
        let retry = Retry {
            attempts: 3,
            first_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(400),
        };
        publish_with_retry(&self.jetstream, vec![Outgoing::batch(&batch)?], retry)
            .await
            .map_err(|failed| anyhow!("publishing failed: {:?}", failed.first().map(|f| &f.1)))
    }
}

fn record(call: Call) -> Record {
    match call {
        Call::Event { ts_ms, name, data } => Record::Event(Event {
            ts_ms,
            name,
            level: Level::Info,
            category: String::new(),
            group: String::new(),
            labels: vec![],
            message: String::new(),
            data,
            exception: None,
        }),
        Call::Gauge { ts_ms, name, value } => Record::Metric(Metric::gauge(ts_ms, name, value)),
        Call::State { ts_ms, update } => Record::State(StateUpdate { ts_ms, update }),
    }
}

/// The daemon's /batch item for a call.
pub fn item(call: Call) -> Value {
    match call {
        Call::Event { ts_ms, name, data } => {
            serde_json::json!({"kind": "event", "name": name, "data": data, "timestamp": ts_ms as f64 / 1000.0})
        }
        Call::Gauge { ts_ms, name, value } => {
            serde_json::json!({"kind": "metric", "name": name, "value": value, "timestamp": ts_ms as f64 / 1000.0})
        }
        Call::State { ts_ms, update } => {
            serde_json::json!({"kind": "state", "state": update, "timestamp": ts_ms as f64 / 1000.0})
        }
    }
}

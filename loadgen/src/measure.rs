//! What is measured while the load runs: freshness probes (client call -> visible in the
//! query API) and ingest lag (messages JetStream still holds for the ingest consumer).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use datacat_protocol::subject::{INGEST_CONSUMER, STREAM};
use serde_json::Value;

use crate::load::PROBE;

/// Probes sent and not yet seen, by session: probe id -> when its call was made.
#[derive(Default)]
pub struct Probes {
    outstanding: Mutex<BTreeMap<String, BTreeMap<u64, Instant>>>,
    latencies: Mutex<Vec<Duration>>,
}

impl Probes {
    pub fn sent(&self, session: &str, id: u64, at: Instant) {
        self.outstanding
            .lock()
            .unwrap()
            .entry(session.to_string())
            .or_default()
            .insert(id, at);
    }

    pub fn outstanding(&self) -> usize {
        self.outstanding
            .lock()
            .unwrap()
            .values()
            .map(BTreeMap::len)
            .sum()
    }

    pub fn latencies(&self) -> Vec<Duration> {
        let mut all = self.latencies.lock().unwrap().clone();
        all.sort();
        all
    }

    /// Polls the query API until `stop` is set and nothing is outstanding (or `give_up`).
    pub async fn watch(
        self: Arc<Self>,
        query_url: String,
        token: Option<String>,
        stop: Arc<tokio::sync::Notify>,
        give_up: Duration,
    ) {
        let http = reqwest::Client::new();
        let mut stopped_at: Option<Instant> = None;
        let notified = stop.notified();
        tokio::pin!(notified);
        loop {
            tokio::select! {
                _ = &mut notified, if stopped_at.is_none() => stopped_at = Some(Instant::now()),
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
            let sessions: Vec<String> = self.outstanding.lock().unwrap().keys().cloned().collect();
            for session in sessions {
                let url =
                    format!("{query_url}/api/sessions/{session}/events?name={PROBE}&limit=5000");
                let mut request = http.get(url);
                if let Some(token) = &token {
                    request = request.bearer_auth(token);
                }
                let Ok(response) = request.send().await else {
                    continue;
                };
                let Ok(page) = response.json::<Value>().await else {
                    continue;
                };
                let seen_at = Instant::now();
                let seen: Vec<u64> = page["events"]
                    .as_array()
                    .map(|events| {
                        events
                            .iter()
                            .filter_map(|e| e["data"]["probe"].as_u64())
                            .collect()
                    })
                    .unwrap_or_default();
                let mut outstanding = self.outstanding.lock().unwrap();
                if let Some(waiting) = outstanding.get_mut(&session) {
                    for id in seen {
                        if let Some(sent) = waiting.remove(&id) {
                            self.latencies.lock().unwrap().push(seen_at - sent);
                        }
                    }
                    if waiting.is_empty() {
                        outstanding.remove(&session);
                    }
                }
            }
            if let Some(at) = stopped_at {
                if self.outstanding() == 0 || at.elapsed() > give_up {
                    return;
                }
            }
        }
    }
}

/// Samples the ingest consumer's backlog (pending + unacknowledged messages).
pub struct Lag {
    consumer:
        async_nats::jetstream::consumer::Consumer<async_nats::jetstream::consumer::pull::Config>,
}

impl Lag {
    pub async fn connect(nats_url: &str) -> Result<Self> {
        let client =
            datacat_jetstream::connect_client(async_nats::ConnectOptions::new(), nats_url).await?;
        let jetstream = async_nats::jetstream::new(client);
        let stream = jetstream.get_stream(STREAM).await?;
        let consumer = stream
            .get_consumer(INGEST_CONSUMER)
            .await
            .map_err(|e| anyhow::anyhow!("the ingest consumer: {e}"))?;
        Ok(Self { consumer })
    }

    /// Samples every 250 ms until `stop`; returns itself and the largest backlog seen.
    pub async fn sample_until(mut self, stop: Arc<tokio::sync::Notify>) -> (Self, u64) {
        let mut max = 0;
        loop {
            if let Ok(n) = self.messages().await {
                max = max.max(n);
            }
            tokio::select! {
                _ = stop.notified() => return (self, max),
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
        }
    }

    pub async fn messages(&mut self) -> Result<u64> {
        let info = self.consumer.info().await?;
        Ok(info.num_pending + info.num_ack_pending as u64)
    }
}

/// The `q` quantile of sorted durations.
pub fn quantile(sorted: &[Duration], q: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let index = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    Some(sorted[index.min(sorted.len() - 1)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_of_a_sorted_list() {
        let ms: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile(&ms, 0.5), Some(Duration::from_millis(51)));
        assert_eq!(quantile(&ms, 0.99), Some(Duration::from_millis(99)));
        assert_eq!(quantile(&[], 0.5), None);
    }
}

//! Creating (or updating) the stream, the dead-letter stream, the shared consumer and the
//! progress bucket. Idempotent: every worker runs it at start.

use std::time::Duration;

use anyhow::{Context, Result};
use async_nats::jetstream::consumer::{pull, AckPolicy};
use async_nats::jetstream::stream::{self, StorageType};
use async_nats::jetstream::{self, kv};
use datacat_protocol::subject;

use crate::config::Config;

pub struct Resources {
    pub jetstream: jetstream::Context,
    /// The session stream (it keeps messages after they are applied).
    pub stream: jetstream::stream::Stream,
    pub consumer: jetstream::consumer::Consumer<pull::Config>,
    pub progress: kv::Store,
    pub leases: kv::Store,
}

pub async fn connect(config: &Config) -> Result<async_nats::Client> {
    // Messages forwarded by other workers wait in the inbox subscription; at most every
    // unacknowledged message of the consumer can be there, and a full one drops them.
    let inbox_capacity = (config.max_ack_pending.max(1) as usize + config.fetch_batch).max(65_536);
    let options = async_nats::ConnectOptions::new()
        .name("datacat-ingest")
        .subscription_capacity(inbox_capacity)
        .retry_on_initial_connect()
        .reconnect_delay_callback(|attempts| Duration::from_millis(100 * attempts.min(10) as u64));
    datacat_jetstream::connect_client(options, &config.nats.nats_url)
        .await
        .with_context(|| {
            let nats = datacat_jetstream::redacted_url(&config.nats.nats_url);
            format!("connecting to NATS at {nats}")
        })
}

/// How long one attempt at creating the stream, consumer and buckets may take, and how long
/// a starting worker keeps trying: a NATS cluster that has just started answers JetStream
/// requests only once it has elected a leader, and a request sent before may get no answer.
const ENSURE_ATTEMPT: Duration = Duration::from_secs(10);
const ENSURE_PATIENCE: Duration = Duration::from_secs(120);

/// [`ensure`], tried again (logged) while JetStream is not answering yet.
pub async fn ensure_patiently(client: &async_nats::Client, config: &Config) -> Result<Resources> {
    let started = std::time::Instant::now();
    loop {
        let error = match tokio::time::timeout(ENSURE_ATTEMPT, ensure(client, config)).await {
            Ok(Ok(resources)) => return Ok(resources),
            Ok(Err(error)) => error,
            Err(_) => anyhow::anyhow!("no answer from JetStream within {ENSURE_ATTEMPT:?}"),
        };
        if started.elapsed() > ENSURE_PATIENCE {
            return Err(error.context("setting up the JetStream stream, consumer and buckets"));
        }
        tracing::warn!(error = %format!("{error:#}"), "JetStream set-up failed; retrying");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

pub async fn ensure(client: &async_nats::Client, config: &Config) -> Result<Resources> {
    let jetstream = jetstream::new(client.clone());
    let stream = jetstream
        .create_or_update_stream(stream::Config {
            name: subject::STREAM.to_string(),
            subjects: vec![subject::SESSION_SUBJECTS.to_string()],
            storage: StorageType::File,
            retention: stream::RetentionPolicy::Limits,
            max_age: Duration::from_secs(config.stream_max_age_days * 86_400),
            max_bytes: config.stream_max_bytes,
            duplicate_window: Duration::from_secs(120),
            num_replicas: config.stream_replicas.into(),
            ..Default::default()
        })
        .await
        .context("creating the session stream")?;
    jetstream
        .create_or_update_stream(stream::Config {
            name: subject::DEAD_LETTER_STREAM.to_string(),
            subjects: vec![subject::DEAD_LETTER_SUBJECT.to_string()],
            storage: StorageType::File,
            max_age: Duration::from_secs(30 * 86_400),
            num_replicas: config.stream_replicas.into(),
            ..Default::default()
        })
        .await
        .context("creating the dead-letter stream")?;
    let stream = jetstream.get_stream(&stream.config.name).await?;
    // Create or update: a changed setting reaches an existing consumer too.
    let consumer = stream
        .create_consumer(pull::Config {
            durable_name: Some(subject::INGEST_CONSUMER.to_string()),
            ack_policy: AckPolicy::Explicit,
            ack_wait: Duration::from_secs(config.ack_wait_secs.max(1)),
            max_ack_pending: config.max_ack_pending.max(1),
            ..Default::default()
        })
        .await
        .context("creating the ingest consumer")?;
    // Progress outlives the stream's messages (a late batch still finds its session), and
    // then goes: ClickHouse keeps the history.
    let progress_age = Duration::from_secs(config.stream_max_age_days.max(1) * 4 * 86_400);
    let replicas = config.stream_replicas.into();
    let progress = bucket(&jetstream, subject::PROGRESS_BUCKET, progress_age, replicas).await?;
    let leases = bucket(&jetstream, subject::LEASE_BUCKET, Duration::ZERO, replicas).await?;
    // The query service's direct writes number their batches here.
    let direct_writes = subject::DIRECT_WRITES_BUCKET;
    bucket(
        &jetstream,
        direct_writes,
        subject::DIRECT_WRITES_MAX_AGE,
        replicas,
    )
    .await?;
    Ok(Resources {
        jetstream,
        stream,
        consumer,
        progress,
        leases,
    })
}

/// A file-backed KV bucket keeping only the latest value per key (`max_age` zero: forever).
async fn bucket(
    jetstream: &jetstream::Context,
    name: &str,
    max_age: Duration,
    replicas: usize,
) -> Result<kv::Store> {
    jetstream
        .create_or_update_key_value(kv::Config {
            bucket: name.to_string(),
            history: 1,
            max_age,
            storage: StorageType::File,
            num_replicas: replicas,
            ..Default::default()
        })
        .await
        .with_context(|| format!("creating the {name} bucket"))
}

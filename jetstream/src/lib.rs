//! Publishing session batches to JetStream, for everything that does: daemons, the query
//! service's direct writes, the load generator and the tests' workloads.
//!
//! A batch is published with `Nats-Msg-Id` = `session:seq` ([`msg_id`]), so JetStream drops a
//! batch published again within its duplicate window (and ingest skips one published after
//! it). Publishing is pipelined: every message of a chunk is sent before any ack is awaited.

use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage};
use bytes::Bytes;
use datacat_protocol::subject::{nats_servers, session_subject};
use datacat_protocol::{encode_batch, Batch, CodecError};
use futures::future::join_all;

/// Room kept in every message for what travels beside a batch's records: its envelope
/// (session id, sequence number), `Nats-Msg-Id`, and the headers ingest adds when it
/// dead-letters it.
pub const HEADROOM: usize = 16 * 1024;

/// The server's `max_payload` assumed before a connection says it (NATS's default).
pub const DEFAULT_MAX_PAYLOAD: usize = 1024 * 1024;

/// The most bytes of records one batch may hold on a server that takes messages of at most
/// `max_payload` bytes (0: not known yet).
pub fn batch_room(max_payload: usize) -> usize {
    let max_payload = match max_payload {
        0 => DEFAULT_MAX_PAYLOAD,
        known => known,
    };
    max_payload.saturating_sub(HEADROOM).max(HEADROOM)
}

/// The NATS setting every program takes.
#[derive(Debug, Clone, clap::Args)]
pub struct NatsArgs {
    /// NATS servers (comma-separated for a cluster) as the program's user:
    /// `nats://<user>:<password>@host:4222` (deploy/nats/auth.conf). Never shown by `--help`,
    /// logged or written down with its password.
    #[arg(
        long,
        global = true,
        env = "DATACAT_NATS_URL",
        hide_env_values = true,
        default_value = "nats://127.0.0.1:4222"
    )]
    pub nats_url: String,
}

/// The JetStream message id of batch `seq` of a session.
pub fn msg_id(session_id: &str, seq: u64) -> String {
    format!("{session_id}:{seq}")
}

/// Connection options for a publisher named `name` (as NATS's monitoring shows it): a
/// connection attempt gives up after 2 s, and a lost connection is tried again within a
/// second of the server's return (spooled data, and the liveness records that keep quiet
/// sessions from being marked lost, should not wait). Replies (JetStream's acks) come to
/// `_INBOX_<name>.…`, the only subjects a role's NATS user may subscribe to
/// (`deploy/nats/auth.conf`): no role reads another's replies.
pub fn connect_options(name: &str) -> async_nats::ConnectOptions {
    async_nats::ConnectOptions::new()
        .name(name)
        .custom_inbox_prefix(format!("_INBOX_{name}"))
        .connection_timeout(Duration::from_secs(2))
        .reconnect_delay_callback(|attempts| Duration::from_millis(100 * attempts.min(10) as u64))
}

/// Connects to the servers of a NATS URL setting (one URL, or several comma-separated),
/// with the credentials it carries.
pub async fn connect(
    options: async_nats::ConnectOptions,
    nats_url: &str,
) -> Result<jetstream::Context, async_nats::ConnectError> {
    Ok(jetstream::new(connect_client(options, nats_url).await?))
}

/// A client of the servers of a NATS URL setting, with the credentials it carries.
pub async fn connect_client(
    options: async_nats::ConnectOptions,
    nats_url: &str,
) -> Result<async_nats::Client, async_nats::ConnectError> {
    // The credentials go in the options; the servers without them, so that no log of the
    // client's (at any level) shows a password.
    let servers = nats_servers(&redacted_url(nats_url))
        .into_iter()
        .map(str::to_string)
        .collect::<Vec<_>>();
    with_url_credentials(options, nats_url)
        .connect(servers)
        .await
}

/// What a NATS URL setting says to log in with (`nats://user:password@host`, or
/// `nats://token@host`; the first URL that says), which async-nats does not take from the
/// URL by itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlCredentials {
    UserAndPassword(String, String),
    Token(String),
}

impl UrlCredentials {
    pub fn of(nats_url: &str) -> Option<Self> {
        nats_servers(nats_url).into_iter().find_map(|url| {
            let start = url.find("://")? + 3;
            let at = url.rfind('@').filter(|at| *at > start)?;
            let userinfo = &url[start..at];
            Some(match userinfo.split_once(':') {
                Some((user, password)) => {
                    Self::UserAndPassword(percent_decoded(user), percent_decoded(password))
                }
                None => Self::Token(percent_decoded(userinfo)),
            })
        })
    }
}

/// `options` logging in as the NATS URL setting says, if it says.
pub fn with_url_credentials(
    options: async_nats::ConnectOptions,
    nats_url: &str,
) -> async_nats::ConnectOptions {
    match UrlCredentials::of(nats_url) {
        Some(UrlCredentials::UserAndPassword(user, password)) => {
            options.user_and_password(user, password)
        }
        Some(UrlCredentials::Token(token)) => options.token(token),
        None => options,
    }
}

/// A URL as it may be logged or written down: without its user name and password.
/// (`nats://user:secret@host:4222` becomes `nats://host:4222`; each of a comma-separated
/// list of URLs likewise.)
pub fn redacted_url(urls: &str) -> String {
    urls.split(',')
        .map(|url| {
            let url = url.trim();
            match (url.find("://"), url.rfind('@')) {
                (Some(scheme), Some(at)) if at > scheme => {
                    format!("{}{}", &url[..scheme + 3], &url[at + 1..])
                }
                _ => url.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// `%XX` escapes decoded (a URL's user and password may carry them).
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| text.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One message to publish on a session's subject.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub subject: String,
    /// `Nats-Msg-Id`; `None` publishes without one (JetStream then keeps every copy).
    pub msg_id: Option<String>,
    pub payload: Bytes,
}

impl Outgoing {
    /// A batch as a daemon publishes it.
    pub fn batch(batch: &Batch) -> Result<Self, CodecError> {
        Ok(Self::encoded(
            &batch.session_id,
            batch.seq,
            encode_batch(batch)?.into(),
        ))
    }

    /// An encoded batch of session `session_id`, number `seq`.
    pub fn encoded(session_id: &str, seq: u64, payload: Bytes) -> Self {
        Self {
            subject: session_subject(session_id),
            msg_id: Some(msg_id(session_id, seq)),
            payload,
        }
    }
}

/// Why a message was not stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishFailure {
    pub message: String,
    /// The message can never be stored as it is (it is larger than the server's
    /// `max_payload`): trying it again cannot help.
    pub refused: bool,
}

impl std::fmt::Display for PublishFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for PublishFailure {}

impl From<jetstream::context::PublishError> for PublishFailure {
    fn from(error: jetstream::context::PublishError) -> Self {
        let refused = error.kind() == jetstream::context::PublishErrorKind::MaxPayloadExceeded;
        Self {
            message: error.to_string(),
            refused,
        }
    }
}

/// Publishes every message, then awaits every ack: the result of each, in order.
pub async fn publish_all(
    jetstream: &jetstream::Context,
    messages: &[Outgoing],
) -> Vec<Result<(), PublishFailure>> {
    let mut acks = Vec::with_capacity(messages.len());
    for message in messages {
        let mut publish = PublishMessage::build().payload(message.payload.clone());
        if let Some(id) = &message.msg_id {
            publish = publish.message_id(id);
        }
        acks.push(
            jetstream
                .send_publish(message.subject.clone(), publish)
                .await,
        );
    }
    join_all(acks.into_iter().map(|ack| async move {
        match ack {
            Ok(future) => future.await.map(drop).map_err(PublishFailure::from),
            Err(e) => Err(PublishFailure::from(e)),
        }
    }))
    .await
}

/// How often, and how patiently, a publish is tried again.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub attempts: u32,
    /// The first pause; each next one is twice as long, up to `max_delay`.
    pub first_delay: Duration,
    pub max_delay: Duration,
}

impl Retry {
    /// The pause before try `attempt + 1` (attempt counts from 0).
    pub fn delay(&self, attempt: u32) -> Duration {
        self.first_delay
            .saturating_mul(2u32.saturating_pow(attempt))
            .min(self.max_delay)
    }
}

/// Publishes every message, trying those that failed again after each pause, until all are
/// stored or the attempts run out: then the last failure of each message still unsent. A
/// message the server refuses for good is not tried again.
pub async fn publish_with_retry(
    jetstream: &jetstream::Context,
    mut messages: Vec<Outgoing>,
    retry: Retry,
) -> Result<(), Vec<(Outgoing, PublishFailure)>> {
    let mut refused = Vec::new();
    for attempt in 0..retry.attempts.max(1) {
        if attempt > 0 {
            tokio::time::sleep(retry.delay(attempt - 1)).await;
        }
        let results = publish_all(jetstream, &messages).await;
        let (failed, gave_up): (Vec<_>, Vec<_>) = messages
            .into_iter()
            .zip(results)
            .filter_map(|(message, result)| result.err().map(|error| (message, error)))
            .partition(|(_, error)| !error.refused);
        refused.extend(gave_up);
        if failed.is_empty() || attempt + 1 >= retry.attempts.max(1) {
            refused.extend(failed);
            break;
        }
        messages = failed.into_iter().map(|(message, _)| message).collect();
    }
    match refused.is_empty() {
        true => Ok(()),
        false => Err(refused),
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn credentials_come_from_the_url() {
        use super::UrlCredentials;
        assert_eq!(
            UrlCredentials::of("nats://u%40x:p%3Aw@h:4222,nats://h2:4222"),
            Some(UrlCredentials::UserAndPassword("u@x".into(), "p:w".into()))
        );
        assert_eq!(
            UrlCredentials::of("nats://h1:4222, tls://tok@h2:4222"),
            Some(UrlCredentials::Token("tok".into()))
        );
        assert_eq!(UrlCredentials::of("nats://127.0.0.1:4222"), None);
        use super::redacted_url;
        assert_eq!(redacted_url("nats://u:p@h:4222"), "nats://h:4222");
        assert_eq!(redacted_url("nats://h:4222"), "nats://h:4222");
        assert_eq!(
            redacted_url("nats://a:b@h1:4222, tls://tok@h2:4222"),
            "nats://h1:4222,tls://h2:4222"
        );
    }

    use super::*;

    #[test]
    fn a_batch_is_identified_by_its_session_and_sequence() {
        assert_eq!(msg_id("0193-ab", 7), "0193-ab:7");
        let batch = Batch {
            session_id: "s".into(),
            seq: 3,
            records: vec![],
        };
        let outgoing = Outgoing::batch(&batch).unwrap();
        assert_eq!(outgoing.msg_id.as_deref(), Some("s:3"));
        assert_eq!(outgoing.subject, "datacat.session.s");
    }

    #[test]
    fn pauses_double_up_to_the_cap() {
        let retry = Retry {
            attempts: 6,
            first_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(500),
        };
        let pauses: Vec<u128> = (0..5).map(|a| retry.delay(a).as_millis()).collect();
        assert_eq!(pauses, [100, 200, 400, 500, 500]);
    }
}

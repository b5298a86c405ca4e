//! Reading a session back from the query service, for `GET /session`.
//!
//! The application asks its daemon; the daemon asks the query service for the whole session
//! (naming the last batch it sent, so the answer includes it) and falls back to what it
//! holds itself. A query service that is down or does not answer costs one timeout; then it
//! is left alone for a backoff (1 s, doubling up to 30 s) during which reads answer from the
//! daemon at once, so a black-holed server cannot slow the application's every read.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use datacat_api::query::encode;
use serde_json::Value;
use tracing::{info, warn};

/// The first backoff after a failure; it doubles with each failure in a row.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What the query service said about a session.
#[derive(Debug)]
pub enum Answer {
    /// The session as the query service holds it.
    Session(Value),
    /// The query service does not know the session (yet).
    Unknown,
    /// No answer to trust: not configured, unreachable, refusing us, or backing off.
    Unavailable(String),
}

/// Failures in a row of one query service, and until when it is left alone.
#[derive(Default)]
struct Health {
    failures: u32,
    retry_at: Option<Instant>,
}

pub struct Upstream {
    client: reqwest::Client,
    /// The read token, and the one query service it is sent to: a URL a client names (any
    /// local process can) never gets it.
    token: Option<(String, String)>,
    health: Mutex<HashMap<String, Health>>,
}

impl Upstream {
    /// `token`: the read token of the query service at `token_url` (`--query-url`).
    pub fn new(timeout: Duration, token: Option<String>, token_url: Option<&str>) -> Self {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(1)))
            .build()
            .unwrap_or_default();
        let token_url = token_url.map(|url| url.trim().trim_end_matches('/').to_string());
        Self {
            client,
            token: token.filter(|t| !t.is_empty()).zip(token_url),
            health: Mutex::default(),
        }
    }

    /// The session `id` from the query service at `base_url`, once it has applied batch
    /// `min_seq` (the query service waits for it, bounded).
    pub async fn session(&self, base_url: &str, id: &str, min_seq: Option<u64>) -> Answer {
        let base_url = base_url.trim_end_matches('/');
        if let Some(wait) = self.backing_off(base_url) {
            return Answer::Unavailable(format!(
                "{base_url} failed recently; trying it again in {:.1} s",
                wait.as_secs_f64()
            ));
        }
        let mut url = format!("{base_url}/api/sessions/{}", encode(id));
        if let Some(seq) = min_seq {
            url.push_str(&format!("?min_seq={seq}"));
        }
        let mut request = self.client.get(&url);
        if let Some((token, _)) = self.token.as_ref().filter(|(_, to)| to == base_url) {
            request = request.bearer_auth(token);
        }
        let answer = match request.send().await {
            Ok(response) if response.status().is_success() => match response.json().await {
                Ok(value @ Value::Object(_)) => Answer::Session(value),
                Ok(_) => Answer::Unavailable(format!("{url}: the answer is not a session")),
                Err(error) => Answer::Unavailable(format!("{url}: {error}")),
            },
            Ok(response) if response.status() == reqwest::StatusCode::NOT_FOUND => Answer::Unknown,
            Ok(response) => Answer::Unavailable(format!("{url}: HTTP {}", response.status())),
            Err(error) => Answer::Unavailable(format!("{url}: {error}")),
        };
        self.record(base_url, &answer);
        answer
    }

    fn backing_off(&self, base_url: &str) -> Option<Duration> {
        let health = self.health.lock().unwrap_or_else(|e| e.into_inner());
        let retry_at = health.get(base_url)?.retry_at?;
        retry_at.checked_duration_since(Instant::now())
    }

    fn record(&self, base_url: &str, answer: &Answer) {
        let mut all = self.health.lock().unwrap_or_else(|e| e.into_inner());
        let health = all.entry(base_url.to_string()).or_default();
        match answer {
            Answer::Unavailable(why) => {
                health.failures += 1;
                let backoff = FIRST_BACKOFF
                    .saturating_mul(1 << (health.failures - 1).min(5))
                    .min(MAX_BACKOFF);
                health.retry_at = Some(Instant::now() + backoff);
                warn!(%why, backoff_s = backoff.as_secs_f64(), "reading from the query service failed; answering from the daemon");
            }
            _ => {
                if health.failures > 0 {
                    info!(%base_url, "the query service answers again");
                }
                *health = Health::default();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers every request 404 and hands over what it received.
    async fn recording_server() -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut request = vec![0; 4096];
                let n = stream.read(&mut request).await.unwrap_or(0);
                let _ = sender.send(String::from_utf8_lossy(&request[..n]).to_lowercase());
                let answer = "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n";
                let _ = stream.write_all(answer.as_bytes()).await;
            }
        });
        (url, receiver)
    }

    #[tokio::test]
    async fn the_read_token_goes_only_to_the_configured_query_service() {
        let (configured, mut to_configured) = recording_server().await;
        let (other, mut to_other) = recording_server().await;
        let upstream = Upstream::new(
            Duration::from_secs(5),
            Some("secret".into()),
            Some(&format!("{configured}/")),
        );
        let answer = upstream.session(&configured, "s", Some(1)).await;
        assert!(matches!(answer, Answer::Unknown), "{answer:?}");
        let request = to_configured.recv().await.unwrap();
        assert!(
            request.starts_with("get /api/sessions/s?min_seq=1 "),
            "{request}"
        );
        assert!(
            request.contains("authorization: bearer secret"),
            "{request}"
        );
        upstream.session(&other, "s", None).await;
        let request = to_other.recv().await.unwrap();
        assert!(!request.contains("authorization"), "{request}");
    }

    #[tokio::test]
    async fn a_server_that_does_not_answer_costs_one_timeout_then_a_backoff() {
        // Accepts connections and never answers.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let upstream = Upstream::new(Duration::from_secs(2), None, None);
        let started = Instant::now();
        let first = upstream.session(&url, "s", Some(3)).await;
        assert!(matches!(first, Answer::Unavailable(_)), "{first:?}");
        assert!(started.elapsed() >= Duration::from_secs(2));
        let again = Instant::now();
        let second = upstream.session(&url, "s", Some(3)).await;
        assert!(matches!(second, Answer::Unavailable(ref why) if why.contains("again in")));
        assert!(
            again.elapsed() < Duration::from_secs(1),
            "no second timeout"
        );
        drop(listener);
    }
}

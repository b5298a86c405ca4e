//! Real datacat-daemon processes, one per simulated application, driven over their HTTP API
//! as the Python and Go clients drive them.

use datacat_api::handshake::Ready;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// One running daemon and its HTTP address.
pub struct Daemon {
    child: Child,
    base: String,
    http: reqwest::Client,
}

impl Daemon {
    /// Starts a daemon and completes its handshake (the ready line with its port).
    pub async fn start(binary: &Path, nats_url: &str, spool: &Path, log: &Path) -> Result<Self> {
        let log =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let mut child = Command::new(binary)
            // (In the environment, not the arguments: the URL may carry a password.)
            .args(["--parent-pid", &std::process::id().to_string()])
            .env("DATACAT_NATS_URL", nats_url)
            .env("DATACAT_SPOOL_DIR", spool)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let stdout = child.stdout.take().context("daemon stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(Duration::from_secs(15), async {
            while let Some(line) = lines.next_line().await? {
                if let Some(ready) = Ready::parse(&line) {
                    return Ok::<Ready, anyhow::Error>(ready);
                }
            }
            bail!("the daemon exited before printing its ready line")
        })
        .await
        .context("the daemon did not print its ready line within 15 s")??;
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(value) = ready.authorization() {
            headers.insert(reqwest::header::AUTHORIZATION, value.parse()?);
        }
        Ok(Self {
            child,
            base: format!("http://127.0.0.1:{}", ready.port),
            http: reqwest::Client::builder()
                .default_headers(headers)
                .build()?,
        })
    }

    async fn post(&self, path: &str, body: &Value) -> Result<Value> {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await?;
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("daemon {path} answered {status}: {answer}");
        }
        Ok(answer)
    }

    pub async fn register(&self, product: &str, version: &str) -> Result<String> {
        let answer = self
            .post(
                "/register",
                &json!({"product": product, "version": version}),
            )
            .await?;
        answer["session_id"]
            .as_str()
            .map(str::to_string)
            .context("no session_id in the daemon's answer")
    }

    pub async fn batch(&self, session: &str, items: Vec<Value>) -> Result<()> {
        self.post("/batch", &json!({"session_id": session, "items": items}))
            .await
            .map(drop)
    }

    pub async fn end(&self, session: &str) -> Result<bool> {
        let answer = self.post("/end", &json!({"session_id": session})).await?;
        Ok(answer["delivered"].as_bool().unwrap_or(false))
    }

    /// Closes the daemon's stdin (it flushes and exits) and waits for it.
    pub async fn stop(mut self) {
        drop(self.child.stdin.take());
        let _ = tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await;
    }
}

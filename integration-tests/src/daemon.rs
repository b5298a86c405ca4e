//! A real `datacat-daemon`, started with the same handshake clients use, for tests that
//! talk to it directly (a client with nothing to hide: plain HTTP).

use datacat_api::handshake::Ready;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::binaries::datacat_bin;

pub struct Daemon {
    child: Child,
    /// Held open like an application does; dropping it is the application exiting.
    stdin: Option<ChildStdin>,
    pub url: String,
    /// Sends the daemon's token with every call.
    client: reqwest::Client,
    /// The daemon's token (from its ready line).
    pub token: String,
}

/// A client that sends the daemon's token with every request.
pub fn authorized_client(ready: &Ready) -> Result<reqwest::Client> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(value) = ready.authorization() {
        headers.insert(reqwest::header::AUTHORIZATION, value.parse()?);
    }
    Ok(reqwest::Client::builder()
        .default_headers(headers)
        .build()?)
}

impl Daemon {
    /// Starts a daemon publishing to `nats_url`, spooling under `spool_dir`, logging to
    /// `log`; `env` adds or overrides settings.
    pub fn start(
        nats_url: &str,
        spool_dir: &Path,
        log: &Path,
        env: &[(&str, &str)],
    ) -> Result<Self> {
        let mut command = Command::new(datacat_bin("datacat-daemon")?);
        command
            .env("DATACAT_NATS_URL", nats_url)
            .env("DATACAT_SPOOL_DIR", spool_dir)
            .env("RUST_LOG", "info")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log)?);
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().context("starting datacat-daemon")?;
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = sender.send(line);
        });
        let line = receiver
            .recv_timeout(Duration::from_secs(20))
            .context("no readiness line from the daemon")?;
        let Some(ready) = Ready::parse(&line) else {
            bail!("unexpected readiness line {line:?}; see {}", log.display());
        };
        let url = format!("http://127.0.0.1:{}", ready.port);
        let stdin = child.stdin.take();
        Ok(Self {
            child,
            stdin,
            url,
            client: authorized_client(&ready)?,
            token: ready.token.unwrap_or_default(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// POSTs raw bytes; returns the status and the JSON answer (`null` if not JSON).
    pub async fn post_raw(
        &self,
        path: &str,
        body: impl Into<reqwest::Body>,
    ) -> Result<(u16, Value)> {
        crate::answers::post(&self.client, format!("{}{path}", self.url), body).await
    }

    /// POSTs JSON and fails unless the answer is 200.
    pub async fn post(&self, path: &str, body: Value) -> Result<Value> {
        let (status, answer) = self.post_raw(path, body.to_string()).await?;
        anyhow::ensure!(status == 200, "POST {path} answered {status}: {answer}");
        Ok(answer)
    }

    pub async fn get(&self, path: &str) -> Result<Value> {
        Ok(self
            .client
            .get(format!("{}{path}", self.url))
            .send()
            .await?
            .json()
            .await?)
    }

    pub async fn register(&self, product: &str, version: &str) -> Result<String> {
        let answer = self
            .post("/register", json!({"product": product, "version": version}))
            .await?;
        Ok(answer["session_id"]
            .as_str()
            .context("session_id in the answer")?
            .to_string())
    }

    /// `kill -9`: no flush, no goodbye.
    pub fn kill(&mut self) -> Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// Closes the pipe the daemon watches, as an exiting application does.
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Whether the daemon process is still running.
    pub fn running(&mut self) -> Result<bool> {
        Ok(self.child.try_wait()?.is_none())
    }

    /// Waits for the daemon to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if std::time::Instant::now() > deadline {
                bail!("the daemon did not exit within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//! A real headless Chromium driven over the W3C WebDriver protocol (Debian's `chromium` and
//! `chromium-driver`). The few commands the dashboard test needs, spoken with reqwest.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use base64::Engine;
use serde_json::{json, Value};

use crate::binaries::external_bin;
use crate::process::{free_port, ChildGuard};

/// The key WebDriver names an element by.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    http: reqwest::Client,
    session: String,
    group: u32,
    _driver: ChildGuard,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-9", "--", &format!("-{}", self.group)])
            .status();
    }
}

impl Browser {
    /// Starts chromedriver on a free port and a headless Chromium session.
    pub async fn start(log: &Path) -> Result<Self> {
        let driver_bin = external_bin("DATACAT_CHROMEDRIVER_BIN", &[], "chromedriver")?;
        let chromium = external_bin("DATACAT_CHROMIUM_BIN", &[], "chromium")?;
        let port = free_port();
        let mut command = std::process::Command::new(driver_bin);
        command.arg(format!("--port={port}"));
        // Its own process group: Chromium (chromedriver's child) goes with it on drop, also
        // when a test panics before `close`.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let driver = ChildGuard::spawn("chromedriver", command, log)?;
        let group = driver.pid();
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let started = Instant::now();
        loop {
            let ready = http.get(format!("{base}/status")).send().await;
            if let Ok(response) = ready {
                let status: Value = response.json().await.unwrap_or_default();
                if status["value"]["ready"] == true {
                    break;
                }
            }
            ensure!(
                started.elapsed() < Duration::from_secs(20),
                "chromedriver did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1300,2200", "--no-first-run", "--disable-background-networking"]
            }
        }}});
        let created: Value = http
            .post(format!("{base}/session"))
            .json(&capabilities)
            .send()
            .await?
            .json()
            .await?;
        let session = created["value"]["sessionId"]
            .as_str()
            .with_context(|| format!("no WebDriver session: {created}"))?;
        Ok(Self {
            http,
            session: format!("{base}/session/{session}"),
            group,
            _driver: driver,
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        let mut request = self.http.request(method, format!("{}{path}", self.session));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer: Value = request.send().await?.json().await?;
        if let Some(error) = answer["value"]["error"].as_str() {
            bail!("WebDriver {path}: {error}: {}", answer["value"]["message"]);
        }
        Ok(answer["value"].clone())
    }

    pub async fn goto(&self, url: &str) -> Result<()> {
        self.call(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await
            .map(drop)
    }

    pub async fn url(&self) -> Result<String> {
        Ok(self
            .call(reqwest::Method::GET, "/url", None)
            .await?
            .as_str()
            .unwrap_or_default()
            .to_string())
    }

    /// Element ids matching a CSS selector (none is not an error).
    pub async fn find_all(&self, css: &str) -> Result<Vec<String>> {
        let found = self
            .call(
                reqwest::Method::POST,
                "/elements",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await?;
        Ok(found
            .as_array()
            .map(|list| {
                list.iter()
                    .filter_map(|e| e[ELEMENT].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Waits until `css` matches at least `count` elements (pages load over a websocket).
    pub async fn wait_for(&self, css: &str, count: usize) -> Result<Vec<String>> {
        let started = Instant::now();
        loop {
            let found = self.find_all(css).await?;
            if found.len() >= count {
                return Ok(found);
            }
            ensure!(
                started.elapsed() < Duration::from_secs(20),
                "{css}: {} of {count} elements after 20 s",
                found.len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until exactly `count` elements match `css`.
    pub async fn wait_for_exactly(&self, css: &str, count: usize) -> Result<()> {
        let started = Instant::now();
        loop {
            let found = self.find_all(css).await?.len();
            if found == count {
                return Ok(());
            }
            ensure!(
                started.elapsed() < Duration::from_secs(20),
                "{css}: {found} elements, expected {count}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn text(&self, element: &str) -> Result<String> {
        Ok(self
            .call(
                reqwest::Method::GET,
                &format!("/element/{element}/text"),
                None,
            )
            .await?
            .as_str()
            .unwrap_or_default()
            .to_string())
    }

    /// The visible text of the whole page.
    pub async fn page_text(&self) -> Result<String> {
        let body = self.wait_for("body", 1).await?;
        self.text(&body[0]).await
    }

    pub async fn click(&self, element: &str) -> Result<()> {
        self.call(
            reqwest::Method::POST,
            &format!("/element/{element}/click"),
            Some(json!({})),
        )
        .await
        .map(drop)
    }

    /// Types into an element (`\u{E012}` is the left arrow key).
    pub async fn type_into(&self, element: &str, text: &str) -> Result<()> {
        self.call(
            reqwest::Method::POST,
            &format!("/element/{element}/value"),
            Some(json!({"text": text})),
        )
        .await
        .map(drop)
    }

    /// Saves a PNG of the window.
    pub async fn screenshot(&self, path: &Path) -> Result<()> {
        let encoded = self.call(reqwest::Method::GET, "/screenshot", None).await?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().unwrap_or_default())
            .context("screenshot is not base64")?;
        std::fs::write(path, png)?;
        Ok(())
    }
}

impl Browser {
    /// Ends the session (Chromium exits); chromedriver goes with its guard.
    pub async fn close(self) -> Result<()> {
        self.http.delete(&self.session).send().await?;
        Ok(())
    }
}

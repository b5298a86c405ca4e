//! NATS with JetStream and ClickHouse, each on free loopback ports in a temp dir.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use tempfile::TempDir;

use crate::binaries::{clickhouse_server_bin, nats_server_bin, repo_root};
use crate::process::{free_port, wait_http_ok, ChildGuard};

const CLICKHOUSE_CONFIG: &str = include_str!("../../deploy/clickhouse/config.xml");
const CLICKHOUSE_USERS: &str = include_str!("../../deploy/clickhouse/users.xml");

pub struct Nats {
    pub port: u16,
    pub monitor_port: u16,
    pub url: String,
    process: Option<ChildGuard>,
    dir: TempDir,
}

impl Nats {
    pub async fn start() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let mut nats = Self {
            port: free_port(),
            monitor_port: free_port(),
            url: String::new(),
            process: None,
            dir,
        };
        nats.url = format!("nats://127.0.0.1:{}", nats.port);
        nats.restart().await?;
        Ok(nats)
    }

    /// Starts the server again on the same ports and store (after [`Nats::stop`]).
    pub async fn restart(&mut self) -> Result<()> {
        let mut command = Command::new(nats_server_bin()?);
        command
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-m", &self.monitor_port.to_string(), "-js", "-sd"])
            .arg(self.dir.path().join("store"));
        let log = self.dir.path().join("nats.log");
        self.process = Some(ChildGuard::spawn("nats-server", command, &log)?);
        let health = format!(
            "http://127.0.0.1:{}/healthz?js-enabled-only=true",
            self.monitor_port
        );
        wait_http_ok(&health, Duration::from_secs(20), "nats-server").await
    }

    /// Kills the server (its store stays).
    pub fn stop(&mut self) {
        self.process = None;
    }
}

pub struct ClickHouse {
    pub http_port: u16,
    pub url: String,
    process: Option<ChildGuard>,
    dir: TempDir,
}

impl ClickHouse {
    pub async fn start() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let http_port = free_port();
        let users = dir.path().join("users.xml");
        std::fs::write(&users, CLICKHOUSE_USERS)?;
        let config = CLICKHOUSE_CONFIG
            .replace("{{HTTP_PORT}}", &http_port.to_string())
            .replace("{{TCP_PORT}}", &free_port().to_string())
            .replace("{{INTERSERVER_PORT}}", &free_port().to_string())
            .replace("{{DATA_DIR}}", &dir.path().display().to_string())
            .replace("{{USERS_XML}}", &users.display().to_string());
        std::fs::create_dir_all(dir.path().join("logs"))?;
        let config_path = dir.path().join("config.xml");
        std::fs::write(&config_path, config)?;
        let mut clickhouse = Self {
            http_port,
            url: format!("http://127.0.0.1:{http_port}"),
            process: None,
            dir,
        };
        clickhouse
            .restart()
            .await
            .context("starting clickhouse-server")?;
        Ok(clickhouse)
    }

    pub async fn restart(&mut self) -> Result<()> {
        let mut command = Command::new(clickhouse_server_bin()?);
        let bin_name = command.get_program().to_string_lossy().to_string();
        if bin_name.ends_with("/clickhouse") {
            command.arg("server");
        }
        command.arg(format!(
            "--config-file={}",
            self.dir.path().join("config.xml").display()
        ));
        command.current_dir(repo_root());
        let log = self.dir.path().join("stdout.log");
        self.process = Some(ChildGuard::spawn("clickhouse-server", command, &log)?);
        let ping = format!("{}/ping", self.url);
        wait_http_ok(&ping, Duration::from_secs(60), "clickhouse-server").await
    }

    pub fn stop(&mut self) {
        self.process = None;
    }

    /// Runs one SQL statement over HTTP and returns the body.
    pub async fn sql(&self, sql: &str) -> Result<String> {
        let response = reqwest::Client::new()
            .post(&self.url)
            .body(sql.to_string())
            .send()
            .await?;
        let status = response.status();
        let body = response.text().await?;
        anyhow::ensure!(status.is_success(), "clickhouse answered {status}: {body}");
        Ok(body)
    }
}

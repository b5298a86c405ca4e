//! Current ClickHouse (chdb-core, ClickHouse in process) on a free loopback port, behind
//! `integration-tests/chdb/gateway.py`: the second engine the warehouse's SQL is checked on.

use std::process::Command;
use std::time::Duration;

use anyhow::Result;
use datacat_warehouse::{Connection, WireCompression};
use tempfile::TempDir;

use crate::binaries::{chdb_dir, repo_root};
use crate::process::{free_port, wait_http_ok, ChildGuard};

pub struct Chdb {
    pub url: String,
    _process: ChildGuard,
    _dir: TempDir,
}

impl Chdb {
    pub async fn start() -> Result<Self> {
        let dir = crate::process::test_dir("chdb-")?;
        let port = free_port();
        let mut command = Command::new("python3");
        command
            .arg(repo_root().join("integration-tests/chdb/gateway.py"))
            .args(["--port", &port.to_string(), "--data"])
            .arg(dir.path().join("data"))
            .env("PYTHONPATH", chdb_dir()?)
            .env("PYTHONDONTWRITEBYTECODE", "1");
        let process = ChildGuard::spawn("chdb-gateway", command, &dir.path().join("log"))?;
        let url = format!("http://127.0.0.1:{port}");
        wait_http_ok(
            &format!("{url}/ping"),
            Duration::from_secs(60),
            "chdb gateway",
        )
        .await?;
        Ok(Self {
            url,
            _process: process,
            _dir: dir,
        })
    }

    /// The warehouse's connection to it. Uncompressed: compression is the HTTP server's, and
    /// chdb has none.
    pub fn connection(&self, database: &str) -> Connection {
        Connection {
            url: self.url.clone(),
            database: database.to_string(),
            user: None,
            password: None,
            cluster: None,
            compression: WireCompression::None,
        }
    }

    /// Runs one SQL statement and returns the answer's body.
    pub async fn sql(&self, sql: &str) -> Result<String> {
        crate::servers::post_sql(&self.url, sql).await
    }
}

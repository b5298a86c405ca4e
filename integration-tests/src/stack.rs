//! The whole DataCat stack: NATS, ClickHouse, migrations, ingest and query.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use serde_json::Value;
use tempfile::TempDir;

use crate::binaries::datacat_bin;
use crate::process::{free_port, test_dir, wait_http_ok, ChildGuard};
use datacat_warehouse::{Connection, WireCompression};

use crate::chdb::Chdb;
use crate::cluster::{ClickHouseCluster, CLUSTER};
use crate::servers::{ClickHouse, Nats, NatsRole};

/// The nodes' URLs, comma-separated, as `role`'s user: a NATS URL setting for the cluster.
fn urls_as<'a>(nodes: impl IntoIterator<Item = &'a Nats>, role: NatsRole) -> String {
    nodes
        .into_iter()
        .map(|node| node.url_as(role))
        .collect::<Vec<_>>()
        .join(",")
}

/// Where a stack keeps its rows.
// One per stack, made once: the size of the server variant (with a container) costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum Warehouse {
    /// One ClickHouse server.
    Server(ClickHouse),
    /// Current ClickHouse in process, behind its HTTP gateway.
    Chdb(Chdb),
    /// A replicated cluster, reached through its first server.
    Cluster(ClickHouseCluster),
}

impl Warehouse {
    /// How DataCat reaches it.
    pub fn connection(&self, database: &str) -> Connection {
        match self {
            Warehouse::Server(server) => server.connection(database),
            Warehouse::Chdb(chdb) => chdb.connection(database),
            Warehouse::Cluster(cluster) => Connection {
                cluster: Some(CLUSTER.to_string()),
                ..cluster.servers[0].connection(database)
            },
        }
    }

    /// The settings that point a DataCat program at it.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let connection = self.connection("");
        let compression = match connection.compression {
            WireCompression::Lz4 => "lz4",
            WireCompression::None => "none",
        };
        let mut env = vec![
            ("DATACAT_CLICKHOUSE_URL", connection.url),
            ("DATACAT_CLICKHOUSE_COMPRESSION", compression.to_string()),
        ];
        env.extend(
            connection
                .cluster
                .map(|cluster| ("DATACAT_CLICKHOUSE_CLUSTER", cluster)),
        );
        env
    }
}

pub struct Stack {
    /// The NATS server (in a cluster: its first node).
    pub nats: Nats,
    /// The other nodes of a NATS cluster (none for a single server).
    pub nats_peers: Vec<Nats>,
    /// Every node's URL, comma-separated, as the `datacat-ingest` user (every permission):
    /// what ingest and the tests themselves connect with. Daemons and clients get
    /// [`Stack::nats_url_as`]`(NatsRole::Daemon)`, the query service the query user's.
    pub nats_url: String,
    pub warehouse: Warehouse,
    pub database: String,
    pub query_url: String,
    pub ingest: Vec<ChildGuard>,
    /// Each ingest worker's /health and /metrics port, by index.
    pub ingest_ports: Vec<u16>,
    pub query: ChildGuard,
    pub logs: TempDir,
    /// Extra environment for every ingest worker.
    pub ingest_env: Vec<(String, String)>,
}

impl Stack {
    /// Starts everything with one ingest worker and waits until query answers `/health`.
    pub async fn start() -> Result<Self> {
        Self::start_with(&[]).await
    }

    /// Like [`Stack::start`], with extra settings for the ingest workers.
    pub async fn start_with(ingest_env: &[(&str, &str)]) -> Result<Self> {
        Self::start_with_warehouse(Warehouse::Server(ClickHouse::start().await?), ingest_env).await
    }

    /// Like [`Stack::start_with`], keeping its rows in `warehouse`.
    pub async fn start_with_warehouse(
        warehouse: Warehouse,
        ingest_env: &[(&str, &str)],
    ) -> Result<Self> {
        Self::start_on(vec![Nats::start().await?], warehouse, ingest_env, &[]).await
    }

    /// Like [`Stack::start`], with ingest calling a session lost `lost_after_secs` after its
    /// daemon was last heard of (looked for every `sweep_ms`), so that tests need not wait
    /// for the default.
    pub async fn start_losing_after(lost_after_secs: u64, sweep_ms: u64) -> Result<Self> {
        let lost_after = lost_after_secs.to_string();
        let sweep = sweep_ms.to_string();
        Self::start_with(&[
            ("DATACAT_LOST_AFTER_SECS", lost_after.as_str()),
            ("DATACAT_SWEEP_INTERVAL_MS", sweep.as_str()),
        ])
        .await
    }

    /// Like [`Stack::start`], on this NATS server.
    pub async fn start_on_nats(nats: Nats) -> Result<Self> {
        Self::start_on(vec![nats], Self::server().await?, &[], &[]).await
    }

    /// Like [`Stack::start`], with extra settings for the query service.
    pub async fn start_with_query(query_env: &[(&str, &str)]) -> Result<Self> {
        Self::start_on(
            vec![Nats::start().await?],
            Self::server().await?,
            &[],
            query_env,
        )
        .await
    }

    /// Like [`Stack::start`] on a NATS cluster of `nodes` servers, the streams and buckets
    /// replicated on all of them.
    pub async fn start_clustered(nodes: usize) -> Result<Self> {
        Self::start_on(
            Nats::start_cluster(nodes).await?,
            Self::server().await?,
            &[],
            &[],
        )
        .await
    }

    async fn server() -> Result<Warehouse> {
        Ok(Warehouse::Server(ClickHouse::start().await?))
    }

    /// How DataCat reaches the stack's warehouse.
    pub fn connection(&self) -> Connection {
        self.warehouse.connection(&self.database)
    }

    /// The stack's ClickHouse server (it has one unless started on another warehouse).
    pub fn clickhouse(&self) -> &ClickHouse {
        match &self.warehouse {
            Warehouse::Server(server) => server,
            _ => panic!("this stack keeps its rows elsewhere than one ClickHouse server"),
        }
    }

    pub fn clickhouse_mut(&mut self) -> &mut ClickHouse {
        match &mut self.warehouse {
            Warehouse::Server(server) => server,
            _ => panic!("this stack keeps its rows elsewhere than one ClickHouse server"),
        }
    }

    async fn start_on(
        mut nodes: Vec<Nats>,
        warehouse: Warehouse,
        ingest_env: &[(&str, &str)],
        query_env: &[(&str, &str)],
    ) -> Result<Self> {
        let logs = test_dir("datacat-stack-")?;
        let nats_url = urls_as(&nodes, NatsRole::Ingest);
        let query_nats_url = urls_as(&nodes, NatsRole::Query);
        let nats = nodes.remove(0);
        let database = "datacat".to_string();

        let status = Self::command(&nats_url, &warehouse, &database, "datacat-ingest")?
            .arg("migrate")
            .status()
            .context("running datacat-ingest migrate")?;
        ensure!(status.success(), "datacat-ingest migrate failed: {status}");

        let query_port = free_port();
        let mut query = Self::command(&query_nats_url, &warehouse, &database, "datacat-query")?;
        query.env("DATACAT_LISTEN", format!("127.0.0.1:{query_port}"));
        query.envs(query_env.iter().copied());
        let query = ChildGuard::spawn("datacat-query", query, &logs.path().join("query.log"))?;
        let query_url = format!("http://127.0.0.1:{query_port}");

        let mut stack = Self {
            nats,
            nats_peers: nodes,
            nats_url,
            warehouse,
            database,
            query_url,
            ingest: Vec::new(),
            ingest_ports: Vec::new(),
            ingest_env: ingest_env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            query,
            logs,
        };
        stack.add_ingest_worker().await?;
        wait_http_ok(
            &format!("{}/health", stack.query_url),
            Duration::from_secs(30),
            "datacat-query",
        )
        .await?;
        Ok(stack)
    }

    fn command(
        nats_url: &str,
        warehouse: &Warehouse,
        database: &str,
        bin: &str,
    ) -> Result<Command> {
        let mut command = Command::new(datacat_bin(bin)?);
        // One replica per NATS server: on a cluster, streams and buckets live on every node.
        let replicas = datacat_protocol::subject::nats_servers(nats_url).len();
        command
            .env("DATACAT_NATS_URL", nats_url)
            .env("DATACAT_STREAM_REPLICAS", replicas.to_string())
            .envs(warehouse.env())
            .env("DATACAT_CLICKHOUSE_DATABASE", database)
            .env("RUST_LOG", "info");
        Ok(command)
    }

    /// Starts one more ingest worker and waits for its `/health`.
    pub async fn add_ingest_worker(&mut self) -> Result<()> {
        let port = free_port();
        let mut command = Self::command(
            &self.nats_url,
            &self.warehouse,
            &self.database,
            "datacat-ingest",
        )?;
        command.env("DATACAT_LISTEN", format!("127.0.0.1:{port}"));
        command.envs(self.ingest_env.iter().map(|(k, v)| (k, v)));
        let log = self
            .logs
            .path()
            .join(format!("ingest-{}.log", self.ingest.len()));
        self.ingest
            .push(ChildGuard::spawn("datacat-ingest", command, &log)?);
        self.ingest_ports.push(port);
        wait_http_ok(
            &format!("http://127.0.0.1:{port}/health"),
            Duration::from_secs(30),
            "datacat-ingest",
        )
        .await
    }

    /// One counter or gauge from ingest worker `index`'s /metrics.
    pub async fn ingest_metric(&self, index: usize, name: &str) -> Result<u64> {
        metric_at(self.ingest_ports[index], name).await
    }

    /// Waits (up to `timeout`) until one of these ingest workers has applied a message, and
    /// answers how many they have applied (0 when none did in time).
    pub async fn wait_ingest_busy(&self, workers: &[usize], timeout: Duration) -> u64 {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let mut applied = 0;
            for &worker in workers {
                applied += self
                    .ingest_metric(worker, "datacat_ingest_messages_total")
                    .await
                    .unwrap_or_default();
            }
            if applied > 0 || std::time::Instant::now() >= deadline {
                return applied;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Publishes batches as a daemon would (one message each, stored before the next), but
    /// without message ids: a test that sends a batch twice gets both copies to ingest.
    pub async fn publish(&self, batches: &[datacat_protocol::Batch]) -> Result<()> {
        let jetstream = self.jetstream().await?;
        for batch in batches {
            let mut message = datacat_jetstream::Outgoing::batch(batch)?;
            message.msg_id = None;
            for result in datacat_jetstream::publish_all(&jetstream, &[message]).await {
                result.map_err(anyhow::Error::msg)?;
            }
        }
        Ok(())
    }

    /// A JetStream context on this stack's NATS.
    /// Publishes every batch of `workload` (and `duplicates` re-publications), as daemons
    /// would.
    pub async fn publish_workload(
        &self,
        workload: &crate::workload::Workload,
        duplicates: usize,
    ) -> Result<()> {
        workload.publish(&self.jetstream().await?, duplicates).await
    }

    pub async fn jetstream(&self) -> Result<async_nats::jetstream::Context> {
        let options = async_nats::ConnectOptions::new();
        Ok(async_nats::jetstream::new(
            datacat_jetstream::connect_client(options, &self.nats_url).await?,
        ))
    }

    /// GETs a query-service path and parses the JSON answer; fails on non-2xx.
    pub async fn get_json(&self, path: &str) -> Result<Value> {
        let response = reqwest::get(format!("{}{path}", self.query_url)).await?;
        let status = response.status();
        let body = response.text().await?;
        ensure!(status.is_success(), "GET {path} answered {status}: {body}");
        Ok(serde_json::from_str(&body)?)
    }

    /// POSTs a JSON body to the query service: the status and the JSON answer (`null` if
    /// not JSON).
    pub async fn post_json(&self, path: &str, body: &Value) -> Result<(u16, Value)> {
        let url = format!("{}{path}", self.query_url);
        crate::answers::post(&reqwest::Client::new(), url, body.to_string()).await
    }

    /// Creates a session by direct write (`POST /api/sessions`); the query service connects
    /// to NATS in the background, so 503s are waited out for a few seconds.
    pub async fn create_direct(&self, body: &Value) -> Result<String> {
        let mut answer = (0, Value::Null);
        for _ in 0..100 {
            answer = self.post_json("/api/sessions", body).await?;
            if answer.0 != 503 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        ensure!(
            answer.0 == 200,
            "POST /api/sessions answered {}: {}",
            answer.0,
            answer.1
        );
        Ok(answer.1["session_id"]
            .as_str()
            .unwrap_or_default()
            .to_string())
    }

    /// Every node's URL, comma-separated, as `role`'s user.
    pub fn nats_url_as(&self, role: NatsRole) -> String {
        urls_as(std::iter::once(&self.nats).chain(&self.nats_peers), role)
    }

    /// The NATS cluster's node named `name` (`node-<i>`).
    pub fn nats_node(&mut self, name: &str) -> Option<&mut Nats> {
        std::iter::once(&mut self.nats)
            .chain(&mut self.nats_peers)
            .find(|node| node.name() == Some(name))
    }

    /// Environment a client process needs to reach this stack (its daemons publish as the
    /// daemon user).
    pub fn client_env(&self) -> Result<Vec<(String, String)>> {
        Ok(vec![
            (
                "DATACAT_NATS_URL".into(),
                self.nats_url_as(NatsRole::Daemon),
            ),
            ("DATACAT_QUERY_URL".into(), self.query_url.clone()),
            (
                "DATACAT_DAEMON_BIN".into(),
                datacat_bin("datacat-daemon")?.display().to_string(),
            ),
            (
                "DATACAT_SPOOL_DIR".into(),
                self.spool_dir().display().to_string(),
            ),
        ])
    }

    /// Where this stack's daemons spool (inside its temp dir, never the user's home).
    pub fn spool_dir(&self) -> PathBuf {
        self.logs.path().join("spool")
    }

    /// A daemon for this stack, as an application would start it.
    pub fn daemon(&self, name: &str, env: &[(&str, &str)]) -> Result<crate::Daemon> {
        crate::Daemon::start(
            &self.nats_url_as(NatsRole::Daemon),
            &self.spool_dir(),
            &self.logs.path().join(format!("{name}.log")),
            env,
        )
    }

    /// Polls a session until `done` holds for it; returns it. Fails after `timeout` with the
    /// last answer.
    /// Waits (up to 40 s) until a session has the given status; returns it.
    pub async fn wait_status(&self, id: &str, status: &str) -> Result<Value> {
        self.wait_session(id, Duration::from_secs(40), |s| s["status"] == status)
            .await
    }

    /// A session's events as the API lists them (the first 5000).
    pub async fn session_events(&self, id: &str) -> Result<Vec<Value>> {
        let page = self
            .get_json(&format!("/api/sessions/{id}/events?limit=5000"))
            .await?;
        Ok(page["events"].as_array().cloned().unwrap_or_default())
    }

    /// Waits until the session has an event.
    pub async fn wait_for_events(&self, id: &str, timeout: Duration) -> Result<Value> {
        self.wait_session(id, timeout, |s| {
            s["events"].as_array().is_some_and(|e| !e.is_empty())
        })
        .await
    }

    pub async fn wait_session(
        &self,
        id: &str,
        timeout: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Result<Value> {
        let deadline = std::time::Instant::now() + timeout;
        let mut last = Value::Null;
        loop {
            // Every row the API gives in one read (tests count events into the tens of
            // thousands).
            let path = format!("/api/sessions/{id}?limit=100000");
            if let Ok(session) = self.get_json(&path).await {
                if done(&session) {
                    return Ok(session);
                }
                last = session;
            }
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "session {id} did not reach the expected state within {timeout:?}; last: status={} events={}; logs in {}",
                last["status"],
                last["events"].as_array().map(Vec::len).unwrap_or_default(),
                self.log_dir().display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The service logs, for failure messages.
    pub fn log_dir(&self) -> PathBuf {
        self.logs.path().to_path_buf()
    }
}

/// One counter or gauge from the /metrics of the service listening on `port` (this host).
pub async fn metric_at(port: u16, name: &str) -> Result<u64> {
    metric_of(&format!("http://127.0.0.1:{port}"), name).await
}

/// One counter or gauge from the /metrics of the service at `base_url`.
pub async fn metric_of(base_url: &str, name: &str) -> Result<u64> {
    let text = reqwest::get(format!("{base_url}/metrics"))
        .await?
        .text()
        .await?;
    text.lines()
        .find_map(|line| {
            line.strip_prefix(name)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .with_context(|| format!("{name} not in /metrics"))
}

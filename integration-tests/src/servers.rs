//! NATS with JetStream and ClickHouse, each on free loopback ports in a temp dir.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use tempfile::TempDir;

use crate::binaries::{clickhouse_server_bin, nats_server_bin, repo_root};
use crate::process::{free_port, wait_http_ok, ChildGuard};

const CLICKHOUSE_CONFIG: &str = include_str!("../../deploy/clickhouse/config.xml");
/// The NATS users and their permissions, as every deployment runs them.
const NATS_AUTH: &str = include_str!("../../deploy/nats/auth.conf");

/// The NATS user a program connects as (`deploy/nats/auth.conf`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatsRole {
    /// Everything: ingest, and the tests' own publishing and inspection.
    Ingest,
    /// Direct writes.
    Query,
    /// Session batches only.
    Daemon,
}

impl NatsRole {
    pub const ALL: [NatsRole; 3] = [NatsRole::Ingest, NatsRole::Query, NatsRole::Daemon];

    pub fn user(self) -> &'static str {
        match self {
            NatsRole::Ingest => "datacat-ingest",
            NatsRole::Query => "datacat-query",
            NatsRole::Daemon => "datacat-daemon",
        }
    }

    /// The variable `deploy/nats/auth.conf` reads the role's password from.
    pub fn password_variable(self) -> &'static str {
        match self {
            NatsRole::Ingest => "DATACAT_NATS_INGEST_PASSWORD",
            NatsRole::Query => "DATACAT_NATS_QUERY_PASSWORD",
            NatsRole::Daemon => "DATACAT_NATS_DAEMON_PASSWORD",
        }
    }
}
/// jemalloc options for a ClickHouse that links the system's (Debian's 18.16), as
/// `deploy/lib.sh` starts it: allocations over 8 MiB (an insert's columns) are kept for reuse
/// instead of given back to the kernel when freed. ClickHouse's own builds use the same; a
/// `MALLOC_CONF` in the environment wins.
const CLICKHOUSE_MALLOC_CONF: &str = "oversize_threshold:0";
const CLICKHOUSE_USERS: &str = include_str!("../../deploy/clickhouse/users.xml");

/// Whether files in `dir` open with O_DIRECT, which ClickHouse's merges use (config.xml):
/// tmpfs before Linux 6.6 refuses it, and there 18.16 would fail every merge.
fn takes_direct_io(dir: &std::path::Path) -> bool {
    use std::os::unix::fs::OpenOptionsExt;
    let probe = dir.join("direct-io-probe");
    let opened = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .custom_flags(libc::O_DIRECT)
        .open(&probe);
    let _ = std::fs::remove_file(&probe);
    opened.is_ok()
}

pub struct Nats {
    pub port: u16,
    pub monitor_port: u16,
    /// The URL of the `datacat-ingest` user (every permission), for the tests' own use.
    pub url: String,
    /// Each role's password (fresh for this server).
    passwords: Vec<(NatsRole, String)>,
    /// In a cluster: this node's place in it.
    cluster: Option<Membership>,
    /// The server's `max_payload` (NATS's default, 1 MiB, when `None`); takes effect at
    /// the next start.
    pub max_payload: Option<usize>,
    process: Option<ChildGuard>,
    /// The server's container, and the configuration it was made with.
    #[cfg(feature = "containers")]
    container: Option<(crate::containers::Container, String)>,
    dir: TempDir,
    /// The Docker network a cluster's containers are on; after `container`, so that it is
    /// removed after the container (fields drop in order).
    #[cfg(feature = "containers")]
    network: Option<std::sync::Arc<crate::containers::Network>>,
}

/// A node's place in a NATS cluster: nodes `node-0` .. `node-<n-1>`, routing to each other
/// on loopback ports as local processes, by container name on a Docker network as
/// containers.
struct Membership {
    name: String,
    index: usize,
    /// Every node's route port (local processes).
    route_ports: Vec<u16>,
}

impl Membership {
    /// Every node's container name on `network` (unique on the engine).
    #[cfg(feature = "containers")]
    fn hosts(&self, network: &crate::containers::Network) -> Vec<String> {
        (0..self.route_ports.len())
            .map(|index| format!("{}-node-{index}", network.name))
            .collect()
    }
}

impl Nats {
    pub async fn start() -> Result<Self> {
        let mut nats = Self::new(None, Self::passwords())?;
        nats.restart().await?;
        Ok(nats)
    }

    /// A server that takes messages of at most `bytes` (payload and headers).
    pub async fn start_with_max_payload(bytes: usize) -> Result<Self> {
        let mut nats = Self::new(None, Self::passwords())?;
        nats.max_payload = Some(bytes);
        nats.restart().await?;
        Ok(nats)
    }

    /// A cluster of `nodes` JetStream servers (routes between all of them), ready once a
    /// JetStream meta leader is elected: containers on a Docker network of their own when
    /// containers can run, else local processes on loopback.
    pub async fn start_cluster(nodes: usize) -> Result<Vec<Self>> {
        let route_ports: Vec<u16> = (0..nodes).map(|_| free_port()).collect();
        let passwords = Self::passwords();
        #[cfg(feature = "containers")]
        let network = crate::containers::available()
            .then(crate::containers::Network::create)
            .transpose()?
            .map(std::sync::Arc::new);
        let mut cluster = (0..nodes)
            .map(|index| {
                let membership = Membership {
                    name: format!("node-{index}"),
                    index,
                    route_ports: route_ports.clone(),
                };
                #[allow(unused_mut)]
                let mut node = Self::new(Some(membership), passwords.clone())?;
                #[cfg(feature = "containers")]
                {
                    node.network = network.clone();
                }
                Ok(node)
            })
            .collect::<Result<Vec<_>>>()?;
        // Every node up before waiting for any: a meta leader takes a quorum.
        for node in &mut cluster {
            node.launch().await?;
        }
        for node in &cluster {
            node.wait_ready().await?;
        }
        Ok(cluster)
    }

    /// Fresh passwords for every role (one set for a whole cluster: a client logs in to
    /// whichever node it reaches with the same credentials).
    fn passwords() -> Vec<(NatsRole, String)> {
        NatsRole::ALL
            .iter()
            .map(|role| (*role, format!("{:x}", uuid::Uuid::now_v7().as_u128())))
            .collect()
    }

    fn new(cluster: Option<Membership>, passwords: Vec<(NatsRole, String)>) -> Result<Self> {
        let port = free_port();
        let ingest = &passwords[0].1;
        Ok(Self {
            port,
            monitor_port: free_port(),
            url: format!("nats://datacat-ingest:{ingest}@127.0.0.1:{port}"),
            passwords,
            cluster,
            max_payload: None,
            process: None,
            #[cfg(feature = "containers")]
            container: None,
            dir: crate::process::test_dir("nats-")?,
            #[cfg(feature = "containers")]
            network: None,
        })
    }

    /// The server's configuration: the users and permissions of every deployment, after
    /// this server's passwords.
    fn config(&self) -> String {
        let mut config: String = self
            .passwords
            .iter()
            .map(|(role, password)| format!("{}: \"{password}\"\n", role.password_variable()))
            .collect();
        config.push_str(NATS_AUTH);
        if let Some(bytes) = self.max_payload {
            config.push_str(&format!("\nmax_payload: {bytes}\n"));
        }
        config
    }

    /// This server's URL for `role`'s user.
    pub fn url_as(&self, role: NatsRole) -> String {
        let password = &self
            .passwords
            .iter()
            .find(|(r, _)| *r == role)
            .expect("every role")
            .1;
        format!("nats://{}:{password}@127.0.0.1:{}", role.user(), self.port)
    }

    /// Starts the server again on the same ports and store (after [`Nats::stop`]).
    pub async fn restart(&mut self) -> Result<()> {
        self.launch().await?;
        self.wait_ready().await
    }

    /// Starts the server: a container when containers can run, else a local process.
    async fn launch(&mut self) -> Result<()> {
        #[cfg(feature = "containers")]
        if crate::containers::available() {
            return self.launch_container().await;
        }
        self.spawn()
    }

    /// Starts the server's container again, or makes it when there is none or its
    /// configuration changed (`max_payload`): a new container on the same ports and store.
    #[cfg(feature = "containers")]
    async fn launch_container(&mut self) -> Result<()> {
        let config = self.config();
        if let Some((container, made_with)) = &self.container {
            if *made_with == config {
                return crate::containers::start_again(container).await;
            }
        }
        self.container = None;
        let on_network = self.cluster.as_ref().zip(self.network.as_deref());
        let hosts: Vec<String> = on_network
            .map(|(membership, network)| membership.hosts(network))
            .unwrap_or_default();
        let node = on_network.map(|(membership, network)| crate::containers::ClusterNode {
            network,
            host: &hosts[membership.index],
            server_name: &membership.name,
            hosts: &hosts,
        });
        let store = self.dir.path().join("store");
        let container =
            crate::containers::nats(self.port, self.monitor_port, config.clone(), &store, node)
                .await?;
        self.container = Some((container, config));
        Ok(())
    }

    /// Cuts this cluster node off its network: no peer and no client reaches it until
    /// [`Nats::reconnect`]. Only a node running in a container can be cut off.
    #[cfg(feature = "containers")]
    pub fn disconnect(&self) -> Result<()> {
        let (container, network) = self.on_network()?;
        crate::containers::disconnect(network, container)
    }

    /// Joins this node to its network again after [`Nats::disconnect`].
    #[cfg(feature = "containers")]
    pub fn reconnect(&self) -> Result<()> {
        let (container, network) = self.on_network()?;
        crate::containers::connect(network, container)
    }

    #[cfg(feature = "containers")]
    fn on_network(&self) -> Result<(&crate::containers::Container, &crate::containers::Network)> {
        match (&self.container, &self.network) {
            (Some((container, _)), Some(network)) => Ok((container, network)),
            _ => anyhow::bail!("this NATS server is not a container on a cluster's network"),
        }
    }

    fn spawn(&mut self) -> Result<()> {
        let mut command = Command::new(nats_server_bin()?);
        command
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-m", &self.monitor_port.to_string(), "-js", "-sd"])
            .arg(self.dir.path().join("store"));
        let path = self.dir.path().join("nats.conf");
        std::fs::write(&path, self.config())?;
        command.arg("-c").arg(path);
        if let Some(membership) = &self.cluster {
            let all: Vec<String> = membership
                .route_ports
                .iter()
                .map(|port| format!("nats://127.0.0.1:{port}"))
                .collect();
            let route = membership.route_ports[membership.index];
            command
                .args([
                    "--server_name",
                    &membership.name,
                    "--cluster_name",
                    "datacat",
                ])
                .args(["--cluster", &format!("nats://127.0.0.1:{route}")])
                .args(["--routes", &all.join(",")]);
        }
        let log = self.dir.path().join("nats.log");
        self.process = Some(ChildGuard::spawn("nats-server", command, &log)?);
        Ok(())
    }

    /// Healthy with JetStream; in a cluster, also knowing the meta leader.
    async fn wait_ready(&self) -> Result<()> {
        let health = format!(
            "http://127.0.0.1:{}/healthz?js-enabled-only=true",
            self.monitor_port
        );
        if let Err(error) = wait_http_ok(&health, Duration::from_secs(30), "nats-server").await {
            // Say why: a server that could not start has said so in its log.
            let log = std::fs::read_to_string(self.dir.path().join("nats.log")).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(10)..];
            anyhow::bail!("{error}; its log ends:\n{}", tail.join("\n"));
        }
        if self.cluster.is_none() {
            return Ok(());
        }
        let jsz = format!("http://127.0.0.1:{}/jsz", self.monitor_port);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(response) = reqwest::get(&jsz).await {
                let body: serde_json::Value = response.json().await.unwrap_or_default();
                if body["meta_cluster"]["leader"]
                    .as_str()
                    .is_some_and(|l| !l.is_empty())
                {
                    return Ok(());
                }
            }
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "the NATS cluster elected no JetStream meta leader within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The server's process id, when it runs as a local process (not in a container).
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(ChildGuard::pid)
    }

    /// This node's name in a cluster.
    pub fn name(&self) -> Option<&str> {
        self.cluster
            .as_ref()
            .map(|membership| membership.name.as_str())
    }

    /// Kills the server (its store stays).
    pub fn stop(&mut self) {
        #[cfg(feature = "containers")]
        if let Some((container, _)) = &self.container {
            crate::containers::stop(container);
        }
        self.process = None;
    }
}

pub struct ClickHouse {
    pub http_port: u16,
    /// The native protocol's port (what a cluster's servers reach each other on).
    pub tcp_port: u16,
    pub url: String,
    /// A member of a cluster runs as a local process, never a container: its peers reach it
    /// on loopback.
    #[cfg_attr(not(feature = "containers"), allow(dead_code))]
    in_cluster: bool,
    process: Option<ChildGuard>,
    #[cfg(feature = "containers")]
    container: Option<crate::containers::Container>,
    dir: TempDir,
}

impl ClickHouse {
    pub async fn start() -> Result<Self> {
        Self::start_configured(free_port(), free_port(), None).await
    }

    /// A server on these ports with `cluster_config` (its `remote_servers`, `zookeeper` and
    /// `macros`) added to the configuration every deployment runs.
    pub(crate) async fn start_configured(
        http_port: u16,
        tcp_port: u16,
        cluster_config: Option<&str>,
    ) -> Result<Self> {
        let dir = crate::process::test_dir("clickhouse-")?;
        let users = dir.path().join("users.xml");
        std::fs::write(&users, CLICKHOUSE_USERS)?;
        let direct_io = u8::from(takes_direct_io(dir.path())).to_string();
        let mut config = CLICKHOUSE_CONFIG
            .replace("{{HTTP_PORT}}", &http_port.to_string())
            .replace("{{TCP_PORT}}", &tcp_port.to_string())
            .replace("{{INTERSERVER_PORT}}", &free_port().to_string())
            .replace("{{DATA_DIR}}", &dir.path().display().to_string())
            .replace("{{USERS_XML}}", &users.display().to_string())
            .replace("{{MERGE_DIRECT_IO}}", &direct_io);
        if let Some(extra) = cluster_config {
            config = config.replace("</yandex>", &format!("{extra}\n</yandex>"));
        }
        std::fs::create_dir_all(dir.path().join("logs"))?;
        let config_path = dir.path().join("config.xml");
        std::fs::write(&config_path, config)?;
        let mut clickhouse = Self {
            http_port,
            tcp_port,
            url: format!("http://127.0.0.1:{http_port}"),
            in_cluster: cluster_config.is_some(),
            process: None,
            #[cfg(feature = "containers")]
            container: None,
            dir,
        };
        clickhouse
            .restart()
            .await
            .context("starting clickhouse-server")?;
        Ok(clickhouse)
    }

    pub async fn restart(&mut self) -> Result<()> {
        let ping = format!("{}/ping", self.url);
        #[cfg(feature = "containers")]
        if !self.in_cluster && crate::containers::available() {
            match &self.container {
                Some(container) => crate::containers::start_again(container).await?,
                None => self.container = Some(crate::containers::clickhouse(self.http_port).await?),
            }
            return wait_http_ok(&ping, Duration::from_secs(90), "clickhouse container").await;
        }
        let mut command = Command::new(clickhouse_server_bin()?);
        let bin_name = command.get_program().to_string_lossy().to_string();
        if bin_name.ends_with("/clickhouse") {
            command.arg("server");
        }
        command.arg(format!(
            "--config-file={}",
            self.dir.path().join("config.xml").display()
        ));
        if std::env::var_os("MALLOC_CONF").is_none() {
            command.env("MALLOC_CONF", CLICKHOUSE_MALLOC_CONF);
        }
        command.current_dir(repo_root());
        let log = self.dir.path().join("stdout.log");
        self.process = Some(ChildGuard::spawn("clickhouse-server", command, &log)?);
        wait_http_ok(&ping, Duration::from_secs(60), "clickhouse-server").await
    }

    pub fn stop(&mut self) {
        #[cfg(feature = "containers")]
        if let Some(container) = &self.container {
            crate::containers::stop(container);
        }
        self.process = None;
    }

    /// What an operator does for a replica killed in the middle of an insert, which will not
    /// start on its own ("The local set of parts of table ... doesn't look like the set of
    /// parts in ZooKeeper"): at its next start it sets aside the parts ZooKeeper does not
    /// know and fetches what it misses from the other replicas.
    pub fn force_restore_data(&self) -> Result<()> {
        let flags = self.dir.path().join("data/flags");
        std::fs::create_dir_all(&flags)?;
        std::fs::write(flags.join("force_restore_data"), "")?;
        Ok(())
    }

    /// The server's process id, when it runs as a local process (not in a container).
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(ChildGuard::pid)
    }

    /// How many blocks the server has written into new parts since it started, and how many
    /// of them arrived already sorted by their table's key (it neither sorts nor reorders
    /// those). Read before and after a phase; see [`WrittenBlocks::since`].
    pub async fn written_blocks(&self) -> Result<WrittenBlocks> {
        let [written, already_sorted] = self
            .events([
                "MergeTreeDataWriterBlocks",
                "MergeTreeDataWriterBlocksAlreadySorted",
            ])
            .await?;
        Ok(WrittenBlocks {
            written,
            already_sorted,
        })
    }

    /// Rows the server has merged (read and rewritten by background merges of parts) since it
    /// started: work an insert leaves behind, done whenever the server gets to it.
    pub async fn merged_rows(&self) -> Result<u64> {
        let [merged] = self.events(["MergedRows"]).await?;
        Ok(merged)
    }

    /// Counters from `system.events` since the server started (0 for one not counted yet).
    async fn events<const N: usize>(&self, names: [&str; N]) -> Result<[u64; N]> {
        let sums: Vec<String> = names
            .iter()
            .map(|name| format!("sumIf(value, event = '{name}')"))
            .collect();
        let body = self
            .sql(&format!("SELECT {} FROM system.events", sums.join(", ")))
            .await?;
        let counts: Vec<u64> = body
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()
            .ok()
            .filter(|counts: &Vec<u64>| counts.len() == N)
            .ok_or_else(|| anyhow::anyhow!("unexpected system.events answer: {body:?}"))?;
        Ok(counts.try_into().expect("N counts, checked above"))
    }

    /// Runs one SQL statement over HTTP and returns the body.
    pub async fn sql(&self, sql: &str) -> Result<String> {
        post_sql(&self.url, sql).await
    }

    /// How DataCat reaches `database` on this server (compressed, as by default).
    pub fn connection(&self, database: &str) -> datacat_warehouse::Connection {
        datacat_warehouse::Connection {
            url: self.url.clone(),
            database: database.to_string(),
            user: None,
            password: None,
            cluster: None,
            compression: datacat_warehouse::WireCompression::Lz4,
        }
    }
}

/// Runs one SQL statement on the ClickHouse HTTP interface at `url`; the answer's body.
pub async fn post_sql(url: &str, sql: &str) -> Result<String> {
    let response = reqwest::Client::new()
        .post(url)
        .body(sql.to_string())
        .send()
        .await?;
    let status = response.status();
    let body = response.text().await?;
    anyhow::ensure!(status.is_success(), "clickhouse answered {status}: {body}");
    Ok(body)
}

/// Blocks ClickHouse wrote into new parts, and how many of them came sorted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WrittenBlocks {
    pub written: u64,
    pub already_sorted: u64,
}

impl WrittenBlocks {
    /// The blocks written since `start`.
    pub fn since(self, start: Self) -> Self {
        Self {
            written: self.written - start.written,
            already_sorted: self.already_sorted - start.already_sorted,
        }
    }
}

impl std::fmt::Display for WrittenBlocks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} of {} blocks already sorted",
            self.already_sorted, self.written
        )
    }
}

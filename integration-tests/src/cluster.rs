//! A replicated ClickHouse cluster on loopback: ZooKeeper (Debian's `zookeeper` package) and
//! shards × replicas ClickHouse servers, each a local process with its own ports and store.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::Result;
use tempfile::TempDir;

use crate::binaries::external_bin;
use crate::process::{eventually, free_port, ChildGuard};
use crate::servers::ClickHouse;

/// The cluster's name in every server's `remote_servers` (`DATACAT_CLICKHOUSE_CLUSTER`).
pub const CLUSTER: &str = "datacat";

pub struct ZooKeeper {
    pub port: u16,
    _process: ChildGuard,
    _dir: TempDir,
}

impl ZooKeeper {
    /// A standalone ZooKeeper, serving. (It says `imok` to `ruok` before it serves; 18.16
    /// connecting then gets no session and crashes at its first use.)
    pub async fn start() -> Result<Self> {
        let dir = crate::process::test_dir("zookeeper-")?;
        let port = free_port();
        let config = dir.path().join("zoo.cfg");
        std::fs::write(
            &config,
            format!(
                "tickTime=500\ndataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\n\
                 admin.enableServer=false\n4lw.commands.whitelist=srvr\n",
                dir.path().join("data").display()
            ),
        )?;
        let mut command = Command::new(external_bin("DATACAT_JAVA_BIN", &[], "java")?);
        // slf4j-simple (beside Debian's jar, when there) makes its log say something.
        let jar = zookeeper_jar()?;
        let mut classpath = jar.clone().into_os_string();
        let logger = jar.with_file_name("slf4j-simple.jar");
        if logger.is_file() {
            classpath.push(":");
            classpath.push(logger);
        }
        command
            .arg("-cp")
            .arg(classpath)
            .arg("org.apache.zookeeper.server.quorum.QuorumPeerMain")
            .arg(&config);
        let process = ChildGuard::spawn("zookeeper", command, &dir.path().join("log"))?;
        eventually(Duration::from_secs(60), "ZooKeeper serving", || async {
            Ok(srvr(port)
                .await
                .is_ok_and(|answer| answer.starts_with("Zookeeper version")))
        })
        .await?;
        Ok(Self {
            port,
            _process: process,
            _dir: dir,
        })
    }
}

/// ZooKeeper's `srvr` four-letter word: its version and mode once it serves.
async fn srvr(port: u16) -> Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    stream.write_all(b"srvr").await?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await?;
    Ok(answer)
}

/// Debian's ZooKeeper: `DATACAT_ZOOKEEPER_JAR`, else the `zookeeper` package's jar.
fn zookeeper_jar() -> Result<PathBuf> {
    external_bin(
        "DATACAT_ZOOKEEPER_JAR",
        &["/usr/share/java/zookeeper.jar"],
        "zookeeper.jar",
    )
}

/// Shards of replicas, as `remote_servers` declares them with `internal_replication` (a
/// `Distributed` insert goes to one replica of a shard; replication copies it to the others).
pub struct ClickHouseCluster {
    /// Shard by shard, replica by replica: `servers[shard * replicas + replica]`.
    pub servers: Vec<ClickHouse>,
    pub replicas: usize,
    pub zookeeper: ZooKeeper,
}

impl ClickHouseCluster {
    pub async fn start(shards: usize, replicas: usize) -> Result<Self> {
        let zookeeper = ZooKeeper::start().await?;
        let ports: Vec<(u16, u16)> = (0..shards * replicas)
            .map(|_| (free_port(), free_port()))
            .collect();
        let shard_xml: String = ports
            .chunks(replicas)
            .map(|shard| {
                let members: String = shard
                    .iter()
                    .map(|(_, tcp)| {
                        format!("<replica><host>127.0.0.1</host><port>{tcp}</port></replica>")
                    })
                    .collect();
                format!("<shard><internal_replication>true</internal_replication>{members}</shard>")
            })
            .collect();
        let mut servers = Vec::new();
        for (i, (http, tcp)) in ports.iter().enumerate() {
            let (shard, replica) = (i / replicas + 1, i % replicas + 1);
            let config = format!(
                "<remote_servers><{CLUSTER}>{shard_xml}</{CLUSTER}></remote_servers>\n\
                 <zookeeper><node><host>127.0.0.1</host><port>{}</port></node></zookeeper>\n\
                 <macros><shard>{shard:02}</shard><replica>r{replica}</replica></macros>\n\
                 <distributed_ddl><path>/clickhouse/task_queue/ddl</path></distributed_ddl>",
                zookeeper.port
            );
            servers.push(ClickHouse::start_configured(*http, *tcp, Some(&config)).await?);
        }
        Ok(Self {
            servers,
            replicas,
            zookeeper,
        })
    }

    pub fn server(&mut self, shard: usize, replica: usize) -> &mut ClickHouse {
        &mut self.servers[shard * self.replicas + replica]
    }
}

//! NATS and ClickHouse from their official images instead of local processes: with the
//! `containers` feature on and a Docker engine answering (`DOCKER_HOST` or
//! /var/run/docker.sock), every test that starts servers through [`crate::servers`] runs on
//! containers; otherwise on local processes. The same tests either way. Host ports are fixed
//! at creation, so a container stopped and started again (an outage test) keeps its address
//! and its data.

use std::path::Path;

use anyhow::Result;
use testcontainers::core::{IntoContainerPort, Mount, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};

pub type Container = ContainerAsync<GenericImage>;

/// The NATS image: `DATACAT_NATS_IMAGE` (as compose reads it; deploy/images.sh builds one
/// without a registry), else the official one.
fn nats_image() -> (String, String) {
    image_from_env("DATACAT_NATS_IMAGE", "nats:2.11-alpine")
}

/// The ClickHouse image: `DATACAT_CLICKHOUSE_IMAGE`, else the official one.
fn clickhouse_image() -> (String, String) {
    image_from_env(
        "DATACAT_CLICKHOUSE_IMAGE",
        "clickhouse/clickhouse-server:25.8",
    )
}

/// An image reference from `variable` or `default`, as (name, tag).
fn image_from_env(variable: &str, default: &str) -> (String, String) {
    let reference = std::env::var(variable).unwrap_or_else(|_| default.to_string());
    match reference.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name.to_string(), tag.to_string()),
        _ => (reference, "latest".to_string()),
    }
}

/// Whether a Docker engine is there to run containers.
pub fn available() -> bool {
    std::env::var_os("DOCKER_HOST").is_some() || Path::new("/var/run/docker.sock").exists()
}

/// A user-defined Docker network: the hosts of a cluster, reaching each other by container
/// name, each of which can be cut off ([`disconnect`]) and joined again ([`connect`]).
/// Removed when dropped.
pub struct Network {
    pub name: String,
}

impl Network {
    pub fn create() -> Result<Self> {
        let name = format!("datacat-test-{:x}", uuid::Uuid::now_v7().as_u128() as u64);
        docker(&["network", "create", &name])?;
        Ok(Self { name })
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        // The containers on it are removed as their handles drop, which can take a moment.
        for _ in 0..50 {
            if docker(&["network", "rm", &self.name]).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        eprintln!("docker network {} could not be removed", self.name);
    }
}

/// A cluster node's place on its network: its container's name (its peers' address for
/// it), its server name, and every node's container name (its routes).
pub struct ClusterNode<'a> {
    pub network: &'a Network,
    pub host: &'a str,
    pub server_name: &'a str,
    pub hosts: &'a [String],
}

/// The port NATS servers of a cluster route to each other on, inside their containers.
const NATS_ROUTE_PORT: u16 = 6222;

/// NATS with JetStream, client port on `port`, monitoring on `monitor`, its store in the
/// host's `store` (so that a container made again with another configuration keeps it);
/// with `node`, a member of a cluster on a Docker network.
pub async fn nats(
    port: u16,
    monitor: u16,
    config: String,
    store: &Path,
    node: Option<ClusterNode<'_>>,
) -> Result<Container> {
    std::fs::create_dir_all(store)?;
    let (name, tag) = nats_image();
    let mut command: Vec<String> = [
        "--config",
        "/etc/nats/datacat.conf",
        "--jetstream",
        "--store_dir",
        "/data",
        "--http_port",
        "8222",
    ]
    .map(String::from)
    .into();
    if let Some(node) = &node {
        let routes: Vec<String> = node
            .hosts
            .iter()
            .map(|host| format!("nats://{host}:{NATS_ROUTE_PORT}"))
            .collect();
        command.extend([
            "--server_name".into(),
            node.server_name.into(),
            "--cluster_name".into(),
            "datacat".into(),
            "--cluster".into(),
            format!("nats://0.0.0.0:{NATS_ROUTE_PORT}"),
            "--routes".into(),
            routes.join(","),
            // Clients reach the nodes on the host's published ports, not on the network's
            // addresses a node would tell them of.
            "--no_advertise".into(),
        ]);
    }
    let mut request = GenericImage::new(name, tag)
        .with_exposed_port(4222.tcp())
        .with_exposed_port(8222.tcp())
        .with_wait_for(WaitFor::message_on_stderr("Server is ready"))
        // The users and permissions of every deployment (`Nats::config`).
        .with_copy_to("/etc/nats/datacat.conf", config.into_bytes())
        .with_cmd(command)
        .with_mapped_port(port, 4222.tcp())
        .with_mapped_port(monitor, 8222.tcp())
        .with_mount(Mount::bind_mount(store.display().to_string(), "/data"));
    if let Some(node) = &node {
        request = request
            .with_network(node.network.name.clone())
            .with_container_name(node.host);
    }
    Ok(request.start().await?)
}

/// Cuts `container` off `network`: neither its peers nor the host reach it, nor it them.
pub fn disconnect(network: &Network, container: &Container) -> Result<()> {
    docker(&["network", "disconnect", &network.name, container.id()])
}

/// Joins `container` to `network` again (its published ports work again too).
pub fn connect(network: &Network, container: &Container) -> Result<()> {
    docker(&["network", "connect", &network.name, container.id()])
}

/// The docker command line, for what testcontainers does not do (networks).
fn docker(args: &[&str]) -> Result<()> {
    let output = std::process::Command::new("docker").args(args).output()?;
    anyhow::ensure!(
        output.status.success(),
        "docker {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(())
}

/// ClickHouse, HTTP interface on `http_port`, the default user open (as
/// the local test server's users.xml has it).
pub async fn clickhouse(http_port: u16) -> Result<Container> {
    let (name, tag) = clickhouse_image();
    Ok(GenericImage::new(name, tag)
        .with_exposed_port(8123.tcp())
        .with_wait_for(WaitFor::Nothing)
        .with_env_var("CLICKHOUSE_SKIP_USER_SETUP", "1")
        .with_mapped_port(http_port, 8123.tcp())
        .start()
        .await?)
}

/// Stops a container, keeping it (and its data) for [`start_again`]. Called from the
/// servers' synchronous `stop`, inside the tests' multi-threaded runtime.
pub fn stop(container: &Container) {
    tokio::task::block_in_place(|| {
        let _ = tokio::runtime::Handle::current().block_on(container.stop());
    });
}

pub async fn start_again(container: &Container) -> Result<()> {
    Ok(container.start().await?)
}

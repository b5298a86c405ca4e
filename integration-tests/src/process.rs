//! Child processes that are killed when their handle drops, and free ports.

use std::collections::hash_map::RandomState;
use std::collections::BTreeSet;
use std::hash::{BuildHasher, Hasher};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// A child process, killed and reaped on drop so a failing test leaves nothing behind.
pub struct ChildGuard {
    pub name: String,
    child: Option<Child>,
}

impl ChildGuard {
    /// Starts `command` with stdout and stderr appended to `log`.
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> Result<Self> {
        let out =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        command.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = command
            .spawn()
            .with_context(|| format!("starting {name}: {command:?}"))?;
        Ok(Self {
            name: name.to_string(),
            child: Some(child),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or_default()
    }

    /// Fails if the process has already exited.
    pub fn check_running(&mut self) -> Result<()> {
        if let Some(child) = self.child.as_mut() {
            if let Some(status) = child.try_wait()? {
                bail!("{} exited early with {status}", self.name);
            }
        }
        Ok(())
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn terminate(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        let Some(child) = self.child.as_mut() else {
            bail!("{} already stopped", self.name)
        };
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()?;
        if !status.success() {
            bail!("kill -TERM {} failed", child.id());
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait()? {
                self.child = None;
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("{} did not exit within {timeout:?} of SIGTERM", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Ports handed out by [`free_port`] in this process.
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// Where [`free_port`] picks from when the kernel's ephemeral range leaves room below it.
const LOWEST_LISTENING_PORT: u16 = 10_000;

/// A loopback port nobody listens on, for a server a test starts. It is picked below the
/// kernel's ephemeral range: a port from that range (what binding port 0 gives) can be taken
/// by any outgoing connection between this call and the server's bind, and a server that
/// cannot bind leaves its test waiting for it to come up (seen in CI: a `nats-server` not
/// ready in 30 s). Each port is handed out once per process, from a random starting point
/// so that test processes one after another do not reuse each other's.
pub fn free_port() -> u16 {
    let mut handed_out = HANDED_OUT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(below) = ephemeral_range_start().filter(|&start| start > LOWEST_LISTENING_PORT) {
        let span = u64::from(below - LOWEST_LISTENING_PORT);
        let offset = RandomState::new().build_hasher().finish() % span;
        for step in 0..span {
            let port = LOWEST_LISTENING_PORT + ((offset + step) % span) as u16;
            // All addresses: a container runtime publishes ports on every one.
            if !handed_out.contains(&port) && TcpListener::bind(("0.0.0.0", port)).is_ok() {
                handed_out.insert(port);
                return port;
            }
        }
    }
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map(|addr| addr.port())
            .expect("binding an ephemeral loopback port");
        if handed_out.insert(port) {
            return port;
        }
    }
}

/// The first port of the kernel's ephemeral range (Linux), if it can be read.
fn ephemeral_range_start() -> Option<u16> {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// A temporary directory for a server's store and logs, or a stack's logs, named `prefix…`:
/// removed when dropped, unless `DATACAT_KEEP_TEST_DIRS` is set (for a post-mortem; the path
/// is printed).
pub fn test_dir(prefix: &str) -> Result<tempfile::TempDir> {
    let keep = std::env::var_os("DATACAT_KEEP_TEST_DIRS").is_some();
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .disable_cleanup(keep)
        .tempdir()?;
    if keep {
        eprintln!("kept for a post-mortem: {}", dir.path().display());
    }
    Ok(dir)
}

/// Polls `url` until it answers 2xx, or fails after `timeout` with `what` in the message.
pub async fn wait_http_ok(url: &str, timeout: Duration, what: &str) -> Result<()> {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(response) = client.get(url).timeout(Duration::from_secs(2)).send().await {
            if response.status().is_success() {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("{what} did not become ready at {url} within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls an async condition until it holds, or fails after `timeout`.
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let deadline = Instant::now() + timeout;
    let mut last_error = None;
    loop {
        match check().await {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(error) => last_error = Some(error),
        }
        if Instant::now() > deadline {
            match last_error {
                Some(error) => {
                    bail!("{what} did not happen within {timeout:?}; last error: {error:#}")
                }
                None => bail!("{what} did not happen within {timeout:?}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_distinct_bindable_and_below_the_ephemeral_range() {
        let ports: Vec<u16> = (0..50).map(|_| free_port()).collect();
        let distinct: BTreeSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len(), "a port handed out twice");
        if let Some(start) = ephemeral_range_start().filter(|&s| s > LOWEST_LISTENING_PORT) {
            assert!(
                ports.iter().all(|&port| port < start),
                "{ports:?} vs {start}"
            );
        }
        for port in ports {
            TcpListener::bind(("127.0.0.1", port)).expect("a handed-out port binds");
        }
    }
}

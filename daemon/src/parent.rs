//! Noticing that the application is gone: EOF on stdin (the pipe the application holds),
//! or its PID disappearing (guarded against PID reuse by the process start time).

use std::sync::Arc;
use std::time::Duration;

use datacat_protocol::time::now_ms;
use datacat_protocol::{EndStatus, SessionEnd};
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::sessions::Registry;

const PID_POLL: Duration = Duration::from_millis(250);

/// Waits for the application to go away, then marks its open sessions crashed and starts
/// the daemon's shutdown (which flushes and delivers first).
pub async fn watch(parent_pid: Option<u32>, registry: Arc<Registry>, shutdown: CancellationToken) {
    let start_time = parent_pid.and_then(process_start_time);
    let reason = tokio::select! {
        reason = stdin_closed() => reason,
        reason = pid_gone(parent_pid, start_time) => reason,
        _ = shutdown.cancelled() => return,
    };
    let end = SessionEnd {
        ts_ms: now_ms(),
        status: EndStatus::Crashed,
        reason: reason.clone(),
    };
    let crashed = registry.end_all(&end);
    if crashed > 0 {
        warn!(crashed, %reason, "application gone with open sessions; marked crashed");
    } else {
        info!(%reason, "application gone");
    }
    shutdown.cancel();
}

async fn stdin_closed() -> String {
    let mut stdin = tokio::io::stdin();
    let mut buffer = [0u8; 256];
    loop {
        match stdin.read(&mut buffer).await {
            Ok(0) | Err(_) => {
                return "application exited without ending the session (its pipe closed)".into()
            }
            Ok(_) => {} // Clients never write; ignore anything that arrives.
        }
    }
}

async fn pid_gone(pid: Option<u32>, start_time: Option<u64>) -> String {
    let Some(pid) = pid else {
        return std::future::pending().await;
    };
    loop {
        tokio::time::sleep(PID_POLL).await;
        match process_start_time(pid) {
            Some(now) if Some(now) == start_time || start_time.is_none() => {}
            Some(_) => return format!("application process {pid} exited (its PID was reused)"),
            None => return format!("application process {pid} exited without ending the session"),
        }
    }
}

/// The process start time (field 22 of /proc/PID/stat), or None if it is gone or a zombie.
fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    if fields.first() == Some(&"Z") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_start_time() {
        let me = std::process::id();
        assert!(process_start_time(me).is_some());
        assert_eq!(process_start_time(me), process_start_time(me));
        assert_eq!(process_start_time(u32::MAX - 1), None);
    }
}

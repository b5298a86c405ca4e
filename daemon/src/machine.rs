//! What machine and process a session runs on, captured once per daemon.

use std::sync::OnceLock;

use datacat_protocol::MachineInfo;
use sha2::{Digest, Sha256};
use sysinfo::{CpuRefreshKind, MemoryRefreshKind, RefreshKind, System};

/// Machine facts plus the given process's pid, executable and user.
pub fn info(pid: Option<u32>) -> MachineInfo {
    static MACHINE: OnceLock<MachineInfo> = OnceLock::new();
    let mut info = MACHINE.get_or_init(machine).clone();
    let pid = pid.unwrap_or_else(parent_pid);
    info.pid = pid;
    info.executable = std::fs::read_link(format!("/proc/{pid}/exe"))
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    info.user = process_user(pid).unwrap_or_default();
    info
}

fn machine() -> MachineInfo {
    let refresh = RefreshKind::nothing()
        .with_cpu(CpuRefreshKind::nothing())
        .with_memory(MemoryRefreshKind::nothing().with_ram());
    let system = System::new_with_specifics(refresh).ok();
    let cpus = system.as_ref().map(|s| s.cpus()).unwrap_or_default();
    MachineInfo {
        hostname: System::host_name().unwrap_or_default(),
        machine_id: machine_id(),
        os_name: System::name().unwrap_or_default(),
        os_version: System::os_version().unwrap_or_default(),
        cpu_model: cpus
            .first()
            .map(|c| c.brand().trim().to_string())
            .unwrap_or_default(),
        cpu_count: cpus.len() as u32,
        total_memory_bytes: system
            .as_ref()
            .map(System::total_memory)
            .unwrap_or_default(),
        ..MachineInfo::default()
    }
}

/// The OS machine id, hashed so the raw id never leaves the machine.
fn machine_id() -> String {
    ["/etc/machine-id", "/var/lib/dbus/machine-id"]
        .iter()
        .find_map(|path| std::fs::read_to_string(path).ok())
        .map(|raw| raw.trim().to_string())
        .filter(|raw| !raw.is_empty())
        .map(|raw| {
            let digest = Sha256::digest(format!("datacat:{raw}").as_bytes());
            digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
        })
        .unwrap_or_default()
}

fn parent_pid() -> u32 {
    std::os::unix::process::parent_id()
}

/// The user name owning `pid`, from /proc and /etc/passwd.
fn process_user(pid: u32) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .to_string();
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields.get(2) == Some(&uid.as_str()))
        .and_then(|fields| fields.first().map(|name| name.to_string()))
        .or(Some(uid))
}

//! A benchmark's settings, and what a process used.

/// A benchmark setting from the environment, or its default when unset or unparsable.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What a process has used so far, from `/proc/<pid>/stat`: CPU seconds in user space and
/// in the kernel, and page faults that mapped fresh memory (minor faults). All zero when it
/// cannot be read (not Linux, or the process is gone).
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct ProcessUse {
    pub user_seconds: f64,
    pub system_seconds: f64,
    pub minor_faults: u64,
}

impl ProcessUse {
    pub fn of(pid: u32) -> Self {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return Self::default();
        };
        // The command name (field 2) may contain spaces; the fields after it do not.
        let Some((_, after_name)) = stat.rsplit_once(')') else {
            return Self::default();
        };
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        // minflt, utime and stime are fields 10, 14 and 15 of the line: 7, 11 and 12 after
        // the name.
        let field = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let ticks = clock_ticks_per_second();
        Self {
            user_seconds: field(11) as f64 / ticks,
            system_seconds: field(12) as f64 / ticks,
            minor_faults: field(7),
        }
    }

    pub fn cpu_seconds(&self) -> f64 {
        self.user_seconds + self.system_seconds
    }

    /// What was used between `start` and this reading.
    pub fn since(self, start: Self) -> Self {
        Self {
            user_seconds: self.user_seconds - start.user_seconds,
            system_seconds: self.system_seconds - start.system_seconds,
            minor_faults: self.minor_faults.saturating_sub(start.minor_faults),
        }
    }
}

impl std::ops::Add for ProcessUse {
    type Output = Self;

    fn add(self, other: Self) -> Self {
        Self {
            user_seconds: self.user_seconds + other.user_seconds,
            system_seconds: self.system_seconds + other.system_seconds,
            minor_faults: self.minor_faults + other.minor_faults,
        }
    }
}

/// Asked once: every sample of the processes' CPU would otherwise start `getconf`.
fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok()?.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_used_some_cpu() {
        let spin = std::time::Instant::now();
        while spin.elapsed() < std::time::Duration::from_millis(50) {}
        assert!(ProcessUse::of(std::process::id()).cpu_seconds() > 0.0);
        assert_eq!(ProcessUse::of(u32::MAX).cpu_seconds(), 0.0);
        let before = ProcessUse::of(std::process::id());
        let touched = vec![1u8; 8 << 20];
        let used = ProcessUse::of(std::process::id()).since(before);
        assert!(
            used.minor_faults > 0,
            "touching 8 MiB faulted no page: {used:?}"
        );
        assert_eq!(touched.iter().map(|&b| b as usize).sum::<usize>(), 8 << 20);
    }
}

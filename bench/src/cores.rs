//! Which cores a benchmark's processes run on (`BENCH_LAYOUT`).
//!
//! On the 2-core development machines ClickHouse, NATS and the ingest workers share the
//! cores unless told otherwise, so a throughput ratio against a raw ClickHouse insert mostly
//! compares CPU costs: every CPU second ingest or NATS spends is taken from ClickHouse. In a
//! deployment ClickHouse has its own machine (and ingest workers are added on others), so the
//! question there is whether ingest keeps ClickHouse fed. The `dedicated` layout models that
//! on one machine: ClickHouse on the upper half of the cores, everything else (NATS, the
//! workers, the benchmark itself) on the lower half, for the raw insert and ingest alike.

use anyhow::{bail, ensure, Context, Result};

use crate::measure::env_or;

/// Where the benchmark's processes run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoreLayout {
    /// Every process on every core (the operating system's choice).
    Shared,
    /// ClickHouse alone on `clickhouse` (a `taskset` core list), the rest on `others`.
    Dedicated { clickhouse: String, others: String },
}

impl CoreLayout {
    /// From `BENCH_LAYOUT`: `shared` (the default) or `dedicated`.
    pub fn from_env() -> Result<Self> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::named(&env_or("BENCH_LAYOUT", "shared".to_string()), cores)
    }

    fn named(name: &str, cores: usize) -> Result<Self> {
        match name {
            "shared" => Ok(Self::Shared),
            "dedicated" => {
                ensure!(
                    cores >= 2,
                    "BENCH_LAYOUT=dedicated needs 2 cores or more; this machine has {cores}"
                );
                let half = cores / 2;
                Ok(Self::Dedicated {
                    clickhouse: format!("{}-{}", cores - half, cores - 1),
                    others: format!("0-{}", cores - half - 1),
                })
            }
            other => bail!("BENCH_LAYOUT must be shared or dedicated, not {other:?}"),
        }
    }

    /// One line saying where everything runs, for the benchmark's output.
    pub fn describe(&self) -> String {
        match self {
            Self::Shared => "shared: ClickHouse, NATS and ingest on all cores".to_string(),
            Self::Dedicated { clickhouse, others } => format!(
                "dedicated: ClickHouse alone on core(s) {clickhouse}; NATS, ingest and the benchmark on {others}"
            ),
        }
    }

    /// Moves ClickHouse (every thread it has; the ones it starts later inherit it).
    pub fn place_clickhouse(&self, pid: Option<u32>) -> Result<()> {
        match self {
            Self::Shared => Ok(()),
            Self::Dedicated { clickhouse, .. } => {
                pin(pid.context("ClickHouse is not running")?, clickhouse)
            }
        }
    }

    /// Moves any other process (NATS, a worker, the benchmark itself).
    pub fn place_other(&self, pid: Option<u32>) -> Result<()> {
        match self {
            Self::Shared => Ok(()),
            Self::Dedicated { others, .. } => {
                pin(pid.context("the process is not running")?, others)
            }
        }
    }
}

/// `taskset -a -p -c <cores> <pid>`: all of the process's threads.
fn pin(pid: u32, cores: &str) -> Result<()> {
    let out = std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", cores, &pid.to_string()])
        .output()
        .context("running taskset (util-linux)")?;
    ensure!(
        out.status.success(),
        "taskset -a -p -c {cores} {pid}: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clickhouse_gets_the_upper_half_of_the_cores() {
        assert_eq!(CoreLayout::named("shared", 1).unwrap(), CoreLayout::Shared);
        let dedicated = |clickhouse: &str, others: &str| CoreLayout::Dedicated {
            clickhouse: clickhouse.into(),
            others: others.into(),
        };
        assert_eq!(
            CoreLayout::named("dedicated", 2).unwrap(),
            dedicated("1-1", "0-0")
        );
        assert_eq!(
            CoreLayout::named("dedicated", 3).unwrap(),
            dedicated("2-2", "0-1")
        );
        assert_eq!(
            CoreLayout::named("dedicated", 8).unwrap(),
            dedicated("4-7", "0-3")
        );
        assert!(CoreLayout::named("dedicated", 1).is_err());
        assert!(CoreLayout::named("pinned", 2).is_err());
    }

    #[test]
    fn a_process_is_moved_to_the_cores_it_is_given() {
        if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
            return; // one core: nowhere to move it
        }
        let layout = CoreLayout::named("dedicated", 2).unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        layout.place_clickhouse(Some(child.id())).unwrap();
        let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
        let _ = child.kill();
        let _ = child.wait();
        let allowed = status
            .lines()
            .find_map(|line| line.strip_prefix("Cpus_allowed_list:"))
            .unwrap()
            .trim()
            .to_string();
        assert_eq!(allowed, "1");
    }
}

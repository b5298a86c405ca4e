//! Where the programs under test live.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// The repository root (this crate lives one level below it).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("crate has a parent dir")
        .to_path_buf()
}

/// The cargo profile dir this program was built into (`target/debug`, `target/release`):
/// test binaries live in its `deps/`, other binaries directly in it.
fn target_profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("own executable path");
    let dir = exe.parent().expect("executable has a dir");
    if dir.ends_with("deps") {
        dir.parent().expect("deps has a parent").to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

/// A DataCat binary built by this workspace (`cargo build --workspace --bins`).
pub fn datacat_bin(name: &str) -> Result<PathBuf> {
    let path = target_profile_dir().join(name);
    if !path.is_file() {
        bail!(
            "{} not found: run `cargo build --workspace --bins` first",
            path.display()
        );
    }
    Ok(path)
}

/// An external program: `$env_var`, then the repo's `.local/` candidates, then `PATH`.
pub fn external_bin(env_var: &str, local_candidates: &[&str], name: &str) -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(env_var) {
        let path = PathBuf::from(path);
        if path.is_file() {
            return Ok(path);
        }
        bail!("{env_var}={} does not exist", path.display());
    }
    let root = repo_root();
    for candidate in local_candidates {
        let path = root.join(candidate);
        if path.is_file() {
            return Ok(path);
        }
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let path = dir.join(name);
            if path.is_file() {
                return Ok(path);
            }
        }
    }
    bail!("{name} not found: set {env_var} or run deploy/test-all.sh, which installs it")
}

pub fn nats_server_bin() -> Result<PathBuf> {
    external_bin(
        "DATACAT_NATS_SERVER_BIN",
        &[".local/nats/bin/nats-server"],
        "nats-server",
    )
}

pub fn clickhouse_server_bin() -> Result<PathBuf> {
    external_bin("DATACAT_CLICKHOUSE_SERVER_BIN", &[], "clickhouse-server")
        .or_else(|_| external_bin("DATACAT_CLICKHOUSE_SERVER_BIN", &[], "clickhouse"))
        .or_else(|error| {
            let debian = PathBuf::from("/usr/sbin/clickhouse-server");
            if debian.is_file() {
                Ok(debian)
            } else {
                Err(error)
            }
        })
}

/// The directory schemathesis is installed in (`python3 -m schemathesis.cli` runs with it on
/// `PYTHONPATH`): `DATACAT_SCHEMATHESIS_DIR`, else `.local/schemathesis` (test-all.sh puts it
/// there).
pub fn schemathesis_dir() -> Result<PathBuf> {
    python_packages(
        "DATACAT_SCHEMATHESIS_DIR",
        ".local/schemathesis",
        "schemathesis",
    )
}

/// Where chdb-core (current ClickHouse in process) is installed, for `PYTHONPATH`:
/// `DATACAT_CHDB_DIR`, else `.local/chdb` (test-all.sh puts it there).
pub fn chdb_dir() -> Result<PathBuf> {
    python_packages("DATACAT_CHDB_DIR", ".local/chdb", "chdb")
}

/// Where virtualenv is installed (it makes the Python 2.7 environments of the wheel test):
/// `DATACAT_VIRTUALENV_DIR`, else `.local/virtualenv` (test-all.sh puts it there).
pub fn virtualenv_dir() -> Result<PathBuf> {
    python_packages("DATACAT_VIRTUALENV_DIR", ".local/virtualenv", "virtualenv")
}

/// The Python client's wheel (with the release daemon in it): `DATACAT_WHEEL`, else the one
/// `deploy/test-all.sh` builds into `<target>/wheels` (`datacat_wheel` in deploy/lib.sh).
pub fn python_wheel() -> Result<PathBuf> {
    if let Some(wheel) = std::env::var_os("DATACAT_WHEEL") {
        return Ok(PathBuf::from(wheel));
    }
    let dir = target_profile_dir()
        .parent()
        .expect("a profile dir is in the target dir")
        .join("wheels");
    let wheel = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path())
        .find(|path| {
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            name.starts_with("datacat_sessions-") && name.ends_with(".whl")
        });
    wheel.with_context(|| {
        format!(
            "no datacat_sessions wheel in {}: set DATACAT_WHEEL, or build it with \
             `python3 -m pip wheel --no-deps -w {} ./python` (deploy/test-all.sh does)",
            dir.display(),
            dir.display()
        )
    })
}

/// A directory of Python packages that holds `package`: `$env_var`, else `local` in the repo.
fn python_packages(env_var: &str, local: &str, package: &str) -> Result<PathBuf> {
    let dir = std::env::var_os(env_var)
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(local));
    if dir.join(package).is_dir() {
        return Ok(dir);
    }
    bail!(
        "{package} not found in {}: set {env_var} or run deploy/test-all.sh, which installs it",
        dir.display()
    )
}

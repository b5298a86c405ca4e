//! The Python client as users install it: the wheel (`pip wheel ./python`, with the release
//! daemon in it) installed into fresh virtual environments for Python 3 and Python 2.7.18,
//! and an application run from outside the repository, with no `DATACAT_DAEMON_BIN` and no
//! daemon on `PATH`: the client starts the wheel's daemon, and the session is there end to
//! end.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use datacat_integration_tests::binaries::{python_wheel, virtualenv_dir};
use datacat_integration_tests::{NatsRole, Stack};

const APPLICATION: &str = r#"
import sys
import datacat
from datacat import _daemon

binary, source = _daemon.locate_daemon_binary()
session = datacat.create_session(product="wheel-install", version=datacat.__version__)
session.update_state({"python": "%d.%d" % sys.version_info[:2]})
session.log_event("installed", data={"from": "wheel"})
session.log_metric("answer", 42)
session.end(reason="done")
print("%s %s" % (source, binary))
print(session.session_id)
"#;

/// Runs `program` with `env`'s variables only (and a plain PATH), in `cwd`.
fn run(program: &Path, args: &[&str], cwd: &Path, env: &[(String, String)]) -> Result<String> {
    let output = Command::new(program)
        .args(args)
        .current_dir(cwd)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", cwd)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .with_context(|| format!("running {}", program.display()))?;
    ensure!(
        output.status.success(),
        "{} {args:?} failed:\n{}\n{}",
        program.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// pyenv's Python `version`.
fn pyenv_python(version: &str) -> PathBuf {
    let root = std::env::var_os("PYENV_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".pyenv"));
    root.join("versions")
        .join(version)
        .join("bin")
        .join("python")
}

/// The `python3` the tests run with (through pyenv's shim, if that is what `PATH` has).
fn python3() -> PathBuf {
    let output = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("python3 runs");
    PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
}

/// Installs the wheel into a fresh virtual environment of `python` (virtualenv, with the
/// pip it carries), runs the application from a directory outside the repository, and
/// checks its session through the query API.
async fn installed_and_recorded(stack: &Stack, python: &Path) {
    let wheel = python_wheel().unwrap();
    let home = tempfile::tempdir().unwrap();
    let env_dir = home.path().join("env");
    let base = [
        ("PIP_DISABLE_PIP_VERSION_CHECK".to_string(), "1".to_string()),
        ("PIP_NO_INDEX".to_string(), "1".to_string()),
    ];
    let mut env = base.to_vec();
    env.push((
        "PYTHONPATH".into(),
        virtualenv_dir().unwrap().display().to_string(),
    ));
    run(
        &python3(),
        &[
            "-m",
            "virtualenv",
            "--no-periodic-update",
            "-p",
            python.to_str().unwrap(),
            env_dir.to_str().unwrap(),
        ],
        home.path(),
        &env,
    )
    .unwrap();
    let env_python = env_dir.join("bin").join("python");
    run(
        &env_python,
        &["-m", "pip", "install", "--no-deps", wheel.to_str().unwrap()],
        home.path(),
        &base,
    )
    .unwrap();

    let daemon = env_dir.join("bin").join("datacat-daemon");
    let version = run(&daemon, &["--version"], home.path(), &base).unwrap();
    assert_eq!(
        version.trim(),
        format!("datacat-daemon {}", env!("CARGO_PKG_VERSION")),
        "the wheel's daemon has the workspace's version"
    );

    let mut env = base.to_vec();
    env.push((
        "DATACAT_NATS_URL".into(),
        stack.nats_url_as(NatsRole::Daemon),
    ));
    env.push(("DATACAT_URL".into(), stack.query_url.clone()));
    env.push((
        "DATACAT_SPOOL_DIR".into(),
        stack.spool_dir().display().to_string(),
    ));
    let script = home.path().join("app.py");
    std::fs::write(&script, APPLICATION).unwrap();
    let output = run(&env_python, &["app.py"], home.path(), &env).unwrap();
    let lines: Vec<&str> = output.lines().collect();
    let (found, session_id) = (lines[lines.len() - 2], lines[lines.len() - 1]);
    assert_eq!(
        found,
        format!("package {}", daemon.display()),
        "the client started the wheel's daemon"
    );

    let session = stack
        .wait_session(session_id, Duration::from_secs(60), |s| {
            s["status"] == "ended" && s["events"].as_array().is_some_and(|e| e.len() == 1)
        })
        .await
        .unwrap();
    assert_eq!(session["product"], "wheel-install");
    assert_eq!(session["events"][0]["name"], "installed");
    assert_eq!(session["metrics"][0]["value"], 42.0);
    assert_eq!(session["end_reason"], "done");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wheel_installed_on_python_3_records_a_session() {
    let stack = Stack::start().await.expect("stack starts");
    installed_and_recorded(&stack, &python3()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wheel_installed_on_python_2_7_records_a_session() {
    let stack = Stack::start().await.expect("stack starts");
    installed_and_recorded(&stack, &pyenv_python("2.7.18")).await;
}

/// The wheel is tagged for both Pythons and for the glibc its daemon needs, and its
/// version is the workspace's.
#[test]
fn the_wheel_is_one_platform_wheel_for_python_2_and_3() -> Result<()> {
    let wheel = python_wheel()?;
    let name = wheel.file_name().unwrap().to_string_lossy().into_owned();
    let version = env!("CARGO_PKG_VERSION");
    ensure!(
        name.starts_with(&format!(
            "datacat_sessions-{version}-py2.py3-none-manylinux_2_"
        )),
        "{name}"
    );
    Ok(())
}

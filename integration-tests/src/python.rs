//! Running applications that use the real Python client against a [`Stack`].

use std::process::{Child, Command, Output, Stdio};

use anyhow::{ensure, Context, Result};

use crate::binaries::repo_root;
use crate::stack::Stack;

fn command(stack: &Stack, script: &str) -> Result<Command> {
    let mut command = Command::new("python3");
    command
        .arg("-c")
        .arg(script)
        .env("PYTHONPATH", repo_root().join("python"));
    for (key, value) in stack.client_env()? {
        command.env(key, value);
    }
    Ok(command)
}

/// Runs a script to completion; fails (with its output) unless it exits 0.
pub fn run(stack: &Stack, script: &str) -> Result<Output> {
    let output = command(stack, script)?
        .output()
        .context("running python3")?;
    ensure!(
        output.status.success(),
        "the Python app failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(output)
}

/// Starts a script with its stdout piped, for tests that kill it.
pub fn spawn(stack: &Stack, script: &str) -> Result<Child> {
    Ok(command(stack, script)?
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?)
}

/// The last line a finished script printed (tests print the session id last).
pub fn last_line(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_string()
}

//! The Go client's example program through the real daemon (or the query service's direct
//! writes), NATS, ingest, ClickHouse and query: what it logged must be exactly what the API
//! returns, and a panic must end its session crashed.

use std::process::Command;

use datacat_integration_tests::binaries::repo_root;
use datacat_integration_tests::{items, Stack};
use serde_json::{json, Value};

/// Builds go/examples/demo once (Go's own cache makes rebuilds cheap).
fn build_demo(dir: &std::path::Path) -> std::path::PathBuf {
    let binary = dir.join("go-demo");
    let output = Command::new("go")
        .args(["build", "-o"])
        .arg(&binary)
        .arg("./examples/demo")
        .current_dir(repo_root().join("go"))
        .output()
        .expect("the go toolchain runs (Debian's golang-go)");
    assert!(
        output.status.success(),
        "go build failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    binary
}

/// Runs the demo with the stack's client environment; returns (success, last stdout line).
fn run_demo(stack: &Stack, binary: &std::path::Path, args: &[&str]) -> (bool, String) {
    let mut command = Command::new(binary);
    command.args(args);
    for (key, value) in stack.client_env().unwrap() {
        command.env(key, value);
    }
    let output = command.output().expect("the demo runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = stdout.lines().last().unwrap_or_default().trim().to_string();
    assert!(
        !last.is_empty(),
        "the demo printed no session id; stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), last)
}

fn values(session: &Value, name: &str) -> Vec<f64> {
    items(session, "metrics")
        .iter()
        .filter(|m| m["name"] == name)
        .map(|m| m["value"].as_f64().unwrap())
        .collect()
}

async fn check_story(stack: &Stack, id: &str, status: &str) -> (Value, Vec<Value>) {
    let session = stack.wait_status(id, status).await.unwrap();
    assert_eq!(session["product"], "go-demo");
    assert_eq!(
        session["state"],
        json!({"scene": "space", "player": {"level": 2}})
    );
    let all = stack.session_events(id).await.unwrap();
    let mut ticks: Vec<u64> = all
        .iter()
        .filter(|e| e["name"] == "tick")
        .map(|e| e["data"]["i"].as_u64().unwrap())
        .collect();
    ticks.sort_unstable();
    assert_eq!(ticks, (0..300).collect::<Vec<u64>>(), "every tick once");
    let exception = all
        .iter()
        .find(|e| e["name"] == "exception" && e["message"] == "probe lost")
        .expect("the logged error");
    assert_eq!(exception["data"], json!({"probe": "alpha"}));
    let frames = exception["exception"]["frames"].as_array().unwrap();
    assert_eq!(frames.last().unwrap()["function"], "main.run");
    assert_eq!(values(&session, "fps"), vec![58.0, 60.0, 61.0]);
    assert_eq!(values(&session, "asteroids").last(), Some(&5.0));
    assert_eq!(values(&session, "level_load").len(), 1);
    (session, all)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_sessions_arrive_exactly() {
    let stack = Stack::start().await.expect("stack starts");
    let build = tempfile::tempdir().unwrap();
    let demo = build_demo(build.path());

    let (ok, id) = run_demo(&stack, &demo, &[]);
    assert!(ok, "the demo succeeds");
    check_story(&stack, &id, "ended").await;

    // A panic: reported with its stack, the session crashed, the program still fails.
    let (ok, id) = run_demo(&stack, &demo, &["-panic"]);
    assert!(!ok, "the panic still fails the program");
    let (session, all) = check_story(&stack, &id, "crashed").await;
    assert!(
        session["end_reason"]
            .as_str()
            .unwrap()
            .contains("index out of range"),
        "{}",
        session["end_reason"]
    );
    let panic = all
        .iter()
        .find(|e| e["level"] == "critical" && e["name"] == "exception")
        .expect("the panic event");
    assert!(panic["exception"]["type"]
        .as_str()
        .unwrap()
        .starts_with("panic"));

    // Without a daemon: the query service's direct writes; the client totals the counter.
    let (ok, id) = run_demo(&stack, &demo, &["-direct", &stack.query_url]);
    assert!(ok, "the direct demo succeeds");
    let (session, _) = check_story(&stack, &id, "ended").await;
    assert_eq!(values(&session, "asteroids"), vec![2.0, 5.0]);
}

//! The Python client's async mode, its crash hook and its daemon-less mode, through the real
//! daemon (or the query service's direct writes), NATS, ingest, ClickHouse and query: what the
//! client logged must be exactly what the API returns.

use datacat_integration_tests::{python, Stack};
use serde_json::{json, Value};

/// Async mode through the daemon: 2000 events, typed metrics, state changed after the call.
const ASYNC_APP: &str = r#"
from datacat import create_session
s = create_session(product="py-async", version="3.0", async_mode=True, batch_size=250)
state = {"player": {"level": 1}, "window_state": {"open": ["main"]}}
s.update_state(state)
state["player"]["level"] = 99  # after the call: must not arrive
for i in range(2000):
    s.log_event("tick", level="info", data={"i": i})
for v in (10.0, 20.0, 30.0):
    s.log_gauge("fps", v, unit="fps")
with s.timer("level_load", unit="ms"):
    pass
s.update_state({"player": {"level": 2}})
stats = s.get_stats()
s.end()
stats = s.get_stats()
assert stats["dropped"] == 0 and stats["failed"] == 0 and stats["invalid"] == 0, stats
print(s.session_id)
"#;

/// An uncaught exception: the session must end crashed, with the exception as an event.
const CRASHING_APP: &str = r#"
import sys
from datacat import create_session
s = create_session(product="py-crash", version="3.0", async_mode=True)
s.log_event("about_to_fail")
sys.stdout.write(s.session_id + "\n")
sys.stdout.flush()
def reactor():
    raise RuntimeError("reactor overload")
reactor()
"#;

/// No daemon: straight to the query service's direct-write endpoints, batched.
const DIRECT_APP: &str = r#"
import os
from datacat import create_session
s = create_session(os.environ["DATACAT_QUERY_URL"], product="py-direct", version="3.0", use_daemon=False,
                   async_mode=True, batch_size=100)
s.update_state({"mode": "direct", "n": 1})
for i in range(500):
    s.log_event("step", data={"i": i})
s.log_metric("memory_usage", 512.0, unit="MB")
s.log_counter("saves", 2)
s.log_counter("saves", 3)  # the query service keeps no totals: the client sends 2, then 5
s.end()
stats = s.get_stats()
assert stats["sent"] == 504 and stats["failed"] == 0, (stats, s.client.last_error)
print(s.session_id)
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_async_crash_and_direct_sessions_arrive_exactly() {
    let stack = Stack::start().await.expect("stack starts");

    // Async mode through the daemon.
    let id = python::last_line(&python::run(&stack, ASYNC_APP).expect("async app runs"));
    let session = stack.wait_status(&id, "ended").await.unwrap();
    assert_eq!(
        session["state"],
        json!({"player": {"level": 2}, "window_state": {"open": ["main"]}})
    );
    let ticks = stack.session_events(&id).await.unwrap();
    assert_eq!(ticks.len(), 2000, "every event once");
    let mut seen: Vec<u64> = ticks
        .iter()
        .map(|e| e["data"]["i"].as_u64().unwrap())
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..2000).collect::<Vec<u64>>());
    let metrics = session["metrics"].as_array().unwrap();
    let fps: Vec<f64> = metrics
        .iter()
        .filter(|m| m["name"] == "fps")
        .map(|m| m["value"].as_f64().unwrap())
        .collect();
    assert_eq!(fps, vec![10.0, 20.0, 30.0]);
    let timers: Vec<&Value> = metrics
        .iter()
        .filter(|m| m["name"] == "level_load")
        .collect();
    assert_eq!(timers.len(), 1);
    assert_eq!(timers[0]["type"], "timer");
    assert_eq!(timers[0]["unit"], "ms");

    // The uncaught exception.
    let output = python::spawn(&stack, CRASHING_APP)
        .expect("crashing app starts")
        .wait_with_output()
        .unwrap();
    assert!(!output.status.success(), "the app itself still fails");
    let id = String::from_utf8_lossy(&output.stdout).trim().to_string();
    let session = stack.wait_status(&id, "crashed").await.unwrap();
    assert!(
        session["end_reason"]
            .as_str()
            .unwrap()
            .contains("RuntimeError: reactor overload"),
        "{}",
        session["end_reason"]
    );
    let crash_events = stack.session_events(&id).await.unwrap();
    let names: Vec<&str> = crash_events
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"about_to_fail"), "{names:?}");
    let exception = crash_events
        .iter()
        .find(|e| e["name"] == "exception")
        .expect("the exception event");
    assert_eq!(exception["level"], "critical");
    assert_eq!(exception["exception"]["type"], "RuntimeError");
    let frames = exception["exception"]["frames"].as_array().unwrap();
    assert_eq!(frames.last().unwrap()["function"], "reactor");

    // Without a daemon.
    let id = python::last_line(&python::run(&stack, DIRECT_APP).expect("direct app runs"));
    let session = stack.wait_status(&id, "ended").await.unwrap();
    assert_eq!(session["state"], json!({"mode": "direct", "n": 1}));
    assert_eq!(stack.session_events(&id).await.unwrap().len(), 500);
    let metrics = session["metrics"].as_array().unwrap();
    assert_eq!(metrics.len(), 3);
    let saves: Vec<f64> = metrics
        .iter()
        .filter(|m| m["name"] == "saves")
        .map(|m| m["value"].as_f64().unwrap())
        .collect();
    assert_eq!(saves, vec![2.0, 5.0]);
}

//! A real Python session through the real daemon, NATS, ingest, ClickHouse and query: the
//! API must return exactly what was logged.

use std::time::Duration;

use datacat_integration_tests::process::eventually;
use datacat_integration_tests::{items, python, Stack};
use serde_json::{json, Value};

/// Logs a known story and prints the session id as the last line.
const APP: &str = r#"
import json, sys
from datacat import create_session

s = create_session(product="e2e-game", version="2.0.1")
s.update_state({"window_state": {"open": ["w1", "w2"], "active": "w1"}, "memory": {"footprint_mb": 50}})
s.update_state({"window_state": {"open": ["w1", "w2", "space probe"]}})
s.update_state({"window_state": {"open": ["w1", "w2", "space probe"]}})  # unchanged: filtered
s.update_state({"memory": None, "player": {"name": "Zoë <b>", "level": 3}})
s.log_event("level_loaded", level="info", message="loaded", data={"level": 3, "ok": True}, labels=["io"])
s.log_event("low_fps", level="warning", data={"fps": 12.5})
s.log_metric("fps", 59.5, unit="fps")
s.log_metric("fps", 61.0, unit="fps", tags=["scene:space"])
s.log_metric("memory_usage", 1024.25, unit="MB")
s.end()
print(s.session_id)
"#;

fn run_app(stack: &Stack) -> String {
    python::last_line(&python::run(stack, APP).expect("the Python app runs"))
}

fn strip(values: &Value, keep: &[&str]) -> Vec<Value> {
    values
        .as_array()
        .expect("array")
        .iter()
        .map(|item| {
            Value::Object(
                keep.iter()
                    .map(|k| (k.to_string(), item[*k].clone()))
                    .collect(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_session_arrives_exactly() {
    let stack = Stack::start().await.expect("stack starts");
    let session_id = run_app(&stack);

    let path = format!("/api/sessions/{session_id}");
    eventually(
        Duration::from_secs(30),
        "the ended session to be visible",
        || {
            let (stack, path) = (&stack, path.clone());
            async move {
                Ok(stack
                    .get_json(&path)
                    .await
                    .is_ok_and(|found| found["status"] == "ended"))
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}; logs in {}", stack.log_dir().display()));
    let session = stack.get_json(&path).await.unwrap();

    assert_eq!(session["product"], "e2e-game");
    assert_eq!(session["version"], "2.0.1");
    assert_eq!(session["active"], false);
    assert_eq!(session["crashed"], false);
    assert!(session["ended_at"].is_string());
    assert!(!session["machine"]["hostname"]
        .as_str()
        .unwrap_or_default()
        .is_empty());
    assert!(session["machine"]["pid"].as_u64().unwrap_or_default() > 0);

    let final_state = json!({
        "window_state": {"open": ["w1", "w2", "space probe"], "active": "w1"},
        "player": {"name": "Zoë <b>", "level": 3}
    });
    assert_eq!(session["state"], final_state);

    let history: Vec<Value> = items(&session, "state_history")
        .iter()
        .map(|s| s["state"].clone())
        .collect();
    assert_eq!(
        history,
        vec![
            json!({"window_state": {"open": ["w1", "w2"], "active": "w1"}, "memory": {"footprint_mb": 50}}),
            json!({"window_state": {"open": ["w1", "w2", "space probe"], "active": "w1"}, "memory": {"footprint_mb": 50}}),
            final_state.clone(),
        ],
        "one snapshot per change; the unchanged update is filtered"
    );

    assert_eq!(
        strip(
            &session["events"],
            &["name", "level", "message", "data", "labels"]
        ),
        vec![
            json!({"name": "level_loaded", "level": "info", "message": "loaded", "data": {"level": 3, "ok": true}, "labels": ["io"]}),
            json!({"name": "low_fps", "level": "warning", "message": "", "data": {"fps": 12.5}, "labels": []}),
        ]
    );
    assert_eq!(
        strip(
            &session["metrics"],
            &["name", "type", "value", "unit", "tags"]
        ),
        vec![
            json!({"name": "fps", "type": "gauge", "value": 59.5, "unit": "fps", "tags": []}),
            json!({"name": "fps", "type": "gauge", "value": 61.0, "unit": "fps", "tags": ["scene:space"]}),
            json!({"name": "memory_usage", "type": "gauge", "value": 1024.25, "unit": "MB", "tags": []}),
        ]
    );

    let list = stack
        .get_json("/api/sessions?product=e2e-game")
        .await
        .unwrap();
    let ids: Vec<&str> = items(&list, "sessions")
        .iter()
        .filter_map(|s| s["id"].as_str())
        .collect();
    assert_eq!(ids, vec![session_id.as_str()]);
    let none = stack.get_json("/api/sessions?product=other").await.unwrap();
    assert_eq!(none["sessions"], json!([]));

    let missing = reqwest::get(format!("{}/api/sessions/nope", stack.query_url))
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body["error"], "not_found");
}

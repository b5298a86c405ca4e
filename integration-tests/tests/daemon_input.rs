//! Bad input gets a clear 4xx JSON error, and the daemon keeps serving the good input
//! around it.

use std::time::Duration;

use datacat_integration_tests::{items, Stack};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_is_rejected_and_the_daemon_keeps_serving() {
    let stack = Stack::start().await.expect("stack starts");
    let daemon = stack
        .daemon("daemon", &[("DATACAT_MAX_BODY_BYTES", "65536")])
        .unwrap();
    let id = daemon.register("robust", "1").await.unwrap();

    let huge = "x".repeat(100_000);
    let cases: Vec<(&str, String, u16, &str)> = vec![
        ("/register", "not json".into(), 400, "bad_request"),
        ("/register", "{}".into(), 400, "bad_request"),
        (
            "/register",
            json!({"product": "p", "version": " "}).to_string(),
            400,
            "bad_request",
        ),
        (
            "/state",
            json!({"session_id": id, "state": [1, 2]}).to_string(),
            400,
            "bad_request",
        ),
        (
            "/state",
            json!({"state": {"a": 1}}).to_string(),
            400,
            "bad_request",
        ),
        (
            "/state",
            json!({"session_id": "nope", "state": {"a": 1}}).to_string(),
            404,
            "not_found",
        ),
        (
            "/event",
            json!({"session_id": id, "name": ""}).to_string(),
            400,
            "bad_request",
        ),
        (
            "/event",
            json!({"session_id": id, "name": "e", "level": "loud"}).to_string(),
            400,
            "bad_request",
        ),
        (
            "/event",
            json!({"session_id": id, "name": "e", "data": "text"}).to_string(),
            400,
            "bad_request",
        ),
        (
            "/metric",
            json!({"session_id": id, "name": "m", "value": "high"}).to_string(),
            400,
            "bad_request",
        ),
        (
            "/metric",
            format!(r#"{{"session_id": "{id}", "name": "m", "value": NaN}}"#),
            400,
            "bad_request",
        ),
        (
            "/heartbeat",
            json!({"session_id": id, "timeout": -1}).to_string(),
            400,
            "bad_request",
        ),
        (
            "/batch",
            json!({"session_id": id, "items": "many"}).to_string(),
            400,
            "bad_request",
        ),
        ("/nowhere", "{}".into(), 404, "not_found"),
        (
            "/event",
            format!(r#"{{"session_id": "{id}", "name": "{huge}"}}"#),
            413,
            "payload_too_large",
        ),
        ("/state", "\u{0}\u{1}\u{2}".into(), 400, "bad_request"),
    ];
    for (path, body, status, code) in cases {
        let (got, answer) = daemon.post_raw(path, body.clone()).await.unwrap();
        assert_eq!(
            (got, answer["error"].as_str().unwrap_or_default()),
            (status, code),
            "POST {path} {:.80}",
            body
        );
        assert!(
            !answer["message"].as_str().unwrap_or_default().is_empty(),
            "a clear message for {path}"
        );
    }
    let wrong_method = reqwest::Client::new()
        .get(format!("{}/register", daemon.url))
        .bearer_auth(&daemon.token)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_method.status().as_u16(), 405);

    // A batch with bad items: the good ones around them are applied.
    let (status, answer) = daemon
        .post_raw(
            "/batch",
            json!({"session_id": id, "items": [
                {"kind": "event", "name": "first"},
                {"kind": "event", "name": ""},
                {"kind": "metric", "name": "fps", "value": 60},
                {"kind": "teleport"},
                {"kind": "state", "state": {"ok": true}},
            ]})
            .to_string(),
        )
        .await
        .unwrap();
    assert_eq!(status, 400);
    assert_eq!(answer["accepted"], 3);
    let rejected: Vec<u64> = items(&answer, "rejected")
        .iter()
        .map(|r| r["index"].as_u64().unwrap())
        .collect();
    assert_eq!(rejected, vec![1, 3]);

    daemon
        .post("/event", json!({"session_id": id, "name": "still_serving"}))
        .await
        .unwrap();
    // Python writes bare Infinity in histogram bounds: accepted as the overflow bucket.
    daemon
        .post_raw(
            "/metric",
            format!(r#"{{"session_id": "{id}", "name": "lat", "type": "histogram", "value": 0.2, "buckets": [0.1, 1, Infinity]}}"#),
        )
        .await
        .map(|(status, _)| assert_eq!(status, 200))
        .unwrap();
    daemon
        .post("/end", json!({"session_id": id}))
        .await
        .unwrap();
    let (status, answer) = daemon
        .post_raw(
            "/event",
            json!({"session_id": id, "name": "late"}).to_string(),
        )
        .await
        .unwrap();
    assert_eq!(
        (status, answer["error"].as_str().unwrap()),
        (409, "session_ended")
    );

    let session = stack
        .wait_session(&id, Duration::from_secs(30), |s| s["status"] == "ended")
        .await
        .unwrap();
    let names: Vec<&str> = items(&session, "events")
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["first", "still_serving"]);
    assert_eq!(session["state"], json!({"ok": true}));
    let metrics = session["metrics"].as_array().unwrap();
    assert_eq!(metrics.len(), 2, "{metrics:?}");
    let histogram = metrics.iter().find(|m| m["name"] == "lat").unwrap();
    assert_eq!(histogram["histogram"]["counts"], json!([0, 1, 0]));
}

/// Another local user's process can reach the daemon's port but not its token: it can
/// neither list sessions, nor end one, nor write to one. The token comes in the ready line;
/// `/health` and `/metrics` (counts only) stay open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_without_the_daemons_token_is_refused() {
    let stack = Stack::start().await.expect("stack starts");
    let daemon = stack.daemon("daemon", &[]).unwrap();
    let id = daemon.register("private", "1").await.unwrap();
    assert_eq!(
        daemon.token.len(),
        64,
        "a fresh 256-bit token: {}",
        daemon.token
    );
    let stranger = reqwest::Client::new();
    let calls = [
        (reqwest::Method::GET, "/sessions", String::new()),
        (
            reqwest::Method::GET,
            &*format!("/session?session_id={id}"),
            String::new(),
        ),
        (
            reqwest::Method::POST,
            "/end",
            json!({"session_id": id}).to_string(),
        ),
        (
            reqwest::Method::POST,
            "/event",
            json!({"session_id": id, "name": "forged"}).to_string(),
        ),
        (
            reqwest::Method::POST,
            "/register",
            json!({"product": "p", "version": "1"}).to_string(),
        ),
    ];
    for (method, path, body) in &calls {
        for token in [None, Some("not-the-token"), Some(&daemon.token[..63])] {
            let mut request = stranger
                .request(method.clone(), format!("{}{path}", daemon.url))
                .body(body.clone());
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let response = request.send().await.unwrap();
            assert_eq!(
                response.status().as_u16(),
                401,
                "{method} {path} with {token:?}"
            );
            let answer: serde_json::Value = response.json().await.unwrap();
            assert_eq!(answer["error"], "unauthorized", "{answer}");
        }
    }
    let health = stranger
        .get(format!("{}/health", daemon.url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);
    // The session is untouched: still active, without the forged event.
    daemon
        .post("/event", json!({"session_id": id, "name": "mine"}))
        .await
        .unwrap();
    let session = stack
        .wait_session(&id, Duration::from_secs(30), |s| {
            items(s, "events").iter().any(|e| e["name"] == "mine")
        })
        .await
        .unwrap();
    assert_eq!(session["status"], "active");
    assert!(items(&session, "events")
        .iter()
        .all(|e| e["name"] != "forged"));
}

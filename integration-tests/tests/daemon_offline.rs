//! The daemon's client contract with NATS and the query service unreachable: black holes
//! (they accept connections and never answer) in their place. Every call answers as it does
//! online, at once; `/end` within about a second (the data is in the spool);
//! `/session` is what the daemon holds, in the query service's shape; `/sessions` a list.
//! Timing bounds are wide: what they catch took 10 s (an `/end` waiting for JetStream) or
//! a timeout per read.

use std::time::{Duration, Instant};

use datacat_integration_tests::{BlackHole, Daemon};
use serde_json::{json, Value};

fn within(started: Instant, bound: Duration, what: &str) {
    let took = started.elapsed();
    assert!(took < bound, "{what} took {took:?} (bound {bound:?})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_nats_and_the_query_service_black_holed_every_call_answers() {
    let nats = BlackHole::start().unwrap();
    let query = BlackHole::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(
        &nats.nats_url(),
        &dir.path().join("spool"),
        &dir.path().join("daemon.log"),
        &[("DATACAT_QUERY_URL", &query.http_url())],
    )
    .expect("the daemon starts without NATS");

    let started = Instant::now();
    let id = daemon.register("space-game", "1.5.0").await.unwrap();
    within(started, Duration::from_secs(1), "/register");
    let ok = json!({"status": "ok"});
    let calls = [
        (
            "/state",
            json!({"session_id": id, "state": {"level": 3, "ship": {"fuel": 80}}}),
        ),
        ("/event", json!({"session_id": id, "name": "launch"})),
        (
            "/metric",
            json!({"session_id": id, "name": "fps", "value": 59.5}),
        ),
        ("/heartbeat", json!({"session_id": id})),
    ];
    for (path, body) in calls {
        let started = Instant::now();
        assert_eq!(daemon.post(path, body).await.unwrap(), ok, "{path}");
        within(started, Duration::from_secs(1), path);
    }

    // The query service does not answer: one timeout (3 s), then the daemon's own view.
    let started = Instant::now();
    let view = daemon
        .get(&format!("/session?session_id={id}"))
        .await
        .unwrap();
    within(started, Duration::from_secs(8), "the first /session");
    assert_eq!(view["source"], "daemon", "{view}");
    assert_eq!(view["active"], true);
    assert_eq!(view["state"], json!({"level": 3, "ship": {"fuel": 80}}));
    for key in [
        "id",
        "created_at",
        "updated_at",
        "ended_at",
        "events",
        "metrics",
        "state_history",
    ] {
        assert!(view.get(key).is_some(), "{key} missing from {view}");
    }
    assert_eq!(view["events"], json!([]));
    let connections = query.connections();
    assert!(connections >= 1, "the daemon asked the query service");
    let started = Instant::now();
    daemon
        .get(&format!("/session?session_id={id}"))
        .await
        .unwrap();
    within(
        started,
        Duration::from_secs(1),
        "a second /session (backing off)",
    );
    assert_eq!(query.connections(), connections, "no second request");

    let started = Instant::now();
    let end = daemon
        .post("/end", json!({"session_id": id}))
        .await
        .unwrap();
    within(
        started,
        Duration::from_secs(4),
        "/end with NATS unreachable",
    );
    assert_eq!(end["status"], "ok");
    assert_eq!(end["delivered"], false, "NATS never acknowledged: {end}");
    assert!(
        end["last_seq"].as_u64().is_some(),
        "the last batch, to read back: {end}"
    );

    let view = daemon
        .get(&format!("/session?session_id={id}"))
        .await
        .unwrap();
    assert_eq!(view["active"], false, "{view}");
    assert_eq!(view["status"], "ended");
    assert!(view["ended_at"].is_string());
    let all: Value = daemon.get("/sessions").await.unwrap();
    let listed = all.as_array().expect("/sessions is a list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], id.as_str());

    // Registering the same id again (a client retrying) is harmless; a new one works.
    let (status, answer) = daemon
        .post_raw(
            "/register",
            json!({"product": "p", "version": "1", "session_id": "not-a-uuid"}).to_string(),
        )
        .await
        .unwrap();
    assert_eq!(status, 400, "{answer}");
    let chosen = "01939d5e-7c2a-7b3e-9c1d-2f4a5b6c7d8e";
    for _ in 0..2 {
        let answer = daemon
            .post(
                "/register",
                json!({"product": "p", "version": "1", "session_id": chosen}),
            )
            .await
            .unwrap();
        assert_eq!(answer["session_id"], chosen);
    }
    let listed: Value = daemon.get("/sessions").await.unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
}

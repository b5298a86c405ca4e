//! How sessions end: a killed application is `crashed` quickly, a normal exit without
//! `end()` is `ended` with a reason, and only monitored sessions can hang.

use std::io::{BufRead, BufReader};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use datacat_integration_tests::{items, python, Daemon, Stack};
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

fn ms(rfc3339: &Value) -> i128 {
    let text = rfc3339
        .as_str()
        .unwrap_or_else(|| panic!("a timestamp, not {rfc3339}"));
    OffsetDateTime::parse(text, &Rfc3339)
        .expect("RFC 3339")
        .unix_timestamp_nanos()
        / 1_000_000
}

fn now_ms() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i128
}

fn event_names(session: &Value) -> Vec<String> {
    items(session, "events")
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect()
}

/// Sends an event through the daemon and waits until the query service shows the session with
/// its events (the first one arrived).
async fn send_event(stack: &Stack, daemon: &Daemon, id: &str, name: &str) -> Value {
    daemon
        .post("/event", json!({"session_id": id, "name": name}))
        .await
        .unwrap();
    stack
        .wait_for_events(id, Duration::from_secs(30))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_application_is_crashed_within_two_seconds() {
    let stack = Stack::start().await.expect("stack starts");
    let mut app = python::spawn(
        &stack,
        r#"
import sys, time
from datacat import create_session
s = create_session(product="crashy", version="1")
s.update_state({"scene": "space probe"})
s.log_event("about_to_die", level="warning")
print(s.session_id)
sys.stdout.flush()
time.sleep(120)
"#,
    )
    .expect("app starts");
    let mut line = String::new();
    BufReader::new(app.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let id = line.trim().to_string();
    // Everything logged before the kill must have reached the daemon: give the calls
    // (synchronous in this client) no extra time. Then kill -9.
    let killed_at = now_ms();
    app.kill().unwrap();
    app.wait().unwrap();

    let session = stack
        .wait_session(&id, Duration::from_secs(30), |s| s["status"] == "crashed")
        .await
        .unwrap();
    // The daemon stamps the crash when it detects it: that is the detection latency,
    // independent of how long ingest took to show it.
    let detected_after = ms(&session["ended_at"]) - killed_at;
    assert!(
        detected_after <= 2000,
        "crash detected {detected_after} ms after the kill"
    );
    assert!(
        session["end_reason"].as_str().unwrap().contains("exited"),
        "{}",
        session["end_reason"]
    );
    assert_eq!(session["crashed"], true);
    assert_eq!(
        event_names(&session),
        vec!["about_to_die", "session_crashed"]
    );
    assert_eq!(session["state"], json!({"scene": "space probe"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_normal_exit_without_end_is_ended_with_a_reason() {
    let stack = Stack::start().await.expect("stack starts");
    let output = python::run(
        &stack,
        r#"
from datacat import create_session
s = create_session(product="forgetful", version="1")
s.log_event("work_done")
print(s.session_id)
"#,
    )
    .unwrap();
    let id = python::last_line(&output);
    let session = stack
        .wait_session(&id, Duration::from_secs(30), |s| s["status"] != "active")
        .await
        .unwrap();
    assert_eq!(session["status"], "ended");
    assert_eq!(
        session["end_reason"],
        "process exited without calling end()"
    );
    assert_eq!(event_names(&session), vec!["work_done"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_monitored_sessions_hang_and_they_recover() {
    let stack = Stack::start().await.expect("stack starts");
    let daemon = stack.daemon("daemon", &[]).unwrap();
    let silent = daemon.register("quiet", "1").await.unwrap();
    let monitored = daemon.register("watched", "1").await.unwrap();
    daemon
        .post(
            "/heartbeat",
            json!({"session_id": monitored, "timeout": 1.0}),
        )
        .await
        .unwrap();
    let beat_at = now_ms();

    let hung = stack
        .wait_session(&monitored, Duration::from_secs(30), |s| {
            s["status"] == "hung"
        })
        .await
        .unwrap();
    assert_eq!(hung["hang_count"], 1);
    let hang_event = &hung["events"][0];
    assert_eq!(hang_event["name"], "application_appears_hung");
    assert!(
        (ms(&hang_event["data"]["last_heartbeat"]) - beat_at).abs() < 1000,
        "{hang_event}"
    );
    let silence = ms(&hung["hung_at"]) - ms(&hang_event["data"]["last_heartbeat"]);
    assert!(
        silence > 1000,
        "hung after {silence} ms of silence, before the 1 s timeout passed"
    );

    daemon
        .post("/heartbeat", json!({"session_id": monitored}))
        .await
        .unwrap();
    let recovered = stack
        .wait_session(&monitored, Duration::from_secs(30), |s| {
            s["status"] == "active" && s["hang_count"] == 1
        })
        .await
        .unwrap();
    assert_eq!(
        event_names(&recovered),
        vec!["application_appears_hung", "application_recovered"]
    );
    assert!(recovered["last_heartbeat"].is_string());

    // The silent session stays silent for three timeouts; it never asked for monitoring,
    // so it must not hang (a session without a monitor is never hung). A probe
    // event afterwards proves ingest has seen everything the daemon produced before it.
    let silent_since = ms(&stack
        .get_json(&format!("/api/sessions/{silent}"))
        .await
        .unwrap()["created_at"]);
    let wait = (silent_since + 3000 - now_ms()).max(0) as u64;
    tokio::time::sleep(Duration::from_millis(wait)).await;
    let quiet = send_event(&stack, &daemon, &silent, "probe").await;
    assert_eq!(quiet["status"], "active");
    assert_eq!(quiet["hang_count"], 0);
    assert_eq!(event_names(&quiet), vec!["probe"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_whose_daemon_vanished_is_lost_but_a_quiet_one_is_not() {
    let stack = Stack::start_losing_after(3, 300)
        .await
        .expect("stack starts");
    let alive_every = [("DATACAT_ALIVE_INTERVAL_MS", "500")];
    let mut doomed = stack.daemon("doomed-daemon", &alive_every).unwrap();
    let quiet = stack.daemon("quiet-daemon", &alive_every).unwrap();
    let vanished = doomed.register("vanishing", "1").await.unwrap();
    let idle = quiet.register("idle", "1").await.unwrap();
    send_event(&stack, &doomed, &vanished, "last_words").await;
    doomed.kill().unwrap(); // No crash report can come from a dead daemon.

    let lost = stack
        .wait_session(&vanished, Duration::from_secs(30), |s| {
            s["status"] == "lost"
        })
        .await
        .unwrap();
    assert!(
        lost["end_reason"]
            .as_str()
            .unwrap()
            .contains("no word from the session's daemon"),
        "{}",
        lost["end_reason"]
    );
    assert_eq!(event_names(&lost), vec!["last_words", "session_lost"]);

    // The idle session said nothing all along, but its daemon kept it alive.
    let idle_session = stack
        .get_json(&format!("/api/sessions/{idle}"))
        .await
        .unwrap();
    assert!(now_ms() - ms(&idle_session["created_at"]) > 3000);
    assert_eq!(idle_session["status"], "active");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_outage_longer_than_lost_after_loses_no_session() {
    // lost_after must exceed the liveness interval plus a reconnect (daemons retry within 1 s).
    let mut stack = Stack::start_losing_after(4, 200)
        .await
        .expect("stack starts");
    let daemon = stack
        .daemon("daemon", &[("DATACAT_ALIVE_INTERVAL_MS", "300")])
        .unwrap();
    let id = daemon.register("patient", "1").await.unwrap();
    send_event(&stack, &daemon, &id, "before").await;

    // Nobody hears the daemon for 2.5 times lost_after; its liveness records wait in its
    // spool. Once NATS is back they arrive, and the sweeper must have waited for them.
    stack.nats.stop();
    tokio::time::sleep(Duration::from_secs(10)).await;
    stack.nats.restart().await.unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    daemon
        .post("/event", json!({"session_id": id, "name": "after"}))
        .await
        .unwrap();
    let session = stack
        .wait_session(&id, Duration::from_secs(30), |s| {
            s["events"].as_array().unwrap().len() >= 2
        })
        .await
        .unwrap();
    assert_eq!(session["status"], "active", "{}", session["end_reason"]);
    assert_eq!(event_names(&session), vec!["before", "after"]);
}

/// A daemon whose sessions have all ended and been delivered exits after its linger, but
/// not while the application still calls it (reading its sessions back, listing them): a
/// listing then comes from the daemon that holds them, not from a new, empty one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_lingers_while_its_application_still_calls() {
    let stack = Stack::start().await.expect("stack starts");
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(
        &stack.nats_url_as(datacat_integration_tests::NatsRole::Daemon),
        &dir.path().join("spool"),
        &dir.path().join("daemon.log"),
        &[("DATACAT_IDLE_EXIT_MS", "500")],
    )
    .unwrap();
    let id = daemon.register("lingers", "1.0").await.unwrap();
    daemon
        .post("/end", json!({"session_id": id}))
        .await
        .unwrap();
    // Calls every 200 ms for 3 s: six times the linger.
    for _ in 0..15 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let listed = daemon.get("/sessions").await.unwrap();
        assert!(
            listed.as_array().unwrap().iter().any(|s| s["id"] == id),
            "the ended session is listed: {listed}"
        );
        assert!(daemon.running().unwrap(), "the daemon exited while called");
    }
    // Left alone, it goes.
    let status = daemon.wait_exit(Duration::from_secs(10)).unwrap();
    assert!(status.success(), "{status}");
}

//! Calls too large for NATS: refused at the door, by the daemon and by direct writes (413, a
//! batch item listed as invalid) while everything around them arrives, with no gap in the
//! sequence; and a batch spooled before the daemon knew the server's limit is moved aside and
//! reported in its session, and never holds up what follows it. The NATS server here takes
//! messages of at most 64 KiB.

use std::time::Duration;

use datacat_integration_tests::{items, Daemon, Nats, Stack};
use serde_json::{json, Value};

const MAX_PAYLOAD: usize = 64 * 1024;

fn event_names(session: &Value) -> Vec<String> {
    items(session, "events")
        .iter()
        .map(|e| e["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// A daemon with a session whose first event arrived (so the daemon has heard the
/// server's limit).
async fn session_under_way(stack: &Stack) -> (Daemon, String) {
    let daemon = stack.daemon("daemon", &[]).unwrap();
    let id = daemon.register("big-data", "1").await.unwrap();
    send(&daemon, &id, "before", json!({})).await;
    stack
        .wait_for_events(&id, Duration::from_secs(30))
        .await
        .unwrap();
    (daemon, id)
}

async fn send(daemon: &Daemon, id: &str, name: &str, data: Value) {
    let event = json!({"session_id": id, "name": name, "data": data});
    daemon.post("/event", event).await.unwrap();
}

/// A batch answer: two items applied, the second refused.
fn second_item_refused((status, answer): (u16, Value)) {
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["accepted"], 2);
    assert_eq!(items(&answer, "rejected")[0]["index"], 1);
}

/// Waits until the session shows an event named `name`.
async fn arrived(stack: &Stack, id: &str, name: &str) -> Value {
    stack
        .wait_session(id, Duration::from_secs(60), |s| {
            event_names(s).iter().any(|n| n == name)
        })
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_too_large_for_nats_is_refused_and_what_follows_arrives() {
    let nats = Nats::start_with_max_payload(MAX_PAYLOAD).await.unwrap();
    let stack = Stack::start_on_nats(nats).await.expect("stack starts");
    let (daemon, id) = session_under_way(&stack).await;

    let blob = "x".repeat(100 * 1024);
    let (status, answer) = daemon
        .post_raw(
            "/event",
            json!({"session_id": id, "name": "huge", "data": {"blob": blob}}).to_string(),
        )
        .await
        .unwrap();
    assert_eq!(status, 413, "{answer}");
    assert_eq!(answer["error"], "payload_too_large");
    let message = answer["message"].as_str().unwrap();
    assert!(
        message.contains("the largest the daemon takes"),
        "{message}"
    );

    // Just under the limit still goes through.
    let fits = "y".repeat(40 * 1024);
    send(&daemon, &id, "large", json!({ "blob": fits })).await;

    // In a batch, only the item that is too large is refused.
    let answer = daemon
        .post_raw(
            "/batch",
            json!({"session_id": id, "items": [
                {"kind": "event", "name": "first"},
                {"kind": "event", "name": "huge", "data": {"blob": blob}},
                {"kind": "event", "name": "last"},
            ]})
            .to_string(),
        )
        .await
        .unwrap();
    second_item_refused(answer);

    let session = arrived(&stack, &id, "last").await;
    assert_eq!(
        event_names(&session),
        vec!["before", "large", "first", "last"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spooled_batch_nats_refuses_is_reported_and_holds_nothing_up() {
    let mut stack = Stack::start().await.expect("stack starts");
    let (daemon, id) = session_under_way(&stack).await;

    // The daemon knows a 1 MiB server and spools a 100 KiB event; the server comes back
    // taking 64 KiB at most.
    stack.nats.stop();
    let blob = "x".repeat(100 * 1024);
    send(&daemon, &id, "huge", json!({ "blob": blob })).await;
    tokio::time::sleep(Duration::from_millis(500)).await; // flushed into the spool
    stack.nats.max_payload = Some(MAX_PAYLOAD);
    stack.nats.restart().await.unwrap();
    send(&daemon, &id, "after", json!({})).await;

    // The loss report takes the refused batch's place: the session shows it, and what came
    // after it.
    let session = stack
        .wait_session(&id, Duration::from_secs(60), |s| {
            s["dropped_records"] == 1 && event_names(s).iter().any(|n| n == "after")
        })
        .await
        .unwrap();
    assert!(!event_names(&session).contains(&"huge".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_direct_write_too_large_for_nats_is_refused_before_it_takes_a_number() {
    let nats = Nats::start_with_max_payload(MAX_PAYLOAD).await.unwrap();
    let stack = Stack::start_on_nats(nats).await.expect("stack starts");
    let id = stack
        .create_direct(&json!({"product": "big-data", "version": "1"}))
        .await
        .unwrap();
    let events = format!("/api/sessions/{id}/events");
    let blob = "x".repeat(100 * 1024);
    let (status, answer) = stack
        .post_json(&events, &json!({"name": "huge", "data": {"blob": blob}}))
        .await
        .unwrap();
    assert_eq!(status, 413, "{answer}");
    assert_eq!(answer["error"], "payload_too_large");
    let (status, answer) = stack
        .post_json(&events, &json!({"name": "small"}))
        .await
        .unwrap();
    assert_eq!((status, answer["seq"].as_u64()), (200, Some(1)), "{answer}");

    // In a batch: the item too large is refused; the others (together larger than one
    // message) go as several batches.
    let fits = "y".repeat(30 * 1024);
    let batch = json!({"items": [
        {"kind": "event", "name": "a", "data": {"blob": fits}},
        {"kind": "event", "name": "huge", "data": {"blob": blob}},
        {"kind": "event", "name": "b", "data": {"blob": fits}},
    ]});
    let answer = stack
        .post_json(&format!("/api/sessions/{id}/batch"), &batch)
        .await
        .unwrap();
    second_item_refused(answer);

    let session = arrived(&stack, &id, "b").await;
    assert_eq!(event_names(&session), vec!["small", "a", "b"]);
    assert_eq!(
        session["gaps"], 0,
        "no number was taken and left unpublished"
    );
}

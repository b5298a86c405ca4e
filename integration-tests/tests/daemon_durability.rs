//! No loss and no duplicates: through a NATS outage, and through a daemon killed with a
//! non-empty spool.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use datacat_integration_tests::stack::metric_of;
use datacat_integration_tests::{items, Stack};
use serde_json::{json, Value};

/// Logs `count` events numbered from `first`, in `/batch` requests of 500.
async fn log_events(daemon: &datacat_integration_tests::Daemon, id: &str, first: u64, count: u64) {
    let mut next = first;
    while next < first + count {
        let end = (next + 500).min(first + count);
        let items: Vec<Value> = (next..end)
            .map(|i| json!({"kind": "event", "name": "tick", "data": {"i": i}}))
            .collect();
        daemon
            .post("/batch", json!({"session_id": id, "items": items}))
            .await
            .unwrap();
        next = end;
    }
}

/// A stack whose NATS is down, and a daemon that logged `events` events of a new session of
/// `product` into its spool: the stack, the daemon and the session.
async fn spooling_offline(
    product: &str,
    events: u64,
) -> (Stack, datacat_integration_tests::Daemon, String) {
    let mut stack = Stack::start().await.expect("stack starts");
    stack.nats.stop();
    let daemon = stack.daemon("first-daemon", &[]).unwrap();
    let id = daemon.register(product, "1").await.unwrap();
    log_events(&daemon, &id, 0, events).await;
    (stack, daemon, id)
}

/// Waits until the daemon's flush loop has spooled everything, then `kill -9`.
async fn kill_once_spooled(daemon: &mut datacat_integration_tests::Daemon) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let health = daemon.get("/health").await.unwrap();
        if health["pending_records"] == 0 && health["spooled_bytes"].as_u64().unwrap() > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "never spooled: {health}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    daemon.kill().unwrap();
}

fn event_numbers(session: &Value) -> Vec<u64> {
    items(session, "events")
        .iter()
        .filter_map(|e| e["data"]["i"].as_u64())
        .collect()
}

fn assert_exactly_once(session: &Value, expected: u64) {
    let numbers = event_numbers(session);
    let distinct: BTreeSet<u64> = numbers.iter().copied().collect();
    assert_eq!(
        numbers.len() as u64,
        expected,
        "every event exactly once (no duplicates)"
    );
    assert_eq!(
        distinct,
        (0..expected).collect::<BTreeSet<_>>(),
        "no event lost"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thirty_second_nats_outage_loses_nothing() {
    let mut stack = Stack::start().await.expect("stack starts");
    let mut daemon = stack.daemon("daemon", &[]).unwrap();
    let id = daemon.register("outage", "1").await.unwrap();
    log_events(&daemon, &id, 0, 1000).await;

    stack.nats.stop();
    let outage = Instant::now();
    // 49 000 more events spread over the outage.
    for round in 0..49u64 {
        log_events(&daemon, &id, 1000 + round * 1000, 1000).await;
        tokio::time::sleep(Duration::from_millis(550)).await;
    }
    let spooled = daemon.get("/health").await.unwrap()["spooled_bytes"]
        .as_u64()
        .unwrap();
    assert!(spooled > 0, "undelivered batches wait in the spool");
    tokio::time::sleep(Duration::from_secs(30).saturating_sub(outage.elapsed())).await;
    stack.nats.restart().await.unwrap();

    let end = daemon
        .post("/end", json!({"session_id": id}))
        .await
        .unwrap();
    assert_eq!(end["status"], "ok");
    let session = stack
        .wait_session(&id, Duration::from_secs(90), |s| {
            s["status"] == "ended" && s["events"].as_array().unwrap().len() >= 50_000
        })
        .await
        .unwrap();
    assert_exactly_once(&session, 50_000);
    assert_eq!(session["dropped_records"], 0);
    assert_eq!(session["gaps"], 0);
    // Its last session delivered, the daemon exits by itself (and cleanly).
    let status = daemon.wait_exit(Duration::from_secs(30)).unwrap();
    assert!(status.success(), "{status}");
    assert!(
        !stack.spool_dir().read_dir().unwrap().any(|_| true),
        "a clean exit leaves no spool behind"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_daemons_spool_is_delivered_by_the_next_daemon() {
    let (mut stack, mut first, id) = spooling_offline("phoenix", 3000).await;
    first
        .post(
            "/state",
            json!({"session_id": id, "state": {"phase": "before the kill"}}),
        )
        .await
        .unwrap();
    kill_once_spooled(&mut first).await;

    stack.nats.restart().await.unwrap();
    let next = stack.daemon("next-daemon", &[]).unwrap();
    let session = stack
        .wait_session(&id, Duration::from_secs(60), |s| {
            s["events"].as_array().unwrap().len() >= 3000
        })
        .await
        .unwrap();
    assert_exactly_once(&session, 3000);
    assert_eq!(session["state"], json!({"phase": "before the kill"}));
    assert_eq!(session["product"], "phoenix");
    let adopted = metric_of(&next.url, "datacat_daemon_adopted_spools_total").await;
    assert_eq!(adopted.unwrap(), 1);
    let health = next.get("/health").await.unwrap();
    assert_eq!(health["spooled_bytes"], 0, "{health}");
}

/// A dead daemon's spool that the next daemon must drop (over its byte cap, NATS still
/// down): the loss is reported in the dead daemon's session, which the next daemon never
/// knew, like any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adopted_spool_dropped_over_the_cap_is_reported_in_its_session() {
    let (mut stack, mut first, id) = spooling_offline("orphan", 2000).await;
    kill_once_spooled(&mut first).await;

    let next = stack
        .daemon("next-daemon", &[("DATACAT_SPOOL_MAX_BYTES", "4096")])
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric_of(&next.url, "datacat_daemon_dropped_batches_total")
        .await
        .unwrap_or(0)
        == 0
    {
        assert!(
            Instant::now() < deadline,
            "the adopted spool was never dropped"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stack.nats.restart().await.unwrap();
    let session = stack
        .wait_session(&id, Duration::from_secs(60), |s| {
            s["dropped_records"].as_u64() > Some(0)
        })
        .await
        .expect("the loss reaches the dead daemon's session");
    let dropped = session["dropped_records"].as_u64().unwrap();
    assert!(dropped >= 2000, "every record lost is counted: {session}");
    let reported = items(&session, "events")
        .iter()
        .any(|e| e["name"] == "data_dropped");
    assert!(reported, "the session's story shows the loss: {session}");
}

//! Rows ClickHouse refuses are not an outage: ingest narrows the refused insert down to the
//! batch whose rows are refused, dead-letters it with ClickHouse's message, and inserts the
//! rest, so one batch cannot stall a worker and every session it owns.
//!
//! What refuses the rows is ClickHouse itself: a materialized view on `events` that calls
//! `throwIf` for events named `poison` (code 395), as a check ClickHouse runs on the data.

use std::time::Duration;

use datacat_integration_tests::{items, Stack};
use datacat_protocol::record::SessionStart;
use datacat_protocol::subject::{DEAD_LETTER_REASON_HEADER, DEAD_LETTER_STREAM};
use datacat_protocol::{Batch, Event, MachineInfo, Record};
use serde_json::Value;

fn now_ms() -> u64 {
    datacat_protocol::time::now_ms()
}

fn batch(session_id: &str, seq: u64, records: Vec<Record>) -> Batch {
    Batch {
        session_id: session_id.into(),
        seq,
        records,
    }
}

fn start() -> Record {
    Record::Start(SessionStart {
        ts_ms: now_ms(),
        product: "refusals".into(),
        version: "1".into(),
        machine: MachineInfo::default(),
        ..Default::default()
    })
}

fn event(name: &str) -> Record {
    Record::Event(Event::named(now_ms(), name))
}

fn event_names(session: &Value) -> Vec<String> {
    items(session, "events")
        .iter()
        .map(|e| e["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_clickhouse_refuses_is_dead_lettered_and_the_rest_goes_in() {
    let stack = Stack::start_with(&[("DATACAT_GAP_MAX_DELIVERIES", "3")])
        .await
        .expect("stack starts");
    let db = &stack.database;
    stack
        .clickhouse()
        .sql(&format!(
            "CREATE MATERIALIZED VIEW {db}.refuse_poison ENGINE = Null AS \
             SELECT throwIf(name = 'poison') AS refused FROM {db}.events"
        ))
        .await
        .unwrap();

    // One group: a session with a refused batch between two good ones, and a bystander.
    stack
        .publish(&[
            batch("victim", 0, vec![start(), event("first")]),
            batch("victim", 1, vec![event("poison")]),
            batch("victim", 2, vec![event("after")]),
            batch("bystander", 0, vec![start(), event("fine")]),
        ])
        .await
        .unwrap();
    let arrived = |name: &'static str| move |s: &Value| event_names(s).iter().any(|n| n == name);
    stack
        .wait_session("bystander", Duration::from_secs(60), arrived("fine"))
        .await
        .expect("a session sharing the insert with a refused batch arrives");
    // The refused batch becomes a gap once its successor gave up waiting for it.
    let victim = stack
        .wait_session("victim", Duration::from_secs(90), |s| {
            s["gaps"] == 1 && arrived("after")(s)
        })
        .await
        .expect("the batches around the refused one arrive, the refused one is a gap");
    assert!(event_names(&victim).contains(&"first".to_string()));
    assert_eq!(victim["last_seq"], 2, "{victim}");

    // The worker goes on: a session started afterwards arrives.
    stack
        .publish(&[batch("canary", 0, vec![start(), event("canary")])])
        .await
        .unwrap();
    stack
        .wait_session("canary", Duration::from_secs(60), arrived("canary"))
        .await
        .expect("ingest goes on after a refusal");

    let js = stack.jetstream().await.unwrap();
    let mut dead = js.get_stream(DEAD_LETTER_STREAM).await.unwrap();
    assert_eq!(dead.info().await.unwrap().state.messages, 1);
    let letter = dead.get_raw_message(1).await.unwrap();
    let reason = letter
        .headers
        .get(DEAD_LETTER_REASON_HEADER)
        .map(|v| v.to_string())
        .unwrap_or_default();
    assert!(reason.contains("ClickHouse refused"), "{reason}");
    assert!(
        reason.contains("395"),
        "ClickHouse's message is kept: {reason}"
    );
    let head = datacat_protocol::decode_batch_head(&letter.payload).unwrap();
    assert_eq!((head.session_id.as_str(), head.seq), ("victim", 1));
    let refused = stack
        .ingest_metric(0, "datacat_ingest_refused_inserts_total")
        .await
        .unwrap();
    assert!(refused >= 1, "refused inserts are counted: {refused}");
}

//! Ingest against a ClickHouse slower than the ack wait. Its own test binary: the tests of
//! one binary run at once, each with its own servers, and `ingest_reliability.rs` already
//! starts five sets of them on two cores.

use std::time::Duration;

use datacat_integration_tests::workload::{check_expected, ingested, Workload};
use datacat_integration_tests::Stack;

/// ClickHouse slower than the ack wait (every insert into `events` sleeps 3 s in a
/// materialized view; the ack wait is 2 s): the worker keeps extending the deadlines of what
/// it holds, planned or being inserted, so JetStream redelivers nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inserts_slower_than_the_ack_wait_are_not_redelivered() {
    let stack = Stack::start_with(&[("DATACAT_ACK_WAIT_SECS", "2")])
        .await
        .expect("stack starts");
    let database = &stack.database;
    stack
        .clickhouse
        .sql(&format!(
            "CREATE MATERIALIZED VIEW {database}.slow_events ENGINE = Null \
             AS SELECT sleep(3) AS slept FROM {database}.events"
        ))
        .await
        .unwrap();
    let workload = Workload::generate("slow-inserts", 30, 6, 5, 11);
    workload
        .publish(&stack.jetstream().await.unwrap(), 0)
        .await
        .unwrap();
    let sessions = ingested(&stack, &workload, Duration::from_secs(120)).await;
    check_expected(&workload, &sessions);

    let metric = |name: &'static str| stack.ingest_metric(0, name);
    let inserts = metric("datacat_ingest_inserts_total").await.unwrap();
    let insert_micros = metric("datacat_ingest_insert_micros_total").await.unwrap();
    assert!(
        inserts > 0 && insert_micros / inserts >= 2_000_000,
        "inserts were slower than the ack wait ({inserts} took {insert_micros} µs)"
    );
    let duplicates = metric("datacat_ingest_duplicates_total").await.unwrap();
    assert_eq!(
        duplicates, 0,
        "redelivered messages were skipped as duplicates"
    );
}

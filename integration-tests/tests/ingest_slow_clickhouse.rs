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
    let stack = slow_stack(&[]).await;
    ingest_without_redeliveries(&stack, "slow-inserts").await;
}

/// The same with a worker that plans faster than ClickHouse inserts (small groups, small
/// fetches): its groups fill up while the previous one is being inserted, so planning waits,
/// and what it fetched meanwhile waits in its inbox, or in the fetcher for room there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_waiting_to_be_planned_are_not_redelivered() {
    let stack = slow_stack(&[
        ("DATACAT_INSERT_ROWS", "150"),
        ("DATACAT_FETCH_BATCH", "10"),
    ])
    .await;
    ingest_without_redeliveries(&stack, "slow-planning").await;
}

/// A stack with a 2 s ack wait whose ClickHouse takes 3 s for every insert into `events` (a
/// materialized view sleeps).
async fn slow_stack(ingest_env: &[(&str, &str)]) -> Stack {
    let mut env = vec![("DATACAT_ACK_WAIT_SECS", "2")];
    env.extend_from_slice(ingest_env);
    let stack = Stack::start_with(&env).await.expect("stack starts");
    let database = &stack.database;
    stack
        .clickhouse()
        .sql(&format!(
            "CREATE MATERIALIZED VIEW {database}.slow_events ENGINE = Null \
             AS SELECT sleep(3) AS slept FROM {database}.events"
        ))
        .await
        .unwrap();
    stack
}

/// Ingests a workload and checks that inserts were slower than the ack wait and that
/// JetStream redelivered nothing (no duplicates skipped).
async fn ingest_without_redeliveries(stack: &Stack, product: &str) {
    let workload = Workload::generate(product, 30, 6, 5, 11);
    workload
        .publish(&stack.jetstream().await.unwrap(), 0)
        .await
        .unwrap();
    let sessions = ingested(stack, &workload, Duration::from_secs(180)).await;
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

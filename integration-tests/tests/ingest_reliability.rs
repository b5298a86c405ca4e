//! Ingest gives the same visible result whatever happens: 1 worker or 3 with one killed
//! mid-stream, a ClickHouse outage, redeliveries, duplicates, out-of-order batches, poison.

use std::time::Duration;

use datacat_ingest::http::groups_series;
use datacat_ingest::insert_reason::InsertReason;
use datacat_integration_tests::stack::metric_at;
use datacat_integration_tests::workload::{check_expected, ingested, Workload};
use datacat_integration_tests::Stack;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_worker_and_three_with_one_killed_give_identical_results() {
    let workload = Workload::generate("workers", 150, 12, 8, 42);

    let one = Stack::start().await.expect("stack starts");
    workload
        .publish(&one.jetstream().await.unwrap(), 40)
        .await
        .unwrap();
    let by_one = ingested(&one, &workload, Duration::from_secs(120)).await;
    check_groups_have_reasons(&one).await;
    drop(one);
    check_expected(&workload, &by_one);

    let mut three = Stack::start().await.expect("stack starts");
    three.add_ingest_worker().await.unwrap();
    three.add_ingest_worker().await.unwrap();
    workload
        .publish(&three.jetstream().await.unwrap(), 40)
        .await
        .unwrap();
    // Kill worker 1 while it is busy: after it applied some messages, before the end.
    let applied_before_kill = three.wait_ingest_busy(&[1], Duration::from_secs(5)).await;
    three.ingest.remove(1); // kill -9 (SIGKILL on drop)
    three.ingest_ports.remove(1);
    assert!(applied_before_kill > 0, "worker 1 never took part");
    let by_three = ingested(&three, &workload, Duration::from_secs(120)).await;
    check_expected(&workload, &by_three);
    let forwarded = sum_over_workers(&three, "datacat_ingest_forwarded_total").await;
    // The comparison below covers batches fetched by one worker and applied by the owner of
    // their session only if there were some.
    assert!(
        forwarded > 0,
        "no worker forwarded a batch to its session's owner"
    );
    let total = workload.batches.len() as u64;
    assert!(
        applied_before_kill < total,
        "the kill happened mid-stream ({applied_before_kill} of {total})"
    );

    // Identical, field for field: states, histories, events, metrics, statuses, times.
    for (id, session) in &by_one {
        assert_eq!(
            session, &by_three[id],
            "session {id} differs between 1 and 3 workers"
        );
    }
}

/// A daemon adopting a dead one's spool sends its batches again, under their message ids but
/// after JetStream's duplicate window: new messages, on their first delivery, of sessions
/// that may have been marked lost meanwhile. A first batch so sent again is a duplicate, and
/// the session stays lost (planned without reading its progress, as a new session's, it
/// showed the session open again until the next sweep).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_sessions_first_batch_sent_again_changes_nothing() {
    let stack = Stack::start_losing_after(3, 300)
        .await
        .expect("stack starts");
    // Its first batch of two: open, then silent.
    let workload = Workload::generate("resent", 1, 2, 6, 21);
    let first = &workload.batches[..1];
    let id = &first[0].session_id;
    stack.publish(first).await.unwrap();
    let lost = stack
        .wait_session(id, Duration::from_secs(30), |s| s["status"] == "lost")
        .await
        .unwrap();

    stack.publish(first).await.unwrap();
    wait_for_total(&stack, "datacat_ingest_duplicates_total", 1).await;
    assert_eq!(
        sum_over_workers(&stack, "datacat_ingest_duplicates_total").await,
        1,
        "the batch sent again was skipped"
    );
    // Well within the next sweep's reach (lost after 3 s of silence).
    for _ in 0..5 {
        let session = stack
            .get_json(&format!("/api/sessions/{id}"))
            .await
            .unwrap();
        for field in ["status", "end_reason", "state", "events"] {
            assert_eq!(
                session[field], lost[field],
                "{field} changed by the batch sent again"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Sessions change owners mid-session when workers join and leave: nothing is lost, nothing
/// is applied twice, and a worker stopped with SIGTERM exits cleanly, handing its sessions
/// over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_joining_and_leaving_mid_stream_lose_nothing() {
    let workload = Workload::generate("membership", 120, 24, 6, 5);
    let mut stack = Stack::start().await.expect("stack starts");
    let js = stack.jetstream().await.unwrap();
    // In three parts by sequence (the batches are in session order), so each step below
    // happens while sessions are half-way through.
    let mut parts: Vec<Vec<datacat_protocol::Batch>> = vec![Vec::new(); 3];
    for batch in &workload.batches {
        parts[(batch.seq * 3 / 24) as usize].push(batch.clone());
    }
    let part = |batches: &[datacat_protocol::Batch]| Workload {
        product: workload.product.clone(),
        batches: batches.to_vec(),
        expected: Default::default(),
    };
    part(&parts[0]).publish(&js, 0).await.unwrap();
    wait_applied(&stack, parts[0].len()).await;
    stack.add_ingest_worker().await.unwrap();
    stack.add_ingest_worker().await.unwrap();
    for _ in 0..100 {
        if workers_seen(&stack, 0).await == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        workers_seen(&stack, 0).await,
        3,
        "the first worker sees the others"
    );

    part(&parts[1]).publish(&js, 0).await.unwrap();
    wait_applied(&stack, parts[0].len() + parts[1].len()).await;
    let forwarded = sum_over_workers(&stack, "datacat_ingest_forwarded_total").await;
    assert!(forwarded > 0, "the workers shared the sessions");
    // The first worker leaves, applied counts and all: the totals are from here on.
    let status = stack.ingest[0].terminate(Duration::from_secs(30)).unwrap();
    assert!(
        status.success(),
        "a worker stopped with SIGTERM exits cleanly: {status}"
    );
    stack.ingest.remove(0);
    stack.ingest_ports.remove(0);

    part(&parts[2]).publish(&js, 0).await.unwrap();
    let sessions = ingested(&stack, &workload, Duration::from_secs(120)).await;
    check_expected(&workload, &sessions);
    assert_eq!(workers_seen(&stack, 0).await, 2, "the leaver said goodbye");
}

/// Every insert came from a group counted under why it went; the last group of a workload
/// that ended went because nothing more was queued.
async fn check_groups_have_reasons(stack: &Stack) {
    let inserts = sum_over_workers(stack, "datacat_ingest_inserts_total").await;
    let (mut groups, mut caught_up) = (0, 0);
    for reason in InsertReason::ALL {
        let series = groups_series(reason);
        let count = stack.ingest_metric(0, &series).await.expect(&series);
        groups += count;
        if reason == InsertReason::CaughtUp {
            caught_up = count;
        }
    }
    assert!(
        inserts > 0 && groups >= inserts,
        "{groups} groups for {inserts} inserts"
    );
    assert!(caught_up > 0, "no group went for want of a backlog");
}

async fn sum_over_workers(stack: &Stack, name: &str) -> u64 {
    let mut sum = 0;
    for worker in 0..stack.ingest_ports.len() {
        sum += stack.ingest_metric(worker, name).await.unwrap_or_default();
    }
    sum
}

async fn wait_applied(stack: &Stack, count: usize) {
    wait_for_total(stack, "datacat_ingest_messages_total", count as u64).await;
}

/// Waits (up to a minute) until a counter summed over the workers reaches `count`.
async fn wait_for_total(stack: &Stack, name: &str, count: u64) {
    for _ in 0..600 {
        if sum_over_workers(stack, name).await >= count {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{name} did not reach {count} within a minute");
}

/// The live workers worker `index` sees.
async fn workers_seen(stack: &Stack, index: usize) -> u64 {
    stack
        .ingest_metric(index, "datacat_ingest_workers")
        .await
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thirty_second_clickhouse_outage_loses_nothing() {
    let mut stack = Stack::start().await.expect("stack starts");
    let workload = Workload::generate("ch-outage", 60, 10, 6, 7);
    let (first, second) = workload.batches.split_at(workload.batches.len() / 2);
    let js = stack.jetstream().await.unwrap();
    let half = |batches: &[datacat_protocol::Batch]| Workload {
        product: workload.product.clone(),
        batches: batches.to_vec(),
        expected: Default::default(),
    };
    half(first).publish(&js, 0).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;

    stack.clickhouse_mut().stop();
    half(second).publish(&js, 10).await.unwrap();
    tokio::time::sleep(Duration::from_secs(30)).await;
    stack.clickhouse_mut().restart().await.unwrap();

    let sessions = ingested(&stack, &workload, Duration::from_secs(120)).await;
    check_expected(&workload, &sessions);
    assert!(
        stack
            .ingest_metric(0, "datacat_ingest_insert_errors_total")
            .await
            .unwrap()
            > 0,
        "the outage was felt"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_are_dead_lettered_and_the_rest_ingested() {
    let stack = Stack::start().await.expect("stack starts");
    let js = stack.jetstream().await.unwrap();
    let workload = Workload::generate("poison", 20, 5, 5, 3);

    let mut wrong_format = datacat_protocol::encode_batch(&workload.batches[0]).unwrap();
    wrong_format[0] = 99;
    let mut non_object_state = workload.batches[1].clone();
    non_object_state.session_id = "poisoned-state".into();
    non_object_state.records = vec![datacat_protocol::Record::State(
        datacat_protocol::record::StateUpdate {
            ts_ms: 1,
            update: serde_json::json!(["not", "an", "object"]),
        },
    )];
    let poisons: Vec<(&str, Vec<u8>)> = vec![
        ("datacat.session.garbage", b"\x00\x01 not a batch".to_vec()),
        ("datacat.session.wrong-format", wrong_format),
        (
            "datacat.session.poisoned-state",
            rmp_like(&non_object_state),
        ),
        // A valid batch on another session's subject: refused, not merged into that session.
        (
            "datacat.session.someone-else",
            datacat_protocol::encode_batch(&workload.batches[2]).unwrap(),
        ),
    ];
    for (subject, payload) in &poisons {
        js.publish(subject.to_string(), payload.clone().into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    workload.publish(&js, 0).await.unwrap();

    let sessions = ingested(&stack, &workload, Duration::from_secs(60)).await;
    check_expected(&workload, &sessions);

    let mut dead = js
        .get_stream(datacat_protocol::subject::DEAD_LETTER_STREAM)
        .await
        .unwrap();
    let count = dead.info().await.unwrap().state.messages;
    assert_eq!(count, 4, "every poison message is dead-lettered, once");
    for seq in 1..=count {
        let message = dead.get_raw_message(seq).await.unwrap();
        let headers = message.headers;
        let reason = headers
            .get(datacat_protocol::subject::DEAD_LETTER_REASON_HEADER)
            .map(|v| v.to_string());
        assert!(
            reason.as_deref().is_some_and(|r| !r.is_empty()),
            "a reason is kept: {headers:?}"
        );
    }
    assert_eq!(
        stack
            .ingest_metric(0, "datacat_ingest_dead_letters_total")
            .await
            .unwrap(),
        4
    );
    assert!(
        stack
            .get_json("/api/sessions/poisoned-state")
            .await
            .is_err(),
        "nothing of a poison batch is visible"
    );
}

/// A correctly framed batch that fails validation.
fn rmp_like(batch: &datacat_protocol::Batch) -> Vec<u8> {
    datacat_protocol::encode_batch(batch).unwrap()
}

/// Large batches: a worker holds no more message payload than `--message-budget-mib` (plus
/// one fetch of the largest message NATS accepts, and one forwarded message), and still
/// ingests everything, with two workers forwarding to each other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_batches_stay_within_the_message_budget() {
    const BUDGET_MIB: usize = 2;
    let budget = BUDGET_MIB.to_string();
    let mut stack = Stack::start_with(&[("DATACAT_MESSAGE_BUDGET_MIB", budget.as_str())])
        .await
        .expect("stack starts");
    stack.add_ingest_worker().await.unwrap();
    for _ in 0..100 {
        if workers_seen(&stack, 0).await == 2 && workers_seen(&stack, 1).await == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let js = stack.jetstream().await.unwrap();
    let max_payload = js.client().server_info().max_payload;
    let mut workload = Workload::generate("budget", 8, 6, 5, 5);
    // About 300 KB a batch, 14 MB in all: seven times the budget.
    let mut large = 0;
    for batch in &mut workload.batches {
        for record in &mut batch.records {
            if let datacat_protocol::Record::Event(event) = record {
                event.message = format!("{} {}", event.message, "x".repeat(300_000));
                large += 1;
                break;
            }
        }
    }
    assert!(
        large * 300_000 > 6 * (BUDGET_MIB << 20),
        "{large} large batches"
    );

    // Each worker's held payload, as often as its /metrics can tell it.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let peaks: Vec<_> = stack
        .ingest_ports
        .iter()
        .map(|&port| {
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut peak = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let held = metric_at(port, "datacat_ingest_message_bytes").await;
                    peak = peak.max(held.unwrap_or_default());
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                peak
            })
        })
        .collect();
    workload.publish(&js, 0).await.unwrap();
    let sessions = ingested(&stack, &workload, Duration::from_secs(120)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    check_expected(&workload, &sessions);

    let fetch = max_payload + 64 * 1024;
    let bound = (BUDGET_MIB << 20) + fetch + max_payload;
    for (worker, peak) in peaks.into_iter().enumerate() {
        let peak = peak.await.unwrap() as usize;
        assert!(peak > 0, "worker {worker} reports the payload it holds");
        assert!(
            peak <= bound,
            "worker {worker} held {peak} bytes of payload at once; the budget allows {bound}"
        );
    }
    let forwarded = sum_over_workers(&stack, "datacat_ingest_forwarded_total").await;
    assert!(forwarded > 0, "the workers forwarded batches to each other");
    let id = &workload.batches[0].session_id;
    let events = stack.session_events(id).await.unwrap();
    assert!(
        events
            .iter()
            .any(|event| event["message"].as_str().is_some_and(|m| m.len() > 300_000)),
        "the large events are stored whole"
    );
}

/// A daemon that keeps publishing is alive, even while ingest cannot apply what it sends (here
/// its batches wait behind a missing one, as they do behind a batch held by a worker that
/// died until the ack wait gives it to another): the sweeper goes by the session's newest
/// message in the stream, not only by what ingest has applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_whose_batches_wait_in_ingest_is_not_lost() {
    let stack = Stack::start_losing_after(3, 200)
        .await
        .expect("stack starts");
    let workload = Workload::generate("waiting", 1, 20, 4, 5);
    let id = workload.batches[0].session_id.clone();
    stack.publish(&workload.batches[..1]).await.unwrap();
    stack
        .wait_session(&id, Duration::from_secs(30), |s| s["status"] == "active")
        .await
        .unwrap();

    // Batch 1 is missing; batch 2 and the daemon's liveness batches after it wait for it,
    // twice as long as lost_after.
    stack.publish(&workload.batches[2..3]).await.unwrap();
    for seq in 3..15 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let alive = datacat_protocol::Batch {
            session_id: id.clone(),
            seq,
            records: vec![datacat_protocol::Record::Heartbeat(
                datacat_protocol::record::Heartbeat {
                    ts_ms: datacat_protocol::time::now_ms(),
                },
            )],
        };
        stack.publish(&[alive]).await.unwrap();
    }
    let waiting = stack
        .get_json(&format!("/api/sessions/{id}"))
        .await
        .unwrap();
    assert_eq!(waiting["status"], "active", "{}", waiting["end_reason"]);

    stack.publish(&workload.batches[1..2]).await.unwrap();
    let session = stack
        .wait_session(&id, Duration::from_secs(60), |s| s["last_seq"] == 14)
        .await
        .unwrap();
    assert_eq!(session["status"], "active");
    assert_eq!(session["gaps"], 0);
}

//! A 3-node NATS cluster with the stream and buckets replicated on every node (R3): the node
//! leading the session stream is killed (SIGKILL) during ingest, and nothing is lost.

use std::time::Duration;

use datacat_integration_tests::workload::{check_expected, ingested, Workload};
use datacat_integration_tests::Stack;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_during_ingest_loses_nothing() {
    let mut stack = Stack::start_clustered(3)
        .await
        .expect("clustered stack starts");
    stack.add_ingest_worker().await.unwrap();
    let workload = Workload::generate("cluster", 60, 10, 6, 9);
    let (first, second) = workload.batches.split_at(workload.batches.len() / 2);
    let part = |batches: &[datacat_protocol::Batch]| Workload {
        product: workload.product.clone(),
        batches: batches.to_vec(),
        expected: Default::default(),
    };

    let jetstream = stack.jetstream().await.unwrap();
    let mut stream = jetstream
        .get_stream(datacat_protocol::subject::STREAM)
        .await
        .unwrap();
    let info = stream.info().await.unwrap();
    assert_eq!(info.config.num_replicas, 3, "the stream is R3");
    part(first).publish(&jetstream, 5).await.unwrap();

    // Kill the stream's leader once ingest is under way.
    stack
        .wait_ingest_busy(&[0, 1], Duration::from_secs(5))
        .await;
    let leader = stream
        .info()
        .await
        .unwrap()
        .cluster
        .clone()
        .unwrap()
        .leader
        .unwrap();
    if stack.nats.name() == Some(leader.as_str()) {
        stack.nats.stop();
    } else {
        let node = stack
            .nats_peers
            .iter_mut()
            .find(|n| n.name() == Some(leader.as_str()))
            .expect("the leader is a node of the cluster");
        node.stop();
    }

    // The rest goes in through the surviving nodes (a new leader is elected meanwhile;
    // publishing again is safe: message ids deduplicate).
    let mut published = false;
    for _ in 0..60 {
        let jetstream = match stack.jetstream().await {
            Ok(js) => js,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        if part(second).publish(&jetstream, 5).await.is_ok() {
            published = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        published,
        "the cluster took writes again after losing its leader"
    );
    let info = stream.info().await.unwrap().clone();
    assert_ne!(
        info.cluster.unwrap().leader.as_deref(),
        Some(leader.as_str()),
        "a new leader took over"
    );

    let sessions = ingested(&stack, &workload, Duration::from_secs(120)).await;
    check_expected(&workload, &sessions);
}

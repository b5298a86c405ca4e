//! A 3-node NATS cluster with the stream and buckets replicated on every node (R3). With
//! containers, the nodes are containers on a Docker network of their own (hosts with their
//! own addresses); otherwise local processes on loopback.
//!
//! - The node leading the session stream is stopped during ingest: nothing is lost.
//! - (containers) The leader is cut off the network during ingest and joined again, then
//!   another node is stopped: nothing is lost or applied twice.

use std::time::Duration;

use async_nats::jetstream;
use datacat_integration_tests::workload::{check_expected, ingested, Workload};
use datacat_integration_tests::Stack;
use datacat_protocol::subject::STREAM;

/// The workload's batches cut into `parts` workloads, in order.
fn parts(workload: &Workload, parts: usize) -> Vec<Workload> {
    let size = workload.batches.len().div_ceil(parts);
    workload
        .batches
        .chunks(size)
        .map(|batches| Workload {
            product: workload.product.clone(),
            batches: batches.to_vec(),
            expected: Default::default(),
        })
        .collect()
}

/// The stream's cluster as one node that answers sees it, once it has a leader (asked
/// afresh each time: the node a connection reached may be the one gone).
async fn stream_cluster(stack: &Stack) -> jetstream::stream::ClusterInfo {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(jetstream) = stack.jetstream().await {
            if let Ok(mut stream) = jetstream.get_stream(STREAM).await {
                if let Ok(info) = stream.info().await {
                    if let Some(cluster) = info.cluster.clone().filter(|c| c.leader.is_some()) {
                        return cluster;
                    }
                }
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the stream had no leader for 60 s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Publishes `part` (with 5 re-publications under other message ids) until the cluster
/// takes it whole. Publishing again is safe: message ids deduplicate.
async fn publish_until_taken(stack: &Stack, part: &Workload) {
    for _ in 0..120 {
        if let Ok(jetstream) = stack.jetstream().await {
            if part.publish(&jetstream, 5).await.is_ok() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("the cluster took no writes for a minute");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_stopped_during_ingest_loses_nothing() {
    let mut stack = Stack::start_clustered(3)
        .await
        .expect("clustered stack starts");
    stack.add_ingest_worker().await.unwrap();
    let workload = Workload::generate("cluster", 60, 10, 6, 9);
    let parts = parts(&workload, 2);

    let jetstream = stack.jetstream().await.unwrap();
    let info = jetstream
        .get_stream(STREAM)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .clone();
    assert_eq!(info.config.num_replicas, 3, "the stream is R3");
    parts[0].publish(&jetstream, 5).await.unwrap();

    // Stop the stream's leader once ingest is under way.
    stack
        .wait_ingest_busy(&[0, 1], Duration::from_secs(5))
        .await;
    let leader = stream_cluster(&stack).await.leader.unwrap();
    stack
        .nats_node(&leader)
        .expect("the leader is a node of the cluster")
        .stop();

    // The rest goes in through the surviving nodes, a new leader elected meanwhile.
    publish_until_taken(&stack, &parts[1]).await;
    assert_ne!(
        stream_cluster(&stack).await.leader.as_deref(),
        Some(leader.as_str()),
        "a new leader took over"
    );

    let sessions = ingested(&stack, &workload, Duration::from_secs(120)).await;
    check_expected(&workload, &sessions);
}

#[cfg(feature = "containers")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_the_network_and_back_then_one_stopped_loses_nothing() {
    assert!(
        datacat_integration_tests::containers::available(),
        "the containers feature is on, so a Docker engine must answer"
    );
    let mut stack = Stack::start_clustered(3)
        .await
        .expect("clustered stack starts");
    stack.add_ingest_worker().await.unwrap();
    let workload = Workload::generate("partition", 90, 12, 6, 11);
    let parts = parts(&workload, 3);

    publish_until_taken(&stack, &parts[0]).await;
    stack
        .wait_ingest_busy(&[0, 1], Duration::from_secs(5))
        .await;

    // Cut the stream's leader off: the two others elect a new one and take writes.
    let cut_off = stream_cluster(&stack).await.leader.unwrap();
    stack.nats_node(&cut_off).unwrap().disconnect().unwrap();
    publish_until_taken(&stack, &parts[1]).await;
    let during = stream_cluster(&stack).await;
    assert_ne!(
        during.leader.as_deref(),
        Some(cut_off.as_str()),
        "the majority side elected a leader of its own"
    );

    // Joined again, the node catches up with what it missed.
    stack.nats_node(&cut_off).unwrap().reconnect().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let after = loop {
        let cluster = stream_cluster(&stack).await;
        let replicas = &cluster.replicas;
        if replicas.len() == 2 && replicas.iter().all(|r| r.current && !r.offline) {
            break cluster;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the node cut off did not catch up within 90 s: {cluster:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };

    // Then another node stops for good (the leader, unless that is the one cut off).
    let stopped = match after.leader.as_deref() {
        Some(leader) if leader != cut_off => leader.to_string(),
        _ => after.replicas[0].name.clone(),
    };
    stack.nats_node(&stopped).unwrap().stop();
    publish_until_taken(&stack, &parts[2]).await;

    let sessions = ingested(&stack, &workload, Duration::from_secs(180)).await;
    check_expected(&workload, &sessions);
}

//! The replicated schema variant on a real cluster: ZooKeeper and four ClickHouse servers on
//! loopback, 2 shards × 2 replicas, migrated `ON CLUSTER`, fed by two ingest workers. The
//! query API over its `Distributed` tables answers exactly as over a single server holding
//! the same workload; a replica killed during ingest loses nothing and catches up; a shard
//! that is down holds ingest up without losing anything.

use std::time::Duration;

use datacat_integration_tests::cluster::ClickHouseCluster;
use datacat_integration_tests::same_answers::assert_every_read_same;
use datacat_integration_tests::workload::{check_expected, ingested, Workload};
use datacat_integration_tests::{Stack, Warehouse};
use datacat_warehouse::Maintenance;

fn cluster(stack: &mut Stack) -> &mut ClickHouseCluster {
    match &mut stack.warehouse {
        Warehouse::Cluster(cluster) => cluster,
        _ => unreachable!("started on a cluster"),
    }
}

/// Rows of `table` each server of `shard` holds itself.
async fn replica_rows(stack: &Stack, shard: usize, table: &str) -> Vec<u64> {
    let Warehouse::Cluster(cluster) = &stack.warehouse else {
        unreachable!("started on a cluster")
    };
    let mut counts = Vec::new();
    for replica in 0..cluster.replicas {
        let server = &cluster.servers[shard * cluster.replicas + replica];
        let count = server
            .sql(&format!(
                "SELECT count() FROM {}.{table}_local",
                stack.database
            ))
            .await
            .unwrap();
        counts.push(count.trim().parse().unwrap());
    }
    counts
}

async fn insert_errors(stack: &Stack) -> u64 {
    let mut errors = 0;
    for worker in 0..stack.ingest.len() {
        errors += stack
            .ingest_metric(worker, "datacat_ingest_insert_errors_total")
            .await
            .unwrap();
    }
    errors
}

#[tokio::test]
async fn a_replicated_cluster_answers_as_one_server_and_loses_nothing() {
    let ingest_env = [("DATACAT_LOST_AFTER_SECS", "3600")];
    let reference = Stack::start_with(&ingest_env).await.unwrap();
    let servers = ClickHouseCluster::start(2, 2).await.unwrap();
    let mut clustered = Stack::start_with_warehouse(Warehouse::Cluster(servers), &ingest_env)
        .await
        .unwrap();
    clustered.add_ingest_worker().await.unwrap();

    // Every table is replicated on each shard and spread over both.
    let tables = cluster(&mut clustered).servers[3]
        .sql("SELECT name, engine FROM system.tables WHERE database = 'datacat' ORDER BY name FORMAT TabSeparated")
        .await
        .unwrap();
    assert!(tables.contains("sessions\tDistributed"), "{tables}");
    assert!(
        tables.contains("sessions_local\tReplicatedReplacingMergeTree"),
        "{tables}"
    );

    let product = "clustered";
    let workload = Workload::generate(product, 60, 4, 12, 14);
    reference.publish_workload(&workload, 2).await.unwrap();
    clustered.publish_workload(&workload, 2).await.unwrap();

    // A replica killed while its shard takes rows: the other replica takes them.
    clustered
        .wait_ingest_busy(&[0, 1], Duration::from_secs(60))
        .await;
    cluster(&mut clustered).server(0, 1).stop();
    let sessions = ingested(&clustered, &workload, Duration::from_secs(180)).await;
    check_expected(&workload, &sessions);
    // Killed mid-insert, it may hold a part ZooKeeper never heard of, and then does not
    // start without the operator's flag (deploy/README.md).
    let killed = cluster(&mut clustered).server(0, 1);
    killed.force_restore_data().unwrap();
    killed.restart().await.unwrap();
    // Back, it fetches what it missed from its peer.
    for table in [
        "sessions",
        "events",
        "state_history",
        "metrics",
        "state_paths",
    ] {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        loop {
            let counts = replica_rows(&clustered, 0, table).await;
            if counts[0] > 0 && counts[0] == counts[1] {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{table}: the replicas of shard 1 hold {counts:?} rows"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    // The same answers as a single server with the same workload.
    let reference_sessions = ingested(&reference, &workload, Duration::from_secs(120)).await;
    check_expected(&workload, &reference_sessions);
    let sessions = workload.expected.keys().step_by(9).cloned().collect();
    let (_, compared) = assert_every_read_same(
        &reference.query_url,
        &clustered.query_url,
        product,
        sessions,
    )
    .await
    .unwrap();
    eprintln!("{compared} reads answered the same by the cluster and by one server");

    // A whole shard down: ingest holds its rows until it is back, and loses none.
    let later = Workload::generate(product, 30, 3, 10, 15);
    {
        let cluster = cluster(&mut clustered);
        cluster.server(1, 0).stop();
        cluster.server(1, 1).stop();
    }
    let failed_before = insert_errors(&clustered).await;
    clustered.publish_workload(&later, 1).await.unwrap();
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(
        insert_errors(&clustered).await > failed_before,
        "ingest tried to insert while the shard was down, and waits"
    );
    for (shard, replica) in [(1, 0), (1, 1)] {
        cluster(&mut clustered)
            .server(shard, replica)
            .restart()
            .await
            .unwrap();
    }
    let sessions = ingested(&clustered, &later, Duration::from_secs(240)).await;
    check_expected(&later, &sessions);
    let listed = clustered
        .get_json("/api/sessions?limit=1000")
        .await
        .unwrap();
    assert_eq!(
        listed["sessions"].as_array().unwrap().len(),
        workload.expected.len() + later.expected.len(),
        "every session once"
    );

    // Retention finds the partitions of both shards and drops them on every replica.
    let now = datacat_protocol::time::now_ms();
    let keep_from = datacat_protocol::time::iso_date(now + 86_400_000);
    let dropped = Maintenance::new(&clustered.connection())
        .unwrap()
        .drop_partitions_before(&keep_from)
        .await
        .unwrap();
    assert!(dropped > 0);
    for shard in 0..2 {
        assert_eq!(replica_rows(&clustered, shard, "events").await, [0, 0]);
    }
}

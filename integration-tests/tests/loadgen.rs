//! datacat-loadgen against the real stack, briefly: its calls arrive, every freshness probe
//! is seen through the query API, and the report adds up (both ways in: daemons and
//! straight to JetStream).

use datacat_integration_tests::binaries::datacat_bin;
use datacat_integration_tests::{items, Stack};
use datacat_loadgen::{run, Config, Via};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadgen_measures_throughput_lag_and_freshness() {
    let stack = Stack::start().await.expect("stack starts");
    for via in [Via::Daemon, Via::Jetstream] {
        let config = Config {
            via,
            nats: datacat_jetstream::NatsArgs {
                nats_url: stack.nats_url.clone(),
            },
            query_url: stack.query_url.clone(),
            read_token: None,
            daemon_bin: datacat_bin("datacat-daemon").unwrap(),
            spool_dir: Some(stack.spool_dir()),
            apps: 2,
            sessions: 3,
            rate: 2000,
            seconds: 3,
            probes_per_second: 5,
            product: format!("loadgen-{via:?}"),
        };
        let report = run(&config).await.expect("the load runs");
        println!("{report}");
        assert_eq!(report.sessions, 6);
        assert_eq!(report.send_errors, 0);
        assert!(
            (5000..=6500).contains(&report.sent),
            "about 2000 calls/s for 3 s, got {}",
            report.sent
        );
        assert_eq!(report.delivered, 6, "every session's end delivered");
        assert!(report.probes_sent >= 12);
        assert_eq!(report.unseen, 0, "every probe became visible");
        assert_eq!(report.latencies.len() as u64, report.probes_sent);
        assert!(report.drained.is_some(), "ingest caught up");
        // The events are in the API, as many as were made (8 in 10 calls are events).
        let list = stack
            .get_json(&format!("/api/sessions?product=loadgen-{via:?}&limit=100"))
            .await
            .unwrap();
        let events: u64 = items(&list, "sessions")
            .iter()
            .map(|s| s["event_count"].as_u64().unwrap_or_default())
            .sum();
        let expected = report.sent * 8 / 10 + report.probes_sent;
        assert!(
            events.abs_diff(expected) <= 6,
            "{events} events in the API, {expected} made"
        );
    }
}

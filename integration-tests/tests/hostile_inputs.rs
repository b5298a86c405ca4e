//! A table of hostile or accidental inputs, sent through the daemon and through direct
//! writes (and, for what only a broken or old client could send, straight to JetStream).
//! After each one: a canary session written afterwards is visible within a bound, the good
//! calls around the bad one are visible, and the dead-letter count accounts for what could
//! not be used. Nothing an input does may stop ingest, the daemon or the query service.

use std::time::{Duration, Instant};

use datacat_integration_tests::{items, Daemon, Stack};
use datacat_protocol::record::{SessionStart, StateUpdate};
use datacat_protocol::{encode_batch, subject, Batch, MachineInfo, Record};
use serde_json::{json, Value};

/// How long a canary written after an input may take to be visible.
const CANARY_BOUND: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug, PartialEq)]
enum Via {
    Daemon,
    Direct,
}

struct Table<'a> {
    stack: &'a Stack,
    daemon: &'a Daemon,
    /// Inputs sent so far.
    inputs: usize,
    /// Messages that must have been dead-lettered by now.
    dead_letters: u64,
}

impl Table<'_> {
    /// A new session, registered with the daemon or created by direct write.
    async fn session(&self, via: Via, product: &str) -> String {
        match via {
            Via::Daemon => self.daemon.register(product, "1").await.unwrap(),
            Via::Direct => self
                .stack
                .create_direct(&json!({"product": product, "version": "1"}))
                .await
                .unwrap(),
        }
    }

    /// One call (`state`, `event`, `metric`, `batch`, `end`, `heartbeat`) with a JSON body,
    /// raw: the status and answer, whatever they are.
    async fn send_raw(&self, via: Via, id: &str, call: &str, body: String) -> (u16, Value) {
        match via {
            Via::Daemon => self
                .daemon
                .post_raw(&format!("/{call}"), body)
                .await
                .unwrap(),
            Via::Direct => {
                let path = match call {
                    "event" => "events",
                    "metric" => "metrics",
                    other => other,
                };
                let url = format!("{}/api/sessions/{id}/{path}", self.stack.query_url);
                datacat_integration_tests::answers::post(&reqwest::Client::new(), url, body)
                    .await
                    .unwrap()
            }
        }
    }

    /// One call with a JSON body (the session id added where the daemon wants it).
    async fn send(&self, via: Via, id: &str, call: &str, mut body: Value) -> (u16, Value) {
        if via == Via::Daemon {
            body["session_id"] = json!(id);
        }
        self.send_raw(via, id, call, body.to_string()).await
    }

    /// A good event, which must be visible in the end.
    async fn good_event(&self, via: Via, id: &str, name: &str) {
        let (status, answer) = self.send(via, id, "event", json!({ "name": name })).await;
        assert_eq!(status, 200, "a good event after a bad input: {answer}");
    }

    /// After an input: a canary session is visible within the bound, and the dead letters
    /// are what they should be.
    async fn survived(&mut self, what: &str) {
        self.inputs += 1;
        let started = Instant::now();
        let canary = format!("canary {}", self.inputs);
        let id = self.session(Via::Direct, "canary").await;
        let (status, answer) = self
            .send(Via::Direct, &id, "event", json!({"name": canary}))
            .await;
        assert_eq!(status, 200, "after {what}: {answer}");
        self.stack
            .wait_session(&id, CANARY_BOUND, |s| {
                s["events"].as_array().is_some_and(|e| !e.is_empty())
            })
            .await
            .unwrap_or_else(|error| panic!("after {what}, a canary did not arrive: {error}"));
        let dead = self
            .stack
            .ingest_metric(0, "datacat_ingest_dead_letters_total")
            .await
            .unwrap();
        assert_eq!(dead, self.dead_letters, "dead letters after {what}");
        eprintln!("survived {what} (canary in {:?})", started.elapsed());
    }

    /// Publishes bytes straight to a session's subject, as a broken client could.
    async fn publish(&self, session_id: &str, payload: Vec<u8>) {
        let js = self.stack.jetstream().await.unwrap();
        js.publish(subject::session_subject(session_id), payload.into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
}

fn nested(levels: usize) -> Value {
    (1..levels).fold(json!({"leaf": 1}), |inner, _| json!({ "n": inner }))
}

fn event_names(session: &Value) -> Vec<String> {
    items(session, "events")
        .iter()
        .map(|e| e["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn now_s() -> f64 {
    datacat_protocol::time::now_ms() as f64 / 1000.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_input_stops_the_pipeline_or_loses_what_was_good() {
    let stack = Stack::start_with(&[("DATACAT_GAP_MAX_DELIVERIES", "3")])
        .await
        .expect("stack starts");
    // Kept running when its sessions have ended (it would exit 2 s after the last).
    let daemon = stack
        .daemon("daemon", &[("DATACAT_IDLE_EXIT_MS", "0")])
        .unwrap();
    let mut table = Table {
        stack: &stack,
        daemon: &daemon,
        inputs: 0,
        dead_letters: 0,
    };

    for via in [Via::Daemon, Via::Direct] {
        let id = table.session(via, "hostile").await;
        let mut good = Vec::new();
        let tag = |name: &str| format!("{via:?} {name}");

        // Size: larger than NATS takes.
        let (status, answer) = table
            .send(
                via,
                &id,
                "event",
                json!({"name": "huge", "data": {"blob": "x".repeat(2 << 20)}}),
            )
            .await;
        assert_eq!(status, 413, "{via:?}: {answer}");
        table.survived(&tag("a 2 MB event")).await;

        // Huge strings and keys that fit are kept.
        let long = "é".repeat(100_000);
        let (status, answer) = table
            .send(
                via,
                &id,
                "event",
                json!({"name": "long", "message": long, "data": {long.clone(): 1}}),
            )
            .await;
        assert_eq!(status, 200, "{via:?}: {answer}");
        good.push("long".to_string());
        table.survived(&tag("a 200 KB message and key")).await;

        // Depth: 64 levels are kept, 65 refused.
        let (status, answer) = table
            .send(via, &id, "state", json!({"state": nested(64)}))
            .await;
        assert_eq!(status, 200, "{via:?}: {answer}");
        let (status, answer) = table
            .send(via, &id, "state", json!({"state": {"deep": nested(65)}}))
            .await;
        assert_eq!(status, 400, "{via:?}: {answer}");
        table.survived(&tag("a state 65 levels deep")).await;

        // Numbers JSON cannot carry, and sums that overflow.
        for raw in [
            r#""value": NaN"#,
            r#""value": Infinity"#,
            r#""value": -Infinity"#,
            r#""value": "fast""#,
        ] {
            let body = match via {
                Via::Daemon => format!(r#"{{"session_id": "{id}", "name": "fps", {raw}}}"#),
                Via::Direct => format!(r#"{{"name": "fps", {raw}}}"#),
            };
            let (status, answer) = table.send_raw(via, &id, "metric", body).await;
            assert_eq!(status, 400, "{via:?} {raw}: {answer}");
        }
        for _ in 0..2 {
            let (status, answer) = table
                .send(via, &id, "metric", json!({"name": "big", "value": 1e308}))
                .await;
            assert_eq!(status, 200, "{via:?}: {answer}");
        }
        table
            .survived(&tag("NaN, infinities and two metric values of 1e308"))
            .await;

        // Wrong JSON types and bodies that are not JSON.
        for (call, body) in [
            // (A direct write also takes a bare partial state: an array is the wrong type.)
            (
                "state",
                match via {
                    Via::Daemon => json!({"state": [1, 2]}),
                    Via::Direct => json!([1, 2]),
                },
            ),
            ("event", json!({"name": 5})),
            ("event", json!({"name": "tagged", "labels": "x"})),
            ("event", json!({"name": "bad data", "data": [1]})),
            ("metric", json!({"name": "m", "value": 1, "tags": {"a": 1}})),
            ("heartbeat", json!({"timeout": 1e9})),
        ] {
            let (status, answer) = table.send(via, &id, call, body.clone()).await;
            assert_eq!(status, 400, "{via:?} {call} {body}: {answer}");
        }
        for raw in ["{", "null", "[]", "\u{0}", "{\"name\": \"\\ud800\"}"] {
            let (status, answer) = table.send_raw(via, &id, "event", raw.to_string()).await;
            assert_eq!(status / 100, 4, "{via:?} {raw:?}: {answer}");
        }
        let (status, _) = table
            .send_raw(
                via,
                &id,
                "event",
                String::from_utf8_lossy(&[0xff, 0xfe, b'{']).into_owned(),
            )
            .await;
        assert_eq!(status / 100, 4);
        table
            .survived(&tag("wrong types and bodies that are not JSON"))
            .await;

        // Unicode edges are kept as sent.
        for name in [
            "emoji 🐈‍⬛",
            "rtl \u{202e}gnp.exe",
            "zero\u{200b}width",
            "nul \u{0} inside",
            "ascii",
        ] {
            table.good_event(via, &id, name).await;
            good.push(name.to_string());
        }
        table.survived(&tag("unicode edge cases")).await;

        // Names too long to keep, and too many metric names.
        let (status, answer) = table
            .send(
                via,
                &id,
                "metric",
                json!({"name": "m".repeat(300), "value": 1}),
            )
            .await;
        assert_eq!(status, 400, "{via:?}: {answer}");
        let points: Vec<Value> = (0..10_000)
            .map(|i| json!({"kind": "metric", "name": format!("name-{i}"), "value": i}))
            .collect();
        let (status, answer) = table
            .send(via, &id, "batch", json!({ "items": points }))
            .await;
        assert_eq!(status, 200, "{via:?}: {answer}");
        table.survived(&tag("10 000 metric names")).await;

        // Times: 0, negative, 1e12 s, the far future, a hundred days ago, an hour ahead.
        let now = now_s();
        for (name, timestamp) in [
            ("t zero", json!(0)),
            ("t negative", json!(-5)),
            ("t 1e12", json!(1e12)),
            ("t 2096", json!(4_000_000_000u64)),
            ("t 101 days ago", json!(now - 101.0 * 86_400.0)),
            ("t an hour ahead", json!(now + 3600.0)),
            ("t text", json!("yesterday")),
        ] {
            let (status, answer) = table
                .send(
                    via,
                    &id,
                    "event",
                    json!({"name": name, "timestamp": timestamp}),
                )
                .await;
            // A time that does not read is taken as absent: the receive time.
            assert_eq!(status, 200, "{via:?} {name}: {answer}");
            good.push(name.to_string());
        }
        table
            .survived(&tag(
                "timestamps 0, negative, 1e12, far future, 101 days ago",
            ))
            .await;

        // A state growing to 1.2 MB, past what a NATS message (the progress record) holds:
        // merged up to 256 KiB, each update past it refused and said so.
        for key in 0..20 {
            let state = json!({ format!("k{key}"): "s".repeat(60_000) });
            let (status, answer) = table
                .send(via, &id, "state", json!({ "state": state }))
                .await;
            assert_eq!(status, 200, "{via:?}: {answer}");
        }
        table.good_event(via, &id, "last").await;
        good.push("last".to_string());
        table.survived(&tag("a state growing to 1.2 MB")).await;

        // Everything good arrived; what was refused later is in the story.
        let session = stack
            .wait_session(&id, Duration::from_secs(60), |s| {
                let names = event_names(s);
                // (The session's row, which holds the state and the counts, is written after
                // its events: wait for it too.)
                good.iter().all(|g| names.contains(g))
                    && names.iter().any(|n| n == "state_refused")
                    && names.iter().any(|n| n == "metrics_refused")
                    && s["dropped_records"] == 16 + 9_001
            })
            .await
            .unwrap_or_else(|e| panic!("{via:?}: the good calls arrive: {e}"));
        let kept: Vec<&String> = session["state"]
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| k.starts_with('k'))
            .collect();
        assert_eq!(
            kept,
            ["k0", "k1", "k2", "k3"],
            "{via:?}: four 60 KB keys fit in 256 KiB"
        );
        assert_eq!(
            session["dropped_records"].as_u64().unwrap(),
            16 + 9_001,
            "{via:?}: the 16 refused state updates and the points past 1000 names (\"big\" was one) are counted"
        );
        let events = items(&session, "events");
        let by_name = |name: &str| events.iter().find(|e| e["name"] == name).unwrap().clone();
        let old = by_name("t 101 days ago");
        assert!(old["client_timestamp"].is_string(), "{old}");
        let stored =
            datacat_protocol::time::parse_time_ms(old["timestamp"].as_str().unwrap()).unwrap();
        assert!(
            stored as f64 / 1000.0 > now - 3600.0,
            "stored at the receive time: {old}"
        );
        assert!(by_name("t 2096")["client_timestamp"]
            .as_str()
            .unwrap()
            .starts_with("2096"));
        assert!(by_name("ascii").get("client_timestamp").is_none());
        let summary = stack
            .get_json("/api/metrics/big/sessions?product=hostile")
            .await
            .unwrap();
        let big = items(&summary, "sessions")
            .iter()
            .find(|s| s["session_id"] == id)
            .cloned();
        assert_eq!(big.unwrap()["peak"], 1e308);

        let long_reason = "r".repeat(100_000);
        let (status, answer) = table
            .send(via, &id, "end", json!({"reason": long_reason}))
            .await;
        assert_eq!(status, 200, "{via:?}: {answer}");
        let ended = stack.wait_status(&id, "ended").await.unwrap();
        assert_eq!(ended["end_reason"].as_str().unwrap().len(), 4096);
        table.survived(&tag("a 100 KB end reason")).await;
    }

    // Odd session ids.
    // (An empty id is no id: the daemon and the query service mint one.)
    for id in [
        "../../etc/passwd",
        "a.b.*.>",
        "not-a-uuid",
        &"x".repeat(10_000),
    ] {
        let (status, answer) = daemon
            .post_raw(
                "/register",
                json!({"product": "p", "version": "1", "session_id": id}).to_string(),
            )
            .await
            .unwrap();
        assert_eq!(status, 400, "{id:.20}: {answer}");
        let (status, _) = stack
            .post_json(
                "/api/sessions",
                &json!({"product": "p", "version": "1", "session_id": id}),
            )
            .await
            .unwrap();
        assert_eq!(status, 400, "{id:.20}");
        let (status, _) = daemon
            .post_raw("/event", json!({"session_id": id, "name": "e"}).to_string())
            .await
            .unwrap();
        assert_eq!(status / 100, 4, "{id:.20}");
    }
    let (status, _) = stack
        .post_json(
            &format!("/api/sessions/{}/events", "%2E%2E"),
            &json!({"name": "e"}),
        )
        .await
        .unwrap();
    assert_eq!(status, 404);
    let (status, _) = daemon
        .post_raw(
            "/register",
            json!({"product": "p".repeat(300), "version": "1"}).to_string(),
        )
        .await
        .unwrap();
    assert_eq!(status, 400, "a product name past 256 bytes");
    table.survived("odd session ids and names").await;

    // What only a broken or old client could publish: garbage MessagePack, a state nested
    // past the limit, garbage near the largest message NATS takes, a sequence far ahead.
    table
        .publish("garbage", vec![0xc1, 0xff, 0x00, 0x93, 0xdc])
        .await;
    table.dead_letters += 1;
    table.survived("garbage MessagePack").await;

    let start = Record::Start(SessionStart {
        ts_ms: datacat_protocol::time::now_ms(),
        product: "old-client".into(),
        version: "1".into(),
        machine: MachineInfo::default(),
        ..Default::default()
    });
    let deep = Batch {
        session_id: "deep-old-client".into(),
        seq: 0,
        records: vec![
            start.clone(),
            Record::State(StateUpdate {
                ts_ms: 1,
                update: nested(70),
            }),
        ],
    };
    table
        .publish(&deep.session_id, encode_batch(&deep).unwrap())
        .await;
    table.dead_letters += 1;
    table
        .survived("a state nested 70 deep from an old client")
        .await;

    let max_payload = 1 << 20;
    table
        .publish("near-the-limit", vec![0xdc; max_payload - 200])
        .await;
    table.dead_letters += 1;
    table
        .survived("a garbage message 200 bytes under the limit")
        .await;

    let ahead = Batch {
        session_id: "far-ahead".into(),
        seq: 1 << 40,
        records: vec![start],
    };
    table
        .publish(&ahead.session_id, encode_batch(&ahead).unwrap())
        .await;
    stack
        .wait_session("far-ahead", Duration::from_secs(60), |s| {
            s["product"] == "old-client"
        })
        .await
        .expect("a batch far ahead is applied after the gap wait");
    table.survived("a sequence number 2^40 ahead").await;

    assert!(table.inputs >= 25, "{} inputs", table.inputs);
}

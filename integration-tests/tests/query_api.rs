//! The query API over real NATS, ingest and ClickHouse with a small hand-made set of
//! sessions: each filter, sort, page, aggregation and sub-resource returns exactly the
//! expected sessions; bad requests get JSON 400/404; tokens guard reads and writes.

use std::time::Duration;

use datacat_integration_tests::binaries::datacat_bin;
use datacat_integration_tests::process::{free_port, wait_http_ok, ChildGuard};
use datacat_integration_tests::stack::metric_of;
use datacat_integration_tests::{items, Stack};
use datacat_protocol::record::{Event, Level, Metric, SessionEnd, SessionStart, StateUpdate};
use datacat_protocol::{Batch, EndStatus, MachineInfo, Record};
use serde_json::{json, Value};

/// The sessions' start: two days before the test runs (a fixed time would, a month later,
/// be more than the 30 days ingest believes, and be stored at the receive time instead).
static T0: std::sync::LazyLock<u64> = std::sync::LazyLock::new(|| {
    let hour = 3_600_000;
    (datacat_protocol::time::now_ms() - 48 * hour) / hour * hour
});

fn start(ts_ms: u64, product: &str, host: &str) -> Record {
    Record::Start(SessionStart {
        ts_ms,
        product: product.into(),
        version: "1.0".into(),
        machine: MachineInfo {
            hostname: host.into(),
            machine_id: format!("machine-{host}"),
            ..Default::default()
        },
        // Each host's sessions in an environment of its own, tagged with their product.
        environment: format!("env-{host}"),
        tags: [("product".to_string(), product.to_string())].into(),
    })
}

fn state(ts_ms: u64, update: Value) -> Record {
    Record::State(StateUpdate { ts_ms, update })
}

fn memory(ts_ms: u64, value: f64) -> Record {
    Record::Metric(Metric {
        unit: "MB".into(),
        ..Metric::gauge(ts_ms, "memory_usage", value)
    })
}

fn event(ts_ms: u64, name: &str, level: Level) -> Record {
    Record::Event(Event {
        ts_ms,
        name: name.into(),
        level,
        category: "game".into(),
        group: String::new(),
        labels: vec![],
        message: format!("{name} happened"),
        data: json!({"n": 1}),
        exception: None,
    })
}

fn end(ts_ms: u64, status: EndStatus, reason: &str) -> Record {
    Record::End(SessionEnd {
        ts_ms,
        status,
        reason: reason.into(),
    })
}

/// The pilot and the open windows, as the sessions' state updates carry them.
fn pilot(ts_ms: u64, name: &str, open: &[&str]) -> Record {
    state(ts_ms, json!({"pilot": name, "window": {"open": open}}))
}

fn batch(session_id: &str, seq: u64, records: Vec<Record>) -> Batch {
    Batch {
        session_id: session_id.into(),
        seq,
        records,
    }
}

/// s1: ada -> grace, had "space probe" open then closed it, memory 100/300/200, a "boom"
/// error, crashed (segfault). s2: ada with "space probe" open, memory 50/80, an info event,
/// ended. s3 (another product): linus, memory 500, still active.
fn sessions() -> Vec<Batch> {
    vec![
        batch(
            "s1",
            0,
            vec![
                start(*T0, "qa-game", "h1"),
                pilot(*T0 + 1, "ada", &["main menu", "space probe"]),
                memory(*T0 + 2, 100.0),
                memory(*T0 + 3, 300.0),
            ],
        ),
        batch(
            "s1",
            1,
            vec![
                pilot(*T0 + 10, "grace", &["main menu"]),
                memory(*T0 + 11, 200.0),
                event(*T0 + 12, "boom", Level::Error),
                end(*T0 + 13, EndStatus::Crashed, "segfault in renderer"),
            ],
        ),
        batch(
            "s2",
            0,
            vec![
                start(*T0 + 1000, "qa-game", "h2"),
                pilot(*T0 + 1001, "ada", &["space probe"]),
                memory(*T0 + 1002, 50.0),
                memory(*T0 + 1003, 80.0),
                event(*T0 + 1004, "loaded", Level::Info),
                end(*T0 + 1005, EndStatus::Ended, "player quit"),
            ],
        ),
        batch(
            "s3",
            0,
            vec![
                start(*T0 + 2000, "qa-tool", "h3"),
                pilot(*T0 + 2001, "linus", &["inventory"]),
                memory(*T0 + 2002, 500.0),
            ],
        ),
    ]
}

async fn get(base: &str, path: &str) -> (u16, Value) {
    let response = reqwest::get(format!("{base}{path}"))
        .await
        .expect("request");
    let status = response.status().as_u16();
    let body = response.text().await.expect("body");
    let value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("{path}: not JSON: {body}"));
    (status, value)
}

async fn ids(base: &str, query: &str) -> Vec<String> {
    let (status, body) = get(base, &format!("/api/sessions?{query}")).await;
    assert_eq!(status, 200, "{query}: {body}");
    items(&body, "sessions")
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn filters_aggregations_and_sub_resources_answer_exactly() {
    let stack = Stack::start().await.expect("stack starts");
    stack.publish(&sessions()).await.unwrap();
    for id in ["s1", "s2", "s3"] {
        stack
            .wait_session(id, Duration::from_secs(30), |s| {
                s["state"]["pilot"].is_string() && s["status"] != "active" || s["id"] == "s3"
            })
            .await
            .unwrap();
    }
    stack
        .wait_session("s1", Duration::from_secs(30), |s| s["status"] == "crashed")
        .await
        .unwrap();
    let base = stack.query_url.as_str();

    // Filters: each one, exactly.
    let cases: &[(&str, &[&str])] = &[
        ("", &["s3", "s2", "s1"]),
        ("product=qa-game", &["s2", "s1"]),
        ("product=qa-tool", &["s3"]),
        ("version=1.0&status=crashed", &["s1"]),
        ("status=active", &["s3"]),
        ("hostname=h2", &["s2"]),
        ("machine_id=machine-h3", &["s3"]),
        ("environment=env-h2", &["s2"]),
        ("tag=product:qa-game", &["s2", "s1"]),
        ("tag=product:qa-game&environment=env-h1", &["s1"]),
        ("tag=product:qa-game&tag=product:qa-tool", &[]),
        ("tag=product:nothing", &[]),
        ("state=pilot%3Dgrace", &["s1"]),
        ("state=pilot%3Dada", &["s2"]),
        ("ever=pilot%3Dada", &["s2", "s1"]),
        ("ever=pilot%3Dada&state=pilot%3Dgrace", &["s1"]),
        ("contains=window.open%3Dspace%20probe", &["s2"]),
        ("ever_contains=window.open%3Dspace%20probe", &["s2", "s1"]),
        ("contains=window.open%3Dmain%20menu", &["s1"]),
        ("event=boom", &["s1"]),
        ("level=error", &["s1"]),
        ("level=info", &["s2"]),
        ("q=SEGFAULT", &["s1"]),
        ("q=linus", &["s3"]),
        (&format!("from={}", *T0 + 500), &["s3", "s2"]),
        (&format!("to={}", *T0 + 1500), &["s2", "s1"]),
        ("from=2026-01-01T00:00:00Z&to=2026-06-01T00:00:00Z", &[]),
        ("sort=started&order=asc", &["s1", "s2", "s3"]),
        ("sort=events&order=desc", &["s1", "s2", "s3"]),
        ("state=pilot%3Dnobody", &[]),
    ];
    for (query, expected) in cases {
        assert_eq!(ids(base, query).await, *expected, "filter {query:?}");
    }

    // Cursor pagination walks every session once, in order.
    let (_, first) = get(base, "/api/sessions?limit=2").await;
    let cursor = first["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_string();
    assert_eq!(ids(base, &format!("limit=2&cursor={cursor}")).await, ["s1"]);
    let (_, last) = get(base, &format!("/api/sessions?limit=2&cursor={cursor}")).await;
    assert!(last["next_cursor"].is_null());

    // Products summary.
    let (status, products) = get(base, "/api/products").await;
    assert_eq!(status, 200);
    let game = &products["products"][0];
    assert_eq!(game["product"], "qa-game");
    assert_eq!(game["sessions"], 2);
    assert_eq!(game["statuses"], json!({"crashed": 1, "ended": 1}));
    assert_eq!(game["crash_free_rate"], 0.5);
    assert_eq!(products["products"][1]["statuses"], json!({"active": 1}));

    // Peak memory of the sessions whose window had "space probe" open.
    let (status, peak) = get(
        base,
        "/api/metrics/memory_usage/sessions?ever_contains=window.open%3Dspace%20probe",
    )
    .await;
    assert_eq!(status, 200, "{peak}");
    assert_eq!(peak["matched_sessions"], 2);
    let rows: Vec<(String, f64)> = items(&peak, "sessions")
        .iter()
        .map(|s| {
            (
                s["session_id"].as_str().unwrap().into(),
                s["peak"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(rows, [("s1".to_string(), 300.0), ("s2".to_string(), 80.0)]);
    assert_eq!(peak["sessions"][0]["min"], 100.0);
    assert_eq!(peak["sessions"][0]["avg"], 200.0);
    assert_eq!(peak["sessions"][0]["last"], 200.0);
    assert_eq!(peak["sessions"][0]["points"], 3);
    let counted: u64 = items(&peak, "distribution")
        .iter()
        .map(|b| b["sessions"].as_u64().unwrap())
        .sum();
    assert_eq!(counted, 2);
    let (_, last) = get(
        base,
        "/api/metrics/memory_usage/sessions?stat=last&product=qa-game",
    )
    .await;
    assert_eq!(last["sessions"][0]["session_id"], "s1");
    assert_eq!(last["sessions"][0]["last"], 200.0);

    // A point written twice (a redelivered batch whose copy ClickHouse has not merged away
    // yet) is still counted once.
    stack
        .clickhouse()
        .sql(&format!(
            "INSERT INTO {}.metrics SELECT * FROM {}.metrics WHERE session_id = 's1' AND seq = 0",
            stack.database, stack.database
        ))
        .await
        .unwrap();
    let (_, again) = get(base, "/api/metrics/memory_usage/sessions?product=qa-game").await;
    assert_eq!(again["sessions"][0]["session_id"], "s1");
    assert_eq!(again["sessions"][0]["points"], 3, "{again}");
    assert_eq!(again["sessions"][0]["avg"], 200.0, "{again}");
    let (_, detail) = get(base, "/api/sessions/s1").await;
    assert_eq!(detail["metrics"].as_array().unwrap().len(), 3);

    // Sub-resources.
    let (_, events) = get(base, "/api/sessions/s1/events?level=error").await;
    let names: Vec<&str> = items(&events, "events")
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["boom"],
        "level=error leaves out the critical crash event"
    );
    let (_, critical) = get(base, "/api/sessions/s1/events?level=critical").await;
    assert_eq!(
        critical["events"].as_array().unwrap().len(),
        1,
        "{critical}"
    );
    let (_, page) = get(base, "/api/sessions/s1/events?limit=1").await;
    assert_eq!(page["events"].as_array().unwrap().len(), 1);
    assert_eq!(page["next_offset"], 1);
    let (_, metrics) = get(base, "/api/sessions/s1/metrics").await;
    assert_eq!(metrics["metrics"][0]["name"], "memory_usage");
    assert_eq!(metrics["metrics"][0]["points"].as_array().unwrap().len(), 3);
    let (_, at0) = get(base, "/api/sessions/s1/state?seq=0").await;
    assert_eq!(at0["state"]["pilot"], "ada");
    let (_, now) = get(base, "/api/sessions/s1/state").await;
    assert_eq!(now["state"]["pilot"], "grace");
    let (_, at_time) = get(base, &format!("/api/sessions/s1/state?at={}", *T0 + 5)).await;
    assert_eq!(at_time["state"]["pilot"], "ada");
    let (_, diff) = get(base, "/api/sessions/s1/state/diff?from_seq=0&to_seq=1").await;
    assert_eq!(diff["diff"]["pilot"], "grace");
    assert_eq!(diff["diff"]["window"]["open"], json!(["main menu"]));

    // Exports: NDJSON and CSV for a filter, whole sessions, and Grafana's rows.
    let text = |path: String| async move {
        let response = reqwest::get(format!("{base}{path}")).await.unwrap();
        assert_eq!(response.status().as_u16(), 200, "{path}");
        response.text().await.unwrap()
    };
    let ndjson = text("/api/export/sessions?product=qa-game".into()).await;
    let exported: Vec<Value> = ndjson
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let exported_ids: Vec<&str> = exported.iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(exported_ids, ["s1", "s2"], "oldest first");
    let csv = text("/api/export/sessions?format=csv&status=crashed".into()).await;
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "id,product,version,status,end_reason,created_at,updated_at,ended_at,hostname,machine_id,event_count");
    assert_eq!(lines.len(), 2, "{csv}");
    assert!(
        lines[1].starts_with("s1,qa-game,1.0,crashed,segfault in renderer,"),
        "{csv}"
    );
    let events = text("/api/export/events?ever=pilot%3Dada".into()).await;
    let event_sessions: Vec<String> = events
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["session_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        event_sessions,
        ["s1", "s1", "s2"],
        "boom, the crash, loaded"
    );
    let metrics_csv =
        text("/api/export/metrics?format=csv&name=memory_usage&product=qa-tool".into()).await;
    assert_eq!(metrics_csv.lines().count(), 2, "{metrics_csv}");
    assert!(
        metrics_csv
            .lines()
            .nth(1)
            .unwrap()
            .contains(",memory_usage,gauge,500.0,MB,"),
        "{metrics_csv}"
    );
    let data: Value =
        serde_json::from_str(&text("/api/data/sessions?product=qa-game".into()).await).unwrap();
    let data = data.as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(data[0]["id"], "s1");
    assert_eq!(data[0]["state_history"].as_array().unwrap().len(), 2);
    assert_eq!(data[0]["metrics"].as_array().unwrap().len(), 3);
    let grafana: Value = serde_json::from_str(&text("/api/grafana/sessions".into()).await).unwrap();
    assert_eq!(grafana.as_array().unwrap().len(), 3);
    assert_eq!(grafana[0]["crashed"], true);
    assert_eq!(grafana[0]["duration_seconds"], 0.013);

    // Errors: JSON with the right status.
    for (path, status) in [
        ("/api/sessions?colour=red", 400),
        ("/api/sessions?limit=many", 400),
        ("/api/sessions?cursor=zz", 400),
        ("/api/sessions?status=exploded", 400),
        ("/api/sessions/nope", 404),
        ("/api/sessions/nope/events", 404),
        ("/api/sessions/nope/state", 404),
        ("/api/sessions/s1/state?seq=x", 400),
        ("/api/metrics/memory_usage/sessions?stat=median", 400),
        ("/api/export/sessions?format=xml", 400),
        ("/api/export/things", 404),
    ] {
        let (got, body) = get(base, path).await;
        assert_eq!(got, status, "{path}: {body}");
        assert!(
            body["error"].is_string() && body["message"].is_string(),
            "{path}: {body}"
        );
    }
}

#[tokio::test]
async fn a_dotted_key_is_a_path_of_its_own() {
    let stack = Stack::start().await.expect("stack starts");
    let records = vec![
        start(*T0, "qa-game", "h1"),
        state(*T0 + 1, json!({"a.b": 1, "a": {"b": 2}})),
    ];
    stack.publish(&[batch("dots", 0, records)]).await.unwrap();
    stack
        .wait_session("dots", Duration::from_secs(30), |s| {
            s["state"]["a"]["b"] == 2
        })
        .await
        .unwrap();
    let base = stack.query_url.as_str();
    assert_eq!(ids(base, r"state=a%5C.b%3D1").await, vec!["dots"]);
    assert_eq!(ids(base, "state=a.b%3D2").await, vec!["dots"]);
    assert!(
        ids(base, "state=a.b%3D1").await.is_empty(),
        "the dotted key is not a.b"
    );
}

/// A second query service over the stack's ClickHouse with these settings; its base URL
/// (once healthy) and its log.
async fn another_query(
    stack: &Stack,
    name: &str,
    env: &[(&str, &str)],
) -> (ChildGuard, String, std::path::PathBuf) {
    let port = free_port();
    let mut command = std::process::Command::new(datacat_bin("datacat-query").unwrap());
    command
        .env("DATACAT_LISTEN", format!("127.0.0.1:{port}"))
        .envs(stack.warehouse.env())
        .env("DATACAT_CLICKHOUSE_DATABASE", &stack.database)
        .envs(env.iter().copied());
    let log = stack.logs.path().join(format!("{name}.log"));
    let query = ChildGuard::spawn("datacat-query", command, &log).unwrap();
    let base = format!("http://127.0.0.1:{port}");
    wait_http_ok(&format!("{base}/health"), Duration::from_secs(30), "query")
        .await
        .unwrap();
    (query, base, log)
}

#[tokio::test]
async fn tokens_guard_reads_and_writes() {
    let stack = Stack::start().await.expect("stack starts");
    let tokens = [
        ("DATACAT_READ_TOKEN", "reader-secret"),
        ("DATACAT_WRITE_TOKEN", "writer-secret"),
    ];
    let (_query, base, _) = another_query(&stack, "query-auth", &tokens).await;
    let client = reqwest::Client::new();
    let status = |token: Option<&str>, method: reqwest::Method, path: &str| {
        let mut request = client.request(method, format!("{base}{path}"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            if status >= 400 {
                let body: Value = response.json().await.expect("JSON error body");
                assert!(body["error"].is_string(), "{body}");
            }
            status
        }
    };
    use reqwest::Method;
    assert_eq!(status(None, Method::GET, "/api/sessions").await, 401);
    assert_eq!(
        status(Some("wrong"), Method::GET, "/api/sessions").await,
        401
    );
    assert_eq!(
        status(Some("reader-secret"), Method::GET, "/api/sessions").await,
        200
    );
    assert_eq!(
        status(Some("writer-secret"), Method::GET, "/api/sessions").await,
        200
    );
    assert_eq!(status(None, Method::GET, "/health").await, 200);
    assert_eq!(status(None, Method::GET, "/metrics").await, 200);
    // Writes: the read token is refused.
    assert_eq!(
        status(Some("reader-secret"), Method::POST, "/api/sessions").await,
        403
    );
    assert_eq!(status(None, Method::POST, "/api/sessions").await, 401);
    // The dashboard sends a browser without a token to the login form.
    let no_redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = no_redirect.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(page.status().as_u16(), 303);
    assert_eq!(page.headers()["location"], "/login");
    let login = no_redirect
        .post(format!("{base}/login"))
        .form(&[("token", "reader-secret")])
        .send()
        .await
        .unwrap();
    let cookie = login.headers()["set-cookie"].to_str().unwrap().to_string();
    // A signed, expiring session value, not the token.
    assert!(cookie.starts_with("datacat_session="), "{cookie}");
    for flag in ["HttpOnly", "SameSite=Strict", "Max-Age=43200", "Path=/"] {
        assert!(cookie.contains(flag), "{flag}: {cookie}");
    }
    assert!(
        !cookie.contains("Secure") && !cookie.contains("reader-secret"),
        "{cookie}"
    );
    let session = cookie.split(';').next().unwrap().to_string();
    let page_with = |cookie: String| {
        let request = no_redirect.get(format!("{base}/")).header("cookie", cookie);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(page_with(session.clone()).await, 200);
    // Forged or altered: back to the sign-in form.
    assert_eq!(
        page_with("datacat_session=r.99999999999.00".into()).await,
        303
    );
    assert_eq!(page_with("datacat_token=reader-secret".into()).await, 303);
    let upgraded = session.replacen("=r.", "=w.", 1);
    assert_eq!(page_with(upgraded).await, 303);
    // Behind a TLS proxy the cookie is Secure.
    let tls = no_redirect
        .post(format!("{base}/login"))
        .header("x-forwarded-proto", "https")
        .form(&[("token", "reader-secret")])
        .send()
        .await
        .unwrap();
    let tls_cookie = tls.headers()["set-cookie"].to_str().unwrap();
    assert!(tls_cookie.ends_with("; Secure"), "{tls_cookie}");
    // Logout clears it.
    let out = no_redirect
        .post(format!("{base}/logout"))
        .send()
        .await
        .unwrap();
    assert_eq!(out.status().as_u16(), 303);
    let cleared = out.headers()["set-cookie"].to_str().unwrap();
    assert!(
        cleared.starts_with("datacat_session=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
    // Failed sign-ins from one address are limited.
    let wrong = || {
        let request = no_redirect
            .post(format!("{base}/login"))
            .form(&[("token", "guess")]);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    for _ in 0..5 {
        assert_eq!(wrong().await, 401);
    }
    assert_eq!(wrong().await, 429);
    // (The right token from that address waits too.)
    let held = no_redirect
        .post(format!("{base}/login"))
        .form(&[("token", "reader-secret")])
        .send()
        .await
        .unwrap();
    assert_eq!(held.status().as_u16(), 429);
    // The socket needs the sign-in when there is a read token.
    assert_eq!(socket(&base, Some(&base), None).await, 303);
    assert_eq!(socket(&base, Some(&base), Some(&session)).await, 101);
    assert_eq!(
        socket(&base, Some("http://evil.example"), Some(&session)).await,
        403
    );
}

/// The status of a WebSocket handshake on the dashboard's socket, from `origin`.
async fn socket(base: &str, origin: Option<&str>, cookie: Option<&str>) -> u16 {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut request = client
        .get(format!("{base}/live/ws?page=/"))
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==");
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    request.send().await.unwrap().status().as_u16()
}

/// Without a read token the dashboard is open, but only to its own pages: another site's
/// page cannot open its socket (cross-site WebSocket hijacking). A direct write must be
/// declared JSON (a cross-site form cannot), and setting only a read token is warned of.
#[tokio::test]
async fn an_open_service_is_open_to_its_own_pages_only() {
    let stack = Stack::start().await.expect("stack starts");
    let base = stack.query_url.as_str();
    assert_eq!(socket(base, Some(base), None).await, 101);
    assert_eq!(socket(base, None, None).await, 101, "not a browser");
    assert_eq!(socket(base, Some("http://evil.example"), None).await, 403);
    assert_eq!(socket(base, Some("null"), None).await, 403);

    let id = stack
        .create_direct(&json!({"product": "p", "version": "1"}))
        .await
        .unwrap();
    for content_type in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        let response = reqwest::Client::new()
            .post(format!("{base}/api/sessions/{id}/events"))
            .header("content-type", content_type)
            .body(r#"{"name": "forged"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 415, "{content_type}");
    }
    let (status, _) = post(
        base,
        &format!("/api/sessions/{id}/events"),
        r#"{"name": "mine"}"#,
    )
    .await;
    assert_eq!(status, 200);

    // Only a read token: writes are open, and the service says so loudly.
    let read_only = [("DATACAT_READ_TOKEN", "reader-secret")];
    let (_query, _, log) = another_query(&stack, "query-read-only", &read_only).await;
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("ANYONE WHO CAN REACH THIS SERVICE CAN WRITE"),
        "{text}"
    );
}

async fn post(base: &str, path: &str, body: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{path}: not JSON: {text}"));
    (status, value)
}

/// A client without a daemon writes through the query service: everything it sent arrives,
/// in order, and bad calls are refused without losing the good ones.
#[tokio::test]
async fn direct_writes_arrive_exactly() {
    let stack = Stack::start().await.expect("stack starts");
    let base = stack.query_url.as_str();
    // Direct writes connect to NATS in the background: the first create may find it not
    // ready yet (503), never anything else.
    let mut created = (0, Value::Null);
    for _ in 0..50 {
        created = post(
            base,
            "/api/sessions",
            r#"{"product": "direct", "version": "2.0", "hostname": "box", "machine_id": "m-9"}"#,
        )
        .await;
        if created.0 != 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(created.0, 200, "{}", created.1);
    let id = created.1["session_id"].as_str().unwrap().to_string();
    let at = |op: &str| format!("/api/sessions/{id}/{op}");

    for (op, body) in [
        ("state", r#"{"level": {"name": "mars"}, "tags": ["a"]}"#),
        (
            "state",
            r#"{"state": {"level": {"boss": true}}, "timestamp": "2026-11-01T00:00:00Z"}"#,
        ),
        (
            "events",
            r#"{"name": "loaded", "level": "info", "data": {"ms": 12}}"#,
        ),
        (
            "metrics",
            r#"{"name": "fps", "value": 59.5, "type": "gauge"}"#,
        ),
        (
            "metrics",
            r#"{"name": "load_time", "type": "histogram", "value": 0.3}"#,
        ),
        ("heartbeat", ""),
    ] {
        let (status, body) = post(base, &at(op), body).await;
        assert_eq!(status, 200, "{op}: {body}");
    }
    let (status, batch) = post(
        base,
        &at("batch"),
        r#"{"items": [
            {"kind": "event", "name": "boss_fight", "level": "warning"},
            {"kind": "event", "name": ""},
            {"kind": "state", "state": {"level": {"name": "venus"}}},
            {"kind": "metric", "name": "fps", "value": "fast"}
        ]}"#,
    )
    .await;
    assert_eq!(status, 400, "{batch}");
    assert_eq!(batch["accepted"], 2);
    let bad: Vec<u64> = items(&batch, "rejected")
        .iter()
        .map(|r| r["index"].as_u64().unwrap())
        .collect();
    assert_eq!(bad, [1, 3]);

    // Refusals: JSON, with the right status, and nothing written.
    for (path, body, expected) in [
        (at("state"), "[1, 2]", 400),
        (at("events"), "{not json", 400),
        (
            at("metrics"),
            r#"{"name": "hits", "type": "counter", "delta": 1}"#,
            400,
        ),
        (
            "/api/sessions/never-created/events".to_string(),
            r#"{"name": "x"}"#,
            404,
        ),
        ("/api/sessions".to_string(), r#"{"product": "only"}"#, 400),
    ] {
        let (status, body) = post(base, &path, body).await;
        assert_eq!(status, expected, "{path}: {body}");
        assert!(body["message"].is_string(), "{body}");
    }
    let huge = format!(r#"{{"blob": "{}"}}"#, "x".repeat(5 * 1024 * 1024));
    let (status, body) = post(base, &at("state"), &huge).await;
    assert_eq!(status, 413, "{body}");

    let (status, _) = post(base, &at("crash"), r#"{"reason": "gpu hang"}"#).await;
    assert_eq!(status, 200);

    let session = stack
        .wait_session(&id, Duration::from_secs(30), |s| s["status"] == "crashed")
        .await
        .unwrap();
    assert_eq!(session["product"], "direct");
    assert_eq!(session["hostname"], "box");
    assert_eq!(session["machine_id"], "m-9");
    assert_eq!(session["end_reason"], "gpu hang");
    assert_eq!(
        session["state"],
        json!({"level": {"name": "venus", "boss": true}, "tags": ["a"]})
    );
    assert_eq!(session["state_history"].as_array().unwrap().len(), 3);
    let events: Vec<&str> = items(&session, "events")
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert!(events.starts_with(&["loaded", "boss_fight"]), "{events:?}");
    assert_eq!(events.len(), 3, "two events and the crash: {events:?}");
    let metrics = session["metrics"].as_array().unwrap();
    assert_eq!(metrics.len(), 2, "{metrics:?}");
    let histogram = metrics.iter().find(|m| m["name"] == "load_time").unwrap();
    assert_eq!(histogram["histogram"]["count"], 1);
    assert_eq!(session["gaps"], 0, "every sequence number was published");
}

/// Schemathesis fuzzes every operation of the OpenAPI document (reads over seeded data, and
/// direct writes): no answer may be a 5xx.
#[tokio::test]
async fn schemathesis_finds_no_server_error() {
    schemathesis_run(None).await;
}

/// The same, with both tokens on: every call carries the write token.
#[tokio::test]
async fn schemathesis_with_tokens_finds_no_server_error() {
    schemathesis_run(Some("schemathesis-writer")).await;
}

/// Schemathesis over the query API's OpenAPI document: no answer may be a 5xx. With a
/// `token`, the service requires tokens (that one writes) and every call sends it.
async fn schemathesis_run(token: Option<&str>) {
    let dir = datacat_integration_tests::binaries::schemathesis_dir().unwrap();
    // Reads naming a batch that never comes (`min_seq`) wait for it: briefly here.
    let mut env = vec![("DATACAT_READ_WAIT_MS", "100")];
    if let Some(token) = token {
        env.extend([
            ("DATACAT_WRITE_TOKEN", token),
            ("DATACAT_READ_TOKEN", "schemathesis-reader"),
        ]);
    }
    let stack = Stack::start_with_query(&env).await.expect("stack starts");
    stack.publish(&sessions()).await.unwrap();
    let authorization = token.map(|t| format!("Bearer {t}"));
    let client = reqwest::Client::new();
    // Direct writes answer 503 until their NATS connection is up: wait for it first (the
    // harness reads without the token: ask ClickHouse-backed reads with it here).
    let mut ready = false;
    for _ in 0..100 {
        let mut request = client
            .post(format!("{}/api/sessions", stack.query_url))
            .header("content-type", "application/json")
            .body(r#"{"product": "p", "version": "1"}"#);
        if let Some(value) = &authorization {
            request = request.header("authorization", value);
        }
        if request.send().await.unwrap().status().as_u16() == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "direct writes never became ready");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut request = client.get(format!("{}/api/sessions/s1", stack.query_url));
        if let Some(value) = &authorization {
            request = request.header("authorization", value);
        }
        let response = request.send().await.unwrap();
        if response.status().is_success() {
            let session: Value = response.json().await.unwrap();
            if session["status"] == "crashed" {
                break;
            }
        }
        assert!(std::time::Instant::now() < deadline, "s1 never arrived");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let report = stack.logs.path().join("schemathesis.txt");
    let mut command = tokio::process::Command::new("python3");
    command
        .args(["-m", "schemathesis.cli", "run"])
        .arg(format!("{}/api/openapi.json", stack.query_url))
        .args([
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "25",
            "--seed",
            "7",
        ]);
    if let Some(value) = &authorization {
        command
            .arg("--header")
            .arg(format!("Authorization: {value}"));
    }
    let output = command
        .env("PYTHONPATH", &dir)
        .env("SCHEMATHESIS_HOOKS", "")
        .output()
        .await
        .expect("schemathesis runs");
    let text = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    std::fs::write(&report, &text).unwrap();
    assert!(
        output.status.success(),
        "schemathesis found failures:\n{}",
        text.lines()
            .rev()
            .take(80)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(text.contains("passed"), "{text}");
}

/// Read your own writes: a direct write answers with its batch's `seq`, and a read naming it
/// (`min_seq`) sees the write, however fast it follows. A batch that never comes holds a
/// read for the read wait (2 s) only.
#[tokio::test]
async fn reads_naming_the_writers_last_batch_see_it() {
    let stack = Stack::start().await.expect("stack starts");
    let base = stack.query_url.as_str();
    let chosen = "01939d5e-7c2a-7b3e-9c1d-2f4a5b6c7d8e";
    let body = format!(r#"{{"product": "ryw", "version": "1", "session_id": "{chosen}"}}"#);
    let mut created = (0, Value::Null);
    for _ in 0..50 {
        created = post(base, "/api/sessions", &body).await;
        if created.0 != 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(created.0, 200, "{}", created.1);
    assert_eq!(created.1, json!({"session_id": chosen, "seq": 0}));
    // Creating it again (a client retrying) is harmless.
    assert_eq!(post(base, "/api/sessions", &body).await.0, 200);
    let (status, refused) = post(
        base,
        "/api/sessions",
        r#"{"product": "p", "version": "1", "session_id": "s/../x"}"#,
    )
    .await;
    assert_eq!(status, 400, "{refused}");

    for n in 1..=5u64 {
        let (status, written) = post(
            base,
            &format!("/api/sessions/{chosen}/events"),
            &format!(r#"{{"name": "step", "data": {{"n": {n}}}}}"#),
        )
        .await;
        assert_eq!(status, 200, "{written}");
        let seq = written["seq"].as_u64().expect("the write's seq");
        let (status, session) = get(base, &format!("/api/sessions/{chosen}?min_seq={seq}")).await;
        assert_eq!(status, 200, "{session}");
        assert!(session["last_seq"].as_u64().unwrap() >= seq, "{session}");
        assert_eq!(
            session["events"].as_array().unwrap().len() as u64,
            n,
            "the read right after write {n} sees it"
        );
    }
    let (status, ended) = post(base, &format!("/api/sessions/{chosen}/end"), "").await;
    assert_eq!(status, 200);
    let seq = ended["seq"].as_u64().unwrap();
    let (_, events) = get(
        base,
        &format!("/api/sessions/{chosen}/events?min_seq={seq}&limit=10"),
    )
    .await;
    assert_eq!(events["events"].as_array().unwrap().len(), 5);
    let (_, session) = get(base, &format!("/api/sessions/{chosen}?min_seq={seq}")).await;
    assert_eq!(session["active"], false, "{session}");

    // A batch that never comes: the read waits its 2 s, then answers with what there is.
    let started = std::time::Instant::now();
    let (status, session) = get(base, &format!("/api/sessions/{chosen}?min_seq=1000")).await;
    assert_eq!(status, 200);
    assert!(session["last_seq"].as_u64().unwrap() < 1000);
    assert!(
        started.elapsed() >= Duration::from_millis(1900),
        "it waited"
    );
    let (status, _) = get(base, &format!("/api/sessions/{chosen}?min_seq=soon")).await;
    assert_eq!(status, 400);
    let behind = metric_of(base, "datacat_query_reads_behind_total").await;
    assert_eq!(behind.unwrap(), 1);
}

/// A session's detail holds at most `limit` rows of each list (10 000 by default) and says
/// where the rest starts; the metric explorer answers over thousands of sessions (its
/// lookups stay under ClickHouse's query size); a limit out of range is a 400.
#[tokio::test]
async fn reads_are_bounded_and_page() {
    let stack = Stack::start().await.expect("stack starts");
    let mut records = vec![start(*T0, "qa-game", "h1")];
    records.extend((0..25).map(|i| event(*T0 + 1 + i, &format!("e{i}"), Level::Info)));
    let mut batches = vec![batch("long", 0, records)];
    // Many sessions with one metric each, for the explorer.
    const MANY: usize = 7000;
    batches.extend((0..MANY).map(|i| {
        let id = format!("{i:08}-0000-7000-8000-000000000000");
        batch(
            &id,
            0,
            vec![start(*T0 + 5, "qa-many", "h9"), memory(*T0 + 6, i as f64)],
        )
    }));
    stack.publish(&batches).await.unwrap();
    stack
        .wait_session("long", Duration::from_secs(60), |s| {
            s["events"].as_array().is_some_and(|e| e.len() == 25)
        })
        .await
        .unwrap();
    let base = stack.query_url.as_str();
    let names = |session: &Value| -> Vec<String> {
        items(session, "events")
            .iter()
            .map(|e| e["name"].as_str().unwrap().to_string())
            .collect()
    };

    let (status, first) = get(base, "/api/sessions/long?limit=10").await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(
        names(&first),
        (0..10).map(|i| format!("e{i}")).collect::<Vec<_>>()
    );
    assert_eq!(first["more"]["lists"], json!(["events"]));
    assert_eq!(first["more"]["next_offset"], 10);
    let (_, last) = get(base, "/api/sessions/long?limit=10&offset=20").await;
    assert_eq!(
        names(&last),
        (20..25).map(|i| format!("e{i}")).collect::<Vec<_>>()
    );
    assert!(last.get("more").is_none(), "nothing left: {last}");
    let (_, whole) = get(base, "/api/sessions/long").await;
    assert_eq!(names(&whole).len(), 25);
    assert!(whole.get("more").is_none());
    for bad in ["limit=0", "limit=100001", "offset=-1", "limit=ten"] {
        let (status, body) = get(base, &format!("/api/sessions/long?{bad}")).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }

    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let explored = loop {
        let (status, body) = get(
            base,
            "/api/metrics/memory_usage/sessions?product=qa-many&limit=10000",
        )
        .await;
        assert_eq!(status, 200, "{body}");
        if body["matched_sessions"] == MANY {
            break body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not all ingested: {}",
            body["matched_sessions"]
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let sessions = items(&explored, "sessions");
    assert_eq!(sessions.len(), MANY);
    assert!(
        sessions.iter().all(|s| s["product"] == "qa-many"),
        "every session described"
    );
}

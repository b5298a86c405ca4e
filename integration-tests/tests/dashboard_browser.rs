//! The dashboard in a real headless Chromium over seeded data (real NATS, ingest, ClickHouse
//! and query): each page loads, a filter applied through the form lands in the URL and
//! narrows the list, a crashed session opens with its last moments, timeline, exception
//! frames, state tree, history diff and charts. Screenshots are saved in
//! `target/dashboard-screenshots/`.

use std::time::Duration;

use datacat_integration_tests::binaries::repo_root;
use datacat_integration_tests::browser::Browser;
use datacat_integration_tests::Stack;
use datacat_protocol::record::{
    Cause, Event, Frame, Level, Metric, MetricKind, SessionEnd, SessionStart, StateUpdate,
};
use datacat_protocol::{Batch, EndStatus, ExceptionInfo, Histogram, MachineInfo, Record};
use serde_json::json;

/// The sessions' start: two days before the test runs (a fixed time would, a month later,
/// be more than the 30 days ingest believes, and be stored at the receive time instead).
static T0: std::sync::LazyLock<u64> = std::sync::LazyLock::new(|| {
    let hour = 3_600_000;
    (datacat_protocol::time::now_ms() - 48 * hour) / hour * hour
});

/// The browser on the dashboard at `base`, saving screenshots in `shots`.
struct Dashboard<'a> {
    browser: &'a Browser,
    base: &'a str,
    shots: std::path::PathBuf,
}

impl Dashboard<'_> {
    /// Opens the dashboard's page at `path` (with its query string).
    async fn open(&self, path: &str) {
        let url = format!("{}{path}", self.base);
        self.browser.goto(&url).await.unwrap();
    }

    async fn screenshot(&self, name: &str) {
        let path = self.shots.join(name);
        self.browser.screenshot(&path).await.unwrap();
    }
}

fn start(ts_ms: u64, product: &str) -> Record {
    Record::Start(SessionStart {
        ts_ms,
        product: product.into(),
        version: "2.1".into(),
        machine: MachineInfo {
            hostname: "rig-7".into(),
            os_name: "Linux".into(),
            ..Default::default()
        },
        environment: "staging".into(),
        tags: [("team".to_string(), "physics".to_string())].into(),
    })
}

fn gauge(ts_ms: u64, value: f64) -> Record {
    Record::Metric(Metric {
        unit: "MB".into(),
        ..Metric::gauge(ts_ms, "memory_usage", value)
    })
}

fn batches() -> Vec<Batch> {
    let mut histogram = Histogram::new(&[0.1, 0.5, 1.0]);
    for v in [0.05, 0.3, 0.4, 2.0] {
        histogram.observe(v);
    }
    let crash = Record::Event(Event {
        ts_ms: *T0 + 20,
        name: "unhandled_exception".into(),
        level: Level::Error,
        category: "game".into(),
        group: String::new(),
        labels: vec![],
        message: "ZeroDivisionError <b>not bold</b>".into(),
        data: json!({"speed": 0}),
        exception: Some(Box::new(ExceptionInfo {
            type_name: "ZeroDivisionError".into(),
            message: "division by zero".into(),
            stacktrace: vec![],
            frames: vec![Frame {
                file: "game/physics.py".into(),
                line: 42,
                function: "step".into(),
                code: "speed = distance / dt".into(),
                locals: [("dt".to_string(), "0.0".to_string())].into(),
            }],
            causes: vec![Cause {
                type_name: "KeyError".into(),
                message: "'timestep'".into(),
                relation: "context".into(),
                frames: vec![],
            }],
        })),
    });
    vec![
        Batch {
            session_id: "crashy".into(),
            seq: 0,
            records: vec![
                start(*T0, "qa-game"),
                Record::State(StateUpdate {
                    ts_ms: *T0 + 1,
                    update: json!({"pilot": "ada", "window": {"open": ["main menu", "space probe"]}}),
                }),
                gauge(*T0 + 2, 200.0),
                gauge(*T0 + 3, 350.0),
                Record::Metric(Metric {
                    ts_ms: *T0 + 4,
                    name: "load_time".into(),
                    kind: MetricKind::Histogram,
                    value: 0.0,
                    unit: "s".into(),
                    tags: vec![],
                    count: Some(4),
                    histogram: Some(histogram),
                }),
            ],
        },
        Batch {
            session_id: "crashy".into(),
            seq: 1,
            records: vec![
                Record::State(StateUpdate {
                    ts_ms: *T0 + 10,
                    update: json!({"pilot": "grace", "boss": true}),
                }),
                gauge(*T0 + 11, 500.0),
                crash,
                Record::End(SessionEnd {
                    ts_ms: *T0 + 30,
                    status: EndStatus::Crashed,
                    reason: "ZeroDivisionError: division by zero".into(),
                }),
            ],
        },
        Batch {
            session_id: "calm".into(),
            seq: 0,
            records: vec![
                start(*T0 + 1000, "qa-game"),
                gauge(*T0 + 1001, 120.0),
                Record::End(SessionEnd {
                    ts_ms: *T0 + 1002,
                    status: EndStatus::Ended,
                    reason: "player quit".into(),
                }),
            ],
        },
        Batch {
            session_id: "other".into(),
            seq: 0,
            records: vec![start(*T0 + 2000, "qa-tool")],
        },
    ]
}

#[tokio::test]
async fn pages_filters_and_a_crashed_session_in_a_real_browser() {
    let stack = Stack::start().await.expect("stack starts");
    stack.publish(&batches()).await.unwrap();
    for (id, status) in [
        ("crashy", "crashed"),
        ("calm", "ended"),
        ("other", "active"),
    ] {
        stack
            .wait_session(id, Duration::from_secs(30), |s| s["status"] == status)
            .await
            .unwrap();
    }
    let shots = repo_root().join("target/dashboard-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let browser = Browser::start(&stack.logs.path().join("chromedriver.log"))
        .await
        .expect("chromedriver and chromium start");
    let dashboard = Dashboard {
        browser: &browser,
        base: &stack.query_url,
        shots,
    };

    // The sessions list, then a filter applied through the form.
    dashboard.open("/").await;
    if let Err(error) = browser.wait_for_exactly("tr.session-row", 3).await {
        dashboard.screenshot("0-failed.png").await;
        panic!("{error}\n{}", browser.page_text().await.unwrap());
    }
    dashboard.screenshot("1-sessions.png").await;
    // Live: a session that starts while the list is open appears without a reload.
    let late = Batch {
        session_id: "late".into(),
        seq: 0,
        records: vec![start(*T0 + 3000, "qa-tool")],
    };
    stack.publish(&[late]).await.unwrap();
    browser.wait_for_exactly("tr.session-row", 4).await.unwrap();
    let product = browser.wait_for("input[name=product]", 1).await.unwrap();
    browser.type_into(&product[0], "qa-game").await.unwrap();
    let apply = browser
        .find_all("form.filters button[type=submit]")
        .await
        .unwrap();
    browser.click(&apply[0]).await.unwrap();
    browser.wait_for_exactly("tr.session-row", 2).await.unwrap();
    assert!(
        browser.url().await.unwrap().contains("product=qa-game"),
        "the filter is in the URL"
    );
    dashboard.screenshot("2-filtered.png").await;

    // A state filter through the URL: only the session whose state has it now.
    dashboard.open("/?state=pilot%3Dgrace").await;
    browser.wait_for_exactly("tr.session-row", 1).await.unwrap();

    // Open the crashed session from the list.
    dashboard.open("/?status=crashed").await;
    let link = browser
        .wait_for("a[href='/sessions/crashy']", 1)
        .await
        .unwrap();
    browser.click(&link[0]).await.unwrap();
    browser.wait_for("section.last-moments", 1).await.unwrap();
    let text = browser.page_text().await.unwrap();
    for expected in [
        "Last moments before it crashed",
        "ZeroDivisionError: division by zero",
        "game/physics.py:42",
        "dt = 0.0",
        "staging",
        "team: physics",
        "raised while handling KeyError: 'timestep'",
        "unhandled_exception",
        "session_crashed",
        "<b>not bold</b>",
        "grace",
        "rig-7",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} not on the session page:\n{text}"
        );
    }
    let timeline = browser.wait_for(".timeline .event", 2).await.unwrap();
    assert!(
        timeline.len() >= 4,
        "last moments and the timeline list the events"
    );
    browser.wait_for(".json-tree .json-key", 3).await.unwrap();
    browser
        .wait_for("figure.chart path.series", 1)
        .await
        .unwrap();
    browser
        .wait_for("figure.bar-chart rect.bar", 4)
        .await
        .unwrap();
    assert!(
        browser
            .find_all("script[src*='http']")
            .await
            .unwrap()
            .is_empty(),
        "nothing loads from elsewhere"
    );
    // The history slider: back to the first snapshot, then the diff shows the first state.
    let slider = browser.wait_for("input.history-to", 1).await.unwrap();
    browser.click(&slider[0]).await.unwrap();
    browser
        .type_into(&slider[0], "\u{E012}\u{E012}")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    loop {
        let diff = browser.find_all("pre.diff").await.unwrap();
        let shown = browser.text(&diff[0]).await.unwrap();
        if shown.contains("\"ada\"") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the diff never showed snapshot 1: {shown}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    dashboard.screenshot("3-crashed-session.png").await;

    // Live: an active session's page shows new state without a reload.
    dashboard.open("/sessions/other").await;
    browser.wait_for("section.session-header", 1).await.unwrap();
    let update = Batch {
        session_id: "other".into(),
        seq: 1,
        records: vec![Record::State(StateUpdate {
            ts_ms: *T0 + 2001,
            update: json!({"wave": 9}),
        })],
    };
    stack.publish(&[update]).await.unwrap();
    let started = std::time::Instant::now();
    while !browser.page_text().await.unwrap().contains("wave") {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the new state never showed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Products and the metric explorer.
    dashboard.open("/products").await;
    browser
        .wait_for("table.products tbody tr", 2)
        .await
        .unwrap();
    let text = browser.page_text().await.unwrap();
    assert!(
        text.contains("50.0 %"),
        "qa-game: one of two crashed:\n{text}"
    );
    dashboard.screenshot("4-products.png").await;
    dashboard
        .open("/explore?name=memory_usage&stat=peak&ever_contains=window.open%3Dspace%20probe")
        .await;
    browser
        .wait_for_exactly("table.explorer tbody tr", 1)
        .await
        .unwrap();
    let text = browser.page_text().await.unwrap();
    assert!(text.contains("crashy") && text.contains("500"), "{text}");
    browser
        .wait_for("figure.bar-chart rect.bar", 1)
        .await
        .unwrap();
    dashboard.screenshot("5-explorer.png").await;
    browser.close().await.unwrap();
}

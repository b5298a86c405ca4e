//! The query API's reads, asked of two deployments that hold the same rows (two ClickHouse
//! versions; a single server and a cluster): every answer must be the same.

use anyhow::{bail, Result};
use serde_json::Value;

/// What the reads ask about: values the rows of both deployments hold.
pub struct Fixture {
    pub product: String,
    /// Sessions whose own reads (detail, events, metrics, state, diff) are asked.
    pub sessions: Vec<String>,
    /// A window of times (RFC 3339) that holds some sessions' starts and records, not all.
    pub from: String,
    pub to: String,
}

impl Fixture {
    /// The reads' values for `sessions` of `product` in the deployment at `base` (the
    /// reference): the window holds the starts from the quarter to the middle of its
    /// sessions, oldest first.
    pub async fn of(base: &str, product: &str, sessions: Vec<String>) -> Result<Self> {
        let url = format!("{base}/api/sessions?sort=started&order=asc&limit=1000");
        let list: Value = reqwest::get(url).await?.json().await?;
        let starts: Vec<&str> = list["sessions"]
            .as_array()
            .map(|all| {
                all.iter()
                    .filter_map(|s| s["created_at"].as_str())
                    .collect()
            })
            .unwrap_or_default();
        if starts.len() < 8 {
            bail!("too few sessions for a window: {list}");
        }
        Ok(Self {
            product: product.to_string(),
            sessions,
            from: starts[starts.len() / 4].to_string(),
            to: starts[starts.len() / 2].to_string(),
        })
    }
}

/// Every read of the query API about `sessions` of `product` ([`every_read`], its window
/// from the reference: [`Fixture::of`]), asked of `expected` and `actual`, as
/// [`assert_same`]. Returns how many reads there are, and how many were compared with the
/// further pages of lists.
pub async fn assert_every_read_same(
    expected: &str,
    actual: &str,
    product: &str,
    sessions: Vec<String>,
) -> Result<(usize, usize)> {
    let reads = every_read(&Fixture::of(expected, product, sessions).await?);
    let compared = assert_same(expected, actual, &reads).await?;
    Ok((reads.len(), compared))
}

/// List pages followed through their cursors, at most.
const PAGES: usize = 3;

/// Every read of the query API: the session list with each filter and sort, each session's
/// detail, events, metrics, state at a sequence and at a time and diffs, products and their
/// trend, the metric explorer, and every export.
pub fn every_read(fixture: &Fixture) -> Vec<String> {
    let Fixture {
        product, from, to, ..
    } = fixture;
    let mut reads = vec!["/api/sessions".to_string()];
    for sort in ["started", "updated", "ended", "events"] {
        for order in ["desc", "asc"] {
            reads.push(format!("/api/sessions?sort={sort}&order={order}&limit=7"));
        }
    }
    let filters = [
        format!("product={product}"),
        "product=no-such-product".to_string(),
        "version=1.1".to_string(),
        "status=crashed".to_string(),
        "status=ended".to_string(),
        "status=active".to_string(),
        format!("from={from}&to={to}"),
        format!("from={from}"),
        "hostname=build-agent-7".to_string(),
        "machine_id=machine-b".to_string(),
        "state=scene%3Dmap".to_string(),
        "state=window_state.active%3Dinventory".to_string(),
        "state=player.level%3D3".to_string(),
        "ever=scene%3Dsettings".to_string(),
        "contains=window_state.open%3Dmap".to_string(),
        "ever_contains=window_state.open%3Dinventory".to_string(),
        "event=event_3".to_string(),
        "level=error".to_string(),
        "q=00003".to_string(),
        "q=inventory".to_string(),
        "q=out%20of%20memory".to_string(),
        format!("product={product}&status=ended&level=warning&sort=events&order=asc"),
        "state=scene%3Dmap&ever=scene%3Dinventory&event=event_1".to_string(),
    ];
    for filter in &filters {
        reads.push(format!("/api/sessions?{filter}&limit=5"));
    }
    for id in &fixture.sessions {
        let session = format!("/api/sessions/{id}");
        reads.extend([
            session.clone(),
            format!("{session}?limit=3&offset=2"),
            format!("{session}/events"),
            format!("{session}/events?level=warning"),
            format!("{session}/events?name=event_2&limit=2&offset=1"),
            format!("{session}/events?category=ui"),
            format!("{session}/metrics"),
            format!("{session}/metrics?name=fps"),
            format!("{session}/state"),
            format!("{session}/state?seq=1"),
            format!("{session}/state?at={from}"),
            format!("{session}/state?at={to}"),
            format!("{session}/state/diff?from_seq=0&to_seq=2"),
            format!("{session}/state/diff?from_at={from}&to_at={to}"),
        ]);
    }
    reads.extend([
        "/api/sessions/no-such-session".to_string(),
        "/api/sessions/no-such-session/events".to_string(),
        "/api/products".to_string(),
        "/api/products?version=1.1".to_string(),
        "/api/products/trend".to_string(),
        format!("/api/products/trend?product={product}"),
    ]);
    for stat in ["peak", "min", "avg", "last"] {
        reads.push(format!("/api/metrics/fps/sessions?stat={stat}"));
    }
    reads.extend([
        format!("/api/metrics/memory_usage/sessions?product={product}&status=ended&limit=5"),
        "/api/metrics/frame_time/sessions".to_string(),
        "/api/metrics/no-such-metric/sessions".to_string(),
    ]);
    for format in ["csv", "ndjson"] {
        reads.extend([
            format!("/api/export/sessions?format={format}"),
            format!("/api/export/sessions?format={format}&status=crashed&limit=3"),
            format!("/api/export/events?format={format}&level=error"),
            format!("/api/export/events?format={format}&product={product}&limit=40"),
            format!("/api/export/metrics?format={format}&name=fps"),
            format!("/api/export/metrics?format={format}&limit=50"),
        ]);
    }
    reads.extend([
        "/api/data/sessions".to_string(),
        "/api/data/sessions?status=crashed".to_string(),
        format!("/api/grafana/sessions?from={from}&to={to}"),
        "/api/grafana/sessions".to_string(),
    ]);
    reads
}

/// One deployment's answer to a read.
#[derive(Debug, PartialEq)]
struct Answer {
    status: u16,
    body: Body,
}

#[derive(Debug, PartialEq)]
enum Body {
    Json(Value),
    Text(String),
}

async fn ask(client: &reqwest::Client, base: &str, path: &str) -> Result<Answer> {
    let response = client.get(format!("{base}{path}")).send().await?;
    let status = response.status().as_u16();
    // A stream the server cuts (a read failing half-way) is an answer too: a wrong one.
    let text = match response.text().await {
        Ok(text) => text,
        Err(error) => format!("(the answer was cut: {error})"),
    };
    let body = match serde_json::from_str(&text) {
        Ok(value) => Body::Json(value),
        Err(_) => Body::Text(text),
    };
    Ok(Answer { status, body })
}

/// Asks `expected` and `actual` every read (and the further pages of lists, through their
/// cursors); fails naming every read whose status or body differ, and every read the
/// reference refuses (400: the read itself is wrong) or does not find but for
/// `no-such-` names. Returns how many reads were compared.
pub async fn assert_same(expected: &str, actual: &str, reads: &[String]) -> Result<usize> {
    let client = reqwest::Client::new();
    let mut compared = 0;
    let mut differences = Vec::new();
    for read in reads {
        let mut path = read.clone();
        for _ in 0..PAGES {
            let want = ask(&client, expected, &path).await?;
            let got = ask(&client, actual, &path).await?;
            compared += 1;
            let found = want.status == 200 || (want.status == 404 && path.contains("no-such-"));
            if !found {
                differences.push(format!("{path}: the reference answered {}", shown(&want)));
            }
            if want != got {
                differences.push(format!(
                    "{path}:\n  expected {}\n  actual   {}",
                    shown(&want),
                    shown(&got)
                ));
                break;
            }
            let Body::Json(answer) = &want.body else {
                break;
            };
            let Some(cursor) = answer.get("next_cursor").and_then(Value::as_str) else {
                break;
            };
            let separator = if read.contains('?') { '&' } else { '?' };
            path = format!("{read}{separator}cursor={cursor}");
        }
    }
    if !differences.is_empty() {
        bail!(
            "{} of {compared} reads differ:\n{}",
            differences.len(),
            differences.join("\n")
        );
    }
    Ok(compared)
}

fn shown(answer: &Answer) -> String {
    let body = match &answer.body {
        Body::Json(value) => value.to_string(),
        Body::Text(text) => text.clone(),
    };
    let cut: String = body.chars().take(600).collect();
    format!("{} {cut}", answer.status)
}

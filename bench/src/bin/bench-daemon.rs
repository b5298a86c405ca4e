//! Benchmark: events per second from a batching client through one `datacat-daemon` into
//! JetStream, and the daemon's memory idle and under load. Prints figures; asserts nothing.
//!
//! Run it with `deploy/bench.sh daemon` (release build). Options (environment):
//! `BENCH_EVENTS` (default 1 000 000), `BENCH_BATCH` events per request (1000),
//! `BENCH_CLIENTS` concurrent client connections (2).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use async_nats::jetstream::{self, stream};
use datacat_bench::measure::env_or;
use datacat_integration_tests::{Daemon, Nats};
use datacat_protocol::subject;
use serde_json::json;

/// Resident memory of a process, in bytes.
fn rss_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map(|kib| kib * 1024)
        .unwrap_or_default()
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

#[tokio::main]
async fn main() -> Result<()> {
    let events = env_or("BENCH_EVENTS", 1_000_000u64);
    let per_request = env_or("BENCH_BATCH", 1000u64).max(1);
    let clients = env_or("BENCH_CLIENTS", 2u64).max(1);

    let nats = Nats::start().await?;
    let client =
        datacat_jetstream::connect_client(async_nats::ConnectOptions::new(), &nats.url).await?;
    let js = jetstream::new(client);
    js.create_stream(stream::Config {
        name: subject::STREAM.into(),
        subjects: vec![subject::SESSION_SUBJECTS.into()],
        storage: stream::StorageType::File,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await?;

    let dir = tempfile::tempdir()?;
    let daemon = Daemon::start(
        &nats.url,
        &dir.path().join("spool"),
        &dir.path().join("daemon.log"),
        &[("RUST_LOG", "warn")],
    )?;
    let pid = daemon.pid();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_rss = rss_bytes(pid);

    // One session per client, as separate application threads would have.
    let mut sessions = Vec::new();
    for _ in 0..clients {
        sessions.push(daemon.register("bench", "1").await?);
    }
    let idle_with_sessions_rss = rss_bytes(pid);

    let peak_rss = Arc::new(AtomicU64::new(0));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (peak, sampling) = (peak_rss.clone(), sampling.clone());
        tokio::spawn(async move {
            while sampling.load(Ordering::Relaxed) {
                peak.fetch_max(rss_bytes(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    // The client's own JSON encoding is the application's cost, not the daemon's: bodies are
    // built before the clock starts.
    let requests = events.div_ceil(per_request);
    let bodies: Vec<(usize, String)> = (0..requests)
        .map(|request| {
            let client = (request % clients) as usize;
            let items: Vec<_> = (0..per_request)
                .map(|i| json!({"kind": "event", "name": "frame", "level": "info", "data": {"frame": request * per_request + i, "fps": 59.9}}))
                .collect();
            (client, json!({"session_id": sessions[client], "items": items}).to_string())
        })
        .collect();
    let mut per_client: Vec<Vec<String>> = vec![Vec::new(); clients as usize];
    for (client, body) in bodies {
        per_client[client].push(body);
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for bodies in per_client {
        let url = format!("{}/batch", daemon.url);
        let token = daemon.token.clone();
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            for body in bodies {
                let response = http
                    .post(&url)
                    .bearer_auth(&token)
                    .body(body)
                    .send()
                    .await?;
                ensure!(
                    response.status().is_success(),
                    "batch answered {}",
                    response.status()
                );
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let accepted = started.elapsed();
    // Delivered = acknowledged by JetStream (the daemon's spool is empty again).
    loop {
        let health = daemon.get("/health").await?;
        if health["pending_records"] == 0 && health["spooled_bytes"] == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let delivered = started.elapsed();
    sampling.store(false, Ordering::Relaxed);
    sampler.await?;
    let after_rss = rss_bytes(pid);

    let info = js
        .get_stream(subject::STREAM)
        .await
        .context("stream")?
        .info()
        .await?
        .state
        .clone();
    println!("daemon benchmark: {events} events, {per_request} per /batch request, {clients} client connection(s)");
    println!(
        "  accepted by the daemon     {:>10.0} events/s ({:.2} s)",
        events as f64 / accepted.as_secs_f64(),
        accepted.as_secs_f64()
    );
    println!(
        "  acknowledged by JetStream  {:>10.0} events/s ({:.2} s)   target >= 200000",
        events as f64 / delivered.as_secs_f64(),
        delivered.as_secs_f64()
    );
    println!(
        "  JetStream messages         {:>10} ({:.1} MiB, {:.0} events per message)",
        info.messages,
        mib(info.bytes),
        events as f64 / info.messages.max(1) as f64
    );
    println!(
        "  daemon RSS idle            {:>10.1} MiB   target <= 20",
        mib(idle_rss)
    );
    println!(
        "  daemon RSS, sessions open  {:>10.1} MiB",
        mib(idle_with_sessions_rss)
    );
    println!(
        "  daemon RSS peak under load {:>10.1} MiB",
        mib(peak_rss.load(Ordering::Relaxed))
    );
    println!("  daemon RSS after the load  {:>10.1} MiB", mib(after_rss));
    Ok(())
}

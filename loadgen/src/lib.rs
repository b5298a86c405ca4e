//! `datacat-loadgen`: many simulated applications and sessions, through real daemons or
//! straight to JetStream, at a target rate; measures throughput, ingest lag and freshness
//! (from the client call to visible in the query API).

pub mod config;
mod daemons;
mod jetstream;
pub mod load;
pub mod measure;
mod report;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::future::join_all;

pub use config::{Config, Via};
use daemons::Daemon;
use jetstream::Publisher;
use load::Call;
use measure::{Lag, Probes};
pub use report::Report;

/// Where calls go: the daemons (session -> its daemon), or JetStream.
enum Sink {
    Daemons(Vec<Daemon>),
    JetStream(Box<Publisher>),
}

/// Runs the load described by `config` and measures it.
pub async fn run(config: &Config) -> Result<Report> {
    let workdir = match &config.spool_dir {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join(format!("datacat-loadgen-{}", std::process::id())),
    };
    std::fs::create_dir_all(&workdir)?;
    let (mut sink, sessions) = open(config, &workdir).await?;

    let stop_sampling = Arc::new(tokio::sync::Notify::new());
    let sampler = tokio::spawn(
        connect_lag(&config.nats.nats_url)
            .await?
            .sample_until(stop_sampling.clone()),
    );
    let probes = Arc::new(Probes::default());
    let stop = Arc::new(tokio::sync::Notify::new());
    let watcher = tokio::spawn(probes.clone().watch(
        config.query_url.trim_end_matches('/').to_string(),
        config.read_token.clone(),
        stop.clone(),
        Duration::from_secs(60),
    ));

    let started = Instant::now();
    let (mut sent, mut send_errors, mut next_call, mut cursor) = (0u64, 0u64, 0u64, 0usize);
    let mut probes_sent = 0u64;
    let probe_every = Duration::from_secs_f64(1.0 / config.probes_per_second.max(1) as f64);
    let mut next_probe = started;
    let tick = Duration::from_millis(50);
    while started.elapsed() < config.duration() {
        let elapsed_ms = started.elapsed().as_millis() as u64;
        let n = load::due(config.rate, elapsed_ms, sent);
        let now_ms = datacat_protocol::time::now_ms();
        let mut calls: BTreeMap<usize, Vec<Call>> = BTreeMap::new();
        for _ in 0..n {
            calls
                .entry(cursor)
                .or_default()
                .push(load::call(next_call, now_ms));
            cursor = (cursor + 1) % sessions.len();
            next_call += 1;
        }
        let mut probe_now = Vec::new();
        while next_probe <= Instant::now() {
            let session = (probes_sent as usize * 7) % sessions.len();
            calls
                .entry(session)
                .or_default()
                .push(load::probe(probes_sent, now_ms));
            probe_now.push((session, probes_sent));
            probes_sent += 1;
            next_probe += probe_every;
        }
        let call_time = Instant::now();
        for (session, id) in probe_now {
            probes.sent(&sessions[session].1, id, call_time);
        }
        send_errors += send(&mut sink, &sessions, calls).await;
        sent += n;
        let spent = call_time.elapsed();
        if spent < tick {
            tokio::time::sleep(tick - spent).await;
        }
    }
    let load_seconds = started.elapsed().as_secs_f64();

    let ended_at = Instant::now();
    let delivered = close(&mut sink, &sessions).await;
    stop.notify_one();
    let _ = watcher.await;
    stop_sampling.notify_one();
    let (mut lag, max_lag) = sampler.await?;
    // Drained: the ingest consumer has nothing left.
    let mut drained = None;
    while ended_at.elapsed() < Duration::from_secs(120) {
        if lag.messages().await.unwrap_or(u64::MAX) == 0 {
            drained = Some(ended_at.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if let Sink::Daemons(daemons) = sink {
        join_all(daemons.into_iter().map(Daemon::stop)).await;
    }
    if config.spool_dir.is_none() {
        let _ = std::fs::remove_dir_all(&workdir);
    }
    Ok(Report {
        via: config.via,
        apps: config.apps,
        sessions: sessions.len(),
        target_rate: config.rate,
        load_seconds,
        sent,
        probes_sent,
        send_errors,
        delivered,
        latencies: probes.latencies(),
        unseen: probes.outstanding(),
        max_lag,
        drained,
    })
}

/// Ingest creates the stream and consumer; give it a moment if it is starting too.
async fn connect_lag(nats_url: &str) -> Result<Lag> {
    let mut attempts = 0;
    loop {
        match Lag::connect(nats_url).await {
            Ok(lag) => return Ok(lag),
            Err(error) if attempts < 50 => {
                attempts += 1;
                tracing::debug!(%error, "ingest consumer not there yet");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(error) => {
                return Err(error)
                    .context("reading the ingest consumer (is datacat-ingest running?)")
            }
        }
    }
}

/// Starts the applications and their sessions.
async fn open(config: &Config, workdir: &std::path::Path) -> Result<(Sink, Vec<(usize, String)>)> {
    let mut sessions = Vec::new();
    match config.via {
        Via::Daemon => {
            let mut daemons = Vec::new();
            for app in 0..config.apps.max(1) {
                let spool = workdir.join(format!("spool-{app}"));
                let log = workdir.join(format!("daemon-{app}.log"));
                daemons.push(
                    Daemon::start(&config.daemon_bin, &config.nats.nats_url, &spool, &log).await?,
                );
            }
            for (app, daemon) in daemons.iter().enumerate() {
                for _ in 0..config.sessions.max(1) {
                    sessions.push((
                        app,
                        daemon
                            .register(&config.product, &format!("app-{app}"))
                            .await?,
                    ));
                }
            }
            Ok((Sink::Daemons(daemons), sessions))
        }
        Via::Jetstream => {
            let mut publisher = Publisher::connect(&config.nats.nats_url).await?;
            for app in 0..config.apps.max(1) {
                for _ in 0..config.sessions.max(1) {
                    let id = publisher.new_session();
                    publisher.start(&id, &config.product).await?;
                    sessions.push((app, id));
                }
            }
            Ok((Sink::JetStream(Box::new(publisher)), sessions))
        }
    }
}

/// Sends one tick's calls; returns how many requests failed.
async fn send(
    sink: &mut Sink,
    sessions: &[(usize, String)],
    calls: BTreeMap<usize, Vec<Call>>,
) -> u64 {
    match sink {
        Sink::Daemons(daemons) => {
            let requests = calls.into_iter().map(|(session, calls)| {
                let (app, id) = &sessions[session];
                let items = calls.into_iter().map(jetstream::item).collect();
                daemons[*app].batch(id, items)
            });
            join_all(requests)
                .await
                .iter()
                .filter(|r| r.is_err())
                .count() as u64
        }
        Sink::JetStream(publisher) => {
            let mut failed = 0;
            for (session, calls) in calls {
                if publisher.send(&sessions[session].1, calls).await.is_err() {
                    failed += 1;
                }
            }
            failed
        }
    }
}

/// Ends every session; returns how many were confirmed delivered.
async fn close(sink: &mut Sink, sessions: &[(usize, String)]) -> usize {
    match sink {
        Sink::Daemons(daemons) => {
            let ends = sessions.iter().map(|(app, id)| daemons[*app].end(id));
            join_all(ends)
                .await
                .iter()
                .filter(|r| matches!(r, Ok(true)))
                .count()
        }
        Sink::JetStream(publisher) => {
            let mut delivered = 0;
            for (_, id) in sessions {
                if publisher.end(id).await.is_ok() {
                    delivered += 1;
                }
            }
            delivered
        }
    }
}

//! The figures a run produced, printed as a small table.

use std::fmt;
use std::time::Duration;

use crate::config::Via;
use crate::measure::quantile;

pub struct Report {
    pub via: Via,
    pub apps: usize,
    pub sessions: usize,
    pub target_rate: u64,
    pub load_seconds: f64,
    /// Calls made (events, gauges, state updates), probes not included.
    pub sent: u64,
    pub probes_sent: u64,
    pub send_errors: u64,
    /// Sessions whose end was confirmed delivered to JetStream.
    pub delivered: usize,
    /// Probe latencies (client call -> visible in the query API), sorted.
    pub latencies: Vec<Duration>,
    /// Probes never seen.
    pub unseen: usize,
    pub max_lag: u64,
    /// From the end of the load until the ingest consumer had nothing left.
    pub drained: Option<Duration>,
}

impl Report {
    pub fn rate(&self) -> f64 {
        self.sent as f64 / self.load_seconds.max(1e-9)
    }

    pub fn freshness(&self, q: f64) -> Option<Duration> {
        quantile(&self.latencies, q)
    }
}

fn ms(d: Option<Duration>) -> String {
    d.map_or("-".into(), |d| format!("{} ms", d.as_millis()))
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "datacat-loadgen: via {:?}, {} apps, {} sessions, target {} calls/s for {:.1} s",
            self.via, self.apps, self.sessions, self.target_rate, self.load_seconds
        )?;
        writeln!(
            f,
            "  throughput      {:>10.0} calls/s ({} calls, {} failed requests; {} of {} sessions' ends delivered)",
            self.rate(),
            self.sent,
            self.send_errors,
            self.delivered,
            self.sessions
        )?;
        writeln!(
            f,
            "  ingest lag      max {} messages pending; drained {} after the load",
            self.max_lag,
            ms(self.drained)
        )?;
        write!(
            f,
            "  freshness       {} probes: p50 {}, p99 {}, max {} ({} never seen)   target p99 <= 1000 ms",
            self.probes_sent,
            ms(self.freshness(0.5)),
            ms(self.freshness(0.99)),
            ms(self.latencies.last().copied()),
            self.unseen
        )
    }
}

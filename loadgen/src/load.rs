//! The calls the simulated sessions make, paced to a target rate.

use serde_json::{json, Value};

/// One call of a simulated application.
#[derive(Debug, Clone)]
pub enum Call {
    Event {
        ts_ms: u64,
        name: String,
        data: Value,
    },
    Gauge {
        ts_ms: u64,
        name: String,
        value: f64,
    },
    State {
        ts_ms: u64,
        update: Value,
    },
}

/// The event name of freshness probes.
pub const PROBE: &str = "loadgen_probe";

/// The `n`-th call of a session: 9 in 10 are events, then a gauge or a state update.
pub fn call(n: u64, ts_ms: u64) -> Call {
    match n % 10 {
        3 => Call::Gauge {
            ts_ms,
            name: "fps".into(),
            value: 30.0 + (n % 31) as f64,
        },
        7 => {
            let scene = ["menu", "space", "map"][(n / 10 % 3) as usize];
            Call::State {
                ts_ms,
                update: json!({"frame": n, "scene": scene}),
            }
        }
        _ => Call::Event {
            ts_ms,
            name: "tick".into(),
            data: json!({"n": n}),
        },
    }
}

/// A freshness probe: an event whose arrival in the query API is timed.
pub fn probe(id: u64, ts_ms: u64) -> Call {
    Call::Event {
        ts_ms,
        name: PROBE.into(),
        data: json!({"probe": id}),
    }
}

/// How many calls are due after `elapsed_ms` at `rate` per second, given `sent` so far.
pub fn due(rate: u64, elapsed_ms: u64, sent: u64) -> u64 {
    (rate.saturating_mul(elapsed_ms) / 1000).saturating_sub(sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_mostly_events() {
        let events = (0..100)
            .filter(|n| matches!(call(*n, 0), Call::Event { .. }))
            .count();
        assert_eq!(events, 80);
    }

    #[test]
    fn pacing_catches_up_and_never_goes_negative() {
        assert_eq!(due(50_000, 20, 0), 1000);
        assert_eq!(due(50_000, 20, 1000), 0);
        assert_eq!(due(50_000, 20, 5000), 0);
        assert_eq!(due(50_000, 1000, 20_000), 30_000);
    }
}

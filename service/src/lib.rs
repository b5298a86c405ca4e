//! What every DataCat service process shares: logging setup, shutdown on signals,
//! Prometheus text rendering, the page policy, and JSON error answers.

use std::fmt::Write;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Logs to stderr (stdout may be a handshake pipe), filtered by `RUST_LOG` (default `info`),
/// coloured only on a terminal.
pub fn init_tracing() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
}

/// Turns transparent huge pages off for this process. mimalloc asks for them on its arenas,
/// and with the kernel's `madvise` policy every first touch of a 2 MiB page may wait for the
/// kernel to compact memory into one: on these machines the first 2 GB so touched took 18 s
/// against 0.8 s in 4 KiB pages, and a freshly started ingest worker spent four fifths of its
/// CPU in that until its arenas had grown (perf, `deploy/bench.sh ingest`).
pub fn disable_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl with PR_SET_THP_DISABLE takes plain integers and changes only this
    // process's page policy.
    #[allow(unsafe_code)]
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

/// A JSON error answer: `{"error": "<code>", "message": "...", ...extra}` with the code's
/// HTTP status (`ErrorCode::http_status`).
pub fn error_response(
    code: datacat_api::errors::ErrorCode,
    message: String,
    extra: serde_json::Map<String, serde_json::Value>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut body = serde_json::Map::new();
    body.insert("error".into(), code.as_str().into());
    body.insert("message".into(), message.into());
    body.extend(extra);
    let status = axum::http::StatusCode::from_u16(code.http_status())
        .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
    (status, axum::Json(serde_json::Value::Object(body))).into_response()
}

/// Cancels `shutdown` on the first SIGTERM or SIGINT.
pub async fn cancel_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        warn!("cannot install signal handlers; stop with SIGKILL");
        return;
    };
    tokio::select! {
        _ = term.recv() => info!("SIGTERM: shutting down"),
        _ = int.recv() => info!("SIGINT: shutting down"),
        _ = shutdown.cancelled() => return,
    }
    shutdown.cancel();
}

/// The Prometheus type of a sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    Counter,
    Gauge,
}

/// One sample of the Prometheus text format.
pub struct Sample<'a> {
    pub name: &'a str,
    pub help: &'a str,
    pub kind: MetricType,
    /// One label (name, value): samples of one metric told apart, rendered one after another.
    pub label: Option<(&'a str, &'a str)>,
    pub value: u64,
}

impl<'a> Sample<'a> {
    /// A counter read from an atomic.
    pub fn counter(name: &'a str, help: &'a str, value: &AtomicU64) -> Self {
        Self {
            name,
            help,
            kind: MetricType::Counter,
            label: None,
            value: value.load(Ordering::Relaxed),
        }
    }

    /// One labelled series of a counter; its series are given one after another.
    pub fn labelled_counter(
        name: &'a str,
        help: &'a str,
        label: (&'a str, &'a str),
        value: &AtomicU64,
    ) -> Self {
        Self {
            label: Some(label),
            ..Self::counter(name, help, value)
        }
    }

    pub fn gauge(name: &'a str, help: &'a str, value: u64) -> Self {
        Self {
            name,
            help,
            kind: MetricType::Gauge,
            label: None,
            value,
        }
    }
}

/// Renders samples in the Prometheus text exposition format.
pub fn prometheus_text(samples: &[Sample<'_>]) -> String {
    let mut out = String::new();
    let mut previous = None;
    for sample in samples {
        let kind = match sample.kind {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
        };
        // A metric's labelled series share one HELP and TYPE.
        if previous != Some(sample.name) {
            let (name, help) = (sample.name, sample.help);
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        }
        previous = Some(sample.name);
        let series = match sample.label {
            Some(label) => series(sample.name, label),
            None => sample.name.to_string(),
        };
        let _ = writeln!(out, "{series} {}", sample.value);
    }
    out
}

/// The name of one labelled series of a metric, as it stands in the text: `name{key="value"}`.
pub fn series(name: &str, (key, value): (&str, &str)) -> String {
    format!("{name}{{{key}=\"{value}\"}}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_text_format() {
        let text = prometheus_text(&[Sample {
            name: "x_total",
            help: "Xs.",
            kind: MetricType::Counter,
            label: None,
            value: 3,
        }]);
        assert_eq!(
            text,
            "# HELP x_total Xs.\n# TYPE x_total counter\nx_total 3\n"
        );
    }

    #[test]
    fn labelled_series_share_one_help_and_type() {
        let (a, b) = (AtomicU64::new(1), AtomicU64::new(2));
        let text = prometheus_text(&[
            Sample::labelled_counter("y_total", "Ys.", ("why", "a"), &a),
            Sample::labelled_counter("y_total", "Ys.", ("why", "b"), &b),
            Sample::gauge("z", "Z.", 4),
        ]);
        assert_eq!(
            text,
            "# HELP y_total Ys.\n# TYPE y_total counter\ny_total{why=\"a\"} 1\n\
             y_total{why=\"b\"} 2\n# HELP z Z.\n# TYPE z gauge\nz 4\n"
        );
    }
}

/// A fresh secret: 32 bytes from the operating system's random source, as 64 hex digits.
pub fn random_secret() -> std::io::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(std::io::Error::other)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod secret_tests {
    use super::*;

    #[test]
    fn secrets_are_fresh() {
        let (a, b) = (random_secret().unwrap(), random_secret().unwrap());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }
}

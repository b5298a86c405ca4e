//! The names a session's records are told in: an event's level, a metric's kind, how a
//! session ended and its status. Each is written once, here (see [`crate::names`]), and is
//! the same in MessagePack, JSON, ClickHouse and URLs.

crate::named_enum! {
    /// Severity of an event.
    #[derive(Default)]
    pub enum Level {
        Debug = "debug",
        #[default]
        Info = "info",
        Warning = "warning",
        Error = "error",
        Critical = "critical",
    }
}

impl Level {
    /// Parses a level name leniently (`warn`, `fatal` and any case are accepted).
    pub fn parse(name: &str) -> Option<Level> {
        match name.to_ascii_lowercase().as_str() {
            "trace" => Some(Level::Debug),
            "information" => Some(Level::Info),
            "warn" => Some(Level::Warning),
            "err" => Some(Level::Error),
            "fatal" => Some(Level::Critical),
            name => Level::from_name(name),
        }
    }
}

crate::named_enum! {
    /// How a metric value is to be read.
    #[derive(Default)]
    pub enum MetricKind {
        #[default]
        Gauge = "gauge",
        Counter = "counter",
        Histogram = "histogram",
        Timer = "timer",
    }
}

impl MetricKind {
    /// Parses a kind name in any case.
    pub fn parse(name: &str) -> Option<MetricKind> {
        MetricKind::from_name(&name.to_ascii_lowercase())
    }
}

crate::named_enum! {
    /// How a session ended.
    #[derive(Default)]
    pub enum EndStatus {
        /// The client ended it.
        #[default]
        Ended = "ended",
        /// The process died without ending it.
        Crashed = "crashed",
        /// The daemon itself vanished.
        Lost = "lost",
    }
}

crate::named_enum! {
    /// A session's status: `active` until it ends, `hung` while a monitored session's
    /// heartbeat is overdue (active again at the next one), then `ended`, `crashed` or `lost`
    /// for good (the first of those wins).
    #[derive(Default)]
    pub enum Status {
        /// (Progress records written before any batch was applied say `""`.)
        #[default]
        #[serde(alias = "")]
        Active = "active",
        Hung = "hung",
        Ended = "ended",
        Crashed = "crashed",
        Lost = "lost",
    }
}

impl From<EndStatus> for Status {
    fn from(end: EndStatus) -> Self {
        match end {
            EndStatus::Ended => Status::Ended,
            EndStatus::Crashed => Status::Crashed,
            EndStatus::Lost => Status::Lost,
        }
    }
}

impl Status {
    /// Ended, crashed or lost: nothing changes it any more.
    pub fn is_terminal(self) -> bool {
        matches!(self, Status::Ended | Status::Crashed | Status::Lost)
    }
}

#[cfg(test)]
mod name_tests {
    use super::*;
    use crate::names::check_serde_names;

    #[test]
    fn serde_writes_every_variant_as_its_name() {
        check_serde_names(Level::ALL, Level::as_str).unwrap();
        check_serde_names(MetricKind::ALL, MetricKind::as_str).unwrap();
        check_serde_names(EndStatus::ALL, EndStatus::as_str).unwrap();
        check_serde_names(Status::ALL, Status::as_str).unwrap();
        // A progress record written before its first batch was applied.
        assert_eq!(
            serde_json::from_str::<Status>("\"\"").unwrap(),
            Status::Active
        );
    }
}

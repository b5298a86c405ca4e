//! Why a planned group goes to ClickHouse when it does, counted per reason in `/metrics`:
//! many small inserts with `caught_up` or `stalled` beside them say a worker is short of
//! messages, not of ClickHouse.

/// What the stream has for this worker beyond what it holds, as of its last messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backlog {
    /// At least another fetch's worth was queued, and messages keep coming.
    Queued,
    /// Less than a fetch was queued behind the last messages.
    CaughtUp,
    /// Queued, but nothing has arrived for `--fetch-wait-ms` (every message
    /// `--max-ack-pending` lets out is out, or the other workers took them).
    Stalled,
}

/// Why a group went on to be inserted when it did (`/metrics` counts each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertReason {
    /// It reached `PLANNED_ROWS_LIMIT` times `--insert-rows`: planning waits for ClickHouse.
    Full,
    /// It has the `--insert-rows` rows an insert wants.
    Rows,
    /// It waited `--insert-wait-ms` for them, more being queued.
    Waited,
    /// No more is queued.
    CaughtUp,
    /// More is queued but none arrives.
    Stalled,
    /// The worker is stopping.
    Shutdown,
}

impl InsertReason {
    pub const ALL: [Self; 6] = [
        Self::Full,
        Self::Rows,
        Self::Waited,
        Self::CaughtUp,
        Self::Stalled,
        Self::Shutdown,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Rows => "rows",
            Self::Waited => "waited",
            Self::CaughtUp => "caught_up",
            Self::Stalled => "stalled",
            Self::Shutdown => "shutdown",
        }
    }

    /// Why a group goes now that ClickHouse is free, if it does: it has the rows an insert
    /// wants (`enough_rows`), or no backlog would bring them soon, or it `waited` long enough
    /// for a backlog that does.
    pub(crate) fn when_free(enough_rows: bool, waited: bool, backlog: Backlog) -> Option<Self> {
        if enough_rows {
            return Some(Self::Rows);
        }
        match backlog {
            Backlog::CaughtUp => Some(Self::CaughtUp),
            Backlog::Stalled => Some(Self::Stalled),
            Backlog::Queued if waited => Some(Self::Waited),
            Backlog::Queued => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_waits_only_for_a_backlog_that_keeps_coming() {
        use Backlog::*;
        let when = InsertReason::when_free;
        assert_eq!(when(false, false, Queued), None);
        assert_eq!(when(false, true, Queued), Some(InsertReason::Waited));
        assert_eq!(when(true, false, Queued), Some(InsertReason::Rows));
        // With nothing more coming, that is the reason, however long it waited.
        assert_eq!(when(false, true, CaughtUp), Some(InsertReason::CaughtUp));
        assert_eq!(when(false, false, Stalled), Some(InsertReason::Stalled));
        assert_eq!(when(true, true, Stalled), Some(InsertReason::Rows));
    }

    #[test]
    fn every_reason_has_its_own_name_and_slot() {
        let names: std::collections::BTreeSet<_> =
            InsertReason::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(names.len(), InsertReason::ALL.len());
        for (slot, reason) in InsertReason::ALL.iter().enumerate() {
            assert_eq!(*reason as usize, slot, "{}", reason.name());
        }
    }
}

//! Inserting rows: one `INSERT` per table per call, because ClickHouse wants few large inserts.

use clickhouse::{Client, RowOwned, RowWrite};

use crate::rows::{
    EventRow, MetricRow, MetricSessionRow, SessionRow, StateHistoryRow, StatePathRow,
};
use crate::{Connection, Result};

/// Rows accumulated for one insert round.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct RowSet {
    pub sessions: Vec<SessionRow>,
    pub state_history: Vec<StateHistoryRow>,
    pub state_paths: Vec<StatePathRow>,
    pub events: Vec<EventRow>,
    pub metrics: Vec<MetricRow>,
    pub metric_sessions: Vec<MetricSessionRow>,
}

impl RowSet {
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
            && self.state_history.is_empty()
            && self.state_paths.is_empty()
            && self.events.is_empty()
            && self.metrics.is_empty()
            && self.metric_sessions.is_empty()
    }

    /// Moves every row of `other` into this set.
    pub fn append(&mut self, mut other: RowSet) {
        self.sessions.append(&mut other.sessions);
        self.state_history.append(&mut other.state_history);
        self.state_paths.append(&mut other.state_paths);
        self.events.append(&mut other.events);
        self.metrics.append(&mut other.metrics);
        self.metric_sessions.append(&mut other.metric_sessions);
    }

    pub fn row_count(&self) -> usize {
        self.sessions.len()
            + self.state_history.len()
            + self.state_paths.len()
            + self.events.len()
            + self.metrics.len()
            + self.metric_sessions.len()
    }
}

pub struct Writer {
    client: Client,
}

impl Writer {
    pub fn new(connection: &Connection) -> Result<Self> {
        Ok(Self {
            client: connection.client()?,
        })
    }

    /// Inserts every row of the set. Rows are idempotent by identity, so a retry after a
    /// partial failure is safe.
    pub async fn insert(&self, rows: &RowSet) -> Result<()> {
        self.insert_all(std::slice::from_ref(rows)).await
    }

    /// Inserts every row of all the sets, one `INSERT` per table for all of them. Ingest
    /// plans each session's rows apart; concatenating them first cost a tenth of its CPU
    /// time (copying every row once more).
    pub async fn insert_all(&self, sets: &[RowSet]) -> Result<()> {
        // One request per table, all at once: ClickHouse inserts them in parallel.
        tokio::try_join!(
            self.insert_table("state_history", sets, |s| &s.state_history),
            self.insert_table("state_paths", sets, |s| &s.state_paths),
            self.insert_table("events", sets, |s| &s.events),
            self.insert_table("metrics", sets, |s| &s.metrics),
            self.insert_table("metric_sessions", sets, |s| &s.metric_sessions),
        )?;
        // Sessions last: a session row never points at history that is not there yet.
        self.insert_table("sessions", sets, |s| &s.sessions).await
    }

    async fn insert_table<T>(
        &self,
        table: &str,
        sets: &[RowSet],
        rows_of: impl Fn(&RowSet) -> &Vec<T>,
    ) -> Result<()>
    where
        T: RowOwned + RowWrite,
    {
        if sets.iter().all(|set| rows_of(set).is_empty()) {
            return Ok(());
        }
        let mut insert = self.client.insert::<T>(table).await?;
        for row in sets.iter().flat_map(&rows_of) {
            insert.write(row).await?;
        }
        insert.end().await?;
        Ok(())
    }
}

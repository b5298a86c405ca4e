//! Inserting rows: one `INSERT` per table per call, because ClickHouse wants few large inserts.

use clickhouse::insert_formatted::InsertFormatted;
use clickhouse::{Client, RowOwned, RowWrite};

use crate::key_order;
use crate::rowbinary::{EncodedRows, EncodedTable};
use crate::schema::{Table, STATE_PATHS, TABLES};

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

/// Bytes of encoded rows sent at once.
const CHUNK_BYTES: usize = 1 << 20;

/// An insert's body, sent in chunks of about a MiB: few enough to be cheap, small enough that
/// sending overlaps ClickHouse's parsing.
#[derive(Default)]
struct Body {
    chunk: Vec<u8>,
}

impl Body {
    async fn add(&mut self, insert: &mut InsertFormatted, bytes: &[u8]) -> Result<()> {
        if self.chunk.capacity() == 0 {
            self.chunk.reserve(CHUNK_BYTES + CHUNK_BYTES / 4);
        }
        self.chunk.extend_from_slice(bytes);
        if self.chunk.len() >= CHUNK_BYTES {
            insert.send(std::mem::take(&mut self.chunk).into()).await?;
        }
        Ok(())
    }

    async fn finish(self, insert: &mut InsertFormatted) -> Result<()> {
        if !self.chunk.is_empty() {
            insert.send(self.chunk.into()).await?;
        }
        Ok(())
    }
}

/// Whether an insert sorts its `state_paths` rows by key.
#[derive(Clone, Copy, PartialEq, Eq)]
enum StatePaths {
    Sort,
    AsTheyAre,
}

#[derive(Clone)]
pub struct Writer {
    client: Client,
}

impl Writer {
    /// A writer whose inserts are written into parts before they return, on every server.
    /// Current ClickHouse can buffer inserts itself (`async_insert`, on by default in 26.9),
    /// which ingest does not want: it batches its own rows, sends them sorted by each
    /// table's key, and acks what is stored. 18.16 has no such setting and refuses the ones it
    /// does not know, so it is turned off only where the server has it.
    pub async fn connect(connection: &Connection) -> Result<Self> {
        let writer = Self::new(connection)?;
        let knows_async_inserts: u64 = writer
            .client
            .query("SELECT count() FROM system.settings WHERE name = 'async_insert'")
            .fetch_one()
            .await?;
        Ok(match knows_async_inserts {
            0 => writer,
            _ => Self {
                client: writer.client.with_setting("async_insert", "0"),
            },
        })
    }

    /// A writer with the server's own insert settings.
    pub fn new(connection: &Connection) -> Result<Self> {
        Ok(Self {
            client: connection.client()?,
        })
    }

    /// Inserts every row of the set. Rows are idempotent by identity, so a retry after a
    /// partial failure is safe.
    pub async fn insert(&self, rows: &RowSet) -> Result<()> {
        // One request per table, all at once: ClickHouse inserts them in parallel.
        tokio::try_join!(
            self.insert_table("state_history", &rows.state_history),
            self.insert_table("state_paths", &rows.state_paths),
            self.insert_table("events", &rows.events),
            self.insert_table("metrics", &rows.metrics),
            self.insert_table("metric_sessions", &rows.metric_sessions),
        )?;
        // Sessions last: a session row never points at history that is not there yet.
        self.insert_table("sessions", &rows.sessions).await
    }

    /// Inserts encoded rows of all the sets, one `INSERT` per table for all of them; the
    /// `state_paths` rows in their table's key order (`key_order.rs`).
    pub async fn insert_encoded(&self, sets: &[EncodedRows]) -> Result<()> {
        self.insert_sets(sets, StatePaths::Sort).await
    }

    /// Inserts encoded rows as they are, for rows the caller already put in each table's key
    /// order (the benchmark's raw baseline, which must not pay for a sort it does not need).
    pub async fn insert_encoded_presorted(&self, sets: &[EncodedRows]) -> Result<()> {
        self.insert_sets(sets, StatePaths::AsTheyAre).await
    }

    async fn insert_sets(&self, sets: &[EncodedRows], state_paths: StatePaths) -> Result<()> {
        let table = |i: usize| {
            let table = TABLES[i];
            let parts: Vec<&EncodedTable> = sets.iter().map(|set| set.tables()[i]).collect();
            let sort = table.name == STATE_PATHS.name && state_paths == StatePaths::Sort;
            self.insert_encoded_table(table, parts, sort)
        };
        // One request per table, all at once: ClickHouse inserts them in parallel.
        tokio::try_join!(table(0), table(1), table(2), table(3), table(4))?;
        // Sessions last: a session row never points at history that is not there yet.
        table(5).await
    }

    async fn insert_encoded_table(
        &self,
        table: &Table,
        parts: Vec<&EncodedTable>,
        sort_state_paths: bool,
    ) -> Result<()> {
        if parts.iter().all(|part| part.is_empty()) {
            return Ok(());
        }
        let sql = format!(
            "INSERT INTO {}({}) FORMAT RowBinary",
            table.name,
            table.column_list()
        );
        let mut insert = self.client.insert_formatted_with(sql);
        let mut body = Body::default();
        // ClickHouse skips sorting a block that comes sorted (`key_order.rs`). Rows that do
        // not parse are sent as they are, for ClickHouse to refuse.
        let order = if sort_state_paths {
            key_order::state_paths_in_key_order(&parts).ok()
        } else {
            None
        };
        match order {
            Some(order) => {
                for span in order {
                    let bytes = &parts[span.table].bytes[span.start..span.end];
                    body.add(&mut insert, bytes).await?;
                }
            }
            None => {
                for part in parts {
                    body.add(&mut insert, &part.bytes).await?;
                }
            }
        }
        body.finish(&mut insert).await?;
        insert.end().await?;
        Ok(())
    }

    async fn insert_table<T>(&self, table: &str, rows: &[T]) -> Result<()>
    where
        T: RowOwned + RowWrite,
    {
        if rows.is_empty() {
            return Ok(());
        }
        let mut insert = self.client.insert::<T>(table).await?;
        for row in rows {
            insert.write(row).await?;
        }
        insert.end().await?;
        Ok(())
    }
}

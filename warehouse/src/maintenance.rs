//! What ingest's single sweeper asks of the warehouse: stale sessions, and retention.

use clickhouse::Client;
use tracing::info;

use crate::schema::TABLES;
use crate::{replicated, Connection, Result};

pub struct Maintenance {
    client: Client,
    database: String,
    cluster: Option<String>,
}

impl Maintenance {
    pub fn new(connection: &Connection) -> Result<Self> {
        Ok(Self {
            client: connection.client()?,
            database: connection.database.clone(),
            cluster: connection.cluster.clone(),
        })
    }

    /// Sessions still `active` or `hung` that ingest has not heard of since `seen_before_ms`.
    pub async fn stale_sessions(&self, seen_before_ms: u64, limit: u32) -> Result<Vec<String>> {
        Ok(self
            .client
            .query(
                "SELECT session_id FROM sessions FINAL
                 WHERE status IN ('active', 'hung') AND seen_ms > 0 AND seen_ms < ?
                 LIMIT ?",
            )
            .bind(seen_before_ms)
            .bind(limit)
            .fetch_all::<String>()
            .await?)
    }

    /// Drops every daily partition older than `keep_from` (`YYYY-MM-DD`, kept); returns how
    /// many partitions went.
    pub async fn drop_partitions_before(&self, keep_from: &str) -> Result<usize> {
        let mut dropped = 0;
        // Every table is partitioned by day.
        for table in TABLES.map(|table| table.name) {
            // On a cluster the parts are in `<table>_local` on every server, each shard with
            // its own partitions, and are dropped on every replica.
            let (stored, parts, drop) = match &self.cluster {
                Some(cluster) => (
                    replicated::local_table(table),
                    replicated::all_parts(cluster),
                    replicated::drop_partition(&self.database, table, cluster),
                ),
                None => (
                    table.to_string(),
                    "system.parts".to_string(),
                    format!("ALTER TABLE {table} DROP PARTITION ?"),
                ),
            };
            let partitions: Vec<String> = self
                .client
                .query(&format!("SELECT DISTINCT partition FROM {parts} WHERE database = ? AND table = ? AND active"))
                .bind(&self.database)
                .bind(&stored)
                .fetch_all::<String>()
                .await?;
            // ISO dates order as text.
            for partition in partitions
                .iter()
                .filter(|p| p.len() == 10 && p.as_str() < keep_from)
            {
                // The table name is one of ours; the partition value is bound.
                self.client.query(&drop).bind(partition).execute().await?;
                info!(table, partition, "retention: dropped partition");
                dropped += 1;
            }
        }
        Ok(dropped)
    }
}

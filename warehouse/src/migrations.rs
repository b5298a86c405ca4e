//! Versioned, idempotent schema migrations.
//!
//! Each migration is a list of statements that are safe to run twice (`IF NOT EXISTS`), so
//! two workers migrating at once, or a migration interrupted half-way, converge. Applied
//! versions are recorded in `schema_migrations`.

use clickhouse::Row;
use serde::{Deserialize, Serialize};
use tracing::info;

use crate::{replicated, Connection, Result};

pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub steps: &'static [Step],
}

/// One idempotent schema change.
pub enum Step {
    /// A statement that is safe to repeat (`CREATE ... IF NOT EXISTS`).
    Sql(&'static str),
    /// `ALTER TABLE ADD COLUMN`, skipped when the column exists (18.16 has no
    /// `ADD COLUMN IF NOT EXISTS`).
    AddColumn {
        table: &'static str,
        column: &'static str,
        definition: &'static str,
    },
}

/// Every migration, oldest first. Never edit one that has shipped; add a new one.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "sessions, state history, events, metrics",
        steps: &[
            // One row per applied batch; FINAL keeps the newest (highest last_seq).
            Step::Sql(
                "CREATE TABLE IF NOT EXISTS sessions (
            session_id String,
            product String,
            version String,
            status String,
            end_reason String,
            started_date Date,
            started_ms UInt64,
            updated_ms UInt64,
            ended_ms UInt64,
            last_heartbeat_ms UInt64,
            hostname String,
            machine_id String,
            machine String,
            state String,
            event_count UInt64,
            last_seq UInt64
        ) ENGINE = ReplacingMergeTree(last_seq)
        PARTITION BY started_date
        ORDER BY session_id",
            ),
            // Identity (session_id, seq, idx): a redelivered batch writes identical rows, which
            // ReplacingMergeTree collapses and FINAL hides.
            Step::Sql(
                "CREATE TABLE IF NOT EXISTS state_history (
            session_id String,
            seq UInt64,
            idx UInt32,
            ts_ms UInt64,
            date Date,
            update String,
            state String
        ) ENGINE = ReplacingMergeTree()
        PARTITION BY date
        ORDER BY (session_id, seq, idx)",
            ),
            Step::Sql(
                "CREATE TABLE IF NOT EXISTS events (
            session_id String,
            seq UInt64,
            idx UInt32,
            ts_ms UInt64,
            date Date,
            name String,
            level String,
            category String,
            group_name String,
            labels Array(String),
            message String,
            data String,
            exception String
        ) ENGINE = ReplacingMergeTree()
        PARTITION BY date
        ORDER BY (session_id, seq, idx)",
            ),
            Step::Sql(
                "CREATE TABLE IF NOT EXISTS metrics (
            session_id String,
            seq UInt64,
            idx UInt32,
            ts_ms UInt64,
            date Date,
            name String,
            kind String,
            value Float64,
            unit String,
            tags Array(String),
            count Nullable(UInt64)
        ) ENGINE = ReplacingMergeTree()
        PARTITION BY date
        ORDER BY (session_id, seq, idx)",
            ),
        ],
    },
    Migration {
        version: 2,
        name: "hang, drop and gap counts; histogram buckets",
        steps: &[
            Step::AddColumn {
                table: "sessions",
                column: "hang_count",
                definition: "UInt32",
            },
            Step::AddColumn {
                table: "sessions",
                column: "hung_ms",
                definition: "UInt64",
            },
            Step::AddColumn {
                table: "sessions",
                column: "dropped_records",
                definition: "UInt64",
            },
            Step::AddColumn {
                table: "sessions",
                column: "gaps",
                definition: "UInt64",
            },
            Step::AddColumn {
                table: "metrics",
                column: "bucket_bounds",
                definition: "Array(Float64)",
            },
            Step::AddColumn {
                table: "metrics",
                column: "bucket_counts",
                definition: "Array(UInt64)",
            },
            Step::AddColumn {
                table: "metrics",
                column: "hist_sum",
                definition: "Float64",
            },
        ],
    },
    Migration {
        version: 3,
        name: "flattened state paths; ingest-side liveness",
        steps: &[
            // One row per state leaf that changed: "state now", "ever had" and "array
            // contains" filters become lookups by (path, value) instead of JSON parsing.
            Step::Sql(
                "CREATE TABLE IF NOT EXISTS state_paths (
                session_id String,
                seq UInt64,
                idx UInt32,
                ts_ms UInt64,
                date Date,
                path String,
                value String,
                elements Array(String),
                removed UInt8
            ) ENGINE = ReplacingMergeTree()
            PARTITION BY date
            ORDER BY (path, value, session_id, seq, idx)",
            ),
            // When ingest (its clock, not the application's) last heard of the session.
            Step::AddColumn {
                table: "sessions",
                column: "seen_ms",
                definition: "UInt64",
            },
        ],
    },
    Migration {
        version: 4,
        name: "per-session metric summaries",
        steps: &[
            // Keyed by metric name first: "this metric across sessions" is a range read.
            Step::Sql(
                "CREATE TABLE IF NOT EXISTS metric_sessions (
                name String,
                session_id String,
                version UInt64,
                date Date,
                peak Float64,
                min Float64,
                sum Float64,
                points UInt64,
                last Float64,
                last_ts_ms UInt64
            ) ENGINE = ReplacingMergeTree(version)
            PARTITION BY date
            ORDER BY (name, session_id)",
            ),
        ],
    },
    Migration {
        version: 5,
        name: "the client's time beside a replaced one",
        steps: &[
            // A time too far from when the record was received is stored as the receive
            // time; the client's own is kept here (0: the client's time was believed).
            Step::AddColumn {
                table: "state_history",
                column: "client_ts_ms",
                definition: "UInt64",
            },
            Step::AddColumn {
                table: "events",
                column: "client_ts_ms",
                definition: "UInt64",
            },
            Step::AddColumn {
                table: "metrics",
                column: "client_ts_ms",
                definition: "UInt64",
            },
        ],
    },
    Migration {
        version: 6,
        name: "a session's environment and tags",
        steps: &[
            Step::AddColumn {
                table: "sessions",
                column: "environment",
                definition: "String",
            },
            // Tags as two arrays of the same length (18.16 has no Map).
            Step::AddColumn {
                table: "sessions",
                column: "tag_keys",
                definition: "Array(String)",
            },
            Step::AddColumn {
                table: "sessions",
                column: "tag_values",
                definition: "Array(String)",
            },
        ],
    },
];

#[derive(Row, Serialize, Deserialize)]
struct AppliedMigration {
    version: u32,
    name: String,
}

/// The table recording which migrations are applied.
const MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
            version UInt32,
            name String,
            applied_at DateTime DEFAULT now()
        ) ENGINE = MergeTree() ORDER BY version";

/// Every statement that builds the schema from nothing, in the order [`migrate`] runs them
/// on an empty server: the database, the migrations table, each migration's steps and its
/// record, as a script for `clickhouse-client --multiquery` (a `USE` of the database follows
/// its creation). `cluster` picks the replicated variant. For DBAs who apply schemas by hand
/// (`datacat-ingest migrate --print-sql`), and for checking the schema on other ClickHouse
/// versions.
pub fn schema_sql(database: &str, cluster: Option<&str>) -> Result<Vec<String>> {
    crate::validate_identifier(database)?;
    if let Some(cluster) = cluster {
        crate::validate_identifier(cluster)?;
    }
    let mut sql = statements(&create_database(database), database, cluster);
    sql.push(format!("USE {database}"));
    sql.extend(statements(MIGRATIONS_TABLE, database, cluster));
    for migration in MIGRATIONS {
        for step in migration.steps {
            sql.extend(step.statements(database, cluster));
        }
        sql.push(format!(
            "INSERT INTO schema_migrations (version, name) VALUES ({}, '{}')",
            migration.version,
            migration.name.replace('\\', "\\\\").replace('\'', "\\'")
        ));
    }
    Ok(sql)
}

fn create_database(database: &str) -> String {
    format!("CREATE DATABASE IF NOT EXISTS {database}")
}

impl Step {
    /// The statements of this step on a single server or, with `cluster`, on the cluster.
    fn statements(&self, database: &str, cluster: Option<&str>) -> Vec<String> {
        match self {
            Step::Sql(sql) => statements(sql, database, cluster),
            Step::AddColumn {
                table,
                column,
                definition,
            } => column_additions(table, column, definition, database, cluster)
                .into_iter()
                .flat_map(|(_, statements)| statements)
                .collect(),
        }
    }
}

/// Each table a column goes to, with the statements that add it there. Names come from
/// MIGRATIONS (constants), never from input.
fn column_additions(
    table: &str,
    column: &str,
    definition: &str,
    database: &str,
    cluster: Option<&str>,
) -> Vec<(String, Vec<String>)> {
    match cluster {
        Some(cluster) => replicated::add_column(database, table, column, definition, cluster),
        None => vec![(
            table.to_string(),
            vec![format!(
                "ALTER TABLE {table} ADD COLUMN {column} {definition}"
            )],
        )],
    }
}

/// Creates the database if needed and applies every migration not applied yet.
/// Returns the versions applied by this call.
pub async fn migrate(connection: &Connection) -> Result<Vec<u32>> {
    let cluster = connection.cluster.as_deref();
    let database = &connection.database;
    let server = connection.server_client()?;
    for sql in statements(&create_database(database), database, cluster) {
        server.query(&sql).execute().await?;
    }
    let db = connection.client()?;
    for sql in statements(MIGRATIONS_TABLE, database, cluster) {
        db.query(&sql).execute().await?;
    }
    let applied: Vec<u32> = db
        .query("SELECT DISTINCT version FROM schema_migrations")
        .fetch_all::<u32>()
        .await?;

    let mut newly_applied = Vec::new();
    for migration in MIGRATIONS.iter().filter(|m| !applied.contains(&m.version)) {
        info!(
            version = migration.version,
            name = migration.name,
            "applying migration"
        );
        for step in migration.steps {
            apply_step(&db, database, cluster, step).await?;
        }
        let mut insert = db.insert::<AppliedMigration>("schema_migrations").await?;
        insert
            .write(&AppliedMigration {
                version: migration.version,
                name: migration.name.to_string(),
            })
            .await?;
        insert.end().await?;
        newly_applied.push(migration.version);
    }
    Ok(newly_applied)
}

/// A statement as run on a single server, or its replicated variant's statements.
fn statements(sql: &str, database: &str, cluster: Option<&str>) -> Vec<String> {
    match cluster {
        Some(cluster) => replicated::create_table(sql, database, cluster),
        None => vec![sql.to_string()],
    }
}

async fn apply_step(
    db: &clickhouse::Client,
    database: &str,
    cluster: Option<&str>,
    step: &Step,
) -> Result<()> {
    let Step::AddColumn {
        table,
        column,
        definition,
    } = step
    else {
        for sql in step.statements(database, cluster) {
            db.query(&sql).execute().await?;
        }
        return Ok(());
    };
    // Each table the column goes to on its own: one that has it is done.
    for (table, statements) in column_additions(table, column, definition, database, cluster) {
        if column_exists(db, database, &table, column).await? {
            continue;
        }
        for sql in statements {
            let applied = db.query(&sql).execute().await;
            // Workers starting together race to add it: the loser finds it there.
            if let Err(error) = applied {
                if !column_exists(db, database, &table, column).await? {
                    return Err(error.into());
                }
            }
        }
    }
    Ok(())
}

async fn column_exists(
    db: &clickhouse::Client,
    database: &str,
    table: &str,
    column: &str,
) -> Result<bool> {
    let count: u64 = db
        .query("SELECT count() FROM system.columns WHERE database = ? AND table = ? AND name = ?")
        .bind(database)
        .bind(table)
        .bind(column)
        .fetch_one()
        .await?;
    Ok(count > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_printed_schema_is_every_step_in_order_with_its_record() {
        let sql = schema_sql("datacat", None).unwrap();
        assert_eq!(sql[0], "CREATE DATABASE IF NOT EXISTS datacat");
        assert_eq!(sql[1], "USE datacat");
        assert!(sql[2].contains("schema_migrations"));
        let records: Vec<&String> = sql
            .iter()
            .filter(|s| s.starts_with("INSERT INTO schema_migrations"))
            .collect();
        assert_eq!(records.len(), MIGRATIONS.len());
        assert!(sql.last().unwrap().starts_with(&format!(
            "INSERT INTO schema_migrations (version, name) VALUES ({}, '",
            MIGRATIONS.last().unwrap().version
        )));
        assert!(sql.contains(&"ALTER TABLE events ADD COLUMN client_ts_ms UInt64".to_string()));
    }

    #[test]
    fn the_cluster_variant_runs_every_definition_on_the_cluster() {
        let sql = schema_sql("datacat", Some("prod")).unwrap();
        for statement in sql
            .iter()
            .filter(|s| !s.starts_with("INSERT") && !s.starts_with("USE"))
        {
            assert!(statement.contains(" ON CLUSTER prod"), "{statement}");
        }
        assert!(sql.contains(
            &"ALTER TABLE datacat.events_local ON CLUSTER prod ADD COLUMN client_ts_ms UInt64"
                .to_string()
        ));
        assert!(sql.contains(&"DROP TABLE IF EXISTS datacat.events ON CLUSTER prod".to_string()));
        assert!(schema_sql("datacat", Some("bad name")).is_err());
        assert!(schema_sql("drop table", None).is_err());
    }
}

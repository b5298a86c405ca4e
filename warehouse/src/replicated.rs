//! The replicated schema variant, for a ClickHouse cluster (`DATACAT_CLICKHOUSE_CLUSTER`).
//!
//! Every table of the single-server schema becomes two, created `ON CLUSTER`:
//! * `<table>_local`: the same columns and keys on a `Replicated*MergeTree` engine (the
//!   replicas of a shard keep each other's copies, coordinated by ClickHouse Keeper);
//! * `<table>`: a `Distributed` table over the `_local` ones, sharded by `session_id`.
//!
//! Every name is qualified with the database: a statement `ON CLUSTER` runs on each server
//! in that server's default database, not the one the client chose.
//!
//! Reads and writes keep using `<table>`. Sharding by session keeps all rows of a session on
//! one shard, so `FINAL` and `LIMIT 1 BY session_id` (applied per shard) stay correct, and
//! inserts are made synchronous (`insert_distributed_sync`) so that ingest acks only rows
//! that are on their shard. The statements are derived from the single-server migrations,
//! so the two variants cannot drift apart.

/// The statements that create `sql`'s table in the cluster variant. `sql` is one of our
/// `CREATE TABLE IF NOT EXISTS <name> (...) ENGINE = <Engine>(<args>) ...` migrations; any
/// other statement is run `ON CLUSTER` unchanged.
pub fn create_table(sql: &str, database: &str, cluster: &str) -> Vec<String> {
    const PREFIX: &str = "CREATE TABLE IF NOT EXISTS ";
    let Some(rest) = sql.trim_start().strip_prefix(PREFIX) else {
        return vec![on_cluster(sql, cluster)];
    };
    let name_end = rest.find([' ', '(']).unwrap_or(rest.len());
    let (table, after_name) = rest.split_at(name_end);
    let Some(engine_at) = after_name.find("ENGINE = ") else {
        return vec![on_cluster(sql, cluster)];
    };
    let (columns, engine_clause) = after_name.split_at(engine_at);
    let engine_clause = &engine_clause["ENGINE = ".len()..];
    let open = engine_clause.find('(').unwrap_or(engine_clause.len());
    let close = engine_clause[open..]
        .find(')')
        .map_or(engine_clause.len(), |i| open + i);
    let engine = &engine_clause[..open];
    let args = engine_clause.get(open + 1..close).unwrap_or("").trim();
    let tail = engine_clause.get(close + 1..).unwrap_or("");
    let path = format!("'/clickhouse/tables/{{shard}}/{database}/{table}', '{{replica}}'");
    let replicated_args = if args.is_empty() {
        path
    } else {
        format!("{path}, {args}")
    };
    let shard_key = shard_key(columns, tail);
    vec![
        format!(
            "{PREFIX}{database}.{table}_local ON CLUSTER {cluster} {} ENGINE = Replicated{engine}({replicated_args}){tail}",
            columns.trim()
        ),
        distributed(database, table, cluster, &shard_key),
    ]
}

/// How a table's rows are spread over shards: by session when it has one (all of a
/// session's rows on one shard), else by the first column of its sorting key.
fn shard_key(columns: &str, tail: &str) -> String {
    if columns.contains("session_id String") {
        return BY_SESSION.to_string();
    }
    tail.split("ORDER BY")
        .nth(1)
        .and_then(|key| {
            key.trim()
                .trim_start_matches('(')
                .split([',', ')', ' ', '\n'])
                .next()
        })
        .filter(|first| !first.is_empty())
        .unwrap_or("rand()")
        .to_string()
}

/// How a column is added in the cluster variant: each table it goes to, with the statements
/// that add it there. The replicated tables take an `ALTER ... ON CLUSTER`. The distributed
/// table is created again over them instead: ClickHouse 18.16 refuses an `ALTER ON CLUSTER`
/// of a table that is not replicated on a cluster whose shards are ("Table ... isn't
/// replicated, but shard #2 is replicated according to its cluster definition"), and a
/// distributed table holds no rows of its own (inserts into it are synchronous). Every table
/// a column is added to is sharded by session.
pub fn add_column(
    database: &str,
    table: &str,
    column: &str,
    definition: &str,
    cluster: &str,
) -> Vec<(String, Vec<String>)> {
    let local = local_table(table);
    vec![
        (
            local.clone(),
            vec![format!(
                "ALTER TABLE {database}.{local} ON CLUSTER {cluster} ADD COLUMN {column} {definition}"
            )],
        ),
        (
            table.to_string(),
            vec![
                format!("DROP TABLE IF EXISTS {database}.{table} ON CLUSTER {cluster}"),
                distributed(database, table, cluster, BY_SESSION),
            ],
        ),
    ]
}

/// The shard key of a table with sessions: all of a session's rows on one shard.
const BY_SESSION: &str = "cityHash64(session_id)";

/// The `Distributed` table over `table`'s replicated ones.
fn distributed(database: &str, table: &str, cluster: &str, shard_key: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {database}.{table} ON CLUSTER {cluster} AS {database}.{table}_local \
         ENGINE = Distributed({cluster}, {database}, {table}_local, {shard_key})"
    )
}

/// `system.parts` of every server of the cluster.
pub fn all_parts(cluster: &str) -> String {
    format!("cluster('{cluster}', system, parts)")
}

/// Where retention drops a table's partitions in the cluster variant.
pub fn drop_partition(database: &str, table: &str, cluster: &str) -> String {
    format!("ALTER TABLE {database}.{table}_local ON CLUSTER {cluster} DROP PARTITION ?")
}

/// The table holding a table's rows on this server (for `system.parts` and `system.columns`).
pub fn local_table(table: &str) -> String {
    format!("{table}_local")
}

fn on_cluster(sql: &str, cluster: &str) -> String {
    // `CREATE DATABASE IF NOT EXISTS db` -> `... db ON CLUSTER c`.
    format!("{} ON CLUSTER {cluster}", sql.trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrations::{Step, MIGRATIONS};

    #[test]
    fn a_replacing_table_becomes_replicated_and_distributed() {
        let sql = "CREATE TABLE IF NOT EXISTS sessions (
            session_id String,
            last_seq UInt64
        ) ENGINE = ReplacingMergeTree(last_seq)
        PARTITION BY started_date
        ORDER BY session_id";
        let statements = create_table(sql, "datacat", "prod");
        assert_eq!(statements.len(), 2);
        assert!(statements[0].starts_with(
            "CREATE TABLE IF NOT EXISTS datacat.sessions_local ON CLUSTER prod (\n            session_id String,"
        ));
        assert!(statements[0].contains(
            "ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/datacat/sessions', '{replica}', last_seq)\n        PARTITION BY started_date\n        ORDER BY session_id"
        ));
        assert_eq!(
            statements[1],
            "CREATE TABLE IF NOT EXISTS datacat.sessions ON CLUSTER prod AS datacat.sessions_local \
             ENGINE = Distributed(prod, datacat, sessions_local, cityHash64(session_id))"
        );
    }

    #[test]
    fn an_engine_without_arguments_gets_only_the_replication_path() {
        let sql = "CREATE TABLE IF NOT EXISTS events (session_id String) ENGINE = ReplacingMergeTree() ORDER BY session_id";
        let statements = create_table(sql, "db", "c");
        assert!(statements[0].contains(
            "ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/db/events', '{replica}') ORDER BY session_id"
        ));
    }

    #[test]
    fn every_shipped_table_translates_and_is_sharded_by_session() {
        for migration in MIGRATIONS {
            for step in migration.steps {
                match step {
                    Step::Sql(sql) => {
                        let statements = create_table(sql, "datacat", "c");
                        assert_eq!(statements.len(), 2, "{sql}");
                        assert!(statements[0].contains("_local ON CLUSTER c"));
                        assert!(statements[0].contains("ENGINE = Replicated"));
                        assert!(
                            sql.contains("session_id String"),
                            "shard key present: {sql}"
                        );
                    }
                    Step::AddColumn {
                        table,
                        column,
                        definition,
                    } => {
                        let additions = add_column("db", table, column, definition, "c");
                        assert_eq!(additions[0].0, format!("{table}_local"));
                        assert_eq!(
                            additions[0].1,
                            [format!("ALTER TABLE db.{table}_local ON CLUSTER c ADD COLUMN {column} {definition}")]
                        );
                        assert_eq!(additions[1].0, *table);
                        assert_eq!(
                            additions[1].1,
                            [
                                format!("DROP TABLE IF EXISTS db.{table} ON CLUSTER c"),
                                format!(
                                    "CREATE TABLE IF NOT EXISTS db.{table} ON CLUSTER c AS db.{table}_local \
                                     ENGINE = Distributed(c, db, {table}_local, cityHash64(session_id))"
                                )
                            ]
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_table_without_sessions_is_sharded_by_its_sorting_key() {
        let sql = "CREATE TABLE IF NOT EXISTS schema_migrations (
            version UInt32,
            name String
        ) ENGINE = MergeTree() ORDER BY version";
        assert!(create_table(sql, "db", "c")[1]
            .ends_with("ENGINE = Distributed(c, db, schema_migrations_local, version)"));
    }

    #[test]
    fn other_statements_run_on_the_cluster() {
        assert_eq!(
            create_table("CREATE DATABASE IF NOT EXISTS datacat", "datacat", "c"),
            ["CREATE DATABASE IF NOT EXISTS datacat ON CLUSTER c"]
        );
    }
}

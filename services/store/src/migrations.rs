//! Versioned schema migrations, applied at start-up and recorded in `schema_migrations`. The
//! SQL lives in `schemas/clickhouse/NNNN_name.sql`, embedded here.
//!
//! Every replica of every service may apply them at the same moment, on a fresh database or
//! an old one. So each statement is one of a few forms whose effect can be looked up
//! ([`Statement`]): one already in effect is skipped, and one that fails is accepted when
//! its effect is there after all (another replica made it first). ClickHouse 18.16 has no
//! `ADD COLUMN IF NOT EXISTS`, which is why the check is ours.

use shadowdiff_runtime::clickhouse::ClickHouse;

use crate::StoreError;
use crate::layout::Layout;

/// Every migration in order. Append only: an applied migration is never edited.
pub const MIGRATIONS: &[(u32, &str, &str)] = &[
    (1, "exchanges", include_str!("../../../schemas/clickhouse/0001_exchanges.sql")),
    (2, "noise", include_str!("../../../schemas/clickhouse/0002_noise.sql")),
    (3, "stage_and_samples", include_str!("../../../schemas/clickhouse/0003_stage_and_samples.sql")),
    (4, "verdicts", include_str!("../../../schemas/clickhouse/0004_verdicts.sql")),
    (5, "releases", include_str!("../../../schemas/clickhouse/0005_releases.sql")),
    (6, "acceptances", include_str!("../../../schemas/clickhouse/0006_acceptances.sql")),
    (7, "runs", include_str!("../../../schemas/clickhouse/0007_runs.sql")),
    (8, "outbound", include_str!("../../../schemas/clickhouse/0008_outbound.sql")),
];

const CREATE_MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations \
     (version UInt32, name String, applied_at DateTime DEFAULT now()) ENGINE = MergeTree() ORDER BY version";

/// The forms a migration statement may take: each one's effect can be looked up, and each
/// is rendered for the database's [`Layout`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Statement {
    /// `CREATE TABLE IF NOT EXISTS <table> (<columns>) ENGINE = <family>MergeTree() <rest>`
    CreateTable { table: String, columns: String, engine: String, rest: String },
    /// `ALTER TABLE <table> ADD COLUMN <definition>`: one column per statement.
    AddColumn { table: String, column: String, definition: String },
}

/// A statement of a migration file that is none of the [`Statement`] forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a CREATE TABLE IF NOT EXISTS of a *MergeTree() or a one-column ALTER TABLE ... ADD COLUMN: {0}")]
pub struct UnknownStatement(pub String);

impl Statement {
    pub fn parse(sql: &str) -> Result<Self, UnknownStatement> {
        let unknown = || UnknownStatement(sql.chars().take(80).collect());
        let words: Vec<&str> = sql.split_whitespace().take(6).collect();
        let upper: Vec<String> = words.iter().map(|w| w.to_ascii_uppercase()).collect();
        let upper: Vec<&str> = upper.iter().map(String::as_str).collect();
        match upper.as_slice() {
            ["CREATE", "TABLE", "IF", "NOT", "EXISTS", _] => {
                let (table, body) = name_and_rest(after_words(sql, 5));
                let at = body.find("ENGINE").ok_or_else(unknown)?;
                let (columns, engine) = body.split_at(at);
                let engine = engine["ENGINE".len()..].trim_start().strip_prefix('=').ok_or_else(unknown)?.trim_start();
                let (family, rest) = engine.split_once("()").ok_or_else(unknown)?;
                if !family.ends_with("MergeTree") || !family.chars().all(|c| c.is_ascii_alphanumeric()) {
                    return Err(unknown());
                }
                Ok(Self::CreateTable {
                    table,
                    columns: columns.to_owned(),
                    engine: family.to_owned(),
                    rest: rest.to_owned(),
                })
            }
            ["ALTER", "TABLE", _, "ADD", "COLUMN", _]
                if sql.to_ascii_uppercase().matches("ADD COLUMN").count() == 1 =>
            {
                let (table, _) = name_and_rest(after_words(sql, 2));
                let definition = after_words(sql, 5).trim();
                let (column, _) = name_and_rest(definition);
                Ok(Self::AddColumn { table, column, definition: definition.to_owned() })
            }
            _ => Err(unknown()),
        }
    }

    /// The table this statement makes or changes, as readers name it.
    pub fn table(&self) -> &str {
        match self {
            Self::CreateTable { table, .. } | Self::AddColumn { table, .. } => table,
        }
    }

    /// The statement as it runs in `layout`: on the stored table, on every server of a
    /// cluster, with the replicated engine there.
    pub fn render(&self, layout: &Layout) -> String {
        let (stored, on_cluster) = (layout.stored(self.table()), layout.on_cluster());
        match self {
            Self::CreateTable { table, columns, engine, rest } => {
                let engine = layout.engine(engine, table);
                format!("CREATE TABLE IF NOT EXISTS {stored}{on_cluster}{columns}ENGINE = {engine}{rest}")
            }
            Self::AddColumn { definition, .. } => format!("ALTER TABLE {stored}{on_cluster} ADD COLUMN {definition}"),
        }
    }

    /// Whether the statement's effect is already in the database.
    async fn in_effect(&self, client: &clickhouse::Client, layout: &Layout) -> Result<bool, clickhouse::error::Error> {
        let stored = layout.stored_name(self.table());
        let query = match self {
            Self::CreateTable { .. } => client
                .query("SELECT count() FROM system.tables WHERE database = ? AND name = ?")
                .bind(layout.database())
                .bind(&stored),
            Self::AddColumn { column, .. } => client
                .query("SELECT count() FROM system.columns WHERE database = ? AND table = ? AND name = ?")
                .bind(layout.database())
                .bind(&stored)
                .bind(column),
        };
        Ok(query.fetch_one::<u64>().await? > 0)
    }

    /// Runs the statement unless its effect is there; a failure is no failure when the
    /// effect is there afterwards (a concurrent replica ran the same statement).
    async fn apply(&self, client: &clickhouse::Client, layout: &Layout) -> Result<(), clickhouse::error::Error> {
        if self.in_effect(client, layout).await? {
            return Ok(());
        }
        let sql = self.render(layout);
        match client.query(&sql).execute().await {
            Ok(()) => Ok(()),
            Err(error) => match self.in_effect(client, layout).await {
                Ok(true) => {
                    tracing::info!(statement = sql, "made concurrently by another replica");
                    Ok(())
                }
                _ => Err(error),
            },
        }
    }
}

/// What is left of `sql` after its first `n` words.
fn after_words(sql: &str, n: usize) -> &str {
    let mut rest = sql;
    for _ in 0..n {
        rest = rest.trim_start();
        rest = &rest[rest.find(char::is_whitespace).unwrap_or(rest.len())..];
    }
    rest.trim_start()
}

/// A name at the start of `text`, and what follows it.
fn name_and_rest(text: &str) -> (String, &str) {
    let end = text.find(|c: char| c.is_whitespace() || c == '(').unwrap_or(text.len());
    (text[..end].to_owned(), &text[end..])
}

/// Creates the database if missing and applies every migration not yet recorded, then, on a
/// cluster, makes each table's `Distributed` table match its local one. Safe to run from
/// many replicas at once.
pub async fn apply(clickhouse: &ClickHouse) -> Result<(), StoreError> {
    let layout = Layout::of(clickhouse);
    let database = layout.database();
    let server = &clickhouse.server;
    let created =
        server.query(&format!("CREATE DATABASE IF NOT EXISTS {database}{}", layout.on_cluster())).execute().await;
    if let Err(error) = created {
        // A concurrent CREATE may lose the race on old servers; what matters is that it exists.
        let exists = server
            .query("SELECT count() FROM system.databases WHERE name = ?")
            .bind(database)
            .fetch_one::<u64>()
            .await
            .is_ok_and(|n| n > 0);
        if !exists {
            return Err(StoreError::new(format!("create database {database}"), error));
        }
    }
    let client = &clickhouse.client;
    let bookkeeping = Statement::parse(CREATE_MIGRATIONS_TABLE).map_err(|_| unreachable_form())?;
    bookkeeping.apply(client, &layout).await.map_err(|e| StoreError::new("create schema_migrations", e))?;
    distribute(client, &layout, bookkeeping.table()).await?;
    let applied: Vec<u32> = client
        .query("SELECT DISTINCT version FROM schema_migrations")
        .fetch_all()
        .await
        .map_err(|e| StoreError::new("read schema_migrations", e))?;
    let mut tables = Vec::new();
    for (version, name, sql) in MIGRATIONS {
        let mut pending = Vec::new();
        for statement in statements(sql) {
            // Every embedded statement parses: `every_migration_statement_has_a_known_form`.
            let statement = Statement::parse(&statement).map_err(|_| unreachable_form())?;
            if !tables.iter().any(|t| t == statement.table()) {
                tables.push(statement.table().to_owned());
            }
            pending.push(statement);
        }
        if applied.contains(version) {
            continue;
        }
        for statement in pending {
            statement
                .apply(client, &layout)
                .await
                .map_err(|e| StoreError::new(format!("migration {version:04} {name}"), e))?;
        }
        // Two replicas may both record a version; it is read with DISTINCT.
        client
            .query("INSERT INTO schema_migrations (version, name) VALUES (?, ?)")
            .bind(*version)
            .bind(*name)
            .execute()
            .await
            .map_err(|e| StoreError::new(format!("record migration {version:04}"), e))?;
        tracing::info!(version, name, "migration applied");
    }
    for table in &tables {
        distribute(client, &layout, table).await?;
    }
    Ok(())
}

/// On a cluster, (re)creates `table`'s `Distributed` table unless it has its local table's
/// columns. ClickHouse 18.16 refuses `ALTER ... ON CLUSTER` on a `Distributed` table of a
/// replicated cluster, so a column added to the local tables reaches it by re-creation,
/// which holds no rows (inserts are synchronous): the same on every version.
async fn distribute(client: &clickhouse::Client, layout: &Layout, table: &str) -> Result<(), StoreError> {
    let Some(create) = layout.distributed(table) else { return Ok(()) };
    let action = || format!("create the distributed table {table}");
    let local = columns(client, layout, &layout.stored_name(table)).await.map_err(|e| StoreError::new(action(), e))?;
    let routed = columns(client, layout, table).await.map_err(|e| StoreError::new(action(), e))?;
    if local == routed {
        return Ok(());
    }
    let database = layout.database();
    let recreated = async {
        if !routed.is_empty() {
            client.query(&format!("DROP TABLE IF EXISTS {database}.{table}{}", layout.on_cluster())).execute().await?;
        }
        client.query(&create).execute().await
    };
    match recreated.await {
        Ok(()) => Ok(()),
        // A concurrent replica re-created it first.
        Err(_) if columns(client, layout, table).await.is_ok_and(|now| now == local) => Ok(()),
        Err(error) => Err(StoreError::new(action(), error)),
    }
}

/// A table's columns and their types, by name.
async fn columns(
    client: &clickhouse::Client,
    layout: &Layout,
    table: &str,
) -> Result<Vec<(String, String)>, clickhouse::error::Error> {
    client
        .query("SELECT name, type FROM system.columns WHERE database = ? AND table = ? ORDER BY name")
        .bind(layout.database())
        .bind(table)
        .fetch_all()
        .await
}

/// Never returned for the embedded migrations, which a unit test parses; kept as an error
/// rather than a panic all the same.
fn unreachable_form() -> StoreError {
    StoreError::new(
        "parse an embedded migration",
        clickhouse::error::Error::Custom("a migration statement of an unknown form".into()),
    )
}

/// Splits a migration file into statements: `;` ends a statement, `--` starts a comment.
pub fn statements(sql: &str) -> Vec<String> {
    let without_comments: String =
        sql.lines().map(|line| line.split_once("--").map_or(line, |(code, _)| code)).collect::<Vec<_>>().join("\n");
    without_comments.split(';').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_migration_statement_has_a_known_form() {
        let versions: Vec<u32> = MIGRATIONS.iter().map(|m| m.0).collect();
        assert!(versions.windows(2).all(|w| w[0] < w[1]), "versions ascend");
        for (version, _, sql) in MIGRATIONS {
            for statement in statements(sql) {
                Statement::parse(&statement).unwrap_or_else(|e| panic!("migration {version}: {e}"));
            }
        }
        assert!(Statement::parse(CREATE_MIGRATIONS_TABLE).is_ok());
    }

    #[test]
    fn statements_name_what_they_make() {
        let first = statements(MIGRATIONS[0].2);
        assert_eq!(first.len(), 2);
        assert!(
            matches!(Statement::parse(&first[0]), Ok(Statement::CreateTable { table, .. }) if table == "exchanges")
        );
        let noise = statements(MIGRATIONS[1].2);
        assert!(matches!(
            Statement::parse(&noise[0]),
            Ok(Statement::AddColumn { table, column, .. }) if table == "exchanges" && column == "noise"
        ));
        assert!(Statement::parse("ALTER TABLE t ADD COLUMN a UInt8, ADD COLUMN b UInt8").is_err());
        assert!(Statement::parse("CREATE TABLE t (a UInt8) ENGINE = Log").is_err());
        assert!(Statement::parse("CREATE TABLE IF NOT EXISTS t (a UInt8) ENGINE = Log").is_err());
        assert!(Statement::parse("DROP TABLE t").is_err());
    }

    #[test]
    fn statements_render_for_one_server_as_written_and_for_a_cluster_on_every_server() {
        let single = Layout::new("sd", None);
        let cluster = Layout::new("sd", Some("c1".to_owned()));
        let bookkeeping = Statement::parse(CREATE_MIGRATIONS_TABLE).unwrap();
        assert_eq!(
            bookkeeping.render(&single),
            "CREATE TABLE IF NOT EXISTS sd.schema_migrations \
             (version UInt32, name String, applied_at DateTime DEFAULT now()) ENGINE = MergeTree() ORDER BY version"
        );
        assert_eq!(
            bookkeeping.render(&cluster),
            "CREATE TABLE IF NOT EXISTS sd.schema_migrations_local ON CLUSTER c1 \
             (version UInt32, name String, applied_at DateTime DEFAULT now()) \
             ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/sd/schema_migrations_local', '{replica}') \
             ORDER BY version"
        );
        let noise = Statement::parse(&statements(MIGRATIONS[1].2)[0]).unwrap();
        assert_eq!(noise.render(&single), "ALTER TABLE sd.exchanges ADD COLUMN noise UInt32 DEFAULT 0");
        assert_eq!(
            noise.render(&cluster),
            "ALTER TABLE sd.exchanges_local ON CLUSTER c1 ADD COLUMN noise UInt32 DEFAULT 0"
        );
    }

    #[test]
    fn every_table_is_sharded_by_a_column_it_has() {
        for (_, _, sql) in MIGRATIONS {
            for statement in statements(sql) {
                if let Ok(Statement::CreateTable { table, columns, .. }) = Statement::parse(&statement) {
                    let key = crate::layout::sharding_key(&table);
                    let column = key.trim_start_matches("cityHash64(").trim_end_matches(')');
                    assert!(
                        columns.split_whitespace().any(|word| word == column),
                        "{table} is sharded by {key}, which it lacks"
                    );
                }
            }
        }
    }
}

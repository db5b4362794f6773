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

/// The forms a migration statement may take: each one's effect can be looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Statement {
    /// `CREATE TABLE IF NOT EXISTS <table> ...`
    CreateTable { table: String, sql: String },
    /// `ALTER TABLE <table> ADD COLUMN <column> ...`: one column per statement.
    AddColumn { table: String, column: String, sql: String },
}

/// A statement of a migration file that is none of the [`Statement`] forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a CREATE TABLE IF NOT EXISTS or a one-column ALTER TABLE ... ADD COLUMN: {0}")]
pub struct UnknownStatement(pub String);

impl Statement {
    pub fn parse(sql: &str) -> Result<Self, UnknownStatement> {
        let words: Vec<&str> = sql.split_whitespace().take(8).collect();
        let upper: Vec<String> = words.iter().map(|w| w.to_ascii_uppercase()).collect();
        let upper: Vec<&str> = upper.iter().map(String::as_str).collect();
        let name = |word: &str| word.trim_end_matches('(').to_owned();
        match upper.as_slice() {
            ["CREATE", "TABLE", "IF", "NOT", "EXISTS", _, ..] => {
                Ok(Self::CreateTable { table: name(words[5]), sql: sql.to_owned() })
            }
            ["ALTER", "TABLE", _, "ADD", "COLUMN", _, ..]
                if sql.to_ascii_uppercase().matches("ADD COLUMN").count() == 1 =>
            {
                Ok(Self::AddColumn { table: name(words[2]), column: name(words[5]), sql: sql.to_owned() })
            }
            _ => Err(UnknownStatement(sql.chars().take(80).collect())),
        }
    }

    fn sql(&self) -> &str {
        match self {
            Self::CreateTable { sql, .. } | Self::AddColumn { sql, .. } => sql,
        }
    }

    /// Whether the statement's effect is already in `database`.
    async fn in_effect(&self, client: &clickhouse::Client, database: &str) -> Result<bool, clickhouse::error::Error> {
        let query = match self {
            Self::CreateTable { table, .. } => client
                .query("SELECT count() FROM system.tables WHERE database = ? AND name = ?")
                .bind(database)
                .bind(table),
            Self::AddColumn { table, column, .. } => client
                .query("SELECT count() FROM system.columns WHERE database = ? AND table = ? AND name = ?")
                .bind(database)
                .bind(table)
                .bind(column),
        };
        Ok(query.fetch_one::<u64>().await? > 0)
    }

    /// Runs the statement unless its effect is there; a failure is no failure when the
    /// effect is there afterwards (a concurrent replica ran the same statement).
    async fn apply(&self, client: &clickhouse::Client, database: &str) -> Result<(), clickhouse::error::Error> {
        if self.in_effect(client, database).await? {
            return Ok(());
        }
        match client.query(self.sql()).execute().await {
            Ok(()) => Ok(()),
            Err(error) => match self.in_effect(client, database).await {
                Ok(true) => {
                    tracing::info!(statement = self.sql(), "made concurrently by another replica");
                    Ok(())
                }
                _ => Err(error),
            },
        }
    }
}

/// Creates `database` if missing and applies every migration not yet recorded. Safe to run
/// from many replicas at once.
pub async fn apply(clickhouse: &ClickHouse, database: &str) -> Result<(), StoreError> {
    let server = &clickhouse.server;
    let created = server.query(&format!("CREATE DATABASE IF NOT EXISTS {database}")).execute().await;
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
    bookkeeping.apply(client, database).await.map_err(|e| StoreError::new("create schema_migrations", e))?;
    let applied: Vec<u32> = client
        .query("SELECT DISTINCT version FROM schema_migrations")
        .fetch_all()
        .await
        .map_err(|e| StoreError::new("read schema_migrations", e))?;
    for (version, name, sql) in MIGRATIONS.iter().filter(|(v, ..)| !applied.contains(v)) {
        for statement in statements(sql) {
            // Every embedded statement parses: `every_migration_statement_has_a_known_form`.
            let statement = Statement::parse(&statement).map_err(|_| unreachable_form())?;
            statement
                .apply(client, database)
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
    Ok(())
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
        assert!(Statement::parse("DROP TABLE t").is_err());
    }
}

//! Versioned, idempotent schema migrations, applied at start-up and recorded in
//! `schema_migrations`. The SQL lives in `schemas/clickhouse/NNNN_name.sql`, embedded here.

use shadowdiff_runtime::clickhouse::ClickHouse;

use crate::StoreError;

/// Every migration in order. Append only: an applied migration is never edited.
pub const MIGRATIONS: &[(u32, &str, &str)] = &[
    (1, "exchanges", include_str!("../../../schemas/clickhouse/0001_exchanges.sql")),
    (2, "noise", include_str!("../../../schemas/clickhouse/0002_noise.sql")),
    (3, "stage_and_samples", include_str!("../../../schemas/clickhouse/0003_stage_and_samples.sql")),
    (4, "verdicts", include_str!("../../../schemas/clickhouse/0004_verdicts.sql")),
];

const CREATE_MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations \
     (version UInt32, name String, applied_at DateTime DEFAULT now()) ENGINE = MergeTree() ORDER BY version";

/// Creates `database` if missing and applies every migration not yet recorded.
pub async fn apply(clickhouse: &ClickHouse, database: &str) -> Result<(), StoreError> {
    clickhouse
        .server
        .query(&format!("CREATE DATABASE IF NOT EXISTS {database}"))
        .execute()
        .await
        .map_err(|e| StoreError::new(format!("create database {database}"), e))?;
    let client = &clickhouse.client;
    client
        .query(CREATE_MIGRATIONS_TABLE)
        .execute()
        .await
        .map_err(|e| StoreError::new("create schema_migrations", e))?;
    let applied: Vec<u32> = client
        .query("SELECT DISTINCT version FROM schema_migrations")
        .fetch_all()
        .await
        .map_err(|e| StoreError::new("read schema_migrations", e))?;
    for (version, name, sql) in MIGRATIONS.iter().filter(|(v, ..)| !applied.contains(v)) {
        for statement in statements(sql) {
            client
                .query(&statement)
                .execute()
                .await
                .map_err(|e| StoreError::new(format!("migration {version:04} {name}"), e))?;
        }
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
    fn every_migration_splits_into_create_statements() {
        let first = statements(MIGRATIONS[0].2);
        assert_eq!(first.len(), 2);
        assert!(first[0].starts_with("CREATE TABLE IF NOT EXISTS exchanges"));
        assert!(first[1].starts_with("CREATE TABLE IF NOT EXISTS differences"));
        let versions: Vec<u32> = MIGRATIONS.iter().map(|m| m.0).collect();
        assert!(versions.windows(2).all(|w| w[0] < w[1]), "versions ascend");
    }
}

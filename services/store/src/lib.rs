//! The comparison store: the ClickHouse tables shadowdiff keeps its evidence in.
//!
//! The correlator writes them (`shadowdiff-correlator`, `sink`) and the verdict service reads
//! them. Reading order: [`migrations`] (the schema, from `schemas/clickhouse/*.sql`, applied at
//! start-up), then [`rows`] (one struct per table, and the [`Outcome`] of a comparison),
//! [`sql`] (conditions on stored words, for the readers' queries) and [`retention`] (dropping
//! expired days).
//!
//! Tables are `ReplacingMergeTree`s keyed on the request id and deployment, so a batch that is
//! written again after a crash replaces itself; readers use `FINAL` to see each row once. On a
//! ClickHouse cluster they are sharded by request id behind `Distributed` tables of the same
//! names ([`layout`]), so every exchange is de-duplicated on its own shard.

pub mod layout;
pub mod migrations;
pub mod retention;
pub mod rows;
pub mod sql;

pub use rows::{
    AcceptanceRow, DifferenceRow, ExchangeRow, OutboundCallRow, OutboundDifferenceRow, Outcome, ReleaseRow, SampleRow,
    VerdictRow,
};

/// A ClickHouse failure, with what was being done.
#[derive(Debug, thiserror::Error)]
#[error("{action}: {source}")]
pub struct StoreError {
    action: String,
    #[source]
    source: clickhouse::error::Error,
}

impl StoreError {
    pub fn new(action: impl Into<String>, source: clickhouse::error::Error) -> Self {
        Self { action: action.into(), source }
    }
}

/// Inserts `rows` into `table` in one request; nothing when there are none.
pub async fn insert<T, R>(client: &clickhouse::Client, table: &str, rows: &[R]) -> Result<(), StoreError>
where
    T: clickhouse::Row + clickhouse::RowWrite + for<'a> clickhouse::Row<Value<'a> = T>,
    R: std::borrow::Borrow<T>,
{
    if rows.is_empty() {
        return Ok(());
    }
    let action = || format!("insert {} rows into {table}", rows.len());
    let mut insert = client.insert::<T>(table).await.map_err(|e| StoreError::new(action(), e))?;
    for row in rows {
        insert.write(row.borrow()).await.map_err(|e| StoreError::new(action(), e))?;
    }
    insert.end().await.map_err(|e| StoreError::new(action(), e))
}

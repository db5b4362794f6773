//! Where comparison rows are written: ClickHouse, through the `clickhouse` crate.
//!
//! `rows` turns a final exchange into rows (this is where the diff is computed), and [`Sink`]
//! writes a batch. The tables and their migrations live in `shadowdiff-store`.

pub mod rows;

use shadowdiff_runtime::clickhouse::{ClickHouse, ClickHouseConfig};

pub use rows::Batch;
use shadowdiff_store::StoreError;
use shadowdiff_store::migrations;

/// Writes batches of rows.
#[derive(Debug, Clone)]
pub struct Sink {
    clickhouse: ClickHouse,
}

impl Sink {
    /// Connects, creates the database if needed and applies pending migrations.
    pub async fn connect(config: &ClickHouseConfig) -> Result<Self, StoreError> {
        let clickhouse =
            config.connect().await.map_err(|e| StoreError::new(format!("connect to {}", config.url), e))?;
        migrations::apply(&clickhouse, &config.database).await?;
        tracing::info!(version = %clickhouse.version, database = %config.database, "clickhouse ready");
        Ok(Self { clickhouse })
    }

    /// Inserts both tables' rows. Safe to repeat after a failure: rows are keyed, so a
    /// retried batch replaces itself.
    pub async fn write(&self, batch: &Batch) -> Result<(), StoreError> {
        insert(&self.clickhouse.client, "samples", &batch.samples).await?;
        insert(&self.clickhouse.client, "differences", &batch.differences).await?;
        insert(&self.clickhouse.client, "exchanges", &batch.exchanges).await
    }
}

async fn insert<T>(client: &clickhouse::Client, table: &str, rows: &[T]) -> Result<(), StoreError>
where
    T: clickhouse::Row + clickhouse::RowWrite + for<'a> clickhouse::Row<Value<'a> = T>,
{
    if rows.is_empty() {
        return Ok(());
    }
    let action = || format!("insert {} rows into {table}", rows.len());
    let mut insert = client.insert::<T>(table).await.map_err(|e| StoreError::new(action(), e))?;
    for row in rows {
        insert.write(row).await.map_err(|e| StoreError::new(action(), e))?;
    }
    insert.end().await.map_err(|e| StoreError::new(action(), e))
}

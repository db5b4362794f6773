//! Where comparison rows are written: ClickHouse, through the `clickhouse` crate.
//!
//! `rows` turns a final exchange into rows (this is where the diff is computed), `migrations`
//! keeps the tables current, and [`Sink`] writes a batch.

pub mod migrations;
pub mod rows;

use shadowdiff_runtime::clickhouse::{ClickHouse, ClickHouseConfig};

pub use rows::{Batch, DifferenceRow, ExchangeRow};

/// A ClickHouse failure, with what was being done.
#[derive(Debug, thiserror::Error)]
#[error("{action}: {source}")]
pub struct SinkError {
    action: String,
    #[source]
    source: clickhouse::error::Error,
}

impl SinkError {
    pub(crate) fn new(action: impl Into<String>, source: clickhouse::error::Error) -> Self {
        Self { action: action.into(), source }
    }
}

/// Writes batches of rows.
#[derive(Debug, Clone)]
pub struct Sink {
    clickhouse: ClickHouse,
}

impl Sink {
    /// Connects, creates the database if needed and applies pending migrations.
    pub async fn connect(config: &ClickHouseConfig) -> Result<Self, SinkError> {
        let clickhouse = config.connect().await.map_err(|e| SinkError::new(format!("connect to {}", config.url), e))?;
        migrations::apply(&clickhouse, &config.database).await?;
        tracing::info!(version = %clickhouse.version, database = %config.database, "clickhouse ready");
        Ok(Self { clickhouse })
    }

    /// Inserts both tables' rows. Safe to repeat after a failure: rows are keyed, so a
    /// retried batch replaces itself.
    pub async fn write(&self, batch: &Batch) -> Result<(), SinkError> {
        insert(&self.clickhouse.client, "differences", &batch.differences).await?;
        insert(&self.clickhouse.client, "exchanges", &batch.exchanges).await
    }
}

async fn insert<T>(client: &clickhouse::Client, table: &str, rows: &[T]) -> Result<(), SinkError>
where
    T: clickhouse::Row + clickhouse::RowWrite + for<'a> clickhouse::Row<Value<'a> = T>,
{
    if rows.is_empty() {
        return Ok(());
    }
    let action = || format!("insert {} rows into {table}", rows.len());
    let mut insert = client.insert::<T>(table).await.map_err(|e| SinkError::new(action(), e))?;
    for row in rows {
        insert.write(row).await.map_err(|e| SinkError::new(action(), e))?;
    }
    insert.end().await.map_err(|e| SinkError::new(action(), e))
}

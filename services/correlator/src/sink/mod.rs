//! Where comparison rows are written: ClickHouse, through the `clickhouse` crate.
//!
//! `rows` turns a final exchange into rows (this is where the diff is computed), and [`Sink`]
//! writes a batch. The tables and their migrations live in `shadowdiff-store`.

pub mod rows;

use shadowdiff_runtime::clickhouse::{ClickHouse, ClickHouseConfig};

pub use rows::Batch;
use shadowdiff_runtime::CancellationToken;
use shadowdiff_store::StoreError;
use shadowdiff_store::migrations;
use shadowdiff_store::retention::{self, Retention};

const RETENTION_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

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

    /// Drops expired days now and then every hour, until `shutdown`. Every replica runs it;
    /// dropping a day twice is harmless.
    pub(crate) fn spawn_retention(&self, retention: Retention, shutdown: CancellationToken) {
        if retention.comparisons_days == 0 && retention.samples_days == 0 {
            return;
        }
        let client = self.clickhouse.client.clone();
        tokio::spawn(async move {
            let mut hourly = tokio::time::interval(RETENTION_EVERY);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    _ = hourly.tick() => {}
                }
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
                match retention::enforce(&client, retention, now).await {
                    Ok(dropped) if dropped.is_empty() => {}
                    Ok(dropped) => tracing::info!(?dropped, "expired days dropped"),
                    Err(error) => tracing::warn!(%error, "retention failed; retrying in an hour"),
                }
            }
        });
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

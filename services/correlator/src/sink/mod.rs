//! Where comparison rows are written: ClickHouse, through the `clickhouse` crate.
//!
//! `rows` turns a final exchange into rows (this is where the diff is computed; `fields`
//! fills each row in, and `calls` compares each deployment's downstream calls), and [`Sink`] writes a batch: `write` retries what may pass later and
//! splits around rows ClickHouse rejects, as `reject` decides. The tables and their
//! migrations live in `shadowdiff-store`.

mod calls;
mod fields;
mod reject;
pub mod rows;
mod samples;
mod write;

use shadowdiff_runtime::clickhouse::{ClickHouse, ClickHouseConfig};

pub use rows::Batch;
use shadowdiff_runtime::CancellationToken;
use shadowdiff_runtime::admin::Health;
use shadowdiff_runtime::retry::{Interrupted, until_shutdown};
use std::collections::HashSet;

use shadowdiff_store::retention::{self, Retention};
use shadowdiff_store::{
    DifferenceRow, ExchangeRow, OutboundCallRow, OutboundDifferenceRow, Outcome, SampleRow, StoreError, insert,
};
use shadowdiff_store::{migrations, sql};

pub(crate) use reject::code_name;
pub(crate) use write::RejectedRow;

/// The tables rows are written to, as rejected rows name them.
pub(crate) const EXCHANGES: &str = "exchanges";
pub(crate) const DIFFERENCES: &str = "differences";
const SAMPLES: &str = "samples";
const OUTBOUND_CALLS: &str = "outbound_calls";
const OUTBOUND_DIFFERENCES: &str = "outbound_differences";

/// Request ids per lookup of stored comparisons: ~60 KiB of SQL at 40-byte ids.
const LOOKUP_CHUNK: usize = 1000;

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
        migrations::apply(&clickhouse).await?;
        tracing::info!(version = %clickhouse.version, database = %config.database, "clickhouse ready");
        Ok(Self { clickhouse })
    }

    /// Drops expired days now and then every hour, until `shutdown`. Every replica runs it;
    /// dropping a day twice is harmless.
    pub(crate) fn spawn_retention(&self, retention: Retention, shutdown: CancellationToken) {
        if retention.comparisons_days == 0 && retention.samples_days == 0 {
            return;
        }
        let clickhouse = self.clickhouse.clone();
        tokio::spawn(async move {
            let mut hourly = tokio::time::interval(RETENTION_EVERY);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    _ = hourly.tick() => {}
                }
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
                match retention::enforce(&clickhouse, retention, now).await {
                    Ok(dropped) if dropped.is_empty() => {}
                    Ok(dropped) => tracing::info!(?dropped, "expired days dropped"),
                    Err(error) => tracing::warn!(%error, "retention failed; retrying in an hour"),
                }
            }
        });
    }

    /// Inserts the batch's rows, once. Safe to repeat after a failure: rows are keyed, so a
    /// retried batch replaces itself.
    pub async fn write(&self, batch: &Batch) -> Result<(), StoreError> {
        let client = &self.clickhouse.client;
        let stored = self.stored_complete(batch).await?;
        insert::<SampleRow, _>(client, SAMPLES, &batch.samples).await?;
        insert::<OutboundCallRow, _>(client, OUTBOUND_CALLS, &batch.outbound_calls).await?;
        insert::<OutboundDifferenceRow, _>(client, OUTBOUND_DIFFERENCES, &batch.outbound_differences).await?;
        insert::<DifferenceRow, _>(client, DIFFERENCES, &batch.differences).await?;
        insert::<ExchangeRow, _>(client, EXCHANGES, &without(&batch.exchanges, &stored)).await
    }

    /// Writes the batch until every row is in or rejected on its own, retrying transient
    /// failures until `shutdown`. Returns the rejected rows, which the caller dead-letters
    /// before it may release the batch's offsets.
    pub(crate) async fn store(
        &self,
        batch: &Batch,
        shutdown: &CancellationToken,
        health: &Health,
    ) -> Result<Vec<RejectedRow>, Interrupted> {
        let client = &self.clickhouse.client;
        let stored = until_shutdown(shutdown, "clickhouse lookup", || async {
            let found = self.stored_complete(batch).await;
            health.set("clickhouse", found.is_ok());
            match found {
                Ok(stored) => Ok(stored),
                // The lookup only binds request ids; should ClickHouse still refuse it,
                // every row is written as it is rather than the batch held forever.
                Err(error) if reject::classify(&error) != reject::Failure::Transient => Ok(HashSet::new()),
                Err(error) => Err(error),
            }
        })
        .await?;
        let mut rejected = Vec::new();
        let samples: Vec<&SampleRow> = batch.samples.iter().collect();
        write::insert_all(client, SAMPLES, &samples, shutdown, health, &mut rejected).await?;
        let calls: Vec<&OutboundCallRow> = batch.outbound_calls.iter().collect();
        write::insert_all(client, OUTBOUND_CALLS, &calls, shutdown, health, &mut rejected).await?;
        let call_differences: Vec<&OutboundDifferenceRow> = batch.outbound_differences.iter().collect();
        write::insert_all(client, OUTBOUND_DIFFERENCES, &call_differences, shutdown, health, &mut rejected).await?;
        let differences: Vec<&DifferenceRow> = batch.differences.iter().collect();
        write::insert_all(client, DIFFERENCES, &differences, shutdown, health, &mut rejected).await?;
        let exchanges = without(&batch.exchanges, &stored);
        write::insert_all(client, EXCHANGES, &exchanges, shutdown, health, &mut rejected).await?;
        Ok(rejected)
    }

    /// The comparisons among the batch's partial rows that are already stored complete.
    ///
    /// After a restart, the legs of an exchange already written can be read again in part
    /// (its request's partition re-read from an earlier offset than its responses', say),
    /// and come out incomplete. Such a row must not replace the complete one under `FINAL`,
    /// so an incomplete row is left out when its comparison is already stored complete.
    async fn stored_complete(&self, batch: &Batch) -> Result<HashSet<(String, String)>, StoreError> {
        let client = &self.clickhouse.client;
        // Only a row missing its request or primary can come from such a partial reading.
        let incomplete = [Outcome::MissingRequest, Outcome::MissingPrimary].map(Outcome::as_str);
        let partial: Vec<&ExchangeRow> =
            batch.exchanges.iter().filter(|r| incomplete.contains(&r.outcome.as_str())).collect();
        let lookup = format!(
            "SELECT request_id, deployment FROM exchanges FINAL \
             WHERE ts BETWEEN toDateTime(?) AND toDateTime(?) AND {} AND has(?, request_id)",
            sql::outcome_is(Outcome::Complete)
        );
        let mut stored: HashSet<(String, String)> = HashSet::new();
        // In chunks, so the query stays far below ClickHouse's max_query_size (256 KiB)
        // however many partial rows a catch-up produces.
        for chunk in partial.chunks(LOOKUP_CHUNK) {
            let ids: Vec<&str> = chunk.iter().map(|r| r.request_id.as_str()).collect();
            // The rows' own days bound the lookup to a few partitions.
            let (first, last) = chunk.iter().fold((u32::MAX, 0), |(lo, hi), r| (lo.min(r.ts), hi.max(r.ts)));
            let found = client
                .query(&lookup)
                .bind(first.saturating_sub(3600))
                .bind(last.saturating_add(3600))
                .bind(&ids)
                .fetch_all::<(String, String)>()
                .await
                .map_err(|e| StoreError::new("look up stored comparisons", e))?;
            stored.extend(found);
        }
        Ok(stored)
    }
}

/// The exchange rows whose comparison is not in `stored`.
fn without<'a>(rows: &'a [ExchangeRow], stored: &HashSet<(String, String)>) -> Vec<&'a ExchangeRow> {
    rows.iter().filter(|r| !stored.contains(&(r.request_id.clone(), r.deployment.clone()))).collect()
}

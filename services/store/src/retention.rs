//! Retention: whole days of rows are dropped once they are older than the configured
//! number of days. `releases` (a few rows per rollout) is kept. Every other table is
//! partitioned by day (`toYYYYMMDD(ts)`), so dropping a day
//! is one `ALTER TABLE … DROP PARTITION`, the same statement on ClickHouse 18.16 (which has
//! no table TTL) and on current releases: one mechanism everywhere.

use clickhouse::Client;

use crate::StoreError;

/// How long each table keeps its rows, in days; 0 keeps them forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// `exchanges`, `differences`, `outbound_calls`, `outbound_differences` and `verdicts`.
    pub comparisons_days: u32,
    /// `samples` (full bodies: larger, and needed only for recent drill-downs).
    pub samples_days: u32,
}

/// Drops every daily partition older than its table's retention, as of `now_secs` (Unix
/// seconds). Returns the partitions dropped, as `table/YYYYMMDD`.
pub async fn enforce(client: &Client, retention: Retention, now_secs: u64) -> Result<Vec<String>, StoreError> {
    let mut dropped = Vec::new();
    for (table, days) in [
        ("exchanges", retention.comparisons_days),
        ("differences", retention.comparisons_days),
        ("outbound_calls", retention.comparisons_days),
        ("outbound_differences", retention.comparisons_days),
        ("verdicts", retention.comparisons_days),
        ("samples", retention.samples_days),
    ] {
        if days == 0 {
            continue;
        }
        // The oldest day kept, as the partition id ClickHouse uses (YYYYMMDD).
        let oldest_kept: u32 = client
            .query("SELECT toUInt32(toYYYYMMDD(toDateTime(?) - ?))")
            .bind(now_secs)
            .bind(u64::from(days) * 86_400)
            .fetch_one()
            .await
            .map_err(|e| StoreError::new("compute the retention cut-off", e))?;
        let expired: Vec<String> = client
            .query(
                "SELECT DISTINCT partition FROM system.parts \
                 WHERE database = currentDatabase() AND table = ? AND active AND toUInt32OrZero(partition) < ? \
                 ORDER BY partition",
            )
            .bind(table)
            .bind(oldest_kept)
            .fetch_all()
            .await
            .map_err(|e| StoreError::new(format!("list the partitions of {table}"), e))?;
        for partition in expired {
            // Only a plain day id (digits) is ever put into the statement.
            if !partition.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            client
                .query(&format!("ALTER TABLE {table} DROP PARTITION {partition}"))
                .execute()
                .await
                .map_err(|e| StoreError::new(format!("drop partition {partition} of {table}"), e))?;
            dropped.push(format!("{table}/{partition}"));
        }
    }
    Ok(dropped)
}

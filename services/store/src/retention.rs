//! Retention: whole days of rows are dropped once they are older than the configured
//! number of days. `releases` (a few rows per rollout) is kept. Every other table is
//! partitioned by day (`toYYYYMMDD(ts)`), so dropping a day
//! is one `ALTER TABLE … DROP PARTITION`, the same statement on ClickHouse 18.16 (which has
//! no table TTL) and on current releases: one mechanism everywhere. On a cluster the days
//! are found through the `Distributed` table, so a day any shard holds is found, and dropped
//! `ON CLUSTER` from every shard's local table.

use shadowdiff_runtime::clickhouse::ClickHouse;

use crate::StoreError;
use crate::layout::Layout;

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
pub async fn enforce(clickhouse: &ClickHouse, retention: Retention, now_secs: u64) -> Result<Vec<String>, StoreError> {
    let (client, layout) = (&clickhouse.client, Layout::of(clickhouse));
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
        // The days with rows older than the retention, as the partition ids ClickHouse
        // uses (YYYYMMDD); only those days' parts are read.
        let expired: Vec<u32> = client
            .query(&format!(
                "SELECT DISTINCT toUInt32(toYYYYMMDD(ts)) AS day FROM {table} \
                 WHERE ts < toStartOfDay(toDateTime(?) - ?) ORDER BY day"
            ))
            .bind(now_secs)
            .bind(u64::from(days) * 86_400)
            .fetch_all()
            .await
            .map_err(|e| StoreError::new(format!("list the expired days of {table}"), e))?;
        for day in expired {
            client
                .query(&format!("ALTER TABLE {}{} DROP PARTITION {day}", layout.stored(table), layout.on_cluster()))
                .execute()
                .await
                .map_err(|e| StoreError::new(format!("drop partition {day} of {table}"), e))?;
            dropped.push(format!("{table}/{day}"));
        }
    }
    Ok(dropped)
}

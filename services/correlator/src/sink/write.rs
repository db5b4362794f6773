//! Writing one table's rows so that no row can hold up the rest.
//!
//! Transient failures are retried with backoff until shutdown, as before. When ClickHouse
//! rejects the rows (`reject`), the batch is split in halves and each half written on its
//! own, down to single rows: the good rows go in, and each row rejected alone is handed
//! back with the reason, for the dead-letter topic. Rows are keyed, so a half written twice
//! (a retry after a lost acknowledgement) replaces itself.
//!
//! Cost: one insert when nothing is rejected; about `2·k·log2(n)` for `k` bad rows among
//! `n`, and `2n − 1` at worst (every row bad), so a batch always finishes.

use std::future::Future;

use serde::Serialize;
use shadowdiff_runtime::CancellationToken;
use shadowdiff_runtime::admin::Health;
use shadowdiff_runtime::retry::{Interrupted, until_shutdown};
use shadowdiff_store::{DifferenceRow, ExchangeRow, OutboundCallRow, OutboundDifferenceRow, SampleRow, insert};

use super::reject::{self, Failure, Rejection};

/// A row ClickHouse rejected on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RejectedRow {
    pub(crate) table: &'static str,
    pub(crate) request_id: String,
    /// The row as JSON, for the dead letter.
    pub(crate) row: Vec<u8>,
    pub(crate) rejection: Rejection,
}

/// A row that can be written, and dead-lettered under its request id.
pub(crate) trait TableRow:
    clickhouse::Row + clickhouse::RowWrite + for<'a> clickhouse::Row<Value<'a> = Self> + Serialize
{
    fn request_id(&self) -> &str;
}

/// Every table's row is dead-lettered under its `request_id`.
macro_rules! keyed_by_request_id {
    ($($row:ty),+) => {
        $(impl TableRow for $row {
            fn request_id(&self) -> &str {
                &self.request_id
            }
        })+
    };
}

keyed_by_request_id!(ExchangeRow, DifferenceRow, SampleRow, OutboundCallRow, OutboundDifferenceRow);

/// Inserts `rows` into `table`, splitting around rejected rows, which are added to
/// `rejected`. Returns only when every row is written or rejected, or on shutdown.
pub(crate) async fn insert_all<T: TableRow>(
    client: &clickhouse::Client,
    table: &'static str,
    rows: &[&T],
    shutdown: &CancellationToken,
    health: &Health,
    rejected: &mut Vec<RejectedRow>,
) -> Result<(), Interrupted> {
    let refused = bisect(rows, shutdown, |chunk| async move {
        let written = insert::<T, _>(client, table, chunk).await;
        let failure = written.as_ref().err().map(reject::classify);
        health.set("clickhouse", failure != Some(Failure::Transient));
        match (written, failure) {
            (Ok(()), _) => Ok(None),
            (Err(_), Some(Failure::Rejected(rejection))) => Ok(Some(rejection)),
            (Err(error), _) => Err(error),
        }
    })
    .await?;
    rejected.extend(refused.into_iter().map(|(row, rejection)| RejectedRow {
        table,
        request_id: row.request_id().to_owned(),
        // Serializing a row of strings and numbers to JSON cannot fail; an empty payload
        // would still carry the reason and the request id.
        row: serde_json::to_vec(row).unwrap_or_default(),
        rejection,
    }));
    Ok(())
}

/// Writes `rows` with `write`, which answers `Ok(None)` when a chunk went in, `Ok(Some(_))`
/// when it was rejected, and `Err` for a transient failure (retried with backoff). Returns
/// each row rejected alone.
async fn bisect<'r, R, E, F, Fut>(
    rows: &'r [R],
    shutdown: &CancellationToken,
    mut write: F,
) -> Result<Vec<(&'r R, Rejection)>, Interrupted>
where
    E: std::fmt::Display,
    F: FnMut(&'r [R]) -> Fut,
    Fut: Future<Output = Result<Option<Rejection>, E>>,
{
    let mut refused = Vec::new();
    // Ranges of `rows` still to write; the last pushed is written first, so rows go in order.
    let mut pending = Vec::new();
    pending.push(0..rows.len());
    while let Some(range) = pending.pop() {
        let chunk = &rows[range.clone()];
        if chunk.is_empty() {
            continue;
        }
        match (until_shutdown(shutdown, "clickhouse insert", || write(chunk)).await?, chunk) {
            (None, _) => {}
            (Some(rejection), [row]) => refused.push((row, rejection)),
            (Some(_), _) => {
                let middle = range.start + chunk.len() / 2;
                pending.push(middle..range.end);
                pending.push(range.start..middle);
            }
        }
    }
    Ok(refused)
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::cell::RefCell;

    /// Bisects `rows` against a fake ClickHouse that rejects any chunk holding a negative
    /// number and fails the first `outages` attempts; returns the refused rows, the chunks
    /// written and the number of attempts.
    async fn bisected(rows: &[i32], outages: usize) -> (Vec<i32>, Vec<Vec<i32>>, usize) {
        let written = RefCell::new(Vec::new());
        let attempts = RefCell::new(0);
        let refused = bisect(rows, &CancellationToken::new(), |chunk: &[i32]| {
            *attempts.borrow_mut() += 1;
            let outcome = if *attempts.borrow() <= outages {
                Err("connection refused")
            } else if chunk.iter().any(|v| *v < 0) {
                Ok(Some(Rejection { code: Some(53), message: "TYPE_MISMATCH".into() }))
            } else {
                written.borrow_mut().push(chunk.to_vec());
                Ok(None)
            };
            async move { outcome }
        })
        .await
        .unwrap();
        (refused.into_iter().map(|(r, _)| *r).collect(), written.into_inner(), attempts.into_inner())
    }

    #[tokio::test]
    async fn a_clean_batch_is_one_insert() {
        assert_eq!(bisected(&[1, 2, 3, 4], 0).await, (vec![], vec![vec![1, 2, 3, 4]], 1));
    }

    #[tokio::test]
    async fn one_bad_row_is_isolated_and_the_rest_written_in_order() {
        let (refused, written, attempts) = bisected(&[1, 2, 3, -4, 5, 6, 7, 8], 0).await;
        assert_eq!(refused, vec![-4]);
        assert_eq!(written, vec![vec![1, 2], vec![3], vec![5, 6, 7, 8]]);
        assert_eq!(attempts, 1 + 2 + 2 + 2, "whole, halves, quarters, eighths around the bad row");
        assert_eq!(written.concat().len(), 7);
    }

    #[tokio::test]
    async fn every_row_bad_still_finishes() {
        let rows: Vec<i32> = (1..=16).map(|v| -v).collect();
        let (refused, written, attempts) = bisected(&rows, 0).await;
        assert_eq!(refused, rows);
        assert!(written.is_empty());
        assert_eq!(attempts, 2 * 16 - 1);
    }

    #[tokio::test]
    async fn transient_failures_are_retried_not_split() {
        let (refused, written, attempts) = bisected(&[1, 2, 3], 2).await;
        assert_eq!((refused, written, attempts), (vec![], vec![vec![1, 2, 3]], 3));
    }

    #[tokio::test]
    async fn shutdown_interrupts_a_retrying_write() {
        let shutdown = CancellationToken::new();
        shutdown.cancel();
        let result = bisect(&[1], &shutdown, |_: &[i32]| async { Err::<Option<Rejection>, _>("down") }).await;
        assert_eq!(result, Err(Interrupted));
    }
}

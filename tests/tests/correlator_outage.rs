//! The correlator while ClickHouse is down: its writes fail and are retried (counted), its
//! `/healthz` says which dependency fails, nothing is lost, nothing is doubled. Runs its
//! own ClickHouse so it can stop and restart it, and its own test binary so the retry
//! counter is its own.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use shadowdiff_tests::admin::healthz;
use shadowdiff_tests::clickhouse_server::PrivateClickHouse;
use shadowdiff_tests::correlator::{CorrelatorUnderTest, exchanges};
use shadowdiff_tests::eventually;
use shadowdiff_tests::infra::Infra;

/// `runtime::retry` counts every failed attempt of a write it retries, by what it writes;
/// the correlator's ClickHouse writes are `clickhouse lookup` then `clickhouse insert`.
const RETRIES: &str = "shadowdiff_write_retries_total";
const CLICKHOUSE_WRITES: &str = "what=\"clickhouse";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_written_while_clickhouse_was_down_all_arrive_once() {
    let infra = Infra::get().await;
    let mut clickhouse = PrivateClickHouse::start().await;
    // Each exchange waits out its window (its events name no expected legs). A busy machine
    // can take a second between two legs; a shorter window would split them.
    let correlator =
        CorrelatorUnderTest::start_on(&infra, &clickhouse.url(), 2, "window_ms = 3000\nflush_interval_ms = 200").await;
    let (requests, responses) = (correlator.requests.clone(), correlator.responses.clone());
    let rows = |sql: &'static str| {
        let client = correlator.clickhouse.clone();
        async move { client.query(sql).fetch_one::<u64>().await.map_err(|e| e.to_string()) }
    };

    exchanges(&infra.brokers, &requests, &responses, "up", 20).await;
    eventually("the first 20 comparisons", Duration::from_secs(60), || async {
        let n = rows("SELECT count() FROM exchanges FINAL").await?;
        if n == 20 { Ok(()) } else { Err(format!("{n} rows")) }
    })
    .await;
    let (status, checks) = healthz(&correlator.admin_url).await.unwrap();
    assert_eq!((status, checks["clickhouse"].as_bool()), (200, Some(true)), "{checks}");
    let retries_before = correlator.metric_sum(RETRIES, CLICKHOUSE_WRITES).await;

    clickhouse.stop();
    exchanges(&infra.brokers, &requests, &responses, "down", 20).await;
    // Once the window passes, the writes of the outage's batch fail; each failure is
    // counted and retried with backoff, and /healthz names the failing dependency.
    let retried = eventually("the outage's writes to fail and be retried", Duration::from_secs(60), || async {
        let retried = correlator.metric_sum(RETRIES, CLICKHOUSE_WRITES).await - retries_before;
        let (status, checks) = healthz(&correlator.admin_url).await?;
        if retried >= 3.0 && status == 503 && checks["clickhouse"] == false {
            Ok(retried)
        } else {
            Err(format!("{retried} retries; /healthz {status} {checks}"))
        }
    })
    .await;
    assert!(correlator.running(), "the correlator waits for ClickHouse; it does not give up");
    clickhouse.restart().await;

    eventually("every comparison, once, after ClickHouse returns", Duration::from_secs(60), || async {
        let n = rows("SELECT count() FROM exchanges FINAL").await?;
        let ids = rows("SELECT uniqExact(request_id) FROM exchanges").await?;
        let diverged = rows("SELECT countIf(differences > noise) FROM exchanges FINAL").await?;
        if (n, ids, diverged) == (40, 40, 40) {
            Ok(())
        } else {
            Err(format!("{n} rows, {ids} ids, {diverged} diverged"))
        }
    })
    .await;
    let (status, checks) = healthz(&correlator.admin_url).await.unwrap();
    assert_eq!((status, checks["clickhouse"].as_bool()), (200, Some(true)), "healthy again: {checks}");
    eprintln!("{retried} failed writes retried during the outage");
    correlator.stop().await;
}

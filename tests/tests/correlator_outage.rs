//! The correlator while ClickHouse is down: consumption pauses and retries, nothing is
//! lost, nothing is doubled. Runs its own ClickHouse so it can stop and restart it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use shadowdiff_runtime::CancellationToken;
use shadowdiff_runtime::config::load_str;
use shadowdiff_tests::clickhouse_server::PrivateClickHouse;
use shadowdiff_tests::correlator::exchanges;
use shadowdiff_tests::infra::Infra;
use shadowdiff_tests::{eventually, unique};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_written_while_clickhouse_was_down_all_arrive_once() {
    let infra = Infra::get().await;
    let mut clickhouse = PrivateClickHouse::start().await;
    let id = unique("outage");
    let (requests, responses, database) = (format!("{id}.requests"), format!("{id}.responses"), format!("sd_{id}"));
    let text = format!(
        "[correlator]\ngroup_id = \"{id}-correlator\"\nwindow_ms = 500\nflush_interval_ms = 200\n\
         [kafka]\nbrokers = \"{}\"\nlinger_ms = 1\n\
         [topics]\nrequests = \"{requests}\"\nresponses = \"{responses}\"\ndead_letter = \"{id}.dead-letter\"\n\
         outbound = \"{id}.outbound\"\nprofiles = \"{id}.profiles\"\npartitions = 2\n\
         [clickhouse]\nurl = \"{}\"\ndatabase = \"{database}\"\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n",
        infra.brokers,
        clickhouse.url()
    );
    let config = load_str(&text, "correlator test config", Vec::new()).unwrap_or_else(|e| panic!("{e}"));
    let shutdown = CancellationToken::new();
    let correlator = tokio::spawn(shadowdiff_correlator::run(config, shutdown.clone()));

    let client = shadowdiff_tests::infra::clickhouse_client(&clickhouse.url(), &database);
    let rows = |sql: &'static str| {
        let client = client.clone();
        async move { client.query(sql).fetch_one::<u64>().await.map_err(|e| e.to_string()) }
    };

    exchanges(&infra.brokers, &requests, &responses, "up", 20).await;
    eventually("the first 20 comparisons", Duration::from_secs(60), || async {
        let n = rows("SELECT count() FROM exchanges FINAL").await?;
        if n == 20 { Ok(()) } else { Err(format!("{n} rows")) }
    })
    .await;

    clickhouse.stop();
    exchanges(&infra.brokers, &requests, &responses, "down", 20).await;
    // Long enough for the window to pass and several inserts to fail and back off.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!correlator.is_finished(), "the correlator waits for ClickHouse; it does not give up");
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
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(15), correlator).await;
}

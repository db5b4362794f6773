//! Crash safety: the correlator, as its own process, killed with SIGKILL in the middle of
//! its batches and started again. Every exchange ends up in ClickHouse exactly once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use shadowdiff_tests::correlator::exchanges;
use shadowdiff_tests::infra::Infra;
use shadowdiff_tests::process;
use shadowdiff_tests::{eventually, unique};

fn spawn(config: &std::path::Path, log: &std::path::Path) -> std::process::Child {
    let binary = process::binary("shadowdiff-correlator", "shadowdiff-correlator");
    process::spawn(&binary, config, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_correlator_killed_mid_batch_writes_every_exchange_exactly_once() {
    let infra = Infra::get().await;
    let id = unique("crash");
    let (requests, responses, database) = (format!("{id}.requests"), format!("{id}.responses"), format!("sd_{id}"));
    let dir = std::env::temp_dir().join(&id);
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("correlator.toml");
    std::fs::write(
        &config,
        format!(
            "[correlator]\ngroup_id = \"{id}-correlator\"\nwindow_ms = 300\nflush_interval_ms = 100\n\
             [kafka]\nbrokers = \"{}\"\nlinger_ms = 1\n\
             # A killed member never says goodbye; a short session lets the restart take over sooner.\n\
             properties = {{ \"session.timeout.ms\" = \"6000\" }}\n\
             [topics]\nrequests = \"{requests}\"\nresponses = \"{responses}\"\ndead_letter = \"{id}.dead-letter\"\n\
             outbound = \"{id}.outbound\"\nprofiles = \"{id}.profiles\"\npartitions = 2\n\
             [clickhouse]\nurl = \"{}\"\ndatabase = \"{database}\"\n\
             [admin]\nlisten = \"127.0.0.1:0\"\n",
            infra.brokers, infra.clickhouse_url
        ),
    )
    .unwrap();
    let log = dir.join("correlator.log");
    let mut child = spawn(&config, &log);

    let client = shadowdiff_tests::infra::clickhouse_client(&infra.clickhouse_url, &database);
    let rows = |sql: &'static str| {
        let client = client.clone();
        async move { client.query(sql).fetch_one::<u64>().await.map_err(|e| e.to_string()) }
    };

    // A steady stream: batches are being written while the kill lands.
    let total = 200;
    let publisher = {
        let (brokers, requests, responses) = (infra.brokers.clone(), requests.clone(), responses.clone());
        tokio::spawn(async move {
            for chunk in 0..20 {
                exchanges(&brokers, &requests, &responses, &format!("c{chunk}"), total / 20).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    eventually("the first batches", Duration::from_secs(60), || async {
        let n = rows("SELECT count() FROM exchanges").await?;
        if n > 0 { Ok(n) } else { Err(format!("{n} rows; log in {}", log.display())) }
    })
    .await;
    child.kill().unwrap(); // SIGKILL: no flush, no commit
    child.wait().unwrap();
    let at_kill = rows("SELECT count() FROM exchanges").await.unwrap();

    let mut child = spawn(&config, &log);
    publisher.await.unwrap();
    let outcome = eventually("every exchange exactly once after the restart", Duration::from_secs(90), || async {
        let n = rows("SELECT count() FROM exchanges FINAL").await?;
        let ids = rows("SELECT uniqExact(request_id) FROM exchanges").await?;
        if n == total as u64 && ids == total as u64 {
            Ok(n)
        } else {
            let outcomes: String = client
                .query(
                    "SELECT arrayStringConcat(groupArray(concat(outcome, ':', toString(c))), ',') \
                     FROM (SELECT outcome, count() AS c FROM exchanges FINAL GROUP BY outcome)",
                )
                .fetch_one()
                .await
                .unwrap_or_default();
            Err(format!("{n} rows with FINAL, {ids} ids, outcomes {outcomes}"))
        }
    })
    .await;
    let physical = rows("SELECT count() FROM exchanges").await.unwrap();
    eprintln!(
        "{at_kill} rows at the kill; {outcome} after the restart ({physical} physical, duplicates collapse under FINAL)"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let _ = client.query(&format!("DROP DATABASE IF EXISTS {database}")).execute().await;
    let _ = std::fs::remove_dir_all(&dir);
}

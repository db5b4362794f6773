//! Crash safety: the correlator, as its own process, killed with SIGKILL in the middle of
//! its batches and started again. Every exchange ends up in ClickHouse exactly once, and
//! complete: none is lost, doubled, or rewritten as missing a leg it had.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use shadowdiff_core::ResponseEvent;
use shadowdiff_tests::correlator::{Exchange, Publisher, Reply};
use shadowdiff_tests::infra::Infra;
use shadowdiff_tests::process;
use shadowdiff_tests::{eventually, unique};

fn spawn(config: &std::path::Path, log: &std::path::Path) -> process::KillOnDrop {
    let binary = process::binary("shadowdiff-correlator", "shadowdiff-correlator");
    process::KillOnDrop(process::spawn(&binary, config, log))
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
            "[correlator]\ngroup_id = \"{id}-correlator\"\n\
             # Exchanges are written once complete (their events name the expected legs); the\n\
             # window only bounds a leg that never comes, and outlasts any gap between two legs.\n\
             window_ms = 10000\nflush_interval_ms = 100\n\
             [kafka]\nbrokers = \"{}\"\nlinger_ms = 1\n\
             # A killed member never says goodbye; a short session lets the restart take over sooner.\n\
             properties = {{ \"session.timeout.ms\" = \"{session}\" }}\n\
             [topics]\nrequests = \"{requests}\"\nresponses = \"{responses}\"\ndead_letter = \"{id}.dead-letter\"\n\
             outbound = \"{id}.outbound\"\nprofiles = \"{id}.profiles\"\npartitions = 2\n\
             [clickhouse]\nurl = \"{}\"\ndatabase = \"{database}\"\n\
             [admin]\nlisten = \"127.0.0.1:0\"\n",
            infra.brokers,
            infra.clickhouse_url,
            session = process::SESSION_TIMEOUT_MS,
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

    // A steady stream, in chunks of 10 exchanges 100 ms apart: batches are being written
    // while the kill lands. Half of each chunk's candidates answer only with the next chunk,
    // so exchanges are always open across a flush and its commit, and some across the kill.
    // The second half is only published after the kill, so the kill always finds part of the
    // exchanges unwritten.
    let (total, chunks) = (200, 20);
    let (killed_tx, mut killed) = tokio::sync::watch::channel(false);
    let publisher = {
        let (brokers, requests, responses) = (infra.brokers.clone(), requests.clone(), responses.clone());
        tokio::spawn(async move {
            let publisher = Publisher::new(&brokers, &requests, &responses);
            let mut late = Vec::new();
            for chunk in 0..chunks {
                if chunk == chunks / 2 {
                    killed.wait_for(|k| *k).await.unwrap();
                }
                let mut next = Vec::new();
                for i in 0..total / chunks {
                    let exchange =
                        Exchange::new(&format!("c{chunk}-{i}"), "/items/{id}", Reply::json(r#"{"price":100}"#))
                            .candidate("v2", Reply::json(r#"{"price":101}"#));
                    let [primary, candidate] = <[ResponseEvent; 2]>::try_from(exchange.responses()).unwrap();
                    publisher.request(&exchange.request).await;
                    publisher.response(&primary).await;
                    if i % 2 == 0 {
                        publisher.response(&candidate).await;
                    } else {
                        next.push(candidate);
                    }
                }
                for candidate in std::mem::replace(&mut late, next) {
                    publisher.response(&candidate).await;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            for candidate in late {
                publisher.response(&candidate).await;
            }
        })
    };
    // Several batches in, so commits have run while exchanges were open.
    eventually("the first batches", Duration::from_secs(60), || async {
        let n = rows("SELECT count() FROM exchanges").await?;
        if n >= 30 { Ok(n) } else { Err(format!("{n} rows; log in {}", log.display())) }
    })
    .await;
    process::kill(&mut child); // SIGKILL: no flush, no commit
    let killed_at = std::time::Instant::now();
    let at_kill = rows("SELECT count() FROM exchanges").await.unwrap();
    killed_tx.send(true).unwrap();
    assert!(
        at_kill > 0 && at_kill <= total as u64 / 2,
        "the kill landed mid-stream: {at_kill} rows of {total} at the kill, at most the {} published before it",
        total / 2
    );

    process::until_session_expired(killed_at).await;
    let mut child = spawn(&config, &log);
    publisher.await.unwrap();
    let outcome = eventually("every exchange exactly once after the restart", Duration::from_secs(90), || async {
        let n = rows("SELECT count() FROM exchanges FINAL").await?;
        let ids = rows("SELECT uniqExact(request_id) FROM exchanges").await?;
        let complete = rows("SELECT countIf(outcome = 'complete') FROM exchanges FINAL").await?;
        if (n, ids, complete) == (total as u64, total as u64, total as u64) {
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
            Err(format!("{n} rows with FINAL, {ids} ids, outcomes {outcomes}; log in {}", log.display()))
        }
    })
    .await;
    let physical = rows("SELECT count() FROM exchanges").await.unwrap();
    eprintln!(
        "{at_kill} rows at the kill; {outcome} after the restart ({physical} physical, duplicates collapse under FINAL)"
    );
    process::kill(&mut child);
    let _ = client.query(&format!("DROP DATABASE IF EXISTS {database}")).execute().await;
    let _ = std::fs::remove_dir_all(&dir);
}

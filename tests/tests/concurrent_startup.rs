//! Replicas starting together: two correlators, as their own processes, started at the same
//! moment on a database that does not exist yet. Both migrate it, neither fails, and the
//! schema is whole. Then the guard itself, deterministically: migrations resumed after a
//! replica added a column but had not yet recorded its migration.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use shadowdiff_runtime::clickhouse::ClickHouseConfig;
use shadowdiff_store::migrations::{self, MIGRATIONS};
use shadowdiff_tests::infra::{Infra, clickhouse_client};
use shadowdiff_tests::{eventually, process, unique};

/// Every (table, column) the migrations make, from `system.columns`.
async fn schema(client: &clickhouse::Client, database: &str) -> Vec<(String, String)> {
    client
        .query("SELECT table, name FROM system.columns WHERE database = ? ORDER BY table, name")
        .bind(database)
        .fetch_all()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_correlators_migrate_a_fresh_database_at_once() {
    let infra = Infra::get().await;
    let id = unique("twin");
    let database = format!("sd_{id}");
    let dir = std::env::temp_dir().join(&id);
    std::fs::create_dir_all(&dir).unwrap();
    let binary = process::binary("shadowdiff-correlator", "shadowdiff-correlator");
    let mut replicas = Vec::new();
    for replica in ["a", "b"] {
        let admin = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let config = dir.join(format!("{replica}.toml"));
        std::fs::write(
            &config,
            format!(
                "[correlator]\ngroup_id = \"{id}-correlator\"\n\
                 [kafka]\nbrokers = \"{}\"\n\
                 [topics]\nrequests = \"{id}.requests\"\nresponses = \"{id}.responses\"\n\
                 dead_letter = \"{id}.dead-letter\"\noutbound = \"{id}.outbound\"\nprofiles = \"{id}.profiles\"\n\
                 partitions = 2\n\
                 [clickhouse]\nurl = \"{}\"\ndatabase = \"{database}\"\n\
                 [admin]\nlisten = \"{admin}\"\n",
                infra.brokers, infra.clickhouse_url
            ),
        )
        .unwrap();
        replicas.push((config, dir.join(format!("{replica}.log")), admin));
    }
    // Both at once, on a database neither has seen.
    let mut children: Vec<_> = replicas.iter().map(|(config, log, _)| process::spawn(&binary, config, log)).collect();

    let http = reqwest::Client::new();
    for (i, (_, log, admin)) in replicas.iter().enumerate() {
        eventually(&format!("replica {i} healthy"), Duration::from_secs(60), || {
            let exited = children[i].try_wait().unwrap();
            let http = http.clone();
            async move {
                if let Some(status) = exited {
                    let log = std::fs::read_to_string(log).unwrap_or_default();
                    panic!("replica {i} exited with {status} while starting:\n{log}");
                }
                let health = http.get(format!("http://{admin}/healthz")).send().await.map_err(|e| e.to_string())?;
                if health.status().is_success() { Ok(()) } else { Err(format!("healthz {}", health.status())) }
            }
        })
        .await;
    }
    for (i, child) in children.iter_mut().enumerate() {
        assert!(child.try_wait().unwrap().is_none(), "replica {i} still runs once both are up");
    }

    let client = clickhouse_client(&infra.clickhouse_url, &database);
    let versions: Vec<u32> =
        client.query("SELECT DISTINCT version FROM schema_migrations ORDER BY version").fetch_all().await.unwrap();
    assert_eq!(versions, MIGRATIONS.iter().map(|m| m.0).collect::<Vec<_>>(), "every migration recorded");
    let columns = schema(&client, &database).await;
    for expected in [("exchanges", "noise"), ("exchanges", "stage"), ("differences", "noise"), ("verdicts", "revision")]
    {
        assert!(
            columns.iter().any(|(t, c)| (t.as_str(), c.as_str()) == expected),
            "{expected:?} missing from {columns:?}"
        );
    }

    for mut child in children {
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let _ = client.query(&format!("DROP DATABASE IF EXISTS {database}")).execute().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn migrations_resume_where_another_replica_left_off() {
    let infra = Infra::get().await;
    let database = unique("sd_resume");
    let config =
        ClickHouseConfig { url: infra.clickhouse_url.clone(), database: database.clone(), ..Default::default() };
    let clickhouse = config.connect().await.unwrap();
    migrations::apply(&clickhouse).await.unwrap();
    let client = &clickhouse.client;
    let before = schema(client, &database).await;

    // As if another replica had run part of migration 0005 and not recorded it yet: its
    // column is there, its version is not.
    client.query("ALTER TABLE schema_migrations DELETE WHERE version = 5").execute().await.unwrap();
    eventually("the record of 0005 gone", Duration::from_secs(10), || async {
        let left: u64 =
            client.query("SELECT count() FROM schema_migrations WHERE version = 5").fetch_one().await.unwrap();
        if left == 0 { Ok(()) } else { Err(format!("{left} left")) }
    })
    .await;
    client.query("ALTER TABLE verdicts DROP COLUMN since").execute().await.unwrap();

    migrations::apply(&clickhouse).await.unwrap_or_else(|e| panic!("resume: {e}"));
    assert_eq!(schema(client, &database).await, before, "the same schema, each statement applied once");
    // And once more, with everything in place: nothing to do, nothing fails.
    migrations::apply(&clickhouse).await.unwrap();

    let _ = client.query(&format!("DROP DATABASE IF EXISTS {database}")).execute().await;
}

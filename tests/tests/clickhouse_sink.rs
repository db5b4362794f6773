//! The correlator's sink against the real ClickHouse: migrations are idempotent and a
//! rewritten batch (the crash-between-write-and-commit case) replaces, never duplicates.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use shadowdiff_correlator::sink::{Batch, Sink};
use shadowdiff_runtime::clickhouse::ClickHouseConfig;
use shadowdiff_store::{DifferenceRow, ExchangeRow, SampleRow};
use shadowdiff_tests::infra::Infra;
use shadowdiff_tests::unique;

fn exchange(i: u32) -> ExchangeRow {
    ExchangeRow {
        ts: 1_763_900_000 + i,
        request_id: format!("req-{i}"),
        route: "/items/{id}".into(),
        method: "GET".into(),
        deployment: "v2".into(),
        role: "candidate".into(),
        outcome: "complete".into(),
        primary_status: 200,
        shadow_status: 200,
        primary_error: String::new(),
        shadow_error: String::new(),
        primary_latency_us: 1000,
        shadow_latency_us: 1500,
        latency_delta_us: 500,
        status_differs: 0,
        body_differs: u8::from(i.is_multiple_of(2)),
        differences: u32::from(i.is_multiple_of(2)),
        noise: 0,
        stage: "10".into(),
        run: String::new(),
    }
}

fn sample(i: u32, deployment: &str) -> SampleRow {
    SampleRow {
        ts: 1_763_900_000 + i,
        request_id: format!("req-{i}"),
        route: "/items/{id}".into(),
        method: "GET".into(),
        deployment: deployment.into(),
        role: if deployment == "primary" { "primary" } else { "candidate" }.into(),
        status: 200,
        content_type: "application/json".into(),
        headers: "content-type: application/json\n".into(),
        body: format!(r#"{{"price":{}}}"#, 100 + i),
        body_length: 13,
        truncated: 0,
        run: String::new(),
    }
}

fn difference(i: u32) -> DifferenceRow {
    DifferenceRow {
        ts: 1_763_900_000 + i,
        request_id: format!("req-{i}"),
        route: "/items/{id}".into(),
        deployment: "v2".into(),
        role: "candidate".into(),
        kind: "changed_value".into(),
        path: "price".into(),
        primary_value: "100".into(),
        shadow_value: "101".into(),
        noise: 0,
        run: String::new(),
    }
}

#[tokio::test]
async fn migrations_are_idempotent_and_rewrites_replace_rows() {
    let infra = Infra::get().await;
    let config = ClickHouseConfig {
        url: infra.clickhouse_url.clone(),
        database: unique("sd_sink"),
        ..ClickHouseConfig::default()
    };
    let sink = Sink::connect(&config).await.unwrap();
    Sink::connect(&config).await.expect("a second start-up finds the schema current");

    let mut batch = Batch::default();
    batch.exchanges = (0..10).map(exchange).collect();
    batch.differences = (0..10).filter(|i| i % 2 == 0).map(difference).collect();
    batch.samples = vec![sample(0, "primary"), sample(0, "v2")];
    sink.write(&batch).await.unwrap();
    sink.write(&batch).await.unwrap();

    let client = config.connect().await.unwrap().client;
    let count = |sql: &'static str| {
        let client = client.clone();
        async move { client.query(sql).fetch_one::<u64>().await.unwrap() }
    };
    let migrations = shadowdiff_store::migrations::MIGRATIONS.len() as u64;
    assert_eq!(count("SELECT count() FROM schema_migrations").await, migrations, "every migration, once");
    assert_eq!(count("SELECT count() FROM samples FINAL").await, 2);
    assert_eq!(count("SELECT count() FROM exchanges FINAL").await, 10);
    assert_eq!(count("SELECT count() FROM differences FINAL").await, 5);
    assert_eq!(count("SELECT sum(differences) FROM exchanges FINAL").await, 5);
    let back: Vec<ExchangeRow> =
        client.query("SELECT ?fields FROM exchanges FINAL ORDER BY ts").fetch_all().await.unwrap();
    assert_eq!(back, (0..10).map(exchange).collect::<Vec<_>>(), "rows read back exactly as written");
    let samples: Vec<SampleRow> =
        client.query("SELECT ?fields FROM samples FINAL ORDER BY role DESC").fetch_all().await.unwrap();
    assert_eq!(samples, batch.samples);

    client.query(&format!("DROP DATABASE {}", config.database)).execute().await.unwrap();
}

#[tokio::test]
async fn retention_drops_whole_expired_days_of_each_table() {
    expired_days_dropped(Infra::get().await).await;
}

/// The same on a ClickHouse cluster: each day has rows on every shard, and is dropped from
/// every shard's local table.
#[tokio::test]
async fn on_a_clickhouse_cluster_retention_drops_expired_days_from_every_shard() {
    expired_days_dropped(Infra::cluster().await).await;
}

async fn expired_days_dropped(infra: Infra) {
    use shadowdiff_store::retention::{Retention, enforce};
    const DAY: u32 = 86_400;
    const DAYS_AGO: [u32; 3] = [40, 10, 1];
    let config = ClickHouseConfig {
        url: infra.clickhouse_url.clone(),
        database: unique("sd_retention"),
        cluster: infra.clickhouse_cluster.clone(),
        ..Default::default()
    };
    let sink = Sink::connect(&config).await.unwrap();
    let now = 1_763_900_000 + 100 * DAY;
    // Twelve exchanges, four on each day: enough for every day to reach every shard.
    let mut batch = Batch::default();
    for i in 0..12 {
        let ts = now - DAYS_AGO[i as usize % 3] * DAY;
        batch.exchanges.push(ExchangeRow { ts, ..exchange(i) });
        batch.differences.push(DifferenceRow { ts, ..difference(i) });
        batch.samples.push(SampleRow { ts, ..sample(i, "v2") });
    }
    sink.write(&batch).await.unwrap();
    let kept = |days: u32| -> Vec<String> {
        let mut ids: Vec<String> =
            (0..12).filter(|i| DAYS_AGO[*i as usize % 3] <= days).map(|i| format!("req-{i}")).collect();
        ids.sort();
        ids
    };

    let clickhouse = config.connect().await.unwrap();
    let client = clickhouse.client.clone();
    for shard in infra.shards(&config.database, "exchanges").await {
        let days: u64 = client.query(&format!("SELECT uniqExact(toDate(ts)) FROM {shard}")).fetch_one().await.unwrap();
        assert_eq!(days, 3, "every day has rows on {shard}");
    }
    let dropped =
        enforce(&clickhouse, Retention { comparisons_days: 30, samples_days: 7 }, u64::from(now)).await.unwrap();
    assert_eq!(dropped.len(), 4, "{dropped:?}");
    let ids = |table: &'static str| {
        let client = client.clone();
        async move {
            client
                .query(&format!("SELECT request_id FROM {table} FINAL ORDER BY request_id"))
                .fetch_all::<String>()
                .await
                .unwrap()
        }
    };
    assert_eq!(ids("exchanges").await, kept(30), "30 days kept");
    assert_eq!(ids("differences").await, kept(30));
    for shard in infra.shards(&config.database, "exchanges").await {
        let days: u64 = client.query(&format!("SELECT uniqExact(toDate(ts)) FROM {shard}")).fetch_one().await.unwrap();
        assert_eq!(days, 2, "the expired day is gone from {shard}");
    }
    assert_eq!(ids("samples").await, kept(7), "7 days kept");
    let again =
        enforce(&clickhouse, Retention { comparisons_days: 30, samples_days: 7 }, u64::from(now)).await.unwrap();
    assert!(again.is_empty(), "nothing left to drop: {again:?}");

    client.query(&infra.drop_database(&config.database)).execute().await.unwrap();
}

#[tokio::test]
async fn an_incomplete_rereading_never_replaces_a_stored_complete_comparison() {
    let infra = Infra::get().await;
    let config =
        ClickHouseConfig { url: infra.clickhouse_url.clone(), database: unique("sd_reread"), ..Default::default() };
    let sink = Sink::connect(&config).await.unwrap();
    let mut batch = Batch::default();
    batch.exchanges = vec![exchange(1)];
    sink.write(&batch).await.unwrap();

    // After a restart, part of req-1's legs is read again and comes out without its request;
    // req-2 was never complete, so its incomplete row is the truth.
    let incomplete = |i| ExchangeRow { outcome: "missing_request".into(), method: String::new(), ..exchange(i) };
    batch.exchanges = vec![incomplete(1), incomplete(2)];
    sink.write(&batch).await.unwrap();
    // A catch-up can split thousands of exchanges at once: far more ids than one query holds.
    let many = |i: u32| ExchangeRow { request_id: format!("01938a6e-5f00-7000-8000-{i:012}"), ..incomplete(i) };
    batch.exchanges = (1000..9000).map(many).collect();
    sink.write(&batch).await.expect("written in chunks below max_query_size");

    let client = config.connect().await.unwrap().client;
    let outcomes: Vec<(String, String)> = client
        .query(
            "SELECT request_id, outcome FROM exchanges FINAL WHERE startsWith(request_id, 'req-') ORDER BY request_id",
        )
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(
        outcomes,
        [("req-1".to_owned(), "complete".to_owned()), ("req-2".to_owned(), "missing_request".to_owned())]
    );
    client.query(&format!("DROP DATABASE {}", config.database)).execute().await.unwrap();
}

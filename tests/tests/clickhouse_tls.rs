//! ClickHouse over https: migrations, inserts and reads through a TLS endpoint whose
//! certificate a private CA signed, trusted through `[clickhouse] ca_file` and refused
//! without it. The endpoint terminates TLS in front of the local server, as a load
//! balancer in front of a hosted ClickHouse does.

// Scenario helpers fail the test by panicking, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use shadowdiff_runtime::clickhouse::ClickHouseConfig;
use shadowdiff_runtime::tls::CaBundle;
use shadowdiff_store::ExchangeRow;
use shadowdiff_tests::infra::Infra;
use shadowdiff_tests::tls::TestCa;
use shadowdiff_tests::unique;
use shadowdiff_tests::verdict::row;

#[tokio::test]
async fn rows_go_to_clickhouse_over_https_trusted_through_ca_file() {
    let infra = Infra::get().await;
    let ca = TestCa::new();
    let endpoint = ca.serve(shadowdiff_tests::proxy::forwarder(infra.clickhouse_url.clone(), None)).await;
    let config = ClickHouseConfig {
        url: format!("https://127.0.0.1:{}", endpoint.port()),
        database: unique("sd_tls"),
        ca_file: Some(CaBundle::load(&ca.ca_file).unwrap()),
        ..ClickHouseConfig::default()
    };

    // Not trusted without the CA: the TLS handshake fails, no query runs.
    let untrusted = ClickHouseConfig { ca_file: None, ..config.clone() };
    let Err(refused) = untrusted.connect().await else { panic!("a certificate no root vouches for was accepted") };
    assert!(format!("{refused:?}").to_lowercase().contains("certificate"), "{refused:?}");

    // Trusted: migrations, an insert and a read, all over TLS.
    shadowdiff_correlator::sink::Sink::connect(&config).await.unwrap_or_else(|e| panic!("migrate over https: {e}"));
    let clickhouse = config.connect().await.unwrap();
    let rows: Vec<ExchangeRow> = (0..3).map(|i| row("v2", i)).collect();
    shadowdiff_store::insert::<ExchangeRow, _>(&clickhouse.client, "exchanges", &rows).await.unwrap();
    let count: u64 = clickhouse.client.query("SELECT count() FROM exchanges FINAL").fetch_one().await.unwrap();
    assert_eq!(count, 3);
    let _ = clickhouse.server.query(&format!("DROP DATABASE IF EXISTS {}", config.database)).execute().await;
}

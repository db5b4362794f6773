//! The mirror replays to https targets: trusted through the CA bundle its config names,
//! and refused (a connect error, published) when the certificate is not trusted.

// Scenario helpers fail the test by panicking, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use axum::Router;
use shadowdiff_core::ErrorKind;
use shadowdiff_tests::infra::Infra;
use shadowdiff_tests::kafka::responses_until;
use shadowdiff_tests::mirror::{MirrorTopics, MirrorUnderTest, publish, request_event};
use shadowdiff_tests::tls::TestCa;

const DEADLINE: Duration = Duration::from_secs(60);

fn profile(id: &str, target: std::net::SocketAddr) -> String {
    format!(
        "[[mirror.profiles]]\nid = \"{id}\"\n\
         [[mirror.profiles.targets]]\nname = \"v2\"\nrole = \"candidate\"\nbase_url = \"https://127.0.0.1:{}\"\ntimeout_ms = 5000\n",
        target.port()
    )
}

#[tokio::test]
async fn replays_reach_https_targets_only_through_a_trusted_ca() {
    let infra = Infra::get().await;
    let ca = TestCa::new();
    let backend = ca.serve(Router::new().fallback(|| async { "{\"over\":\"tls\"}" })).await;

    let trusting = MirrorTopics::new();
    let keys = format!("ca_file = {:?}", ca.ca_file.display().to_string());
    let mirror = MirrorUnderTest::start_with(&infra.brokers, &trusting, &keys, &profile("tls", backend)).await;
    publish(&infra.brokers, &trusting.requests, &[request_event("tls-1", "GET", "/items/1")]).await;
    let events = responses_until(&infra.brokers, &trusting.responses, DEADLINE, |e| !e.is_empty()).await;
    assert_eq!((events[0].status, events[0].error), (Some(200), None), "{:?}", events[0]);
    assert_eq!(events[0].body.bytes, br#"{"over":"tls"}"#);
    mirror.stop().await;

    // Without the CA, the same target's certificate is not trusted: a connect error.
    let distrusting = MirrorTopics::new();
    let mirror = MirrorUnderTest::start(&infra.brokers, &distrusting, &profile("tls", backend)).await;
    publish(&infra.brokers, &distrusting.requests, &[request_event("tls-2", "GET", "/items/1")]).await;
    let events = responses_until(&infra.brokers, &distrusting.responses, DEADLINE, |e| !e.is_empty()).await;
    assert_eq!((events[0].status, events[0].error), (None, Some(ErrorKind::Connect)), "{:?}", events[0]);
    mirror.stop().await;
}

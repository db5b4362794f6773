//! The tap with TLS on either side, against a real broker: clients over https (HTTP/1.1
//! and h2 by ALPN), a client that never starts its handshake, and an https upstream
//! trusted through `upstream_ca_file`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::routing::get;
use http::{StatusCode, Version};
use rdkafka::Message;
use rdkafka::message::OwnedMessage;
use shadowdiff_core::{ErrorKind, EventCodec, RequestEvent, ResponseEvent};
use shadowdiff_tests::infra::Infra;
use shadowdiff_tests::kafka::read_until;
use shadowdiff_tests::tap::TapUnderTest;
use shadowdiff_tests::tls::TestCa;
use shadowdiff_tests::unique;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const DEADLINE: Duration = Duration::from_secs(30);
const REDACTION: &str = "[tap.redaction]\nhmac_key = \"tap-tls-test-hmac-key-0123456789\"\n";

/// Answers `/hello` with `greeting`, and `/host` with the `Host` it was sent.
fn app(greeting: &'static str) -> Router {
    Router::new()
        .route("/hello", get(move || async move { greeting }))
        .route("/host", get(|request: Request| async move { request.headers()["host"].as_bytes().to_vec() }))
}

async fn plain_backend() -> SocketAddr {
    shadowdiff_tests::serve(app("plain hello")).await
}

/// `[tap.tls]` with the CA's server certificate, then the redaction section.
fn tls_listener(ca: &TestCa, extra: &str) -> String {
    format!(
        "{extra}\n[tap.tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n{REDACTION}",
        ca.cert_file.display(),
        ca.key_file.display()
    )
}

/// A client that trusts only the test CA; HTTP/1.1 only, or whatever ALPN picks.
fn client(ca: &TestCa, http1_only: bool) -> reqwest::Client {
    shadowdiff_runtime::tls::install_provider();
    let pem = std::fs::read(&ca.ca_file).unwrap();
    let builder = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
        .timeout(Duration::from_secs(10));
    let builder = if http1_only { builder.http1_only() } else { builder };
    builder.build().unwrap()
}

fn with_key<'a>(messages: &'a [OwnedMessage], id: &str) -> Option<&'a OwnedMessage> {
    messages.iter().find(|m| m.key() == Some(id.as_bytes()))
}

async fn request_event(tap: &TapUnderTest, brokers: &str, id: &str) -> RequestEvent {
    let messages =
        read_until(brokers, &tap.requests, DEADLINE, |ms| ms.iter().any(|m| m.key() == Some(id.as_bytes()))).await;
    EventCodec::new().unwrap().decode(with_key(&messages, id).unwrap().payload().unwrap()).unwrap()
}

async fn response_event(tap: &TapUnderTest, brokers: &str, id: &str) -> ResponseEvent {
    let messages =
        read_until(brokers, &tap.responses, DEADLINE, |ms| ms.iter().any(|m| m.key() == Some(id.as_bytes()))).await;
    EventCodec::new().unwrap().decode(with_key(&messages, id).unwrap().payload().unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_get_the_upstream_answer_over_https_with_http1_and_h2() {
    let infra = Infra::get().await;
    let ca = TestCa::new();
    let tap = TapUnderTest::start(&infra.brokers, plain_backend().await, &tls_listener(&ca, ""), "").await;
    assert!(tap.url.starts_with("https://"), "{}", tap.url);

    for (http1_only, version) in [(true, Version::HTTP_11), (false, Version::HTTP_2)] {
        let id = unique("tls-client");
        let response =
            client(&ca, http1_only).get(format!("{}/hello", tap.url)).header("x-request-id", &id).send().await.unwrap();
        assert_eq!(response.version(), version, "ALPN picks the version");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["x-request-id"], id.as_str());
        assert_eq!(response.text().await.unwrap(), "plain hello");

        let request = request_event(&tap, &infra.brokers, &id).await;
        assert_eq!((request.scheme.as_str(), request.path.as_str()), ("https", "/hello"), "{version:?}");
        assert_eq!(request.authority, tap.url.trim_start_matches("https://"), "{version:?}");
        let response = response_event(&tap, &infra.brokers, &id).await;
        assert_eq!(response.status, Some(200));
    }

    // Plain HTTP to a TLS listener is a failed handshake, never a request.
    let plain = reqwest::Client::new().get(tap.url.replacen("https://", "http://", 1)).send().await;
    assert!(plain.is_err(), "{plain:?}");
    assert!(tap.stop().await, "the tap drains and stops");
}

/// How long the tap took to close `stream`, reading whatever it sends until then.
async fn closed_after(stream: &mut TcpStream) -> Duration {
    let since = tokio::time::Instant::now();
    let mut buf = [0; 1024];
    let closed = async { while stream.read(&mut buf).await.is_ok_and(|n| n > 0) {} };
    tokio::time::timeout(Duration::from_secs(10), closed).await.expect("still open after 10 s");
    since.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_its_handshake_is_closed_at_the_header_deadline() {
    let infra = Infra::get().await;
    let ca = TestCa::new();
    let extra = tls_listener(&ca, "header_read_timeout_ms = 500\nidle_timeout_ms = 60000");
    let tap = TapUnderTest::start(&infra.brokers, plain_backend().await, &extra, "").await;
    let addr = tap.url.trim_start_matches("https://").to_owned();
    let before = tap.counter("shadowdiff_tap_connections_closed_total", "reason=\"header_timeout\"").await;

    // Silent after TCP: no ClientHello at all.
    let mut silent = TcpStream::connect(&addr).await.unwrap();
    // The first bytes of a TLS record announcing a ClientHello that never comes.
    let mut stalled = TcpStream::connect(&addr).await.unwrap();
    stalled.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).await.unwrap();
    let (silent, stalled) = tokio::join!(closed_after(&mut silent), closed_after(&mut stalled));
    for (what, after) in [("silent", silent), ("stalled", stalled)] {
        assert!(
            (Duration::from_millis(400)..Duration::from_secs(5)).contains(&after),
            "{what}: closed after {after:?}"
        );
    }
    let after = tap.counter("shadowdiff_tap_connections_closed_total", "reason=\"header_timeout\"").await;
    assert!(after - before >= 2.0, "counted as header timeouts: {before} then {after}");

    // A client that finishes its handshake in time is served.
    let response = client(&ca, true).get(format!("{}/hello", tap.url)).send().await.unwrap();
    assert_eq!(response.text().await.unwrap(), "plain hello");
    assert!(tap.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_upstream_is_reached_with_its_ca_file_and_refused_without() {
    let infra = Infra::get().await;
    let ca = TestCa::new();
    let upstream = format!("https://{}", ca.serve(app("secure hello")).await);

    let ca_file = format!("upstream_ca_file = \"{}\"\n{REDACTION}", ca.ca_file.display());
    let trusted = TapUnderTest::start_for(&infra.brokers, &upstream, &ca_file, "").await;
    let id = unique("tls-upstream");
    let response =
        reqwest::Client::new().get(format!("{}/hello", trusted.url)).header("x-request-id", &id).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), "secure hello");
    let event = response_event(&trusted, &infra.brokers, &id).await;
    assert_eq!((event.status, event.error), (Some(200), None));
    let host = reqwest::get(format!("{}/host", trusted.url)).await.unwrap().text().await.unwrap();
    assert_eq!(host, upstream.trim_start_matches("https://"), "the upstream's own Host");

    // The system's roots alone do not cover the test CA: the handshake fails, the client gets 502.
    let untrusted = TapUnderTest::start_for(&infra.brokers, &upstream, REDACTION, "").await;
    let id = unique("tls-untrusted");
    let response = reqwest::Client::new()
        .get(format!("{}/hello", untrusted.url))
        .header("x-request-id", &id)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    let event = response_event(&untrusted, &infra.brokers, &id).await;
    assert_eq!((event.status, event.error), (None, Some(ErrorKind::Connect)));

    // TLS on both sides at once.
    let both = format!("upstream_ca_file = \"{}\"\n{}", ca.ca_file.display(), tls_listener(&ca, ""));
    let end_to_end = TapUnderTest::start_for(&infra.brokers, &upstream, &both, "").await;
    let response = client(&ca, false).get(format!("{}/hello", end_to_end.url)).send().await.unwrap();
    assert_eq!((response.version(), response.text().await.unwrap().as_str()), (Version::HTTP_2, "secure hello"));

    for tap in [trusted, untrusted, end_to_end] {
        assert!(tap.stop().await);
    }
}

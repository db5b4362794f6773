//! The tap against a real broker and real HTTP: what reaches Kafka, what never does, and
//! what the client sees.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use bytes::Bytes;
use http::StatusCode;
use rdkafka::Message;
use rdkafka::message::OwnedMessage;
use sha2::{Digest, Sha256};
use shadowdiff_core::redact::Sealer;
use shadowdiff_core::{ErrorKind, EventCodec, RequestEvent, ResponseEvent};
use shadowdiff_tests::eventually;
use shadowdiff_tests::infra::Infra;
use shadowdiff_tests::kafka::read_until;
use shadowdiff_tests::ports::ClosedPort;
use shadowdiff_tests::tap::TapUnderTest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

const DEADLINE: Duration = Duration::from_secs(30);
const HMAC_KEY: &str = "tap-test-hmac-key-0123456789";
// Varied bytes: a key of one repeated byte is refused as weak.
const SEAL_KEY: [u8; 32] = *b"tap-test-seal-key-0123456789abcd";

async fn backend() -> SocketAddr {
    let app = Router::new()
        .route("/echo", post(|request: Request| async move { Response::new(request.into_body()) }))
        .route(
            "/account",
            get(|| async {
                (
                    [("set-cookie", "session=SECRET-SET-COOKIE"), ("content-type", "application/json")],
                    r#"{"user":"ann","password":"SECRET-RESPONSE-PASSWORD"}"#,
                )
            }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(3)).await;
                "late"
            }),
        )
        .route("/upgrade", get(upgrade_echo))
        .route("/host", get(|request: Request| async move { request.headers()["host"].as_bytes().to_vec() }));
    shadowdiff_tests::serve(app).await
}

/// Answers an `Upgrade: echo` handshake, then echoes bytes on the upgraded connection.
async fn upgrade_echo(mut request: Request) -> Response {
    let upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        let mut io = hyper_util::rt::TokioIo::new(upgrade.await.unwrap());
        let mut buf = [0; 4];
        io.read_exact(&mut buf).await.unwrap();
        io.write_all(&buf).await.unwrap();
    });
    (StatusCode::SWITCHING_PROTOCOLS, [("connection", "upgrade"), ("upgrade", "echo")]).into_response()
}

fn seal_key_b64() -> String {
    base64::engine::general_purpose::STANDARD.encode(SEAL_KEY)
}

async fn tap(infra: &Infra, upstream: SocketAddr, tap_extra: &str) -> TapUnderTest {
    let redaction = format!(
        "[tap.redaction]\nhmac_key = \"{HMAC_KEY}\"\nquery_params = [\"token\"]\njson_paths = [\"password\"]\n\
         sealed_headers = [\"authorization\"]\nseal_key = \"{}\"\n",
        seal_key_b64()
    );
    TapUnderTest::start(&infra.brokers, upstream, &format!("{tap_extra}\n{redaction}"), "").await
}

fn with_key<'a>(messages: &'a [OwnedMessage], id: &str) -> Vec<&'a OwnedMessage> {
    messages.iter().filter(|m| m.key() == Some(id.as_bytes())).collect()
}

async fn events_for(tap: &TapUnderTest, brokers: &str, id: &str) -> (RequestEvent, ResponseEvent) {
    events_in((&tap.requests, &tap.responses), brokers, id).await
}

async fn events_in((requests, responses): (&str, &str), brokers: &str, id: &str) -> (RequestEvent, ResponseEvent) {
    let codec = EventCodec::new().unwrap();
    let has = |ms: &[OwnedMessage]| !with_key(ms, id).is_empty();
    let requests = read_until(brokers, requests, DEADLINE, has).await;
    let responses = read_until(brokers, responses, DEADLINE, has).await;
    let request = codec.decode(with_key(&requests, id)[0].payload().unwrap()).unwrap();
    let response = codec.decode(with_key(&responses, id)[0].payload().unwrap()).unwrap();
    (request, response)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_carry_the_key_fields_cap_and_hash() {
    let infra = Infra::get().await;
    let tap = tap(&infra, backend().await, "capture_max_body_bytes = 16").await;
    let body: Vec<u8> = (0..100u8).collect();
    let response = reqwest::Client::new()
        .post(format!("{}/echo?page=2", tap.url))
        .header("x-request-id", "evt-1")
        .header("content-type", "application/octet-stream")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "evt-1");
    assert_eq!(response.bytes().await.unwrap(), Bytes::from(body.clone()), "the client gets the upstream's bytes");

    let (request, response) = events_for(&tap, &infra.brokers, "evt-1").await;
    assert_eq!((request.method.as_str(), request.path.as_str()), ("POST", "/echo"));
    assert_eq!(request.query.as_deref(), Some("page=2"));
    assert_eq!(request.route_template.as_deref(), Some("/echo"));
    assert_eq!(request.tap_id, "tap-test");
    assert!(request.authority.starts_with("127.0.0.1:"), "{}", request.authority);
    assert!(request.headers.iter().any(|h| h.name == "x-request-id" && h.value == b"evt-1"));
    let sha: Vec<u8> = Sha256::digest(&body).to_vec();
    for (captured, side) in [(&request.body, "request"), (&response.body, "response")] {
        assert_eq!(captured.bytes, body[..16], "{side} capture is the first 16 bytes");
        assert_eq!((captured.length, captured.truncated), (100, true), "{side}");
        assert_eq!(captured.sha256, sha, "{side} hash is of the whole body");
    }
    assert_eq!(response.status, Some(200));
    assert_eq!(response.error, None);
    assert!(response.latency_us > 0);
    tap.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_refuses_new_connections_and_drains_and_publishes_those_in_flight() {
    let infra = Infra::get().await;
    // A backend whose `/slow` answers only when the test releases it, and says when a
    // request has reached it: the request is in flight for exactly as long as the test needs.
    let release = Arc::new(Notify::new());
    let (arrived_tx, mut arrived) = tokio::sync::mpsc::unbounded_channel();
    let app = Router::new().route(
        "/slow",
        get({
            let release = release.clone();
            move || {
                let (release, arrived) = (release.clone(), arrived_tx.clone());
                async move {
                    let _ = arrived.send(());
                    release.notified().await;
                    "late"
                }
            }
        }),
    );
    let upstream = shadowdiff_tests::serve(app).await;

    let tap = tap(&infra, upstream, "workers = 2").await;
    let (url, requests, responses) = (tap.url.clone(), tap.requests.clone(), tap.responses.clone());
    let slow = format!("{url}/slow");
    let in_flight = tokio::spawn(async move {
        let response = reqwest::Client::new().get(slow).header("x-request-id", "drain-1").send().await.unwrap();
        (response.status(), response.text().await.unwrap())
    });
    tokio::time::timeout(DEADLINE, arrived.recv()).await.expect("the request reaches the backend").unwrap();
    let stopping = tokio::spawn(tap.stop());
    eventually("the stopping tap to refuse new connections", DEADLINE, || async {
        match reqwest::get(format!("{url}/other")).await {
            Err(_) => Ok(()),
            Ok(response) => Err(format!("a new connection was still served: {}", response.status())),
        }
    })
    .await;
    assert!(!in_flight.is_finished(), "the request is still in flight while the tap stops");
    release.notify_one();
    assert_eq!(in_flight.await.unwrap(), (StatusCode::OK, "late".to_owned()), "the request in flight finishes");
    assert!(stopping.await.unwrap(), "the tap stops once it has drained");
    let (request, response) = events_in((&requests, &responses), &infra.brokers, "drain-1").await;
    assert_eq!((request.path.as_str(), response.status), ("/slow", Some(200)), "flushed before stopping");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_kafka_in_clear() {
    let infra = Infra::get().await;
    let tap = tap(&infra, backend().await, "").await;
    let response = reqwest::Client::new()
        .get(format!("{}/account?token=SECRET-QUERY-TOKEN&page=1", tap.url))
        .header("x-request-id", "secret-1")
        .header("authorization", "Bearer SECRET-AUTHORIZATION")
        .header("cookie", "sid=SECRET-COOKIE")
        .header("x-api-key", "SECRET-API-KEY")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["set-cookie"], "session=SECRET-SET-COOKIE", "the client still gets its cookie");
    assert!(response.text().await.unwrap().contains("SECRET-RESPONSE-PASSWORD"));

    let (request, _) = events_for(&tap, &infra.brokers, "secret-1").await;
    let has = |ms: &[OwnedMessage]| !with_key(ms, "secret-1").is_empty();
    let mut raw = Vec::new();
    for topic in [&tap.requests, &tap.responses] {
        let messages = read_until(&infra.brokers, topic, DEADLINE, has).await;
        raw.extend(with_key(&messages, "secret-1").into_iter().map(|m| m.payload().unwrap().to_vec()));
    }
    assert_eq!(raw.len(), 2);
    for secret in [
        "SECRET-QUERY-TOKEN",
        "SECRET-AUTHORIZATION",
        "SECRET-COOKIE",
        "SECRET-API-KEY",
        "SECRET-SET-COOKIE",
        "SECRET-RESPONSE-PASSWORD",
    ] {
        for payload in &raw {
            assert!(!payload.windows(secret.len()).any(|w| w == secret.as_bytes()), "{secret} reached Kafka in clear");
        }
    }
    // The sealed copy of Authorization opens, with the mirror's key, to the clear value.
    let sealed = request.headers.iter().find(|h| h.name == "x-shadowdiff-sealed-authorization").unwrap();
    let opened = Sealer::new(&SEAL_KEY).unwrap().open("authorization", &sealed.value).unwrap();
    assert_eq!(opened, b"Bearer SECRET-AUTHORIZATION");
    assert!(request.query.unwrap().ends_with("&page=1"), "other parameters stay readable");
    tap.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_10_mib_streamed_body_passes_intact_and_its_capture_is_flagged() {
    let infra = Infra::get().await;
    let tap = tap(&infra, backend().await, "").await;
    const CHUNK: usize = 64 * 1024;
    const CHUNKS: usize = 160; // 10 MiB
    let chunk: Bytes = (0..CHUNK).map(|i| (i % 251) as u8).collect::<Vec<_>>().into();
    let mut expected = Sha256::new();
    for _ in 0..CHUNKS {
        expected.update(&chunk);
    }
    let expected = expected.finalize().to_vec();
    let stream = futures_util::stream::iter((0..CHUNKS).map(move |_| Ok::<_, std::io::Error>(chunk.clone())));
    let response = reqwest::Client::new()
        .post(format!("{}/echo", tap.url))
        .header("x-request-id", "big-1")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let echoed = response.bytes().await.unwrap();
    assert_eq!(echoed.len(), CHUNK * CHUNKS);
    assert_eq!(Sha256::digest(&echoed).to_vec(), expected, "the body passed through intact");

    let (request, response) = events_for(&tap, &infra.brokers, "big-1").await;
    for captured in [&request.body, &response.body] {
        assert_eq!(captured.bytes.len(), 256 * 1024, "capped at the default 256 KiB");
        assert_eq!((captured.length, captured.truncated), ((CHUNK * CHUNKS) as i64, true));
        assert_eq!(captured.sha256, expected);
    }
    tap.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_failures_are_502_and_504_and_still_published() {
    let infra = Infra::get().await;
    // Nothing listens there, and nothing can start to while the test holds it.
    let closed = ClosedPort::new();
    let dead = tap(&infra, closed.addr(), "").await;
    let response =
        reqwest::Client::new().get(format!("{}/x", dead.url)).header("x-request-id", "dead-1").send().await.unwrap();
    assert_eq!(response.status(), 502);
    assert_eq!(response.headers()["x-request-id"], "dead-1");
    let (_, event) = events_for(&dead, &infra.brokers, "dead-1").await;
    assert_eq!((event.status, event.error), (None, Some(ErrorKind::Connect)));
    dead.stop().await;

    let slow = tap(&infra, backend().await, "upstream_timeout_ms = 300").await;
    let response =
        reqwest::Client::new().get(format!("{}/slow", slow.url)).header("x-request-id", "slow-1").send().await.unwrap();
    assert_eq!(response.status(), 504);
    let (_, event) = events_for(&slow, &infra.brokers, "slow-1").await;
    assert_eq!((event.status, event.error), (None, Some(ErrorKind::Timeout)));
    slow.stop().await;
}

/// Sends raw bytes to `addr` and returns the status line of the answer.
async fn raw_status_line(addr: &str, request: &[u8]) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).lines().next().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrades_pass_through_and_malformed_requests_get_400() {
    let infra = Infra::get().await;
    let upstream = backend().await;
    let tap = tap(&infra, upstream, "").await;
    let addr = tap.url.trim_start_matches("http://").to_owned();

    // `Host` is hop-by-hop here: the upstream is sent its own, as nginx's default does.
    let host = reqwest::Client::new().get(format!("{}/host", tap.url)).header("host", "public.example").send();
    assert_eq!(host.await.unwrap().text().await.unwrap(), upstream.to_string());

    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    stream
        .write_all(b"GET /upgrade HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
        .await
        .unwrap();
    let mut head = vec![0; 1024];
    let n = stream.read(&mut head).await.unwrap();
    let head = String::from_utf8_lossy(&head[..n]).to_string();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    stream.write_all(b"ping").await.unwrap();
    let mut echoed = [0; 4];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut echoed)).await.unwrap().unwrap();
    assert_eq!(&echoed, b"ping", "bytes flow both ways after the upgrade");

    // What a standard proxy (nginx, Envoy) answers to broken requests: 400, then close.
    for broken in [
        &b"NOT A REQUEST LINE\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: x\r\nBroken header line\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    ] {
        let status = raw_status_line(&addr, broken).await;
        assert!(status.starts_with("HTTP/1.1 400"), "{:?} got {status:?}", String::from_utf8_lossy(broken));
    }
    tap.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_clients_are_served() {
    let infra = Infra::get().await;
    let tap = tap(&infra, backend().await, "").await;
    let client = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    let response =
        client.post(format!("{}/echo", tap.url)).header("x-request-id", "h2-1").body("over h2c").send().await.unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(response.text().await.unwrap(), "over h2c");
    let (request, _) = events_for(&tap, &infra.brokers, "h2-1").await;
    assert_eq!(request.body.bytes, b"over h2c");
    tap.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_publishes_only_mirrored_requests_under_its_role() {
    let infra = Infra::get().await;
    let mode = "[tap.mode]\nkind = \"sidecar\"\nrole = \"candidate\"\ndeployment = \"v2\"";
    let tap = tap(&infra, backend().await, mode).await;
    let client = reqwest::Client::new();
    for (id, mirrored) in [("side-0", false), ("side-1", true)] {
        let mut request = client.post(format!("{}/echo", tap.url)).header("x-request-id", id).body(id);
        if mirrored {
            request = request.header("x-shadow-role", "candidate").header("x-shadow-deployment", "v2");
        }
        assert_eq!(request.send().await.unwrap().text().await.unwrap(), id);
    }
    let codec = EventCodec::new().unwrap();
    let responses = read_until(&infra.brokers, &tap.responses, DEADLINE, |ms| !with_key(ms, "side-1").is_empty()).await;
    assert!(with_key(&responses, "side-0").is_empty(), "traffic that was not mirrored is not published");
    let event: ResponseEvent = codec.decode(with_key(&responses, "side-1")[0].payload().unwrap()).unwrap();
    assert_eq!(
        (event.role, event.deployment.as_str(), event.status),
        (shadowdiff_core::Role::Candidate, "v2", Some(200))
    );
    assert_eq!(event.body.bytes, b"side-1");
    tap.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_egress_tap_publishes_outbound_calls_linked_to_their_request() {
    let infra = Infra::get().await;
    let upstream = backend().await;
    let mode = "[tap.mode]\nkind = \"egress\"\nrole = \"candidate\"\ndeployment = \"v2\"";
    // The upstream given here is ignored in egress mode: each call names its own.
    let tap = tap(&infra, upstream, mode).await;
    let client = reqwest::Client::builder().proxy(reqwest::Proxy::http(&tap.url).unwrap()).build().unwrap();
    let response = client
        .post(format!("http://{upstream}/echo?via=proxy"))
        .header("x-request-id", "orig-7")
        .body("outbound payload")
        .send()
        .await
        .unwrap();
    assert_eq!(response.text().await.unwrap(), "outbound payload");
    let unlinked = client.post(format!("http://{upstream}/echo")).body("no id").send().await.unwrap();
    assert_eq!(unlinked.status(), 200);

    let outbound = format!("{}.outbound", tap.requests.trim_end_matches(".requests"));
    let calls = read_until(&infra.brokers, &outbound, DEADLINE, |ms| ms.len() >= 2).await;
    let codec = EventCodec::new().unwrap();
    let calls: Vec<shadowdiff_core::OutboundCallEvent> =
        calls.iter().map(|m| codec.decode(m.payload().unwrap()).unwrap()).collect();
    let linked = calls.iter().find(|c| c.linked).expect("the call that carried a request id");
    assert_eq!(linked.request_id, "orig-7");
    assert_eq!((linked.role, linked.deployment.as_str()), (shadowdiff_core::Role::Candidate, "v2"));
    assert_eq!(linked.request.path, "/echo");
    assert_eq!(linked.request.query.as_deref(), Some("via=proxy"));
    assert_eq!(linked.request.authority, upstream.to_string());
    assert_eq!(linked.request.body.bytes, b"outbound payload");
    assert_eq!((linked.response.status, linked.response.body.bytes.as_slice()), (Some(200), &b"outbound payload"[..]));
    let unlinked = calls.iter().find(|c| !c.linked).expect("the call without a request id");
    assert_ne!(unlinked.request_id, "orig-7");
    tap.stop().await;
}

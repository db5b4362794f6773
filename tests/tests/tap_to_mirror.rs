//! A real tap publishing to a real mirror: what a shadow receives of a client's request.
//! A sealed `Authorization` reaches the shadow decrypted and never crosses Kafka in clear;
//! a request whose body the tap cut at its capture cap is never replayed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use base64::Engine;
use rdkafka::Message;
use rdkafka::message::OwnedMessage;
use shadowdiff_core::Role;
use shadowdiff_tests::eventually;
use shadowdiff_tests::infra::Infra;
use shadowdiff_tests::kafka::{read_until, responses_until};
use shadowdiff_tests::mirror::{MirrorTopics, MirrorUnderTest, Received, recording_backend};
use shadowdiff_tests::pipeline::TEST_HMAC_KEY;
use shadowdiff_tests::tap::TapUnderTest;

const DEADLINE: Duration = Duration::from_secs(60);
/// Shared by the tap and the mirror only (varied bytes: a weak key is refused).
const SEAL_KEY: [u8; 32] = *b"e2e-seal-key-for-tap-and-mirror!";
/// The tap captures this many body bytes; a longer body's capture is truncated.
const CAPTURE_CAP: usize = 64;
const SKIPPED: &str = "shadowdiff_mirror_skipped_total";

/// A tap in front of a plain primary and one mirror replica on the tap's topics, replaying
/// every request (POST opted in) to a recording shadow.
struct Setup {
    tap: TapUnderTest,
    mirror: MirrorUnderTest,
    shadow: std::sync::Arc<std::sync::Mutex<Vec<Received>>>,
}

async fn primary() -> SocketAddr {
    let app = Router::new()
        .route("/items/{id}", get(|| async { ([("content-type", "application/json")], r#"{"id":1}"#) }))
        .route("/upload", post(|| async { "stored" }));
    shadowdiff_tests::serve(app).await
}

async fn setup(infra: &Infra) -> Setup {
    let seal_key = base64::engine::general_purpose::STANDARD.encode(SEAL_KEY);
    let tap = TapUnderTest::start(
        &infra.brokers,
        primary().await,
        &format!(
            "capture_max_body_bytes = {CAPTURE_CAP}\n\
             [tap.redaction]\nhmac_key = \"{TEST_HMAC_KEY}\"\nsealed_headers = [\"authorization\"]\nseal_key = \"{seal_key}\"\n"
        ),
        "",
    )
    .await;
    let (shadow_addr, shadow) = recording_backend(Duration::ZERO).await;
    let topics = MirrorTopics::on(&tap.requests, &tap.responses);
    let profile = format!(
        "[[mirror.profiles]]\nid = \"tapped\"\n\
         unsafe_methods = {{ methods = [\"POST\"], reason = \"the test shadow stores nothing\" }}\n\
         [[mirror.profiles.targets]]\nname = \"shadow\"\nrole = \"candidate\"\nbase_url = \"http://{shadow_addr}\"\n"
    );
    let mirror =
        MirrorUnderTest::start_full(&infra.brokers, &topics, "", &format!("seal_key = \"{seal_key}\""), &profile).await;
    Setup { tap, mirror, shadow }
}

fn keyed<'a>(messages: &'a [OwnedMessage], id: &str) -> Vec<&'a OwnedMessage> {
    messages.iter().filter(|m| m.key() == Some(id.as_bytes())).collect()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_authorization_reaches_the_shadow_decrypted_and_never_crosses_kafka_in_clear() {
    let infra = Infra::get().await;
    let Setup { tap, mirror, shadow } = setup(&infra).await;
    let authorization = "Bearer SEALED-CANARY-7f3a91";
    let cookie = "sid=COOKIE-CANARY-52c0de";
    let response = reqwest::Client::new()
        .get(format!("{}/items/1", tap.url))
        .header("x-request-id", "sealed-1")
        .header("authorization", authorization)
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    // The shadow's replay carries the clear Authorization, opened by the mirror; the
    // Cookie, redacted but not sealed, is left out rather than sent as its digest.
    let replay = eventually("the replay to reach the shadow", DEADLINE, || async {
        let log = shadow.lock().unwrap();
        let found = log.iter().find(|r| r.headers.get("x-request-id").is_some_and(|v| v == "sealed-1"));
        found.cloned().ok_or_else(|| format!("{} replays, none of sealed-1", log.len()))
    })
    .await;
    assert_eq!(replay.headers["authorization"], authorization, "{:?}", replay.headers);
    assert!(replay.headers.get("cookie").is_none(), "a digest is never sent: {:?}", replay.headers);
    assert!(
        !replay.headers.keys().any(|name| name.as_str().starts_with("x-shadowdiff-sealed")),
        "the sealed copy is not forwarded: {:?}",
        replay.headers
    );
    assert_eq!(replay.headers["x-shadow-role"], "candidate");

    // Neither secret is in clear in any byte of either topic: the tap's request and
    // primary response, the mirror's shadow response.
    let responses = read_until(&infra.brokers, &tap.responses, DEADLINE, |ms| keyed(ms, "sealed-1").len() >= 2).await;
    let requests = read_until(&infra.brokers, &tap.requests, DEADLINE, |ms| !keyed(ms, "sealed-1").is_empty()).await;
    let raw: Vec<&[u8]> = keyed(&requests, "sealed-1")
        .into_iter()
        .chain(keyed(&responses, "sealed-1"))
        .map(|m| m.payload().unwrap())
        .collect();
    assert_eq!(raw.len(), 3, "a request, the primary's response and the shadow's");
    for secret in ["SEALED-CANARY-7f3a91", "COOKIE-CANARY-52c0de"] {
        for payload in &raw {
            assert!(!contains(payload, secret), "{secret} crossed Kafka in clear");
        }
    }
    assert!(contains(raw[0], "x-shadowdiff-sealed-authorization"), "the request event carries the sealed copy");
    mirror.stop().await;
    tap.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_body_the_tap_truncated_is_never_replayed() {
    let infra = Infra::get().await;
    let Setup { tap, mirror, shadow } = setup(&infra).await;
    let client = reqwest::Client::new();
    let skipped_before = mirror.metric(SKIPPED, "reason=\"body_truncated\"").await;
    for (id, length) in [("cut-1", CAPTURE_CAP * 4), ("whole-1", CAPTURE_CAP / 2)] {
        let response = client
            .post(format!("{}/upload", tap.url))
            .header("x-request-id", id)
            .header("content-type", "application/octet-stream")
            .body(vec![b'x'; length])
            .send()
            .await
            .unwrap();
        assert_eq!(response.text().await.unwrap(), "stored", "{id}: the client is answered either way");
    }

    // The mirror read the cut request and skipped it, counted; it replayed the whole one.
    eventually("the mirror to skip the truncated request", DEADLINE, || async {
        let skipped = mirror.metric(SKIPPED, "reason=\"body_truncated\"").await - skipped_before;
        if skipped >= 1.0 { Ok(()) } else { Err(format!("{skipped} skipped as body_truncated")) }
    })
    .await;
    let events = responses_until(&infra.brokers, &tap.responses, DEADLINE, |events| {
        events.iter().any(|e| e.request_id == "whole-1" && e.role == Role::Candidate)
    })
    .await;
    let replayed: Vec<String> = shadow
        .lock()
        .unwrap()
        .iter()
        .filter_map(|r| r.headers.get("x-request-id").map(|v| v.to_str().unwrap().to_owned()))
        .collect();
    assert_eq!(replayed, ["whole-1"], "only the request the tap captured whole is replayed");
    assert!(
        !events.iter().any(|e| e.request_id == "cut-1" && e.role != Role::Primary),
        "no shadow leg is published for the cut request"
    );
    assert_eq!(mirror.metric(SKIPPED, "reason=\"body_truncated\"").await - skipped_before, 1.0);
    mirror.stop().await;
    tap.stop().await;
}

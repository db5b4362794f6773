//! The tap's promise: a broker outage never reaches the client, neither in what it answers
//! nor in how fast. Runs its own broker so it can stop and restart it, and its own test
//! binary so the drop counter is its own.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use std::collections::BTreeSet;

use rdkafka::Message;
use rdkafka::consumer::Consumer as _;
use shadowdiff_runtime::kafka::Consumer;
use shadowdiff_runtime::kafka::{KafkaConfig, TopicsConfig};
use shadowdiff_tests::broker::PrivateBroker;
use shadowdiff_tests::eventually;
use shadowdiff_tests::kafka::read_until;
use shadowdiff_tests::tap::TapUnderTest;

const BODY: &str = r#"{"id":1,"name":"exact bytes"}"#;
const DROPPED: &str = "shadowdiff_tap_events_dropped_total";
const QUEUE_DEPTH: &str = "shadowdiff_tap_producer_queue_depth";

/// Requests timed per phase: enough for a steady median and 90th percentile.
const TIMED: usize = 200;
/// How much slower the client path may be with the broker down than up, at the median and
/// the 90th percentile of the same run. A tap that waited on the producer would wait out
/// the message timeout (8 s here) or at least a reconnect, thousands of times slower.
const MAX_SLOWDOWN: f64 = 3.0;

/// Sends one GET per id on `client`'s keep-alive connection and checks each answer is the
/// primary's exact bytes; returns how long each took, from send to the last body byte.
async fn send_timed(tap: &TapUnderTest, client: &reqwest::Client, ids: impl Iterator<Item = String>) -> Vec<Duration> {
    let mut took = Vec::new();
    for id in ids {
        let started = Instant::now();
        let response = client.get(format!("{}/item", tap.url)).header("x-request-id", &id).send().await.unwrap();
        let status = response.status();
        let body = response.text().await.unwrap();
        took.push(started.elapsed());
        assert_eq!(status, 200, "{id}");
        assert_eq!(body, BODY, "{id}: the primary's exact bytes");
    }
    took
}

async fn send(tap: &TapUnderTest, ids: impl Iterator<Item = String>) {
    send_timed(tap, &reqwest::Client::new(), ids).await;
}

/// The `q`-quantile of `took` (nearest rank).
fn quantile(took: &[Duration], q: f64) -> Duration {
    let mut sorted = took.to_vec();
    sorted.sort_unstable();
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
    let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

async fn arrive(broker: &PrivateBroker, topic: &str, ids: &[String]) {
    read_until(&broker.brokers(), topic, Duration::from_secs(60), |messages| {
        ids.iter().all(|id| messages.iter().any(|m| m.key() == Some(id.as_bytes())))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outage_never_reaches_the_client_and_publishing_resumes() {
    let app = Router::new().route("/item", get(|| async { ([("content-type", "application/json")], BODY) }));
    let upstream = shadowdiff_tests::serve(app).await;

    let mut broker = PrivateBroker::start().await;
    let tap = TapUnderTest::start(
        &broker.brokers(),
        upstream,
        "[tap.redaction]\nhmac_key = \"outage-test-hmac-key-0123\"",
        "message_timeout_ms = 8000\nproperties = { \"reconnect.backoff.max.ms\" = \"500\" }",
    )
    .await;

    // One client, one keep-alive connection, warmed up: both phases time the same path.
    let client = reqwest::Client::new();
    send_timed(&tap, &client, (0..20).map(|i| format!("warm-{i}"))).await;
    eventually("the tap to report the broker reachable", Duration::from_secs(30), || async {
        let (status, checks) = tap.healthz().await?;
        if status == 200 && checks["kafka"] == true { Ok(()) } else { Err(format!("/healthz {status} {checks}")) }
    })
    .await;
    let up = send_timed(&tap, &client, (0..TIMED).map(|i| format!("up-{i}"))).await;
    let before: Vec<String> = (0..TIMED).map(|i| format!("up-{i}")).collect();
    arrive(&broker, &tap.requests, &before).await;

    eprintln!("events arrived before the outage");
    broker.stop();
    let dropped_at_outage = tap.counter(DROPPED, "").await;
    let down = send_timed(&tap, &client, (0..TIMED).map(|i| format!("during-{i}"))).await;
    let (up_p50, up_p90, down_p50, down_p90) =
        (quantile(&up, 0.5), quantile(&up, 0.9), quantile(&down, 0.5), quantile(&down, 0.9));
    eprintln!(
        "client latency, broker up: p50 {up_p50:?}, p90 {up_p90:?}; broker down: p50 {down_p50:?}, p90 {down_p90:?}"
    );
    assert!(
        down_p50.as_secs_f64() <= MAX_SLOWDOWN * up_p50.as_secs_f64()
            && down_p90.as_secs_f64() <= MAX_SLOWDOWN * up_p90.as_secs_f64(),
        "the outage slowed the client path more than {MAX_SLOWDOWN}x: p50 {up_p50:?} -> {down_p50:?}, p90 {up_p90:?} -> {down_p90:?}"
    );
    // They wait in the producer until their timeout, and the queue-depth gauge shows them.
    let events = 2.0 * TIMED as f64;
    eventually("the queue depth to show the waiting events", Duration::from_secs(6), || async {
        let depth = tap.counter(QUEUE_DEPTH, "").await;
        if depth >= events { Ok(depth) } else { Err(format!("depth {depth}")) }
    })
    .await;
    // The readiness probe says the broker is gone; proxying went on regardless.
    eventually("/healthz to report the broker unreachable", Duration::from_secs(30), || async {
        let (status, checks) = tap.healthz().await?;
        if status == 503 && checks["kafka"] == false { Ok(()) } else { Err(format!("/healthz {status} {checks}")) }
    })
    .await;
    // Each exchange had a request and a response event; all time out and are counted, none
    // is retried into a client's way.
    eventually("the outage's events to be counted as dropped", Duration::from_secs(30), || async {
        let dropped = tap.counter(DROPPED, "reason=\"delivery\"").await - dropped_at_outage;
        if dropped >= events { Ok(dropped) } else { Err(format!("{dropped} dropped")) }
    })
    .await;

    eprintln!("drops counted; restarting the broker");
    broker.restart().await;
    let topics =
        TopicsConfig { requests: tap.requests.clone(), responses: tap.responses.clone(), ..TopicsConfig::default() };
    KafkaConfig { brokers: broker.brokers(), ..KafkaConfig::default() }.ensure_topics(&topics).await.unwrap();
    // The producer reconnects on its own; until it has, events may still time out. Send a
    // fresh batch every round until one arrives whole on both topics.
    let consumer: Consumer =
        KafkaConfig { brokers: broker.brokers(), ..KafkaConfig::default() }.consumer("outage-reader").unwrap();
    consumer.subscribe(&[tap.requests.as_str(), tap.responses.as_str()]).unwrap();
    let mut seen: BTreeSet<(String, String)> = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let mut round = 0;
    let resumed = loop {
        assert!(tokio::time::Instant::now() < deadline, "publishing did not resume; seen {seen:?}");
        let batch: Vec<String> = (0..5).map(|i| format!("after-{round}-{i}")).collect();
        send(&tap, batch.iter().cloned()).await;
        let until = tokio::time::Instant::now() + Duration::from_secs(5);
        while let Ok(Ok(message)) = tokio::time::timeout_at(until, consumer.recv()).await {
            let key = String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned();
            seen.insert((message.topic().to_owned(), key));
        }
        let whole = batch.iter().all(|id| {
            seen.contains(&(tap.requests.clone(), id.clone())) && seen.contains(&(tap.responses.clone(), id.clone()))
        });
        if whole {
            break round;
        }
        round += 1;
    };
    eprintln!("publishing resumed in round {resumed}");
    eventually("/healthz to report the broker reachable again", Duration::from_secs(30), || async {
        let (status, checks) = tap.healthz().await?;
        if status == 200 && checks["kafka"] == true { Ok(()) } else { Err(format!("/healthz {status} {checks}")) }
    })
    .await;
    tap.stop().await;
}

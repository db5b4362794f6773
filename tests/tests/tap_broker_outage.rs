//! The tap's promise: a broker outage never reaches the client. Runs its own broker so it
//! can stop and restart it, and its own test binary so the drop counter is its own.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

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

async fn send(tap: &TapUnderTest, ids: impl Iterator<Item = String>) {
    let client = reqwest::Client::new();
    for id in ids {
        let response = client.get(format!("{}/item", tap.url)).header("x-request-id", &id).send().await.unwrap();
        assert_eq!(response.status(), 200, "{id}");
        assert_eq!(response.text().await.unwrap(), BODY, "{id}: the primary's exact bytes");
    }
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
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let mut broker = PrivateBroker::start().await;
    let tap = TapUnderTest::start(
        &broker.brokers(),
        upstream,
        "[tap.redaction]\nhmac_key = \"outage-test-hmac-key-0123\"",
        "message_timeout_ms = 8000\nproperties = { \"reconnect.backoff.max.ms\" = \"500\" }",
    )
    .await;

    let before: Vec<String> = (0..5).map(|i| format!("before-{i}")).collect();
    send(&tap, before.iter().cloned()).await;
    arrive(&broker, &tap.requests, &before).await;

    eprintln!("events arrived before the outage");
    broker.stop();
    let dropped_at_outage = tap.counter(DROPPED, "").await;
    send(&tap, (0..50).map(|i| format!("during-{i}"))).await;
    // They wait in the producer until their timeout, and the queue-depth gauge shows them.
    eventually("the queue depth to show the waiting events", Duration::from_secs(6), || async {
        let depth = tap.counter(QUEUE_DEPTH, "").await;
        if depth >= 100.0 { Ok(depth) } else { Err(format!("depth {depth}")) }
    })
    .await;
    // Each of the 50 exchanges had a request and a response event; all 100 time out and
    // are counted, none is retried into a client's way.
    eventually("the outage's events to be counted as dropped", Duration::from_secs(30), || async {
        let dropped = tap.counter(DROPPED, "reason=\"delivery\"").await - dropped_at_outage;
        if dropped >= 100.0 { Ok(dropped) } else { Err(format!("{dropped} dropped")) }
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
    tap.stop().await;
}

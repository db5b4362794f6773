//! The tap never waits for room in its producer's queue: when the queue is full, the
//! exchange's events are dropped and counted as `queue_full`, and the client is answered as
//! always. Runs its own broker (so it can stop it and keep every event queued) and its own
//! test binary (so the drop counter is its own).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use rdkafka::Message;
use shadowdiff_tests::broker::PrivateBroker;
use shadowdiff_tests::eventually;
use shadowdiff_tests::kafka::read_until;
use shadowdiff_tests::tap::TapUnderTest;

const BODY: &str = r#"{"id":1,"name":"exact bytes"}"#;
const DROPPED: &str = "shadowdiff_tap_events_dropped_total";
/// librdkafka's bound on messages waiting in the producer (`queue.buffering.max.messages`).
const QUEUE: u64 = 10;
/// Exchanges sent while the broker is down: two events each, far more than the queue holds.
const SENT: u64 = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_producer_queue_drops_and_counts_events_and_never_holds_up_the_client() {
    let app = Router::new().route("/item", get(|| async { ([("content-type", "application/json")], BODY) }));
    let upstream = shadowdiff_tests::serve(app).await;

    let mut broker = PrivateBroker::start().await;
    // Nothing times out during the test: every event the queue takes stays in it.
    let tap = TapUnderTest::start(
        &broker.brokers(),
        upstream,
        "[tap.redaction]\nhmac_key = \"queue-test-hmac-key-0123\"",
        &format!("message_timeout_ms = 120000\nproperties = {{ \"queue.buffering.max.messages\" = \"{QUEUE}\" }}"),
    )
    .await;
    let client = reqwest::Client::new();
    let get = |id: String| {
        let request = client.get(format!("{}/item", tap.url)).header("x-request-id", &id);
        async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 200, "{id}");
            assert_eq!(response.text().await.unwrap(), BODY, "{id}: the primary's exact bytes");
        }
    };

    // With the broker up, the queue empties as events are delivered.
    get("warm".to_owned()).await;
    read_until(&broker.brokers(), &tap.responses, Duration::from_secs(60), |ms| {
        ms.iter().any(|m| m.key() == Some(&b"warm"[..]))
    })
    .await;
    let dropped_before = tap.counter(DROPPED, "").await;
    broker.stop();

    // Every request is answered; the queue takes the first QUEUE events and no more.
    for i in 0..SENT {
        get(format!("full-{i}")).await;
    }
    let expected = (2 * SENT - QUEUE) as f64;
    let dropped =
        eventually("the events beyond the queue to be dropped as queue_full", Duration::from_secs(30), || async {
            let full = tap.counter(DROPPED, "reason=\"queue_full\"").await;
            if full >= expected { Ok(full) } else { Err(format!("{full} dropped as queue_full")) }
        })
        .await;
    assert_eq!(dropped, expected, "exactly the events the queue had no room for");
    let all = tap.counter(DROPPED, "").await - dropped_before;
    assert_eq!(all, expected, "no other drop: the queued events still wait for the broker");
    tap.stop().await;
}

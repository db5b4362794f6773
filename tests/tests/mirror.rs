//! Mirror replicas against the real broker and real HTTP targets: method safety, TTL,
//! live profile changes across replicas, injected faults (and that they never move the
//! circuit breaker), a dead target's circuit, and the rate limit.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rdkafka::Message as _;
use shadowdiff_core::{ErrorKind, ResponseEvent};
use shadowdiff_tests::auth::{READ_TOKEN, WRITE_TOKEN};
use shadowdiff_tests::eventually;
use shadowdiff_tests::infra::Infra;
use shadowdiff_tests::kafka::{read_until, responses_until};
use shadowdiff_tests::mirror::{MirrorTopics, MirrorUnderTest, publish, recording_backend, request_event};
use shadowdiff_tests::ports::ClosedPort;

const DEADLINE: Duration = Duration::from_secs(60);
/// Long enough that the live requests are replayed well before it ends, on a busy machine.
const TTL_SECS: u64 = 10;

fn profile(id: &str, target: std::net::SocketAddr, extra: &str) -> String {
    format!(
        "[[mirror.profiles]]\nid = \"{id}\"\nstage = \"10\"\n{extra}\n\
         [[mirror.profiles.targets]]\nname = \"v2\"\nrole = \"candidate\"\nbase_url = \"http://{target}\"\ntimeout_ms = 1000\n"
    )
}

/// The profiles a replica is applying, as its admin API lists them.
async fn listed(client: &reqwest::Client, replica: &MirrorUnderTest) -> Result<serde_json::Value, String> {
    let response = client
        .get(format!("{}/v1/profiles", replica.admin_url))
        .bearer_auth(READ_TOKEN)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    response.json().await.map_err(|e| e.to_string())
}

fn lists(listed: &serde_json::Value, id: &str) -> bool {
    listed.as_array().is_some_and(|l| l.iter().any(|p| p["id"] == id))
}

/// Publishes `n` reads of `/x` with ids `{prefix}-{i}` and waits for as many response events.
async fn replay_all(brokers: &str, topics: &MirrorTopics, prefix: &str, n: usize) -> Vec<ResponseEvent> {
    let requests: Vec<_> = (0..n).map(|i| request_event(&format!("{prefix}-{i}"), "GET", "/x")).collect();
    publish(brokers, &topics.requests, &requests).await;
    responses_until(brokers, &topics.responses, DEADLINE, |e| e.len() >= n).await
}

fn with_prefix<'a>(events: &'a [ResponseEvent], prefix: &str) -> Vec<&'a ResponseEvent> {
    events.iter().filter(|e| e.request_id.starts_with(prefix)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_is_replayed_only_with_an_opt_in_and_a_rewritten_idempotency_key() {
    let infra = Infra::get().await;
    let (backend, received) = recording_backend(Duration::ZERO).await;
    let topics = MirrorTopics::new();
    let profiles = format!(
        "{}{}",
        profile("reads", backend, "match = { routes = [\"/reads\"] }"),
        profile(
            "writes",
            backend,
            "match = { routes = [\"/orders\"] }\nunsafe_methods = { methods = [\"POST\"], reason = \"the candidate writes to a scratch database\" }"
        )
    );
    let mirror = MirrorUnderTest::start(&infra.brokers, &topics, &profiles).await;
    publish(
        &infra.brokers,
        &topics.requests,
        &[
            request_event("w-1", "POST", "/reads"),  // no opt-in on this route
            request_event("w-2", "POST", "/orders"), // opted in
            request_event("w-3", "GET", "/reads"),
        ],
    )
    .await;
    let events = responses_until(&infra.brokers, &topics.responses, DEADLINE, |e| e.len() >= 2).await;
    let ids: Vec<&str> = events.iter().map(|e| e.request_id.as_str()).collect();
    assert!(ids.contains(&"w-2") && ids.contains(&"w-3"), "{ids:?}");
    let log = received.lock().unwrap().clone();
    assert!(
        !log.iter().any(|r| r.method == "POST" && r.path == "/reads"),
        "a POST without opt-in never reaches a shadow"
    );
    let post = log.iter().find(|r| r.method == "POST").expect("the opted-in POST was replayed");
    assert_eq!(post.headers["idempotency-key"], "key-1.shadow.v2");
    assert_eq!(post.headers["x-shadow-role"], "candidate");
    assert_eq!(post.headers["x-request-id"], "w-2");
    let w2 = events.iter().find(|e| e.request_id == "w-2").unwrap();
    assert_eq!((w2.profile.as_deref(), w2.stage.as_deref()), (Some("writes"), Some("10")));
    mirror.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_change_live_across_replicas_and_expire_with_their_ttl() {
    let infra = Infra::get().await;
    let (backend, received) = recording_backend(Duration::ZERO).await;
    let topics = MirrorTopics::new();
    let a = MirrorUnderTest::start(&infra.brokers, &topics, "").await;
    let b = MirrorUnderTest::start(&infra.brokers, &topics, "").await;
    let client = reqwest::Client::new();

    let body = serde_json::json!({
        "id": "live",
        "ttl_secs": TTL_SECS,
        "targets": [{ "name": "v2", "role": "candidate", "base_url": format!("http://{backend}") }]
    });
    let created =
        client.post(format!("{}/v1/profiles", a.admin_url)).bearer_auth(WRITE_TOKEN).json(&body).send().await.unwrap();
    assert_eq!(created.status(), 202);
    let bad = client
        .post(format!("{}/v1/profiles", a.admin_url))
        .bearer_auth(WRITE_TOKEN)
        .json(&serde_json::json!({ "id": "x", "targets": [] }))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert!(bad.text().await.unwrap().contains("targets: 1 to 8 targets"));

    // The change made through replica A reaches replica B.
    eventually("replica B to apply the profile written through A", DEADLINE, || async {
        let listed = listed(&client, &b).await?;
        if lists(&listed, "live") { Ok(()) } else { Err(listed.to_string()) }
    })
    .await;
    let live: Vec<_> = (0..10).map(|i| request_event(&format!("live-{i}"), "GET", "/x")).collect();
    publish(&infra.brokers, &topics.requests, &live).await;
    responses_until(&infra.brokers, &topics.responses, DEADLINE, |e| with_prefix(e, "live-").len() == 10).await;

    // After the TTL, the profile stops matching on every replica: no more replays. Both
    // replicas say when it has expired (both judge by the expiry stamped when it was written).
    eventually("both replicas to list the profile as expired", DEADLINE, || async {
        for replica in [&a, &b] {
            let listed = listed(&client, replica).await?;
            let expired = listed.as_array().and_then(|l| l.iter().find(|p| p["id"] == "live")).map(|p| &p["expired"]);
            if expired != Some(&serde_json::Value::Bool(true)) {
                return Err(listed.to_string());
            }
        }
        Ok(())
    })
    .await;
    let before = received.lock().unwrap().len();
    let late: Vec<_> = (0..10).map(|i| request_event(&format!("late-{i}"), "GET", "/x")).collect();
    publish(&infra.brokers, &topics.requests, &late).await;
    // A marker profile proves the late requests were consumed before we look.
    let marker = serde_json::json!({ "id": "marker", "match": { "routes": ["/marker"] }, "targets": [{ "name": "m", "role": "candidate", "base_url": format!("http://{backend}") }] });
    client.post(format!("{}/v1/profiles", b.admin_url)).bearer_auth(WRITE_TOKEN).json(&marker).send().await.unwrap();
    eventually("both replicas to see the marker profile", DEADLINE, || async {
        for replica in [&a, &b] {
            let listed = listed(&client, replica).await?;
            if !lists(&listed, "marker") {
                return Err(listed.to_string());
            }
        }
        Ok(())
    })
    .await;
    // Each replica reads its partitions in order: once a marker of every partition is
    // replayed, every late request before it has been read and matched.
    let markers: Vec<_> = (0..4).map(|i| request_event(&format!("marker-{i}"), "GET", "/marker")).collect();
    publish(&infra.brokers, &topics.requests, &markers).await;
    let messages = read_until(&infra.brokers, &topics.responses, DEADLINE, |messages| {
        messages.iter().filter(|m| m.key().is_some_and(|k| k.starts_with(b"marker-"))).count() == 4
    })
    .await;
    let marked: BTreeSet<i32> = messages
        .iter()
        .filter(|m| m.key().is_some_and(|k| k.starts_with(b"marker-")))
        .map(rdkafka::Message::partition)
        .collect();
    assert_eq!(marked, BTreeSet::from([0, 1]), "the markers must cover every partition of the request topic");
    let codec = shadowdiff_core::EventCodec::new().unwrap();
    let events: Vec<ResponseEvent> = messages.iter().filter_map(|m| codec.decode(m.payload()?).ok()).collect();
    assert!(with_prefix(&events, "late-").is_empty(), "no replays after the TTL");
    // Two replicas share the group's partitions: every request is replayed. Delivery is at
    // least once, so a request read just before a rebalance may be replayed by both.
    let live_ids: std::collections::BTreeSet<&str> =
        with_prefix(&events, "live-").iter().map(|e| e.request_id.as_str()).collect();
    assert_eq!(live_ids.len(), 10, "every live request replayed");
    let after = received.lock().unwrap().iter().filter(|r| r.path == "/x").count();
    assert_eq!(after, before, "the backend saw nothing after the TTL");
    let listed = listed(&client, &a).await.unwrap();
    let live = listed.as_array().unwrap().iter().find(|p| p["id"] == "live").unwrap().clone();
    assert_eq!(live["expired"], true);

    let deleted =
        client.delete(format!("{}/v1/profiles/live", a.admin_url)).bearer_auth(WRITE_TOKEN).send().await.unwrap();
    assert_eq!(deleted.status(), 202);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_faults_show_up_at_their_rate() {
    let infra = Infra::get().await;
    let (backend, _) = recording_backend(Duration::ZERO).await;
    let topics = MirrorTopics::new();
    let faults = "faults = { error_percent = 20, error_status = 503, drop_percent = 10 }";
    let mirror = MirrorUnderTest::start(&infra.brokers, &topics, &profile("faulty", backend, faults)).await;
    let n = 400;
    let events = replay_all(&infra.brokers, &topics, "f", n).await;
    let errors = events.iter().filter(|e| e.status == Some(503)).count();
    let drops = events.iter().filter(|e| e.error == Some(ErrorKind::Reset)).count();
    let clean = events.iter().filter(|e| e.status == Some(200)).count();
    assert_eq!(errors + drops + clean, n, "every request has exactly one outcome");
    // Drops take 10%, errors 20% of the remaining 90% (18% overall); each within 4 sd.
    let within = |count: usize, p: f64| {
        let (mean, sd) = (n as f64 * p, (n as f64 * p * (1.0 - p)).sqrt());
        (count as f64 - mean).abs() <= 4.0 * sd
    };
    assert!(within(drops, 0.10), "{drops} drops of {n}");
    assert!(within(errors, 0.18), "{errors} injected errors of {n}");

    // Faults are changed live through the API.
    let client = reqwest::Client::new();
    let changed = client
        .post(format!("{}/v1/profiles/faulty/faults", mirror.admin_url))
        .bearer_auth(WRITE_TOKEN)
        .json(&serde_json::json!({ "error_percent": 100, "error_status": 500 }))
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), 202);
    eventually("the new faults to apply", DEADLINE, || async {
        let listed = listed(&client, &mirror).await?;
        let faults = &listed[0]["faults"];
        if faults["error_percent"] == 100.0 { Ok(()) } else { Err(faults.to_string()) }
    })
    .await;
    publish(&infra.brokers, &topics.requests, &[request_event("after-change", "GET", "/x")]).await;
    let events =
        responses_until(&infra.brokers, &topics.responses, DEADLINE, |e| !with_prefix(e, "after-change").is_empty())
            .await;
    assert_eq!(with_prefix(&events, "after-change")[0].status, Some(500));
    mirror.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_faults_never_move_the_circuit_breaker() {
    let infra = Infra::get().await;
    let (backend, received) = recording_backend(Duration::ZERO).await;
    let topics = MirrorTopics::new();
    // Every replay fails by injection: half dropped (reset), the rest answered 503.
    let faults = "faults = { drop_percent = 50, error_percent = 100, error_status = 503 }";
    let mirror = MirrorUnderTest::start(&infra.brokers, &topics, &profile("injected", backend, faults)).await;
    let n = 30;
    let events = replay_all(&infra.brokers, &topics, "inj", n).await;
    let resets = events.iter().filter(|e| e.error == Some(ErrorKind::Reset)).count();
    let errors = events.iter().filter(|e| e.status == Some(503) && e.error.is_none()).count();
    // Six failures in a row would have opened a breaker that counted them, and the rest
    // would have been rejected as circuit_open.
    assert_eq!((resets + errors, events.len()), (n, n), "only injected failures: {events:#?}");
    assert!(resets > 0 && errors > 0, "both kinds injected: {resets} resets, {errors} errors");
    assert!(received.lock().unwrap().is_empty(), "an injected fault never reaches the target");

    let client = reqwest::Client::new();
    let status: serde_json::Value = client
        .get(format!("{}/v1/profiles/injected/status", mirror.admin_url))
        .bearer_auth(READ_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let target = &status["targets"][0];
    assert_eq!(
        (target["circuit"].as_str(), target["circuit_rejections"].as_u64()),
        (Some("closed"), Some(0)),
        "{status}"
    );
    assert_eq!(target["errors"].as_u64(), Some(n as u64), "the failures are still counted as errors: {status}");

    // Without faults, the very next replay goes through: the circuit never opened.
    let cleared = client
        .post(format!("{}/v1/profiles/injected/faults", mirror.admin_url))
        .bearer_auth(WRITE_TOKEN)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(cleared.status(), 202);
    eventually("the faults to be cleared", DEADLINE, || async {
        let listed = listed(&client, &mirror).await?;
        let faults = &listed[0]["faults"];
        if faults["error_percent"] == 0.0 && faults["drop_percent"] == 0.0 { Ok(()) } else { Err(faults.to_string()) }
    })
    .await;
    publish(&infra.brokers, &topics.requests, &[request_event("inj-after", "GET", "/x")]).await;
    let events =
        responses_until(&infra.brokers, &topics.responses, DEADLINE, |e| !with_prefix(e, "inj-after").is_empty()).await;
    let after = with_prefix(&events, "inj-after")[0];
    assert_eq!((after.status, after.error), (Some(200), None), "{after:?}");
    mirror.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_target_gives_error_events_opens_its_circuit_and_never_stalls_consumption() {
    let infra = Infra::get().await;
    // Nothing listens there, and nothing can start to while the test holds it.
    let dead = ClosedPort::new();
    let topics = MirrorTopics::new();
    let mirror = MirrorUnderTest::start(&infra.brokers, &topics, &profile("dead", dead.addr(), "")).await;
    let n = 200;
    let events = replay_all(&infra.brokers, &topics, "d", n).await;
    assert!(events.iter().all(|e| e.status.is_none()), "a dead target never answers");
    let connect = events.iter().filter(|e| e.error == Some(ErrorKind::Connect)).count();
    let open = events.iter().filter(|e| e.error == Some(ErrorKind::CircuitOpen)).count();
    assert!(connect >= 5, "the first failures are real connection errors: {connect}");
    assert!(open > 0, "then the circuit opens: {open} rejected");

    let status: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/v1/profiles/dead/status", mirror.admin_url))
        .bearer_auth(READ_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let target = &status["targets"][0];
    assert_eq!(target["name"], "v2");
    assert!(target["circuit"] == "open" || target["circuit"] == "half_open", "{status}");
    assert!(target["errors"].as_u64().unwrap() >= 5, "{status}");
    assert!(status["consumer_lag"].as_i64().is_some_and(|lag| lag <= 0), "all {n} consumed: {status}");
    mirror.stop().await;
}

/// The rate limit under test, and how many replays it is measured over (10 s at the limit).
const RATE: u32 = 20;
const MEASURED: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_holds_within_ten_percent_over_two_hundred_replays() {
    let infra = Infra::get().await;
    let (backend, received) = recording_backend(Duration::ZERO).await;
    let topics = MirrorTopics::new();
    let limited = format!(
        "[[mirror.profiles]]\nid = \"limited\"\n\
         [[mirror.profiles.targets]]\nname = \"v2\"\nrole = \"candidate\"\nbase_url = \"http://{backend}\"\nrate_per_sec = {RATE}\n"
    );
    let mirror = MirrorUnderTest::start(&infra.brokers, &topics, &limited).await;
    // A backlog twice what is measured: the limiter, not the supply, sets the pace.
    let requests: Vec<_> = (0..2 * MEASURED).map(|i| request_event(&format!("r-{i}"), "GET", "/x")).collect();
    publish(&infra.brokers, &topics.requests, &requests).await;
    let arrivals = eventually("the measured replays to arrive", Duration::from_secs(120), || async {
        let log = received.lock().unwrap();
        if log.len() > MEASURED {
            Ok(log.iter().map(|r| r.at).collect::<Vec<Instant>>())
        } else {
            Err(format!("{} replays so far", log.len()))
        }
    })
    .await;
    // Replays are spaced evenly (no burst), so MEASURED intervals take MEASURED / RATE
    // seconds. Faster than that by more than 10% breaks the limit; slower is only a busy
    // machine, tolerated up to twice as slow.
    let span = arrivals[MEASURED].duration_since(arrivals[0]).as_secs_f64();
    let nominal = MEASURED as f64 / f64::from(RATE);
    let rate = MEASURED as f64 / span;
    assert!(span >= nominal / 1.1, "{MEASURED} replays in {span:.2} s: {rate:.1}/s against a limit of {RATE}/s");
    assert!(span <= nominal * 2.0, "{MEASURED} replays in {span:.2} s: {rate:.1}/s, the limiter stalls");
    eprintln!("{MEASURED} replays in {span:.2} s: {rate:.2}/s at a limit of {RATE}/s");
    mirror.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_target_times_out_and_sheds_without_holding_up_consumption() {
    let infra = Infra::get().await;
    let (slow, _) = recording_backend(Duration::from_secs(2)).await;
    let topics = MirrorTopics::new();
    let limits = format!(
        "[[mirror.profiles]]\nid = \"slow\"\n\
         [[mirror.profiles.targets]]\nname = \"v2\"\nrole = \"candidate\"\nbase_url = \"http://{slow}\"\n\
         timeout_ms = 300\nmax_concurrency = 2\nmax_queued = 4\n"
    );
    let mirror = MirrorUnderTest::start(&infra.brokers, &topics, &limits).await;
    let n = 100;
    let requests: Vec<_> = (0..n).map(|i| request_event(&format!("s-{i}"), "GET", "/x")).collect();
    let started = Instant::now();
    publish(&infra.brokers, &topics.requests, &requests).await;
    let events = responses_until(&infra.brokers, &topics.responses, DEADLINE, |e| e.len() >= n).await;
    let count = |kind| events.iter().filter(|e| e.error == Some(kind)).count();
    let (timeouts, shed, open) = (count(ErrorKind::Timeout), count(ErrorKind::Shed), count(ErrorKind::CircuitOpen));
    // Replays that got a slot timed out (and, five in a row, opened the circuit); beyond
    // 2 in flight and 4 queued the rest were shed. Nothing waited for the slow target.
    assert_eq!(timeouts + shed + open, n, "{timeouts} timeouts, {shed} shed, {open} circuit open");
    assert!(timeouts >= 5 && shed > 0 && open > 0, "{timeouts} timeouts, {shed} shed, {open} circuit open");
    // Without shedding, 100 requests at 2 x 300 ms would take 15 s.
    assert!(started.elapsed() < Duration::from_secs(12), "consumption was held up: {:?}", started.elapsed());
    mirror.stop().await;
}

/// Replicas joining and leaving the group replay no request twice in steady state: every
/// request replayed before a rebalance stays replayed once. The periodic commit is set far
/// beyond the test (a minute), so only the commit as a rebalance revokes partitions, and the
/// one on the way out, can tell the next owner where to read on. (`replicas.rs` runs the
/// replicas as processes on six partitions, where requests are replayed again without the
/// commit on revocation.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebalance_replays_nothing_twice_that_was_replayed_before_it() {
    let infra = Infra::get().await;
    let (backend, received) = recording_backend(Duration::ZERO).await;
    let topics = MirrorTopics::new();
    let profiles = profile("steady", backend, "");
    let keys = "commit_interval_ms = 60000";
    let ids = || -> Vec<String> {
        let received = received.lock().unwrap();
        received.iter().filter_map(|r| r.headers.get("x-request-id")?.to_str().ok().map(str::to_owned)).collect()
    };
    // Within a partition requests are replayed in order: once every request of a batch is
    // in, anything earlier that a replica read again is in too.
    let replayed = |prefix: &'static str| async move {
        eventually(&format!("every {prefix} request replayed"), DEADLINE, || async {
            let n = ids().into_iter().filter(|id| id.starts_with(prefix)).collect::<BTreeSet<_>>().len();
            if n == 40 { Ok(()) } else { Err(format!("{n} of 40")) }
        })
        .await;
    };
    let batch =
        |prefix: &str| -> Vec<_> { (0..40).map(|i| request_event(&format!("{prefix}{i}"), "GET", "/x")).collect() };

    let a = MirrorUnderTest::start_with(&infra.brokers, &topics, keys, &profiles).await;
    let before = replay_all(&infra.brokers, &topics, "before", 40).await;
    assert_eq!(with_prefix(&before, "before-").len(), 40, "the first replica replayed the first batch");
    // A second replica joins: the group rebalances and the first gives up a partition.
    let b = MirrorUnderTest::start_with(&infra.brokers, &topics, keys, &profiles).await;
    publish(&infra.brokers, &topics.requests, &batch("during-")).await;
    replayed("during-").await;
    // The first replica leaves; the second takes every partition and replays the last batch,
    // so it has surely owned, and read on from, the partition it got when it joined.
    a.stop().await;
    publish(&infra.brokers, &topics.requests, &batch("last-")).await;
    replayed("last-").await;

    let seen = ids();
    let once: BTreeSet<&String> = seen.iter().collect();
    let twice: Vec<&&String> = once.iter().filter(|id| seen.iter().filter(|s| *s == **id).count() > 1).collect();
    assert!(twice.is_empty(), "replayed twice across the rebalances: {twice:?}");
    assert_eq!(once.len(), 120, "every request replayed");
    b.stop().await;
}

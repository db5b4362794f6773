//! Attacks on the running services, one test per attack: every API route refuses callers
//! without the right scope; profiles cannot aim replays outside the mirror's allowed
//! targets or past their bounds; a crafted request event cannot steer a replay to another
//! host; and no secret a client or a backend sends reaches a topic or a table. (The tap's
//! slowloris and request-target attacks are in `tap_hardening.rs`.)

// Scenario helpers fail the test by panicking, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::response::IntoResponse;
use rdkafka::Message;
use rdkafka::message::Headers;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use shadowdiff_runtime::kafka::dead_letter_headers;
use shadowdiff_tests::auth::{READ_TOKEN, WRITE_TOKEN};
use shadowdiff_tests::infra::Infra;
use shadowdiff_tests::kafka::{read_until, responses_until};
use shadowdiff_tests::mirror::{MirrorTopics, MirrorUnderTest, publish, recording_backend, request_event};
use shadowdiff_tests::pipeline::{Backends, Pipeline};
use shadowdiff_tests::verdict::VerdictService;
use shadowdiff_tests::{eventually, unique};

const DEADLINE: Duration = Duration::from_secs(60);

async fn answer(method: Method, url: &str, token: Option<&str>, body: Option<Value>) -> StatusCode {
    let mut request = reqwest::Client::new().request(method, url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.unwrap().status()
}

#[tokio::test]
async fn every_api_route_refuses_callers_without_the_right_scope() {
    let infra = Infra::get().await;
    let mirror = MirrorUnderTest::start(&infra.brokers, &MirrorTopics::new(), "").await;
    let verdict = VerdictService::start(&infra, "").await;
    let profile =
        json!({ "id": "p", "targets": [{ "name": "v2", "role": "candidate", "base_url": "http://127.0.0.1:9" }] });
    let m = &mirror.admin_url;
    let routes = [
        (Method::GET, format!("{m}/v1/profiles"), "read"),
        (Method::GET, format!("{m}/v1/profiles/p/status"), "read"),
        (Method::GET, format!("{m}/v1/profiles/p/history"), "read"),
        (Method::POST, format!("{m}/v1/profiles"), "write"),
        (Method::POST, format!("{m}/v1/profiles/p/faults"), "write"),
        (Method::DELETE, format!("{m}/v1/profiles/p"), "write"),
        (Method::GET, format!("{}/v1/verdict?candidate=v2", verdict.url), "read"),
        (Method::GET, format!("{}/v1/exchanges/req-1", verdict.url), "read"),
        (Method::GET, format!("{}/exchanges/req-1", verdict.url), "read"),
        (Method::POST, format!("{}/v1/flagger/gate", verdict.url), "read"),
    ];
    let mut refused = Vec::new();
    for (method, url, scope) in &routes {
        let body = Some(profile.clone());
        for token in [None, Some("not-a-token-of-ours-0123456789")] {
            refused.push((url.clone(), token.is_some(), answer(method.clone(), url, token, body.clone()).await));
        }
        if *scope == "write" {
            refused.push((url.clone(), true, answer(method.clone(), url, Some(READ_TOKEN), body).await));
        }
    }
    let wrong: Vec<_> = refused
        .iter()
        .filter(|(_, _, status)| !matches!(*status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN))
        .collect();
    assert!(wrong.is_empty(), "answered without the right credentials: {wrong:?}");
    assert_eq!(refused.iter().filter(|r| r.2 == StatusCode::FORBIDDEN).count(), 3, "read tokens on write routes");
    // Health and metrics stay open, for probes and scrapers.
    for path in ["/healthz", "/metrics"] {
        assert_eq!(answer(Method::GET, &format!("{m}{path}"), None, None).await, StatusCode::OK, "{path}");
    }
    verdict.stop().await;
    mirror.stop().await;
}

#[tokio::test]
async fn profiles_cannot_aim_replays_elsewhere_nor_crash_a_replica() {
    let infra = Infra::get().await;
    let topics = MirrorTopics::new();
    let mirror = MirrorUnderTest::start(&infra.brokers, &topics, "").await;
    let (backend, received) = recording_backend(Duration::ZERO).await;
    let url = format!("{}/v1/profiles", mirror.admin_url);
    let post = |target: &str, extra: Value| {
        let mut profile =
            json!({ "id": "attack", "targets": [{ "name": "v2", "role": "candidate", "base_url": target }] });
        if let (Value::Object(p), Value::Object(extra)) = (&mut profile, extra) {
            p.extend(extra);
        }
        let url = url.clone();
        async move {
            let response =
                reqwest::Client::new().post(url).bearer_auth(WRITE_TOKEN).json(&profile).send().await.unwrap();
            (response.status(), response.text().await.unwrap())
        }
    };
    for (target, why) in [
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is link-local or a metadata endpoint"),
        ("http://[fd00:ec2::254]/", "metadata"),
        ("http://127.0.0.2:8080/", "127.0.0.2 is not in mirror.allowed_targets"),
        ("http://localhost:8080/", "localhost is not in mirror.allowed_targets"),
        ("http://admin:pw@127.0.0.1:8080/", "credentials in a target URL are refused"),
        ("http://evil.example/", "evil.example is not in mirror.allowed_targets"),
    ] {
        let (status, body) = post(target, json!({})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{target}: {body}");
        assert!(body.contains("targets[0].base_url: ") && body.contains(why), "{target}: {body}");
    }
    // Out of bounds: answered 400, and the replica stays alive and keeps replaying.
    let target = format!("http://{backend}");
    for (extra, field) in [
        (
            json!({ "targets": [{ "name": "v2", "role": "candidate", "base_url": target, "max_concurrency": 4_611_686_018_427_387_904_u64 }] }),
            "max_concurrency",
        ),
        (json!({ "faults": { "latency_ms": 3_600_000, "latency_percent": 100 } }), "faults.latency_ms"),
        (json!({ "ttl_secs": 9_999_999_999_u64 }), "ttl_secs"),
    ] {
        let (status, body) = post(&target, extra).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{field}: {body}");
        assert!(body.contains(field), "{field}: {body}");
    }
    let (status, body) = post(&target, json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");

    // A crafted request event whose target is not origin-form never reaches a backend: it
    // is dead-lettered with the reason, while the honest one beside it is replayed.
    eventually("the profile applied", DEADLINE, || async {
        let history: Value = reqwest::Client::new()
            .get(format!("{url}/attack/history"))
            .bearer_auth(READ_TOKEN)
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        let by = &history["changes"][0]["by"];
        if history["current"]["id"] == "attack" && by == "test-operator" { Ok(()) } else { Err(history.to_string()) }
    })
    .await;
    let crafted = ["@evil.example/steal", "http://evil.example/steal", "evil.example"];
    let mut events: Vec<_> =
        crafted.iter().enumerate().map(|(i, path)| request_event(&format!("crafted-{i}"), "GET", path)).collect();
    events.push(request_event("honest-1", "GET", "/items/1"));
    publish(&infra.brokers, &topics.requests, &events).await;
    let dead = read_until(&infra.brokers, &topics.dead_letter(), DEADLINE, |m| m.len() >= crafted.len()).await;
    let reasons: Vec<String> = dead
        .iter()
        .map(|m| {
            let headers = m.headers().unwrap();
            let reason = headers.iter().find(|h| h.key == dead_letter_headers::REASON).and_then(|h| h.value).unwrap();
            String::from_utf8_lossy(reason).into_owned()
        })
        .collect();
    assert_eq!(reasons, vec!["invalid_field"; crafted.len()]);
    responses_until(&infra.brokers, &topics.responses, DEADLINE, |e| e.iter().any(|e| e.request_id == "honest-1"))
        .await;
    let paths: Vec<String> = received.lock().unwrap().iter().map(|r| r.path.clone()).collect();
    assert_eq!(paths, ["/items/1"], "only the honest request reached the backend");
    assert_eq!(answer(Method::GET, &format!("{}/healthz", mirror.admin_url), None, None).await, StatusCode::OK);
    mirror.stop().await;
}

/// A backend that hands out secrets: a session cookie and a token in its JSON body.
async fn leaky_backend(role: &'static str) -> SocketAddr {
    let app = Router::new().fallback(move || async move {
        (
            [
                ("set-cookie", format!("sid=CANARY-SETCOOKIE-{role}; HttpOnly")),
                ("content-type", "application/json".to_owned()),
            ],
            json!({ "ok": true, "session": { "access_token": format!("CANARY-BODYTOKEN-{role}") } }).to_string(),
        )
            .into_response()
    });
    shadowdiff_tests::serve(app).await
}

#[tokio::test]
async fn no_secret_reaches_a_topic_or_a_table() {
    let infra = Infra::get().await;
    let backends = Backends {
        primary: leaky_backend("primary").await,
        secondary: leaky_backend("secondary").await,
        candidate: leaky_backend("candidate").await,
    };
    let pipeline = Pipeline::start(&infra, backends).await;
    let client = reqwest::Client::new();
    const GETS: usize = 5;
    for i in 0..GETS {
        let response = client
            .get(format!(
                "{}/items/{i}?q=shoes&API_KEY=CANARY-QUERY-{i}&access_token=CANARY-QUERYTOKEN",
                pipeline.tap_url
            ))
            .header("authorization", "Bearer CANARY-AUTH")
            .header("cookie", "sid=CANARY-COOKIE")
            .header("x-request-id", unique("leak"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert!(
            response.headers()["set-cookie"].to_str().unwrap().contains("CANARY-SETCOOKIE-primary"),
            "clients get it"
        );
    }
    let json_login = client
        .post(format!("{}/login", pipeline.tap_url))
        .json(&json!({ "user": "ann", "credentials": { "Password": "CANARY-JSON", "cvv": "CANARY-CVV" } }))
        .send();
    assert_eq!(json_login.await.unwrap().status(), 200);
    let form_login = client
        .post(format!("{}/login", pipeline.tap_url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("user=ann&password=CANARY-FORM&card_number=CANARY-CARD")
        .send();
    assert_eq!(form_login.await.unwrap().status(), 200);

    // Every GET compared against both shadows, every request and response published.
    let clickhouse = pipeline.clickhouse.clone();
    eventually("both shadows' rows for every GET", DEADLINE, || async {
        let n: u64 = clickhouse
            .query("SELECT count() FROM exchanges FINAL WHERE outcome = 'complete'")
            .fetch_one()
            .await
            .map_err(|e| e.to_string())?;
        if n == 2 * GETS as u64 { Ok(()) } else { Err(format!("{n} rows")) }
    })
    .await;
    let names = &pipeline.names;
    let mut leaks = Vec::new();
    for (topic, expected) in [(&names.requests, GETS + 2), (&names.responses, GETS + 2 + 2 * GETS)] {
        let messages = read_until(&infra.brokers, topic, DEADLINE, |m| m.len() >= expected).await;
        for message in &messages {
            let text = String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned();
            if let Some(at) = text.find("CANARY") {
                leaks.push(format!("{topic}: {}", &text[at..text.len().min(at + 40)]));
            }
        }
    }
    let http = reqwest::Client::new();
    let query = |sql: String| {
        let request = http.post(format!("{}/?database={}", infra.clickhouse_url, names.database)).body(sql).send();
        async move { request.await.unwrap().text().await.unwrap() }
    };
    let tables = query("SHOW TABLES".to_owned()).await;
    assert!(tables.contains("samples") && tables.contains("differences"), "{tables}");
    for table in tables.lines().filter(|t| !t.is_empty()) {
        let rows = query(format!("SELECT * FROM {table} FORMAT TabSeparated")).await;
        if let Some(at) = rows.find("CANARY") {
            leaks.push(format!("table {table}: {}", &rows[at..rows.len().min(at + 40)]));
        }
    }
    assert!(leaks.is_empty(), "secrets left the producers: {leaks:#?}");
    pipeline.stop().await;
}

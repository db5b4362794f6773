use axum::body::Body;
use sha2::Digest as _;
use tower::ServiceExt;

use super::*;

/// An app whose store is unreachable: enough for every path that fails before a query.
/// With a token, that is the only credential it accepts; without, it is open.
fn offline(token: Option<&str>) -> Router {
    let auth = match token {
        Some(token) => format!(
            "[[tokens]]\nname = \"ci\"\nsha256 = \"{}\"\nscopes = [\"read\"]",
            hex::encode(sha2::Sha256::digest(token.as_bytes()))
        ),
        None => "open = true".to_owned(),
    };
    let auth = Auth::new(&toml::from_str(&auth).unwrap(), "test");
    app(AppState::new(clickhouse::Client::default().with_url("http://127.0.0.1:1"), VerdictSection::default(), auth))
}

async fn call(app: Router, request: http::Request<Body>) -> (StatusCode, String) {
    let response = app.oneshot(request).await.unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

fn get(uri: &str) -> http::Request<Body> {
    http::Request::get(uri).body(Body::empty()).unwrap()
}

#[tokio::test]
async fn bad_parameters_are_400s_with_the_reason() {
    let cases = [
        ("/v1/verdict", "candidate is required: 1 to 128 characters"),
        ("/v1/verdict?candidate=v2&stage=25", r#"stage \"25\" is not one of shadow, 1, 10, 50, 100"#),
        ("/v1/verdict?candidate=v2&since=yesterday", r#"since \"yesterday\" is neither an RFC 3339 time"#),
        ("/v1/verdict?candidate=v2&revision=%0a", "revision must be 1 to 128 printable characters"),
    ];
    for (uri, reason) in cases {
        let (status, body) = call(offline(None), get(uri)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
        assert!(body.contains(reason), "{uri}: {body}");
    }
}

#[tokio::test]
async fn store_failures_are_503_without_internals() {
    let (status, body) = call(offline(None), get("/v1/verdict?candidate=v2")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body, r#"{"error":"comparison store unavailable"}"#);
}

#[tokio::test]
async fn the_api_wants_the_bearer_token_when_one_is_set() {
    let token = "s3cret-token-0123456789";
    let (status, body) = call(offline(Some(token)), get("/v1/verdict?candidate=v2")).await;
    assert_eq!((status, body.as_str()), (StatusCode::UNAUTHORIZED, r#"{"error":"missing or unknown credentials"}"#));
    let wrong =
        http::Request::get("/v1/verdict?candidate=v2").header("authorization", "Bearer nope").body(Body::empty());
    assert_eq!(call(offline(Some(token)), wrong.unwrap()).await.0, StatusCode::UNAUTHORIZED);
    let right = http::Request::get("/v1/verdict?candidate=v2")
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty());
    // Past the token, on to the (unreachable) store.
    assert_eq!(call(offline(Some(token)), right.unwrap()).await.0, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn flagger_payloads_are_checked() {
    let post = |uri: &str, body: &str| {
        http::Request::post(uri).header("content-type", "application/json").body(Body::from(body.to_owned())).unwrap()
    };
    let (status, body) = call(offline(None), post("/v1/flagger/gate", "{}")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("flagger payload") && body.contains("name"), "{body}");
    let payload =
        r#"{"name":"podinfo","namespace":"test","phase":"Progressing","checksum":"abc","metadata":{"stage":"10"}}"#;
    let (status, body) = call(offline(None), post("/v1/flagger/promote", payload)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("unknown flagger hook"), "{body}");
    let bad_stage = r#"{"name":"podinfo","namespace":"test","phase":"Progressing","metadata":{"stage":"7"}}"#;
    assert_eq!(call(offline(None), post("/v1/flagger/gate", bad_stage)).await.0, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn every_route_but_health_needs_a_token_and_flagger_may_send_it_in_metadata() {
    let token = "s3cret-token-0123456789";
    for uri in ["/v1/verdict?candidate=v2", "/v1/exchanges/req-1", "/exchanges/req-1"] {
        assert_eq!(call(offline(Some(token)), get(uri)).await.0, StatusCode::UNAUTHORIZED, "{uri}");
    }
    let post = |body: String| {
        http::Request::post("/v1/flagger/check")
            .header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap()
    };
    let hook = |metadata: &str| format!(r#"{{"name":"podinfo","namespace":"test","metadata":{{{metadata}}}}}"#);
    assert_eq!(call(offline(Some(token)), post(hook(""))).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(call(offline(Some(token)), post(hook(r#""token":"nope""#))).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(call(offline(Some(token)), post("not json".into())).await.0, StatusCode::UNAUTHORIZED);
    let with_token = hook(&format!(r#""token":"{token}","stage":"10""#));
    // Past the token, on to the (unreachable) store.
    assert_eq!(call(offline(Some(token)), post(with_token)).await.0, StatusCode::SERVICE_UNAVAILABLE);
}

#[test]
fn since_reads_times_seconds_and_durations_ago() {
    let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    assert_eq!(parse_since("1700000000", now), Some(1_700_000_000));
    assert_eq!(parse_since("2026-11-24T10:00:00Z", now), Some(1_795_514_400));
    assert_eq!(parse_since("15m", now), Some(1_800_000_000 - 900));
    assert_eq!(parse_since("1h 30m", now), Some(1_800_000_000 - 5400));
    assert_eq!(parse_since("soon", now), None);
}

#[test]
fn a_window_starts_at_the_later_of_release_and_since_within_the_bounds() {
    let (hour, day) = (Duration::from_secs(3600), Duration::from_secs(86_400));
    let now = 2_000_000_000;
    assert_eq!(window_start(None, None, now, hour, day), now - 3600, "neither: the default window");
    assert_eq!(window_start(Some(now - 60), None, now, hour, day), now - 60, "the release alone");
    assert_eq!(window_start(Some(now - 60), Some(now - 30), now, hour, day), now - 30, "the later of both");
    assert_eq!(window_start(Some(now - 60), Some(now - 90), now, hour, day), now - 60, "the later of both");
    assert_eq!(window_start(None, Some(0), now, hour, day), now - 86_400, "never past the longest window");
    assert_eq!(window_start(Some(now - 7 * 86_400), None, now, hour, day), now - 86_400, "a week-old release too");
    assert_eq!(window_start(None, Some(5), now, hour, Duration::ZERO), 5, "zero: no bound");
}

#[tokio::test]
async fn a_read_slower_than_its_bound_is_a_503_a_page_for_a_browser() {
    let slow = Router::new()
        .route("/slow", axum::routing::get(|| async { tokio::time::sleep(Duration::from_secs(5)).await }))
        .layer(axum::middleware::from_fn_with_state(Duration::from_millis(20), within_time));
    let (status, body) = call(slow.clone(), get("/slow")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.starts_with(r#"{"error":"not answered within 20ms"#), "{body}");
    let page = http::Request::get("/slow").header("accept", "text/html").body(Body::empty()).unwrap();
    let (status, body) = call(slow, page).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.starts_with("<!DOCTYPE html>") && body.contains("not answered within 20ms"), "{body}");
}

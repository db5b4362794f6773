//! The demo backend, a small catalogue run as primary, secondary and candidate:
//!
//! - `GET /items/{n}`: one item; `GET /search?q=`: a page of items; `GET /users/{id}/cart`;
//! - `POST /items` and `PUT /users/{id}/cart`: writes, which the mirror never replays.
//!
//! Honest noise, as real services have, that the secondary shows too: a per-response
//! timestamp and trace id and a per-instance header (`noise`), and a keyed array in random
//! order (`shuffle`; the correlator's `keyed_arrays` rule makes it equal).
//!
//! The candidate's regressions are deterministic, so tests can predict them exactly: a
//! changed price on every `regress_every`-th item read by `/items/{n}`, a dropped field, a 503 on every
//! `error_every`-th item, and added latency.

use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

/// How a backend instance behaves.
#[derive(Debug, Clone, Default)]
pub struct Behavior {
    /// Every item number divisible by this gets a changed `price`; 0 means never.
    pub regress_every: u64,
    /// Adds a `served_at` timestamp, a random `trace_id` and an `x-instance-id` header.
    pub noise: bool,
    /// Returns each item's `variants` in a random order.
    pub shuffle: bool,
    /// Leaves this field out of every item.
    pub drop_field: Option<String>,
    /// Every item number divisible by this answers 503; 0 means never.
    pub error_every: u64,
    /// Added to every response.
    pub latency: Duration,
    /// Named in `x-instance-id`.
    pub instance: String,
}

impl Behavior {
    /// Whether item `n` is one the candidate answers with a changed price.
    pub fn regresses(&self, n: u64) -> bool {
        self.regress_every != 0 && n % self.regress_every == 0
    }

    fn fails(&self, n: u64) -> bool {
        self.error_every != 0 && n % self.error_every == 0
    }
}

pub fn app(behavior: Behavior) -> Router {
    Router::new()
        .route("/items/{n}", get(item))
        .route("/items", post(create))
        .route("/search", get(search))
        .route("/users/{id}/cart", get(cart).put(replace_cart))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(std::sync::Arc::new(behavior))
}

type Shared = State<std::sync::Arc<Behavior>>;

/// Each item's variants, keyed by `id`.
const COLORS: [&str; 4] = ["red", "green", "blue", "black"];

/// The item as the primary serves it.
pub fn item_json(n: u64) -> Value {
    let variants: Vec<Value> =
        COLORS.iter().enumerate().map(|(id, color)| json!({ "id": id, "color": color })).collect();
    json!({
        "id": n,
        "name": format!("item-{n}"),
        "price": n * 100,
        "currency": "EUR",
        "variants": variants,
    })
}

/// The item as `behavior` serves it (the price regression aside: it is only on `/items/{n}`).
fn item_for(behavior: &Behavior, n: u64) -> Value {
    let mut item = item_json(n);
    if let (Some(field), Some(object)) = (&behavior.drop_field, item.as_object_mut()) {
        object.remove(field);
    }
    if behavior.shuffle
        && let Some(variants) = item["variants"].as_array_mut()
    {
        fastrand::shuffle(variants);
    }
    item
}

async fn respond(behavior: &Behavior, status: StatusCode, mut body: Value) -> Response {
    if !behavior.latency.is_zero() {
        tokio::time::sleep(behavior.latency).await;
    }
    let mut headers = HeaderMap::new();
    if behavior.noise {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        if let Some(object) = body.as_object_mut() {
            object.insert("served_at".into(), json!(nanos.to_string()));
            object.insert("trace_id".into(), json!(format!("{:016x}", fastrand::u64(..))));
        }
        if let Ok(instance) = HeaderValue::from_str(&behavior.instance) {
            headers.insert("x-instance-id", instance);
        }
    }
    (status, headers, Json(body)).into_response()
}

async fn item(State(behavior): Shared, Path(n): Path<u64>) -> Response {
    if behavior.fails(n) {
        return respond(&behavior, StatusCode::SERVICE_UNAVAILABLE, json!({ "error": "unavailable" })).await;
    }
    let mut item = item_for(&behavior, n);
    if behavior.regresses(n) {
        item["price"] = json!(n * 100 + 1);
    }
    respond(&behavior, StatusCode::OK, item).await
}

#[derive(Debug, Deserialize)]
struct SearchParams {
    #[serde(default)]
    q: String,
}

/// Five items whose number starts from the query's length: deterministic per query.
async fn search(State(behavior): Shared, Query(params): Query<SearchParams>) -> Response {
    let first = params.q.len() as u64 * 5;
    let items: Vec<Value> = (first..first + 5).map(|n| item_for(&behavior, n)).collect();
    respond(&behavior, StatusCode::OK, json!({ "query": params.q, "items": items })).await
}

async fn cart(State(behavior): Shared, Path(user): Path<u64>) -> Response {
    let lines: Vec<Value> = (0..user % 4).map(|i| json!({ "item": user * 10 + i, "quantity": i + 1 })).collect();
    respond(&behavior, StatusCode::OK, json!({ "user": user, "lines": lines })).await
}

async fn create(State(behavior): Shared, Json(body): Json<Value>) -> Response {
    respond(&behavior, StatusCode::CREATED, json!({ "created": body })).await
}

async fn replace_cart(State(behavior): Shared, Path(user): Path<u64>, Json(body): Json<Value>) -> Response {
    respond(&behavior, StatusCode::OK, json!({ "user": user, "cart": body })).await
}

/// Serves `app(behavior)` on `listener` until `stop` resolves, then stops accepting, closes
/// idle keep-alive connections and lets the requests in flight finish, for `grace` at most:
/// a container stop then takes as long as the slowest answer, not the runtime's kill timeout.
pub async fn serve_until(
    listener: tokio::net::TcpListener,
    behavior: Behavior,
    stop: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<()> {
    let (stopping, stopped) = tokio::sync::oneshot::channel::<()>();
    let signal = async move {
        stop.await;
        let _receiver_may_be_gone = stopping.send(());
    };
    let server = axum::serve(listener, app(behavior)).with_graceful_shutdown(signal).into_future();
    let deadline = async move {
        match stopped.await {
            Ok(()) => tokio::time::sleep(grace).await,
            // The server ended before any signal: its own branch has the result.
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        result = server => result,
        () = deadline => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("requests still in flight {grace:?} after the stop signal"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use tower::ServiceExt;

    use super::*;

    async fn get(behavior: Behavior, uri: &str) -> (StatusCode, HeaderMap, Value) {
        let response = app(behavior).oneshot(axum::http::Request::get(uri).body(Body::empty()).unwrap()).await.unwrap();
        let (status, headers) = (response.status(), response.headers().clone());
        let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (status, headers, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn each_regression_shows_only_where_it_is_configured() {
        let candidate =
            Behavior { regress_every: 5, drop_field: Some("currency".into()), error_every: 7, ..Behavior::default() };
        let (_, _, item) = get(candidate.clone(), "/items/10").await;
        assert_eq!(item["price"], 1001, "every 5th item's price changes");
        assert!(item.get("currency").is_none(), "the dropped field");
        let (_, _, item) = get(candidate.clone(), "/items/11").await;
        assert_eq!(item["price"], 1100);
        let (status, _, _) = get(candidate.clone(), "/items/14").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "every 7th item fails");
        let (_, _, search) = get(candidate, "/search?q=lamp").await;
        assert_eq!(search["items"][0]["id"], 20);
        assert_eq!(search["items"][0]["price"], 2000, "the price regression is on /items/{{n}} only");
    }

    #[tokio::test]
    async fn honest_noise_differs_per_response_but_never_the_content() {
        let noisy = Behavior { noise: true, shuffle: true, instance: "primary-0".into(), ..Behavior::default() };
        let (_, headers, first) = get(noisy.clone(), "/items/3").await;
        let (_, _, second) = get(noisy, "/items/3").await;
        assert_eq!(headers["x-instance-id"], "primary-0");
        assert_ne!(first["trace_id"], second["trace_id"]);
        let ids = |item: &Value| {
            let mut ids: Vec<u64> =
                item["variants"].as_array().unwrap().iter().map(|v| v["id"].as_u64().unwrap()).collect();
            ids.sort_unstable();
            ids
        };
        assert_eq!(ids(&first), [0, 1, 2, 3], "shuffled, never changed");
        assert_eq!(first["price"], second["price"]);
    }

    #[tokio::test]
    async fn added_latency_delays_every_answer() {
        let slow = Behavior { latency: Duration::from_millis(50), ..Behavior::default() };
        let started = std::time::Instant::now();
        let (status, _, _) = get(slow, "/users/3/cart").await;
        assert_eq!(status, StatusCode::OK);
        assert!(started.elapsed() >= Duration::from_millis(50));
    }
}

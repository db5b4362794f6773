//! The demo backend, a small catalogue run as primary, secondary and candidate:
//!
//! - `GET /items/{n}`: one item; `GET /search?q=`: a page of items; `GET /users/{id}/cart`;
//! - `POST /items` and `PUT /users/{id}/cart`: writes, which the mirror never replays.
//!
//! Honest noise, as real services have, that the secondary shows too: a per-response
//! timestamp and trace id and a per-instance header (`noise`), and a keyed array in random
//! order (`shuffle`; the correlator's `keyed_arrays` rule makes it equal).
//!
//! Everything else is deterministic, so tests can predict it exactly: a base service time
//! on every response (`service_time`, slept to the microsecond), and the candidate's
//! changes: a changed price on every `regress_every`-th item read by `/items/{n}`, a
//! dropped field, an added field (`add_field`, a change that is meant), a 503 on every
//! `error_every`-th item and a 404 on every `not_found_every`-th.
//!
//! With a [`Downstream`], an item read asks the inventory service whether the item is in
//! stock (`in_stock`), through an HTTP proxy (an egress tap) when one is given, passing the
//! request id on; the candidate's extra write (`extra_write_every`) also posts an event there
//! for every such item: a side effect the primary never has.

use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use shadowdiff_core::headers::REQUEST_ID;

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
    /// Every item number divisible by this answers `GET /items/{n}` with 404
    /// `{"error":"not found"}` (unless it answers 503); 0 means never.
    pub not_found_every: u64,
    /// Adds this field, with the value `"new"`, to every item: an intended change.
    pub add_field: Option<String>,
    /// How long every response takes before its head is sent, to the microsecond (tokio's
    /// timer would round it up to the next millisecond, and a 4.00 ms against a 4.32 ms
    /// service would both take 5).
    pub service_time: Duration,
    /// Named in `x-instance-id`.
    pub instance: String,
    /// The inventory service item reads call, if any.
    pub downstream: Option<Downstream>,
    /// Every item number divisible by this also posts an event to the inventory when read:
    /// a write the primary never makes; 0 means never.
    pub extra_write_every: u64,
}

/// The inventory service a backend calls, and how.
#[derive(Debug, Clone)]
pub struct Downstream {
    /// Its base URL, `http://`.
    pub inventory: String,
    client: reqwest::Client,
}

impl Downstream {
    /// Calls to `inventory`, through the HTTP proxy `proxy` when given.
    pub fn new(inventory: &str, proxy: Option<&str>) -> reqwest::Result<Self> {
        let mut client = reqwest::Client::builder().timeout(Duration::from_secs(10));
        if let Some(proxy) = proxy {
            client = client.proxy(reqwest::Proxy::http(proxy)?);
        }
        Ok(Self { inventory: inventory.trim_end_matches('/').to_owned(), client: client.build()? })
    }

    /// Whether item `n` is in stock, as the inventory says; `null` when it does not answer.
    async fn in_stock(&self, n: u64, request_id: Option<&HeaderValue>) -> Value {
        let mut call = self.client.get(format!("{}/stock/{n}", self.inventory));
        if let Some(id) = request_id {
            call = call.header(REQUEST_ID, id);
        }
        match call.send().await {
            Ok(answer) => answer.json::<Value>().await.map_or(Value::Null, |v| v["in_stock"].clone()),
            Err(_) => Value::Null,
        }
    }

    /// Posts an event about item `n`; whatever the answer, the read goes on.
    async fn record_view(&self, n: u64, request_id: Option<&HeaderValue>) {
        let mut call =
            self.client.post(format!("{}/events", self.inventory)).json(&json!({ "kind": "viewed", "item": n }));
        if let Some(id) = request_id {
            call = call.header(REQUEST_ID, id);
        }
        let _the_read_goes_on = call.send().await;
    }
}

impl Behavior {
    /// Whether item `n` is one the candidate answers with a changed price.
    pub fn regresses(&self, n: u64) -> bool {
        self.regress_every != 0 && n.is_multiple_of(self.regress_every)
    }

    fn fails(&self, n: u64) -> bool {
        self.error_every != 0 && n.is_multiple_of(self.error_every)
    }

    /// Whether `GET /items/{n}` answers 404 (when it does not answer 503).
    pub fn not_found(&self, n: u64) -> bool {
        self.not_found_every != 0 && n.is_multiple_of(self.not_found_every)
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
    if let Some(object) = item.as_object_mut() {
        if let Some(field) = &behavior.drop_field {
            object.remove(field);
        }
        if let Some(field) = &behavior.add_field {
            object.insert(field.clone(), json!("new"));
        }
    }
    if behavior.shuffle
        && let Some(variants) = item["variants"].as_array_mut()
    {
        fastrand::shuffle(variants);
    }
    item
}

async fn respond(behavior: &Behavior, status: StatusCode, mut body: Value) -> Response {
    if !behavior.service_time.is_zero() {
        let service_time = behavior.service_time;
        // A blocked thread of tokio's pool, not a runtime worker: `thread::sleep` wakes
        // within tens of microseconds. The pool only fails when the runtime shuts down, and
        // then there is no one to answer.
        let _fails_only_at_shutdown = tokio::task::spawn_blocking(move || std::thread::sleep(service_time)).await;
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

async fn item(State(behavior): Shared, Path(n): Path<u64>, headers: HeaderMap) -> Response {
    if behavior.fails(n) {
        return respond(&behavior, StatusCode::SERVICE_UNAVAILABLE, json!({ "error": "unavailable" })).await;
    }
    if behavior.not_found(n) {
        return respond(&behavior, StatusCode::NOT_FOUND, json!({ "error": "not found" })).await;
    }
    let mut item = item_for(&behavior, n);
    if behavior.regresses(n) {
        item["price"] = json!(n * 100 + 1);
    }
    if let Some(downstream) = &behavior.downstream {
        let request_id = headers.get(REQUEST_ID);
        item["in_stock"] = downstream.in_stock(n, request_id).await;
        if behavior.extra_write_every != 0 && n.is_multiple_of(behavior.extra_write_every) {
            downstream.record_view(n, request_id).await;
        }
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
    async fn not_found_and_added_fields_show_only_where_configured() {
        let candidate = Behavior { not_found_every: 50, add_field: Some("badge".into()), ..Behavior::default() };
        let (status, _, body) = get(candidate.clone(), "/items/100").await;
        assert_eq!((status, body), (StatusCode::NOT_FOUND, json!({ "error": "not found" })), "every 50th item");
        let (status, _, item) = get(candidate.clone(), "/items/101").await;
        assert_eq!((status, &item["badge"], &item["price"]), (StatusCode::OK, &json!("new"), &json!(10_100)));
        let (_, _, search) = get(candidate.clone(), "/search?q=").await;
        assert_eq!(search["items"][0]["id"], 0, "item 0 is a multiple of 50, but only /items/{{n}} answers 404");
        assert_eq!(search["items"][0]["badge"], "new", "every item has the added field");
        assert!(candidate.not_found(150) && !candidate.not_found(151));
        let (status, _, item) = get(Behavior::default(), "/items/100").await;
        assert_eq!(status, StatusCode::OK);
        assert!(item.get("badge").is_none());
    }

    /// Both the sleep's floor and its precision: 4.00 ms against 4.32 ms, one request of each
    /// in turn so that the machine's own noise falls on both, must differ by the 8% they
    /// differ by, not by the whole milliseconds a runtime timer would round them to.
    #[tokio::test]
    async fn service_time_is_slept_to_the_microsecond() {
        let took = |micros: u64| async move {
            let behavior = Behavior { service_time: Duration::from_micros(micros), ..Behavior::default() };
            let started = std::time::Instant::now();
            let (status, _, _) = get(behavior, "/users/3/cart").await;
            assert_eq!(status, StatusCode::OK);
            started.elapsed()
        };
        let (mut base, mut slower) = (Vec::new(), Vec::new());
        for _ in 0..40 {
            base.push(took(4_000).await);
            slower.push(took(4_320).await);
        }
        assert!(base.iter().all(|d| *d >= Duration::from_micros(4_000)), "{base:?}");
        assert!(slower.iter().all(|d| *d >= Duration::from_micros(4_320)), "{slower:?}");
        let median = |durations: &mut Vec<Duration>| {
            durations.sort_unstable();
            durations[durations.len() / 2].as_secs_f64()
        };
        let ratio = median(&mut slower) / median(&mut base);
        assert!((1.05..1.11).contains(&ratio), "4.32 ms over 4.00 ms: {ratio:.3}; {base:?} {slower:?}");
    }
}

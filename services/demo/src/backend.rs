//! The demo backend: `GET /items/{n}` answers a JSON item; `POST /items` accepts a write.
//!
//! The candidate's regression is deterministic so tests can predict it exactly: with
//! `regress_every = k`, every item whose number is a multiple of `k` gets a price one cent
//! higher than the primary's.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

/// How a backend instance behaves.
#[derive(Debug, Clone, Copy, Default)]
pub struct Behavior {
    /// Every item number divisible by this gets a changed `price`; 0 means never.
    pub regress_every: u64,
    /// Adds honest noise: a `served_at` timestamp that differs on every response, as real
    /// services' do. The secondary shows it too, so it never counts against a candidate.
    pub noise: bool,
}

impl Behavior {
    /// Whether item `n` is one the candidate answers differently.
    pub fn regresses(&self, n: u64) -> bool {
        self.regress_every != 0 && n % self.regress_every == 0
    }
}

pub fn app(behavior: Behavior) -> Router {
    Router::new()
        .route("/items/{n}", get(item))
        .route("/items", post(create))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(behavior)
}

/// The item as the primary serves it.
pub fn item_json(n: u64) -> Value {
    json!({ "id": n, "name": format!("item-{n}"), "price": n * 100, "currency": "EUR" })
}

async fn item(State(behavior): State<Behavior>, Path(n): Path<u64>) -> Json<Value> {
    let mut item = item_json(n);
    if behavior.regresses(n) {
        item["price"] = json!(n * 100 + 1);
    }
    if behavior.noise {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        item["served_at"] = json!(nanos.to_string());
    }
    Json(item)
}

async fn create(Json(body): Json<Value>) -> (StatusCode, Json<Value>) {
    (StatusCode::CREATED, Json(json!({ "created": body })))
}

/// Serves `app(behavior)` on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, behavior: Behavior) -> std::io::Result<()> {
    axum::serve(listener, app(behavior)).await
}

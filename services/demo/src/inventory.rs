//! The demo's inventory service: the dependency the catalogue backends call downstream,
//! through their egress taps.
//!
//! - `GET /stock/{n}`: whether item `n` is in stock (every 7th is not);
//! - `POST /events`: records an event (an audit write), answered `202`.
//!
//! It counts the calls it gets, so a test can tell that no shadow's call reached it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

/// Calls the inventory got, by route.
#[derive(Debug, Default)]
pub struct Calls {
    pub stock: AtomicU64,
    pub events: AtomicU64,
}

pub fn app(calls: Arc<Calls>) -> Router {
    Router::new()
        .route("/stock/{n}", get(stock))
        .route("/events", post(event))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(calls)
}

async fn stock(State(calls): State<Arc<Calls>>, Path(n): Path<u64>) -> Json<Value> {
    calls.stock.fetch_add(1, Ordering::Relaxed);
    Json(json!({ "item": n, "in_stock": !n.is_multiple_of(7) }))
}

async fn event(State(calls): State<Arc<Calls>>, Json(event): Json<Value>) -> (StatusCode, Json<Value>) {
    calls.events.fetch_add(1, Ordering::Relaxed);
    (StatusCode::ACCEPTED, Json(json!({ "recorded": event })))
}

//! The profile admin API, served beside `/healthz` and `/metrics`. Writes go to the
//! profile topic, so every replica (this one included) applies them the same way.
//!
//! - `POST /v1/profiles`: create or replace a profile (JSON); 202 once the topic has it.
//! - `GET /v1/profiles`: the profiles this replica is applying.
//! - `GET /v1/profiles/{id}/status`: per target rate, errors, timeouts, shed, circuit
//!   state, and this replica's consumer lag.
//! - `POST /v1/profiles/{id}/faults`: replace a profile's injected faults.
//! - `DELETE /v1/profiles/{id}`: remove a profile.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rdkafka::consumer::Consumer as _;
use serde::Serialize;
use shadowdiff_core::event::now_ms;
use shadowdiff_runtime::kafka::Consumer;

use crate::consume::Targets;
use crate::profile::store::{ProfileStore, ProfileWriter};
use crate::profile::{Faults, Profile};
use crate::target::TargetStatus;

#[derive(Clone)]
pub(crate) struct ApiState {
    pub(crate) store: Arc<ProfileStore>,
    pub(crate) writer: ProfileWriter,
    pub(crate) targets: Arc<Targets>,
    pub(crate) consumer: Arc<Consumer>,
}

pub(crate) fn router(state: ApiState) -> Router {
    Router::new()
        .route("/v1/profiles", post(put).get(list))
        .route("/v1/profiles/{id}", axum::routing::delete(delete))
        .route("/v1/profiles/{id}/status", get(status))
        .route("/v1/profiles/{id}/faults", post(faults))
        .with_state(state)
}

#[derive(Debug)]
enum ApiError {
    Invalid(Vec<String>),
    NotFound(String),
    Unavailable(rdkafka::error::KafkaError),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            Self::Invalid(problems) => {
                (StatusCode::BAD_REQUEST, Json(serde_json::json!({ "error": "invalid profile", "problems": problems })))
                    .into_response()
            }
            Self::NotFound(id) => {
                (StatusCode::NOT_FOUND, Json(serde_json::json!({ "error": format!("no profile {id:?}") })))
                    .into_response()
            }
            Self::Unavailable(error) => {
                tracing::error!(%error, "cannot write to the profile topic");
                (StatusCode::SERVICE_UNAVAILABLE, Json(serde_json::json!({ "error": "profile topic unavailable" })))
                    .into_response()
            }
        }
    }
}

/// A JSON body that did not parse is a 400 with serde's reason, like any other bad profile.
fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::Invalid(vec![e.to_string()]))
}

async fn put(State(state): State<ApiState>, body: axum::body::Bytes) -> Result<impl IntoResponse, ApiError> {
    let profile: Profile = parse(&body)?;
    let problems = profile.problems();
    if !problems.is_empty() {
        return Err(ApiError::Invalid(problems));
    }
    let profile = profile.applied_at(now_ms());
    state.writer.put(&profile).await.map_err(ApiError::Unavailable)?;
    Ok((StatusCode::ACCEPTED, Json(profile)))
}

#[derive(Serialize)]
struct Listed {
    #[serde(flatten)]
    profile: Profile,
    expired: bool,
}

async fn list(State(state): State<ApiState>) -> Json<Vec<Listed>> {
    let now = now_ms();
    Json(state.store.all().iter().map(|p| Listed { expired: p.expired(now), profile: (**p).clone() }).collect())
}

async fn delete(State(state): State<ApiState>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    state.store.get(&id).ok_or_else(|| ApiError::NotFound(id.clone()))?;
    state.writer.delete(&id).await.map_err(ApiError::Unavailable)?;
    Ok(StatusCode::ACCEPTED)
}

async fn faults(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let faults: Faults = parse(&body)?;
    let current = state.store.get(&id).ok_or_else(|| ApiError::NotFound(id.clone()))?;
    let profile = Profile { faults, ..(*current).clone() };
    let problems = profile.problems();
    if !problems.is_empty() {
        return Err(ApiError::Invalid(problems));
    }
    state.writer.put(&profile).await.map_err(ApiError::Unavailable)?;
    Ok((StatusCode::ACCEPTED, Json(profile)))
}

#[derive(Serialize)]
struct Status {
    id: String,
    enabled: bool,
    expired: bool,
    stage: &'static str,
    targets: Vec<TargetStatus>,
    /// Requests not yet consumed by this replica, over its assigned partitions.
    consumer_lag: Option<i64>,
}

async fn status(State(state): State<ApiState>, Path(id): Path<String>) -> Result<Json<Status>, ApiError> {
    let profile = state.store.get(&id).ok_or_else(|| ApiError::NotFound(id.clone()))?;
    let consumer = state.consumer.clone();
    let consumer_lag = tokio::task::spawn_blocking(move || lag(&consumer)).await.ok().flatten();
    let mut targets: Vec<TargetStatus> = state.targets.of(&id).iter().map(|t| t.status()).collect();
    targets.sort_by(|a, b| a.name().cmp(b.name()));
    Ok(Json(Status {
        id,
        enabled: profile.enabled,
        expired: profile.expired(now_ms()),
        stage: profile.stage.as_str(),
        targets,
        consumer_lag,
    }))
}

/// High watermark minus position, summed over the assigned partitions (blocking).
fn lag(consumer: &Consumer) -> Option<i64> {
    let assignment = consumer.assignment().ok()?;
    let positions = consumer.position().ok()?;
    let mut total = 0;
    for element in assignment.elements() {
        let (_, high) = consumer.fetch_watermarks(element.topic(), element.partition(), Duration::from_secs(2)).ok()?;
        let position = positions
            .find_partition(element.topic(), element.partition())
            .and_then(|p| p.offset().to_raw())
            .filter(|offset| *offset >= 0);
        // Nothing consumed yet on this partition: all of it is lag.
        total += high - position.unwrap_or(0);
    }
    Some(total)
}

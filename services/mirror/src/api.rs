//! The profile admin API, served beside `/healthz` and `/metrics`. Writes go to the
//! profile topic, so every replica (this one included) applies them the same way. Every
//! route needs a token (see `runtime::auth`): `read` to look, `write` to change.
//!
//! - `POST /v1/profiles` (write): create or replace a profile (JSON); 202 once the topic
//!   has it.
//! - `GET /v1/profiles` (read): the profiles this replica is applying.
//! - `GET /v1/profiles/{id}/status` (read): per target rate, errors, timeouts, shed,
//!   circuit state, and this replica's consumer lag.
//! - `GET /v1/profiles/{id}/history` (read): who changed the profile, when, how, and the
//!   version before, newest first.
//! - `POST /v1/profiles/{id}/faults` (write): replace a profile's injected faults.
//! - `DELETE /v1/profiles/{id}` (write): remove a profile.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use rdkafka::consumer::Consumer as _;
use serde::Serialize;
use shadowdiff_core::event::now_ms;
use shadowdiff_runtime::auth::{Auth, Principal, Scope, require};
use shadowdiff_runtime::kafka::Consumer;

use crate::profile::store::{Action, Change, ProfileStore, ProfileWriter};
use crate::profile::{Faults, Profile, bounds};
use crate::target::TargetStatus;
use crate::target::Targets;

#[derive(Clone)]
pub(crate) struct ApiState {
    pub(crate) store: Arc<ProfileStore>,
    pub(crate) writer: ProfileWriter,
    pub(crate) targets: Arc<Targets>,
    pub(crate) consumer: Arc<Consumer>,
    pub(crate) auth: Arc<Auth>,
}

pub(crate) fn router(state: ApiState) -> Router {
    let (read, write) =
        (|route| require(route, &state.auth, Scope::Read), |route| require(route, &state.auth, Scope::Write));
    Router::new()
        .route("/v1/profiles", write(post(put)).merge(read(get(list))))
        .route("/v1/profiles/{id}", write(delete(remove)))
        .route("/v1/profiles/{id}/status", read(get(status)))
        .route("/v1/profiles/{id}/history", read(get(history)))
        .route("/v1/profiles/{id}/faults", write(post(faults)))
        .layer(DefaultBodyLimit::max(bounds::JSON_BYTES))
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

/// Writes `profile` (or its deletion) to the topic, with this change in its history.
async fn record(
    state: &ApiState,
    id: &str,
    profile: Option<&Profile>,
    by: Principal,
    action: Action,
) -> Result<(), ApiError> {
    let previous = state.store.get(id).map(|p| (*p).clone());
    let change = Change { at_ms: now_ms(), by: by.name.clone(), action, previous };
    state.writer.write(id, profile, state.store.history(id), change).await.map_err(ApiError::Unavailable)?;
    crate::events::profile_written(id, action, &by.name);
    Ok(())
}

async fn put(
    State(state): State<ApiState>,
    Extension(by): Extension<Principal>,
    body: axum::body::Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let profile: Profile = parse(&body)?;
    let problems = profile.problems(state.store.policy());
    if !problems.is_empty() {
        return Err(ApiError::Invalid(problems));
    }
    let profile = profile.applied_at(now_ms());
    record(&state, &profile.id.clone(), Some(&profile), by, Action::Put).await?;
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

async fn remove(
    State(state): State<ApiState>,
    Extension(by): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.store.get(&id).ok_or_else(|| ApiError::NotFound(id.clone()))?;
    record(&state, &id, None, by, Action::Delete).await?;
    Ok(StatusCode::ACCEPTED)
}

async fn faults(
    State(state): State<ApiState>,
    Extension(by): Extension<Principal>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let faults: Faults = parse(&body)?;
    let current = state.store.get(&id).ok_or_else(|| ApiError::NotFound(id.clone()))?;
    let profile = Profile { faults, ..(*current).clone() };
    let problems = profile.problems(state.store.policy());
    if !problems.is_empty() {
        return Err(ApiError::Invalid(problems));
    }
    record(&state, &id, Some(&profile), by, Action::Faults).await?;
    Ok((StatusCode::ACCEPTED, Json(profile)))
}

#[derive(Serialize)]
struct History {
    id: String,
    current: Option<Profile>,
    /// Newest first.
    changes: Vec<Change>,
}

async fn history(State(state): State<ApiState>, Path(id): Path<String>) -> Result<Json<History>, ApiError> {
    let current = state.store.get(&id).map(|p| (*p).clone());
    let mut changes = state.store.history(&id);
    if current.is_none() && changes.is_empty() {
        return Err(ApiError::NotFound(id));
    }
    changes.reverse();
    Ok(Json(History { id, current, changes }))
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

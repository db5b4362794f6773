//! The HTTP API and the drill-down pages. Every route needs the `read` scope (see
//! `runtime::auth`): a bearer token, or a user vouched for by the SSO proxy for pages.
//!
//! - `GET /v1/verdict?candidate=&stage=&since=`: the verdict report (Argo Rollouts web metric).
//! - `POST /v1/flagger/gate` and `POST /v1/flagger/check`: Flagger webhooks. Flagger sends
//!   no headers, so these also take the token as `metadata.token`.
//! - `GET /v1/exchanges/{request_id}`: every leg, difference and sampled body of a request.
//! - `GET /exchanges/{request_id}`: the same, as a page with the bodies side by side.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use shadowdiff_runtime::auth::{Auth, Denied, Scope, protect};

use shadowdiff_store::VerdictRow;

use crate::evaluate::Decision;
use crate::gate::{Gates, STAGES};
use crate::page;
use crate::query::{self, ExchangeDetail, Window};
use crate::report::{self, VerdictReport};

#[derive(Clone)]
pub struct AppState {
    clickhouse: clickhouse::Client,
    gates: Arc<Gates>,
    auth: Arc<Auth>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").field("gates", &self.gates).finish_non_exhaustive()
    }
}

impl AppState {
    pub fn new(clickhouse: clickhouse::Client, gates: Gates, auth: Arc<Auth>) -> Self {
        Self { clickhouse, gates: Arc::new(gates), auth }
    }
}

pub fn app(state: AppState) -> Router {
    let read = Router::new()
        .route("/v1/verdict", get(verdict))
        .route("/v1/exchanges/{request_id}", get(exchange))
        .route("/exchanges/{request_id}", get(exchange_page));
    // The Flagger hooks check credentials themselves: the token may be in the payload.
    protect(read, &state.auth, Scope::Read).route("/v1/flagger/{hook}", post(flagger)).with_state(state)
}

/// What a client did wrong, or what went wrong here. Causes of 5xx stay in the log.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Denied(#[from] Denied),
    #[error("no comparison stored for request {0}")]
    NotFound(String),
    #[error("comparison store unavailable")]
    Store(#[source] clickhouse::error::Error),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::Denied(denied) => return denied.into_response(),
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Store(error) => {
                tracing::error!(%error, "clickhouse query failed");
                StatusCode::SERVICE_UNAVAILABLE
            }
        };
        (status, Json(serde_json::json!({ "error": self.to_string() }))).into_response()
    }
}

#[derive(Debug, Deserialize)]
pub struct VerdictParams {
    candidate: Option<String>,
    stage: Option<String>,
    since: Option<String>,
}

async fn verdict(
    State(state): State<AppState>,
    Query(params): Query<VerdictParams>,
) -> Result<Json<VerdictReport>, ApiError> {
    let window = window(params.candidate, params.stage, params.since.as_deref())?;
    Ok(Json(judge(&state, window, "api").await?))
}

/// Judges `window` under its stage's gate, and records the verdict in `verdicts` (in the
/// background: the answer never waits on, or fails for, the record).
async fn judge(state: &AppState, window: Window, caller: &'static str) -> Result<VerdictReport, ApiError> {
    let stage = window.stage.as_deref().unwrap_or("shadow");
    let policy = state.gates.for_stage(stage).ok_or_else(|| unknown_stage(stage))?;
    let report = report::build(&state.clickhouse, window, policy).await.map_err(ApiError::Store)?;
    crate::events::given(report.verdict.as_str(), caller);
    let record = report::record(&report, caller);
    let clickhouse = state.clickhouse.clone();
    tokio::spawn(async move {
        if let Err(error) = shadowdiff_store::insert::<VerdictRow, _>(&clickhouse, "verdicts", &[record]).await {
            crate::events::record_failed(&error);
        }
    });
    Ok(report)
}

/// Checks and parses the parameters shared by every verdict entry point.
fn window(candidate: Option<String>, stage: Option<String>, since: Option<&str>) -> Result<Window, ApiError> {
    let candidate = candidate.unwrap_or_default();
    if candidate.is_empty() || candidate.len() > 128 {
        return Err(ApiError::BadRequest("candidate is required: 1 to 128 characters".into()));
    }
    let stage = stage.filter(|s| !s.is_empty());
    if let Some(stage) = &stage
        && !STAGES.contains(&stage.as_str())
    {
        return Err(unknown_stage(stage));
    }
    let since = match since.filter(|s| !s.is_empty()) {
        None => 0,
        Some(since) => parse_since(since, SystemTime::now())
            .ok_or_else(|| ApiError::BadRequest(format!(
                "since {since:?} is neither an RFC 3339 time (2026-11-24T10:00:00Z), Unix seconds, nor a duration ago (15m, 2h)"
            )))?,
    };
    Ok(Window { candidate, stage, since })
}

fn unknown_stage(stage: &str) -> ApiError {
    ApiError::BadRequest(format!("stage {stage:?} is not one of {}", STAGES.join(", ")))
}

/// `since` as Unix seconds: an RFC 3339 time, Unix seconds, or a duration before `now`.
fn parse_since(since: &str, now: SystemTime) -> Option<u32> {
    let at = if let Ok(secs) = since.parse::<u64>() {
        UNIX_EPOCH + Duration::from_secs(secs)
    } else if let Ok(at) = humantime::parse_rfc3339_weak(since) {
        at
    } else {
        now.checked_sub(humantime::parse_duration(since).ok()?)?
    };
    u32::try_from(at.duration_since(UNIX_EPOCH).ok()?.as_secs()).ok()
}

/// Flagger's webhook payload. Flagger reads only the status code of the answer.
#[derive(Debug, Deserialize)]
pub struct FlaggerHook {
    name: String,
    #[serde(default)]
    #[allow(dead_code)] // part of the contract; the candidate comes from metadata or name
    namespace: String,
    #[serde(default)]
    phase: String,
    #[serde(default)]
    metadata: std::collections::HashMap<String, String>,
}

/// `gate`, for `confirm-rollout`, `confirm-traffic-increase` and `confirm-promotion` hooks:
/// 200 only on pass, so Flagger waits on inconclusive and on fail (pair it with `check`).
/// `check`, for `pre-rollout` and `rollout` hooks: non-2xx only on fail, which Flagger counts
/// toward the canary's failure threshold and then rolls back.
async fn flagger(
    State(state): State<AppState>,
    Path(hook): Path<String>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    payload: Result<Json<FlaggerHook>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let from_headers = state.auth.check(&headers, peer.map(|p| p.0.0.ip()), Scope::Read);
    // The token is taken out of the metadata at once, so no later use of the payload can
    // print it.
    let payload = match (from_headers, payload) {
        (Ok(_), Ok(Json(mut payload))) => {
            payload.metadata.remove("token");
            payload
        }
        (Err(denied), Ok(Json(mut payload))) => match payload.metadata.remove("token") {
            Some(token) => {
                state.auth.token(&token, Scope::Read)?;
                payload
            }
            None => return Err(denied.into()),
        },
        // Who cannot authenticate learns nothing about the payload's shape.
        (Err(denied), Err(_)) => return Err(denied.into()),
        (Ok(_), Err(e)) => return Err(ApiError::BadRequest(format!("flagger payload: {}", e.body_text()))),
    };
    let passes: fn(Decision) -> bool = match hook.as_str() {
        "gate" => |d| d == Decision::Pass,
        "check" => |d| d != Decision::Fail,
        other => return Err(ApiError::BadRequest(format!("unknown flagger hook {other:?}: use gate or check"))),
    };
    let candidate = payload.metadata.get("candidate").cloned().unwrap_or(payload.name);
    let window = window(
        Some(candidate),
        payload.metadata.get("stage").cloned(),
        payload.metadata.get("since").map(String::as_str),
    )?;
    let caller = if hook == "gate" { "flagger-gate" } else { "flagger-check" };
    let report = judge(&state, window, caller).await?;
    let status = if passes(report.verdict) { StatusCode::OK } else { StatusCode::PRECONDITION_FAILED };
    tracing::info!(hook, phase = payload.phase, candidate = report.candidate, verdict = report.verdict.as_str(), %status, "flagger webhook");
    Ok((status, Json(report)).into_response())
}

async fn exchange(
    State(state): State<AppState>,
    Path(request_id): Path<String>,
) -> Result<Json<ExchangeDetail>, ApiError> {
    Ok(Json(detail(&state, &request_id).await?))
}

async fn detail(state: &AppState, request_id: &str) -> Result<ExchangeDetail, ApiError> {
    if request_id.is_empty() || request_id.len() > 128 {
        return Err(ApiError::BadRequest("request id must be 1 to 128 characters".into()));
    }
    let detail = query::exchange(&state.clickhouse, request_id).await.map_err(ApiError::Store)?;
    if detail.legs.is_empty() {
        return Err(ApiError::NotFound(request_id.to_owned()));
    }
    Ok(detail)
}

#[derive(Debug, Deserialize)]
pub struct PageParams {
    candidate: Option<String>,
}

async fn exchange_page(
    State(state): State<AppState>,
    Path(request_id): Path<String>,
    Query(params): Query<PageParams>,
) -> Response {
    match detail(&state, &request_id).await {
        Ok(detail) => Html(page::render(&detail, params.candidate.as_deref())).into_response(),
        Err(error) => {
            let status = error.into_response().status();
            (status, Html(page::error(&request_id, status))).into_response()
        }
    }
}

#[cfg(test)]
mod tests;

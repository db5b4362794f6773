//! The HTTP API and the drill-down pages. Every route needs the `read` scope (see
//! `runtime::auth`): a bearer token, or a user vouched for by the SSO proxy for pages.
//!
//! - `GET /v1/verdict?candidate=&stage=&revision=&since=`: the verdict report (Argo Rollouts
//!   web metric). `stage` chooses the gate; `revision` names the release, whose comparisons
//!   alone are judged (see `release`); `since` starts the window at a given time.
//! - `POST /v1/flagger/gate` and `POST /v1/flagger/check`: Flagger webhooks. The release is
//!   Flagger's `checksum`. Flagger sends no headers, so these also take the token as
//!   `metadata.token`.
//! - `GET /v1/suggestions?candidate=&since=`: ignore rules for what the noise model keeps
//!   classifying as noise, as correlator config (`suggest`).
//! - `GET /v1/acceptances?candidate=`: each accepted path of a candidate and its state.
//!   `POST /v1/acceptances` (`{candidate, route, path, reason, expires}`) accepts a path's
//!   differences as intended, `POST /v1/acceptances/revoke` (`{candidate, route, path,
//!   reason}`) takes that back; both need the `write` scope (`accept`).
//! - `GET /v1/exchanges/{request_id}`: every leg, difference and sampled body of a request.
//! - `GET /exchanges/{request_id}`: the same, as a page with the bodies side by side.
//! - `GET /` and `GET /candidates/{candidate}`: the console's pages (`console`), and its
//!   sign-in form, the only page open to anyone.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use shadowdiff_runtime::auth::{Auth, Denied, Principal, Scope, protect, require};

use shadowdiff_store::VerdictRow;

use crate::accept::ChangeRequest;
use crate::config::VerdictSection;
use crate::console::exchange as page;
use crate::evaluate::Decision;
use crate::gate::{Gates, STAGES};
use crate::query::{self, ExchangeDetail, Window};
use crate::report::{self, VerdictReport};

#[derive(Clone)]
pub struct AppState {
    clickhouse: clickhouse::Client,
    gates: Arc<Gates>,
    /// Judged when the caller names neither a release nor a start.
    default_window: Duration,
    /// The oldest comparison any verdict reads; zero for no bound.
    max_window: Duration,
    auth: Arc<Auth>,
    /// The mirror's admin API, for the console's profile pages; `None` when not configured.
    mirror: Option<crate::console::Mirror>,
    /// Each candidate's verdict at its current stage, as the gauges last judged it.
    judged: crate::gauges::Judged,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").field("gates", &self.gates).finish_non_exhaustive()
    }
}

impl AppState {
    pub(crate) fn clickhouse(&self) -> &clickhouse::Client {
        &self.clickhouse
    }

    pub(crate) fn auth(&self) -> &Auth {
        &self.auth
    }

    pub(crate) fn judged(&self) -> &crate::gauges::Judged {
        &self.judged
    }

    pub(crate) fn mirror(&self) -> Option<&crate::console::Mirror> {
        self.mirror.as_ref()
    }

    /// This state, with the console's profile pages reaching the mirror `console` names.
    #[must_use]
    pub fn with_console(self, console: &crate::config::ConsoleSection) -> Self {
        Self { mirror: crate::console::Mirror::new(console), ..self }
    }

    pub fn new(clickhouse: clickhouse::Client, verdict: VerdictSection, auth: Arc<Auth>) -> Self {
        Self {
            clickhouse,
            gates: Arc::new(verdict.gates),
            default_window: verdict.default_window,
            max_window: verdict.max_window,
            auth,
            mirror: None,
            judged: crate::gauges::Judged::default(),
        }
    }
}

pub fn app(state: AppState) -> Router {
    let read = Router::new()
        .route("/v1/verdict", get(verdict))
        .route("/v1/suggestions", get(suggestions))
        .route("/v1/exchanges/{request_id}", get(exchange))
        .route("/exchanges/{request_id}", get(exchange_page))
        .route("/v1/acceptances", get(acceptances))
        .route("/", get(crate::console::overview))
        .route("/candidates/{candidate}", get(crate::console::candidate))
        .route("/comparisons", get(crate::console::comparisons))
        .route("/profiles", get(crate::console::profiles::profiles))
        .route("/profiles/new", get(crate::console::profiles::new_profile))
        .route("/profiles/{id}/edit", get(crate::console::profiles::edit_profile));
    let write = Router::new()
        .route(
            "/profiles",
            require(crate::console::change(crate::console::profiles::save_profile), &state.auth, Scope::Write),
        )
        .route(
            "/profiles/{id}/faults",
            require(crate::console::change(crate::console::profiles::change_faults), &state.auth, Scope::Write),
        )
        .route(
            "/profiles/{id}/stage",
            require(crate::console::change(crate::console::profiles::set_stage), &state.auth, Scope::Write),
        )
        .route(
            "/profiles/{id}/delete",
            require(crate::console::change(crate::console::profiles::delete_profile), &state.auth, Scope::Write),
        )
        .route(
            "/candidates/{candidate}/accept",
            require(crate::console::change(crate::console::accept), &state.auth, Scope::Write),
        )
        .route("/v1/acceptances", require(post(accept), &state.auth, Scope::Write))
        .route("/v1/acceptances/revoke", require(post(revoke), &state.auth, Scope::Write));
    let sign_in = Router::new()
        .route(
            "/sign-in",
            get(crate::console::sign_in::form).merge(crate::console::change(crate::console::sign_in::sign_in)),
        )
        .route("/sign-out", crate::console::change(crate::console::sign_in::sign_out));
    // The Flagger hooks check credentials themselves: the token may be in the payload.
    protect(read, &state.auth, Scope::Read)
        .layer(axum::middleware::from_fn_with_state(READ_TIME, within_time))
        .layer(axum::middleware::from_fn(crate::console::sign_in::to_sign_in))
        .merge(write)
        .merge(sign_in)
        .route("/v1/flagger/{hook}", post(flagger))
        .with_state(state)
}

/// The longest any read (a verdict, a page) takes before it is answered with a 503.
const READ_TIME: Duration = Duration::from_secs(30);

/// Answers within [`READ_TIME`], or with a 503 saying so (a page for a browser): a query the
/// store is slow to answer never holds a CD system's poll or a person's tab indefinitely.
async fn within_time(
    State(limit): State<Duration>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let page = crate::console::wants_page(request.headers());
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            let status = StatusCode::SERVICE_UNAVAILABLE;
            let message = format!("not answered within {limit:?}: the comparison store is slow");
            if page {
                (status, Html(crate::console::error_page(status, &message))).into_response()
            } else {
                (status, Json(serde_json::json!({ "error": message }))).into_response()
            }
        }
    }
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
    #[error("comparison store unavailable")]
    Stored(#[source] shadowdiff_store::StoreError),
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
            Self::Stored(error) => {
                tracing::error!(%error, "comparison store call failed");
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
    revision: Option<String>,
    since: Option<String>,
    /// A replay run (`shadowctl replay`) to judge instead of the live traffic.
    run: Option<String>,
}

async fn verdict(
    State(state): State<AppState>,
    Query(params): Query<VerdictParams>,
) -> Result<Json<VerdictReport>, ApiError> {
    let ask =
        Ask::parse(params.candidate, params.stage, params.revision, params.since.as_deref())?.of_run(params.run)?;
    Ok(Json(judge(&state, ask, "api").await?))
}

#[derive(Debug, Deserialize)]
pub struct SuggestParams {
    candidate: Option<String>,
    since: Option<String>,
}

/// Ignore-rule suggestions for the candidate's comparisons since `since` (default: the
/// default window): never applied, only proposed.
async fn suggestions(
    State(state): State<AppState>,
    Query(params): Query<SuggestParams>,
) -> Result<Json<crate::suggest::Suggestions>, ApiError> {
    let ask = Ask::parse(params.candidate, None, None, params.since.as_deref())?;
    let window = resolve(&state, &ask, "api").await?;
    let mut paths = query::noisy_paths(&state.clickhouse, &window, 100).await.map_err(ApiError::Store)?;
    // An array in random order: keyed when a sampled body of its route shows an element key.
    for path in paths.iter_mut().filter(|p| p.kind == "order_only") {
        let bodies =
            query::primary_bodies(&state.clickhouse, &window, &path.route, 3).await.map_err(ApiError::Store)?;
        if let Some(key) = bodies.iter().find_map(|body| crate::suggest::element_key(body, &path.path)) {
            path.key = key;
        }
    }
    Ok(Json(crate::suggest::suggest(paths)))
}

/// What a caller asks to be judged, checked: every verdict entry point parses into this.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Ask {
    candidate: String,
    stage: &'static str,
    revision: Option<String>,
    /// Unix seconds.
    since: Option<u32>,
    /// A replay run; none for the live traffic.
    run: Option<String>,
}

impl Ask {
    /// This ask about replay run `run` (none or empty: the live traffic). A run is no
    /// rollout: it has no release, and its verdict is recorded nowhere.
    fn of_run(self, run: Option<String>) -> Result<Self, ApiError> {
        let Some(run) = run.filter(|r| !r.is_empty()) else { return Ok(self) };
        if shadowdiff_core::RequestId::parse(&run).is_err() || run.len() > 64 || run.contains(':') {
            return Err(ApiError::BadRequest("run must be 1 to 64 of A-Z a-z 0-9 - _ . + / =".into()));
        }
        if self.revision.is_some() {
            return Err(ApiError::BadRequest("a run is judged on its own: give run or revision, not both".into()));
        }
        Ok(Self { run: Some(run), ..self })
    }

    fn parse(
        candidate: Option<String>,
        stage: Option<String>,
        revision: Option<String>,
        since: Option<&str>,
    ) -> Result<Self, ApiError> {
        let candidate = checked_candidate(candidate)?;
        let stage = match stage.filter(|s| !s.is_empty()) {
            None => STAGES[0],
            Some(stage) => STAGES.iter().copied().find(|s| *s == stage).ok_or_else(|| unknown_stage(&stage))?,
        };
        let revision = revision.filter(|r| !r.is_empty());
        if let Some(revision) = &revision
            && (revision.len() > 128 || revision.chars().any(char::is_control))
        {
            return Err(ApiError::BadRequest("revision must be 1 to 128 printable characters".into()));
        }
        let since = since
            .filter(|s| !s.is_empty())
            .map(|since| {
                parse_since(since, SystemTime::now()).ok_or_else(|| ApiError::BadRequest(format!(
                    "since {since:?} is neither an RFC 3339 time (2026-11-24T10:00:00Z), Unix seconds, nor a duration ago (15m, 2h)"
                )))
            })
            .transpose()?;
        Ok(Self { candidate, stage, revision, since, run: None })
    }
}

/// The window `ask` covers (see [`window_start`]), asking the store for its release's first ask.
async fn resolve(state: &AppState, ask: &Ask, caller: &str) -> Result<Window, ApiError> {
    let now = unix_now();
    // Comparisons are stamped to the second: the release's window starts at the second after
    // its first ask, so no request of the second it was rolled out in counts.
    let first_asked = match &ask.revision {
        Some(revision) => Some(
            crate::release::first_asked(&state.clickhouse, &ask.candidate, revision, caller, now)
                .await
                .map_err(ApiError::Stored)?
                .saturating_add(1),
        ),
        None => None,
    };
    // A run is judged on all of its rows, however long ago it was replayed, within the
    // longest window (a `since` of 0 is bounded by it).
    let since = if ask.run.is_some() { ask.since.or(Some(0)) } else { ask.since };
    let since = window_start(first_asked, since, now, state.default_window, state.max_window);
    Ok(Window {
        candidate: ask.candidate.clone(),
        revision: ask.revision.clone(),
        since,
        run: ask.run.clone().unwrap_or_default(),
    })
}

/// From the release's first ask and the caller's `since`, whichever is later; with neither,
/// `default` before `now`; never further back than `max` before `now` (zero: no bound).
pub(crate) fn window_start(
    first_asked: Option<u32>,
    since: Option<u32>,
    now: u32,
    default: Duration,
    max: Duration,
) -> u32 {
    let ago = |d: Duration| now.saturating_sub(u32::try_from(d.as_secs()).unwrap_or(u32::MAX));
    let start = match (first_asked, since) {
        (None, None) => ago(default),
        (first, since) => first.unwrap_or(0).max(since.unwrap_or(0)),
    };
    if max.is_zero() { start } else { start.max(ago(max)) }
}

pub(crate) fn unix_now() -> u32 {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    u32::try_from(secs).unwrap_or(u32::MAX)
}

/// The report on `ask` under its stage's gate, recorded nowhere.
async fn build(state: &AppState, ask: &Ask, caller: &str) -> Result<VerdictReport, ApiError> {
    let policy = state.gates.judging(ask.stage, ask.run.is_some()).ok_or_else(|| unknown_stage(ask.stage))?;
    let window = resolve(state, ask, caller).await?;
    let acceptances =
        crate::accept::active(&state.clickhouse, &ask.candidate, unix_now()).await.map_err(ApiError::Stored)?;
    report::build(&state.clickhouse, window, ask.stage, &policy, &acceptances).await.map_err(ApiError::Store)
}

/// The report a page shows: checked like the API's parameters, and recorded nowhere.
pub(crate) async fn report(
    state: &AppState,
    candidate: Option<String>,
    stage: Option<String>,
    since: Option<&str>,
    caller: &str,
) -> Result<VerdictReport, ApiError> {
    build(state, &Ask::parse(candidate, stage, None, since)?, caller).await
}

/// The report on `candidate` as its CD system last asked about it: at that stage, for that
/// release (`shadow` and the default window when nothing asked yet); recorded nowhere.
pub(crate) async fn as_last_asked(
    state: &AppState,
    candidate: &crate::query::Candidate,
) -> Result<VerdictReport, ApiError> {
    let ask = Ask::parse(
        Some(candidate.candidate.clone()),
        Some(candidate.stage.clone()),
        Some(candidate.revision.clone()),
        None,
    )?;
    build(state, &ask, "gauges").await
}

/// Unix seconds: where a page's window starts, from its `since` (empty: the default window),
/// never further back than the longest window.
pub(crate) fn since(state: &AppState, since: &str) -> Result<u32, ApiError> {
    let given = if since.is_empty() {
        None
    } else {
        Some(parse_since(since, SystemTime::now()).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "since {since:?} is neither an RFC 3339 time, Unix seconds, nor a duration ago (15m, 2h)"
            ))
        })?)
    };
    Ok(window_start(None, given, unix_now(), state.default_window, state.max_window))
}

/// Unix seconds: where a window with neither a release nor a `since` starts now.
pub(crate) fn default_start(state: &AppState) -> u32 {
    window_start(None, None, unix_now(), state.default_window, state.max_window)
}

/// Judges `ask` under its stage's gate, and records the verdict in `verdicts` (in the
/// background: the answer never waits on, or fails for, the record).
async fn judge(state: &AppState, ask: Ask, caller: &'static str) -> Result<VerdictReport, ApiError> {
    let report = build(state, &ask, caller).await?;
    if ask.run.is_some() {
        return Ok(report);
    }
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
    /// Flagger's hash of the canary's spec and tracked configs: the release.
    #[serde(default)]
    checksum: String,
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
    let mut metadata = payload.metadata;
    let candidate = metadata.remove("candidate").unwrap_or(payload.name);
    let revision = metadata.remove("revision").or(Some(payload.checksum));
    let ask =
        Ask::parse(Some(candidate), metadata.remove("stage"), revision, metadata.get("since").map(String::as_str))?;
    let caller = if hook == "gate" { "flagger-gate" } else { "flagger-check" };
    let report = judge(&state, ask, caller).await?;
    let status = if passes(report.verdict) { StatusCode::OK } else { StatusCode::PRECONDITION_FAILED };
    tracing::info!(hook, phase = payload.phase, candidate = report.candidate, verdict = report.verdict.as_str(), %status, "flagger webhook");
    Ok((status, Json(report)).into_response())
}

#[derive(Debug, Deserialize)]
pub struct AcceptancesParams {
    candidate: Option<String>,
}

async fn acceptances(
    State(state): State<AppState>,
    Query(params): Query<AcceptancesParams>,
) -> Result<Json<Vec<crate::accept::Listed>>, ApiError> {
    let candidate = checked_candidate(params.candidate)?;
    let listed = crate::accept::list(&state.clickhouse, &candidate, unix_now()).await.map_err(ApiError::Stored)?;
    Ok(Json(listed))
}

async fn accept(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Json(body): Json<ChangeRequest>,
) -> Result<(StatusCode, Json<crate::accept::Listed>), ApiError> {
    let change = body.into_change(true).map_err(ApiError::BadRequest)?;
    let listed = crate::accept::record(&state.clickhouse, change, &principal.name, unix_now())
        .await
        .map_err(ApiError::Stored)?;
    Ok((StatusCode::CREATED, Json(listed)))
}

async fn revoke(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Json(body): Json<ChangeRequest>,
) -> Result<Json<crate::accept::Listed>, ApiError> {
    let change = body.into_change(false).map_err(ApiError::BadRequest)?;
    let listed = crate::accept::record(&state.clickhouse, change, &principal.name, unix_now())
        .await
        .map_err(ApiError::Stored)?;
    Ok(Json(listed))
}

fn checked_candidate(candidate: Option<String>) -> Result<String, ApiError> {
    crate::accept::checked_candidate(candidate.unwrap_or_default()).map_err(ApiError::BadRequest)
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

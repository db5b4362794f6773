//! The console: pages for people, on the verdict service's port, with the API's `read`
//! scope (a browser comes through the SSO proxy, `[auth.proxy]`).
//!
//! - `GET /`: every candidate with comparisons in the default window, its verdict now at its
//!   current stage (as `gauges` last judged it), the latest verdict given (to a CD system or
//!   a person), and sparklines; each links to its page.
//! - `GET /candidates/{candidate}?stage=&since=`: the candidate's verdict now, at a stage's
//!   gate: every criterion with its value, interval, threshold and reason; the systematic,
//!   differing and accepted paths with example requests (each opens the drill-down page);
//!   the worst routes; and the stage history, the verdicts given from the `verdicts` table.
//! - `GET /comparisons?candidate=&route=&path=&kind=&outcome=&noise=&status=&since=&before=`:
//!   the candidate's stored exchanges, filtered and paged on the server (`comparisons`);
//!   each opens the drill-down page.
//! - `POST /candidates/{candidate}/accept`: accepts a path's differences as intended, as
//!   `POST /v1/acceptances` does, from the forms on the candidate page.
//! - `GET /profiles`: the mirror's profiles with each target's live state; `POST
//!   /profiles/{id}/faults` and `POST /profiles/{id}/delete` change them (`profiles`).
//!
//! - `GET /sign-in`, `POST /sign-in`, `POST /sign-out`: a browser signs in with a token where
//!   no SSO proxy stands in front (`sign_in`).
//!
//! Every URL is a plain GET with its state in the query, so pages can be bookmarked and
//! shared and the browser's back button works. Viewing a page records no verdict.

mod charts;
mod comparisons;
pub(crate) mod exchange;
mod mirror;
mod profile_form;
pub(crate) mod profiles;
mod render;
pub(crate) mod sign_in;

pub(crate) use mirror::Mirror;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use clickhouse::Row;
use serde::Deserialize;

use shadowdiff_runtime::auth::Principal;

use crate::api::{self, ApiError, AppState};

/// Candidates the overview lists at most.
const MAX_CANDIDATES: u32 = 100;
/// Verdicts the stage history lists at most.
const MAX_HISTORY: u32 = 50;
/// Noise paths a candidate page lists at most.
const MAX_NOISE_PATHS: u32 = 20;

/// One verdict given, for the stage history.
#[derive(Debug, Clone, Row, Deserialize)]
pub(crate) struct Given {
    pub(crate) ts: u32,
    pub(crate) stage: String,
    pub(crate) verdict: String,
    pub(crate) caller: String,
    pub(crate) revision: String,
    pub(crate) reasons: String,
}

pub(crate) async fn overview(State(state): State<AppState>) -> Response {
    let since = api::default_start(&state);
    let page = async {
        let client = state.clickhouse();
        let listed = crate::query::candidates(client, since, MAX_CANDIDATES).await?;
        let trends = Trends::new(since, SPARK_BUCKETS);
        let buckets = crate::query::timeline(client, None, since, trends.step).await?;
        let judged = state.judged().read().map(|j| j.clone()).unwrap_or_default();
        Ok::<_, clickhouse::error::Error>(render::overview(&listed, &judged, &trends, &buckets))
    };
    match page.await {
        Ok(html) => Html(html).into_response(),
        Err(error) => failed(ApiError::Store(error)),
    }
}

/// Buckets in an overview's sparkline, and in a candidate page's charts.
const SPARK_BUCKETS: u32 = 24;
const CHART_BUCKETS: u32 = 60;

/// A window cut into buckets for the charts: from `since` to now, `step` seconds each.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Trends {
    pub(crate) since: u32,
    pub(crate) step: u32,
    pub(crate) until: u32,
}

impl Trends {
    fn new(since: u32, buckets: u32) -> Self {
        let until = api::unix_now().max(since + 1);
        Self { since, step: (until - since).div_ceil(buckets).max(1), until }
    }

    /// The middle of `bucket`, in Unix seconds.
    pub(crate) fn at(&self, bucket: u32) -> f64 {
        f64::from(self.since) + (f64::from(bucket) + 0.5) * f64::from(self.step)
    }

    pub(crate) fn span(&self) -> (f64, f64) {
        (f64::from(self.since), f64::from(self.until))
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct CandidateParams {
    stage: Option<String>,
    since: Option<String>,
}

pub(crate) async fn candidate(
    State(state): State<AppState>,
    Path(candidate): Path<String>,
    Query(params): Query<CandidateParams>,
) -> Response {
    let page = async {
        let client = state.clickhouse();
        let report = api::report(&state, Some(candidate.clone()), params.stage, params.since.as_deref(), "console");
        let history = client
            .query(&format!(
                "SELECT toUInt32(ts) AS ts, stage, verdict, caller, revision, reasons FROM verdicts \
                 WHERE candidate = ? ORDER BY ts DESC LIMIT {MAX_HISTORY}"
            ))
            .bind(&candidate)
            .fetch_all::<Given>();
        let (report, history) = tokio::try_join!(report, async { history.await.map_err(ApiError::Store) })?;
        let trends = Trends::new(report.since, CHART_BUCKETS);
        let window = crate::query::Window::live(&candidate, report.since);
        let (buckets, secondary, noise) = tokio::try_join!(
            crate::query::timeline(client, Some(&candidate), trends.since, trends.step),
            crate::query::secondary_timeline(client, &candidate, trends.since, trends.step),
            crate::query::noisy_paths(client, &window, MAX_NOISE_PATHS),
        )
        .map_err(ApiError::Store)?;
        let charts = render::Charts { trends, buckets: &buckets, secondary: &secondary };
        Ok::<_, ApiError>(render::candidate(&report, &history, &charts, &noise, params.since.as_deref()))
    };
    match page.await {
        Ok(html) => Html(html).into_response(),
        Err(error) => failed(error),
    }
}

pub(crate) async fn comparisons(
    State(state): State<AppState>,
    Query(filters): Query<comparisons::Filters>,
) -> Response {
    let page = async {
        filters.check().map_err(ApiError::BadRequest)?;
        let since = api::since(&state, &filters.since)?;
        let mut rows: Vec<comparisons::Listed> =
            filters.query(state.clickhouse(), since).fetch_all().await.map_err(ApiError::Store)?;
        let more = rows.len() > comparisons::PAGE;
        rows.truncate(comparisons::PAGE);
        Ok::<_, ApiError>(render::comparisons(&filters, &rows, more, since))
    };
    match page.await {
        Ok(html) => Html(html).into_response(),
        Err(error) => failed(error),
    }
}

/// What the candidate page's accept form sends.
#[derive(Debug, Deserialize)]
pub(crate) struct AcceptForm {
    route: String,
    path: String,
    reason: String,
    #[serde(default)]
    expires: String,
}

/// Accepts a path's differences from the candidate page, as `POST /v1/acceptances` does, and
/// goes back to the page.
pub(crate) async fn accept(
    State(state): State<AppState>,
    Path(candidate): Path<String>,
    Extension(principal): Extension<Principal>,
    Form(form): Form<AcceptForm>,
) -> Response {
    let asked = crate::accept::ChangeRequest {
        candidate: candidate.clone(),
        route: form.route,
        path: form.path,
        reason: form.reason,
        expires: Some(form.expires).filter(|e| !e.is_empty()),
    };
    let change = match asked.into_change(true) {
        Ok(change) => change,
        Err(problem) => return failed(ApiError::BadRequest(problem)),
    };
    match crate::accept::record(state.clickhouse(), change, &principal.name, api::unix_now()).await {
        Ok(_) => Redirect::to(&format!("{}#accepted", render::candidate_href(&candidate, None))).into_response(),
        Err(error) => failed(ApiError::Stored(error)),
    }
}

/// Whether a state-changing request came from this site's own page: `Sec-Fetch-Site:
/// same-origin`, or, from a browser without fetch metadata, an `Origin` naming this host.
/// Every browser sends one of them with a form's POST, so a request with neither is no
/// browser's (an API client with a bearer token) and passes. This is the console's CSRF
/// check; the sign-in cookie's `SameSite=Strict` is a second one.
pub(super) fn same_site(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return site == "same-origin" || site == "none";
    }
    match (headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()), headers.get(header::HOST)) {
        (Some(origin), Some(host)) => {
            let host = host.to_str().unwrap_or_default();
            origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://")) == Some(host)
        }
        (Some(_), None) => false,
        (None, _) => true,
    }
}

/// A state-changing POST route: its handler runs only for a request from this console's own
/// pages (`same_site`), behind whatever credential check wraps it.
pub(crate) fn change<H, T>(handler: H) -> axum::routing::MethodRouter<AppState>
where
    H: axum::handler::Handler<T, AppState>,
    T: 'static,
{
    axum::routing::post(handler).route_layer(axum::middleware::from_fn(same_site_only))
}

async fn same_site_only(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    if same_site(request.headers()) { next.run(request).await } else { cross_site() }
}

fn cross_site() -> Response {
    let status = StatusCode::FORBIDDEN;
    (status, Html(render::error(status, "changes come only from this console's own pages"))).into_response()
}

/// Whether the request is a browser's asking for a page (it accepts HTML), rather than an
/// API client's.
pub(crate) fn wants_page(headers: &HeaderMap) -> bool {
    headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|accept| accept.contains("text/html"))
}

/// An error as a console page.
pub(crate) fn error_page(status: StatusCode, message: &str) -> String {
    render::error(status, message)
}

/// The error as a page, with the API's status.
fn failed(error: ApiError) -> Response {
    let message = error.to_string();
    let status = error.into_response().status();
    let status = if status.is_success() { StatusCode::INTERNAL_SERVER_ERROR } else { status };
    (status, Html(render::error(status, &message))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_sites_pages_may_change_state() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut map = HeaderMap::new();
            for (k, v) in pairs {
                map.insert(*k, v.parse().unwrap());
            }
            map
        };
        assert!(same_site(&headers(&[("sec-fetch-site", "same-origin")])));
        assert!(!same_site(&headers(&[("sec-fetch-site", "cross-site")])));
        assert!(same_site(&headers(&[("origin", "http://console:8090"), ("host", "console:8090")])));
        assert!(!same_site(&headers(&[("origin", "https://evil.example"), ("host", "console:8090")])));
        assert!(same_site(&headers(&[])), "no browser: a bearer token");
    }
}

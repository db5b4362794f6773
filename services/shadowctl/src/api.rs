//! The two HTTP APIs shadowctl talks to: the verdict API and the mirror's admin API. Every
//! request has a timeout; answers are decoded into the services' own types.

use std::time::Duration;

use reqwest::{Method, RequestBuilder, StatusCode, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;
use shadowdiff_mirror::profile::{Faults, Profile};
use shadowdiff_verdict::{ExchangeDetail, VerdictReport};

use crate::cli::Window;

/// Longest wait for a TCP connection, within the request timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest server reason quoted when the body is not the services' JSON error.
const MAX_REASON: usize = 300;

/// Why a request got no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    #[error("{url}: {}", describe(.source))]
    Unreachable {
        url: Url,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url} answered {status}: {reason}")]
    Status { url: Url, status: StatusCode, reason: String },
    #[error("{url}: unexpected answer: {source}")]
    Decode {
        url: Url,
        #[source]
        source: serde_json::Error,
    },
}

impl ApiError {
    /// The server refused the request itself (bad parameter, token, unknown id): asking
    /// again will not help. Timeouts and rate limits are not refusals.
    pub fn refused(&self) -> bool {
        matches!(self, Self::Status { status, .. }
            if status.is_client_error()
                && !matches!(*status, StatusCode::REQUEST_TIMEOUT | StatusCode::TOO_EARLY | StatusCode::TOO_MANY_REQUESTS))
    }
}

/// A listed profile: the profile and whether its TTL has run out.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Listed {
    #[serde(flatten)]
    pub profile: Profile,
    #[serde(default)]
    pub expired: bool,
}

/// Both services' base URLs and one pooled client.
#[derive(Debug)]
pub struct Api {
    http: reqwest::Client,
    verdict: Url,
    mirror: Url,
    token: Option<String>,
    mirror_token: Option<String>,
}

impl Api {
    pub fn new(
        verdict: Url,
        mirror: Url,
        token: Option<String>,
        mirror_token: Option<String>,
        timeout: Duration,
    ) -> Result<Self, ApiError> {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT.min(timeout))
            .timeout(timeout)
            .user_agent(concat!("shadowctl/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(ApiError::Client)?;
        let (token, mirror_token) = (token.filter(|t| !t.is_empty()), mirror_token.filter(|t| !t.is_empty()));
        Ok(Self { http, verdict, mirror, token, mirror_token })
    }

    /// `GET /v1/verdict`. `timeout` shortens this request's deadline (the gate's end).
    pub async fn verdict(
        &self,
        window: &Window,
        stage: Option<&str>,
        timeout: Option<Duration>,
    ) -> Result<VerdictReport, ApiError> {
        let mut url = join(&self.verdict, &["v1", "verdict"]);
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("candidate", &window.candidate);
            let optional = [
                ("stage", stage),
                ("revision", window.revision.as_deref()),
                ("since", window.since.as_deref()),
                ("run", window.run.as_deref()),
            ];
            for (key, value) in optional {
                if let Some(value) = value {
                    query.append_pair(key, value);
                }
            }
        }
        let mut request = self.verdict_request(Method::GET, url.clone());
        if let Some(timeout) = timeout {
            request = request.timeout(timeout);
        }
        decode(url, request).await
    }

    /// `GET /v1/suggestions`.
    pub async fn suggestions(
        &self,
        candidate: &str,
        since: Option<&str>,
    ) -> Result<shadowdiff_verdict::suggest::Suggestions, ApiError> {
        let mut url = join(&self.verdict, &["v1", "suggestions"]);
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("candidate", candidate);
            if let Some(since) = since {
                query.append_pair("since", since);
            }
        }
        decode(url.clone(), self.verdict_request(Method::GET, url)).await
    }

    /// `GET /v1/acceptances`.
    pub async fn acceptances(&self, candidate: &str) -> Result<Vec<shadowdiff_verdict::accept::Listed>, ApiError> {
        let mut url = join(&self.verdict, &["v1", "acceptances"]);
        url.query_pairs_mut().append_pair("candidate", candidate);
        decode(url.clone(), self.verdict_request(Method::GET, url)).await
    }

    /// `POST /v1/acceptances`, or `POST /v1/acceptances/revoke` when `revoke`: the path's
    /// new state.
    pub async fn change_acceptance(
        &self,
        change: &shadowdiff_verdict::accept::ChangeRequest,
        revoke: bool,
    ) -> Result<shadowdiff_verdict::accept::Listed, ApiError> {
        let segments: &[&str] = if revoke { &["v1", "acceptances", "revoke"] } else { &["v1", "acceptances"] };
        let url = join(&self.verdict, segments);
        decode(url.clone(), self.verdict_request(Method::POST, url).json(change)).await
    }

    /// `GET /v1/exchanges/{request_id}`.
    pub async fn exchange(&self, request_id: &str) -> Result<ExchangeDetail, ApiError> {
        let url = join(&self.verdict, &["v1", "exchanges", request_id]);
        decode(url.clone(), self.verdict_request(Method::GET, url)).await
    }

    /// The drill-down page of a request, for people.
    pub fn exchange_page(&self, request_id: &str, candidate: Option<&str>) -> Url {
        let mut url = join(&self.verdict, &["exchanges", request_id]);
        if let Some(candidate) = candidate {
            url.query_pairs_mut().append_pair("candidate", candidate);
        }
        url
    }

    pub async fn profiles(&self) -> Result<Vec<Listed>, ApiError> {
        let url = join(&self.mirror, &["v1", "profiles"]);
        decode(url.clone(), self.mirror_request(Method::GET, url)).await
    }

    /// `POST /v1/profiles`: the profile as the mirror applied it (expiry fixed).
    pub async fn apply(&self, profile: &Profile) -> Result<Profile, ApiError> {
        self.post(&["v1", "profiles"], profile).await
    }

    /// `POST /v1/profiles/{id}/faults`: the profile with its new faults.
    pub async fn faults(&self, id: &str, faults: &Faults) -> Result<Profile, ApiError> {
        self.post(&["v1", "profiles", id, "faults"], faults).await
    }

    pub async fn delete(&self, id: &str) -> Result<(), ApiError> {
        let url = join(&self.mirror, &["v1", "profiles", id]);
        send(url.clone(), self.mirror_request(Method::DELETE, url)).await.map(drop)
    }

    /// `GET /v1/profiles/{id}/status`, as the mirror's JSON (its shape is the mirror's own).
    pub async fn status(&self, id: &str) -> Result<serde_json::Value, ApiError> {
        let url = join(&self.mirror, &["v1", "profiles", id, "status"]);
        decode(url.clone(), self.mirror_request(Method::GET, url)).await
    }

    async fn post<B: Serialize, T: DeserializeOwned>(&self, segments: &[&str], body: &B) -> Result<T, ApiError> {
        let url = join(&self.mirror, segments);
        decode(url.clone(), self.mirror_request(Method::POST, url).json(body)).await
    }

    fn verdict_request(&self, method: Method, url: Url) -> RequestBuilder {
        with_token(self.http.request(method, url), self.token.as_deref())
    }

    fn mirror_request(&self, method: Method, url: Url) -> RequestBuilder {
        with_token(self.http.request(method, url), self.mirror_token.as_deref())
    }
}

fn with_token(request: RequestBuilder, token: Option<&str>) -> RequestBuilder {
    match token {
        Some(token) => request.bearer_auth(token),
        None => request,
    }
}

/// `base` with `segments` appended, each percent-encoded as one path segment, so a request
/// id can never change which endpoint is called.
fn join(base: &Url, segments: &[&str]) -> Url {
    let mut url = base.clone();
    url.set_query(None);
    url.set_fragment(None);
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(segments);
    }
    url
}

/// Sends `request`; the body of a 2xx answer, or why there is none.
async fn send(url: Url, request: RequestBuilder) -> Result<Vec<u8>, ApiError> {
    let response = request.send().await.map_err(|source| ApiError::Unreachable { url: url.clone(), source })?;
    let status = response.status();
    let body = response.bytes().await.map_err(|source| ApiError::Unreachable { url: url.clone(), source })?;
    if !status.is_success() {
        return Err(ApiError::Status { url, status, reason: reason(status, &body) });
    }
    Ok(body.to_vec())
}

async fn decode<T: DeserializeOwned>(url: Url, request: RequestBuilder) -> Result<T, ApiError> {
    let body = send(url.clone(), request).await?;
    serde_json::from_slice(&body).map_err(|source| ApiError::Decode { url, source })
}

/// What went wrong underneath a transport error: reqwest's own message only names the URL
/// again, the innermost cause says "connection refused" or "timed out".
fn describe(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        return "timed out".to_owned();
    }
    let mut cause: &dyn std::error::Error = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    if error.is_connect() { format!("cannot connect: {cause}") } else { cause.to_string() }
}

/// The server's reason: `{"error": ..., "problems": [...]}` as both services answer, else
/// the start of the body, else the status's name.
fn reason(status: StatusCode, body: &[u8]) -> String {
    if let Ok(serde_json::Value::Object(map)) = serde_json::from_slice::<serde_json::Value>(body)
        && let Some(error) = map.get("error").and_then(serde_json::Value::as_str)
    {
        let problems: Vec<&str> = map
            .get("problems")
            .and_then(serde_json::Value::as_array)
            .map(|p| p.iter().filter_map(serde_json::Value::as_str).collect())
            .unwrap_or_default();
        return if problems.is_empty() { error.to_owned() } else { format!("{error}: {}", problems.join("; ")) };
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return status.canonical_reason().unwrap_or("no reason given").to_owned();
    }
    let mut cut: String = text.chars().take(MAX_REASON).collect();
    if cut.len() < text.len() {
        cut.push('…');
    }
    cut.replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn join_encodes_each_segment_and_keeps_a_base_path() {
        let base = url("http://verdict:8090");
        assert_eq!(join(&base, &["v1", "exchanges", "a/b?c"]).as_str(), "http://verdict:8090/v1/exchanges/a%2Fb%3Fc");
        let prefixed = url("http://gw/verdict/");
        assert_eq!(join(&prefixed, &["v1", "verdict"]).as_str(), "http://gw/verdict/v1/verdict");
    }

    #[test]
    fn reasons_come_from_the_services_json_errors() {
        let bad = StatusCode::BAD_REQUEST;
        assert_eq!(reason(bad, br#"{"error":"stage \"7\" is not one of shadow"}"#), "stage \"7\" is not one of shadow");
        assert_eq!(
            reason(
                bad,
                br#"{"error":"invalid profile","problems":["id: 1 to 64 characters","targets: at least one"]}"#
            ),
            "invalid profile: id: 1 to 64 characters; targets: at least one"
        );
        assert_eq!(reason(StatusCode::BAD_GATEWAY, b""), "Bad Gateway");
        assert_eq!(reason(StatusCode::BAD_GATEWAY, b"upstream\ndown\n"), "upstream down");
    }

    #[test]
    fn client_errors_are_refusals_but_not_timeouts_or_rate_limits() {
        let at = |status| ApiError::Status { url: url("http://x"), status, reason: String::new() };
        assert!(at(StatusCode::BAD_REQUEST).refused());
        assert!(at(StatusCode::UNAUTHORIZED).refused());
        assert!(at(StatusCode::NOT_FOUND).refused());
        assert!(!at(StatusCode::TOO_MANY_REQUESTS).refused());
        assert!(!at(StatusCode::SERVICE_UNAVAILABLE).refused());
    }
}

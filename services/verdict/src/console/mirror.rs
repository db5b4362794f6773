//! The mirror's admin API as the console reaches it: server to server, with the console's
//! own token (`[console] mirror_token`), never from the browser.

use std::time::Duration;

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::ConsoleSection;

/// The longest a page waits on the mirror.
const TIMEOUT: Duration = Duration::from_secs(5);

/// The mirror's admin API, as the console reaches it.
#[derive(Debug, Clone)]
pub(crate) struct Mirror {
    http: reqwest::Client,
    base: String,
    token: String,
}

/// Why the mirror gave no usable answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum MirrorError {
    #[error("the mirror's admin API is not configured: set [console] mirror_url")]
    Unconfigured,
    #[error("the mirror's admin API cannot be reached")]
    Unreachable(#[source] reqwest::Error),
    /// The mirror refused the change; its problems, each `field: what is wrong`.
    #[error("the mirror refused: {}", .0.join("; "))]
    Refused(Vec<String>),
}

impl Mirror {
    pub(crate) fn new(console: &ConsoleSection) -> Option<Self> {
        let base = console.mirror_url.clone()?.trim_end_matches('/').to_owned();
        let http = reqwest::Client::builder().timeout(TIMEOUT).build().ok()?;
        Some(Self { http, base, token: console.mirror_token.expose().clone() })
    }

    fn url(&self, segments: &[&str]) -> String {
        let path: Vec<String> = segments.iter().map(|s| super::render::segment(s)).collect();
        format!("{}/{}", self.base, path.join("/"))
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Value, MirrorError> {
        let response = request.bearer_auth(&self.token).send().await.map_err(MirrorError::Unreachable)?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(body);
        }
        let mut problems: Vec<String> = body["problems"]
            .as_array()
            .map(|p| p.iter().filter_map(Value::as_str).map(str::to_owned).collect())
            .unwrap_or_default();
        if problems.is_empty() {
            problems.push(body["error"].as_str().map_or_else(|| status.to_string(), str::to_owned));
        }
        Err(MirrorError::Refused(problems))
    }

    /// Every profile, each with its status (`GET /v1/profiles/{id}/status`).
    pub(crate) async fn profiles(&self) -> Result<Vec<(Value, Value)>, MirrorError> {
        let listed = self.send(self.http.get(self.url(&["v1", "profiles"]))).await?;
        let mut out = Vec::new();
        for profile in listed.as_array().into_iter().flatten().take(MAX_PROFILES) {
            let id = profile["id"].as_str().unwrap_or_default();
            let status =
                self.send(self.http.get(self.url(&["v1", "profiles", id, "status"]))).await.unwrap_or(Value::Null);
            out.push((profile.clone(), status));
        }
        Ok(out)
    }

    /// Creates or replaces a profile (`POST /v1/profiles`).
    pub(crate) async fn put(&self, profile: &Value) -> Result<(), MirrorError> {
        self.send(self.http.post(self.url(&["v1", "profiles"])).json(profile)).await.map(drop)
    }

    /// The profile `id` as the mirror lists it; `Refused` when there is none.
    pub(crate) async fn profile(&self, id: &str) -> Result<Value, MirrorError> {
        let listed = self.send(self.http.get(self.url(&["v1", "profiles"]))).await?;
        listed
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["id"].as_str() == Some(id))
            .cloned()
            .ok_or_else(|| MirrorError::Refused(vec![format!("no profile {id:?}")]))
    }

    pub(crate) async fn faults(&self, id: &str, faults: &Faults) -> Result<(), MirrorError> {
        self.send(self.http.post(self.url(&["v1", "profiles", id, "faults"])).json(faults)).await.map(drop)
    }

    pub(crate) async fn delete(&self, id: &str) -> Result<(), MirrorError> {
        self.send(self.http.delete(self.url(&["v1", "profiles", id]))).await.map(drop)
    }
}

/// Removes from a profile, as the mirror lists it, what the mirror derives when it applies
/// one (`expired`, `expires_at_ms`), so the profile can be sent back as a change.
pub(crate) fn without_derived(profile: &mut serde_json::Map<String, Value>) {
    for derived in ["expired", "expires_at_ms"] {
        profile.remove(derived);
    }
}

/// Profiles a page lists at most.
const MAX_PROFILES: usize = 100;

/// The faults form, as the mirror's `Faults` takes them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Faults {
    pub(crate) latency_ms: u64,
    pub(crate) latency_percent: f64,
    pub(crate) error_status: u16,
    pub(crate) error_percent: f64,
    pub(crate) drop_percent: f64,
}

/// The faults form as posted: text, so a value that is no number is reported at its field.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct FaultsForm {
    #[serde(default)]
    latency_ms: String,
    #[serde(default)]
    latency_percent: String,
    #[serde(default)]
    error_status: String,
    #[serde(default)]
    error_percent: String,
    #[serde(default)]
    drop_percent: String,
}

impl FaultsForm {
    /// What was typed in `field`, when it is one of the form's.
    pub(crate) fn typed(&self, field: &str) -> Option<&str> {
        Some(match field {
            "latency_ms" => &self.latency_ms,
            "latency_percent" => &self.latency_percent,
            "error_status" => &self.error_status,
            "error_percent" => &self.error_percent,
            "drop_percent" => &self.drop_percent,
            _ => return None,
        })
    }

    /// The faults, or each field's problem as `faults.<field>: ...`, the mirror's own form.
    pub(crate) fn parse(&self) -> Result<Faults, Vec<String>> {
        let mut problems = Vec::new();
        let mut number = |field: &str, text: &str, default: f64| -> f64 {
            let text = text.trim();
            if text.is_empty() {
                return default;
            }
            text.parse::<f64>().unwrap_or_else(|_| {
                problems.push(format!("faults.{field}: {text:?} is not a number"));
                default
            })
        };
        let latency_ms = number("latency_ms", &self.latency_ms, 0.0);
        let latency_percent = number("latency_percent", &self.latency_percent, 0.0);
        let error_status = number("error_status", &self.error_status, 503.0);
        let error_percent = number("error_percent", &self.error_percent, 0.0);
        let drop_percent = number("drop_percent", &self.drop_percent, 0.0);
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // range-checked by the mirror
        let faults = Faults {
            latency_ms: latency_ms.max(0.0) as u64,
            latency_percent,
            error_status: error_status.clamp(0.0, 65_535.0) as u16,
            error_percent,
            drop_percent,
        };
        if problems.is_empty() { Ok(faults) } else { Err(problems) }
    }
}

/// The status a refused change is shown with.
pub(crate) fn refused_status(error: &MirrorError) -> StatusCode {
    match error {
        MirrorError::Refused(_) => StatusCode::BAD_REQUEST,
        MirrorError::Unconfigured | MirrorError::Unreachable(_) => StatusCode::BAD_GATEWAY,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_form_value_that_is_no_number_is_reported_at_its_field() {
        let form = FaultsForm { latency_ms: "200".into(), latency_percent: "lots".into(), ..FaultsForm::default() };
        assert_eq!(form.parse(), Err(vec!["faults.latency_percent: \"lots\" is not a number".to_owned()]));
        let ok = FaultsForm { error_percent: "2.5".into(), ..FaultsForm::default() }.parse().unwrap();
        assert_eq!((ok.error_status, ok.error_percent, ok.latency_ms), (503, 2.5, 0));
    }
}

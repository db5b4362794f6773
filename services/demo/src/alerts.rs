//! A webhook receiver for Alertmanager, so the demo shows the alerts a person would be paged
//! with: `POST /alerts` takes Alertmanager's webhook payload (version 4) and prints one line
//! per alert; `GET /alerts` lists what arrived, newest last. The demo's Alertmanager and the
//! compose stack's route to it, and `tests/tests/alerts.rs` serves the same [`app`] to see
//! the alerts its real Prometheus and Alertmanager deliver.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

/// Alerts kept for `GET /alerts`; older ones are forgotten first.
const KEPT: usize = 1000;

/// One alert of a webhook payload, as Alertmanager sends it: the fields a person reads.
/// Other fields of the payload are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    /// `firing` or `resolved`.
    pub status: String,
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub starts_at: String,
}

impl Alert {
    /// `FIRING ShadowdiffCandidateFailing candidate=c severity=critical stage=shadow: summary`.
    pub fn line(&self) -> String {
        let name = self.labels.get("alertname").map_or("(no alertname)", String::as_str);
        let labels: Vec<String> =
            self.labels.iter().filter(|(k, _)| *k != "alertname").map(|(k, v)| format!("{k}={v}")).collect();
        let summary = self.annotations.get("summary").map_or("", String::as_str);
        format!("{} {name} {}: {summary}", self.status.to_uppercase(), labels.join(" "))
    }
}

/// The webhook payload: only its alerts matter here.
#[derive(Debug, Deserialize)]
struct Payload {
    alerts: Vec<Alert>,
}

/// Every alert received so far (the last [`KEPT`]), shared with whoever serves [`app`].
#[derive(Debug, Clone, Default)]
pub struct Received(Arc<Mutex<Vec<Alert>>>);

impl Received {
    pub fn all(&self) -> Vec<Alert> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn add(&self, alerts: Vec<Alert>) {
        let mut kept = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        kept.extend(alerts);
        let over = kept.len().saturating_sub(KEPT);
        kept.drain(..over);
    }
}

/// `POST /alerts` (the webhook), `GET /alerts` and `GET /healthz`.
pub fn app(received: Received) -> Router {
    Router::new()
        .route("/alerts", post(webhook).get(list))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(received)
}

async fn webhook(State(received): State<Received>, Json(payload): Json<Payload>) -> StatusCode {
    for alert in &payload.alerts {
        println!("{}", alert.line());
    }
    received.add(payload.alerts);
    StatusCode::OK
}

async fn list(State(received): State<Received>) -> Json<Vec<Alert>> {
    Json(received.all())
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;

    /// A payload as Alertmanager 0.25 sends it (its `webhook` notifier), abridged to one alert.
    const PAYLOAD: &str = r#"{
      "receiver": "demo", "status": "firing", "version": "4", "groupKey": "{}:{alertname=\"ShadowdiffCandidateFailing\"}",
      "truncatedAlerts": 0, "externalURL": "http://127.0.0.1:19093",
      "groupLabels": {"alertname": "ShadowdiffCandidateFailing"}, "commonLabels": {}, "commonAnnotations": {},
      "alerts": [{
        "status": "firing",
        "labels": {"alertname": "ShadowdiffCandidateFailing", "candidate": "candidate", "stage": "shadow", "severity": "critical"},
        "annotations": {"summary": "Candidate candidate fails its shadow gate", "runbook_url": "README.md#alerts"},
        "startsAt": "2026-01-01T00:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://127.0.0.1:19090/graph", "fingerprint": "0123456789abcdef"
      }]
    }"#;

    #[tokio::test]
    async fn a_webhook_payload_is_kept_and_listed() {
        let received = Received::default();
        let post = Request::post("/alerts").header("content-type", "application/json").body(Body::from(PAYLOAD));
        let response = app(received.clone()).oneshot(post.unwrap()).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);

        let alerts = received.all();
        assert_eq!(alerts.len(), 1);
        assert_eq!(
            alerts[0].line(),
            "FIRING ShadowdiffCandidateFailing candidate=candidate severity=critical stage=shadow: \
             Candidate candidate fails its shadow gate"
        );

        let response = app(received).oneshot(Request::get("/alerts").body(Body::empty()).unwrap()).await.unwrap();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        let listed: Vec<Alert> = serde_json::from_slice(&body).unwrap();
        assert_eq!(listed, alerts);
    }

    #[tokio::test]
    async fn not_a_payload_is_refused() {
        let post = Request::post("/alerts").header("content-type", "application/json").body(Body::from("{}"));
        let response = app(Received::default()).oneshot(post.unwrap()).await.unwrap();
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    }

    #[test]
    fn only_the_newest_are_kept() {
        let received = Received::default();
        let alert = |i: usize| Alert {
            status: "firing".into(),
            labels: BTreeMap::from([("alertname".into(), format!("A{i}"))]),
            annotations: BTreeMap::new(),
            starts_at: String::new(),
        };
        received.add((0..KEPT + 5).map(alert).collect());
        let all = received.all();
        assert_eq!(all.len(), KEPT);
        assert_eq!(all[0], alert(5));
    }
}

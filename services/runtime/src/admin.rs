//! The admin endpoints every service serves on its own port: `/healthz` (readiness, from
//! named checks the service flips) and `/metrics` (Prometheus text).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use axum::{Json, Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

/// `[admin]`: where `/healthz` and `/metrics` are served.
#[derive(Debug, Clone, Deserialize)]
pub struct AdminConfig {
    /// Address of the admin listener, e.g. `0.0.0.0:9464`; port 0 picks a free one.
    pub listen: SocketAddr,
}

/// Named readiness checks. Clones share state.
#[derive(Debug, Clone, Default)]
pub struct Health {
    checks: Arc<RwLock<BTreeMap<&'static str, bool>>>,
}

impl Health {
    /// Records whether the named dependency is currently usable.
    pub fn set(&self, check: &'static str, ok: bool) {
        // A poisoned lock only means a panic elsewhere mid-write of a bool; the map is
        // still valid, so keep serving health.
        let mut checks = self.checks.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        checks.insert(check, ok);
    }

    /// Ready when every check has reported and passes.
    pub fn snapshot(&self) -> (bool, BTreeMap<&'static str, bool>) {
        let checks = self.checks.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        (checks.values().all(|ok| *ok), checks)
    }
}

/// The admin router, for tests to call with `oneshot`.
pub fn router(health: Health) -> Router {
    Router::new().route("/healthz", get(healthz)).route("/metrics", get(metrics)).with_state(health)
}

async fn healthz(State(health): State<Health>) -> impl IntoResponse {
    let (ready, checks) = health.snapshot();
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(serde_json::json!({ "ready": ready, "checks": checks })))
}

async fn metrics() -> impl IntoResponse {
    let body = crate::telemetry::metrics().render();
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}

/// Binds the admin listener and serves it until `shutdown`. Returns the bound address.
pub async fn spawn(config: &AdminConfig, health: Health, shutdown: CancellationToken) -> std::io::Result<SocketAddr> {
    spawn_with(config, health, Router::new(), shutdown).await
}

/// Like [`spawn`], with a service's own admin routes (`extra`) beside the common ones.
pub async fn spawn_with(
    config: &AdminConfig,
    health: Health,
    extra: Router,
    shutdown: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let addr = listener.local_addr()?;
    let app = router(health).merge(extra);
    tokio::spawn(async move {
        // The peer's address is what an SSO proxy is trusted by (`auth::protect`).
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        let served = axum::serve(listener, app).with_graceful_shutdown(async move { shutdown.cancelled().await }).await;
        if let Err(error) = served {
            tracing::error!(%error, "admin server failed");
        }
    });
    tracing::info!(%addr, "admin endpoints listening");
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use tower::ServiceExt;

    async fn get(router: Router, path: &str) -> (StatusCode, String) {
        let response = router.oneshot(http::Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn healthz_reflects_checks() {
        let health = Health::default();
        health.set("kafka", false);
        let (status, body) = get(router(health.clone()), "/healthz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body, r#"{"checks":{"kafka":false},"ready":false}"#);
        health.set("kafka", true);
        assert_eq!(get(router(health), "/healthz").await.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn metrics_renders_recorded_counters() {
        crate::telemetry::metrics();
        metrics::counter!("shadowdiff_admin_test_total", "outcome" => "ok").increment(3);
        let (status, body) = get(router(Health::default()), "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("shadowdiff_admin_test_total{outcome=\"ok\"} 3"), "{body}");
    }
}

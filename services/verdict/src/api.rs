//! The HTTP API. `GET /v1/verdict?candidate=NAME` returns the candidate's comparison counts
//! and the paths that differed most.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::query::{self, Counts, PathCount};

/// How many differing paths a verdict lists.
const TOP_PATHS: u32 = 10;

#[derive(Clone)]
pub struct AppState {
    clickhouse: clickhouse::Client,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}

impl AppState {
    pub fn new(clickhouse: clickhouse::Client) -> Self {
        Self { clickhouse }
    }
}

pub fn app(state: AppState) -> Router {
    Router::new().route("/v1/verdict", get(verdict)).with_state(state)
}

/// What a client did wrong, or what went wrong here. Causes of 5xx stay in the log.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("comparison store unavailable")]
    Store(#[source] clickhouse::error::Error),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
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
}

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct VerdictResponse {
    pub candidate: String,
    #[serde(flatten)]
    pub counts: Counts,
    pub top_paths: Vec<PathCount>,
}

async fn verdict(
    State(state): State<AppState>,
    Query(params): Query<VerdictParams>,
) -> Result<Json<VerdictResponse>, ApiError> {
    let candidate = params.candidate.unwrap_or_default();
    if candidate.is_empty() || candidate.len() > 128 {
        return Err(ApiError::BadRequest("candidate is required: 1 to 128 characters".into()));
    }
    let counts = query::counts(&state.clickhouse, &candidate).await.map_err(ApiError::Store)?;
    let top_paths = query::top_paths(&state.clickhouse, &candidate, TOP_PATHS).await.map_err(ApiError::Store)?;
    Ok(Json(VerdictResponse { candidate, counts, top_paths }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use tower::ServiceExt;

    #[tokio::test]
    async fn missing_candidate_is_a_400_with_the_reason() {
        // No request reaches the store on this path, so an unconnected client will do.
        let app = app(AppState::new(clickhouse::Client::default().with_url("http://127.0.0.1:1")));
        let response = app.oneshot(http::Request::get("/v1/verdict").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let body = axum::body::to_bytes(response.into_body(), 1024).await.unwrap();
        assert_eq!(&body[..], br#"{"error":"candidate is required: 1 to 128 characters"}"#);
    }

    #[tokio::test]
    async fn store_failures_are_503_without_internals() {
        let app = app(AppState::new(clickhouse::Client::default().with_url("http://127.0.0.1:1")));
        let response =
            app.oneshot(http::Request::get("/v1/verdict?candidate=v2").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = axum::body::to_bytes(response.into_body(), 1024).await.unwrap();
        assert_eq!(&body[..], br#"{"error":"comparison store unavailable"}"#);
    }
}

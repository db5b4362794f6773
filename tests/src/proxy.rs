//! A forwarding proxy for tests: every request passed to `upstream` as it came (method,
//! path, query, headers, body), with an optional header added, as an SSO proxy or a TLS
//! load balancer in front of a service would pass it.

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};

/// A router that forwards everything to `upstream` (`http://host:port`), adding `header`.
pub fn forwarder(upstream: String, header: Option<(&'static str, &'static str)>) -> Router {
    Router::new().fallback(forward).with_state((upstream, header))
}

async fn forward(
    State((upstream, header)): State<(String, Option<(&'static str, &'static str)>)>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let Ok(body) = axum::body::to_bytes(body, 64 << 20).await else {
        return http::StatusCode::PAYLOAD_TOO_LARGE.into_response();
    };
    let mut outbound = reqwest::Client::new().request(parts.method, format!("{upstream}{path}")).body(body);
    for (name, value) in &parts.headers {
        if name != http::header::HOST && name != http::header::CONTENT_LENGTH {
            outbound = outbound.header(name, value);
        }
    }
    if let Some((name, value)) = header {
        outbound = outbound.header(name, value);
    }
    let answer = match outbound.send().await {
        Ok(answer) => answer,
        Err(error) => return (http::StatusCode::BAD_GATEWAY, error.to_string()).into_response(),
    };
    let mut response = Response::builder().status(answer.status());
    for (name, value) in answer.headers() {
        if name != http::header::CONTENT_LENGTH && name != http::header::TRANSFER_ENCODING {
            response = response.header(name, value);
        }
    }
    let body = answer.bytes().await.unwrap_or_default();
    response
        .body(Body::from(body))
        .map_or_else(|_| http::StatusCode::BAD_GATEWAY.into_response(), IntoResponse::into_response)
}

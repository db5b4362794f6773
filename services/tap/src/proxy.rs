//! The client path: keep or mint the request id, forward to the primary, answer the client,
//! and hand both events to the publisher without waiting on it.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use shadowdiff_core::event::now_ms;
use shadowdiff_core::{CapturedBody, ErrorKind, Header, RequestEvent, RequestId, ResponseEvent, Role};

use crate::config::{TapConfig, TapSection};
use crate::publish::Publisher;
use crate::{TapError, events, hop};

#[derive(Debug)]
pub(crate) struct Proxy {
    config: TapSection,
    id_header: HeaderName,
    client: reqwest::Client,
    publisher: Publisher,
}

impl Proxy {
    pub(crate) fn new(config: TapConfig, publisher: Publisher) -> Result<Self, TapError> {
        let client = shadowdiff_runtime::upstream::client(config.tap.upstream_timeout).map_err(TapError::Client)?;
        // Checked by `TapConfig::validate` before start-up; the fallback is never taken.
        let id_header = HeaderName::from_bytes(config.tap.request_id_header.as_bytes())
            .unwrap_or(HeaderName::from_static("x-request-id"));
        Ok(Self { config: config.tap, id_header, client, publisher })
    }

    pub(crate) fn upstream(&self) -> &reqwest::Url {
        &self.config.upstream
    }

    pub(crate) async fn flush(&self) {
        self.publisher.flush().await;
    }
}

pub(crate) fn app(proxy: Arc<Proxy>) -> Router {
    Router::new().fallback(handle).with_state(proxy)
}

/// What came back from the primary, read to the end.
struct Upstream {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

async fn handle(State(proxy): State<Arc<Proxy>>, request: Request) -> Response {
    let received_ms = now_ms();
    let (parts, body) = request.into_parts();
    let incoming_id = parts.headers.get(&proxy.id_header).and_then(|v| v.to_str().ok());
    let id = RequestId::keep_or_mint(incoming_id);
    let Ok(body) = axum::body::to_bytes(body, proxy.config.max_request_body_bytes).await else {
        events::rejected("body_too_large");
        return (StatusCode::PAYLOAD_TOO_LARGE, "request body exceeds the proxy's limit\n").into_response();
    };

    let mut headers = parts.headers.clone();
    hop::strip(&mut headers);
    if let Ok(value) = HeaderValue::from_str(id.as_str()) {
        headers.insert(proxy.id_header.clone(), value);
    }
    let path_and_query = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let cap = proxy.config.capture_max_body_bytes;
    let request_event = RequestEvent {
        request_id: id.to_string(),
        timestamp_ms: received_ms,
        tap_id: proxy.config.id.clone(),
        method: parts.method.to_string(),
        scheme: "http".to_owned(),
        authority: parts.headers.get(http::header::HOST).and_then(|h| h.to_str().ok()).unwrap_or_default().to_owned(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        route_template: None,
        headers: capture_headers(&headers),
        body: CapturedBody::capture(&body, cap),
    };

    let url = format!("{}{}", proxy.config.upstream.as_str().trim_end_matches('/'), path_and_query);
    let started = Instant::now();
    let forwarded = async {
        let response = proxy.client.request(parts.method.clone(), url).headers(headers).body(body).send().await?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await?;
        Ok::<_, reqwest::Error>(Upstream { status, headers, body })
    }
    .await;
    let latency_us = i64::try_from(started.elapsed().as_micros()).unwrap_or(i64::MAX);

    let mut primary = ResponseEvent {
        request_id: id.to_string(),
        timestamp_ms: now_ms(),
        role: Role::Primary,
        deployment: "primary".to_owned(),
        status: None,
        headers: Vec::new(),
        body: CapturedBody::empty(),
        latency_us,
        error: None,
    };
    let mut response = match forwarded {
        Ok(upstream) => {
            primary.status = Some(i32::from(upstream.status.as_u16()));
            primary.headers = capture_headers(&upstream.headers);
            primary.body = CapturedBody::capture(&upstream.body, cap);
            let mut headers = upstream.headers;
            hop::strip(&mut headers);
            let mut response = Response::new(Body::from(upstream.body));
            *response.status_mut() = upstream.status;
            *response.headers_mut() = headers;
            events::proxied(upstream.status.as_u16());
            response
        }
        Err(error) => {
            let kind = shadowdiff_runtime::upstream::classify(&error);
            primary.error = Some(kind);
            let status = if kind == ErrorKind::Timeout { StatusCode::GATEWAY_TIMEOUT } else { StatusCode::BAD_GATEWAY };
            events::upstream_failed(kind, &error);
            (status, "upstream unavailable\n").into_response()
        }
    };
    if let Ok(value) = HeaderValue::from_str(id.as_str()) {
        response.headers_mut().insert(proxy.id_header.clone(), value);
    }
    proxy.publisher.publish(request_event, primary);
    response
}

fn capture_headers(headers: &HeaderMap) -> Vec<Header> {
    headers.iter().map(|(name, value)| Header::new(name.as_str(), value.as_bytes())).collect()
}

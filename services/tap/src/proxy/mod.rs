//! The client path: keep or mint the request id, resolve the route and the capture
//! decision, stream the request to the upstream and its response back, teeing both bodies
//! for capture. Nothing here waits on Kafka: finished captures go to the publisher in the
//! background.

mod client;
mod target;
mod upgrade;

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use shadowdiff_core::event::now_ms;
use shadowdiff_core::headers::{SHADOW_ROLE, STUB};
use shadowdiff_core::{ErrorKind, RequestId};

use crate::capture::Tee;
use crate::config::{Mode, TapConfig, TapSection};
use crate::publish::{Exchange, Outcome, Pending, Queue, Side, headers_of};
use crate::route::{Resolved, Routes};
use crate::stub::{self, Answer, Recordings};
use crate::{events, hop};

use client::UpstreamClient;

#[derive(Debug)]
pub(crate) struct Proxy {
    config: TapSection,
    id_header: HeaderName,
    upstream: Option<Upstream>,
    client: UpstreamClient,
    routes: Routes,
    /// What request events say the client spoke: `https` on a TLS listener.
    scheme: &'static str,
    /// This worker's publishing queue.
    queue: Queue,
    /// In stub mode, the primary's recorded calls, which answer every call.
    stubs: Option<Arc<Recordings>>,
}

/// The configured upstream, split once so that a request's URI is put together from parts
/// rather than formatted and parsed.
#[derive(Debug)]
struct Upstream {
    scheme: Scheme,
    authority: Authority,
    /// The base URL's path without its trailing `/`; usually empty.
    base_path: String,
    /// The `Host` every request is sent with (the client's is hop-by-hop here): the host,
    /// with the port unless it is the scheme's default.
    host: HeaderValue,
}

impl Upstream {
    fn new(url: &url::Url) -> Option<Self> {
        let base = url.as_str().trim_end_matches('/').parse::<Uri>().ok()?;
        let parts = base.into_parts();
        let base_path = parts.path_and_query.map_or(String::new(), |p| p.path().trim_end_matches('/').to_owned());
        let (scheme, authority) = (parts.scheme?, parts.authority?);
        let default_port = if scheme == Scheme::HTTPS { 443 } else { 80 };
        let host = match authority.port_u16() {
            Some(port) if port != default_port => HeaderValue::try_from(format!("{}:{port}", authority.host())),
            _ => HeaderValue::try_from(authority.host()),
        }
        .ok()?;
        Some(Self { scheme, authority, base_path, host })
    }

    /// The upstream's URI for a request's path and query.
    fn uri(&self, uri: &Uri) -> Result<Uri, &'static str> {
        let path_and_query = match uri.path_and_query() {
            // `OPTIONS *` asks about the server, not a path under the base.
            Some(pq) if self.base_path.is_empty() || pq.as_str() == "*" => pq.clone(),
            pq => PathAndQuery::try_from(format!("{}{}", self.base_path, pq.map_or("/", PathAndQuery::as_str)))
                .map_err(|_| "invalid request target\n")?,
        };
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(self.authority.clone());
        parts.path_and_query = Some(path_and_query);
        Uri::from_parts(parts).map_err(|_| "invalid request target\n")
    }
}

impl Proxy {
    /// A worker's proxy; `upstream_tls` is set for an `https://` upstream, `tls_listener`
    /// when clients connect over TLS.
    pub(crate) fn new(
        config: TapConfig,
        upstream_tls: Option<Arc<rustls::ClientConfig>>,
        tls_listener: bool,
        queue: Queue,
        stubs: Option<Arc<Recordings>>,
    ) -> Self {
        let client = UpstreamClient::new(config.tap.upstream_timeout, upstream_tls.as_ref());
        let id_header = config.tap.request_id_header.clone().into();
        let upstream = config.tap.upstream.as_ref().and_then(Upstream::new);
        // An egress tap's events describe the call, whose target it only takes as http://.
        let egress = matches!(config.tap.mode, Mode::Egress { .. });
        let scheme = if tls_listener && !egress { "https" } else { "http" };
        Self { routes: Routes::new(&config.tap), config: config.tap, id_header, upstream, client, scheme, queue, stubs }
    }

    /// Where a request goes: the configured upstream plus its path and query, or in egress
    /// mode the absolute `http://` URL the deployment asked its proxy for.
    fn upstream_uri(&self, uri: &Uri) -> Result<Uri, &'static str> {
        if let Mode::Egress { .. } = self.config.mode {
            return match (uri.scheme_str(), uri.authority()) {
                (Some("http"), Some(_)) => Ok(uri.clone()),
                _ => Err("the egress tap is an HTTP proxy: send absolute http:// request targets\n"),
            };
        }
        // Required outside egress mode by `TapConfig::validate`.
        self.upstream.as_ref().ok_or("no upstream is configured\n")?.uri(uri)
    }

    /// Headers as forwarded: hop-by-hop removed, the request id set.
    fn forward_headers(&self, mut headers: HeaderMap, id: &RequestId) -> HeaderMap {
        hop::strip(&mut headers);
        self.set_id(&mut headers, id);
        headers
    }

    fn set_id(&self, headers: &mut HeaderMap, id: &RequestId) {
        // An egress tap forwards third-party calls as the deployment made them.
        if let Mode::Egress { .. } = self.config.mode {
            return;
        }
        // Valid ids are visible ASCII, so this conversion always succeeds.
        if let Ok(value) = HeaderValue::from_str(id.as_str()) {
            headers.insert(self.id_header.clone(), value);
        }
    }

    /// Sends one request upstream, with the upstream's own `Host` (an egress tap has no
    /// upstream of its own: the client sets `Host` from the URL). No response head within
    /// the deadline is a timeout.
    async fn send(
        &self,
        method: http::Method,
        uri: Uri,
        headers: HeaderMap,
        body: Tee<Body>,
    ) -> Result<http::Response<hyper::body::Incoming>, (ErrorKind, String)> {
        let mut upstream = http::Request::new(body);
        *upstream.method_mut() = method;
        *upstream.uri_mut() = uri;
        *upstream.headers_mut() = headers;
        if let Some(Upstream { host, .. }) = &self.upstream {
            upstream.headers_mut().insert(http::header::HOST, host.clone());
        }
        match tokio::time::timeout(self.config.upstream_timeout, self.client.request(upstream)).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(error)) => {
                Err((if error.is_connect() { ErrorKind::Connect } else { ErrorKind::Reset }, error.to_string()))
            }
            Err(_) => Err((ErrorKind::Timeout, "no response head within the deadline".to_owned())),
        }
    }

    fn captures(&self, route: &Resolved, headers: &HeaderMap) -> bool {
        route.capture
            && (!matches!(self.config.mode, Mode::Sidecar { .. }) || headers.contains_key(SHADOW_ROLE))
            && self.queue.has_room()
    }

    /// Whether the request's target may be forwarded. An egress tap takes absolute-form
    /// targets, checked where it reads them ([`Proxy::upstream_uri`]).
    fn target_allowed(&self, request: &Request) -> bool {
        matches!(self.config.mode, Mode::Egress { .. })
            || target::is_origin_form(request.method(), request.version(), request.uri())
    }
}

/// The whole client path. Every request comes here whatever its path: there is nothing to
/// route.
pub(crate) async fn handle(proxy: Arc<Proxy>, request: Request) -> Response {
    let received_ms = now_ms();
    if !proxy.target_allowed(&request) {
        events::target_rejected(request.method());
        return (StatusCode::BAD_REQUEST, "the request target must be origin-form: /path?query\n").into_response();
    }
    let incoming = request.headers().get(&proxy.id_header).and_then(|v| v.to_str().ok());
    let linked = incoming.is_some_and(|raw| RequestId::parse(raw).is_ok());
    let id = RequestId::keep_or_mint(incoming);
    if upgrade::requested(request.headers()) {
        return upgrade::pass_through(&proxy, request, &id).await;
    }
    let route = proxy.routes.resolve(request.uri().path(), &id);
    let capture = proxy.captures(&route, request.headers());
    let (parts, body) = request.into_parts();
    let uri = match proxy.upstream_uri(&parts.uri) {
        Ok(uri) => uri,
        Err(reason) => return (StatusCode::BAD_REQUEST, reason).into_response(),
    };
    // For a captured exchange only: the authority as the client addressed it, read before
    // its `Host` (hop-by-hop here) is stripped.
    let authority = capture.then(|| {
        let from_host = || parts.headers.get(http::header::HOST).and_then(|h| h.to_str().ok());
        parts.uri.authority().map(Authority::as_str).or_else(from_host).unwrap_or_default().to_owned()
    });
    let headers = proxy.forward_headers(parts.headers, &id);
    route.counters.started();
    let stubbed_call = proxy
        .stubs
        .as_ref()
        .map(|_| stub::call_key(parts.method.as_str(), uri.authority().map_or("", Authority::as_str), &route.template));

    let pending = authority.map(|authority| {
        let exchange = Exchange {
            id: id.clone(),
            linked,
            received_ms,
            route: route.template.into_owned(),
            method: parts.method.clone(),
            uri: parts.uri,
            scheme: proxy.scheme,
            authority,
            headers: headers_of(&headers),
            started: Instant::now(),
        };
        Pending::new(proxy.queue.clone(), exchange)
    });
    let body = Tee::new(body, pending.as_ref().map(|p| (route.cap, p.on_finish(Side::Request))));
    if let (Some(stubs), Some(call)) = (&proxy.stubs, stubbed_call) {
        return stubbed(stubs, (route.counters, route.cap), pending, &call, body, &id).await;
    }
    match proxy.send(parts.method, uri, headers, body).await {
        Ok(response) => {
            let (mut parts, body) = response.into_parts();
            route.counters.proxied(parts.status.as_u16());
            if let Some(pending) = &pending {
                pending.answered(Outcome::Response { status: parts.status, headers: headers_of(&parts.headers) });
            }
            let body = Tee::new(body, pending.as_ref().map(|p| (route.cap, p.on_finish(Side::Response))));
            hop::strip(&mut parts.headers);
            proxy.set_id(&mut parts.headers, &id);
            Response::from_parts(parts, Body::new(body))
        }
        Err((kind, error)) => {
            route.counters.upstream_failed(kind, &error);
            if let Some(pending) = &pending {
                pending.answered(Outcome::Failed(kind));
            }
            let mut response = unavailable(kind);
            proxy.set_id(response.headers_mut(), &id);
            response
        }
    }
}

/// A shadow's call answered from the primary's recorded call (`crate::stub`), and never
/// forwarded: its body is read (up to the stub's bound) to match it by its hash.
async fn stubbed(
    stubs: &Recordings,
    (counters, cap): (&crate::events::RouteCounters, usize),
    pending: Option<Arc<Pending>>,
    call: &str,
    body: Tee<Body>,
    id: &RequestId,
) -> Response {
    let read = http_body_util::BodyExt::collect(http_body_util::Limited::new(body, stubs.max_body_bytes())).await;
    let answer = match read {
        Ok(read) => {
            let sha256 = shadowdiff_core::CapturedBody::capture(&read.to_bytes(), 0).sha256;
            stubs.answer(id.as_str(), call, &sha256).await
        }
        Err(_) => Answer::Unmatched("the call's body is larger than the stub reads (max_body_bytes)"),
    };
    let (status, mut headers, body, marker) = match answer {
        Answer::Matched { status, headers, body } => {
            let mut map = HeaderMap::new();
            for header in headers {
                if let (Ok(name), Ok(value)) =
                    (HeaderName::try_from(header.name.as_str()), HeaderValue::from_bytes(&header.value))
                {
                    map.append(name, value);
                }
            }
            (StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY), map, body, "matched")
        }
        Answer::Unmatched(why) => {
            let mut map = HeaderMap::new();
            map.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            let status = StatusCode::from_u16(stubs.unmatched_status()).unwrap_or(StatusCode::BAD_GATEWAY);
            (status, map, format!("{why}\n").into_bytes(), "unmatched")
        }
    };
    hop::strip(&mut headers);
    headers.remove(http::header::CONTENT_LENGTH);
    headers.insert(HeaderName::from_static(STUB), HeaderValue::from_static(marker));
    counters.proxied(status.as_u16());
    if let Some(pending) = &pending {
        pending.answered(Outcome::Response { status, headers: headers_of(&headers) });
    }
    let body = http_body_util::Full::new(bytes::Bytes::from(body));
    let body = Tee::new(body, pending.as_ref().map(|p| (cap, p.on_finish(Side::Response))));
    let mut response = Response::new(Body::new(body));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// What a client gets when the upstream did not answer: 504 for a slow one, else 502.
fn unavailable(kind: ErrorKind) -> Response {
    let status = if kind == ErrorKind::Timeout { StatusCode::GATEWAY_TIMEOUT } else { StatusCode::BAD_GATEWAY };
    (status, "upstream unavailable\n").into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_uris_keep_path_and_query_under_the_base() {
        let target: Uri = "/users/7?x=1&y=%20".parse().unwrap();
        for (base, want, host) in [
            ("http://10.0.0.1:8081", "http://10.0.0.1:8081/users/7?x=1&y=%20", "10.0.0.1:8081"),
            ("http://backend/", "http://backend/users/7?x=1&y=%20", "backend"),
            ("http://backend:80/api/v2/", "http://backend/api/v2/users/7?x=1&y=%20", "backend"),
            ("https://backend:443/", "https://backend/users/7?x=1&y=%20", "backend"),
            ("https://10.0.0.1:8443/api", "https://10.0.0.1:8443/api/users/7?x=1&y=%20", "10.0.0.1:8443"),
        ] {
            let upstream = Upstream::new(&base.parse().unwrap()).unwrap();
            assert_eq!(upstream.uri(&target).unwrap().to_string(), want, "{base}");
            assert_eq!(upstream.host, host, "{base}");
        }
    }
}

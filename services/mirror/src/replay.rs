//! One captured request replayed to one target, always answered with a response event:
//! the target's response, or the kind of error that stood in its way.

use std::time::Instant;

use http::{HeaderMap, HeaderName, HeaderValue};
use shadowdiff_core::event::now_ms;
use shadowdiff_core::{CapturedBody, Header, RequestEvent, ResponseEvent, Role};

use crate::MirrorError;
use crate::config::Target;

/// Headers set on every replay so a shadow can tell it is one.
const SHADOW_ROLE: &str = "x-shadow-role";
const SHADOW_DEPLOYMENT: &str = "x-shadow-deployment";

#[derive(Debug)]
pub(crate) struct Replayer {
    target: Target,
    role: Role,
    client: reqwest::Client,
    id_header: HeaderName,
    capture_max_body_bytes: usize,
}

impl Replayer {
    pub(crate) fn new(
        target: Target,
        id_header: HeaderName,
        capture_max_body_bytes: usize,
    ) -> Result<Self, MirrorError> {
        let client = shadowdiff_runtime::upstream::client(target.timeout)
            .map_err(|source| MirrorError::Client { target: target.name.clone(), source })?;
        Ok(Self { role: target.role.into(), target, client, id_header, capture_max_body_bytes })
    }

    pub(crate) fn name(&self) -> &str {
        &self.target.name
    }

    pub(crate) async fn replay(&self, request: &RequestEvent) -> ResponseEvent {
        let url = format!("{}{}", self.target.base_url.as_str().trim_end_matches('/'), request.path_and_query());
        let started = Instant::now();
        let sent = async {
            let method = http::Method::from_bytes(request.method.as_bytes()).unwrap_or_default();
            let response = self
                .client
                .request(method, url)
                .headers(self.headers(request))
                .body(request.body.bytes.clone())
                .send()
                .await?;
            let status = response.status();
            let headers = response.headers().clone();
            let body = response.bytes().await?;
            Ok::<_, reqwest::Error>((status, headers, body))
        }
        .await;
        let mut event = ResponseEvent {
            request_id: request.request_id.clone(),
            timestamp_ms: now_ms(),
            role: self.role,
            deployment: self.target.name.clone(),
            status: None,
            headers: Vec::new(),
            body: CapturedBody::empty(),
            latency_us: i64::try_from(started.elapsed().as_micros()).unwrap_or(i64::MAX),
            error: None,
        };
        match sent {
            Ok((status, headers, body)) => {
                event.status = Some(i32::from(status.as_u16()));
                event.headers = headers.iter().map(|(n, v)| Header::new(n.as_str(), v.as_bytes())).collect();
                event.body = CapturedBody::capture(&body, self.capture_max_body_bytes);
            }
            Err(error) => {
                let kind = shadowdiff_runtime::upstream::classify(&error);
                crate::events::replay_failed(self.name(), kind, &error);
                event.error = Some(kind);
            }
        }
        event
    }

    /// The captured headers, less those the client library or this replay sets itself.
    fn headers(&self, request: &RequestEvent) -> HeaderMap {
        let mut headers = HeaderMap::with_capacity(request.headers.len() + 3);
        for Header { name, value } in &request.headers {
            let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_bytes(value))
            else {
                continue;
            };
            if name == http::header::CONTENT_LENGTH || name == http::header::HOST {
                continue;
            }
            headers.append(name, value);
        }
        let mut set = |name: HeaderName, value: &str| {
            if let Ok(value) = HeaderValue::from_str(value) {
                headers.insert(name, value);
            }
        };
        set(self.id_header.clone(), &request.request_id);
        set(HeaderName::from_static(SHADOW_ROLE), self.role.as_str());
        set(HeaderName::from_static(SHADOW_DEPLOYMENT), &self.target.name);
        headers
    }
}

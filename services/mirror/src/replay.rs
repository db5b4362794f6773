//! One captured request replayed to one target, always answered with a response event:
//! the target's response, redacted as the taps redact the primary's, or the kind of error
//! that stood in its way.

use std::sync::Arc;
use std::time::Instant;

use http::{HeaderMap, HeaderName, HeaderValue};
use shadowdiff_core::event::now_ms;
use shadowdiff_core::headers::{SHADOW_DEPLOYMENT, SHADOW_ROLE};
use shadowdiff_core::redact::{DIGEST_PREFIX, Redactor, SEALED_HEADER_PREFIX, Sealer};
use shadowdiff_core::{CapturedBody, ErrorKind, ExpectedLeg, Header, RequestEvent, ResponseEvent, Role};

use crate::MirrorError;
use crate::profile::{Faults, Profile, SAFE_METHODS, TargetSpec, under};
use crate::vet::{TargetPolicy, VettedResolver};

/// What every target's replays share: the keys, the rules, the policy.
#[derive(Debug, Clone)]
pub(crate) struct ReplayContext {
    pub(crate) sealer: Option<Sealer>,
    pub(crate) redactor: Arc<Redactor>,
    pub(crate) policy: Arc<TargetPolicy>,
    pub(crate) id_header: HeaderName,
    pub(crate) capture_max_body_bytes: usize,
    /// Extra roots for https targets.
    pub(crate) ca: Option<shadowdiff_runtime::tls::CaBundle>,
}

/// Rewritten per target on unsafe replays, so a shadow's dedupe never collides with
/// production's or another shadow's.
const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// A replay's result, and whether a fault was injected into it.
#[derive(Debug)]
pub(crate) struct Replayed {
    pub(crate) event: ResponseEvent,
    pub(crate) injected: bool,
}

#[derive(Debug)]
pub(crate) struct Replayer {
    target: TargetSpec,
    role: Role,
    client: reqwest::Client,
    context: ReplayContext,
}

impl Replayer {
    pub(crate) fn new(target: TargetSpec, context: &ReplayContext) -> Result<Self, MirrorError> {
        let builder = shadowdiff_runtime::upstream::builder(target.timeout())
            .dns_resolver(Arc::new(VettedResolver(context.policy.clone())));
        let client = match &context.ca {
            Some(ca) => ca.trusted_by(builder),
            None => builder,
        }
        .build()
        .map_err(|source| MirrorError::Client { target: target.name.clone(), source })?;
        Ok(Self { role: target.role.into(), target, client, context: context.clone() })
    }

    /// The target's URL for `request`: its path and query under the base URL's path, set
    /// through the URL type so that nothing in them can change the host. `None` for a
    /// target that is not origin-form, which the consume loop has refused already.
    fn url(&self, request: &RequestEvent) -> Option<url::Url> {
        request.check().ok()?;
        let mut url = self.target.base_url.clone();
        let path = format!("{}{}", url.path().trim_end_matches('/'), request.path);
        url.set_path(&path);
        url.set_query(request.query.as_deref().filter(|q| !q.is_empty()));
        Some(url)
    }

    pub(crate) fn name(&self) -> &str {
        &self.target.name
    }

    /// An event answering for this target without a replay: shed, circuit open.
    pub(crate) fn unanswered(&self, request: &RequestEvent, profile: &Profile, kind: ErrorKind) -> ResponseEvent {
        let mut event = self.event(request, profile, 0);
        event.error = Some(kind);
        event
    }

    fn event(&self, request: &RequestEvent, profile: &Profile, latency_us: i64) -> ResponseEvent {
        ResponseEvent {
            request_id: request.request_id.clone(),
            timestamp_ms: now_ms(),
            role: self.role,
            deployment: self.target.name.clone(),
            status: None,
            headers: Vec::new(),
            body: CapturedBody::empty(),
            latency_us,
            error: None,
            profile: Some(profile.id.clone()),
            stage: Some(profile.stage.as_str().to_owned()),
            expected_legs: profile.targets.iter().map(|t| ExpectedLeg::new(t.role.into(), t.name.clone())).collect(),
        }
    }

    /// Replays `request`, with the profile's faults injected at their rates. The target's
    /// deadline covers the whole replay, injected latency included.
    pub(crate) async fn replay(&self, request: &RequestEvent, profile: &Profile) -> Replayed {
        let started = Instant::now();
        let fault = Fault::pick(&profile.faults, &request.request_id, &self.target.name);
        let elapsed = |started: Instant| i64::try_from(started.elapsed().as_micros()).unwrap_or(i64::MAX);
        let injected = fault.is_some();
        match fault {
            Some(Fault::Drop) => {
                let mut event = self.event(request, profile, elapsed(started));
                event.error = Some(ErrorKind::Reset);
                return Replayed { event, injected };
            }
            Some(Fault::Error(status)) => {
                let mut event = self.event(request, profile, elapsed(started));
                event.status = Some(i32::from(status));
                return Replayed { event, injected };
            }
            Some(Fault::Latency(_)) | None => {}
        }
        let Some(url) = self.url(request) else {
            let mut event = self.event(request, profile, 0);
            event.error = Some(ErrorKind::Other);
            return Replayed { event, injected: false };
        };
        let sent = tokio::time::timeout(self.target.timeout(), async {
            if let Some(Fault::Latency(delay)) = fault {
                tokio::time::sleep(delay).await;
            }
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
        })
        .await;
        let mut event = self.event(request, profile, elapsed(started));
        match sent {
            Ok(Ok((status, headers, body))) => {
                event.status = Some(i32::from(status.as_u16()));
                event.headers = headers.iter().map(|(n, v)| Header::new(n.as_str(), v.as_bytes())).collect();
                event.body = CapturedBody::capture(&body, self.context.capture_max_body_bytes);
                // Redacted before it leaves this process, with the taps' rules and key.
                self.context.redactor.body(&mut event.body, &event.headers);
                self.context.redactor.headers(&mut event.headers);
            }
            Ok(Err(error)) => {
                let kind = shadowdiff_runtime::upstream::classify(&error);
                crate::events::replay_failed(self.name(), kind, &error);
                event.error = Some(kind);
            }
            Err(_) => event.error = Some(ErrorKind::Timeout),
        }
        Replayed { event, injected }
    }

    /// The captured headers, less those the client library or this replay sets itself.
    /// Redacted values are never sent as their digest: a sealed header is opened and sent
    /// in clear (when this mirror holds the seal key), any other redacted header is left out.
    fn headers(&self, request: &RequestEvent) -> HeaderMap {
        let mut headers = HeaderMap::with_capacity(request.headers.len() + 3);
        for Header { name, value } in &request.headers {
            let (name, value) = match name.strip_prefix(SEALED_HEADER_PREFIX) {
                Some(original) => match self.context.sealer.as_ref().map(|s| s.open(original, value)) {
                    Some(Ok(clear)) => (original, clear),
                    Some(Err(error)) => {
                        crate::events::unsealable(&error);
                        continue;
                    }
                    None => continue,
                },
                None if value.starts_with(DIGEST_PREFIX.as_bytes()) => continue,
                None => (name.as_str(), value.clone()),
            };
            let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_bytes(&value))
            else {
                continue;
            };
            if name == http::header::CONTENT_LENGTH || name == http::header::HOST {
                continue;
            }
            headers.append(name, value);
        }
        let rewritten_key = headers
            .get(IDEMPOTENCY_KEY)
            .and_then(|v| v.to_str().ok())
            .map(|original| format!("{original}.shadow.{}", self.target.name));
        let mut set = |name: HeaderName, value: &str| {
            if let Ok(value) = HeaderValue::from_str(value) {
                headers.insert(name, value);
            }
        };
        if !SAFE_METHODS.contains(&request.method.to_ascii_uppercase().as_str()) {
            if let Some(original) = rewritten_key {
                set(HeaderName::from_static(IDEMPOTENCY_KEY), &original);
            }
        }
        set(self.context.id_header.clone(), &request.request_id);
        set(HeaderName::from_static(SHADOW_ROLE), self.role.as_str());
        set(HeaderName::from_static(SHADOW_DEPLOYMENT), &self.target.name);
        headers
    }
}

/// The fault injected into one replay, decided by sticky buckets per request and target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Drop,
    Error(u16),
    Latency(std::time::Duration),
}

impl Fault {
    fn pick(faults: &Faults, request_id: &str, target: &str) -> Option<Self> {
        let id = shadowdiff_core::RequestId::parse(request_id).ok()?;
        let hit = |kind: &str, percent: f64| under(id.bucket(&format!("{kind}:{target}:")), percent);
        if hit("drop", faults.drop_percent) {
            Some(Self::Drop)
        } else if hit("error", faults.error_percent) {
            Some(Self::Error(faults.error_status))
        } else if faults.latency_ms > 0 && hit("latency", faults.latency_percent) {
            Some(Self::Latency(std::time::Duration::from_millis(faults.latency_ms)))
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::TargetRole;
    use shadowdiff_core::redact::{Redactor, Rules};

    fn request(headers: Vec<Header>) -> RequestEvent {
        RequestEvent {
            request_id: "r-1".into(),
            timestamp_ms: 0,
            tap_id: "t".into(),
            method: "GET".into(),
            scheme: "http".into(),
            authority: "a".into(),
            path: "/".into(),
            query: None,
            route_template: None,
            headers,
            body: CapturedBody::empty(),
        }
    }

    fn replayer_at(base_url: &str, sealer: Option<Sealer>) -> Replayer {
        let target = TargetSpec {
            name: "v2".into(),
            role: TargetRole::Candidate,
            base_url: base_url.parse().unwrap(),
            rate_per_sec: None,
            max_concurrency: 1,
            max_queued: 1,
            timeout_ms: 1000,
        };
        let context = ReplayContext {
            sealer,
            redactor: Arc::new(Redactor::new(b"hmac-key-for-tests", Rules::default(), None)),
            policy: Arc::new(crate::vet::TargetPolicy::default()),
            id_header: HeaderName::from_static(shadowdiff_core::headers::REQUEST_ID),
            capture_max_body_bytes: 1024,
            ca: None,
        };
        Replayer::new(target, &context).unwrap()
    }

    fn replayer(sealer: Option<Sealer>) -> Replayer {
        replayer_at("http://127.0.0.1:1", sealer)
    }

    #[test]
    fn replay_urls_keep_the_targets_host_whatever_the_path() {
        let at = |base: &str, path: &str, query: Option<&str>| {
            let mut r = request(Vec::new());
            r.path = path.into();
            r.query = query.map(str::to_owned);
            replayer_at(base, None).url(&r).map(|u| u.to_string())
        };
        assert_eq!(at("http://v2:8080", "/items/1", Some("a=1")).as_deref(), Some("http://v2:8080/items/1?a=1"));
        assert_eq!(at("http://v2:8080/base/", "/items/1", None).as_deref(), Some("http://v2:8080/base/items/1"));
        assert_eq!(at("http://v2:8080", "//evil.example/x", None).as_deref(), Some("http://v2:8080//evil.example/x"));
        for path in ["@evil.example/x", "http://evil.example/x", "evil.example", ""] {
            assert_eq!(at("http://v2:8080", path, None), None, "{path}");
        }
    }

    #[test]
    fn sealed_headers_are_opened_and_digests_never_sent() {
        let key = [9; 32];
        let rules =
            Rules { headers: vec!["cookie".into()], sealed_headers: vec!["authorization".into()], ..Rules::default() };
        let redactor = Redactor::new(b"hmac-key-for-tests", rules, Some(Sealer::new(&key).unwrap()));
        let mut captured = vec![
            Header::new("authorization", "Bearer token-1"),
            Header::new("cookie", "sid=1"),
            Header::new("accept", "application/json"),
        ];
        redactor.headers(&mut captured);

        let with_key = replayer(Some(Sealer::new(&key).unwrap())).headers(&request(captured.clone()));
        assert_eq!(with_key["authorization"], "Bearer token-1", "opened for the replay");
        assert!(with_key.get("cookie").is_none(), "a digest is never sent");
        assert!(with_key.keys().all(|name| !name.as_str().starts_with(SEALED_HEADER_PREFIX)));
        assert_eq!(with_key["accept"], "application/json");
        assert_eq!(
            (&with_key[shadowdiff_core::headers::REQUEST_ID], &with_key[SHADOW_ROLE]),
            (&"r-1".parse().unwrap(), &"candidate".parse().unwrap())
        );

        let without_key = replayer(None).headers(&request(captured.clone()));
        assert!(without_key.get("authorization").is_none(), "no key: no authorization at all, never the digest");

        let wrong_key = replayer(Some(Sealer::new(&[1; 32]).unwrap())).headers(&request(captured));
        assert!(wrong_key.get("authorization").is_none());
    }
}

//! One captured request replayed to one target, always answered with a response event:
//! the target's response, redacted as the taps redact the primary's, or the kind of error
//! that stood in its way.

use std::sync::Arc;
use std::time::{Duration, Instant};

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
pub struct ReplayContext {
    pub(crate) sealer: Option<Sealer>,
    pub(crate) redactor: Arc<Redactor>,
    pub(crate) policy: Arc<TargetPolicy>,
    pub(crate) id_header: HeaderName,
    pub(crate) capture_max_body_bytes: usize,
    /// Extra roots for https targets.
    pub(crate) ca: Option<shadowdiff_runtime::tls::CaBundle>,
}

impl ReplayContext {
    /// The keys, rules and policy of a mirror's `[mirror]` section: a `shadowctl replay`
    /// run replays by the same ones as the mirror whose config it is given.
    pub fn of(section: &crate::config::MirrorSection) -> Self {
        Self {
            sealer: section.redaction.sealer(),
            redactor: Arc::new(section.redaction.redactor(false)),
            policy: Arc::new(section.policy()),
            id_header: section.request_id_header.clone().into(),
            capture_max_body_bytes: section.capture_max_body_bytes,
            ca: section.ca_file.clone(),
        }
    }

    /// Where replays may go.
    pub fn policy(&self) -> &TargetPolicy {
        &self.policy
    }
}

/// Rewritten per target on unsafe replays, so a shadow's dedupe never collides with
/// production's or another shadow's.
const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// A target's response: status, headers and body.
type Sent = Result<(http::StatusCode, HeaderMap, axum::body::Bytes), Failed>;

/// Why a replay has no response.
#[derive(Debug)]
enum Failed {
    Client(reqwest::Error),
    Timeout,
}

/// A replay's result, and whether a fault was injected into it.
#[derive(Debug)]
pub struct Replayed {
    pub event: ResponseEvent,
    pub injected: bool,
}

/// Replays requests to one target: its client (resolving only to allowed addresses), its
/// deadline, the headers opened or left out, the response redacted.
#[derive(Debug)]
pub struct Replayer {
    target: TargetSpec,
    role: Role,
    client: reqwest::Client,
    context: ReplayContext,
}

impl Replayer {
    pub fn new(target: TargetSpec, context: &ReplayContext) -> Result<Self, MirrorError> {
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

    pub fn name(&self) -> &str {
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
            expected_legs: profile
                .targets
                .iter()
                .map(|t| ExpectedLeg::new(t.role.into(), t.name.clone()).timed_by_tap(t.timed_by_tap))
                .collect(),
            run: String::new(),
        }
    }

    /// Replays `request`, with the profile's faults injected at their rates. The target's
    /// deadline covers the whole replay, injected latency and body included.
    ///
    /// The published latency is the target's own: the injected latency fault's delay (it
    /// stands for a slow target, so it counts) plus the time from handing the built request
    /// to the HTTP client to the response head coming back. Nothing of the replay's own work
    /// is inside it: not the fault draw, the header copying, the body download nor the
    /// event building, so the candidate's and the secondary's numbers differ by the targets
    /// and not by what the mirror did around them. Queueing for the target's rate limit and
    /// concurrency happens before this, and is outside it too. A replay that timed out
    /// reports the time it had waited.
    pub async fn replay(&self, request: &RequestEvent, profile: &Profile) -> Replayed {
        let fault = Fault::pick(&profile.faults, &request.request_id, &self.target.name);
        let injected = fault.is_some();
        let delay = match fault {
            Some(Fault::Drop) => {
                let mut event = self.event(request, profile, 0);
                event.error = Some(ErrorKind::Reset);
                return Replayed { event, injected };
            }
            Some(Fault::Error(status)) => {
                let mut event = self.event(request, profile, 0);
                event.status = Some(i32::from(status));
                return Replayed { event, injected };
            }
            Some(Fault::Latency(delay)) => delay,
            None => Duration::ZERO,
        };
        let Some(url) = self.url(request) else {
            let mut event = self.event(request, profile, 0);
            event.error = Some(ErrorKind::Other);
            return Replayed { event, injected: false };
        };
        let (latency, sent) = self.exchange(request, url, delay).await;
        let mut event = self.event(request, profile, i64::try_from(latency.as_micros()).unwrap_or(i64::MAX));
        match sent {
            Ok((status, headers, body)) => {
                event.status = Some(i32::from(status.as_u16()));
                event.headers = headers.iter().map(|(n, v)| Header::new(n.as_str(), v.as_bytes())).collect();
                event.body = CapturedBody::capture(&body, self.context.capture_max_body_bytes);
                // Redacted before it leaves this process, with the taps' rules and key.
                self.context.redactor.body(&mut event.body, &event.headers);
                self.context.redactor.headers(&mut event.headers);
            }
            Err(Failed::Client(error)) => {
                let kind = shadowdiff_runtime::upstream::classify(&error);
                crate::events::replay_failed(self.name(), kind, &error);
                event.error = Some(kind);
            }
            Err(Failed::Timeout) => event.error = Some(ErrorKind::Timeout),
        }
        Replayed { event, injected }
    }

    /// Sends `request` to `url` after the injected `delay`, within the target's deadline,
    /// and reads the response. Returns the latency [`Self::replay`] publishes, with the
    /// response or why there was none.
    async fn exchange(&self, request: &RequestEvent, url: url::Url, delay: Duration) -> (Duration, Sent) {
        let deadline = tokio::time::Instant::now() + self.target.timeout();
        if !delay.is_zero() && tokio::time::timeout_at(deadline, tokio::time::sleep(delay)).await.is_err() {
            return (self.target.timeout(), Err(Failed::Timeout));
        }
        let method = http::Method::from_bytes(request.method.as_bytes()).unwrap_or_default();
        let built =
            self.client.request(method, url).headers(self.headers(request)).body(request.body.bytes.clone()).build();
        let built = match built {
            Ok(built) => built,
            Err(error) => return (delay, Err(Failed::Client(error))),
        };
        let sending = Instant::now();
        let head = tokio::time::timeout_at(deadline, self.client.execute(built)).await;
        let latency = delay + sending.elapsed();
        let response = match head {
            Ok(Ok(response)) => response,
            Ok(Err(error)) => return (latency, Err(Failed::Client(error))),
            Err(_) => return (latency, Err(Failed::Timeout)),
        };
        let status = response.status();
        let headers = response.headers().clone();
        match tokio::time::timeout_at(deadline, response.bytes()).await {
            Ok(Ok(body)) => (latency, Ok((status, headers, body))),
            Ok(Err(error)) => (latency, Err(Failed::Client(error))),
            Err(_) => (latency, Err(Failed::Timeout)),
        }
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
        if !SAFE_METHODS.contains(&request.method.to_ascii_uppercase().as_str())
            && let Some(original) = rewritten_key
        {
            set(HeaderName::from_static(IDEMPOTENCY_KEY), &original);
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
            run: String::new(),
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
            timed_by_tap: false,
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

    const SLOW: std::time::Duration = std::time::Duration::from_millis(200);

    /// A target whose `/head-late` answers 200 ms late, whose `/body-late` sends its head at
    /// once and its body 200 ms later, and whose `/body-never` never sends its body.
    async fn slow_target() -> String {
        use axum::routing::get;
        let body = |late: Option<std::time::Duration>| {
            let chunk = async move {
                match late {
                    Some(late) => tokio::time::sleep(late).await,
                    None => std::future::pending().await,
                }
                Ok::<_, std::convert::Infallible>(axum::body::Bytes::from_static(b"body"))
            };
            axum::body::Body::from_stream(futures_util::stream::once(chunk))
        };
        let app = axum::Router::new()
            .route(
                "/head-late",
                get(|| async {
                    tokio::time::sleep(SLOW).await;
                    "body"
                }),
            )
            .route("/body-late", get(move || async move { body(Some(SLOW)) }))
            .route("/body-never", get(move || async move { body(None) }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{address}")
    }

    #[tokio::test]
    async fn latency_is_the_targets_time_to_its_response_head_with_the_injected_delay() {
        let replayer = replayer_at(&slow_target().await, None);
        let profile = |faults: &str| -> Profile {
            toml::from_str(&format!(
                "id = \"p\"\nfaults = {{ {faults} }}\n\
                 targets = [{{ name = \"v2\", role = \"candidate\", base_url = \"http://127.0.0.1:1\" }}]"
            ))
            .unwrap()
        };
        let replay = |path: &str, faults: &str| {
            let mut request = request(Vec::new());
            request.path = path.into();
            let profile = profile(faults);
            let replayer = &replayer;
            async move { replayer.replay(&request, &profile).await.event }
        };

        let head_late = replay("/head-late", "").await;
        let body_late = replay("/body-late", "").await;
        for event in [&head_late, &body_late] {
            assert_eq!(
                (event.status, event.error, &event.body.bytes[..]),
                (Some(200), None, &b"body"[..]),
                "{event:?}"
            );
        }
        assert!(head_late.latency_us >= 200_000, "{head_late:?}");
        // The same 200 ms, once before the head and once after it: only the first is the
        // target's latency. Compared with the first in this run, so a slow machine's own
        // delays count on both sides.
        assert!(
            body_late.latency_us * 4 < head_late.latency_us,
            "head 200 ms late: {} us; body 200 ms late: {} us",
            head_late.latency_us,
            body_late.latency_us
        );

        let delayed = replay("/body-late", "latency_ms = 100, latency_percent = 100").await;
        assert_eq!(delayed.status, Some(200));
        assert!(
            (100_000..head_late.latency_us).contains(&delayed.latency_us),
            "an injected 100 ms counts, the late body still does not: {} us",
            delayed.latency_us
        );

        // The deadline (1 s here) still covers the body.
        let never = replay("/body-never", "").await;
        assert_eq!(never.error, Some(ErrorKind::Timeout), "{never:?}");
        assert!(never.latency_us * 4 < head_late.latency_us, "{never:?}");
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

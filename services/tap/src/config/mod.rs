//! The tap's configuration (`shadowdiff-tap --config tap.toml`, `SHADOWDIFF_TAP_*`).

mod tls;

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use shadowdiff_core::Role;
use shadowdiff_runtime::admin::AdminConfig;
use shadowdiff_runtime::config::{ConfigError, HeaderName, Validate, serde_duration};
use shadowdiff_runtime::kafka::{KafkaConfig, TopicsConfig};
pub use shadowdiff_runtime::redaction::RedactionConfig;
use shadowdiff_runtime::telemetry::LogConfig;
pub use tls::ListenerTls;
pub(crate) use tls::UpstreamTls;

#[derive(Debug, Clone, Deserialize)]
pub struct TapConfig {
    pub tap: TapSection,
    #[serde(default)]
    pub kafka: KafkaConfig,
    #[serde(default)]
    pub topics: TopicsConfig,
    #[serde(default = "default_admin")]
    pub admin: AdminConfig,
    #[serde(default)]
    pub log: LogConfig,
}

/// `[tap]`
#[derive(Debug, Clone, Deserialize)]
pub struct TapSection {
    /// Where clients connect, e.g. `0.0.0.0:8080`. HTTP/1.1 and h2c, or HTTP/1.1 and h2
    /// over TLS with `[tap.tls]`.
    pub listen: SocketAddr,
    /// Serve clients over TLS with this certificate and key; absent, plain HTTP.
    #[serde(default)]
    pub tls: Option<ListenerTls>,
    /// The upstream's base URL, `http://` or `https://`, e.g. `http://127.0.0.1:8081`. Not
    /// used in egress mode, where each call names its own.
    #[serde(default)]
    pub upstream: Option<url::Url>,
    /// A PEM bundle of root certificates an `https://` upstream may chain to, trusted
    /// beside the system's.
    #[serde(default)]
    pub upstream_ca_file: Option<shadowdiff_runtime::tls::CaBundle>,
    /// The parsed trust for an `https://` upstream, built once at validation.
    #[serde(skip)]
    pub(crate) upstream_tls: UpstreamTls,
    /// `ingress` in front of the primary; `sidecar` in front of a secondary or candidate;
    /// `egress` as the HTTP proxy of a deployment's outbound calls.
    #[serde(default)]
    pub mode: Mode,
    /// Names this tap instance in every event it publishes.
    #[serde(default = "default_tap_id")]
    pub id: String,
    /// The request-id header: kept when valid, minted otherwise, echoed to the client.
    #[serde(default = "default_request_id_header")]
    pub request_id_header: HeaderName,
    /// Share of requests captured, 0 to 100, sticky by request id.
    #[serde(default = "default_capture_percent")]
    pub capture_percent: f64,
    /// Body bytes captured per request and response; the rest is only hashed.
    #[serde(default = "default_capture_max_body_bytes")]
    pub capture_max_body_bytes: usize,
    /// Deadline for the upstream's response head; past it the client gets 504.
    #[serde(default = "default_upstream_timeout", rename = "upstream_timeout_ms", with = "serde_duration::millis")]
    pub upstream_timeout: Duration,
    /// How long shutdown waits for in-flight requests.
    #[serde(default = "default_drain", rename = "drain_timeout_ms", with = "serde_duration::millis")]
    pub drain_timeout: Duration,
    /// Serving threads, each with its own connections and upstream pool (default: one per
    /// CPU).
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// How long a client has to send a complete request head (HTTP/1.1), or its connection
    /// preface and first request (h2c), before its connection is closed: a client that
    /// trickles its headers cannot hold a connection open. Over HTTP/1.1 this clock also
    /// runs while a keep-alive connection waits for its next request, so an idle HTTP/1.1
    /// connection is closed after the shorter of this and `idle_timeout_ms`.
    #[serde(
        default = "default_header_read_timeout",
        rename = "header_read_timeout_ms",
        with = "serde_duration::millis"
    )]
    pub header_read_timeout: Duration,
    /// How long a connection may go without starting a request before it is closed; requests
    /// still in flight on it finish first (h2c gets a GOAWAY).
    #[serde(default = "default_idle_timeout", rename = "idle_timeout_ms", with = "serde_duration::millis")]
    pub idle_timeout: Duration,
    /// Open client connections per worker; a worker closes the connections dealt to it
    /// beyond this at once, and counts them
    /// (`shadowdiff_tap_connections_closed_total{reason="worker_full"}`).
    #[serde(default = "default_max_connections_per_worker")]
    pub max_connections_per_worker: usize,
    /// The largest request head accepted, at least 8192: the request line and headers over
    /// HTTP/1.1 (more gets 431 and the connection closed; it also bounds the connection's
    /// read and write buffers), the header list over h2c (announced as
    /// `SETTINGS_MAX_HEADER_LIST_SIZE`; more gets 431 on that stream).
    #[serde(default = "default_max_header_bytes")]
    pub max_header_bytes: usize,
    /// Captured body bytes all workers may hold in their publishing queues at once. While
    /// the queues hold this much, further exchanges are not captured and are counted as
    /// dropped (`shadowdiff_tap_events_dropped_total{reason="memory_budget"}`); the client
    /// path never waits for room.
    #[serde(default = "default_capture_memory_budget_bytes")]
    pub capture_memory_budget_bytes: usize,
    /// Route templates, most specific first; other paths are templated automatically.
    #[serde(default)]
    pub routes: RouteTable,
    pub redaction: RedactionConfig,
}

/// Where the tap sits.
/// The loader's search for unknown keys (`serde_ignored`) does not reach into an internally
/// tagged enum, so the mode and its stub refuse unknown keys themselves: a misspelt
/// `[tap.mode.stubs]` must not leave a shadow's tap forwarding its writes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind", deny_unknown_fields)]
pub enum Mode {
    /// In front of the primary: publishes request and primary response events.
    #[default]
    Ingress,
    /// In front of a shadow: publishes the responses to mirrored requests (those carrying
    /// `X-Shadow-Role`) under this role and deployment.
    Sidecar { role: SidecarRole, deployment: String },
    /// The HTTP proxy (`http_proxy`) of a deployment's outbound calls: each call is
    /// forwarded to the absolute URL it names and published as an outbound-call event,
    /// linked to the originating request by the request-id header the deployment propagates.
    /// With `stub`, a shadow's calls are answered from the primary's recorded calls instead,
    /// and never forwarded.
    Egress {
        role: EgressRole,
        deployment: String,
        #[serde(default)]
        stub: Option<StubConfig>,
    },
}

/// `[tap.mode.stub]`: an egress tap in front of a shadow that answers each call from the
/// primary's recorded call for the same request (`crate::stub`), and lets none through.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StubConfig {
    /// The status of the answer to a call no recorded call matches.
    #[serde(default = "default_unmatched_status")]
    pub unmatched_status: u16,
    /// How long a call waits for the primary's recorded calls of its request to arrive.
    #[serde(default = "default_stub_wait", rename = "wait_ms", with = "serde_duration::millis")]
    pub wait: Duration,
    /// Requests whose recorded calls are held at most; the oldest are forgotten first.
    #[serde(default = "default_stub_max_requests")]
    pub max_requests: usize,
    /// How long a request's recorded calls are held.
    #[serde(default = "default_stub_keep", rename = "keep_secs", with = "serde_duration::secs")]
    pub keep: Duration,
    /// Largest call body read to match it; a larger one is answered as unmatched.
    #[serde(default = "default_stub_max_body_bytes")]
    pub max_body_bytes: usize,
}

const fn default_unmatched_status() -> u16 {
    502
}
const fn default_stub_wait() -> Duration {
    Duration::from_secs(2)
}
const fn default_stub_max_requests() -> usize {
    100_000
}
const fn default_stub_keep() -> Duration {
    Duration::from_secs(120)
}
const fn default_stub_max_body_bytes() -> usize {
    1024 * 1024
}

/// Who makes the outbound calls an egress tap sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EgressRole {
    Primary,
    Secondary,
    Candidate,
}

impl From<EgressRole> for Role {
    fn from(role: EgressRole) -> Self {
        match role {
            EgressRole::Primary => Self::Primary,
            EgressRole::Secondary => Self::Secondary,
            EgressRole::Candidate => Self::Candidate,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SidecarRole {
    Secondary,
    Candidate,
}

impl From<SidecarRole> for Role {
    fn from(role: SidecarRole) -> Self {
        match role {
            SidecarRole::Secondary => Self::Secondary,
            SidecarRole::Candidate => Self::Candidate,
        }
    }
}

/// `[[tap.routes]]`, with the templates' matcher built as they are read: a malformed
/// template, or two that match the same paths, is reported under `tap.routes` before
/// anything starts, and the tap matches with this very matcher.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "Vec<RouteConfig>")]
pub struct RouteTable {
    routes: Vec<RouteConfig>,
    /// Each template, to its index in `routes`.
    pub(crate) router: matchit::Router<usize>,
}

impl Default for RouteTable {
    fn default() -> Self {
        Self { routes: Vec::new(), router: matchit::Router::new() }
    }
}

impl TryFrom<Vec<RouteConfig>> for RouteTable {
    type Error = String;

    fn try_from(routes: Vec<RouteConfig>) -> Result<Self, String> {
        let mut router = matchit::Router::new();
        for (i, route) in routes.iter().enumerate() {
            router.insert(route.template.as_str(), i).map_err(|e| format!("[{i}] {:?}: {e}", route.template))?;
        }
        Ok(Self { routes, router })
    }
}

impl std::ops::Deref for RouteTable {
    type Target = [RouteConfig];

    fn deref(&self) -> &[RouteConfig] {
        &self.routes
    }
}

/// One of `[[tap.routes]]`.
#[derive(Debug, Clone, Deserialize)]
pub struct RouteConfig {
    /// A path template such as `/users/{id}` or `/static/{*rest}`.
    pub template: String,
    /// Overrides `tap.capture_percent` for this route.
    pub capture_percent: Option<f64>,
    /// Overrides `tap.capture_max_body_bytes` for this route.
    pub capture_max_body_bytes: Option<usize>,
}

fn default_admin() -> AdminConfig {
    AdminConfig { listen: SocketAddr::from(([0, 0, 0, 0], 9464)) }
}
fn default_tap_id() -> String {
    std::env::var("HOSTNAME").unwrap_or_else(|_| "tap".to_owned())
}
fn default_request_id_header() -> HeaderName {
    HeaderName::from_static(shadowdiff_core::headers::REQUEST_ID)
}
const fn default_capture_percent() -> f64 {
    100.0
}
const fn default_capture_max_body_bytes() -> usize {
    256 * 1024
}
const fn default_upstream_timeout() -> Duration {
    Duration::from_secs(30)
}
const fn default_drain() -> Duration {
    Duration::from_secs(20)
}
const fn default_header_read_timeout() -> Duration {
    Duration::from_secs(10)
}
const fn default_idle_timeout() -> Duration {
    Duration::from_secs(60)
}
const fn default_max_connections_per_worker() -> usize {
    10_000
}
const fn default_max_header_bytes() -> usize {
    64 * 1024
}
const fn default_capture_memory_budget_bytes() -> usize {
    64 * 1024 * 1024
}
fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

impl Validate for TapConfig {
    fn validate(&self, errors: &mut Vec<ConfigError>) {
        self.topics.validate(errors);
        let tap = &self.tap;
        match (&tap.upstream, &tap.mode) {
            (Some(url), _) if !matches!(url.scheme(), "http" | "https") => {
                errors.push(ConfigError::rule("tap.upstream", "must be an http:// or https:// URL"));
            }
            (None, Mode::Ingress | Mode::Sidecar { .. }) => {
                errors.push(ConfigError::rule("tap.upstream", "is required unless the tap is in egress mode"));
            }
            _ => {}
        }
        validate_tls(tap, errors);
        if tap.upstream_timeout.is_zero() {
            errors.push(ConfigError::rule("tap.upstream_timeout_ms", "must be > 0"));
        }
        if tap.workers == 0 {
            errors.push(ConfigError::rule("tap.workers", "must be at least 1"));
        }
        validate_limits(tap, errors);
        let percent_ok = |p: f64| (0.0..=100.0).contains(&p);
        if !percent_ok(tap.capture_percent) {
            errors.push(ConfigError::rule("tap.capture_percent", "must be between 0 and 100"));
        }
        for (i, route) in tap.routes.iter().enumerate() {
            if route.capture_percent.is_some_and(|p| !percent_ok(p)) {
                errors.push(ConfigError::rule(format!("tap.routes[{i}].capture_percent"), "must be between 0 and 100"));
            }
        }
        tap.redaction.validate("tap.redaction", errors);
        if let Mode::Sidecar { deployment, .. } | Mode::Egress { deployment, .. } = &tap.mode
            && deployment.is_empty()
        {
            errors.push(ConfigError::rule("tap.mode.deployment", "must not be empty"));
        }
        if let Mode::Egress { role, stub: Some(stub), .. } = &tap.mode {
            if *role == EgressRole::Primary {
                errors.push(ConfigError::rule(
                    "tap.mode.stub",
                    "answers a shadow's calls from the primary's: not for the primary's own",
                ));
            }
            if !(200..=599).contains(&stub.unmatched_status) {
                errors.push(ConfigError::rule("tap.mode.stub.unmatched_status", "must be an HTTP status, 200 to 599"));
            }
            if stub.max_requests == 0 || stub.max_body_bytes == 0 {
                errors.push(ConfigError::rule("tap.mode.stub", "max_requests and max_body_bytes must be at least 1"));
            }
        }
    }
}

/// Reads and parses the TLS files once, keeping the result for the tap to use.
fn validate_tls(tap: &TapSection, errors: &mut Vec<ConfigError>) {
    if let Some(Err(mut bad)) = tap.tls.as_ref().map(ListenerTls::server_config) {
        errors.append(&mut bad);
    }
    match tap.upstream_client_tls() {
        Some(Err(mut bad)) => errors.append(&mut bad),
        None if tap.upstream_ca_file.is_some() => {
            errors.push(ConfigError::rule("tap.upstream_ca_file", "is only used with an https:// tap.upstream"));
        }
        _ => {}
    }
}

impl TapSection {
    /// The rustls client config for an `https://` upstream (`None` for any other).
    pub(crate) fn upstream_client_tls(&self) -> Option<Result<std::sync::Arc<rustls::ClientConfig>, Vec<ConfigError>>> {
        let https = self.upstream.as_ref().is_some_and(|url| url.scheme() == "https");
        https.then(|| self.upstream_tls.client_config(self.upstream_ca_file.as_ref()))
    }
}

/// The range of `max_header_bytes`: hyper's HTTP/1 read buffer, which it bounds, cannot be
/// smaller than 8 KiB, and h2 announces it in 32 bits.
const HEADER_BYTES_RANGE: std::ops::RangeInclusive<usize> = 8192..=u32::MAX as usize;

/// The limits a hostile client runs into.
fn validate_limits(tap: &TapSection, errors: &mut Vec<ConfigError>) {
    if tap.header_read_timeout.is_zero() {
        errors.push(ConfigError::rule("tap.header_read_timeout_ms", "must be > 0"));
    }
    if tap.idle_timeout.is_zero() {
        errors.push(ConfigError::rule("tap.idle_timeout_ms", "must be > 0"));
    }
    if tap.max_connections_per_worker == 0 {
        errors.push(ConfigError::rule("tap.max_connections_per_worker", "must be at least 1"));
    }
    if !HEADER_BYTES_RANGE.contains(&tap.max_header_bytes) {
        errors.push(ConfigError::rule(
            "tap.max_header_bytes",
            format!("must be between {} and {}", HEADER_BYTES_RANGE.start(), HEADER_BYTES_RANGE.end()),
        ));
    }
    // One exchange holds up to a request and a response capture: a smaller budget would
    // drop every exchange whose bodies reach the cap.
    let largest_cap =
        tap.routes.iter().filter_map(|r| r.capture_max_body_bytes).fold(tap.capture_max_body_bytes, usize::max);
    if tap.capture_memory_budget_bytes < largest_cap.saturating_mul(2) {
        errors.push(ConfigError::rule(
            "tap.capture_memory_budget_bytes",
            format!("must hold at least one exchange's two captures: >= {}", largest_cap.saturating_mul(2)),
        ));
    }
}

impl shadowdiff_runtime::ServiceConfig for TapConfig {
    fn log(&self) -> &LogConfig {
        &self.log
    }
}

#[cfg(test)]
mod tests;

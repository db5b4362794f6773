//! The tap's configuration (`shadowdiff-tap --config tap.toml`, `SHADOWDIFF_TAP_*`).

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use shadowdiff_runtime::admin::AdminConfig;
use shadowdiff_runtime::config::{ConfigError, Validate, serde_duration};
use shadowdiff_runtime::kafka::{KafkaConfig, TopicsConfig};
use shadowdiff_runtime::telemetry::LogConfig;

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
    /// Where clients connect, e.g. `0.0.0.0:8080`.
    pub listen: SocketAddr,
    /// The primary's base URL, e.g. `http://127.0.0.1:8081`.
    pub upstream: url::Url,
    /// Names this tap instance in every event it publishes.
    #[serde(default = "default_tap_id")]
    pub id: String,
    /// The request-id header: kept when valid, minted otherwise, echoed to the client.
    #[serde(default = "default_request_id_header")]
    pub request_id_header: String,
    /// Body bytes captured per request and response; the rest is only hashed.
    #[serde(default = "default_capture_max_body_bytes")]
    pub capture_max_body_bytes: usize,
    /// Largest request body the tap accepts; larger ones get 413.
    #[serde(default = "default_max_request_body_bytes")]
    pub max_request_body_bytes: usize,
    /// Deadline for the primary's whole response; past it the client gets 504.
    #[serde(default = "default_upstream_timeout", rename = "upstream_timeout_ms", with = "serde_duration::millis")]
    pub upstream_timeout: Duration,
}

fn default_admin() -> AdminConfig {
    AdminConfig { listen: SocketAddr::from(([0, 0, 0, 0], 9464)) }
}
fn default_tap_id() -> String {
    std::env::var("HOSTNAME").unwrap_or_else(|_| "tap".to_owned())
}
fn default_request_id_header() -> String {
    "x-request-id".to_owned()
}
const fn default_capture_max_body_bytes() -> usize {
    256 * 1024
}
const fn default_max_request_body_bytes() -> usize {
    16 * 1024 * 1024
}
const fn default_upstream_timeout() -> Duration {
    Duration::from_secs(30)
}

impl Validate for TapConfig {
    fn validate(&self, errors: &mut Vec<ConfigError>) {
        self.topics.validate(errors);
        if http::HeaderName::from_bytes(self.tap.request_id_header.as_bytes()).is_err() {
            errors.push(ConfigError::rule("tap.request_id_header", "is not a valid HTTP header name"));
        }
        if !matches!(self.tap.upstream.scheme(), "http") {
            errors.push(ConfigError::rule("tap.upstream", "must be an http:// URL"));
        }
        if self.tap.upstream_timeout.is_zero() {
            errors.push(ConfigError::rule("tap.upstream_timeout_ms", "must be > 0"));
        }
    }
}

impl shadowdiff_runtime::ServiceConfig for TapConfig {
    fn log(&self) -> &LogConfig {
        &self.log
    }
}

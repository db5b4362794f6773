//! The mirror's configuration (`shadowdiff-mirror --config mirror.toml`, `SHADOWDIFF_MIRROR_*`).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use shadowdiff_core::Role;
use shadowdiff_runtime::admin::AdminConfig;
use shadowdiff_runtime::config::{ConfigError, Validate, serde_duration};
use shadowdiff_runtime::kafka::{KafkaConfig, TopicsConfig};
use shadowdiff_runtime::telemetry::LogConfig;

#[derive(Debug, Clone, Deserialize)]
pub struct MirrorConfig {
    pub mirror: MirrorSection,
    #[serde(default)]
    pub kafka: KafkaConfig,
    #[serde(default)]
    pub topics: TopicsConfig,
    #[serde(default = "default_admin")]
    pub admin: AdminConfig,
    #[serde(default)]
    pub log: LogConfig,
}

/// `[mirror]`
#[derive(Debug, Clone, Deserialize)]
pub struct MirrorSection {
    /// Consumer group shared by all replicas of this mirror.
    #[serde(default = "default_group_id")]
    pub group_id: String,
    /// Methods replayed. Only safe methods by default: a shadow must never receive a
    /// production write by accident.
    #[serde(default = "default_methods")]
    pub methods: BTreeSet<String>,
    /// Header carrying the request id on replays.
    #[serde(default = "default_request_id_header")]
    pub request_id_header: String,
    /// Body bytes captured per response; the rest is only hashed.
    #[serde(default = "default_capture_max_body_bytes")]
    pub capture_max_body_bytes: usize,
    /// Where replays go.
    pub targets: Vec<Target>,
    /// The taps' `seal_key` (32 bytes, base64): opens sealed headers so replays can
    /// authenticate. Without it sealed headers are dropped. Set it from a secret:
    /// `SHADOWDIFF_MIRROR_SEAL_KEY`.
    #[serde(default)]
    pub seal_key: Option<String>,
}

impl MirrorSection {
    /// The sealer for `seal_key`, if one is set; call after validation.
    pub fn sealer(&self) -> Option<shadowdiff_core::redact::Sealer> {
        use base64::Engine;
        let key = base64::engine::general_purpose::STANDARD.decode(self.seal_key.as_ref()?.trim()).ok()?;
        shadowdiff_core::redact::Sealer::new(&key).ok()
    }
}

/// One replay target.
#[derive(Debug, Clone, Deserialize)]
pub struct Target {
    /// Deployment name, as it appears in events, tables and verdicts.
    pub name: String,
    pub role: TargetRole,
    /// Base URL; the request's path and query are appended.
    pub base_url: url::Url,
    /// Deadline for the whole response.
    #[serde(default = "default_timeout", rename = "timeout_ms", with = "serde_duration::millis")]
    pub timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetRole {
    Secondary,
    Candidate,
}

impl From<TargetRole> for Role {
    fn from(role: TargetRole) -> Self {
        match role {
            TargetRole::Secondary => Self::Secondary,
            TargetRole::Candidate => Self::Candidate,
        }
    }
}

fn default_admin() -> AdminConfig {
    AdminConfig { listen: SocketAddr::from(([0, 0, 0, 0], 9465)) }
}
fn default_group_id() -> String {
    "shadowdiff-mirror".to_owned()
}
fn default_methods() -> BTreeSet<String> {
    ["GET", "HEAD", "OPTIONS"].map(str::to_owned).into()
}
fn default_request_id_header() -> String {
    "x-request-id".to_owned()
}
const fn default_capture_max_body_bytes() -> usize {
    256 * 1024
}
const fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

impl Validate for MirrorConfig {
    fn validate(&self, errors: &mut Vec<ConfigError>) {
        self.topics.validate(errors);
        let m = &self.mirror;
        if m.targets.is_empty() {
            errors.push(ConfigError::rule("mirror.targets", "needs at least one target"));
        }
        let mut names = BTreeSet::new();
        for (i, target) in m.targets.iter().enumerate() {
            if !names.insert(target.name.as_str()) {
                errors.push(ConfigError::rule(
                    format!("mirror.targets[{i}].name"),
                    format!("duplicate target {:?}", target.name),
                ));
            }
            if target.base_url.scheme() != "http" {
                errors.push(ConfigError::rule(format!("mirror.targets[{i}].base_url"), "must be an http:// URL"));
            }
            if target.timeout.is_zero() {
                errors.push(ConfigError::rule(format!("mirror.targets[{i}].timeout_ms"), "must be > 0"));
            }
        }
        if m.targets.iter().filter(|t| t.role == TargetRole::Secondary).count() > 1 {
            errors.push(ConfigError::rule("mirror.targets", "at most one secondary"));
        }
        if let Some(bad) = m.methods.iter().find(|method| http::Method::from_bytes(method.as_bytes()).is_err()) {
            errors.push(ConfigError::rule("mirror.methods", format!("{bad:?} is not an HTTP method")));
        }
        if m.seal_key.is_some() && m.sealer().is_none() {
            errors.push(ConfigError::rule("mirror.seal_key", "must be 32 bytes, base64"));
        }
        if http::HeaderName::from_bytes(m.request_id_header.as_bytes()).is_err() {
            errors.push(ConfigError::rule("mirror.request_id_header", "is not a valid HTTP header name"));
        }
    }
}

impl shadowdiff_runtime::ServiceConfig for MirrorConfig {
    fn log(&self) -> &LogConfig {
        &self.log
    }
}

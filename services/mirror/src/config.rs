//! The mirror's configuration (`shadowdiff-mirror --config mirror.toml`, `SHADOWDIFF_MIRROR_*`).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use shadowdiff_runtime::admin::AdminConfig;
use shadowdiff_runtime::config::{ConfigError, Validate, serde_duration};
use shadowdiff_runtime::kafka::{KafkaConfig, TopicsConfig};
use shadowdiff_runtime::telemetry::LogConfig;

use crate::profile::Profile;

#[derive(Debug, Clone, Deserialize)]
pub struct MirrorConfig {
    #[serde(default)]
    pub mirror: MirrorSection,
    #[serde(default)]
    pub kafka: KafkaConfig,
    #[serde(default)]
    pub topics: TopicsConfig,
    /// Serves `/healthz`, `/metrics` and the profile API (`/v1/profiles`).
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
    /// Header carrying the request id on replays.
    #[serde(default = "default_request_id_header")]
    pub request_id_header: String,
    /// Body bytes captured per response; the rest is only hashed.
    #[serde(default = "default_capture_max_body_bytes")]
    pub capture_max_body_bytes: usize,
    /// How long shutdown waits for replays in flight before committing.
    #[serde(default = "default_drain", rename = "drain_timeout_ms", with = "serde_duration::millis")]
    pub drain_timeout: Duration,
    /// Profiles present from start-up; the profile topic (admin API) adds to and overrides them.
    #[serde(default)]
    pub profiles: Vec<Profile>,
    /// The taps' `seal_key` (32 bytes, base64): opens sealed headers so replays can
    /// authenticate. Without it sealed headers are dropped. Set it from a secret:
    /// `SHADOWDIFF_MIRROR_SEAL_KEY`.
    #[serde(default)]
    pub seal_key: Option<String>,
}

impl Default for MirrorSection {
    fn default() -> Self {
        Self {
            group_id: default_group_id(),
            request_id_header: default_request_id_header(),
            capture_max_body_bytes: default_capture_max_body_bytes(),
            drain_timeout: default_drain(),
            profiles: Vec::new(),
            seal_key: None,
        }
    }
}

impl MirrorSection {
    /// The sealer for `seal_key`, if one is set; call after validation.
    pub fn sealer(&self) -> Option<shadowdiff_core::redact::Sealer> {
        use base64::Engine;
        let key = base64::engine::general_purpose::STANDARD.decode(self.seal_key.as_ref()?.trim()).ok()?;
        shadowdiff_core::redact::Sealer::new(&key).ok()
    }
}

fn default_admin() -> AdminConfig {
    AdminConfig { listen: SocketAddr::from(([0, 0, 0, 0], 9465)) }
}
fn default_group_id() -> String {
    "shadowdiff-mirror".to_owned()
}
fn default_request_id_header() -> String {
    "x-request-id".to_owned()
}
const fn default_capture_max_body_bytes() -> usize {
    256 * 1024
}
const fn default_drain() -> Duration {
    Duration::from_secs(10)
}

impl Validate for MirrorConfig {
    fn validate(&self, errors: &mut Vec<ConfigError>) {
        self.topics.validate(errors);
        let m = &self.mirror;
        let mut ids = BTreeSet::new();
        for (i, profile) in m.profiles.iter().enumerate() {
            if !ids.insert(profile.id.as_str()) {
                errors.push(ConfigError::rule(
                    format!("mirror.profiles[{i}].id"),
                    format!("duplicate profile {:?}", profile.id),
                ));
            }
            for problem in profile.problems() {
                let (field, reason) = problem.split_once(": ").unwrap_or(("", problem.as_str()));
                errors.push(ConfigError::rule(format!("mirror.profiles[{i}].{field}"), reason));
            }
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

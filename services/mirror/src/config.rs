//! The mirror's configuration (`shadowdiff-mirror --config mirror.toml`, `SHADOWDIFF_MIRROR_*`).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use shadowdiff_runtime::admin::AdminConfig;
use shadowdiff_runtime::auth::AuthConfig;
use shadowdiff_runtime::config::{ConfigError, HeaderName, Validate, serde_duration};
use shadowdiff_runtime::kafka::{KafkaConfig, TopicsConfig};
use shadowdiff_runtime::redaction::RedactionConfig;
use shadowdiff_runtime::telemetry::LogConfig;

use crate::profile::Profile;
use crate::vet::{HostPattern, TargetPolicy};

#[derive(Debug, Clone, Deserialize)]
pub struct MirrorConfig {
    pub mirror: MirrorSection,
    #[serde(default)]
    pub kafka: KafkaConfig,
    #[serde(default)]
    pub topics: TopicsConfig,
    /// Serves `/healthz`, `/metrics` and the profile API (`/v1/profiles`).
    #[serde(default = "default_admin")]
    pub admin: AdminConfig,
    /// Who may read profiles (`read`) and change them or their faults (`write`).
    #[serde(default)]
    pub auth: AuthConfig,
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
    pub request_id_header: HeaderName,
    /// Body bytes captured per response; the rest is only hashed.
    #[serde(default = "default_capture_max_body_bytes")]
    pub capture_max_body_bytes: usize,
    /// How long shutdown waits for replays in flight before committing.
    #[serde(default = "default_drain", rename = "drain_timeout_ms", with = "serde_duration::millis")]
    pub drain_timeout: Duration,
    /// How often the offsets of published replays are committed. A replica also commits as a
    /// rebalance takes partitions from it, so their next owner re-replays only what was in
    /// flight; a replica that crashes re-replays up to this much.
    #[serde(default = "default_commit_interval", rename = "commit_interval_ms", with = "serde_duration::millis")]
    pub commit_interval: Duration,
    /// Profiles present from start-up; the profile topic (admin API) adds to and overrides them.
    #[serde(default)]
    pub profiles: Vec<Profile>,
    /// Hosts replays may go to: names (`v2.shop.svc.cluster.local`), wildcards
    /// (`*.shop.svc.cluster.local`), IP addresses or CIDRs (`10.20.0.0/16`). Only this file
    /// or the environment sets it, never the API; a profile whose target is outside it is
    /// refused. Empty: no target is allowed.
    #[serde(default)]
    pub allowed_targets: Vec<HostPattern>,
    /// Allow loopback targets (127.0.0.0/8, ::1, localhost): a local demo or test.
    #[serde(default)]
    pub allow_loopback: bool,
    /// Allow link-local targets (169.254.0.0/16, fe80::/10), cloud metadata endpoints
    /// included.
    #[serde(default)]
    pub allow_link_local: bool,
    /// A PEM bundle of extra root certificates for https targets (a private CA), trusted
    /// beside the system's.
    #[serde(default)]
    pub ca_file: Option<shadowdiff_runtime::tls::CaBundle>,
    /// The taps' `[tap.redaction]`, with the same keys: opens sealed headers for replays
    /// (`seal_key`), and redacts the shadows' responses before they are published, so
    /// their secrets digest as the primary's do.
    pub redaction: RedactionConfig,
}

impl MirrorSection {
    /// Where replays may go.
    pub fn policy(&self) -> TargetPolicy {
        TargetPolicy {
            allowed_targets: self.allowed_targets.clone(),
            allow_loopback: self.allow_loopback,
            allow_link_local: self.allow_link_local,
        }
    }
}

fn default_admin() -> AdminConfig {
    AdminConfig { listen: SocketAddr::from(([0, 0, 0, 0], 9465)) }
}
fn default_group_id() -> String {
    "shadowdiff-mirror".to_owned()
}
fn default_request_id_header() -> HeaderName {
    HeaderName::from_static(shadowdiff_core::headers::REQUEST_ID)
}
const fn default_capture_max_body_bytes() -> usize {
    256 * 1024
}
const fn default_commit_interval() -> Duration {
    Duration::from_secs(1)
}

const fn default_drain() -> Duration {
    Duration::from_secs(10)
}

impl MirrorConfig {
    /// The topics its consumer group reads, and so the lag an autoscaler watches
    /// (deploy/k8s/components/autoscaling).
    pub fn consumed_topics(&self) -> [&str; 1] {
        [&self.topics.requests]
    }
}

impl Validate for MirrorConfig {
    fn validate(&self, errors: &mut Vec<ConfigError>) {
        self.topics.validate(errors);
        self.auth.validate(errors);
        let m = &self.mirror;
        m.redaction.validate("mirror.redaction", errors);
        if m.commit_interval.is_zero() {
            errors.push(ConfigError::rule("mirror.commit_interval_ms", "must be > 0"));
        }
        let policy = m.policy();
        let mut ids = BTreeSet::new();
        for (i, profile) in m.profiles.iter().enumerate() {
            if !ids.insert(profile.id.as_str()) {
                errors.push(ConfigError::rule(
                    format!("mirror.profiles[{i}].id"),
                    format!("duplicate profile {:?}", profile.id),
                ));
            }
            for problem in profile.problems(&policy) {
                let (field, reason) = problem.split_once(": ").unwrap_or(("", problem.as_str()));
                errors.push(ConfigError::rule(format!("mirror.profiles[{i}].{field}"), reason));
            }
        }
    }
}

impl shadowdiff_runtime::ServiceConfig for MirrorConfig {
    fn log(&self) -> &LogConfig {
        &self.log
    }
}

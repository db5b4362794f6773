//! Shadow profiles: which requests are replayed, to which targets, how fast, at what
//! stage of the rollout, and with which injected faults. Profiles come from the config
//! file and from the compacted profile topic (`store`), which the admin API writes.

pub(crate) mod store;

use std::collections::BTreeSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shadowdiff_core::{RequestEvent, RequestId, Role};

/// Methods replayed without an explicit opt-in.
pub(crate) const SAFE_METHODS: [&str; 3] = ["GET", "HEAD", "OPTIONS"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub id: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default, rename = "match")]
    pub matcher: Match,
    /// Share of matching requests replayed, 0 to 100, sticky by request id.
    #[serde(default = "hundred")]
    pub sample_percent: f64,
    pub targets: Vec<TargetSpec>,
    #[serde(default)]
    pub stage: Stage,
    /// Lifetime from when the profile is applied; it then stops matching by itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_secs: Option<u64>,
    /// Absolute expiry in ms since the epoch, fixed when the profile is applied so that
    /// every replica expires it at the same moment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<i64>,
    /// Opt-in for methods beyond GET, HEAD and OPTIONS, with the reason it is safe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unsafe_methods: Option<UnsafeMethods>,
    #[serde(default)]
    pub faults: Faults,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Match {
    /// Route templates (as the tap names them); empty matches every route.
    #[serde(default)]
    pub routes: Vec<String>,
    /// Methods; empty means the safe ones (plus any opted into).
    #[serde(default)]
    pub methods: Vec<String>,
    /// Every predicate must hold.
    #[serde(default)]
    pub headers: Vec<HeaderPredicate>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeaderPredicate {
    pub name: String,
    /// Required value; absent means the header only has to be present.
    #[serde(default)]
    pub equals: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnsafeMethods {
    pub methods: Vec<String>,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetSpec {
    /// Deployment name, as it appears in events, tables and verdicts.
    pub name: String,
    pub role: TargetRole,
    /// Base URL; the request's path and query are appended.
    pub base_url: url::Url,
    /// Replays per second at most; requests beyond it wait in the queue.
    #[serde(default)]
    pub rate_per_sec: Option<u32>,
    /// Replays in flight at most.
    #[serde(default = "default_max_concurrency")]
    pub max_concurrency: usize,
    /// Requests waiting for the rate limit or a free slot at most; beyond it they are
    /// shed (counted and published), which bounds this target's lag.
    #[serde(default = "default_max_queued")]
    pub max_queued: usize,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

impl TargetSpec {
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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

/// Where the candidate is in its rollout; recorded on every replayed response.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Stage {
    #[default]
    #[serde(rename = "shadow")]
    Shadow,
    #[serde(rename = "1")]
    One,
    #[serde(rename = "10")]
    Ten,
    #[serde(rename = "50")]
    Fifty,
    #[serde(rename = "100")]
    Hundred,
}

impl Stage {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Shadow => "shadow",
            Self::One => "1",
            Self::Ten => "10",
            Self::Fifty => "50",
            Self::Hundred => "100",
        }
    }
}

/// Faults injected on the shadow leg, each at its own rate (percent, sticky by request id
/// and target), so a team can check that its gates react without touching production.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Faults {
    #[serde(default)]
    pub latency_ms: u64,
    #[serde(default)]
    pub latency_percent: f64,
    #[serde(default = "default_error_status")]
    pub error_status: u16,
    #[serde(default)]
    pub error_percent: f64,
    #[serde(default)]
    pub drop_percent: f64,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            latency_ms: 0,
            latency_percent: 0.0,
            error_status: default_error_status(),
            error_percent: 0.0,
            drop_percent: 0.0,
        }
    }
}

const fn yes() -> bool {
    true
}
const fn hundred() -> f64 {
    100.0
}
const fn default_max_concurrency() -> usize {
    32
}
const fn default_max_queued() -> usize {
    1_000
}
const fn default_timeout_ms() -> u64 {
    5_000
}
const fn default_error_status() -> u16 {
    503
}

/// `percent` of 10 000 buckets.
pub(crate) fn under(bucket: u32, percent: f64) -> bool {
    f64::from(bucket) < (percent * 100.0)
}

impl Profile {
    /// Every problem with this profile, as `field: reason` lines.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut check = |ok: bool, what: String| {
            if !ok {
                problems.push(what);
            }
        };
        let percent = |p: f64| (0.0..=100.0).contains(&p);
        check(!self.id.is_empty() && self.id.len() <= 64, "id: 1 to 64 characters".into());
        check(percent(self.sample_percent), "sample_percent: between 0 and 100".into());
        check(!self.targets.is_empty(), "targets: at least one".into());
        let mut names = BTreeSet::new();
        for (i, t) in self.targets.iter().enumerate() {
            check(names.insert(t.name.as_str()), format!("targets[{i}].name: duplicate {:?}", t.name));
            check(t.base_url.scheme() == "http", format!("targets[{i}].base_url: must be http://"));
            check(t.max_concurrency > 0, format!("targets[{i}].max_concurrency: must be > 0"));
            check(t.timeout_ms > 0, format!("targets[{i}].timeout_ms: must be > 0"));
            check(t.rate_per_sec != Some(0), format!("targets[{i}].rate_per_sec: must be > 0 when set"));
        }
        check(
            self.targets.iter().filter(|t| t.role == TargetRole::Secondary).count() <= 1,
            "targets: at most one secondary".into(),
        );
        let opted: BTreeSet<String> = self.opted_in_methods();
        if let Some(unsafe_methods) = &self.unsafe_methods {
            check(
                !unsafe_methods.reason.trim().is_empty(),
                "unsafe_methods.reason: say why replaying them is safe".into(),
            );
        }
        for method in &self.matcher.methods {
            let method = method.to_ascii_uppercase();
            check(
                SAFE_METHODS.contains(&method.as_str()) || opted.contains(&method),
                format!("match.methods: {method} is not safe to replay without unsafe_methods and a reason"),
            );
        }
        let f = &self.faults;
        for (name, p) in [
            ("latency_percent", f.latency_percent),
            ("error_percent", f.error_percent),
            ("drop_percent", f.drop_percent),
        ] {
            check(percent(p), format!("faults.{name}: between 0 and 100"));
        }
        check((100..=599).contains(&f.error_status), "faults.error_status: an HTTP status".into());
        problems
    }

    fn opted_in_methods(&self) -> BTreeSet<String> {
        match &self.unsafe_methods {
            Some(u) if !u.reason.trim().is_empty() => u.methods.iter().map(|m| m.to_ascii_uppercase()).collect(),
            _ => BTreeSet::new(),
        }
    }

    /// Fixes `expires_at_ms` from `ttl_secs` at the moment the profile is applied.
    pub fn applied_at(mut self, now_ms: i64) -> Self {
        if let Some(ttl) = self.ttl_secs {
            let ttl_ms = i64::try_from(ttl.saturating_mul(1000)).unwrap_or(i64::MAX);
            self.expires_at_ms = Some(now_ms.saturating_add(ttl_ms));
        }
        self
    }

    pub fn expired(&self, now_ms: i64) -> bool {
        self.expires_at_ms.is_some_and(|at| now_ms >= at)
    }

    /// Whether this profile replays `request` (sampling included).
    pub fn replays(&self, request: &RequestEvent, id: &RequestId, now_ms: i64) -> bool {
        self.enabled
            && !self.expired(now_ms)
            && self.method_allowed(&request.method)
            && (self.matcher.routes.is_empty() || self.matcher.routes.iter().any(|r| r == request.route()))
            && self.matcher.headers.iter().all(|p| header_holds(p, request))
            && under(id.sample_bucket(), self.sample_percent)
    }

    fn method_allowed(&self, method: &str) -> bool {
        let method = method.to_ascii_uppercase();
        let allowed = SAFE_METHODS.contains(&method.as_str()) || self.opted_in_methods().contains(&method);
        let listed =
            self.matcher.methods.is_empty() || self.matcher.methods.iter().any(|m| m.eq_ignore_ascii_case(&method));
        allowed && listed
    }
}

fn header_holds(predicate: &HeaderPredicate, request: &RequestEvent) -> bool {
    let value = shadowdiff_core::event::header_value(&request.headers, &predicate.name);
    match (&predicate.equals, value) {
        (_, None) => false,
        (None, Some(_)) => true,
        (Some(expected), Some(actual)) => expected.as_bytes() == actual,
    }
}

#[cfg(test)]
mod tests;

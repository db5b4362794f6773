//! Shadow profiles: which requests are replayed, to which targets, how fast, at what
//! stage of the rollout, and with which injected faults. Profiles come from the config
//! file and from the compacted profile topic (`store`), which the admin API writes.

pub(crate) mod store;

use std::collections::BTreeSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shadowdiff_core::{RequestEvent, RequestId, Role};

use crate::vet::TargetPolicy;

/// What a profile may ask for. Every field has a bound, so no profile, however it
/// reaches a replica (config file, API, profile topic), can exhaust or crash it.
pub mod bounds {
    /// Characters in a profile id or target name.
    pub const NAME: usize = 64;
    /// Targets per profile.
    pub const TARGETS: usize = 8;
    /// Replays in flight per target.
    pub const CONCURRENCY: usize = 1_024;
    /// Requests waiting per target.
    pub const QUEUED: usize = 100_000;
    /// Replays per second per target.
    pub const RATE_PER_SEC: u32 = 100_000;
    /// A replay's deadline, injected latency included.
    pub const TIMEOUT_MS: u64 = 60_000;
    /// A profile's lifetime: 30 days.
    pub const TTL_SECS: u64 = 30 * 24 * 3600;
    /// Route templates, methods and header predicates in a match.
    pub const ROUTES: usize = 256;
    pub const METHODS: usize = 16;
    pub const HEADERS: usize = 32;
    /// Bytes in a route template, header name or value, or a reason.
    pub const TEXT: usize = 1_024;
    /// Bytes of a profile as JSON, through the API.
    pub const JSON_BYTES: usize = 256 * 1024;
}

/// Ids and names travel as Kafka keys, metric labels and URL segments.
fn name_ok(name: &str) -> bool {
    (1..=bounds::NAME).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

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
    /// Where the targets' downstream calls go. With `stubbed`, every method `match.methods`
    /// lists is replayed, writes too, with no `unsafe_methods`: the targets' egress taps are
    /// in stub mode and answer their calls from the primary's recorded ones, so no write
    /// reaches a real dependency.
    #[serde(default, skip_serializing_if = "SideEffects::is_live")]
    pub side_effects: SideEffects,
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

/// Where a profile's targets' downstream calls go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SideEffects {
    /// To the real dependencies, or whatever the targets are configured with.
    #[default]
    Live,
    /// To egress taps in stub mode (`[tap.mode.stub]`), never to a real dependency.
    Stubbed,
}

impl SideEffects {
    fn is_live(&self) -> bool {
        *self == Self::Live
    }
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
    /// A sidecar tap fronts this target (`[tap.mode] kind = "sidecar"`) and publishes its
    /// own leg: its upstream time then stands for this target's latency, since it holds
    /// nothing of the replay path, and the correlator waits for it.
    #[serde(default)]
    pub timed_by_tap: bool,
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

/// `percent` of 10 000 buckets: core's one sampling rule, which `shadowctl record` shares.
pub(crate) use shadowdiff_core::request_id::in_sample as under;

impl Profile {
    /// Every problem with this profile, as `field: reason` lines: its bounds, and targets
    /// outside what `policy` allows.
    pub fn problems(&self, policy: &TargetPolicy) -> Vec<String> {
        let mut problems = self.out_of_bounds();
        for (i, t) in self.targets.iter().enumerate() {
            if let Some(why) = policy.refuses(&t.base_url) {
                problems.push(format!("targets[{i}].base_url: {why}"));
            }
        }
        problems
    }

    /// The problems with this profile that need no mirror's policy to see: its shape and
    /// [`bounds`].
    pub fn out_of_bounds(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut check = |ok: bool, what: String| {
            if !ok {
                problems.push(what);
            }
        };
        let percent = |p: f64| (0.0..=100.0).contains(&p);
        let within = |n: usize, max: usize| n <= max;
        check(name_ok(&self.id), format!("id: 1 to {} characters of A-Z a-z 0-9 . _ -", bounds::NAME));
        check(percent(self.sample_percent), "sample_percent: between 0 and 100".into());
        check(
            (1..=bounds::TARGETS).contains(&self.targets.len()),
            format!("targets: 1 to {} targets", bounds::TARGETS),
        );
        check(
            self.ttl_secs.is_none_or(|ttl| (1..=bounds::TTL_SECS).contains(&ttl)),
            format!("ttl_secs: 1 to {} (30 days)", bounds::TTL_SECS),
        );
        let m = &self.matcher;
        check(
            within(m.routes.len(), bounds::ROUTES) && m.routes.iter().all(|r| within(r.len(), bounds::TEXT)),
            format!("match.routes: at most {} routes of {} bytes", bounds::ROUTES, bounds::TEXT),
        );
        check(
            within(m.methods.len(), bounds::METHODS) && m.methods.iter().all(|r| within(r.len(), 32)),
            format!("match.methods: at most {} methods", bounds::METHODS),
        );
        check(
            within(m.headers.len(), bounds::HEADERS)
                && m.headers.iter().all(|h| {
                    within(h.name.len(), bounds::TEXT)
                        && h.equals.as_ref().is_none_or(|v| within(v.len(), bounds::TEXT))
                }),
            format!("match.headers: at most {} predicates of {} bytes", bounds::HEADERS, bounds::TEXT),
        );
        let mut names = BTreeSet::new();
        for (i, t) in self.targets.iter().enumerate() {
            check(
                name_ok(&t.name),
                format!("targets[{i}].name: 1 to {} characters of A-Z a-z 0-9 . _ -", bounds::NAME),
            );
            check(names.insert(t.name.as_str()), format!("targets[{i}].name: duplicate {:?}", t.name));
            check(
                (1..=bounds::CONCURRENCY).contains(&t.max_concurrency),
                format!("targets[{i}].max_concurrency: 1 to {}", bounds::CONCURRENCY),
            );
            check(t.max_queued <= bounds::QUEUED, format!("targets[{i}].max_queued: at most {}", bounds::QUEUED));
            check(
                (1..=bounds::TIMEOUT_MS).contains(&t.timeout_ms),
                format!("targets[{i}].timeout_ms: 1 to {}", bounds::TIMEOUT_MS),
            );
            check(
                t.rate_per_sec.is_none_or(|r| (1..=bounds::RATE_PER_SEC).contains(&r)),
                format!("targets[{i}].rate_per_sec: 1 to {} when set", bounds::RATE_PER_SEC),
            );
            check(
                self.faults.latency_ms <= t.timeout_ms,
                format!("faults.latency_ms: at most targets[{i}].timeout_ms ({})", t.timeout_ms),
            );
        }
        check(
            self.targets.iter().filter(|t| t.role == TargetRole::Secondary).count() <= 1,
            "targets: at most one secondary".into(),
        );
        let opted: BTreeSet<String> = self.opted_in_methods();
        if let Some(unsafe_methods) = &self.unsafe_methods {
            check(
                !unsafe_methods.reason.trim().is_empty() && within(unsafe_methods.reason.len(), bounds::TEXT),
                format!("unsafe_methods.reason: say why replaying them is safe, in at most {} bytes", bounds::TEXT),
            );
            check(
                within(unsafe_methods.methods.len(), bounds::METHODS),
                format!("unsafe_methods.methods: at most {}", bounds::METHODS),
            );
        }
        for method in &self.matcher.methods {
            let method = method.to_ascii_uppercase();
            check(
                SAFE_METHODS.contains(&method.as_str()) || opted.contains(&method),
                format!(
                    "match.methods: {method} is not safe to replay without unsafe_methods and a reason, \
                     or side_effects = \"stubbed\""
                ),
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

    /// The methods beyond the safe ones this profile may replay: those opted in with a
    /// reason, and with stubbed side effects every method it lists.
    fn opted_in_methods(&self) -> BTreeSet<String> {
        let mut opted = match &self.unsafe_methods {
            Some(u) if !u.reason.trim().is_empty() => u.methods.iter().map(|m| m.to_ascii_uppercase()).collect(),
            _ => BTreeSet::new(),
        };
        if self.side_effects == SideEffects::Stubbed {
            opted.extend(self.matcher.methods.iter().map(|m| m.to_ascii_uppercase()));
        }
        opted
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
            && id.sampled(self.sample_percent)
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

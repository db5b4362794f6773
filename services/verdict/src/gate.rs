//! Gate policy: what a candidate must show at each rollout stage before it may move on.
//!
//! `[verdict.gates.<stage>]` for the stages `shadow`, `1`, `10`, `50` and `100`. A key left out
//! takes the default shown on its field, the same at every stage.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use shadowdiff_runtime::config::{ConfigError, serde_duration};

/// The rollout stages, in order: shadow only, then the share of real traffic cut over.
pub const STAGES: [&str; 5] = ["shadow", "1", "10", "50", "100"];

/// `[verdict.gates]`: one policy per stage.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Gates {
    #[serde(default)]
    pub shadow: GatePolicy,
    #[serde(default, rename = "1")]
    pub one: GatePolicy,
    #[serde(default, rename = "10")]
    pub ten: GatePolicy,
    #[serde(default, rename = "50")]
    pub fifty: GatePolicy,
    #[serde(default, rename = "100")]
    pub hundred: GatePolicy,
}

impl Gates {
    /// The policy of `stage`, or `None` for a stage that does not exist.
    pub fn for_stage(&self, stage: &str) -> Option<&GatePolicy> {
        match stage {
            "shadow" => Some(&self.shadow),
            "1" => Some(&self.one),
            "10" => Some(&self.ten),
            "50" => Some(&self.fifty),
            "100" => Some(&self.hundred),
            _ => None,
        }
    }

    /// The policy a stage judges by, for the live traffic or for a replay run (`run`). A run
    /// replays a recording as fast as it is asked to: how long its comparisons took says
    /// nothing of how much production it covers, so it needs no minimum duration.
    pub fn judging(&self, stage: &str, run: bool) -> Option<GatePolicy> {
        let mut policy = self.for_stage(stage)?.clone();
        if run {
            policy.min_duration = Duration::ZERO;
        }
        Some(policy)
    }

    pub(crate) fn validate(&self, errors: &mut Vec<ConfigError>) {
        for stage in STAGES {
            if let Some(policy) = self.for_stage(stage) {
                policy.validate(&format!("verdict.gates.{stage}"), errors);
            }
        }
    }
}

/// `[verdict.gates.<stage>]`: the bounds one stage's evidence must meet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GatePolicy {
    /// Highest acceptable share of compared exchanges that diverge (noise excluded), as a
    /// fraction (0.01 = 1%). Passing needs the whole confidence interval below it.
    #[serde(default = "default_max_divergence_rate")]
    pub max_divergence_rate: f64,
    /// Most requests the candidate may fail (5xx, timeout, connect error) where the primary
    /// did not. Default 0: any new error fails the gate.
    #[serde(default)]
    pub max_new_errors: u64,
    /// Highest acceptable time the candidate adds at p95, against the secondary (else the
    /// primary) on the same requests, as a share of the primary's p95 (0.10 = 10%). Passing
    /// needs the whole interval within it, failing the whole interval above it. Tail quantiles come from the slowest 5% of requests alone, so their interval is about
    /// twice the median's: a bound of 10% lets a clean candidate pass within a few thousand
    /// comparisons, while a slowdown of every request is caught at p50.
    #[serde(default = "default_max_latency_p95_delta")]
    pub max_latency_p95_delta: f64,
    /// The same at p50: the median of the time the candidate adds to each request, against
    /// the primary's p50 (0.05 = 5%).
    #[serde(default = "default_max_latency_p50_delta")]
    pub max_latency_p50_delta: f64,
    /// Most exchanges on which the candidate may change its downstream calls (a call added or
    /// left out, a write's payload or status changed) where the secondary does not. Default
    /// 0: one extra write fails the gate.
    #[serde(default)]
    pub max_downstream_changes: u64,
    /// Most paths the candidate may change systematically (`evaluate::paths`): a field it
    /// changes on some of a route's responses while the secondary does not. Default 0.
    #[serde(default)]
    pub max_new_divergent_paths: u64,
    /// Fewest compared exchanges before anything but a failure can be concluded.
    #[serde(default = "default_min_samples")]
    pub min_samples: u64,
    /// Shortest span of evidence (first to last comparison) before a pass.
    #[serde(default = "default_min_duration", rename = "min_duration_secs", with = "serde_duration::secs")]
    pub min_duration: Duration,
}

impl Default for GatePolicy {
    fn default() -> Self {
        Self {
            max_divergence_rate: default_max_divergence_rate(),
            max_new_errors: 0,
            max_downstream_changes: 0,
            max_new_divergent_paths: 0,
            max_latency_p95_delta: default_max_latency_p95_delta(),
            max_latency_p50_delta: default_max_latency_p50_delta(),
            min_samples: default_min_samples(),
            min_duration: default_min_duration(),
        }
    }
}

const fn default_max_divergence_rate() -> f64 {
    0.01
}
const fn default_max_latency_p95_delta() -> f64 {
    0.10
}
const fn default_max_latency_p50_delta() -> f64 {
    0.05
}
const fn default_min_samples() -> u64 {
    400
}
const fn default_min_duration() -> Duration {
    Duration::from_secs(60)
}

impl GatePolicy {
    fn validate(&self, prefix: &str, errors: &mut Vec<ConfigError>) {
        if !(0.0..1.0).contains(&self.max_divergence_rate) {
            errors.push(ConfigError::rule(format!("{prefix}.max_divergence_rate"), "must be in [0, 1)"));
        }
        for (key, value) in [
            ("max_latency_p95_delta", self.max_latency_p95_delta),
            ("max_latency_p50_delta", self.max_latency_p50_delta),
        ] {
            if !(value >= 0.0 && value.is_finite()) {
                errors.push(ConfigError::rule(format!("{prefix}.{key}"), "must be a fraction >= 0"));
            }
        }
        if self.min_samples == 0 {
            errors.push(ConfigError::rule(format!("{prefix}.min_samples"), "must be at least 1"));
        }
    }
}

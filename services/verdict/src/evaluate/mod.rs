//! From evidence to a verdict: pure functions, no I/O.
//!
//! Each criterion of the stage's [`GatePolicy`] comes out as pass, fail or inconclusive, and
//! the verdict is the worst of them: any fail fails, else any inconclusive is inconclusive.
//! A failure needs no minimum sample: a divergence whose whole confidence sequence is above
//! the bound, or a new error, is already evidence enough. A pass needs every criterion met.
//!
//! Rates are judged with anytime-valid confidence sequences ([`sequential`]), so a CD system
//! may read the verdict as often as it likes: the chance that a candidate on the bound is
//! ever passed or failed by chance stays at 5%.

use serde::{Deserialize, Serialize};

use crate::gate::GatePolicy;

pub mod latency;
pub mod paths;
pub mod sequential;

pub use latency::Shift;
pub use paths::{AcceptedPath, DivergentPath, PathEvidence};

/// How a criterion, or the whole verdict, came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Pass,
    Inconclusive,
    Fail,
}

impl Decision {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Inconclusive => "inconclusive",
            Self::Fail => "fail",
        }
    }
}

/// A proportion with its 95% confidence sequence ([`sequential::rate_interval`]): an
/// interval that holds the true rate at every sample size at once.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Rate {
    pub count: u64,
    pub of: u64,
    pub rate: f64,
    pub lower: f64,
    pub upper: f64,
}

impl Rate {
    /// `count` out of `of`. With nothing observed the interval is the whole of [0, 1].
    pub fn new(count: u64, of: u64) -> Self {
        #[allow(clippy::cast_precision_loss)] // counts far below 2^52
        let rate = if of == 0 { 0.0 } else { count.min(of) as f64 / of as f64 };
        let (lower, upper) = sequential::rate_interval(count, of);
        Self { count, of, rate, lower, upper }
    }
}

/// p50, p95 and p99, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Quantiles {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
}

/// Paired latency: the same requests, as the primary, the candidate and the secondary
/// answered them, and the candidate's shifts with their intervals ([`latency`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub primary: Quantiles,
    pub candidate: Quantiles,
    /// The secondary on the same requests; `None` without a secondary.
    pub secondary: Option<Quantiles>,
    /// (candidate p95 − primary p95) / primary p95.
    pub p95_delta: f64,
    /// The same delta for the secondary: the A/A baseline, what a shadow shows without any
    /// change of version (the replay path's own cost). `None` without a secondary.
    pub secondary_p95_delta: Option<f64>,
    /// Requests judged in pairs: the candidate's time with the secondary's on the same
    /// request, or with the primary's when there is no secondary.
    pub pairs: u64,
    /// Whether the pairs' baseline is the secondary (both shadows, replayed together, so only
    /// the version differs) rather than the primary.
    pub against_secondary: bool,
    /// The candidate's shift at p50 against the baseline, with its interval.
    pub p50_shift: Option<Shift>,
    /// The same at p95.
    pub p95_shift: Option<Shift>,
}

/// What the store holds for a candidate over the window, overall or for one route.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Evidence {
    /// Comparison rows of any outcome.
    pub samples: u64,
    /// Rows where both sides answered and were diffed.
    pub compared: u64,
    /// Of `compared`, those with a difference that is not noise.
    pub diverged: u64,
    /// Of `compared`, those whose every difference was noise.
    pub noise_only: u64,
    /// Rows where the candidate was asked and the primary answered: the new-error base.
    pub answered: u64,
    /// Of `answered`, the candidate failed where the primary did not: a 5xx, timeout or
    /// connection error, or a 4xx where the primary succeeded and the secondary did not fail
    /// the same way.
    pub new_errors: u64,
    /// Of `new_errors`, the 4xx.
    pub new_client_errors: u64,
    /// Seconds from the first comparison to the last.
    pub span_secs: u64,
    pub latency: Latency,
    /// Paths the candidate changes systematically (see [`paths`]), most certain first.
    pub divergent_paths: Vec<DivergentPath>,
    /// Exchanges whose downstream calls the candidate changed, noise aside.
    pub downstream: Downstream,
}

/// How the candidate's downstream calls differ from the primary's, on exchanges whose calls
/// egress taps recorded; the secondary's own differences are noise and not counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Downstream {
    /// Exchanges with any counted change: a call added, a call left out, or a write (any
    /// method but GET, HEAD, OPTIONS, TRACE) whose payload or status changed.
    pub changed: u64,
    /// Of `changed`, those with a call added or left out.
    pub calls: u64,
    /// Of `changed`, those with a write's payload or status changed.
    pub writes: u64,
}

/// One criterion's result, with the numbers behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Criterion {
    pub name: String,
    pub status: Decision,
    pub observed: f64,
    /// The 95% interval around `observed`, for rates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lower: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upper: Option<f64>,
    pub threshold: f64,
    pub reason: String,
}

/// Judges `evidence` against `policy`: every criterion, and the worst of them.
pub fn judge(evidence: &Evidence, policy: &GatePolicy) -> (Decision, Vec<Criterion>) {
    let criteria = vec![
        samples(evidence, policy),
        duration(evidence, policy),
        divergence(evidence, policy),
        new_errors(evidence, policy),
        downstream(evidence, policy),
        divergent_paths(evidence, policy),
        latency(evidence, policy, Quantile::Median, policy.max_latency_p50_delta),
        latency(evidence, policy, Quantile::Tail, policy.max_latency_p95_delta),
    ];
    let decision = criteria.iter().map(|c| c.status).max().unwrap_or(Decision::Inconclusive);
    (decision, criteria)
}

/// Judges one route: divergence and new errors only, since a route's share of the traffic
/// rarely meets the whole gate's sample and duration minimums on its own.
pub fn judge_route(evidence: &Evidence, policy: &GatePolicy) -> Decision {
    divergence(evidence, policy).status.max(new_errors(evidence, policy).status)
}

#[allow(clippy::cast_precision_loss)] // counts far below 2^52
fn samples(evidence: &Evidence, policy: &GatePolicy) -> Criterion {
    let enough = evidence.compared >= policy.min_samples;
    Criterion {
        name: "samples".to_owned(),
        status: if enough { Decision::Pass } else { Decision::Inconclusive },
        observed: evidence.compared as f64,
        lower: None,
        upper: None,
        threshold: policy.min_samples as f64,
        reason: format!("{} compared exchanges, at least {} needed", evidence.compared, policy.min_samples),
    }
}

#[allow(clippy::cast_precision_loss)] // seconds far below 2^52
fn duration(evidence: &Evidence, policy: &GatePolicy) -> Criterion {
    let needed = policy.min_duration.as_secs();
    Criterion {
        name: "duration".to_owned(),
        status: if evidence.span_secs >= needed { Decision::Pass } else { Decision::Inconclusive },
        observed: evidence.span_secs as f64,
        lower: None,
        upper: None,
        threshold: needed as f64,
        reason: format!("{}s of comparisons, at least {needed}s needed", evidence.span_secs),
    }
}

fn divergence(evidence: &Evidence, policy: &GatePolicy) -> Criterion {
    let rate = Rate::new(evidence.diverged, evidence.compared);
    let max = policy.max_divergence_rate;
    let (status, reason) = match sequential::side_of(evidence.diverged, evidence.compared, max) {
        _ if evidence.compared == 0 => (Decision::Inconclusive, "nothing compared yet".to_owned()),
        Some(sequential::Side::Above) => (
            Decision::Fail,
            format!("{} of {} diverged; even the interval's low end is above {}", rate.count, rate.of, pct(max)),
        ),
        Some(sequential::Side::Below) => (
            Decision::Pass,
            format!("{} of {} diverged; the whole interval is within {}", rate.count, rate.of, pct(max)),
        ),
        None => {
            let why = format!("interval {}–{} straddles {}", pct(rate.lower), pct(rate.upper), pct(max));
            (Decision::Inconclusive, format!("{} of {} diverged; {why}", rate.count, rate.of))
        }
    };
    Criterion {
        name: "divergence_rate".to_owned(),
        status,
        observed: rate.rate,
        lower: Some(rate.lower),
        upper: Some(rate.upper),
        threshold: max,
        reason,
    }
}

#[allow(clippy::cast_precision_loss)] // counts far below 2^52
fn new_errors(evidence: &Evidence, policy: &GatePolicy) -> Criterion {
    // A count, not a rate: once above the bound it stays above, however often it is read.
    let rate = Rate::new(evidence.new_errors, evidence.answered);
    let failed = evidence.new_errors > policy.max_new_errors;
    Criterion {
        name: "new_errors".to_owned(),
        status: if failed { Decision::Fail } else { Decision::Pass },
        observed: evidence.new_errors as f64,
        lower: Some(rate.lower),
        upper: Some(rate.upper),
        threshold: policy.max_new_errors as f64,
        reason: format!(
            "the candidate failed {} of {} requests the primary answered ({} server errors or timeouts, {} client \
             errors where the primary succeeded), at most {} allowed",
            evidence.new_errors,
            evidence.answered,
            evidence.new_errors - evidence.new_client_errors.min(evidence.new_errors),
            evidence.new_client_errors,
            policy.max_new_errors
        ),
    }
}

#[allow(clippy::cast_precision_loss)] // counts far below 2^52
fn downstream(evidence: &Evidence, policy: &GatePolicy) -> Criterion {
    // A count, like new errors: an extra write to a payment API is no matter of rates.
    let changed = evidence.downstream;
    Criterion {
        name: "downstream_calls".to_owned(),
        status: if changed.changed > policy.max_downstream_changes { Decision::Fail } else { Decision::Pass },
        observed: changed.changed as f64,
        lower: None,
        upper: None,
        threshold: policy.max_downstream_changes as f64,
        reason: format!(
            "the candidate changed its downstream calls on {} exchanges ({} with a call added or left out, {} with \
             a write's payload or status changed), at most {} allowed",
            changed.changed, changed.calls, changed.writes, policy.max_downstream_changes
        ),
    }
}

#[allow(clippy::cast_precision_loss)] // counts far below 2^52
fn divergent_paths(evidence: &Evidence, policy: &GatePolicy) -> Criterion {
    let found = evidence.divergent_paths.len() as u64;
    let failed = found > policy.max_new_divergent_paths;
    let reason = match evidence.divergent_paths.first() {
        None => {
            "no path differs systematically: the candidate's differences at each path are as the secondary's".to_owned()
        }
        Some(worst) => format!(
            "{found} path(s) the candidate changes systematically, at most {} allowed; the clearest: {} {} at {} \
             on {} requests, the secondary on {} (anytime p = {:.1e}), e.g. {}",
            policy.max_new_divergent_paths,
            worst.kind,
            worst.path,
            worst.route,
            worst.candidate,
            worst.secondary,
            worst.p_value,
            worst.examples.join(", ")
        ),
    };
    Criterion {
        name: "divergent_paths".to_owned(),
        status: if failed { Decision::Fail } else { Decision::Pass },
        observed: found as f64,
        lower: None,
        upper: None,
        threshold: policy.max_new_divergent_paths as f64,
        reason,
    }
}

/// Which latency shift a criterion judges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quantile {
    /// p50: passes only when its whole interval is within the bound.
    Median,
    /// p95: estimated from the slowest 5% of requests alone, its interval is wide on a busy
    /// machine, and asking it to lie wholly within the bound would hold clean releases for
    /// its own noise. It passes when its estimate is within the bound and fails only on
    /// evidence, like the median; a slowdown of typical requests meets the median's rule.
    Tail,
}

/// One quantile's latency shift against its bound: fails when the whole interval is above
/// it (from `min_samples` comparisons: a tail quantile of a few requests is one of their
/// slowest few), passes when the whole interval is within it (for the tail: its estimate).
fn latency(evidence: &Evidence, policy: &GatePolicy, quantile: Quantile, max: f64) -> Criterion {
    let l = &evidence.latency;
    let (shift, name) = match quantile {
        Quantile::Median => (l.p50_shift, "latency_p50_delta"),
        Quantile::Tail => (l.p95_shift, "latency_p95_delta"),
    };
    let against = if l.against_secondary { "the secondary" } else { "the primary" };
    let (status, reason) = match shift.filter(|_| evidence.compared > 0) {
        None => (Decision::Inconclusive, "no paired latency yet".to_owned()),
        Some(s) => {
            let q = s.quantile * 100.0;
            let what = format!(
                "at p{q:.0} the candidate adds {} of the primary's p{q:.0}, against {against} on the same {} requests \
                 (interval {} to {})",
                signed_pct(s.observed),
                l.pairs,
                signed_pct(s.lower),
                signed_pct(s.upper)
            );
            let aa = l.secondary_p95_delta.map_or(String::new(), |aa| {
                format!("; A/A spread: the secondary's p95 is {} vs the primary's", signed_pct(aa))
            });
            let enough = evidence.compared >= policy.min_samples;
            let (status, verdict) = if s.lower > max && enough {
                (Decision::Fail, format!("entirely above {}", pct(max)))
            } else if s.lower > max {
                (Decision::Inconclusive, format!("above {}, on too few comparisons to fail", pct(max)))
            } else if s.upper <= max {
                (Decision::Pass, format!("within {}", pct(max)))
            } else if quantile == Quantile::Tail && s.observed <= max {
                (Decision::Pass, format!("estimated within {}, and not shown above it", pct(max)))
            } else {
                (Decision::Inconclusive, format!("straddles {}", pct(max)))
            };
            (status, format!("{what}: {verdict}{aa}"))
        }
    };
    Criterion {
        name: name.to_owned(),
        status,
        observed: shift.map_or(0.0, |s| s.observed),
        lower: shift.map(|s| s.lower),
        upper: shift.map(|s| s.upper),
        threshold: max,
        reason,
    }
}

fn pct(fraction: f64) -> String {
    format!("{:.2}%", fraction * 100.0)
}

fn signed_pct(fraction: f64) -> String {
    format!("{:+.2}%", fraction * 100.0)
}

#[cfg(test)]
mod tests;

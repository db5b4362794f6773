//! Per-candidate gauges on the admin port's `/metrics`, so Prometheus can alert on a
//! candidate without anyone polling the verdict (`deploy/prometheus/rules`).
//!
//! Every `[verdict] gauge_interval_secs`, each candidate with comparisons in the default
//! window is judged as its CD system last asked about it: at that stage and for that release
//! (`shadow` and the default window when nothing asked yet). Nothing is recorded. The series
//! of a candidate that drops out of the window, or moves to another stage, read zero from
//! then on, so an alert about it resolves instead of firing on its last value forever.
//!
//! - `shadowdiff_candidate_verdict{candidate, stage, verdict}`: 1 for the current verdict,
//!   0 for the other two.
//! - `shadowdiff_candidate_divergence_ratio` and `_divergence_limit_ratio`: the counted
//!   divergence rate and the stage's bound.
//! - `shadowdiff_candidate_new_errors`: new errors in the window.
//! - `shadowdiff_candidate_latency_delta_ratio{quantile}`: the candidate's latency shift at
//!   p50 and p95, as a share of the primary's.
//! - `shadowdiff_candidate_comparisons`: the rows judged.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use metrics::gauge;
use shadowdiff_runtime::CancellationToken;
use tokio::time::MissedTickBehavior;

use crate::api::{self, AppState};
use crate::evaluate::Decision;
use crate::report::VerdictReport;

/// Candidates exported at most, as the console's overview lists them.
const MAX_CANDIDATES: u32 = 100;

/// A candidate's series: its name and stage label.
type Series = (String, String);

/// A candidate's verdict as the last refresh judged it, for the console's overview.
#[derive(Debug, Clone)]
pub(crate) struct Current {
    pub(crate) stage: String,
    pub(crate) verdict: Decision,
    pub(crate) reasons: Vec<String>,
    /// Unix seconds.
    pub(crate) at: u32,
}

/// Each candidate's [`Current`] verdict, by name, shared with the console.
pub(crate) type Judged = Arc<RwLock<HashMap<String, Current>>>;

/// Refreshes the gauges, and the state's current verdicts, every `every` until `shutdown`.
pub(crate) async fn run(state: AppState, every: Duration, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut exported = HashSet::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => exported = refresh(&state, exported).await,
        }
    }
}

/// Sets the series of every candidate in the window; zeroes those of `before` no longer
/// among them. Returns what is exported now.
async fn refresh(state: &AppState, before: HashSet<Series>) -> HashSet<Series> {
    let listed = match crate::query::candidates(state.clickhouse(), api::default_start(state), MAX_CANDIDATES).await {
        Ok(listed) => listed,
        Err(error) => {
            failed(&error);
            return before;
        }
    };
    let mut now = HashSet::new();
    let mut judged = HashMap::new();
    for candidate in listed {
        match api::as_last_asked(state, &candidate).await {
            Ok(report) => {
                set(&report);
                let current = Current {
                    stage: report.stage.clone(),
                    verdict: report.verdict,
                    reasons: report.reasons.clone(),
                    at: api::unix_now(),
                };
                judged.insert(report.candidate.clone(), current);
                now.insert((report.candidate, report.stage));
            }
            Err(error) => {
                failed(&error);
                // Its last values stand until it can be judged again.
                now.extend(before.iter().filter(|(name, _)| *name == candidate.candidate).cloned());
            }
        }
    }
    for (candidate, stage) in before.difference(&now) {
        clear(candidate, stage);
    }
    // Those not judged this time keep their last verdict, as their gauges do.
    if let Ok(mut current) = state.judged().write() {
        current.retain(|name, _| now.iter().any(|(n, _)| n == name));
        current.extend(judged);
    }
    now
}

fn set(report: &VerdictReport) {
    let labels = [("candidate", report.candidate.clone()), ("stage", report.stage.clone())];
    for decision in [Decision::Pass, Decision::Fail, Decision::Inconclusive] {
        let on = if decision == report.verdict { 1.0 } else { 0.0 };
        gauge!("shadowdiff_candidate_verdict", &with(&labels, "verdict", decision.as_str())).set(on);
    }
    gauge!("shadowdiff_candidate_divergence_ratio", &labels).set(report.divergence.rate);
    gauge!("shadowdiff_candidate_divergence_limit_ratio", &labels).set(report.policy.max_divergence_rate);
    gauge!("shadowdiff_candidate_new_errors", &labels).set(count(report.new_errors.count));
    for (quantile, shift) in [("0.5", &report.latency.p50_shift), ("0.95", &report.latency.p95_shift)] {
        let delta = shift.as_ref().map_or(0.0, |shift| shift.observed);
        gauge!("shadowdiff_candidate_latency_delta_ratio", &with(&labels, "quantile", quantile)).set(delta);
    }
    gauge!("shadowdiff_candidate_comparisons", &labels).set(count(report.samples));
}

fn clear(candidate: &str, stage: &str) {
    let labels = [("candidate", candidate.to_owned()), ("stage", stage.to_owned())];
    for decision in [Decision::Pass, Decision::Fail, Decision::Inconclusive] {
        gauge!("shadowdiff_candidate_verdict", &with(&labels, "verdict", decision.as_str())).set(0.0);
    }
    for name in
        ["shadowdiff_candidate_divergence_ratio", "shadowdiff_candidate_new_errors", "shadowdiff_candidate_comparisons"]
    {
        gauge!(name, &labels).set(0.0);
    }
    for quantile in ["0.5", "0.95"] {
        gauge!("shadowdiff_candidate_latency_delta_ratio", &with(&labels, "quantile", quantile)).set(0.0);
    }
}

fn with(labels: &[(&'static str, String); 2], key: &'static str, value: &str) -> [(&'static str, String); 3] {
    [labels[0].clone(), labels[1].clone(), (key, value.to_owned())]
}

#[expect(clippy::cast_precision_loss, reason = "a count far below 2^52")]
fn count(n: u64) -> f64 {
    n as f64
}

fn failed(error: &dyn std::fmt::Display) {
    tracing::warn!(%error, "candidate gauges not refreshed");
    metrics::counter!("shadowdiff_verdict_gauge_errors_total").increment(1);
}

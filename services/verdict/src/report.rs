//! A verdict report: the window's evidence, judged against the stage's gate, with the worst
//! routes and paths, in the shape the API returns and `shadowctl` prints.

use clickhouse::Client;
use serde::{Deserialize, Serialize};

use shadowdiff_store::VerdictRow;

use crate::evaluate::paths::{self, AcceptedPath};
use crate::evaluate::{self, Criterion, Decision, Evidence, Latency, Rate};
use crate::gate::GatePolicy;
use crate::query::{self, PathCount, Window};

/// How many routes and paths a report lists.
const WORST: usize = 10;

/// The answer to "may this candidate move on?".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerdictReport {
    pub candidate: String,
    /// The stage whose gate was applied.
    pub stage: String,
    /// The release judged, as the caller named it: only its comparisons count.
    pub revision: Option<String>,
    /// The replay run judged (`shadowctl replay`); none for the live traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    /// Unix seconds: the start of the window judged (the release's first ask, the caller's
    /// `since` or the default window, bounded by the longest window).
    pub since: u32,
    /// `pass`, `fail` or `inconclusive`.
    pub verdict: Decision,
    /// The reason of every criterion that did not pass.
    pub reasons: Vec<String>,
    pub criteria: Vec<Criterion>,
    /// Comparison rows of any outcome.
    pub samples: u64,
    pub compared: u64,
    /// Rows that were not compared: a leg missing or failed.
    pub incomplete: u64,
    pub noise_only: u64,
    pub span_secs: u64,
    /// Diverged (noise excluded) of compared.
    pub divergence: Rate,
    /// New errors of requests the primary answered: server errors, timeouts and client errors.
    pub new_errors: Rate,
    /// Of `new_errors`, the client errors (4xx where the primary succeeded).
    pub new_client_errors: u64,
    pub latency: Latency,
    /// Worst first.
    pub routes: Vec<RouteReport>,
    /// Non-noise differences, status changes first, then most frequent first.
    pub top_paths: Vec<PathCount>,
    /// Paths the candidate changes systematically, most certain first.
    pub divergent_paths: Vec<crate::evaluate::DivergentPath>,
    /// Paths whose differences a person accepted: left out of every criterion.
    pub accepted: Vec<AcceptedPath>,
    pub policy: GatePolicy,
}

/// One route's share of the evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteReport {
    pub route: String,
    pub verdict: Decision,
    pub samples: u64,
    pub divergence: Rate,
    pub new_errors: Rate,
}

impl RouteReport {
    fn new(route: String, evidence: &Evidence, policy: &GatePolicy) -> Self {
        Self {
            route,
            verdict: evaluate::judge_route(evidence, policy),
            samples: evidence.samples,
            divergence: Rate::new(evidence.diverged, evidence.compared),
            new_errors: Rate::new(evidence.new_errors, evidence.answered),
        }
    }
}

/// Judges `window` under `policy`, with `acceptances` the candidate's acceptances in force.
pub(crate) async fn build(
    client: &Client,
    window: Window,
    stage: &str,
    policy: &GatePolicy,
    acceptances: &[crate::accept::Acceptance],
) -> clickhouse::error::Result<VerdictReport> {
    let judged = paths::judge(query::paths(client, &window).await?, acceptances);
    let diverged = query::diverged(client, &window, &judged.excluded).await?;
    let (mut evidence, routes, top_paths, downstream) = tokio::try_join!(
        query::evidence(client, &window, diverged.values().sum()),
        query::routes(client, &window, &diverged),
        query::top_paths(client, &window, &judged.excluded, WORST as u32),
        query::downstream(client, &window),
    )?;
    evidence.divergent_paths = judged.divergent;
    evidence.downstream = downstream;
    let mut routes: Vec<RouteReport> =
        routes.into_iter().map(|(route, evidence)| RouteReport::new(route, &evidence, policy)).collect();
    // Failing routes first, then by how sure we are they diverge, then by volume.
    routes.sort_by(|a, b| {
        b.verdict
            .cmp(&a.verdict)
            .then(b.divergence.lower.total_cmp(&a.divergence.lower))
            .then(b.new_errors.count.cmp(&a.new_errors.count))
            .then(b.samples.cmp(&a.samples))
    });
    routes.truncate(WORST);
    let (verdict, criteria) = evaluate::judge(&evidence, policy);
    Ok(VerdictReport {
        candidate: window.candidate,
        stage: stage.to_owned(),
        revision: window.revision,
        run: Some(window.run).filter(|run| !run.is_empty()),
        since: window.since,
        verdict,
        reasons: criteria.iter().filter(|c| c.status != Decision::Pass).map(|c| c.reason.clone()).collect(),
        criteria,
        samples: evidence.samples,
        compared: evidence.compared,
        incomplete: evidence.samples - evidence.compared,
        noise_only: evidence.noise_only,
        span_secs: evidence.span_secs,
        divergence: Rate::new(evidence.diverged, evidence.compared),
        new_errors: Rate::new(evidence.new_errors, evidence.answered),
        new_client_errors: evidence.new_client_errors,
        latency: evidence.latency,
        routes,
        top_paths,
        divergent_paths: evidence.divergent_paths,
        accepted: judged.accepted,
        policy: policy.clone(),
    })
}

/// Why a replay run could not be judged in process.
#[derive(Debug, thiserror::Error)]
pub enum RunVerdictError {
    #[error("no stage {0:?}: one of shadow, 1, 10, 50, 100")]
    Stage(String),
    #[error("read the run's comparisons: {0}")]
    Read(#[from] clickhouse::error::Error),
    #[error(transparent)]
    Acceptances(#[from] shadowdiff_store::StoreError),
}

/// Judges replay run `run` of `candidate` under `stage`'s gate in `section`, reading
/// ClickHouse from this process exactly as `GET /v1/verdict?run=` does: the same window
/// (every row of the run within the longest window), acceptances and report; recorded
/// nowhere, as no run's verdict is.
pub async fn of_run(
    client: &Client,
    section: &crate::config::VerdictSection,
    candidate: &str,
    run: &str,
    stage: &str,
) -> Result<VerdictReport, RunVerdictError> {
    let policy = section.gates.judging(stage, true).ok_or_else(|| RunVerdictError::Stage(stage.to_owned()))?;
    let now = crate::api::unix_now();
    let since = crate::api::window_start(None, Some(0), now, section.default_window, section.max_window);
    let window = Window { candidate: candidate.to_owned(), revision: None, since, run: run.to_owned() };
    let acceptances = crate::accept::active(client, candidate, now).await?;
    Ok(build(client, window, stage, &policy, &acceptances).await?)
}

/// The `verdicts` row recording `report`, as asked for by `caller`.
pub(crate) fn record(report: &VerdictReport, caller: &str) -> VerdictRow {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    VerdictRow {
        ts: u32::try_from(now).unwrap_or(u32::MAX),
        candidate: report.candidate.clone(),
        stage: report.stage.clone(),
        verdict: report.verdict.as_str().to_owned(),
        caller: caller.to_owned(),
        samples: report.samples,
        compared: report.compared,
        divergence_rate: report.divergence.rate,
        new_errors: report.new_errors.count,
        p95_delta: report.latency.p95_shift.map_or(0.0, |s| s.observed),
        reasons: report.reasons.join("\n"),
        revision: report.revision.clone().unwrap_or_default(),
        since: report.since,
    }
}

//! The SQL behind the API. What is counted is read with `FINAL`, so rows rewritten after a
//! correlator restart count once; ClickHouse 18.16 runs `FINAL` on one thread, so what needs
//! no exact count (request-id lookups, the secondary's latency, the charts) reads without it,
//! on every core, and independent queries run side by side. All of it runs on ClickHouse
//! 18.16 and current releases.

use clickhouse::{Client, Row};
use serde::{Deserialize, Serialize};
use shadowdiff_core::Role;
use shadowdiff_store::sql::{outcome_in, outcome_is, role_is};
use shadowdiff_store::{DifferenceRow, ExchangeRow, OutboundCallRow, OutboundDifferenceRow, Outcome, SampleRow};

use std::collections::HashMap;

use crate::evaluate::latency::Timed;
use crate::evaluate::{Evidence, Latency, PathEvidence, Quantiles};

/// Which comparison rows a verdict covers: one candidate's, from a point in time on. The
/// API works the start out from the release, the caller's `since` and its bounds
/// (`api::resolve`); the stage only chooses the gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub candidate: String,
    /// The release judged, as the CD system named it (Argo Rollouts' pod-template hash,
    /// Flagger's checksum).
    pub revision: Option<String>,
    /// Unix seconds: the first comparison time covered.
    pub since: u32,
    /// The replay run judged (`shadowctl replay`); empty for the live traffic. A window
    /// covers one or the other, never both.
    pub run: String,
}

impl Window {
    /// The live traffic's rows of `candidate` from `since` on.
    pub(crate) fn live(candidate: &str, since: u32) -> Self {
        Self { candidate: candidate.to_owned(), revision: None, since, run: String::new() }
    }
}

/// The candidate's rows in the window. Binds: candidate, since, run ([`bind_window`]).
fn in_window() -> String {
    format!("{} AND deployment = ? AND ts >= toDateTime(?) AND run = ?", role_is(Role::Candidate))
}

/// A shadow's error the primary did not have: a 5xx or a failure where the primary answered.
fn server_error() -> String {
    // A shadow that answered, or failed on its own while the primary answered.
    let answered = outcome_in(&[Outcome::Complete, Outcome::ShadowError]);
    format!(
        "{answered} AND (shadow_status >= 500 OR shadow_error != '') AND primary_status < 500 AND primary_error = ''"
    )
}

/// A 4xx where the primary succeeded, unless the secondary, the primary's own version,
/// answered that request with a 4xx too (an expired credential, a deleted record). Binds:
/// since.
fn client_error() -> String {
    format!(
        "{} AND shadow_status >= 400 AND shadow_status < 500 \
         AND primary_status >= 200 AND primary_status < 400 \
         AND request_id NOT IN (SELECT request_id FROM exchanges WHERE {} \
             AND shadow_status >= 400 AND shadow_status < 500 AND ts >= toDateTime(?))",
        outcome_is(Outcome::Complete),
        role_is(Role::Secondary)
    )
}

/// The counts every verdict is built from; `route` is empty for the whole candidate. Binds:
/// since (the secondary's client errors), then [`in_window`]'s. See [`bind_counts`].
fn counts() -> String {
    let compared = outcome_is(Outcome::Complete);
    let answered = outcome_in(&[Outcome::Complete, Outcome::ShadowError]);
    format!(
        "count() AS samples, \
         countIf({compared}) AS compared, \
         countIf({compared} AND differences > 0) AS differing, \
         countIf({answered}) AS answered, \
         countIf({}) AS new_server_errors, \
         countIf({}) AS new_client_errors, \
         if(count() = 0, toUInt64(0), toUInt64(toUInt32(max(ts)) - toUInt32(min(ts)))) AS span_secs",
        server_error(),
        client_error()
    )
}

/// Binds a query made of [`counts`] and then [`in_window`].
fn bind_counts(query: clickhouse::query::Query, window: &Window) -> clickhouse::query::Query {
    bind_window(query.bind(window.since), window)
}

#[derive(Debug, Row, Deserialize)]
struct CountsRow {
    route: String,
    samples: u64,
    compared: u64,
    differing: u64,
    answered: u64,
    new_server_errors: u64,
    new_client_errors: u64,
    span_secs: u64,
}

impl CountsRow {
    /// The evidence, with `diverged` of the compared exchanges diverging (see [`diverged`]).
    fn into_evidence(self, latency: Latency, diverged: u64) -> (String, Evidence) {
        let diverged = diverged.min(self.differing);
        let evidence = Evidence {
            samples: self.samples,
            compared: self.compared,
            diverged,
            noise_only: self.differing - diverged,
            answered: self.answered,
            new_errors: self.new_server_errors + self.new_client_errors,
            new_client_errors: self.new_client_errors,
            span_secs: self.span_secs,
            latency,
            divergent_paths: Vec::new(),
            downstream: crate::evaluate::Downstream::default(),
        };
        (self.route, evidence)
    }
}

#[derive(Debug, Row, Deserialize)]
struct LatencyRow {
    n: u64,
    primary: Vec<f64>,
    shadow: Vec<f64>,
}

impl LatencyRow {
    fn quantiles(values: &[f64]) -> Quantiles {
        match values {
            [p50, p95, p99] => Quantiles { p50: *p50, p95: *p95, p99: *p99 },
            _ => Quantiles::default(),
        }
    }

    /// (shadow p95 − primary p95) / primary p95, when there is something to divide by.
    fn p95_delta(&self) -> Option<f64> {
        let (primary, shadow) = (Self::quantiles(&self.primary).p95, Self::quantiles(&self.shadow).p95);
        (self.n > 0 && primary > 0.0).then(|| (shadow - primary) / primary)
    }
}

/// Latency quantiles in milliseconds of the compared rows matching the condition appended.
fn latency() -> String {
    format!(
        "SELECT count() AS n, \
         arrayMap(x -> toFloat64(x) / 1000, quantilesExact(0.5, 0.95, 0.99)(primary_latency_us)) AS primary, \
         arrayMap(x -> toFloat64(x) / 1000, quantilesExact(0.5, 0.95, 0.99)(shadow_latency_us)) AS shadow \
         FROM exchanges FINAL WHERE {} AND ",
        outcome_is(Outcome::Complete)
    )
}

fn bind_window(query: clickhouse::query::Query, window: &Window) -> clickhouse::query::Query {
    query.bind(&window.candidate).bind(window.since).bind(&window.run)
}

/// The whole window's evidence, with paired latency (the candidate's, and the secondary's
/// on the same requests as the A/A baseline); `diverged` exchanges diverge (see
/// [`diverged`]), and no paths are judged yet.
pub(crate) async fn evidence(client: &Client, window: &Window, diverged: u64) -> clickhouse::error::Result<Evidence> {
    let (in_window, latency) = (in_window(), latency());
    let counts = bind_counts(
        client.query(&format!("SELECT '' AS route, {} FROM exchanges FINAL WHERE {in_window}", counts())),
        window,
    )
    .fetch_one::<CountsRow>();
    let candidate = bind_window(client.query(&format!("{latency}{in_window}")), window).fetch_one::<LatencyRow>();
    // The secondary's legs of the same requests: they carry the same time, which bounds
    // what is read; the candidate's request ids are the same in every version of its rows.
    // Read without FINAL, on every core: a leg written twice is the same time twice, which
    // moves no quantile that matters.
    let secondary = bind_window(
        client
            .query(&format!(
                "{}{} AND ts >= toDateTime(?) AND request_id IN \
             (SELECT request_id FROM exchanges WHERE {} AND {in_window})",
                latency.replace(" FINAL ", " "),
                role_is(Role::Secondary),
                outcome_is(Outcome::Complete)
            ))
            .bind(window.since),
        window,
    )
    .fetch_one::<LatencyRow>();
    // The store runs them side by side: each reads with FINAL, on one thread.
    let (counts, candidate, secondary, pairs) =
        tokio::try_join!(counts, candidate, secondary, latency_pairs(client, window))?;
    let against_secondary = pairs.iter().any(|p| p.secondary > 0);
    let pairs: Vec<Timed> = pairs
        .into_iter()
        .filter(|p| !against_secondary || p.secondary > 0)
        .map(|p| Timed {
            candidate: p.candidate,
            baseline: if against_secondary { p.secondary_ms } else { p.primary },
            primary: p.primary,
        })
        .collect();
    let shifts = crate::evaluate::latency::shifts(&pairs);
    let latency = Latency {
        primary: LatencyRow::quantiles(&candidate.primary),
        candidate: LatencyRow::quantiles(&candidate.shadow),
        secondary: (secondary.n > 0).then(|| LatencyRow::quantiles(&secondary.shadow)),
        p95_delta: candidate.p95_delta().unwrap_or(0.0),
        secondary_p95_delta: secondary.p95_delta(),
        pairs: pairs.len() as u64,
        against_secondary,
        p50_shift: shifts.map(|[p50, _]| p50),
        p95_shift: shifts.map(|[_, p95]| p95),
    };
    Ok(counts.into_evidence(latency, diverged).1)
}

#[derive(Debug, Row, Deserialize)]
struct DownstreamRow {
    changed: u64,
    calls: u64,
    writes: u64,
}

/// How the candidate's downstream calls differ from the primary's in the window, by
/// exchange, noise aside (see [`crate::evaluate::Downstream`]).
pub(crate) async fn downstream(
    client: &Client,
    window: &Window,
) -> clickhouse::error::Result<crate::evaluate::Downstream> {
    let calls = "kind IN ('missing_call', 'extra_call', 'unmatched')";
    let writes = format!("write = 1 AND NOT ({calls}) AND kind != 'order'");
    let query = format!(
        "SELECT uniqExactIf(request_id, ({calls}) OR ({writes})) AS changed,                 uniqExactIf(request_id, {calls}) AS calls, uniqExactIf(request_id, {writes}) AS writes          FROM outbound_differences FINAL          WHERE {} AND deployment = ? AND ts >= toDateTime(?) AND run = ? AND noise = 0",
        role_is(Role::Candidate)
    );
    let row: DownstreamRow = bind_window(client.query(&query), window).fetch_one().await?;
    Ok(crate::evaluate::Downstream { changed: row.changed, calls: row.calls, writes: row.writes })
}

/// Most requests whose latency is judged in pairs: the latest in the window.
const MAX_PAIRS: u32 = 10_000;

#[derive(Debug, Row, Deserialize)]
struct PairRow {
    candidate: f64,
    primary: f64,
    /// 1 when the secondary answered the request too.
    secondary: u8,
    secondary_ms: f64,
}

/// The latest [`MAX_PAIRS`] compared requests of the window, in the order they were made,
/// in milliseconds: the candidate's time, the primary's, and the secondary's when it
/// answered the same request.
async fn latency_pairs(client: &Client, window: &Window) -> clickhouse::error::Result<Vec<PairRow>> {
    let complete = outcome_is(Outcome::Complete);
    let query = format!(
        "SELECT toFloat64(c) / 1000 AS candidate, toFloat64(p) / 1000 AS primary, \
                secondary, toFloat64(s) / 1000 AS secondary_ms \
         FROM (SELECT request_id, ts AS at, shadow_latency_us AS c, primary_latency_us AS p FROM exchanges FINAL \
               WHERE {complete} AND {} ORDER BY ts DESC LIMIT {MAX_PAIRS}) \
         ANY LEFT JOIN (SELECT request_id, shadow_latency_us AS s, toUInt8(1) AS secondary FROM exchanges \
               WHERE {complete} AND {} AND ts >= toDateTime(?)) \
         USING request_id \
         ORDER BY at, request_id",
        in_window(),
        role_is(Role::Secondary),
    );
    bind_window(client.query(&query), window).bind(window.since).fetch_all().await
}

/// A difference's path with its array indices as `[*]` (`items[2].price` → `items[*].price`),
/// as the rules the correlator reads write them.
pub(crate) const GENERALISED_PATH: &str = "replaceRegexpAll(path, '\\[[0-9]+\\]', '[*]')";

/// The candidate's differences the noise model classified as noise, per route and
/// generalised path, where there are at least `suggest::MIN_COUNT`.
pub(crate) async fn noisy_paths(
    client: &Client,
    window: &Window,
    limit: u32,
) -> clickhouse::error::Result<Vec<crate::suggest::NoisyPath>> {
    let query = format!(
        "SELECT route, {GENERALISED_PATH} AS path, kind, count() AS count, \
         min(request_id) AS example, '' AS key \
         FROM differences FINAL \
         WHERE noise = 1 AND {} \
         GROUP BY route, path, kind \
         HAVING count >= ? \
         ORDER BY count DESC, route, path \
         LIMIT ?",
        in_window()
    );
    bind_window(client.query(&query), window).bind(crate::suggest::MIN_COUNT).bind(limit).fetch_all().await
}

/// Up to `limit` sampled primary bodies of `route` among the candidate's compared requests
/// in the window.
pub(crate) async fn primary_bodies(
    client: &Client,
    window: &Window,
    route: &str,
    limit: u32,
) -> clickhouse::error::Result<Vec<String>> {
    let query = format!(
        "SELECT body FROM samples FINAL WHERE {} AND route = ? \
         AND request_id IN (SELECT request_id FROM exchanges WHERE {}) LIMIT ?",
        role_is(Role::Primary),
        in_window()
    );
    bind_window(client.query(&query).bind(route), window).bind(limit).fetch_all().await
}

#[derive(Debug, Row, Deserialize)]
struct PathRow {
    route: String,
    path: String,
    kind: String,
    candidate: u64,
    secondary: u64,
    examples: Vec<String>,
    key: u64,
}

/// Most paths of one candidate's window that are judged; a difference at a path beyond them
/// always counts as a divergence.
const MAX_PATHS: u32 = 2000;

/// A difference's (route, generalised path, kind), as one number the queries compare.
fn path_key() -> String {
    format!("cityHash64(route, {GENERALISED_PATH}, kind)")
}

/// Per route and generalised path (array indices as `[*]`), the candidate's differences that
/// are not noise and the secondary's differences on the same requests, for every path where
/// the candidate has any; the most frequent [`MAX_PATHS`]. Examples are up to three distinct
/// requests (one response can differ at a path under several array elements): the least
/// request id in each of three buckets of their hashes, so the same rows give the same
/// examples whatever order they are read in, on one server or across shards.
pub(crate) async fn paths(client: &Client, window: &Window) -> clickhouse::error::Result<Vec<PathEvidence>> {
    let candidate = format!("{} AND deployment = ? AND noise = 0", role_is(Role::Candidate));
    let query = format!(
        "SELECT route, {GENERALISED_PATH} AS path, kind, \
         toUInt64(countIf({candidate})) AS candidate, \
         toUInt64(countIf({secondary})) AS secondary, \
         arraySort(arrayFilter(id -> id != '', [{examples}])) AS examples, \
         any({key}) AS key \
         FROM differences FINAL \
         WHERE ts >= toDateTime(?) AND request_id IN (SELECT request_id FROM exchanges WHERE {in_window}) \
         GROUP BY route, path, kind \
         HAVING candidate > 0 \
         ORDER BY candidate DESC \
         LIMIT ?",
        secondary = role_is(Role::Secondary),
        in_window = in_window(),
        key = path_key(),
        examples = (0..3)
            .map(|bucket| format!("minIf(request_id, {candidate} AND cityHash64(request_id) % 3 = {bucket})"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    // The candidate's condition binds it: once counting, once per example bucket.
    let query = (0..4).fold(client.query(&query), |query, _| query.bind(&window.candidate)).bind(window.since);
    let rows: Vec<PathRow> = bind_window(query, window).bind(MAX_PATHS).fetch_all().await?;
    Ok(rows
        .into_iter()
        .map(|r| PathEvidence {
            route: r.route,
            path: r.path,
            kind: r.kind,
            candidate: r.candidate,
            secondary: r.secondary,
            examples: r.examples,
            key: r.key,
        })
        .collect())
}

/// The candidate's differences that count, in the window: not noise, and at none of the
/// `excluded` paths (accepted, or explained by the secondary: `evaluate::paths`). A
/// difference carries its exchange's time, and only compared exchanges have any, so the
/// window is [`in_window`] on `differences` itself: no lookup of the exchanges. Binds
/// [`in_window`]'s, then the exclusions (see [`bind_excluded`]).
fn counted_differences(excluded: &[u64]) -> String {
    let exclusion = if excluded.is_empty() { String::new() } else { format!(" AND NOT has(?, {})", path_key()) };
    format!("noise = 0 AND {}{exclusion}", in_window())
}

fn bind_excluded(query: clickhouse::query::Query, excluded: &[u64]) -> clickhouse::query::Query {
    if excluded.is_empty() { query } else { query.bind(excluded) }
}

/// Per route, the compared exchanges that diverge: those with a difference that counts
/// (see [`counted_differences`]).
pub(crate) async fn diverged(
    client: &Client,
    window: &Window,
    excluded: &[u64],
) -> clickhouse::error::Result<HashMap<String, u64>> {
    #[derive(Debug, Row, Deserialize)]
    struct Diverged {
        route: String,
        n: u64,
    }
    let query = format!(
        "SELECT route, uniqExact(request_id) AS n FROM differences FINAL WHERE {} GROUP BY route",
        counted_differences(excluded)
    );
    let rows: Vec<Diverged> = bind_excluded(bind_window(client.query(&query), window), excluded).fetch_all().await?;
    Ok(rows.into_iter().map(|r| (r.route, r.n)).collect())
}

/// Evidence per route (without latency), in no particular order, with `diverged` from
/// [`diverged`].
pub(crate) async fn routes(
    client: &Client,
    window: &Window,
    diverged: &HashMap<String, u64>,
) -> clickhouse::error::Result<Vec<(String, Evidence)>> {
    let rows: Vec<CountsRow> = bind_counts(
        client.query(&format!("SELECT route, {} FROM exchanges FINAL WHERE {} GROUP BY route", counts(), in_window())),
        window,
    )
    .fetch_all()
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let n = diverged.get(&r.route).copied().unwrap_or(0);
            r.into_evidence(Latency::default(), n)
        })
        .collect())
}

/// How often one path differed, noise excluded. Status changes come first in a report.
#[derive(Debug, Clone, PartialEq, Eq, Row, Serialize, Deserialize)]
pub struct PathCount {
    pub route: String,
    pub path: String,
    pub kind: String,
    pub count: u64,
}

/// The paths whose differences count (see [`counted_differences`]), status changes first.
pub(crate) async fn top_paths(
    client: &Client,
    window: &Window,
    excluded: &[u64],
    limit: u32,
) -> clickhouse::error::Result<Vec<PathCount>> {
    let query = format!(
        "SELECT route, path, kind, count() AS count FROM differences FINAL WHERE {} \
         GROUP BY route, path, kind \
         ORDER BY kind = 'status' DESC, count DESC, route, path \
         LIMIT {limit}",
        counted_differences(excluded)
    );
    bind_excluded(bind_window(client.query(&query), window), excluded).fetch_all().await
}

/// Everything stored about one request: every shadow leg's comparison, every difference, and
/// the bodies if the exchange was sampled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExchangeDetail {
    pub request_id: String,
    pub legs: Vec<ExchangeRow>,
    pub differences: Vec<DifferenceRow>,
    pub samples: Vec<SampleRow>,
    /// Every deployment's downstream calls, by deployment and in the order made.
    #[serde(default)]
    pub calls: Vec<OutboundCallRow>,
    /// How each shadow's calls differ from the primary's.
    #[serde(default)]
    pub call_differences: Vec<OutboundDifferenceRow>,
}

impl ExchangeDetail {
    /// The shadow deployment a drill-down compares with the primary: `requested`, else the
    /// first candidate leg, else the first leg (the secondary of an exchange without a
    /// candidate). The page and `shadowctl diff` both choose with this.
    pub fn drill_down(&self, requested: Option<&str>) -> Option<String> {
        let candidate = Role::Candidate.as_str();
        requested
            .map(str::to_owned)
            .or_else(|| self.legs.iter().find(|l| l.role == candidate).map(|l| l.deployment.clone()))
            .or_else(|| self.legs.first().map(|l| l.deployment.clone()))
    }

    /// The primary's and `shadow`'s sampled responses, when the exchange was sampled.
    pub fn bodies(&self, shadow: &str) -> Option<(&SampleRow, &SampleRow)> {
        let primary = Role::Primary.as_str();
        let of_primary = self.samples.iter().find(|s| s.role == primary);
        let of_shadow = self.samples.iter().find(|s| s.deployment == shadow && s.role != primary);
        of_primary.zip(of_shadow)
    }

    /// The primary's and `shadow`'s downstream calls, each in the order made.
    pub fn calls_of(&self, shadow: &str) -> (Vec<&OutboundCallRow>, Vec<&OutboundCallRow>) {
        let primary = Role::Primary.as_str();
        let of_primary = self.calls.iter().filter(|c| c.role == primary).collect();
        let of_shadow = self.calls.iter().filter(|c| c.deployment == shadow && c.role != primary).collect();
        (of_primary, of_shadow)
    }
}

pub(crate) async fn exchange(client: &Client, request_id: &str) -> clickhouse::error::Result<ExchangeDetail> {
    let legs = client
        .query("SELECT ?fields FROM exchanges FINAL WHERE request_id = ? ORDER BY role DESC, deployment")
        .bind(request_id)
        .fetch_all()
        .await?;
    let differences = client
        .query("SELECT ?fields FROM differences FINAL WHERE request_id = ? ORDER BY deployment, path, kind")
        .bind(request_id)
        .fetch_all()
        .await?;
    let samples = client
        .query("SELECT ?fields FROM samples FINAL WHERE request_id = ? ORDER BY role DESC, deployment")
        .bind(request_id)
        .fetch_all()
        .await?;
    let calls = client
        .query("SELECT ?fields FROM outbound_calls FINAL WHERE request_id = ? ORDER BY deployment, seq")
        .bind(request_id)
        .fetch_all()
        .await?;
    let call_differences = client
        .query(
            "SELECT ?fields FROM outbound_differences FINAL WHERE request_id = ? ORDER BY deployment, call, kind, path",
        )
        .bind(request_id)
        .fetch_all()
        .await?;
    Ok(ExchangeDetail { request_id: request_id.to_owned(), legs, differences, samples, calls, call_differences })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_conditions_name_what_the_correlator_writes() {
        assert_eq!(in_window(), "role = 'candidate' AND deployment = ? AND ts >= toDateTime(?) AND run = ?");
        let counts = counts();
        assert!(counts.starts_with("count() AS samples, countIf(outcome = 'complete') AS compared, "), "{counts}");
        assert!(counts.contains(", countIf(outcome IN ('complete', 'shadow_error')) AS answered, "), "{counts}");
        assert!(latency().ends_with(" FROM exchanges FINAL WHERE outcome = 'complete' AND "), "{}", latency());
    }

    #[test]
    fn a_drill_down_shows_the_shadow_asked_for_else_a_candidate_else_the_secondary() {
        let leg = |deployment: &str, role: Role| ExchangeRow {
            deployment: deployment.into(),
            role: role.as_str().into(),
            ..ExchangeRow::default()
        };
        let detail = |legs| ExchangeDetail {
            request_id: "r".into(),
            legs,
            differences: vec![],
            samples: vec![],
            calls: vec![],
            call_differences: vec![],
        };
        // In the order `exchange` reads them: the secondary first.
        let both = detail(vec![leg("prod-b", Role::Secondary), leg("v2", Role::Candidate)]);
        assert_eq!(both.drill_down(Some("prod-b")).as_deref(), Some("prod-b"));
        assert_eq!(both.drill_down(None).as_deref(), Some("v2"));
        assert_eq!(detail(vec![leg("prod-b", Role::Secondary)]).drill_down(None).as_deref(), Some("prod-b"));
        assert_eq!(detail(vec![]).drill_down(None), None);
    }
}

/// A candidate with comparisons in a window, and the latest verdict given about it.
#[derive(Debug, Clone, Row, Deserialize)]
pub(crate) struct Candidate {
    pub(crate) candidate: String,
    pub(crate) comparisons: u64,
    /// Unix seconds of its latest comparison.
    pub(crate) last: u32,
    /// The latest verdict's fields; empty (and `judged` 0) when none was given yet.
    pub(crate) verdict: String,
    pub(crate) stage: String,
    pub(crate) revision: String,
    /// Unix seconds.
    pub(crate) judged: u32,
}

/// Every candidate with comparisons since `since`, latest first, at most `limit`. Read
/// without `FINAL` (which runs on one thread): a row written twice counts once by its id.
pub(crate) async fn candidates(
    client: &Client,
    since: u32,
    limit: u32,
) -> Result<Vec<Candidate>, clickhouse::error::Error> {
    let query = format!(
        "SELECT candidate, comparisons, last, verdict, stage, revision, judged FROM \
         (SELECT deployment AS candidate, uniqExact(request_id) AS comparisons, toUInt32(max(ts)) AS last \
          FROM exchanges WHERE {} AND ts >= toDateTime(?) AND run = '' GROUP BY deployment) \
         ANY LEFT JOIN \
         (SELECT candidate, argMax(verdict, ts) AS verdict, argMax(stage, ts) AS stage, \
                 argMax(revision, ts) AS revision, \
                 toUInt32(max(ts)) AS judged \
          FROM verdicts GROUP BY candidate) USING candidate \
         ORDER BY last DESC, candidate LIMIT {limit}",
        role_is(Role::Candidate)
    );
    client.query(&query).bind(since).fetch_all().await
}

/// One stretch of a candidate's timeline: its comparisons from `bucket` × step after the
/// start, for the console's charts.
#[derive(Debug, Clone, Row, Deserialize)]
pub(crate) struct Bucket {
    pub(crate) deployment: String,
    pub(crate) bucket: u32,
    pub(crate) compared: u64,
    /// Compared exchanges with a difference the noise model did not absorb.
    pub(crate) diverged: u64,
    pub(crate) new_errors: u64,
    /// p50 and p95 in milliseconds, of the compared exchanges.
    pub(crate) primary: Vec<f64>,
    pub(crate) candidate: Vec<f64>,
}

/// Most buckets a timeline query returns, over every candidate.
const MAX_BUCKETS: u32 = 10_000;

/// Every candidate's comparisons since `since` (or only `candidate`'s), in buckets of `step`
/// seconds, by candidate and bucket. For charts, read without `FINAL`, on every core: a row
/// the correlator wrote twice (a restart's replay) counts twice until the table merges it.
pub(crate) async fn timeline(
    client: &Client,
    candidate: Option<&str>,
    since: u32,
    step: u32,
) -> clickhouse::error::Result<Vec<Bucket>> {
    let compared = outcome_is(Outcome::Complete);
    let query = format!(
        "SELECT deployment, toUInt32(intDiv(toUInt32(ts) - ?, ?)) AS bucket, \
         countIf({compared}) AS compared, \
         countIf({compared} AND differences > noise) AS diverged, \
         countIf(({}) OR ({})) AS new_errors, \
         arrayMap(x -> toFloat64(x) / 1000, quantilesExactIf(0.5, 0.95)(primary_latency_us, {compared})) AS primary, \
         arrayMap(x -> toFloat64(x) / 1000, quantilesExactIf(0.5, 0.95)(shadow_latency_us, {compared})) AS candidate \
         FROM exchanges WHERE {} AND ts >= toDateTime(?) AND run = '' {} \
         GROUP BY deployment, bucket ORDER BY deployment, bucket LIMIT {MAX_BUCKETS}",
        server_error(),
        client_error(),
        role_is(Role::Candidate),
        if candidate.is_some() { "AND deployment = ?" } else { "" },
    );
    let query = client.query(&query).bind(since).bind(step.max(1)).bind(since).bind(since);
    match candidate {
        Some(candidate) => query.bind(candidate),
        None => query,
    }
    .fetch_all()
    .await
}

#[derive(Debug, Clone, Row, Deserialize)]
pub(crate) struct SecondaryBucket {
    pub(crate) bucket: u32,
    /// p50 and p95 in milliseconds.
    pub(crate) secondary: Vec<f64>,
}

/// The secondary's latency on the requests `candidate` answered since `since`, in the same
/// buckets as [`timeline`].
pub(crate) async fn secondary_timeline(
    client: &Client,
    candidate: &str,
    since: u32,
    step: u32,
) -> clickhouse::error::Result<Vec<SecondaryBucket>> {
    let compared = outcome_is(Outcome::Complete);
    let query = format!(
        "SELECT toUInt32(intDiv(toUInt32(ts) - ?, ?)) AS bucket, \
         arrayMap(x -> toFloat64(x) / 1000, quantilesExact(0.5, 0.95)(shadow_latency_us)) AS secondary \
         FROM exchanges WHERE {compared} AND {} AND ts >= toDateTime(?) \
         AND request_id IN (SELECT request_id FROM exchanges WHERE {compared} AND {}) \
         GROUP BY bucket ORDER BY bucket LIMIT {MAX_BUCKETS}",
        role_is(Role::Secondary),
        in_window(),
    );
    let window = Window::live(candidate, since);
    bind_window(client.query(&query).bind(since).bind(step.max(1)).bind(since), &window).fetch_all().await
}

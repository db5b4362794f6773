//! From a final exchange to rows: the comparison of each shadow leg with the primary.
//!
//! [`RowBuilder::add`] takes an exchange through named steps: [`classify`] each shadow leg's
//! outcome, compare the secondary once ([`Secondary`]), compare each shadow, learn and apply
//! noise ([`mark_noise`]), build the rows (`fields`), and sample a divergent exchange's
//! bodies ([`RowBuilder::sample`]).

use std::collections::{BTreeSet, HashMap, HashSet};

use shadowdiff_core::diff::{self, DiffOptions, Difference};
use shadowdiff_core::{ExpectedLeg, OutboundCallEvent, RequestEvent, ResponseEvent, Role};
use shadowdiff_runtime::kafka::Hold;
use shadowdiff_store::{DifferenceRow, ExchangeRow, OutboundCallRow, OutboundDifferenceRow, Outcome, SampleRow};

use crate::sink::calls::{self, CallDifference};

use crate::config::CorrelatorSection;
use crate::join::Exchange;
use crate::noise::{NoiseModel, Subject};
use crate::sink::fields::{Fields, call_difference_rows, difference_rows, sample_row};
use crate::sink::samples::SampleBudget;

/// Rows waiting to be written, with the holds on the offsets they release once written.
#[derive(Debug, Default)]
pub struct Batch {
    pub exchanges: Vec<ExchangeRow>,
    pub differences: Vec<DifferenceRow>,
    pub samples: Vec<SampleRow>,
    pub outbound_calls: Vec<OutboundCallRow>,
    pub outbound_differences: Vec<OutboundDifferenceRow>,
    pub(crate) holds: Vec<Hold>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.exchanges.is_empty() && self.holds.is_empty()
    }
}

/// Turns final exchanges into rows: the diff rules of each route, the noise model, the cap
/// on stored values, and the budget of body samples per route and minute.
#[derive(Debug)]
pub(crate) struct RowBuilder {
    rules: RouteRules,
    noise: NoiseModel,
    max_value_bytes: usize,
    samples: SampleBudget,
    /// Hosts whose calls must come in the primary's order.
    ordered: HashSet<String>,
}

impl RowBuilder {
    pub(crate) fn new(rules: RouteRules, config: &CorrelatorSection) -> Self {
        Self {
            rules,
            noise: NoiseModel::new(config.noise),
            max_value_bytes: config.max_value_bytes,
            samples: SampleBudget::new(config.samples_per_route_minute, config.max_sampled_routes),
            ordered: config.outbound.ordered_destinations.iter().cloned().collect(),
        }
    }

    /// Adds the rows of one final exchange to `batch`: one per shadow leg, compared with the
    /// primary under the route's rules. An exchange without shadow legs (a request the mirror
    /// did not replay) adds no rows, only its holds. Returns the outcomes added.
    ///
    /// Noise: a path where the secondary (same version as the primary) differs from the
    /// primary in this very exchange is noise for every shadow of it (timestamps, random ids);
    /// so is a path where, across exchanges, the secondary differs about as often as the
    /// candidate does (`crate::noise`). Both the raw count and the noise count are stored.
    pub(crate) fn add(&mut self, batch: &mut Batch, exchange: Exchange) -> Vec<Outcome> {
        let missing = missing_legs(&exchange);
        let Exchange { request, primary, shadows, holds, calls, tapped, .. } = exchange;
        batch.holds.extend(holds);
        let (request, primary) = (request.as_ref(), primary.as_ref());
        let fields = Fields::new(request, primary);
        let calls = self.calls(batch, &fields, &shadows, &calls, &tapped);
        let options = self.rules.for_route(&fields.route);
        let mut secondary = Secondary::compare(request, primary, &shadows, options);
        let mut outcomes = Vec::with_capacity(shadows.len());
        let mut diverged: Vec<&ResponseEvent> = Vec::new();
        for shadow in &shadows {
            let outcome = match classify(request, primary, shadow) {
                Outcome::Complete if calls.missed.contains(&shadow.deployment) => Outcome::StubMissed,
                outcome => outcome,
            };
            outcomes.push(outcome);
            let found = match primary {
                Some(p) if outcome == Outcome::Complete => {
                    secondary.as_mut().and_then(|s| s.take(shadow)).unwrap_or_else(|| diff::compare(p, shadow, options))
                }
                _ => Vec::new(),
            };
            let secondary_paths = secondary.as_ref().map(|s| &s.paths);
            let is_noise = mark_noise(&mut self.noise, &fields.route, shadow, outcome, secondary_paths, &found);
            let noise = is_noise.iter().filter(|n| **n).count();
            if found.len() > noise && shadow.role == Role::Candidate {
                diverged.push(shadow);
            }
            let row = fields.compared(shadow, outcome, &found, noise);
            batch.differences.extend(difference_rows(&row, found, is_noise, self.max_value_bytes));
            if let Some((found, noise)) = calls.of(shadow).filter(|_| outcome != Outcome::StubMissed) {
                batch.outbound_differences.extend(call_difference_rows(&row, found, noise, self.max_value_bytes));
            }
            batch.exchanges.push(row);
        }
        // Legs the mirror said it replays, that never arrived within the window.
        if let Some(first) = shadows.first() {
            for leg in missing {
                outcomes.push(Outcome::MissingShadow);
                batch.exchanges.push(fields.missing(first, leg));
            }
        }
        self.sample(batch, request, primary, diverged);
        outcomes
    }

    /// Writes the exchange's downstream calls, and compares each tapped shadow's with the
    /// primary's (the secondary's first: its differences are noise for the others).
    fn calls(
        &self,
        batch: &mut Batch,
        fields: &Fields<'_>,
        shadows: &[ResponseEvent],
        made: &[OutboundCallEvent],
        tapped: &[String],
    ) -> ComparedCalls {
        let primary = calls::made_by(made, |c| c.role == Role::Primary);
        let mut compared = ComparedCalls::default();
        for shadow in shadows.iter().filter(|s| tapped.contains(&s.deployment) && s.error.is_none()) {
            let own = calls::made_by(made, |c| c.role != Role::Primary && c.deployment == shadow.deployment);
            if calls::stub_missed(&primary, &own) {
                compared.missed.push(shadow.deployment.clone());
            }
            let found = calls::compare(&primary, &own, &self.rules.default, &self.ordered);
            compared.found.push((shadow.deployment.clone(), shadow.role, found));
        }
        compared.secondary =
            compared.found.iter().find(|(_, role, _)| *role == Role::Secondary).map(|(d, ..)| d.clone());
        let mut seq: HashMap<&str, usize> = HashMap::new();
        for call in calls::made_by(made, |_| true) {
            let n = seq.entry(call.deployment.as_str()).or_default();
            batch.outbound_calls.push(fields.call(call, *n));
            *n += 1;
        }
        compared
    }

    /// Keeps the bodies of a divergent exchange, the primary's and each divergent candidate's,
    /// while its route's budget for the minute lasts.
    fn sample(
        &mut self,
        batch: &mut Batch,
        request: Option<&RequestEvent>,
        primary: Option<&ResponseEvent>,
        diverged: Vec<&ResponseEvent>,
    ) {
        if let (Some(request), Some(primary)) = (request, primary)
            && !diverged.is_empty()
            && self.samples.take(request.route(), request.timestamp_ms)
        {
            batch.samples.extend(std::iter::once(primary).chain(diverged).map(|leg| sample_row(request, leg)));
        }
    }
}

/// Each compared shadow's downstream-call differences in one exchange.
#[derive(Debug, Default)]
struct ComparedCalls {
    /// Deployment, role, differences.
    found: Vec<(String, Role, Vec<CallDifference>)>,
    /// The secondary whose differences are noise for the others.
    secondary: Option<String>,
    /// The shadows a stub tap failed on a call the primary made ([`calls::stub_missed`]).
    missed: Vec<String>,
}

impl ComparedCalls {
    /// `shadow`'s differences and which are noise, if its calls were compared: the
    /// secondary's own are all noise.
    fn of(&self, shadow: &ResponseEvent) -> Option<(Vec<CallDifference>, Vec<bool>)> {
        let (_, role, found) = self.found.iter().find(|(d, ..)| *d == shadow.deployment)?;
        let secondary = self.secondary.as_ref().and_then(|s| self.found.iter().find(|(d, ..)| d == s));
        let noise = if *role == Role::Secondary {
            vec![true; found.len()]
        } else {
            calls::noise(found, secondary.map(|(.., f)| f.as_slice()))
        };
        Some((found.clone(), noise))
    }
}

/// The legs the mirror said it replays this request to, that never arrived.
fn missing_legs(exchange: &Exchange) -> Vec<ExpectedLeg> {
    exchange
        .expected()
        .into_iter()
        .filter(|leg| !exchange.shadows.iter().any(|s| s.deployment == leg.deployment))
        .cloned()
        .collect()
}

/// How the comparison of `shadow` with the primary comes out.
fn classify(request: Option<&RequestEvent>, primary: Option<&ResponseEvent>, shadow: &ResponseEvent) -> Outcome {
    match (request, primary) {
        (None, _) => Outcome::MissingRequest,
        (_, None) => Outcome::MissingPrimary,
        (_, Some(p)) if p.error.is_some() => Outcome::PrimaryError,
        _ if shadow.error.is_some() => Outcome::ShadowError,
        _ => Outcome::Complete,
    }
}

/// The secondary's comparison with the primary in one exchange. Its paths are noise for
/// every shadow of the exchange, and its differences are also its own row's, so they are
/// computed once.
struct Secondary<'a> {
    paths: BTreeSet<String>,
    /// The secondary's deployment and differences, until its own row takes them.
    unclaimed: Option<(&'a str, Vec<Difference>)>,
}

impl<'a> Secondary<'a> {
    /// Compares the first secondary leg with the primary, when the request is known and
    /// both answered.
    fn compare(
        request: Option<&RequestEvent>,
        primary: Option<&ResponseEvent>,
        shadows: &'a [ResponseEvent],
        options: &DiffOptions,
    ) -> Option<Self> {
        let secondary = shadows.iter().find(|s| s.role == Role::Secondary)?;
        match (request, primary) {
            (Some(_), Some(p)) if p.error.is_none() && secondary.error.is_none() => {
                let found = diff::compare(p, secondary, options);
                let paths = found.iter().map(|d| d.path.clone()).collect();
                Some(Self { paths, unclaimed: Some((secondary.deployment.as_str(), found)) })
            }
            _ => None,
        }
    }

    /// The differences already found for `shadow`, when it is the secondary: once.
    fn take(&mut self, shadow: &ResponseEvent) -> Option<Vec<Difference>> {
        self.unclaimed.take_if(|(deployment, _)| *deployment == shadow.deployment).map(|(_, found)| found)
    }
}

/// Learns from a candidate's complete comparison, then marks which of its differences `found`
/// are noise: the secondary differs there too in this exchange (`secondary`), or, for a
/// candidate, across exchanges about as often as the candidate does.
fn mark_noise(
    model: &mut NoiseModel,
    route: &str,
    shadow: &ResponseEvent,
    outcome: Outcome,
    secondary: Option<&BTreeSet<String>>,
    found: &[Difference],
) -> Vec<bool> {
    let candidate = shadow.role == Role::Candidate;
    let subject = Subject { run: &shadow.run, route, candidate: &shadow.deployment };
    if let Some(secondary) = secondary
        && candidate
        && outcome == Outcome::Complete
    {
        let paths = found.iter().map(|d| d.path.as_str());
        model.observe(subject, secondary.iter().map(String::as_str), paths);
    }
    found
        .iter()
        .map(|d| secondary.is_some_and(|s| s.contains(&d.path)) || (candidate && model.explains(subject, &d.path)))
        .collect()
}

/// The diff rules of each route, compiled once.
#[derive(Debug, Default)]
pub(crate) struct RouteRules {
    /// Also the rules of downstream calls' payloads.
    default: DiffOptions,
    routes: HashMap<String, DiffOptions>,
}

impl RouteRules {
    pub(crate) fn new(default: DiffOptions, routes: HashMap<String, DiffOptions>) -> Self {
        Self { default, routes }
    }

    fn for_route(&self, route: &str) -> &DiffOptions {
        self.routes.get(route).unwrap_or(&self.default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use shadowdiff_core::CapturedBody;

    fn leg(role: Role, deployment: &str, expected: &[&str]) -> ResponseEvent {
        ResponseEvent {
            request_id: "r-1".into(),
            timestamp_ms: 1_763_900_000_000,
            role,
            deployment: deployment.into(),
            status: Some(200),
            headers: vec![],
            body: CapturedBody::capture(b"{}", 64),
            latency_us: 10,
            error: None,
            profile: None,
            stage: None,
            expected_legs: expected.iter().map(|d| ExpectedLeg::new(Role::Candidate, *d)).collect(),
            run: String::new(),
        }
    }

    #[test]
    fn a_leg_that_never_came_gets_a_row_naming_it() {
        let request = RequestEvent {
            request_id: "r-1".into(),
            timestamp_ms: 1_763_900_000_000,
            tap_id: "t".into(),
            method: "GET".into(),
            scheme: "http".into(),
            authority: "a".into(),
            path: "/x".into(),
            query: None,
            route_template: Some("/x".into()),
            headers: vec![],
            body: CapturedBody::empty(),
            run: String::new(),
        };
        let exchange = Exchange {
            request: Some(request),
            primary: Some(leg(Role::Primary, "primary", &[])),
            shadows: vec![leg(Role::Candidate, "v2", &["v2", "v3"])],
            ..Exchange::default()
        };
        let mut batch = Batch::default();
        let outcomes = RowBuilder::new(RouteRules::default(), &CorrelatorSection::default()).add(&mut batch, exchange);
        assert_eq!(outcomes, vec![Outcome::Complete, Outcome::MissingShadow]);
        let rows: Vec<(&str, &str, &str)> = batch
            .exchanges
            .iter()
            .map(|r| (r.deployment.as_str(), r.outcome.as_str(), r.shadow_error.as_str()))
            .collect();
        assert_eq!(rows, vec![("v2", "complete", ""), ("v3", "missing_shadow", "missing")]);
    }
}

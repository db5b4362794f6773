//! From a final exchange to rows: the comparison of each shadow leg with the primary.

use shadowdiff_core::diff::{self, DiffKind};
use std::collections::{BTreeSet, HashMap};

use shadowdiff_core::diff::DiffOptions;
use shadowdiff_core::event::header_value;
use shadowdiff_core::{ErrorKind, ExpectedLeg, RequestEvent, ResponseEvent, Role};

use shadowdiff_store::{DifferenceRow, ExchangeRow, SampleRow};

use crate::config::CorrelatorSection;
use crate::join::Exchange;
use crate::noise::NoiseModel;
use crate::sink::samples::SampleBudget;
use shadowdiff_runtime::kafka::Hold;

/// Rows waiting to be written, with the holds on the offsets they release once written.
#[derive(Debug, Default)]
pub struct Batch {
    pub exchanges: Vec<ExchangeRow>,
    pub differences: Vec<DifferenceRow>,
    pub samples: Vec<SampleRow>,
    pub(crate) holds: Vec<Hold>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.exchanges.is_empty() && self.holds.is_empty()
    }
}

/// How a comparison row came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Request, primary and this shadow all arrived, and both answered.
    Complete,
    MissingRequest,
    MissingPrimary,
    PrimaryError,
    ShadowError,
    /// The mirror expected this leg, and it did not arrive within the window.
    MissingShadow,
}

impl Outcome {
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Self::Complete => "complete",
            Self::MissingRequest => "missing_request",
            Self::MissingPrimary => "missing_primary",
            Self::PrimaryError => "primary_error",
            Self::ShadowError => "shadow_error",
            Self::MissingShadow => "missing_shadow",
        }
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
}

impl RowBuilder {
    pub(crate) fn new(rules: RouteRules, config: &CorrelatorSection) -> Self {
        Self {
            rules,
            noise: NoiseModel::new(config.noise),
            max_value_bytes: config.max_value_bytes,
            samples: SampleBudget::new(config.samples_per_route_minute, config.max_sampled_routes),
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
        let max_value_bytes = self.max_value_bytes;
        let missing: Vec<ExpectedLeg> = exchange
            .expected()
            .into_iter()
            .filter(|leg| !exchange.shadows.iter().any(|s| s.deployment == leg.deployment))
            .cloned()
            .collect();
        let Exchange { request, primary, shadows, holds, .. } = exchange;
        batch.holds.extend(holds);
        let options = self.rules.for_route(request.as_ref().map_or("", |r| r.route()));
        let route = request.as_ref().map(|r| r.route().to_owned()).unwrap_or_default();
        // The secondary's differences in this exchange, when it was compared.
        // Its differences are also its own row's, so they are computed once.
        let mut secondary_found: Option<(&str, Vec<diff::Difference>)> =
            match (&request, &primary, shadows.iter().find(|s| s.role == Role::Secondary)) {
                (Some(_), Some(p), Some(secondary)) if p.error.is_none() && secondary.error.is_none() => {
                    Some((secondary.deployment.as_str(), diff::compare(p, secondary, options)))
                }
                _ => None,
            };
        let secondary: Option<BTreeSet<String>> =
            secondary_found.as_ref().map(|(_, found)| found.iter().map(|d| d.path.clone()).collect());
        let noisy = secondary.clone().unwrap_or_default();
        let mut outcomes = Vec::with_capacity(shadows.len());
        let mut diverged: Vec<&ResponseEvent> = Vec::new();
        for shadow in &shadows {
            let outcome = match (&request, &primary) {
                (None, _) => Outcome::MissingRequest,
                (_, None) => Outcome::MissingPrimary,
                (_, Some(p)) if p.error.is_some() => Outcome::PrimaryError,
                _ if shadow.error.is_some() => Outcome::ShadowError,
                _ => Outcome::Complete,
            };
            outcomes.push(outcome);
            let ts_ms = request.as_ref().map_or(shadow.timestamp_ms, |r| r.timestamp_ms);
            let ts = u32::try_from(ts_ms.max(0) / 1000).unwrap_or(u32::MAX);
            let method = request.as_ref().map(|r| r.method.clone()).unwrap_or_default();
            let found = match (&primary, outcome) {
                (Some(_), Outcome::Complete)
                    if secondary_found.as_ref().is_some_and(|(d, _)| *d == shadow.deployment) =>
                {
                    secondary_found.take().map(|(_, found)| found).unwrap_or_default()
                }
                (Some(p), Outcome::Complete) => diff::compare(p, shadow, options),
                _ => Vec::new(),
            };
            let primary_latency = primary.as_ref().map_or(0, |p| p.latency_us);
            let candidate = shadow.role == Role::Candidate;
            if let Some(secondary) = &secondary
                && candidate
                && outcome == Outcome::Complete
            {
                let paths = found.iter().map(|d| d.path.as_str());
                self.noise.observe(&route, &shadow.deployment, secondary.iter().map(String::as_str), paths);
            }
            let is_noise: Vec<bool> = found
                .iter()
                .map(|d| {
                    noisy.contains(&d.path) || (candidate && self.noise.explains(&route, &shadow.deployment, &d.path))
                })
                .collect();
            let noise = is_noise.iter().filter(|n| **n).count();
            if found.len() > noise && shadow.role == Role::Candidate {
                diverged.push(shadow);
            }
            batch.exchanges.push(ExchangeRow {
                ts,
                request_id: shadow.request_id.clone(),
                route: route.clone(),
                method,
                deployment: shadow.deployment.clone(),
                role: shadow.role.as_str().to_owned(),
                outcome: outcome.as_str().to_owned(),
                primary_status: primary.as_ref().map_or(0, status),
                shadow_status: status(shadow),
                primary_error: primary.as_ref().map_or("", error).to_owned(),
                shadow_error: error(shadow).to_owned(),
                primary_latency_us: u64::try_from(primary_latency).unwrap_or(0),
                shadow_latency_us: u64::try_from(shadow.latency_us).unwrap_or(0),
                latency_delta_us: if primary.is_some() { shadow.latency_us - primary_latency } else { 0 },
                status_differs: u8::from(found.iter().any(|d| d.kind == DiffKind::Status)),
                body_differs: u8::from(
                    found.iter().any(|d| d.kind != DiffKind::Status && !d.path.starts_with("header:")),
                ),
                differences: u32::try_from(found.len()).unwrap_or(u32::MAX),
                noise: u32::try_from(noise).unwrap_or(u32::MAX),
                stage: shadow.stage.clone().unwrap_or_default(),
            });
            batch.differences.extend(found.into_iter().zip(is_noise).map(|(d, noise)| DifferenceRow {
                ts,
                request_id: shadow.request_id.clone(),
                route: route.clone(),
                deployment: shadow.deployment.clone(),
                role: shadow.role.as_str().to_owned(),
                kind: d.kind.as_str().to_owned(),
                noise: u8::from(noise),
                path: d.path,
                primary_value: truncate(d.primary.unwrap_or_default(), max_value_bytes),
                shadow_value: truncate(d.shadow.unwrap_or_default(), max_value_bytes),
            }));
        }
        // Legs the mirror said it replays, that never arrived within the window.
        if let Some(first) = shadows.first() {
            let ts_ms = request.as_ref().map_or(first.timestamp_ms, |r| r.timestamp_ms);
            for leg in missing {
                outcomes.push(Outcome::MissingShadow);
                batch.exchanges.push(ExchangeRow {
                    ts: u32::try_from(ts_ms.max(0) / 1000).unwrap_or(u32::MAX),
                    request_id: first.request_id.clone(),
                    route: request.as_ref().map(|r| r.route().to_owned()).unwrap_or_default(),
                    method: request.as_ref().map(|r| r.method.clone()).unwrap_or_default(),
                    deployment: leg.deployment,
                    role: leg.role,
                    outcome: Outcome::MissingShadow.as_str().to_owned(),
                    primary_status: primary.as_ref().map_or(0, status),
                    shadow_status: 0,
                    primary_error: primary.as_ref().map_or("", error).to_owned(),
                    shadow_error: "missing".to_owned(),
                    primary_latency_us: primary.as_ref().map_or(0, |p| u64::try_from(p.latency_us).unwrap_or(0)),
                    shadow_latency_us: 0,
                    latency_delta_us: 0,
                    status_differs: 0,
                    body_differs: 0,
                    differences: 0,
                    noise: 0,
                    stage: first.stage.clone().unwrap_or_default(),
                });
            }
        }
        if let (Some(request), Some(primary)) = (&request, &primary)
            && !diverged.is_empty()
            && self.samples.take(request.route(), request.timestamp_ms)
        {
            for leg in std::iter::once(primary).chain(diverged) {
                batch.samples.push(sample(request, leg));
            }
        }
        outcomes
    }
}

fn sample(request: &RequestEvent, leg: &ResponseEvent) -> SampleRow {
    let body = diff::decoded_body(leg).unwrap_or(std::borrow::Cow::Borrowed(leg.body.bytes.as_slice()));
    SampleRow {
        ts: u32::try_from(request.timestamp_ms.max(0) / 1000).unwrap_or(u32::MAX),
        request_id: leg.request_id.clone(),
        route: request.route().to_owned(),
        method: request.method.clone(),
        deployment: leg.deployment.clone(),
        role: leg.role.as_str().to_owned(),
        status: status(leg),
        content_type: header_value(&leg.headers, "content-type")
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default(),
        headers: leg.headers.iter().map(|h| format!("{}: {}\n", h.name, String::from_utf8_lossy(&h.value))).collect(),
        body: String::from_utf8_lossy(&body).into_owned(),
        body_length: u64::try_from(leg.body.length).unwrap_or(0),
        truncated: u8::from(leg.body.truncated),
    }
}

/// The diff rules of each route, compiled once.
#[derive(Debug, Default)]
pub(crate) struct RouteRules {
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

fn status(response: &ResponseEvent) -> u16 {
    response.status.and_then(|s| u16::try_from(s).ok()).unwrap_or(0)
}

fn error(response: &ResponseEvent) -> &'static str {
    response.error.map_or("", ErrorKind::as_str)
}

/// Cuts `value` to at most `max` bytes on a character boundary, marking the cut with `…`.
fn truncate(mut value: String, max: usize) -> String {
    if value.len() <= max {
        return value;
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    value.truncate(end);
    value.push('…');
    value
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
            expected_legs: expected
                .iter()
                .map(|d| ExpectedLeg { role: "candidate".into(), deployment: (*d).into() })
                .collect(),
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

    #[test]
    fn truncates_on_char_boundaries() {
        assert_eq!(truncate("short".into(), 16), "short");
        let cut = truncate("ééééééééééé".into(), 8);
        assert!(cut.len() <= 8 && cut.ends_with('…'), "{cut}");
    }
}

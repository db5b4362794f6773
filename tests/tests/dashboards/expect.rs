//! What each ClickHouse panel must return: its columns, and on the fixture, its values.

use std::collections::{BTreeMap, BTreeSet};

use shadowdiff_store::ExchangeRow;

use super::fixture::{Counts, Fixture, Selection, Table, bucket, is_new_error, latency_ratio, ratio};

/// The columns each ClickHouse panel must return. A panel not listed fails the test.
pub(crate) const PANEL_COLUMNS: &[(&str, &str, &[&str])] = &[
    ("shadowdiff-overview", "Divergence rate (noise excluded)", &["time", "candidate", "route", "divergence_rate"]),
    ("shadowdiff-overview", "Noise rate", &["time", "candidate", "route", "noise_rate"]),
    ("shadowdiff-overview", "New-error rate", &["time", "candidate", "route", "new_error_rate"]),
    (
        "shadowdiff-overview",
        "Candidates by route",
        &[
            "candidate",
            "route",
            "comparisons",
            "compared",
            "diverged",
            "divergence_rate",
            "noise_rate",
            "new_errors",
            "new_error_rate",
        ],
    ),
    ("shadowdiff-overview", "Comparisons by outcome", &["time", "candidate", "outcome", "comparisons"]),
    ("shadowdiff-overview", "Sampled divergent bodies", &["time", "candidate", "sampled"]),
    (
        "shadowdiff-overview",
        "Latency: primary vs candidate",
        &[
            "time",
            "candidate",
            "primary_p50_ms",
            "primary_p95_ms",
            "primary_p99_ms",
            "candidate_p50_ms",
            "candidate_p95_ms",
            "candidate_p99_ms",
        ],
    ),
    (
        "shadowdiff-overview",
        "Latency delta vs primary, with the secondary as A/A baseline",
        &["time", "leg", "p50_delta", "p95_delta", "p99_delta"],
    ),
    (
        "shadowdiff-overview",
        "Latency over the range",
        &["leg", "compared", "primary_p95_ms", "shadow_p95_ms", "p50_delta", "p95_delta", "p99_delta"],
    ),
    ("shadowdiff-overview", "Stage history", &["time", "candidate", "current_stage"]),
    ("shadowdiff-overview", "Verdict history", &["time", "gate", "verdict"]),
    (
        "shadowdiff-route",
        "Divergence, noise and new-error rate",
        &["time", "divergence_rate", "noise_rate", "new_error_rate"],
    ),
    (
        "shadowdiff-route",
        "Latency: primary vs candidate",
        &["time", "primary_p50_ms", "primary_p95_ms", "candidate_p50_ms", "candidate_p95_ms"],
    ),
    (
        "shadowdiff-route",
        "Top differing paths (raw vs noise)",
        &["path", "kind", "raw", "noise_count", "counted", "requests"],
    ),
    ("shadowdiff-route", "Difference kinds", &["kind", "counted", "noise_count"]),
    (
        "shadowdiff-route",
        "Recent divergent requests",
        &["ts", "request_id", "method", "primary_status", "shadow_status", "counted_differences", "noise", "stage"],
    ),
    (
        "shadowdiff-route",
        "Recent new errors",
        &["ts", "request_id", "method", "outcome", "primary_status", "shadow_status", "shadow_error"],
    ),
    ("shadowdiff-route", "Sampled bodies", &["ts", "request_id", "status", "content_type", "body_length", "truncated"]),
];

/// The values a panel must show on the fixture, where the fixture fixes them.
pub(crate) fn check_values(
    fx: &Fixture,
    dashboard: &str,
    title: &str,
    sel: &Selection,
    t: &Table,
) -> Result<(), String> {
    let same = |what: &str, got: Vec<Vec<String>>, mut want: Vec<Vec<String>>| {
        want.sort();
        if got == want { Ok(()) } else { Err(format!("{what}: got {got:?}, want {want:?}")) }
    };
    let by_bucket = |key: &dyn Fn(&ExchangeRow) -> Vec<String>| {
        let mut groups: BTreeMap<(u32, Vec<String>), Counts> = BTreeMap::new();
        for r in fx.candidates(sel) {
            groups.entry((bucket(r.ts), key(r))).or_default().add(r);
        }
        groups.into_iter().map(|((_, k), c)| (k, c)).collect::<Vec<_>>()
    };
    let cand_route = |r: &ExchangeRow| vec![r.deployment.clone(), r.route.clone()];
    let rate_rows = |num: fn(&Counts) -> u64, den: fn(&Counts) -> u64| -> Vec<Vec<String>> {
        by_bucket(&cand_route)
            .into_iter()
            .filter(|(_, c)| den(c) > 0)
            .map(|(mut k, c)| {
                k.push(ratio(num(&c), den(&c)));
                k
            })
            .collect()
    };
    let ratios_hold = |leg_of: &dyn Fn(usize) -> String, pairs: &[(&str, &str)]| -> Result<(), String> {
        for row in 0..t.rows.len() {
            let want = latency_ratio(&leg_of(row));
            for (shadow, primary) in pairs {
                let got = t.number(row, shadow) / t.number(row, primary);
                if (got - want).abs() > 1e-6 {
                    return Err(format!("row {row}: {shadow} / {primary} = {got}, want {want}"));
                }
            }
        }
        Ok(())
    };
    let deltas_hold = |row: usize, leg: &str| -> Result<(), String> {
        let deployment = leg.rsplit(' ').next().unwrap();
        for col in ["p50_delta", "p95_delta", "p99_delta"] {
            let (got, want) = (t.number(row, col), latency_ratio(deployment) - 1.0);
            if (got - want).abs() > 1e-6 {
                return Err(format!("{leg} {col} = {got}, want {want}"));
            }
        }
        Ok(())
    };
    let paired_legs = || {
        let ids: BTreeSet<&str> =
            fx.candidates(sel).filter(|r| r.outcome == "complete").map(|r| r.request_id.as_str()).collect();
        let mut legs: BTreeMap<String, u64> = BTreeMap::new();
        for r in fx.batch.exchanges.iter().filter(|r| r.outcome == "complete" && ids.contains(r.request_id.as_str())) {
            if r.role == "secondary" || sel.matches(&r.deployment, &r.route) {
                *legs.entry(format!("{} {}", r.role, r.deployment)).or_default() += 1;
            }
        }
        legs
    };
    let route_rows =
        || fx.batch.exchanges.iter().filter(|r| r.role == "candidate" && sel.matches(&r.deployment, &r.route));
    let route_differences =
        || fx.batch.differences.iter().filter(|d| d.role == "candidate" && sel.matches(&d.deployment, &d.route));

    match (dashboard, title) {
        ("shadowdiff-overview", "Divergence rate (noise excluded)") => same(
            title,
            t.project(&["candidate", "route", "divergence_rate"]),
            rate_rows(|c| c.diverged, |c| c.compared),
        ),
        ("shadowdiff-overview", "Noise rate") => {
            same(title, t.project(&["candidate", "route", "noise_rate"]), rate_rows(|c| c.noisy, |c| c.compared))
        }
        ("shadowdiff-overview", "New-error rate") => same(
            title,
            t.project(&["candidate", "route", "new_error_rate"]),
            rate_rows(|c| c.new_errors, |c| c.answered),
        ),
        ("shadowdiff-overview", "Candidates by route") => {
            let mut groups: BTreeMap<Vec<String>, Counts> = BTreeMap::new();
            for r in fx.candidates(sel) {
                groups.entry(cand_route(r)).or_default().add(r);
            }
            let want = groups
                .into_iter()
                .map(|(mut k, c)| {
                    k.extend([c.comparisons, c.compared, c.diverged, c.new_errors].map(|n| n.to_string()));
                    k
                })
                .collect();
            same(title, t.project(&["candidate", "route", "comparisons", "compared", "diverged", "new_errors"]), want)
        }
        ("shadowdiff-overview", "Comparisons by outcome") => {
            let want = by_bucket(&|r| vec![r.deployment.clone(), r.outcome.clone()])
                .into_iter()
                .map(|(mut k, c)| {
                    k.push(c.comparisons.to_string());
                    k
                })
                .collect();
            same(title, t.project(&["candidate", "outcome", "comparisons"]), want)
        }
        ("shadowdiff-overview", "Sampled divergent bodies") => {
            let mut groups: BTreeMap<(u32, String), BTreeSet<&str>> = BTreeMap::new();
            for s in fx.batch.samples.iter().filter(|s| s.role == "candidate" && sel.matches(&s.deployment, &s.route)) {
                groups.entry((bucket(s.ts), s.deployment.clone())).or_default().insert(&s.request_id);
            }
            let want = groups.into_iter().map(|((_, d), ids)| vec![d, ids.len().to_string()]).collect();
            same(title, t.project(&["candidate", "sampled"]), want)
        }
        ("shadowdiff-overview", "Latency: primary vs candidate") => ratios_hold(
            &|row| t.cell(row, "candidate"),
            &[
                ("candidate_p50_ms", "primary_p50_ms"),
                ("candidate_p95_ms", "primary_p95_ms"),
                ("candidate_p99_ms", "primary_p99_ms"),
            ],
        ),
        ("shadowdiff-overview", "Latency delta vs primary, with the secondary as A/A baseline") => {
            let legs: BTreeSet<String> = (0..t.rows.len()).map(|r| t.cell(r, "leg")).collect();
            let want: BTreeSet<String> = paired_legs().into_keys().collect();
            if legs != want {
                return Err(format!("legs {legs:?}, want {want:?}"));
            }
            (0..t.rows.len()).try_for_each(|row| deltas_hold(row, &t.cell(row, "leg")))
        }
        ("shadowdiff-overview", "Latency over the range") => {
            let want = paired_legs().into_iter().map(|(leg, n)| vec![leg, n.to_string()]).collect();
            same(title, t.project(&["leg", "compared"]), want)?;
            (0..t.rows.len()).try_for_each(|row| deltas_hold(row, &t.cell(row, "leg")))
        }
        ("shadowdiff-overview", "Stage history") => {
            let got: BTreeSet<Vec<String>> = t.project(&["candidate", "current_stage"]).into_iter().collect();
            // A profile's stage is not per route: the panel ignores the route variable.
            let sel = Selection { routes: None, ..sel.clone() };
            let want: BTreeSet<Vec<String>> =
                fx.candidates(&sel).map(|r| vec![r.deployment.clone(), r.stage.clone()]).collect();
            if got == want { Ok(()) } else { Err(format!("stages {got:?}, want {want:?}")) }
        }
        ("shadowdiff-overview", "Verdict history") => {
            let got: BTreeSet<Vec<String>> = t.project(&["gate", "verdict"]).into_iter().collect();
            let sel = Selection { routes: None, ..sel.clone() };
            let want: BTreeSet<Vec<String>> = fx
                .verdicts
                .iter()
                .filter(|v| sel.matches(&v.candidate, ""))
                .map(|v| vec![format!("{} @ {}", v.candidate, v.stage), v.verdict.clone()])
                .collect();
            if got == want { Ok(()) } else { Err(format!("verdicts {got:?}, want {want:?}")) }
        }
        ("shadowdiff-route", "Divergence, noise and new-error rate") => {
            let want = by_bucket(&|_| Vec::new())
                .into_iter()
                .filter(|(_, c)| c.compared > 0)
                .map(|(_, c)| {
                    vec![ratio(c.diverged, c.compared), ratio(c.noisy, c.compared), ratio(c.new_errors, c.answered)]
                })
                .collect();
            same(title, t.project(&["divergence_rate", "noise_rate", "new_error_rate"]), want)
        }
        ("shadowdiff-route", "Latency: primary vs candidate") => ratios_hold(
            &|_| sel.candidates.as_ref().unwrap()[0].clone(),
            &[("candidate_p50_ms", "primary_p50_ms"), ("candidate_p95_ms", "primary_p95_ms")],
        ),
        ("shadowdiff-route", "Top differing paths (raw vs noise)") => {
            let mut groups: BTreeMap<(String, String), (u64, u64, BTreeSet<&str>)> = BTreeMap::new();
            for d in route_differences() {
                let g = groups.entry((d.path.clone(), d.kind.clone())).or_default();
                (g.0, g.1) = (g.0 + 1, g.1 + u64::from(d.noise));
                g.2.insert(&d.request_id);
            }
            let want = groups
                .into_iter()
                .map(|((path, kind), (raw, noise, ids))| {
                    vec![
                        path,
                        kind,
                        raw.to_string(),
                        noise.to_string(),
                        (raw - noise).to_string(),
                        ids.len().to_string(),
                    ]
                })
                .collect();
            same(title, t.project(&["path", "kind", "raw", "noise_count", "counted", "requests"]), want)
        }
        ("shadowdiff-route", "Difference kinds") => {
            let mut groups: BTreeMap<String, (u64, u64)> = BTreeMap::new();
            for d in route_differences() {
                let g = groups.entry(d.kind.clone()).or_default();
                (g.0, g.1) = (g.0 + u64::from(d.noise == 0), g.1 + u64::from(d.noise));
            }
            let want = groups.into_iter().map(|(k, (c, n))| vec![k, c.to_string(), n.to_string()]).collect();
            same(title, t.project(&["kind", "counted", "noise_count"]), want)
        }
        ("shadowdiff-route", "Recent divergent requests") => {
            let want = route_rows()
                .filter(|r| r.outcome == "complete" && r.differences > r.noise)
                .map(|r| vec![r.request_id.clone(), (r.differences - r.noise).to_string(), r.noise.to_string()])
                .collect();
            same(title, t.project(&["request_id", "counted_differences", "noise"]), want)
        }
        ("shadowdiff-route", "Recent new errors") => {
            let want = route_rows()
                .filter(|r| is_new_error(r))
                .map(|r| {
                    vec![r.request_id.clone(), r.outcome.clone(), r.shadow_status.to_string(), r.shadow_error.clone()]
                })
                .collect();
            same(title, t.project(&["request_id", "outcome", "shadow_status", "shadow_error"]), want)
        }
        ("shadowdiff-route", "Sampled bodies") => {
            let want = fx
                .batch
                .samples
                .iter()
                .filter(|s| s.role == "candidate" && sel.matches(&s.deployment, &s.route))
                .map(|s| vec![s.request_id.clone(), s.status.to_string()])
                .collect();
            same(title, t.project(&["request_id", "status"]), want)
        }
        _ => Ok(()),
    }
}

//! A verdict report as tables: the verdict and its reasons, every criterion, paired latency
//! with the A/A baseline, the worst routes and the paths that differ most.

use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

use reqwest::Url;
use shadowdiff_verdict::{Criterion, Decision, Rate, VerdictReport};

use crate::style::{self, DIM, HEADER, paint};
use crate::table::{Align, Cell, Table};

/// Ignore-rule suggestions: the noisy paths, then the config to paste.
pub fn suggestions(suggestions: &shadowdiff_verdict::suggest::Suggestions) -> String {
    if suggestions.paths.is_empty() {
        return format!(
            "{}\n",
            paint(DIM, "nothing to suggest: no path was classified as noise often enough in this window")
        );
    }
    let mut table = Table::new(&[
        ("ROUTE", Align::Left),
        ("PATH", Align::Left),
        ("KIND", Align::Left),
        ("NOISE", Align::Right),
        ("EXAMPLE", Align::Left),
    ]);
    for path in &suggestions.paths {
        table.row(vec![
            path.route.clone().into(),
            path.path.clone().into(),
            path.kind.clone().into(),
            path.count.to_string().into(),
            path.example.clone().into(),
        ]);
    }
    format!(
        "{}\n{}\n{}\n{}",
        paint(HEADER, "Paths the noise model keeps classifying as noise"),
        table.render("  "),
        paint(DIM, "# Correlator config to consider (merge with a route's existing rules); never applied for you:"),
        suggestions.toml
    )
}

/// Accepted paths and where each stands.
pub fn acceptances(listed: &[shadowdiff_verdict::accept::Listed]) -> String {
    if listed.is_empty() {
        return format!("{}\n", paint(DIM, "no accepted paths"));
    }
    let mut table = Table::new(&[
        ("STATE", Align::Left),
        ("ROUTE", Align::Left),
        ("PATH", Align::Left),
        ("BY", Align::Left),
        ("AT", Align::Left),
        ("EXPIRES", Align::Left),
        ("REASON", Align::Left),
    ]);
    for l in listed {
        let a = &l.acceptance;
        let state = match l.state {
            shadowdiff_verdict::accept::State::Active => Cell::styled(style::decision(Decision::Pass), "active"),
            shadowdiff_verdict::accept::State::Expired => Cell::styled(DIM, "expired"),
            shadowdiff_verdict::accept::State::Revoked => Cell::styled(DIM, "revoked"),
        };
        table.row(vec![
            state,
            a.route.clone().into(),
            a.path.clone().into(),
            a.actor.clone().into(),
            unix(a.at).into(),
            if a.expires == 0 { "never".to_owned() } else { unix(a.expires) }.into(),
            a.reason.replace('\n', " ").into(),
        ]);
    }
    table.render("")
}

fn unix(secs: u32) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(u64::from(secs))).to_string()
}

/// The whole report, styled. `page` is the drill-down page's base (`…/exchanges/`).
pub fn render(report: &VerdictReport, page: &Url) -> String {
    let mut out = String::new();
    let stage = format!("stage {}", report.stage);
    let at = unix(report.since);
    let since = match &report.revision {
        Some(revision) => format!("release {revision}, since {at}"),
        None => format!("since {at}"),
    };
    let verdict = paint(style::decision(report.verdict), report.verdict.as_str().to_uppercase());
    let _ = writeln!(out, "{} · {stage} · {since}: {verdict}", paint(HEADER, &report.candidate));
    for reason in &report.reasons {
        let _ = writeln!(out, "  - {reason}");
    }
    let _ = writeln!(
        out,
        "{}",
        paint(
            DIM,
            format!(
                "{} samples: {} compared ({} noise only), {} incomplete, over {}s",
                report.samples, report.compared, report.noise_only, report.incomplete, report.span_secs
            )
        )
    );

    out.push('\n');
    out.push_str(&criteria(&report.criteria).render(""));

    out.push('\n');
    let _ = writeln!(out, "{}", paint(HEADER, "Latency (ms, the same requests on both sides)"));
    out.push_str(&latency(report).render("  "));
    let baseline = match report.latency.secondary_p95_delta {
        Some(delta) => format!(
            "A/A baseline: the secondary's p95 is {} vs the primary's on the same requests; the gate judges the candidate against the secondary",
            signed_pct(delta)
        ),
        None => "A/A baseline: no secondary leg in this window".to_owned(),
    };
    let _ = writeln!(out, "  {}", paint(DIM, baseline));
    let l = &report.latency;
    for shift in [l.p50_shift, l.p95_shift].into_iter().flatten() {
        let _ = writeln!(
            out,
            "  {}",
            paint(
                DIM,
                format!(
                    "p{:.0} shift {} (interval {} to {}) on {} paired requests",
                    shift.quantile * 100.0,
                    signed_pct(shift.observed),
                    signed_pct(shift.lower),
                    signed_pct(shift.upper),
                    l.pairs
                )
            )
        );
    }

    out.push('\n');
    let _ = writeln!(out, "{}", paint(HEADER, "Worst routes"));
    if report.routes.is_empty() {
        let _ = writeln!(out, "  {}", paint(DIM, "no comparisons in this window"));
    } else {
        let mut routes = Table::new(&[
            ("ROUTE", Align::Left),
            ("VERDICT", Align::Left),
            ("SAMPLES", Align::Right),
            ("DIVERGED", Align::Right),
            ("INTERVAL", Align::Left),
            ("NEW ERRORS", Align::Right),
        ]);
        for route in &report.routes {
            routes.row(vec![
                route.route.clone().into(),
                Cell::styled(style::decision(route.verdict), route.verdict.as_str()),
                route.samples.to_string().into(),
                rate(&route.divergence).into(),
                interval(route.divergence.lower, route.divergence.upper).into(),
                format!("{}/{}", route.new_errors.count, route.new_errors.of).into(),
            ]);
        }
        out.push_str(&routes.render("  "));
    }

    out.push('\n');
    let _ = writeln!(out, "{}", paint(HEADER, "Top differing paths (noise excluded)"));
    if report.top_paths.is_empty() {
        let _ = writeln!(out, "  {}", paint(DIM, "none"));
    } else {
        let mut paths = Table::new(&[
            ("COUNT", Align::Right),
            ("ROUTE", Align::Left),
            ("KIND", Align::Left),
            ("PATH", Align::Left),
        ]);
        for path in &report.top_paths {
            paths.row(vec![
                path.count.to_string().into(),
                path.route.clone().into(),
                path.kind.clone().into(),
                path.path.clone().into(),
            ]);
        }
        out.push_str(&paths.render("  "));
    }

    if !report.accepted.is_empty() {
        out.push('\n');
        let _ = writeln!(out, "{}", paint(HEADER, "Accepted differences (left out of every criterion)"));
        let mut accepted = Table::new(&[
            ("COUNT", Align::Right),
            ("ROUTE", Align::Left),
            ("KIND", Align::Left),
            ("PATH", Align::Left),
            ("BY", Align::Left),
            ("REASON", Align::Left),
        ]);
        for path in &report.accepted {
            accepted.row(vec![
                path.candidate.to_string().into(),
                path.route.clone().into(),
                path.kind.clone().into(),
                Cell::styled(DIM, path.path.clone()),
                path.acceptance.actor.clone().into(),
                path.acceptance.reason.replace('\n', " ").into(),
            ]);
        }
        out.push_str(&accepted.render("  "));
    }

    out.push('\n');
    let _ = writeln!(
        out,
        "{}",
        paint(
            DIM,
            format!(
                "One request in detail: shadowctl diff <request-id> --candidate {}, or {page}<request-id>?candidate={}",
                report.candidate, report.candidate
            )
        )
    );
    out
}

fn criteria(criteria: &[Criterion]) -> Table {
    let mut table = Table::new(&[
        ("CRITERION", Align::Left),
        ("STATUS", Align::Left),
        ("OBSERVED", Align::Right),
        ("INTERVAL", Align::Left),
        ("THRESHOLD", Align::Left),
        ("REASON", Align::Left),
    ]);
    for c in criteria {
        let (observed, threshold) = observed_and_threshold(c);
        let interval = match (c.lower, c.upper) {
            (Some(lower), Some(upper)) => interval(lower, upper),
            _ => "—".to_owned(),
        };
        table.row(vec![
            c.name.clone().into(),
            Cell::styled(style::decision(c.status), c.status.as_str()),
            observed.into(),
            interval.into(),
            threshold.into(),
            Cell::styled(if c.status == Decision::Pass { DIM } else { style::PLAIN }, c.reason.clone()),
        ]);
    }
    table
}

/// A criterion's numbers in its own unit; the names are the verdict API's.
fn observed_and_threshold(c: &Criterion) -> (String, String) {
    match c.name.as_str() {
        "samples" | "new_errors" => (format!("{:.0}", c.observed), format!("{} {:.0}", bound(c), c.threshold)),
        "duration" => (format!("{:.0}s", c.observed), format!("{} {:.0}s", bound(c), c.threshold)),
        "divergence_rate" => (pct(c.observed), format!("{} {}", bound(c), pct(c.threshold))),
        "latency_p50_delta" | "latency_p95_delta" => {
            (signed_pct(c.observed), format!("{} {}", bound(c), signed_pct(c.threshold)))
        }
        _ => (format!("{}", c.observed), format!("{}", c.threshold)),
    }
}

/// Minimums for the amount of evidence, maximums for everything else.
fn bound(c: &Criterion) -> &'static str {
    if matches!(c.name.as_str(), "samples" | "duration") { "≥" } else { "≤" }
}

fn latency(report: &VerdictReport) -> Table {
    let mut table = Table::new(&[
        ("", Align::Left),
        ("PRIMARY", Align::Right),
        ("SECONDARY", Align::Right),
        ("CANDIDATE", Align::Right),
        ("VS PRIMARY", Align::Right),
        ("VS SECONDARY", Align::Right),
    ]);
    let l = &report.latency;
    let s = l.secondary;
    let rows = [
        ("p50", l.primary.p50, s.map(|s| s.p50), l.candidate.p50),
        ("p95", l.primary.p95, s.map(|s| s.p95), l.candidate.p95),
        ("p99", l.primary.p99, s.map(|s| s.p99), l.candidate.p99),
    ];
    let delta = |candidate: f64, base: f64| {
        if base > 0.0 { signed_pct((candidate - base) / base) } else { "—".to_owned() }
    };
    for (name, primary, secondary, candidate) in rows {
        table.row(vec![
            Cell::styled(HEADER, name),
            format!("{primary:.2}").into(),
            secondary.map_or("—".to_owned(), |s| format!("{s:.2}")).into(),
            format!("{candidate:.2}").into(),
            delta(candidate, primary).into(),
            secondary.map_or("—".to_owned(), |s| delta(candidate, s)).into(),
        ]);
    }
    table
}

/// `3/100 (3.00%)`.
pub fn rate(rate: &Rate) -> String {
    format!("{}/{} ({})", rate.count, rate.of, pct(rate.rate))
}

pub fn interval(lower: f64, upper: f64) -> String {
    format!("{}–{}", pct(lower), pct(upper))
}

pub fn pct(fraction: f64) -> String {
    format!("{:.2}%", fraction * 100.0)
}

pub fn signed_pct(fraction: f64) -> String {
    format!("{:+.2}%", fraction * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_follow_the_criterion() {
        let c = |name: &str, observed, threshold| Criterion {
            name: name.to_owned(),
            status: Decision::Pass,
            observed,
            lower: None,
            upper: None,
            threshold,
            reason: String::new(),
        };
        assert_eq!(observed_and_threshold(&c("samples", 412.0, 400.0)), ("412".into(), "≥ 400".into()));
        assert_eq!(observed_and_threshold(&c("duration", 75.0, 60.0)), ("75s".into(), "≥ 60s".into()));
        assert_eq!(observed_and_threshold(&c("divergence_rate", 0.3, 0.01)), ("30.00%".into(), "≤ 1.00%".into()));
        assert_eq!(observed_and_threshold(&c("latency_p95_delta", -0.012, 0.05)), ("-1.20%".into(), "≤ +5.00%".into()));
        assert_eq!(observed_and_threshold(&c("new_errors", 2.0, 0.0)), ("2".into(), "≤ 0".into()));
    }
}

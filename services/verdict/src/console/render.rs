//! The console's pages, server-rendered with `maud`, which escapes every value it
//! interpolates. No script: links and plain GET forms only.

use std::collections::HashMap;
use std::time::{Duration, UNIX_EPOCH};

use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::charts::{self, BLUE_, Band, GREY, Line, ORANGE, RED_, TimeChart};
use super::comparisons::{self, Filters};
use super::profiles::Refusal;
use super::{Given, Trends};
use crate::evaluate::Criterion;
use crate::gate::STAGES;
use crate::gauges::Current;
use crate::query::Candidate;
use crate::query::{Bucket, SecondaryBucket};
use crate::report::VerdictReport;
use crate::suggest::NoisyPath;

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222}\
nav{display:flex;align-items:center}nav a{margin-right:1rem}form.sign-out{margin:0 0 0 auto}\
table{border-collapse:collapse;margin:.5rem 0 1.5rem}td,th{border:1px solid #ccc;padding:.25rem .5rem;text-align:left;vertical-align:top}\
.pass{color:#176f2c;font-weight:600}.fail{color:#b3261e;font-weight:600}.inconclusive{color:#8a5a00;font-weight:600}\
tr.accepted,tr.noise{color:#888}form.accept{margin:0;display:flex;gap:.25rem}td.spark{padding:0 .25rem}figure{margin:.5rem 0}td.num{text-align:right;font-variant-numeric:tabular-nums}\
tr.divergence td{background:#fff4f4}.bodies{display:grid;grid-template-columns:1fr 1fr;gap:1rem}\
pre{background:#f7f7f7;padding:.5rem;overflow:auto;font-size:.85rem;margin:0}\
pre span{display:block;white-space:pre}mark.removed{background:#ffd7d5}mark.changed{background:#ccffd8}\
mark{display:block;white-space:pre}\
.stages a{margin-right:.5rem}.stages a.current{font-weight:700;text-decoration:none}.problem{color:#b3261e}section.profile{border-top:1px solid #ccc;margin-top:1rem}form{margin:.5rem 0}form.stage{display:inline}fieldset{margin:.5rem 0}div.target{margin:.25rem 0}";

pub(super) fn page(title: &str, body: Markup) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { "shadowdiff · " (title) }
                style { (PreEscaped(STYLE)) }
            }
            body {
                nav {
                    a href="/" { "Candidates" } a href="/profiles" { "Profiles" }
                    form.sign-out method="post" action="/sign-out" { button type="submit" { "Sign out" } }
                }
                (body)
            }
        }
    }
    .into_string()
}

fn decision(verdict: &str) -> Markup {
    html! { span class=(verdict) { (verdict) } }
}

fn at(secs: u32) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(u64::from(secs))).to_string()
}

fn pct(fraction: f64) -> String {
    format!("{:.2}%", fraction * 100.0)
}

/// `text` percent-encoded as one path segment: form encoding, whose `+` for a space means
/// a plus in a path (a literal `+` it already writes as `%2B`).
pub(super) fn segment(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>().replace('+', "%20")
}

/// `/candidates/{name}`, the name one path segment.
pub(super) fn candidate_href(candidate: &str, stage: Option<&str>) -> String {
    let name = segment(candidate);
    match stage {
        Some(stage) => format!("/candidates/{name}?stage={stage}"),
        None => format!("/candidates/{name}"),
    }
}

/// `/candidates/{name}?stage=&since=`, leaving out an empty `since`.
fn candidate_link(name: &str, stage: &str, since: &str) -> String {
    let base = candidate_href(name, Some(stage));
    if since.is_empty() {
        base
    } else {
        let since: String = form_urlencoded::byte_serialize(since.as_bytes()).collect();
        format!("{base}&since={since}")
    }
}

fn exchange_href(request_id: &str, candidate: &str) -> String {
    let candidate: String = form_urlencoded::byte_serialize(candidate.as_bytes()).collect();
    format!("/exchanges/{}?candidate={candidate}", segment(request_id))
}

/// A candidate's trend lines from the timeline's buckets: divergence rate, new errors, and the
/// p50 latency shift against the primary.
struct Sparks {
    divergence: Vec<(f64, f64)>,
    errors: Vec<(f64, f64)>,
    latency: Vec<(f64, f64)>,
}

impl Sparks {
    fn of(candidate: &str, trends: &Trends, buckets: &[Bucket]) -> Self {
        let mine = || buckets.iter().filter(move |b| b.deployment == candidate);
        Self {
            divergence: mine()
                .filter(|b| b.compared > 0)
                .map(|b| (trends.at(b.bucket), ratio(b.diverged, b.compared)))
                .collect(),
            errors: mine().map(|b| (trends.at(b.bucket), count(b.new_errors))).collect(),
            latency: mine()
                .filter_map(|b| match (b.primary.first(), b.candidate.first()) {
                    (Some(&p), Some(&c)) if p > 0.0 && b.compared > 0 => Some((trends.at(b.bucket), (c - p) / p)),
                    _ => None,
                })
                .collect(),
        }
    }
}

#[expect(clippy::cast_precision_loss, reason = "counts far below 2^52")]
fn ratio(part: u64, whole: u64) -> f64 {
    part as f64 / whole.max(1) as f64
}

#[expect(clippy::cast_precision_loss, reason = "counts far below 2^52")]
fn count(n: u64) -> f64 {
    n as f64
}

fn svg(svg: String) -> Markup {
    PreEscaped(svg)
}

pub(super) fn overview(
    listed: &[Candidate],
    judged: &HashMap<String, Current>,
    trends: &Trends,
    buckets: &[Bucket],
) -> String {
    page(
        "candidates",
        html! {
            h1 { "Candidates" }
            p { "Every candidate with comparisons since " (at(trends.since)) ": its verdict now, at the stage its CD \
                 system last asked about (shadow until one asks), judged every few seconds in the background, and \
                 the last verdict a CD system or shadowctl was given. The lines run over the window: the share of \
                 comparisons diverging (noise excluded), new errors, and the p50 latency shift against the primary." }
            @if listed.is_empty() {
                p #empty { "No candidate has comparisons in this window." }
            } @else {
                table #candidates {
                    tr { th { "candidate" } th { "comparisons" } th { "latest comparison" } th { "stage" } th { "verdict now" }
                         th { "why" } th { "last given" } th { "divergence" } th { "new errors" } th { "latency p50" } }
                    @for c in listed {
                        @let sparks = Sparks::of(&c.candidate, trends, buckets);
                        @let now = judged.get(&c.candidate);
                        tr {
                            td { a href=(candidate_href(&c.candidate, None)) { (c.candidate) } }
                            td.num { (c.comparisons) }
                            td { (at(c.last)) }
                            @match now {
                                Some(now) => {
                                    td { (now.stage) }
                                    td.now { (decision(now.verdict.as_str())) br; small { "as of " (at(now.at)) } }
                                    td { @for reason in &now.reasons { div { (reason) } } }
                                }
                                None => { td { (if c.stage.is_empty() { "shadow" } else { &c.stage }) } td.now { "not judged yet" } td {} }
                            }
                            td.given { @if c.verdict.is_empty() { "none yet" } @else {
                                (decision(&c.verdict)) " at " (c.stage) br; small { (at(c.judged)) }
                            } }
                            td.spark { (svg(charts::sparkline(&sparks.divergence, trends.span(), BLUE_))) }
                            td.spark { (svg(charts::sparkline(&sparks.errors, trends.span(), RED_))) }
                            td.spark { (svg(charts::sparkline(&sparks.latency, trends.span(), ORANGE))) }
                        }
                    }
                }
            }
        },
    )
}

/// What a candidate page's charts are drawn from.
pub(super) struct Charts<'a> {
    pub(super) trends: Trends,
    pub(super) buckets: &'a [Bucket],
    pub(super) secondary: &'a [SecondaryBucket],
}

impl Charts<'_> {
    fn render(&self, limit: f64) -> Markup {
        let t = &self.trends;
        let compared = || self.buckets.iter().filter(|b| b.compared > 0);
        let band: Band = compared()
            .map(|b| {
                let rate = crate::evaluate::Rate::new(b.diverged, b.compared);
                (t.at(b.bucket), rate.lower, rate.upper)
            })
            .collect();
        let divergence = TimeChart {
            caption: "Divergence (noise excluded), with its 95% interval",
            span: t.span(),
            y_label: |v| format!("{:.1}%", v * 100.0),
            band: Some((band, BLUE_)),
            lines: vec![Line {
                label: "candidate",
                color: BLUE_,
                points: compared().map(|b| (t.at(b.bucket), ratio(b.diverged, b.compared))).collect(),
            }],
            limit: Some(limit),
        };
        let errors = TimeChart {
            caption: "New errors per bucket",
            span: t.span(),
            y_label: |v| if v.fract() == 0.0 { format!("{v:.0}") } else { format!("{v:.1}") },
            band: None,
            lines: vec![Line {
                label: "new errors",
                color: RED_,
                points: self.buckets.iter().map(|b| (t.at(b.bucket), count(b.new_errors))).collect(),
            }],
            limit: None,
        };
        let quantile = |values: &[f64], i: usize| values.get(i).copied();
        let line = |label, color, i: usize, of: &dyn Fn(&Bucket) -> &[f64]| Line {
            label,
            color,
            points: compared().filter_map(|b| Some((t.at(b.bucket), quantile(of(b), i)?))).collect(),
        };
        let secondary = |i: usize| {
            self.secondary
                .iter()
                .filter_map(move |b| Some((t.at(b.bucket), quantile(&b.secondary, i)?)))
                .collect::<Vec<_>>()
        };
        let mut latency_lines = vec![
            line("primary p50", GREY, 0, &|b| &b.primary),
            line("primary p95", GREY, 1, &|b| &b.primary),
            line("candidate p50", BLUE_, 0, &|b| &b.candidate),
            line("candidate p95", BLUE_, 1, &|b| &b.candidate),
        ];
        if !self.secondary.is_empty() {
            latency_lines.push(Line { label: "secondary p50", color: ORANGE, points: secondary(0) });
            latency_lines.push(Line { label: "secondary p95", color: ORANGE, points: secondary(1) });
        }
        let latency = TimeChart {
            caption: "Latency (ms): primary, secondary and candidate",
            span: t.span(),
            y_label: |v| format!("{v:.0}"),
            band: None,
            lines: latency_lines,
            limit: None,
        };
        html! {
            div #charts {
                figure #divergence-chart { (svg(divergence.svg())) }
                figure #errors-chart { (svg(errors.svg())) }
                figure #latency-chart { (svg(latency.svg())) }
            }
        }
    }
}

fn criteria(criteria: &[Criterion]) -> Markup {
    html! {
        table #criteria {
            tr { th { "criterion" } th { "status" } th { "observed" } th { "interval" } th { "threshold" } th { "reason" } }
            @for c in criteria {
                tr {
                    td { (c.name) }
                    td { (decision(c.status.as_str())) }
                    td.num { (format!("{:.4}", c.observed)) }
                    td { @if let (Some(lower), Some(upper)) = (c.lower, c.upper) {
                        (format!("{lower:.4} to {upper:.4}"))
                    } }
                    td.num { (format!("{:.4}", c.threshold)) }
                    td { (c.reason) }
                }
            }
        }
    }
}

/// The windows a candidate page offers, as `since` values; the first is the default window.
const RANGES: [(&str, &str); 5] = [("", "default"), ("15m", "15 min"), ("1h", "1 h"), ("6h", "6 h"), ("24h", "24 h")];

/// A form that accepts `route` and `path`'s differences for `candidate`, with a reason.
fn accept_form(candidate: &str, route: &str, path: &str) -> Markup {
    html! {
        form.accept method="post" action=(format!("/candidates/{}/accept", segment(candidate))) {
            input type="hidden" name="route" value=(route);
            input type="hidden" name="path" value=(path);
            input type="text" name="reason" required placeholder="why it is intended" maxlength="500" aria-label="reason";
            select name="expires" aria-label="expires" {
                option value="7d" { "for 7 days" } option value="30d" { "for 30 days" } option value="" { "for good" }
            }
            button type="submit" { "Accept" }
        }
    }
}

pub(super) fn candidate(
    report: &VerdictReport,
    history: &[Given],
    charts: &Charts<'_>,
    noise: &[NoisyPath],
    since: Option<&str>,
) -> String {
    let name = &report.candidate;
    let since = since.unwrap_or_default();
    page(
        name,
        html! {
            h1 { "Candidate " code { (name) } }
            p.stages {
                "Gate: "
                @for stage in STAGES {
                    a class=(if stage == report.stage { "current" } else { "" }) href=(candidate_link(name, stage, since)) { (stage) }
                }
            }
            p.stages #ranges {
                "Window: "
                @for (value, label) in RANGES {
                    a class=(if value == since { "current" } else { "" }) href=(candidate_link(name, &report.stage, value)) { (label) }
                }
            }
            p #verdict {
                "Verdict at stage " (report.stage) ", on comparisons since " (at(report.since)) ": "
                (decision(report.verdict.as_str()))
            }
            @if !report.reasons.is_empty() {
                ul #reasons { @for reason in &report.reasons { li { (reason) } } }
            }
            p { a #all-comparisons href=(Filters { candidate: name.clone(), ..Filters::default() }.link(None)) { "All comparisons" } }
            h2 { "Criteria" }
            (criteria(&report.criteria))
            h2 { "Over time" }
            (charts.render(report.policy.max_divergence_rate))
            p { (report.compared) " of " (report.samples) " exchanges compared, " (report.noise_only)
                " differing only by noise; divergence " (pct(report.divergence.rate)) " (interval "
                (pct(report.divergence.lower)) " to " (pct(report.divergence.upper)) ")." }
            h2 { "Paths the candidate changes systematically" }
            @if report.divergent_paths.is_empty() {
                p { "None." }
            } @else {
                table #systematic {
                    tr { th { "route" } th { "path" } th { "kind" } th { "candidate" } th { "secondary" } th { "p" } th { "examples" } th { "intended?" } }
                    @for p in &report.divergent_paths {
                        tr {
                            td { (p.route) }
                            td { a href=(Filters { candidate: name.clone(), route: p.route.clone(), path: p.path.clone(), ..Filters::default() }.link(None)) { code { (p.path) } } }
                            td { (p.kind) }
                            td.num { (p.candidate) } td.num { (p.secondary) } td.num { (format!("{:.1e}", p.p_value)) }
                            td { @for id in &p.examples { a href=(exchange_href(id, name)) { (id) } " " } }
                            td { (accept_form(name, &p.route, &p.path)) }
                        }
                    }
                }
            }
            h2 { "Differing paths (noise excluded), status changes first" }
            @if report.top_paths.is_empty() {
                p { "None." }
            } @else {
                table #paths {
                    tr { th { "route" } th { "path" } th { "kind" } th { "count" } th { "intended?" } }
                    @for p in &report.top_paths {
                        tr {
                            td { (p.route) } td { code { (p.path) } } td { (p.kind) } td.num { (p.count) }
                            td { (accept_form(name, &p.route, &p.path)) }
                        }
                    }
                }
            }
            h2 { "Noise paths (the secondary differs there too; counted nowhere)" }
            @if noise.is_empty() {
                p { "None." }
            } @else {
                table #noise {
                    tr { th { "route" } th { "path" } th { "kind" } th { "count" } th { "example" } }
                    @for p in noise {
                        tr.noise {
                            td { (p.route) } td { code { (p.path) } } td { (p.kind) } td.num { (p.count) }
                            td { a href=(exchange_href(&p.example, name)) { (p.example) } }
                        }
                    }
                }
            }
            @if !report.accepted.is_empty() {
                h2 { "Accepted differences (left out of every criterion)" }
                table #accepted {
                    tr { th { "route" } th { "path" } th { "kind" } th { "count" } th { "by" } th { "reason" } }
                    @for a in &report.accepted {
                        tr.accepted {
                            td { (a.route) } td { code { (a.path) } } td { (a.kind) } td.num { (a.candidate) }
                            td { (a.acceptance.actor) } td { (a.acceptance.reason) }
                        }
                    }
                }
            }
            h2 { "Worst routes" }
            table #routes {
                tr { th { "route" } th { "verdict" } th { "samples" } th { "diverged" } th { "new errors" } }
                @for r in &report.routes {
                    tr {
                        td { (r.route) } td { (decision(r.verdict.as_str())) } td.num { (r.samples) }
                        td.num { (r.divergence.count) "/" (r.divergence.of) } td.num { (r.new_errors.count) }
                    }
                }
            }
            h2 { "Stage history: the verdicts given" }
            @if history.is_empty() {
                p { "No verdict was given to a CD system or shadowctl yet." }
            } @else {
                table #history {
                    tr { th { "given" } th { "stage" } th { "verdict" } th { "to" } th { "release" } th { "why" } }
                    @for g in history {
                        tr {
                            td { (at(g.ts)) } td { (g.stage) } td { (decision(&g.verdict)) } td { (g.caller) }
                            td { code { (g.revision) } }
                            td { @for reason in g.reasons.lines() { div { (reason) } } }
                        }
                    }
                }
            }
        },
    )
}

pub(super) fn comparisons(filters: &Filters, rows: &[comparisons::Listed], more: bool, since: u32) -> String {
    let name = &filters.candidate;
    let field = |label: &str, key: &str, value: &str| {
        html! { label { (label) " " input type="text" name=(key) value=(value); } " " }
    };
    page(
        "comparisons",
        html! {
            h1 { "Comparisons of " a href=(candidate_href(name, None)) { code { (name) } } }
            form #filters method="get" action="/comparisons" {
                input type="hidden" name="candidate" value=(name);
                (field("route", "route", &filters.route))
                (field("path", "path", &filters.path))
                (field("kind", "kind", &filters.kind))
                (field("outcome", "outcome", &filters.outcome))
                (field("status", "status", &filters.status))
                label { "noise " select name="noise" {
                    @for (value, shown) in [("", "either"), ("yes", "noise"), ("no", "not noise")] {
                        option value=(value) selected[filters.noise == value] { (shown) }
                    }
                } } " "
                (field("since", "since", &filters.since))
                button type="submit" { "Filter" }
            }
            p { "Newest first, since " (at(since)) "." }
            @if rows.is_empty() {
                p #none { "No comparison matches." }
            } @else {
                table #comparisons {
                    tr { th { "time" } th { "request" } th { "route" } th { "outcome" } th { "status" }
                         th { "differences" } th { "noise" } }
                    @for r in rows {
                        tr {
                            td { (at(r.ts)) }
                            td { a href=(exchange_href(&r.request_id, name)) { (r.request_id) } }
                            td { (r.method) " " (r.route) } td { (r.outcome) }
                            td { (r.primary_status) " → " (r.shadow_status) }
                            td.num { (r.differences) } td.num { (r.noise) }
                        }
                    }
                }
                @if let (true, Some(last)) = (more, rows.last()) {
                    p { a #older href=(filters.link(Some(format!("{}:{}", last.ts, last.request_id)))) { "Older" } }
                }
            }
        },
    )
}

/// The profiles with their targets' state; `problems` go next to the fields of the
/// profile they are about (`faults.<field>: ...`), or above its forms.
pub(super) fn profiles(
    listed: &Result<Vec<(serde_json::Value, serde_json::Value)>, super::mirror::MirrorError>,
    refused: Option<&Refusal<'_>>,
) -> String {
    let body = match listed {
        Err(error) => html! { h1 { "Profiles" } p #error { (error.to_string()) } },
        Ok(listed) => html! {
            h1 { "Profiles" }
            p { a #new-profile href="/profiles/new" { "New profile" } }
            @if listed.is_empty() { p #empty { "The mirror applies no profile." } }
            @for (profile, status) in listed {
                (profile_section(profile, status, refused.filter(|r| Some(r.id) == profile["id"].as_str())))
            }
        },
    };
    page("profiles", body)
}

fn profile_section(profile: &serde_json::Value, status: &serde_json::Value, refused: Option<&Refusal<'_>>) -> Markup {
    let id = profile["id"].as_str().unwrap_or_default();
    let mine: &[String] = refused.map_or(&[], |r| &r.problems);
    let typed = refused.and_then(|r| r.faults);
    let expired = profile["expired"].as_bool().unwrap_or(false);
    let faults = &profile["faults"];
    let field = |name: &str, label: &str| {
        let key = format!("faults.{name}");
        let value = match typed.and_then(|t| t.typed(name)) {
            Some(typed) => typed.to_owned(),
            None => faults[name].as_f64().map(|v| v.to_string()).unwrap_or_default(),
        };
        html! {
            label { (label) " " input type="text" name=(name) value=(value) size="6"; }
            @for p in mine.iter().filter(|p| p.starts_with(&key)) { " " span.problem data-field=(name) { (p) } }
            " "
        }
    };
    let action = |what: &str| format!("/profiles/{}/{what}", segment(id));
    html! {
        section.profile id=(id) {
            h2 { (id) " " @if expired { span.inconclusive { "expired" } } @else { span.pass { "active" } } }
            p { "stage " (profile["stage"].as_str().unwrap_or_default()) ", " (profile["sample_percent"].as_f64().unwrap_or_default()) "% of matching requests"
                @if let Some(lag) = status["consumer_lag"].as_i64() { ", consumer lag " (lag) } }
            table.targets {
                tr { th { "target" } th { "role" } th { "rate/s" } th { "replays" } th { "errors" } th { "timeouts" }
                     th { "shed" } th { "circuit" } }
                // Every declared target; its state once the mirror has replayed to it.
                @for target in profile["targets"].as_array().into_iter().flatten() {
                    @let name = target["name"].as_str().unwrap_or_default();
                    @let live = status["targets"].as_array().into_iter().flatten().find(|t| t["name"].as_str() == Some(name));
                    tr {
                        td { (name) } td { (target["role"].as_str().unwrap_or_default()) }
                        @match live {
                            Some(t) => {
                                td.num { (t["rate_per_sec"]) } td.num { (t["replays"]) } td.num { (t["errors"]) }
                                td.num { (t["timeouts"]) } td.num { (t["shed"]) } td { (t["circuit"].as_str().unwrap_or_default()) }
                            }
                            None => { td.num { "0" } td.num { "0" } td.num { "0" } td.num { "0" } td.num { "0" } td { "no replay yet" } }
                        }
                    }
                }
            }
            @for p in mine.iter().filter(|p| !p.starts_with("faults.")) { p.problem { (p) } }
            p.profile-actions {
                a.edit href=(action("edit")) { "Edit" } " "
                form.stage method="post" action=(action("stage")) {
                    label { "Stage " select name="stage" {
                        @for stage in STAGES { option value=(stage) selected[profile["stage"].as_str() == Some(stage)] { (stage) } }
                    } }
                    " " button type="submit" { "Set stage" }
                }
            }
            form.faults method="post" action=(action("faults")) {
                "Faults: "
                (field("latency_ms", "latency ms"))
                (field("latency_percent", "on %"))
                (field("error_status", "error status"))
                (field("error_percent", "on %"))
                (field("drop_percent", "drop %"))
                button type="submit" { "Apply faults" }
            }
            form.delete method="post" action=(action("delete")) {
                button type="submit" { "Delete profile" }
            }
        }
    }
}

pub(super) fn sign_in(next: &str, problem: Option<&str>) -> String {
    page(
        "sign in",
        html! {
            h1 { "Sign in" }
            p { "With a token that has the read scope; changes need the write scope. Where an SSO proxy stands in \
                 front of this service, it signs you in instead." }
            form #sign-in method="post" action="/sign-in" {
                input type="hidden" name="next" value=(next);
                label { "Token " input type="password" name="token" required autocomplete="current-password" maxlength="4096"; }
                @if let Some(problem) = problem { " " span.problem data-field="token" { (problem) } }
                " " button type="submit" { "Sign in" }
            }
        },
    )
}

pub(super) fn error(status: axum::http::StatusCode, message: &str) -> String {
    page(
        "error",
        html! {
            h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("")) }
            p #error { (message) }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_one_escaped_path_segment() {
        assert_eq!(candidate_href("v2/../x?y", None), "/candidates/v2%2F..%2Fx%3Fy");
        assert_eq!(exchange_href("a b+c", "v2&x"), "/exchanges/a%20b%2Bc?candidate=v2%26x");
        let html = overview(
            &[Candidate {
                candidate: "<script>".into(),
                comparisons: 3,
                last: 0,
                verdict: String::new(),
                stage: String::new(),
                revision: String::new(),
                judged: 0,
            }],
            &HashMap::new(),
            &Trends { since: 0, step: 1, until: 1 },
            &[],
        );
        assert!(html.contains("&lt;script&gt;") && !html.contains("<script>"), "{html}");
    }
}

//! The drill-down page: one request's legs, its differences, the primary's and a candidate's
//! downstream calls side by side, and their bodies side by side with the changed lines
//! marked. Server-rendered with
//! `maud`, which escapes every value it interpolates.

use maud::{Markup, html};
use shadowdiff_store::{OutboundCallRow, SampleRow};
use similar::{ChangeTag, TextDiff};

use super::render::page;
use crate::query::ExchangeDetail;

/// The page for `detail`, comparing the primary with `candidate`, or with the shadow
/// [`ExchangeDetail::drill_down`] chooses.
pub(crate) fn render(detail: &ExchangeDetail, candidate: Option<&str>) -> String {
    let candidate = detail.drill_down(candidate).unwrap_or_default();
    let all: Vec<_> = detail.differences.iter().filter(|d| d.deployment == candidate).collect();
    let hidden = all.len().saturating_sub(MAX_SHOWN_DIFFERENCES);
    let differences = &all[..all.len() - hidden];
    let body = html! {
                h1 { "Request " code { (detail.request_id) } }
                h2 { "Legs" }
                table #legs {
                    tr { th { "deployment" } th { "role" } th { "stage" } th { "outcome" } th { "status" }
                         th { "latency (ms)" } th { "differences" } th { "noise" } }
                    @for leg in &detail.legs {
                        tr {
                            td { a href={ "?candidate=" (leg.deployment) } { (leg.deployment) } }
                            td { (leg.role) } td { (leg.stage) } td { (leg.outcome) }
                            td { (leg.primary_status) " → " (leg.shadow_status) }
                            td { (ms(leg.primary_latency_us)) " → " (ms(leg.shadow_latency_us)) }
                            td { (leg.differences) } td { (leg.noise) }
                        }
                    }
                }
                h2 { "Differences: primary vs " (candidate) }
                @if differences.is_empty() {
                    p { "None." }
                } @else {
                    table #differences {
                        tr { th { "kind" } th { "path" } th { "primary" } th { (candidate) } th { "noise" } }
                        @for d in differences {
                            tr class=(if d.noise == 1 { "noise" } else { "divergence" }) {
                                td { (d.kind) } td { code { (d.path) } }
                                td { code { (d.primary_value) } } td { code { (d.shadow_value) } }
                                td { (if d.noise == 1 { "noise (the secondary differs too)" } else { "divergence" }) }
                            }
                        }
                    }
                    @if hidden > 0 { p { (hidden) " more differences not shown." } }
                }
                (calls(detail, &candidate))
                h2 { "Bodies" }
                @match detail.bodies(&candidate) {
                    Some((primary, shadow)) => (bodies(primary, shadow)),
                    None => p { "The bodies of this exchange were not sampled: the correlator keeps "
                             code { "samples_per_route_minute" } " divergent exchanges per route and minute." },
                }
    };
    page(&detail.request_id, body)
}

/// The primary's and `candidate`'s downstream calls side by side, the n-th call of each in
/// one row, and how the candidate's differ.
fn calls(detail: &ExchangeDetail, candidate: &str) -> Markup {
    let (primary, shadow) = detail.calls_of(candidate);
    let differences: Vec<_> =
        detail.call_differences.iter().filter(|d| d.deployment == candidate).take(MAX_SHOWN_DIFFERENCES).collect();
    let call = |c: Option<&&OutboundCallRow>| match c {
        Some(c) => html! { code { (c.method) " " (c.destination) " " (c.call_route) } " → " (c.status) },
        None => html! { "—" },
    };
    html! {
        h2 { "Downstream calls: primary vs " (candidate) }
        @if primary.is_empty() && shadow.is_empty() {
            p { "None recorded: the deployments made no call, or have no egress tap." }
        } @else {
            table #calls {
                tr { th { "#" } th { "primary" } th { (candidate) } }
                @for n in 0..primary.len().max(shadow.len()) {
                    tr { td { (n) } td { (call(primary.get(n))) } td { (call(shadow.get(n))) } }
                }
            }
        }
        @if !differences.is_empty() {
            table #call-differences {
                tr { th { "call" } th { "kind" } th { "path" } th { "primary" } th { (candidate) } th { "write" } th { "noise" } }
                @for d in differences {
                    tr class=(if d.noise == 1 { "noise" } else { "divergence" }) {
                        td { code { (d.call) } } td { (d.kind) } td { code { (d.path) } }
                        td { code { (d.primary_value) } } td { code { (d.shadow_value) } }
                        td { (if d.write == 1 { "write" } else { "" }) }
                        td { (if d.noise == 1 { "noise (the secondary differs too)" } else { "divergence" }) }
                    }
                }
            }
        }
    }
}

/// Bytes of each body shown; the rest of a larger sample is cut, and the page says so.
const MAX_SHOWN_BYTES: usize = 256 * 1024;
/// Differences listed; a capped exchange says how many more there are.
const MAX_SHOWN_DIFFERENCES: usize = 500;
/// Time the line diff may take: past it, the remaining lines are shown as changed
/// wholesale rather than aligned, so no sample can hold a page.
const DIFF_DEADLINE: std::time::Duration = std::time::Duration::from_millis(200);

/// The two bodies, pretty-printed when JSON, line-diffed: lines only the primary has are
/// marked `removed`, lines only the candidate has `changed`.
fn bodies(primary: &SampleRow, shadow: &SampleRow) -> Markup {
    let (left, right) = (pretty(&primary.body), pretty(&shadow.body));
    let diff = TextDiff::configure().timeout(DIFF_DEADLINE).diff_lines(&left, &right);
    let changes: Vec<_> = diff.iter_all_changes().collect();
    html! {
        div.bodies {
            div {
                h3 { "primary · " (primary.status) @if primary.truncated == 1 { " · truncated capture" } }
                pre #primary-body {
                    @for change in &changes {
                        @match change.tag() {
                            ChangeTag::Equal => span { (line(change.value())) },
                            ChangeTag::Delete => mark.removed { (line(change.value())) },
                            ChangeTag::Insert => {},
                        }
                    }
                }
            }
            div {
                h3 { (shadow.deployment) " · " (shadow.status) @if shadow.truncated == 1 { " · truncated capture" } }
                pre #candidate-body {
                    @for change in &changes {
                        @match change.tag() {
                            ChangeTag::Equal => span { (line(change.value())) },
                            ChangeTag::Insert => mark.changed { (line(change.value())) },
                            ChangeTag::Delete => {},
                        }
                    }
                }
            }
        }
    }
}

/// `body` pretty-printed when JSON, cut to [`MAX_SHOWN_BYTES`] at a line or character
/// boundary.
fn pretty(body: &str) -> String {
    let mut text = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| body.to_owned());
    if text.len() > MAX_SHOWN_BYTES {
        let mut cut = MAX_SHOWN_BYTES;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        let cut = text[..cut].rfind('\n').map_or(cut, |at| at + 1);
        let hidden = text.len() - cut;
        text.truncate(cut);
        text.push_str(&format!("… {hidden} more bytes not shown\n"));
    }
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text
}

fn line(value: &str) -> &str {
    value.strip_suffix('\n').unwrap_or(value)
}

#[allow(clippy::cast_precision_loss)] // latencies far below 2^52 µs
fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

/// The page shown when there is nothing to show.
pub(crate) fn error(request_id: &str, status: axum::http::StatusCode) -> String {
    let body = html! {
        h1 { "Request " code { (request_id) } }
        @if status == axum::http::StatusCode::NOT_FOUND {
            p { "No comparison is stored for this request: it was not mirrored, or its rows have not been written yet." }
        } @else {
            p { "The comparison store could not be read (" (status) "). Try again shortly." }
        }
    };
    page(request_id, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shadowdiff_store::DifferenceRow;

    fn sample(role: &str, body: String) -> SampleRow {
        SampleRow {
            ts: 0,
            request_id: "r".into(),
            route: "/x".into(),
            method: "GET".into(),
            deployment: role.into(),
            role: role.into(),
            status: 200,
            content_type: "application/json".into(),
            headers: String::new(),
            body_length: body.len() as u64,
            body,
            truncated: 0,
            run: String::new(),
        }
    }

    #[test]
    fn huge_samples_and_endless_differences_render_a_bounded_page() {
        let items = |shift: usize| (0..40_000).map(|i| (i * 7 + shift) % 40_000).collect::<Vec<_>>();
        let difference = |i: usize| DifferenceRow {
            ts: 0,
            request_id: "r".into(),
            route: "/x".into(),
            deployment: "candidate".into(),
            role: "candidate".into(),
            kind: "changed_value".into(),
            path: format!("items[{i}]"),
            primary_value: "1".into(),
            shadow_value: "2".into(),
            noise: 0,
            run: String::new(),
        };
        let detail = ExchangeDetail {
            request_id: "r".into(),
            legs: Vec::new(),
            differences: (0..5_000).map(difference).collect(),
            samples: vec![
                sample("primary", serde_json::json!({ "items": items(0) }).to_string()),
                sample("candidate", serde_json::json!({ "items": items(1) }).to_string()),
            ],
            calls: Vec::new(),
            call_differences: Vec::new(),
        };
        let page = render(&detail, Some("candidate"));
        // Two panes of at most MAX_SHOWN_BYTES each, with a tag around every line.
        assert!(page.len() < 8 * MAX_SHOWN_BYTES, "{} bytes", page.len());
        assert!(page.contains("4500 more differences not shown."));
        assert!(page.contains("more bytes not shown"));
    }
}

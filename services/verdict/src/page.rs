//! The drill-down page: one request's legs, its differences, and the primary's and a
//! candidate's bodies side by side with the changed lines marked. Server-rendered with
//! `maud`, which escapes every value it interpolates.

use maud::{DOCTYPE, Markup, html};
use shadowdiff_store::SampleRow;
use similar::{ChangeTag, TextDiff};

use crate::query::ExchangeDetail;

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222}\
table{border-collapse:collapse;margin:.5rem 0 1.5rem}td,th{border:1px solid #ccc;padding:.25rem .5rem;text-align:left}\
tr.noise{color:#888}tr.divergence td{background:#fff4f4}\
.bodies{display:grid;grid-template-columns:1fr 1fr;gap:1rem}\
pre{background:#f7f7f7;padding:.5rem;overflow:auto;font-size:.85rem;margin:0}\
pre span{display:block;white-space:pre}mark.removed{background:#ffd7d5}mark.changed{background:#ccffd8}\
mark{display:block;white-space:pre}";

/// The page for `detail`, comparing the primary with `candidate` (default: the first
/// candidate leg).
pub(crate) fn render(detail: &ExchangeDetail, candidate: Option<&str>) -> String {
    let candidate = candidate
        .map(str::to_owned)
        .or_else(|| detail.legs.iter().find(|l| l.role == "candidate").map(|l| l.deployment.clone()))
        .unwrap_or_default();
    let differences: Vec<_> = detail.differences.iter().filter(|d| d.deployment == candidate).collect();
    let primary = detail.samples.iter().find(|s| s.role == "primary");
    let shadow = detail.samples.iter().find(|s| s.deployment == candidate);
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { "shadowdiff · " (detail.request_id) }
                style { (maud::PreEscaped(STYLE)) }
            }
            body {
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
                        @for d in &differences {
                            tr class=(if d.noise == 1 { "noise" } else { "divergence" }) {
                                td { (d.kind) } td { code { (d.path) } }
                                td { code { (d.primary_value) } } td { code { (d.shadow_value) } }
                                td { (if d.noise == 1 { "noise (the secondary differs too)" } else { "divergence" }) }
                            }
                        }
                    }
                }
                h2 { "Bodies" }
                @match (primary, shadow) {
                    (Some(primary), Some(shadow)) => (bodies(primary, shadow)),
                    _ => p { "The bodies of this exchange were not sampled: the correlator keeps "
                             code { "samples_per_route_minute" } " divergent exchanges per route and minute." },
                }
            }
        }
    };
    markup.into_string()
}

/// The two bodies, pretty-printed when JSON, line-diffed: lines only the primary has are
/// marked `removed`, lines only the candidate has `changed`.
fn bodies(primary: &SampleRow, shadow: &SampleRow) -> Markup {
    let (left, right) = (pretty(&primary.body), pretty(&shadow.body));
    let diff = TextDiff::from_lines(&left, &right);
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

fn pretty(body: &str) -> String {
    let mut text = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| body.to_owned());
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
    html! {
        (DOCTYPE)
        html lang="en" {
            head { meta charset="utf-8"; title { "shadowdiff · " (request_id) } }
            body {
                h1 { "Request " code { (request_id) } }
                @if status == axum::http::StatusCode::NOT_FOUND {
                    p { "No comparison is stored for this request: it was not mirrored, or its rows have not been written yet." }
                } @else {
                    p { "The comparison store could not be read (" (status) "). Try again shortly." }
                }
            }
        }
    }
    .into_string()
}

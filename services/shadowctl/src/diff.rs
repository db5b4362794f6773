//! `shadowctl diff`: one request's comparison in the terminal, as the drill-down page shows
//! it: every leg, the differences between the primary and one shadow deployment (noise
//! dimmed), and a unified diff of the sampled bodies.

use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

use reqwest::Url;
use shadowdiff_store::{Outcome, SampleRow};
use shadowdiff_verdict::ExchangeDetail;
use similar::{ChangeTag, TextDiff};

use crate::style::{self, ADDED, DIM, HEADER, HUNK, REMOVED, WARN, paint};
use crate::table::{Align, Cell, Table};

/// The whole comparison, styled, ending with the drill-down page. `shadow` is the deployment
/// compared with the primary, as the page chooses it ([`ExchangeDetail::drill_down`]).
pub fn render(detail: &ExchangeDetail, shadow: Option<&str>, page: &Url) -> String {
    let mut out = String::new();
    let first = detail.legs.first();
    let what = first.map_or_else(String::new, |l| {
        let at = humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(u64::from(l.ts)));
        format!(" · {} {} · {at}", l.method, l.route)
    });
    let _ = writeln!(out, "{}{what}", paint(HEADER, format!("request {}", detail.request_id)));
    out.push('\n');
    out.push_str(&legs(detail).render(""));

    let Some(shadow) = shadow else {
        let _ = writeln!(out, "\n{page}");
        return out;
    };
    out.push('\n');
    let differences: Vec<_> = detail.differences.iter().filter(|d| d.deployment == shadow).collect();
    let noise = differences.iter().filter(|d| d.noise == 1).count();
    let _ = writeln!(
        out,
        "{}",
        paint(HEADER, format!("Differences, primary → {shadow}: {} ({noise} noise)", differences.len()))
    );
    if differences.is_empty() {
        let _ = writeln!(out, "  {}", paint(DIM, "none"));
    } else {
        let mut table = Table::new(&[("", Align::Left), ("", Align::Left), ("", Align::Left)]);
        for d in &differences {
            let change = format!("{} → {}", one_line(&d.primary_value), one_line(&d.shadow_value));
            if d.noise == 1 {
                let label = format!("{change}   noise: the secondary differs here too");
                table.row(vec![
                    Cell::styled(DIM, d.kind.clone()),
                    Cell::styled(DIM, d.path.clone()),
                    Cell::styled(DIM, label),
                ]);
            } else {
                table.row(vec![d.kind.clone().into(), Cell::styled(HEADER, d.path.clone()), change.into()]);
            }
        }
        out.push_str(&table.render("  "));
    }

    out.push('\n');
    match detail.bodies(shadow) {
        Some((primary, sampled)) => out.push_str(&bodies(primary, sampled)),
        None => {
            let _ = writeln!(
                out,
                "{}",
                paint(DIM, "Bodies not sampled: the correlator keeps a capped share of divergent exchanges.")
            );
        }
    }
    let _ = writeln!(out, "\nDrill-down page: {page}");
    out
}

fn legs(detail: &ExchangeDetail) -> Table {
    let mut table = Table::new(&[
        ("DEPLOYMENT", Align::Left),
        ("ROLE", Align::Left),
        ("STAGE", Align::Left),
        ("OUTCOME", Align::Left),
        ("STATUS", Align::Left),
        ("LATENCY MS", Align::Left),
        ("DIFFERENCES", Align::Left),
    ]);
    for leg in &detail.legs {
        let complete = leg.outcome == Outcome::Complete.as_str();
        let outcome = Cell::styled(if complete { style::PLAIN } else { WARN }, leg.outcome.clone());
        let status = format!(
            "{} → {}",
            code(leg.primary_status, &leg.primary_error),
            code(leg.shadow_status, &leg.shadow_error)
        );
        let status_style =
            if leg.status_differs == 1 || !leg.shadow_error.is_empty() { style::FAIL } else { style::PLAIN };
        let delta = if leg.latency_delta_us >= 0 { "+" } else { "" };
        let latency = format!(
            "{} → {} ({delta}{})",
            ms(leg.primary_latency_us),
            ms(leg.shadow_latency_us),
            ms_signed(leg.latency_delta_us)
        );
        let real = leg.differences.saturating_sub(leg.noise);
        let differences = Cell::styled(
            if real > 0 { style::FAIL } else { style::PLAIN },
            format!("{} ({} noise)", leg.differences, leg.noise),
        );
        table.row(vec![
            leg.deployment.clone().into(),
            leg.role.clone().into(),
            (if leg.stage.is_empty() { "—" } else { &leg.stage }).into(),
            outcome,
            Cell::styled(status_style, status),
            latency.into(),
            differences,
        ]);
    }
    table
}

/// A status, or the error kind that stood in for one.
fn code(status: u16, error: &str) -> String {
    match (status, error.is_empty()) {
        (_, false) => error.to_owned(),
        (0, true) => "—".to_owned(),
        (status, true) => status.to_string(),
    }
}

/// A unified diff of the two bodies, pretty-printed when they are JSON.
fn bodies(primary: &SampleRow, shadow: &SampleRow) -> String {
    let mut out = String::new();
    let truncated = |s: &SampleRow| if s.truncated == 1 { ", truncated capture" } else { "" };
    let _ = writeln!(
        out,
        "{}",
        paint(
            HEADER,
            format!(
                "Bodies: primary ({}{}) → {} ({}{})",
                primary.status,
                truncated(primary),
                shadow.deployment,
                shadow.status,
                truncated(shadow)
            )
        )
    );
    let (left, right) = (pretty(&primary.body), pretty(&shadow.body));
    if left == right {
        let _ = writeln!(out, "  {}", paint(DIM, "identical"));
        return out;
    }
    let diff = TextDiff::from_lines(&left, &right);
    let mut unified = diff.unified_diff();
    unified.context_radius(3);
    let _ = writeln!(out, "{}", paint(REMOVED, "--- primary"));
    let _ = writeln!(out, "{}", paint(ADDED, format!("+++ {}", shadow.deployment)));
    for hunk in unified.iter_hunks() {
        let _ = writeln!(out, "{}", paint(HUNK, hunk.header()));
        for change in hunk.iter_changes() {
            let text = change.value().strip_suffix('\n').unwrap_or(change.value());
            let line = match change.tag() {
                ChangeTag::Equal => format!(" {text}"),
                ChangeTag::Delete => paint(REMOVED, format!("-{text}")),
                ChangeTag::Insert => paint(ADDED, format!("+{text}")),
            };
            let _ = writeln!(out, "{line}");
        }
    }
    out
}

/// JSON pretty-printed (so a line diff shows fields), anything else as it is; ends in a newline.
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

/// A stored value on one line: line breaks shown as `\n`.
fn one_line(value: &str) -> String {
    if value.is_empty() { "∅".to_owned() } else { value.replace('\r', "\\r").replace('\n', "\\n") }
}

#[allow(clippy::cast_precision_loss)] // latencies far below 2^52 µs
fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

#[allow(clippy::cast_precision_loss)] // latencies far below 2^52 µs
fn ms_signed(us: i64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(role: &str, deployment: &str, body: &str) -> SampleRow {
        SampleRow {
            ts: 1_763_900_000,
            request_id: "r1".into(),
            route: "/items/{id}".into(),
            method: "GET".into(),
            deployment: deployment.into(),
            role: role.into(),
            status: 200,
            content_type: "application/json".into(),
            headers: String::new(),
            body: body.into(),
            body_length: u64::try_from(body.len()).unwrap_or(0),
            truncated: 0,
            run: String::new(),
        }
    }

    #[test]
    fn bodies_diff_as_pretty_json_lines() {
        let text = bodies(
            &sample("primary", "primary", r#"{"id":7,"price":100}"#),
            &sample("candidate", "v2", r#"{"id":7,"price":101}"#),
        );
        let plain = anstream::adapter::strip_str(&text).to_string();
        assert!(
            plain.contains(
                "--- primary\n+++ v2\n@@ -1,4 +1,4 @@\n {\n   \"id\": 7,\n-  \"price\": 100\n+  \"price\": 101\n }\n"
            ),
            "{plain}"
        );
    }

    #[test]
    fn values_stay_on_one_line() {
        assert_eq!(one_line("a\nb"), "a\\nb");
        assert_eq!(one_line(""), "∅");
    }
}

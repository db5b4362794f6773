//! The metrics the services register, found in their source, and a check of PromQL
//! against them: names, the series each kind renders, and labels.

use std::collections::{BTreeMap, BTreeSet};

use super::grafana::identifier_end;
use super::root;

#[derive(Debug, Default)]
pub(crate) struct Metric {
    pub(crate) kind: &'static str,
    pub(crate) labels: BTreeSet<String>,
}

/// Every `metrics::counter!/gauge!/histogram!` in services/**/*.rs: name, kind, label keys.
pub(crate) fn registered_metrics() -> BTreeMap<String, Metric> {
    let mut files = Vec::new();
    let mut dirs = vec![root().join("services")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    let mut metrics: BTreeMap<String, Metric> = BTreeMap::new();
    for file in files {
        let code = std::fs::read_to_string(file).unwrap();
        for kind in ["counter", "gauge", "histogram"] {
            for (at, _) in code.match_indices(&format!("{kind}!(")) {
                let call = macro_arguments(&code[at + kind.len() + 2..]);
                // Split at quotes: string literals sit at the odd indices, the name first.
                let parts: Vec<&str> = call.split('"').collect();
                let Some(name) = parts.get(1).filter(|n| n.starts_with("shadowdiff_")) else { continue };
                let metric = metrics.entry((*name).to_owned()).or_insert_with(|| Metric { kind, ..Metric::default() });
                for pair in parts.windows(2).skip(3).step_by(2) {
                    if pair[1].trim_start().starts_with("=>") {
                        metric.labels.insert(pair[0].to_owned());
                    }
                }
            }
        }
    }
    metrics
}

/// The text of a macro call's arguments, up to its closing bracket (strings skipped).
pub(crate) fn macro_arguments(text: &str) -> &str {
    let (mut depth, mut in_string, mut escaped) = (1, false, false);
    for (i, c) in text.char_indices() {
        match (in_string, c) {
            (true, _) if escaped => escaped = false,
            (true, '\\') => escaped = true,
            (_, '"') => in_string = !in_string,
            (false, '(') => depth += 1,
            (false, ')') => {
                depth -= 1;
                if depth == 0 {
                    return &text[..i];
                }
            }
            _ => {}
        }
    }
    text
}

pub(crate) fn words_in(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| !w.is_empty())
}

/// Problems with one PromQL expression and its legend.
pub(crate) fn check_promql(expr: &str, legend: &str, metrics: &BTreeMap<String, Metric>, buckets: bool) -> Vec<String> {
    let mut problems = Vec::new();
    let mut labels: BTreeSet<String> = ["instance", "job"].map(String::from).into();
    for (at, _) in expr.match_indices("shadowdiff_") {
        let name = &expr[at..at + identifier_end(&expr[at..])];
        if at > 0 && identifier_end(&expr[at - 1..]) > 0 {
            continue; // inside a longer word
        }
        let (base, suffix) = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s).filter(|b| metrics.get(*b).is_some_and(|m| m.kind == "histogram")).map(|b| (b, *s))
            })
            .unwrap_or((name, ""));
        let Some(metric) = metrics.get(base) else {
            problems.push(format!("{name}: no service registers it"));
            continue;
        };
        labels.extend(metric.labels.iter().cloned());
        if metric.kind == "histogram" {
            labels.insert("quantile".into());
            labels.insert("le".into());
            let selector = expr[at + name.len()..].strip_prefix('{').map_or("", |s| &s[..s.find('}').unwrap_or(0)]);
            if suffix == "_bucket" && !buckets {
                problems.push(format!("{name}: histograms are rendered as summaries (no buckets configured)"));
            } else if suffix.is_empty() && !(selector.contains("quantile") || buckets) {
                problems.push(format!("{name}: a summary's own series need a quantile selector"));
            }
        } else if !suffix.is_empty() {
            problems.push(format!("{name}: {base} is a {}, it has no {suffix}", metric.kind));
        }
    }
    let mut used: BTreeSet<&str> = BTreeSet::new();
    for clause in ["by (", "without ("] {
        for (at, _) in expr.match_indices(clause) {
            let list = &expr[at + clause.len()..];
            used.extend(words_in(&list[..list.find(')').unwrap_or(0)]));
        }
    }
    for (at, _) in expr.match_indices('{') {
        let selector = &expr[at + 1..at + expr[at..].find('}').unwrap_or(1)];
        used.extend(
            selector.split(',').filter_map(|m| m.split(['=', '!']).next()).map(str::trim).filter(|l| !l.is_empty()),
        );
    }
    for (at, _) in legend.match_indices("{{") {
        used.insert(legend[at + 2..].split("}}").next().unwrap().trim());
    }
    problems.extend(
        used.into_iter().filter(|l| !labels.contains(*l)).map(|l| format!("label {l} is on none of its metrics")),
    );
    problems
}

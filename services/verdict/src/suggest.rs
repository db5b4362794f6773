//! Ignore-rule suggestions: fields the noise model keeps classifying as noise (timestamps,
//! ids, arrays in random order) are proposed as the correlator's diff rules, ready to paste
//! into its config. Never applied automatically: a person decides that a field does not
//! matter, and the rule then stops the diff from spending work and rows on it.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// Fewest noise differences at one path before it is suggested.
pub const MIN_COUNT: u64 = 20;

/// One route's path the noise model classified as noise, and how often: a row of
/// `query::noisy_paths`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, clickhouse::Row)]
pub struct NoisyPath {
    pub route: String,
    /// Generalised: array indices as `[*]`; `header:<name>` for a header.
    pub path: String,
    pub kind: String,
    pub count: u64,
    /// One request where it was noise.
    pub example: String,
}

/// The suggestions for one candidate's window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suggestions {
    pub paths: Vec<NoisyPath>,
    /// `[[correlator.routes]]` tables with the rules, one per route.
    pub toml: String,
}

/// The rule that stops a path from being compared: headers by name, arrays whose order alone
/// differs as sets, anything else ignored.
fn rule(path: &NoisyPath) -> (&'static str, &str) {
    match path.path.strip_prefix("header:") {
        Some(header) => ("ignore_headers", header),
        None if path.kind == "order_only" => ("set_arrays", &path.path),
        None => ("ignore_paths", &path.path),
    }
}

/// Groups `paths` by route into correlator config, each rule with its count and example.
pub fn suggest(paths: Vec<NoisyPath>) -> Suggestions {
    let mut routes: BTreeMap<&str, BTreeMap<&'static str, Vec<&NoisyPath>>> = BTreeMap::new();
    for path in &paths {
        routes.entry(path.route.as_str()).or_default().entry(rule(path).0).or_default().push(path);
    }
    let mut toml = String::new();
    for (route, rules) in &routes {
        let _ = writeln!(toml, "[[correlator.routes]]\ntemplate = {}\n[correlator.routes.rules]", quoted(route));
        for (key, paths) in rules {
            let values: Vec<String> = paths.iter().map(|p| quoted(rule(p).1)).collect();
            let why: Vec<String> = paths
                .iter()
                .map(|p| format!("{} {}× (e.g. {})", quoted(rule(p).1), p.count, quoted(&p.example)))
                .collect();
            let _ = writeln!(toml, "# noise: {}", why.join(", "));
            let _ = writeln!(toml, "{key} = [{}]", values.join(", "));
        }
        toml.push('\n');
    }
    Suggestions { paths, toml }
}

/// `text` as a TOML basic string.
fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noisy(route: &str, path: &str, kind: &str, count: u64) -> NoisyPath {
        NoisyPath { route: route.into(), path: path.into(), kind: kind.into(), count, example: "req-1".into() }
    }

    #[test]
    fn suggestions_are_correlator_config_that_parses_into_the_rules_meant() {
        let suggestions = suggest(vec![
            noisy("/items/{id}", "served_at", "changed_value", 480),
            noisy("/items/{id}", "trace_id", "changed_value", 470),
            noisy("/search", "items", "order_only", 90),
            noisy("/search", "header:x-instance-id", "changed_value", 60),
        ]);
        #[derive(Debug, Deserialize)]
        struct Config {
            correlator: Correlator,
        }
        #[derive(Debug, Deserialize)]
        struct Correlator {
            routes: Vec<Route>,
        }
        #[derive(Debug, Deserialize)]
        struct Route {
            template: String,
            rules: shadowdiff_core::diff::DiffRules,
        }
        let config: Config = toml::from_str(&suggestions.toml).unwrap_or_else(|e| panic!("{e}\n{}", suggestions.toml));
        let routes = &config.correlator.routes;
        assert_eq!(routes.len(), 2);
        assert_eq!(
            (routes[0].template.as_str(), routes[0].rules.ignore_paths.clone()),
            ("/items/{id}", vec!["served_at".to_owned(), "trace_id".to_owned()])
        );
        assert_eq!(routes[1].rules.set_arrays, ["items"]);
        assert_eq!(routes[1].rules.ignore_headers, ["x-instance-id"]);
        assert!(suggestions.toml.contains("# noise: \"served_at\" 480× (e.g. \"req-1\")"), "{}", suggestions.toml);
    }

    #[test]
    fn strange_names_stay_inside_their_strings() {
        let suggestions = suggest(vec![noisy("/a\"b", "x\\y\n", "changed_value", 30)]);
        assert!(toml::from_str::<toml::Table>(&suggestions.toml).is_ok(), "{}", suggestions.toml);
    }
}

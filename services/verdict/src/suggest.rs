//! Ignore-rule suggestions: fields the noise model keeps classifying as noise (timestamps,
//! ids, arrays in random order) are proposed as the correlator's diff rules, ready to paste
//! into its config. Never applied automatically: a person decides that a field does not
//! matter, and the rule then stops the diff from spending work and rows on it.
//!
//! An array whose order alone differs is proposed as keyed (`keyed_arrays`) when a sampled
//! primary body of the route shows its elements carrying an id ([`element_key`]): matched
//! on it, a changed element is reported as that element's change. Otherwise it is proposed
//! as a set (`set_arrays`).

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
    /// For an array in random order: the field that identifies its elements, when one was
    /// found in a sampled body ([`element_key`]); empty otherwise.
    #[serde(default)]
    pub key: String,
}

/// The suggestions for one candidate's window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suggestions {
    pub paths: Vec<NoisyPath>,
    /// `[[correlator.routes]]` tables with the rules, one per route.
    pub toml: String,
}

/// The rule that stops a path from being compared: headers by name, arrays whose order alone
/// differs matched on their elements' key or as sets, anything else ignored.
fn rule(path: &NoisyPath) -> (&'static str, &str) {
    match path.path.strip_prefix("header:") {
        Some(header) => ("ignore_headers", header),
        None if path.kind == "order_only" && !path.key.is_empty() => ("keyed_arrays", &path.path),
        None if path.kind == "order_only" => ("set_arrays", &path.path),
        None => ("ignore_paths", &path.path),
    }
}

/// Fields that name an element, most telling first; after them, any field whose name ends
/// in `id`.
const KEY_NAMES: [&str; 6] = ["id", "key", "uuid", "sku", "code", "name"];

/// The field that identifies the elements of the array at `path` (generalised, `[*]` for
/// every index) in the JSON `body`: one every element has, with a scalar value no two
/// elements share. `None` when the body is not JSON, the path holds no array of objects, or
/// no field qualifies.
pub fn element_key(body: &str, path: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    let array = find_array(&value, path)?;
    let objects: Vec<&serde_json::Map<String, serde_json::Value>> =
        array.iter().map(serde_json::Value::as_object).collect::<Option<_>>()?;
    let first = objects.first()?;
    let qualifies = |field: &str| {
        let mut seen = std::collections::HashSet::new();
        objects.iter().all(|o| match o.get(field) {
            Some(v @ (serde_json::Value::String(_) | serde_json::Value::Number(_))) => seen.insert(v.to_string()),
            _ => false,
        })
    };
    let by_name = KEY_NAMES.iter().map(|k| (*k).to_owned()).filter(|k| first.contains_key(k));
    let ending_in_id = first.keys().filter(|k| k.to_ascii_lowercase().ends_with("id")).cloned();
    by_name.chain(ending_in_id).find(|k| qualifies(k))
}

/// The first non-empty array at `path` (`orders[*].lines`: the `lines` of any order).
fn find_array<'a>(value: &'a serde_json::Value, path: &str) -> Option<&'a Vec<serde_json::Value>> {
    let (head, rest) = match path.split_once('.') {
        Some((head, rest)) => (head, Some(rest)),
        None => (path, None),
    };
    let (field, all) = match head.strip_suffix("[*]") {
        Some(field) => (field, true),
        None => (head, false),
    };
    let here = if field.is_empty() { value } else { value.get(field)? };
    match (all, rest) {
        (false, None) => here.as_array().filter(|a| !a.is_empty()),
        (false, Some(rest)) => find_array(here, rest),
        (true, None) => None,
        (true, Some(rest)) => here.as_array()?.iter().find_map(|element| find_array(element, rest)),
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
            let values: Vec<String> = paths
                .iter()
                .map(|p| {
                    let path = quoted(rule(p).1);
                    if *key == "keyed_arrays" { format!("{{ path = {path}, key = {} }}", quoted(&p.key)) } else { path }
                })
                .collect();
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
        NoisyPath {
            route: route.into(),
            path: path.into(),
            kind: kind.into(),
            count,
            example: "req-1".into(),
            key: String::new(),
        }
    }

    #[test]
    fn an_array_whose_elements_carry_an_id_is_keyed() {
        let body = r#"{"variants":[{"id":1,"color":"red"},{"id":2,"color":"blue"}],
                       "orders":[{"lines":[]},{"lines":[{"sku":"a","n":1},{"sku":"b","n":1}]}],
                       "tags":["x","y"], "pairs":[{"id":1},{"id":1}], "refs":[{"itemId":"7"},{"itemId":"8"}]}"#;
        assert_eq!(element_key(body, "variants").as_deref(), Some("id"));
        assert_eq!(element_key(body, "orders[*].lines").as_deref(), Some("sku"), "inside the first order with lines");
        assert_eq!(element_key(body, "refs").as_deref(), Some("itemId"));
        assert_eq!(element_key(body, "tags"), None, "scalars have no key");
        assert_eq!(element_key(body, "pairs"), None, "an id two elements share is no key");
        assert_eq!(element_key(body, "missing"), None);
        assert_eq!(element_key("not json", "variants"), None);
    }

    #[test]
    fn a_keyed_suggestion_is_config_the_correlator_reads() {
        let keyed = NoisyPath { key: "id".into(), ..noisy("/items/{n}", "variants", "order_only", 300) };
        let suggestions = suggest(vec![keyed]);
        assert!(
            suggestions.toml.contains(r#"keyed_arrays = [{ path = "variants", key = "id" }]"#),
            "{}",
            suggestions.toml
        );
        let table: toml::Table =
            toml::from_str(&suggestions.toml).unwrap_or_else(|e| panic!("{e}\n{}", suggestions.toml));
        let rules = &table["correlator"]["routes"][0]["rules"];
        let rules: shadowdiff_core::diff::DiffRules = rules.clone().try_into().unwrap();
        assert_eq!((rules.keyed_arrays[0].path.as_str(), rules.keyed_arrays[0].key.as_str()), ("variants", "id"));
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

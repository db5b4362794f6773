//! Properties of config loading, which every service runs on a file and an environment it
//! does not control: no TOML text and no `SHADOWDIFF_*` variables panic the loader, and it
//! is never `Ok` with garbage: without overrides it accepts exactly the files that parse
//! strictly (every key known, every value typed, every rule kept), and an override it
//! accepts is the value the config holds. The `[auth]` and redaction sections, parsed and
//! validated from any TOML, build their guards without panicking.
//!
//! The services' own config types live in their crates; `Fuzz` here has the same shapes
//! (nested sections, durations, a secret, lists, an enum, an optional section).
//!
//! Cases come from `PROPTEST_CASES` (256 by default; `deploy/fuzz/run.sh` runs a million).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use proptest::prelude::*;
use serde::Deserialize;
use shadowdiff_runtime::auth::{Auth, AuthConfig, Scope};
use shadowdiff_runtime::config::{ConfigError, Secret, Validate, load_str, serde_duration};
use shadowdiff_runtime::redaction::RedactionConfig;
use toml::{Table, Value};

#[derive(Debug, PartialEq, Deserialize)]
struct Fuzz {
    service: Service,
    #[serde(default)]
    limits: Limits,
}

#[derive(Debug, PartialEq, Deserialize)]
struct Service {
    name: String,
    #[serde(default = "default_port")]
    port: u16,
    #[serde(default = "default_timeout", rename = "timeout_ms", with = "serde_duration::millis")]
    timeout: Duration,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    mode: Mode,
    #[serde(default)]
    password: Option<Secret<String>>,
    #[serde(default)]
    capture: Capture,
}

#[derive(Debug, Default, PartialEq, Deserialize)]
struct Capture {
    #[serde(default)]
    max_body_bytes: usize,
    #[serde(default)]
    enabled: bool,
}

#[derive(Debug, Default, PartialEq, Deserialize)]
struct Limits {
    #[serde(default, rename = "drain_secs", with = "serde_duration::secs")]
    drain: Duration,
    #[serde(default)]
    ratio: f64,
    #[serde(default)]
    routes: Vec<Route>,
}

#[derive(Debug, PartialEq, Deserialize)]
struct Route {
    path: String,
    #[serde(default)]
    weight: u8,
}

#[derive(Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Mode {
    #[default]
    Shadow,
    Live,
}

const fn default_port() -> u16 {
    8080
}
const fn default_timeout() -> Duration {
    Duration::from_millis(5000)
}

impl Validate for Fuzz {
    fn validate(&self, errors: &mut Vec<ConfigError>) {
        if self.service.name.is_empty() {
            errors.push(ConfigError::rule("service.name", "must not be empty"));
        }
        if self.service.port == 0 {
            errors.push(ConfigError::rule("service.port", "must not be 0"));
        }
    }
}

/// Every key `Fuzz` knows, as a tree: `None` for a leaf, `Some` for a table, and for an
/// array of tables the table of its elements.
fn known(path: &[&str]) -> Option<&'static [&'static str]> {
    match path {
        [] => Some(&["service", "limits"]),
        ["service"] => Some(&["name", "port", "timeout_ms", "tags", "mode", "password", "capture"]),
        ["service", "capture"] => Some(&["max_body_bytes", "enabled"]),
        ["limits"] => Some(&["drain_secs", "ratio", "routes"]),
        ["limits", "routes"] => Some(&["path", "weight"]),
        _ => None,
    }
}

/// Whether every key in `table` is one `Fuzz` knows.
fn all_known(table: &Table, path: &mut Vec<String>) -> bool {
    let p: Vec<&str> = path.iter().map(String::as_str).collect();
    let Some(keys) = known(&p) else { return true };
    table.iter().all(|(key, value)| {
        if !keys.contains(&key.as_str()) {
            return false;
        }
        path.push(key.clone());
        let ok = match value {
            Value::Table(t) => all_known(t, path),
            Value::Array(items) => items.iter().all(|item| match item {
                Value::Table(t) => all_known(t, path),
                _ => true,
            }),
            _ => true,
        };
        path.pop();
        ok
    })
}

/// What `load_str` should say about `text` with no overrides, worked out another way.
fn strictly(text: &str) -> Option<Fuzz> {
    let table: Table = text.parse().ok()?;
    if !all_known(&table, &mut Vec::new()) {
        return None;
    }
    let config: Fuzz = toml::from_str(text).ok()?;
    let mut errors = Vec::new();
    config.validate(&mut errors);
    errors.is_empty().then_some(config)
}

/// A value for a key: right, wrong, or odd.
fn value_for(key: &'static str) -> BoxedStrategy<Value> {
    let odd = prop_oneof![
        any::<i64>().prop_map(Value::Integer),
        any::<bool>().prop_map(Value::Boolean),
        ".{0,8}".prop_map(Value::String),
        any::<f64>().prop_map(Value::Float),
        Just(Value::Array(Vec::new())),
        Just(Value::Table(Table::new())),
    ];
    let right: BoxedStrategy<Value> = match key {
        "name" | "path" => "[a-z0-9-]{0,8}".prop_map(Value::String).boxed(),
        "port" | "weight" => prop_oneof![0i64..70_000, Just(-1)].prop_map(Value::Integer).boxed(),
        "timeout_ms" | "drain_secs" | "max_body_bytes" => {
            prop_oneof![Just(i64::MAX), Just(-1), 0i64..1_000_000].prop_map(Value::Integer).boxed()
        }
        "tags" => prop::collection::vec("[a-z]{0,4}".prop_map(Value::String), 0..3).prop_map(Value::Array).boxed(),
        "mode" => prop::sample::select(vec!["shadow", "live", "Live", "other"])
            .prop_map(|s| Value::String(s.to_owned()))
            .boxed(),
        "password" => ".{0,12}".prop_map(Value::String).boxed(),
        "enabled" => any::<bool>().prop_map(Value::Boolean).boxed(),
        "ratio" => prop_oneof![any::<f64>(), 0.0f64..1.0].prop_map(Value::Float).boxed(),
        _ => odd.clone().boxed(),
    };
    prop_oneof![4 => right, 1 => odd].boxed()
}

/// A table for `path`, with most of its known keys and now and then an unknown one.
fn table_for(path: &'static [&'static str], depth: u32) -> BoxedStrategy<Table> {
    let keys = known(path).unwrap_or(&[]);
    let entries: Vec<BoxedStrategy<Option<(String, Value)>>> = keys
        .iter()
        .map(|key| {
            let child: &'static [&'static str] = match (path, *key) {
                ([], "service") => &["service"],
                ([], "limits") => &["limits"],
                (["service"], "capture") => &["service", "capture"],
                (["limits"], "routes") => &["limits", "routes"],
                _ => &[],
            };
            let value = if child.is_empty() || depth == 0 {
                value_for(key)
            } else if *key == "routes" {
                prop::collection::vec(table_for(child, depth - 1).prop_map(Value::Table), 0..3)
                    .prop_map(Value::Array)
                    .boxed()
            } else {
                prop_oneof![5 => table_for(child, depth - 1).prop_map(Value::Table), 1 => value_for(key)].boxed()
            };
            let key = (*key).to_owned();
            prop::option::weighted(0.8, value.prop_map(move |v| (key.clone(), v))).boxed()
        })
        .collect();
    let unknown = prop::option::weighted(0.1, ("[a-z_]{1,6}", value_for("other")));
    (entries, unknown)
        .prop_map(|(entries, unknown)| entries.into_iter().flatten().chain(unknown).collect::<Table>())
        .boxed()
}

fn toml_text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => table_for(&[], 3).prop_map(|t| toml::to_string(&t).unwrap()),
        1 => (table_for(&[], 3), prop::collection::vec((any::<prop::sample::Index>(), "[\\[\\]=\"'\n .#a-z0-9{}]"), 1..4))
            .prop_map(|(t, edits)| {
                let mut text = toml::to_string(&t).unwrap();
                for (at, insert) in edits {
                    let mut i = at.index(text.len() + 1);
                    while !text.is_char_boundary(i) {
                        i -= 1;
                    }
                    text.insert_str(i, &insert);
                }
                text
            }),
        1 => any::<String>(),
        1 => "[\\[\\]=\"'\n .a-z0-9_{},]{0,64}",
    ]
}

fn env_pairs() -> impl Strategy<Value = Vec<(String, String)>> {
    let name = prop_oneof![
        prop::sample::select(vec![
            "SHADOWDIFF_SERVICE_NAME",
            "SHADOWDIFF_SERVICE_PORT",
            "SHADOWDIFF_SERVICE_TIMEOUT_MS",
            "SHADOWDIFF_SERVICE_TAGS",
            "SHADOWDIFF_SERVICE_MODE",
            "SHADOWDIFF_SERVICE_PASSWORD",
            "SHADOWDIFF_SERVICE_CAPTURE__MAX_BODY_BYTES",
            "SHADOWDIFF_SERVICE_CAPTURE__ENABLED",
            "SHADOWDIFF_SERVICE_CAPTURE",
            "SHADOWDIFF_LIMITS_RATIO",
            "SHADOWDIFF_LIMITS_ROUTES",
            "SHADOWDIFF_LIMITS_DRAIN_SECS",
            "SHADOWDIFF_SERVICE_BOGUS",
            "SHADOWDIFF_OTHER_KEY",
            "SHADOWDIFF_",
            "SHADOWDIFF__",
            "SHADOWDIFF_SERVICE_",
            "SHADOWDIFF_SERVICE___",
            "PATH",
        ])
        .prop_map(str::to_owned),
        "SHADOWDIFF_[A-Z_]{0,16}",
        ".{0,12}",
    ];
    let value = prop_oneof![
        prop::sample::select(vec![
            "",
            "0",
            "1",
            "8080",
            "65536",
            "-1",
            "0x10",
            "1_000",
            "true",
            "live",
            "\"live\"",
            "[\"a\", \"b\"]",
            "[1, 2]",
            "{ path = \"/\" }",
            "[{ path = \"/\" }]",
            "1e999",
            "nan",
            "inf",
            "'",
            "[",
            "a = 1",
        ])
        .prop_map(str::to_owned),
        ".{0,12}",
    ];
    prop::collection::vec((name, value), 0..5)
}

/// TOML's reading of an override's raw text, when it is a typed scalar.
fn as_toml(raw: &str) -> Option<Value> {
    let mut doc = format!("v = {raw}").parse::<Table>().ok()?;
    doc.remove("v")
}

proptest! {
    #[test]
    fn a_file_loads_exactly_when_it_parses_strictly(text in toml_text()) {
        let loaded = load_str::<Fuzz>(&text, "fuzz.toml", Vec::new());
        let expected = strictly(&text);
        match (&loaded, &expected) {
            // Compared as text: a `nan` ratio is not equal to itself.
            (Ok(config), Some(expected)) => prop_assert_eq!(format!("{config:?}"), format!("{expected:?}")),
            (Err(errors), None) => prop_assert!(!errors.0.is_empty(), "an error with no problem in it"),
            _ => prop_assert!(false, "loader {:?}, strict parse {:?}, for {:?}", loaded, expected, text),
        }
    }

    #[test]
    fn overrides_never_panic_and_an_accepted_one_is_held(text in toml_text(), env in env_pairs()) {
        let Ok(config) = load_str::<Fuzz>(&text, "fuzz.toml", env.clone()) else { return Ok(()) };
        // The last override of a key wins (as with a real environment, names are unique).
        let last = |var: &str| env.iter().rev().find(|(n, _)| n == var).map(|(_, v)| v.as_str());
        prop_assert!(last("SHADOWDIFF_SERVICE_BOGUS").is_none(), "an unknown key in a known section is an error");
        if let Some(raw) = last("SHADOWDIFF_SERVICE_NAME") {
            // A string field keeps the text, unless it reads as a TOML string literal.
            let literal = as_toml(raw).and_then(|v| v.as_str().map(str::to_owned));
            prop_assert!(config.service.name == raw || Some(&config.service.name) == literal.as_ref(), "{:?} {:?}", raw, config);
        }
        if let Some(raw) = last("SHADOWDIFF_SERVICE_PORT") {
            prop_assert_eq!(Some(i64::from(config.service.port)), as_toml(raw).and_then(|v| v.as_integer()), "{:?}", raw);
        }
        if let Some(raw) = last("SHADOWDIFF_SERVICE_CAPTURE__ENABLED") {
            prop_assert_eq!(Some(config.service.capture.enabled), as_toml(raw).and_then(|v| v.as_bool()), "{:?}", raw);
        }
        let mut errors = Vec::new();
        config.validate(&mut errors);
        prop_assert!(errors.is_empty(), "Ok with broken rules: {:?}", errors);
    }

    #[test]
    fn auth_and_redaction_sections_never_panic(text in guard_text(), token in ".{0,12}", seal in any::<bool>()) {
        // Straight from TOML, validated whatever else is wrong.
        let table = text.parse::<Table>().unwrap_or_default();
        let section = |name: &str| table.get(name).cloned().unwrap_or_else(|| Value::Table(table.clone()));
        if let Ok(auth) = section("auth").try_into::<AuthConfig>() {
            auth.validate(&mut Vec::new());
            let _ = Auth::new(&auth, "fuzz").token(&token, Scope::Write);
        }
        if let Ok(redaction) = section("redaction").try_into::<RedactionConfig>() {
            redaction.validate("redaction", &mut Vec::new());
            let _ = redaction.redactor(seal).query("token=a&b=c");
            let _ = redaction.sealer();
        }
        // Through the loader, as a service reads them.
        if let Ok(guards) = load_str::<Guards>(&text, "fuzz.toml", Vec::new()) {
            let auth = Auth::new(&guards.auth, "fuzz");
            let _ = auth.token(&token, Scope::Read);
            if let Some(redaction) = &guards.redaction {
                prop_assert!(redaction.hmac_key.expose().len() >= 16);
                let out = redaction.redactor(seal).query("token=CANARY123456&b=c");
                prop_assert!(!redaction.defaults || !out.contains("CANARY123456"), "{}", out);
            }
        }
    }
}

#[derive(Debug, Deserialize)]
struct Guards {
    #[serde(default)]
    auth: AuthConfig,
    #[serde(default)]
    redaction: Option<RedactionConfig>,
}

impl Validate for Guards {
    fn validate(&self, errors: &mut Vec<ConfigError>) {
        self.auth.validate(errors);
        if let Some(redaction) = &self.redaction {
            redaction.validate("redaction", errors);
        }
    }
}

/// `[auth]` and `[redaction]` sections (or their bodies at the top level), with plausible,
/// wrong and odd values, or any text at all.
fn guard_text() -> impl Strategy<Value = String> {
    let digest = prop_oneof!["[0-9a-f]{64}", "[0-9a-fA-F ]{0,70}", ".{0,8}",];
    let scopes = prop::collection::vec(prop::sample::select(vec!["read", "write", "admin", ""]), 0..3);
    let token = ("[a-z]{0,70}", digest, scopes.clone()).prop_map(|(name, sha256, scopes)| {
        format!("[[auth.tokens]]\nname = {name:?}\nsha256 = {sha256:?}\nscopes = {scopes:?}\n")
    });
    let proxy = (
        prop::option::of(prop_oneof!["[a-z-]{0,12}", ".{0,6}"]),
        prop::collection::vec(
            prop::sample::select(vec!["10.0.0.0/8", "::1/128", "10.0.0.1/33", "x", "0.0.0.0/0"]),
            0..3,
        ),
        scopes,
    )
        .prop_map(|(header, trusted, scopes)| {
            let header = header.map(|h| format!("user_header = {h:?}\n")).unwrap_or_default();
            format!("[auth.proxy]\n{header}trusted = {trusted:?}\nscopes = {scopes:?}\n")
        });
    let auth = (any::<bool>(), prop::collection::vec(token, 0..3), prop::option::of(proxy)).prop_map(
        |(open, tokens, proxy)| format!("[auth]\nopen = {open}\n{}{}", tokens.concat(), proxy.unwrap_or_default()),
    );
    let seal_key = prop_oneof![
        prop::collection::vec(any::<u8>(), 32).prop_map(|k| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(k)
        }),
        "[A-Za-z0-9+/=]{0,48}",
        ".{0,8}",
    ];
    let redaction = (
        prop_oneof!["[ -~]{0,40}", "[a]{16,20}", Just("REPLACE-ME-fake-hmac-key-not-a-secret".to_owned())],
        any::<bool>(),
        prop::option::of(seal_key),
        prop::collection::vec(prop_oneof!["[a-z.\\[\\]*0-9]{0,10}", Just("a[".to_owned()), Just("".to_owned())], 0..3),
        prop::collection::vec("[a-zA-Z-]{0,10}", 0..3),
        prop::collection::vec(".{0,6}", 0..3),
        any::<bool>(),
    )
        .prop_map(|(hmac_key, defaults, seal_key, json_paths, sealed_headers, json_keys, demo)| {
            let seal_key = seal_key.map(|k| format!("seal_key = {k:?}\n")).unwrap_or_default();
            format!(
                "[redaction]\nhmac_key = {hmac_key:?}\ndefaults = {defaults}\n{seal_key}json_paths = {json_paths:?}\n\
                 sealed_headers = {sealed_headers:?}\njson_keys = {json_keys:?}\nallow_demo_keys = {demo}\n"
            )
        });
    prop_oneof![
        4 => (prop::option::of(auth), prop::option::of(redaction))
            .prop_map(|(a, r)| format!("{}\n{}", a.unwrap_or_default(), r.unwrap_or_default())),
        1 => any::<String>(),
        1 => "[\\[\\]=\"'\n .a-z0-9_{},]{0,64}",
    ]
}

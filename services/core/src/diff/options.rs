//! What a comparison ignores or relaxes, per route: header ignore lists, JSON paths to
//! ignore (with `[*]` and `*` wildcards), numeric tolerance, arrays compared as sets or
//! keyed by a field, and string normalisers. Services deserialize their config into
//! [`DiffRules`] and build [`DiffOptions`] once.

use regex::Regex;
use serde::{Deserialize, Serialize};

use super::limits::DiffLimits;

/// Headers that differ between any two instances of one service, and so never count.
pub const DEFAULT_IGNORED_HEADERS: &[&str] = &[
    "date",
    "server",
    crate::headers::REQUEST_ID,
    "content-length",
    "content-encoding",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "age",
    "expires",
    "traceparent",
    "tracestate",
    "x-b3-*",
    "x-amzn-trace-id",
    "x-cloud-trace-context",
    "x-instance*",
    "x-shadow-*",
];

/// The rules as written in config.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DiffRules {
    /// Headers never compared, in addition to the defaults; a trailing `*` is a prefix.
    #[serde(default)]
    pub ignore_headers: Vec<String>,
    /// JSON paths never compared: `meta.generated_at`, `items[*].updated_at`, `*.etag`.
    #[serde(default)]
    pub ignore_paths: Vec<String>,
    /// Numbers within either bound are equal.
    #[serde(default)]
    pub tolerance: Option<Tolerance>,
    /// Arrays at these paths compare as sets (order and repeats ignored).
    #[serde(default)]
    pub set_arrays: Vec<String>,
    /// Arrays at these paths compare element by element matched on a field.
    #[serde(default)]
    pub keyed_arrays: Vec<KeyedArray>,
    /// Regex replacements applied to every string on both sides before comparing.
    #[serde(default)]
    pub normalizers: Vec<Normalizer>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Tolerance {
    #[serde(default)]
    pub absolute: f64,
    #[serde(default)]
    pub relative: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyedArray {
    pub path: String,
    pub key: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Normalizer {
    pub pattern: String,
    #[serde(default)]
    pub replace: String,
}

/// A bad rule, named.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{rule}: {reason}")]
pub struct InvalidRule {
    pub rule: String,
    pub reason: String,
}

/// Compiled rules. Config reads them straight into this form (from [`DiffRules`]), so a bad
/// rule is reported with its key before anything starts, and nothing compiles them again.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "DiffRules")]
pub struct DiffOptions {
    ignore_headers: Vec<String>,
    ignore_paths: Vec<Regex>,
    pub(super) tolerance: Option<Tolerance>,
    set_arrays: Vec<Regex>,
    keyed_arrays: Vec<(Regex, String)>,
    normalizers: Vec<(Regex, String)>,
    limits: DiffLimits,
}

impl Default for DiffOptions {
    fn default() -> Self {
        Self {
            ignore_headers: DEFAULT_IGNORED_HEADERS.iter().map(|h| (*h).to_owned()).collect(),
            ignore_paths: Vec::new(),
            tolerance: None,
            set_arrays: Vec::new(),
            keyed_arrays: Vec::new(),
            normalizers: Vec::new(),
            limits: DiffLimits::default(),
        }
    }
}

/// A JSON path pattern as a regex over rendered paths (`items[3].price`): `[*]` is any
/// index, `*` any one key.
fn path_pattern(pattern: &str) -> Result<Regex, InvalidRule> {
    let mut re = String::from("^");
    let mut rest = pattern;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("[*]") {
            re.push_str(r"\[[^\]]*\]");
            rest = after;
        } else if let Some(after) = rest.strip_prefix('*') {
            re.push_str(r"[^.\[]+");
            rest = after;
        } else {
            let c = rest.chars().next().unwrap_or_default();
            re.push_str(&regex::escape(&c.to_string()));
            rest = &rest[c.len_utf8()..];
        }
    }
    re.push('$');
    Regex::new(&re).map_err(|e| InvalidRule { rule: pattern.to_owned(), reason: e.to_string() })
}

impl TryFrom<DiffRules> for DiffOptions {
    type Error = InvalidRule;

    fn try_from(rules: DiffRules) -> Result<Self, InvalidRule> {
        Self::new(&rules)
    }
}

impl DiffOptions {
    pub fn new(rules: &DiffRules) -> Result<Self, InvalidRule> {
        let mut options = Self::default();
        options.ignore_headers.extend(rules.ignore_headers.iter().map(|h| h.to_ascii_lowercase()));
        options.ignore_paths = rules.ignore_paths.iter().map(|p| path_pattern(p)).collect::<Result<_, _>>()?;
        options.tolerance = rules.tolerance;
        options.set_arrays = rules.set_arrays.iter().map(|p| path_pattern(p)).collect::<Result<_, _>>()?;
        options.keyed_arrays =
            rules.keyed_arrays.iter().map(|k| Ok((path_pattern(&k.path)?, k.key.clone()))).collect::<Result<_, _>>()?;
        options.normalizers = rules
            .normalizers
            .iter()
            .map(|n| {
                Regex::new(&n.pattern)
                    .map(|re| (re, n.replace.clone()))
                    .map_err(|e| InvalidRule { rule: n.pattern.clone(), reason: e.to_string() })
            })
            .collect::<Result<_, _>>()?;
        Ok(options)
    }

    /// The same rules under other bounds (the correlator's configuration).
    #[must_use]
    pub fn with_limits(mut self, limits: DiffLimits) -> Self {
        self.limits = limits;
        self
    }

    pub fn limits(&self) -> &DiffLimits {
        &self.limits
    }

    pub(super) fn header_ignored(&self, name: &str) -> bool {
        self.ignore_headers.iter().any(|rule| match rule.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => name == rule,
        })
    }

    pub(super) fn path_ignored(&self, path: &str) -> bool {
        self.ignore_paths.iter().any(|re| re.is_match(path))
    }

    pub(super) fn array_mode(&self, path: &str) -> ArrayMode<'_> {
        if let Some((_, key)) = self.keyed_arrays.iter().find(|(re, _)| re.is_match(path)) {
            return ArrayMode::Keyed(key);
        }
        if self.set_arrays.iter().any(|re| re.is_match(path)) {
            return ArrayMode::Set;
        }
        ArrayMode::Ordered
    }

    /// The string after every normaliser, borrowed when none applies.
    pub(super) fn normalize<'a>(&self, s: &'a str) -> std::borrow::Cow<'a, str> {
        let mut out = std::borrow::Cow::Borrowed(s);
        for (re, replace) in &self.normalizers {
            if re.is_match(&out) {
                out = std::borrow::Cow::Owned(re.replace_all(&out, replace.as_str()).into_owned());
            }
        }
        out
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ArrayMode<'a> {
    Ordered,
    Set,
    Keyed(&'a str),
}

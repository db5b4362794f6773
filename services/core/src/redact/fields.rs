//! Names of secret-bearing fields (query parameters, form fields, JSON keys), matched the
//! way people spell them: case, `-` and `_` do not matter, so `api_key`, `apiKey` and
//! `API-KEY` are one name.

use std::borrow::Cow;
use std::collections::BTreeSet;

/// Query parameters (and form fields) redacted unless the config switches the defaults off.
pub const DEFAULT_QUERY_PARAMS: [&str; 10] =
    ["token", "access_token", "api_key", "apikey", "key", "password", "secret", "signature", "client_secret", "code"];

/// JSON keys (at any depth, and form fields) redacted unless the config switches the
/// defaults off.
pub const DEFAULT_JSON_KEYS: [&str; 17] = [
    "password",
    "passwd",
    "secret",
    "token",
    "access_token",
    "refresh_token",
    "api_key",
    "client_secret",
    "card_number",
    "cardnumber",
    "card_no",
    "pan",
    "cvv",
    "cvc",
    "cvv2",
    "ssn",
    "social_security_number",
];

/// `name` as it is compared: lower case, without `-` and `_`.
pub fn normalize(name: &str) -> Cow<'_, str> {
    if name.bytes().any(|b| b.is_ascii_uppercase() || b == b'-' || b == b'_') {
        Cow::Owned(name.chars().filter(|c| *c != '-' && *c != '_').map(|c| c.to_ascii_lowercase()).collect())
    } else {
        Cow::Borrowed(name)
    }
}

/// A set of field names, and a byte-level prefilter that finds every document that could
/// hold one of them, so bodies without any candidate are never parsed.
#[derive(Debug, Clone)]
pub(super) struct FieldNames {
    names: BTreeSet<String>,
    prefilter: Option<regex::bytes::Regex>,
}

impl FieldNames {
    pub(super) fn new<'a>(names: impl IntoIterator<Item = &'a String>) -> Self {
        let names: BTreeSet<String> =
            names.into_iter().map(|n| normalize(n).into_owned()).filter(|n| !n.is_empty()).collect();
        // Each name as a JSON key (quoted, then a colon), in any case, with any `-` and `_`
        // between its characters (as `normalize` drops them all); or `\u` anywhere, since a key may spell a
        // character as an escape the scan cannot see through. Only keys count, so a name in
        // ordinary text ("pan" in "company") costs the tap no parse.
        let alternatives: Vec<String> = names
            .iter()
            .map(|n| n.chars().map(|c| regex::escape(&c.to_string())).collect::<Vec<_>>().join("[-_]*"))
            .collect();
        let pattern = format!(r#""[-_]*(?:{})[-_]*"\s*:|\\u"#, alternatives.join("|"));
        let prefilter = (!names.is_empty())
            .then(|| regex::bytes::RegexBuilder::new(&pattern).case_insensitive(true).build().ok())
            .flatten();
        Self { names, prefilter }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    pub(super) fn contains(&self, name: &str) -> bool {
        self.names.contains(normalize(name).as_ref())
    }

    /// Whether `bytes` may contain one of the names (never a false "no").
    pub(super) fn may_occur_in(&self, bytes: &[u8]) -> bool {
        match &self.prefilter {
            Some(prefilter) => prefilter.is_match(bytes),
            // The names could not be compiled into a scan: assume the worst.
            None => !self.names.is_empty(),
        }
    }

    pub(super) fn union(&self, other: &Self) -> Self {
        Self::new(self.names.iter().chain(other.names.iter()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spelling_does_not_matter() {
        let names = FieldNames::new(&["api_key".to_owned()]);
        for spelled in ["api_key", "apiKey", "API-KEY", "apikey", "a__pi--key", "_api_key_"] {
            assert!(names.contains(spelled), "{spelled}");
            assert!(names.may_occur_in(format!(r#"{{"{spelled}":1}}"#).as_bytes()), "{spelled}");
        }
        assert!(!names.contains("api_keys"));
        assert!(!names.may_occur_in(br#"{"name":"x"}"#));
        assert!(!names.may_occur_in(br#"{"note":"my api_key is elsewhere"}"#), "only keys count");
        assert!(names.may_occur_in(b"{\"API-KEY\" \n : 1}"));
        assert!(names.may_occur_in(br#"{"api\u005fkey":"x"}"#), "an escaped key is parsed, not trusted");
    }
}

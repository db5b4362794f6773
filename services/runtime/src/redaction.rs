//! `[<service>.redaction]`: what never leaves a producer in clear. The tap and the mirror
//! read the same section, with the same keys, so a secret redacted in the primary's
//! response and the same secret in a shadow's give the same digest and still compare.

use base64::Engine;
use serde::{Deserialize, Deserializer};
use shadowdiff_core::redact::{self, JsonPath, Redactor, Sealer};

use crate::config::{ConfigError, Secret};

#[derive(Debug, Clone, Deserialize)]
pub struct RedactionConfig {
    /// Key of the digests (at least 16 bytes); shared by every tap and mirror that must
    /// produce comparable digests. Set it from a secret.
    pub hmac_key: Secret<String>,
    /// Redact the built-in names as well as those listed below: the usual credential
    /// headers, query parameters such as `token` and `api_key`, and JSON keys such as
    /// `password`, `cvv` and `ssn` at any depth. Switch off only deliberately.
    #[serde(default = "yes")]
    pub defaults: bool,
    /// Headers replaced by their digest, beyond the built-in ones.
    #[serde(default)]
    pub headers: Vec<String>,
    /// Query parameters and form fields replaced by their digest, in any case and with or
    /// without `-`/`_`, beyond the built-in ones.
    #[serde(default)]
    pub query_params: Vec<String>,
    /// JSON keys whose values are replaced by their digest at any depth (and form fields),
    /// in any spelling, beyond the built-in ones.
    #[serde(default)]
    pub json_keys: Vec<String>,
    /// JSON body paths (`user.password`, `cards[*].number`) replaced by their digest.
    #[serde(default, deserialize_with = "json_paths")]
    pub json_paths: Vec<JsonPath>,
    /// Headers also carried AEAD-sealed for the mirror, so replays can authenticate.
    #[serde(default)]
    pub sealed_headers: Vec<String>,
    /// 32-byte key, base64, shared only by the taps and the mirror; required with
    /// `sealed_headers`. Set it from a secret.
    #[serde(default)]
    pub seal_key: Option<SealKey>,
    /// Accept keys that are known placeholders or visibly weak. For local demos only.
    #[serde(default)]
    pub allow_demo_keys: bool,
}

const fn yes() -> bool {
    true
}

/// A seal key, decoded once from base64 when the config is read.
#[derive(Debug, Clone)]
pub struct SealKey(Secret<[u8; 32]>);

impl<'de> Deserialize<'de> for SealKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Secret::<String>::deserialize(deserializer)?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.expose().trim())
            .map_err(|_| serde::de::Error::custom("must be base64"))?;
        let key = <[u8; 32]>::try_from(bytes.as_slice())
            .map_err(|_| serde::de::Error::custom(format!("must decode to 32 bytes, got {}", bytes.len())))?;
        Ok(Self(Secret::new(key)))
    }
}

impl SealKey {
    pub fn sealer(&self) -> Sealer {
        // A 32-byte key is the one length Sealer accepts, so this cannot fail.
        Sealer::new(self.0.expose()).unwrap_or_else(|_| unreachable!("seal keys are 32 bytes by type"))
    }
}

fn json_paths<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<JsonPath>, D::Error> {
    Vec::<String>::deserialize(deserializer)?
        .iter()
        .map(|p| JsonPath::parse(p).map_err(serde::de::Error::custom))
        .collect()
}

/// Words that mark a value someone was meant to replace.
const PLACEHOLDERS: [&str; 8] =
    ["replace-me", "replaceme", "change-me", "changeme", "not-secret", "not-a-secret", "placeholder", "example"];

/// Why `key` is a placeholder or visibly weak, if it is.
fn weakness(key: &[u8]) -> Option<&'static str> {
    let text = String::from_utf8_lossy(key).to_ascii_lowercase();
    if PLACEHOLDERS.iter().any(|p| text.contains(p)) {
        return Some("is a placeholder");
    }
    let mut distinct = [false; 256];
    for b in key {
        distinct[usize::from(*b)] = true;
    }
    (distinct.iter().filter(|d| **d).count() < 8).then_some("is weak (fewer than 8 distinct bytes)")
}

impl RedactionConfig {
    /// The redactor these settings describe. `seal` adds the sealed companions of sealed
    /// headers (the tap); the mirror redacts without them.
    pub fn redactor(&self, seal: bool) -> Redactor {
        let with_defaults = |defaults: &[&str], extra: &[String]| {
            let builtin = defaults.iter().filter(|_| self.defaults).map(|s| (*s).to_owned());
            builtin.chain(extra.iter().cloned()).collect::<Vec<_>>()
        };
        let rules = redact::Rules {
            headers: with_defaults(&redact::DEFAULT_HEADERS, &self.headers),
            query_params: with_defaults(&redact::DEFAULT_QUERY_PARAMS, &self.query_params),
            json_keys: with_defaults(&redact::DEFAULT_JSON_KEYS, &self.json_keys),
            json_paths: self.json_paths.clone(),
            sealed_headers: self.sealed_headers.clone(),
        };
        let sealer = self.seal_key.as_ref().filter(|_| seal).map(SealKey::sealer);
        Redactor::new(self.hmac_key.expose().as_bytes(), rules, sealer)
    }

    /// The sealer that opens what the taps sealed, when a seal key is set.
    pub fn sealer(&self) -> Option<Sealer> {
        self.seal_key.as_ref().map(SealKey::sealer)
    }

    /// Checks the keys; `section` prefixes the keys named in errors (`tap.redaction`).
    pub fn validate(&self, section: &str, errors: &mut Vec<ConfigError>) {
        let hmac_key = self.hmac_key.expose().as_bytes();
        if hmac_key.len() < 16 {
            errors.push(ConfigError::rule(format!("{section}.hmac_key"), "must be at least 16 bytes"));
        }
        if self.seal_key.is_none() && !self.sealed_headers.is_empty() {
            errors.push(ConfigError::rule(format!("{section}.seal_key"), "is required with sealed_headers"));
        }
        if self.allow_demo_keys {
            return;
        }
        let keys = [("hmac_key", Some(hmac_key)), ("seal_key", self.seal_key.as_ref().map(|k| &k.0.expose()[..]))];
        for (name, key) in keys {
            if let Some(why) = key.and_then(weakness) {
                errors.push(ConfigError::rule(
                    format!("{section}.{name}"),
                    format!("{why}: generate one with `openssl rand -base64 32` (allow_demo_keys = true accepts it in a demo)"),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml: &str) -> Result<RedactionConfig, toml::de::Error> {
        toml::from_str(toml)
    }

    #[test]
    fn placeholder_and_weak_keys_are_refused_unless_in_a_demo() {
        let problems = |toml: &str| {
            let mut errors = Vec::new();
            parse(toml).unwrap().validate("tap.redaction", &mut errors);
            errors.into_iter().map(|e| e.to_string()).collect::<Vec<_>>()
        };
        let strong = "hmac_key = \"q8Vn3kT0xZr7LwP2mB9cYd4F\"\n";
        assert!(problems(strong).is_empty());
        let placeholder = problems("hmac_key = \"REPLACE-ME-fake-hmac-key-not-a-secret\"");
        assert_eq!(placeholder.len(), 1);
        assert!(placeholder[0].starts_with("tap.redaction.hmac_key: is a placeholder"), "{placeholder:?}");
        assert!(problems("hmac_key = \"aaaaaaaaaaaaaaaaaaaaaaaa\"")[0].contains("weak"));
        let zeros = format!("{strong}seal_key = \"{}\"", "A".repeat(43) + "=");
        assert!(problems(&zeros)[0].starts_with("tap.redaction.seal_key: is weak"), "{:?}", problems(&zeros));
        assert!(problems("hmac_key = \"demo-only-hmac-key-not-secret\"\nallow_demo_keys = true").is_empty());
        assert!(parse(&format!("{strong}seal_key = \"c2hvcnQ=\"")).unwrap_err().to_string().contains("32 bytes"));
    }

    #[test]
    fn debug_shows_no_key() {
        let config = parse(&format!(
            "hmac_key = \"hmac-CANARY-0123456789\"\nseal_key = \"{}\"",
            base64::engine::general_purpose::STANDARD.encode(*b"seal-CANARY-0123456789abcdefghij")
        ))
        .unwrap();
        assert!(!format!("{config:?}").contains("CANARY"), "{config:?}");
    }

    #[test]
    fn defaults_extend_and_switch_off() {
        let strong = "hmac_key = \"q8Vn3kT0xZr7LwP2mB9cYd4F\"\n";
        let with = parse(&format!("{strong}query_params = [\"sid\"]")).unwrap().redactor(false);
        let query = with.query("api_key=a&sid=b&q=c");
        assert!(!query.contains("api_key=a") && !query.contains("sid=b") && query.ends_with("&q=c"), "{query}");
        let without = parse(&format!("{strong}defaults = false\nquery_params = [\"sid\"]")).unwrap().redactor(false);
        assert!(without.query("api_key=a&sid=b").starts_with("api_key=a&sid=hmac"));
    }
}

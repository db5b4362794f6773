//! Redaction at the source: secrets never leave a producer (tap or mirror) in clear.
//!
//! Configured headers, query parameters, form fields, JSON keys (at any depth) and JSON
//! paths are replaced by a keyed digest, `hmac-sha256:<base64url>`: equal values give equal digests under the same key,
//! so two legs still compare, while the clear value never leaves the process. "Sealed"
//! headers additionally travel AEAD-encrypted (XChaCha20-Poly1305) under a key shared only
//! with the mirror, in a companion header `x-shadowdiff-sealed-<name>`, so a replay can
//! still authenticate; see [`Sealer`].

mod body;
mod fields;
mod json_path;
mod seal;

use std::borrow::Cow;
use std::collections::BTreeSet;

use fields::FieldNames;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

pub use fields::{DEFAULT_JSON_KEYS, DEFAULT_QUERY_PARAMS, normalize};
pub use json_path::{InvalidJsonPath, JsonPath};
pub use seal::{SEALED_PREFIX, SealError, Sealer};

use crate::event::Header;

/// Prefix of every digest the redactor writes.
pub const DIGEST_PREFIX: &str = "hmac-sha256:";
/// Prefix of the companion header that carries a sealed header's encrypted value.
pub const SEALED_HEADER_PREFIX: &str = "x-shadowdiff-sealed-";

/// Headers redacted when the config names none.
pub const DEFAULT_HEADERS: [&str; 5] = ["authorization", "cookie", "set-cookie", "proxy-authorization", "x-api-key"];

/// What to redact, and the keys to do it with.
pub struct Redactor {
    mac: Hmac<Sha256>,
    headers: BTreeSet<String>,
    query_params: FieldNames,
    json_keys: FieldNames,
    /// Form fields: the query parameters' names and the JSON keys'.
    form_fields: FieldNames,
    json_paths: Vec<JsonPath>,
    sealed: BTreeSet<String>,
    sealer: Option<Sealer>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor")
            .field("headers", &self.headers)
            .field("query_params", &self.query_params)
            .field("json_keys", &self.json_keys)
            .field("json_paths", &self.json_paths)
            .field("sealed", &self.sealed)
            .finish_non_exhaustive()
    }
}

/// The redaction rules, as plain data (services deserialize their config into this).
#[derive(Debug, Clone, Default)]
pub struct Rules {
    pub headers: Vec<String>,
    /// Query parameters and form fields, in any spelling ([`normalize`]).
    pub query_params: Vec<String>,
    /// JSON object keys at any depth, and form fields, in any spelling.
    pub json_keys: Vec<String>,
    pub json_paths: Vec<JsonPath>,
    /// Headers also carried sealed for replay; each is redacted too.
    pub sealed_headers: Vec<String>,
}

impl Redactor {
    /// `hmac_key` keys the digests; `sealer` is required when `rules.sealed_headers` is set.
    pub fn new(hmac_key: &[u8], rules: Rules, sealer: Option<Sealer>) -> Self {
        let lower = |names: &[String]| names.iter().map(|n| n.to_ascii_lowercase()).collect::<BTreeSet<_>>();
        // A sealed header is redacted like any other; only its sealed companion needs the key.
        let mut headers = lower(&rules.headers);
        headers.extend(lower(&rules.sealed_headers));
        let sealed = if sealer.is_some() { lower(&rules.sealed_headers) } else { BTreeSet::new() };
        let query_params = FieldNames::new(&rules.query_params);
        let json_keys = FieldNames::new(&rules.json_keys);
        Self {
            form_fields: query_params.union(&json_keys),
            query_params,
            json_keys,
            // HMAC accepts keys of any length, so this cannot fail.
            mac: Hmac::<Sha256>::new_from_slice(hmac_key).unwrap_or_else(|_| unreachable!("HMAC takes any key length")),
            headers,
            json_paths: rules.json_paths,
            sealed,
            sealer,
        }
    }

    /// The keyed digest of `value`.
    pub fn digest(&self, value: &[u8]) -> String {
        let mut mac = self.mac.clone();
        mac.update(value);
        format!("{DIGEST_PREFIX}{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
    }

    /// Replaces configured header values by digests, adding sealed companions.
    pub fn headers(&self, headers: &mut Vec<Header>) {
        let mut sealed = Vec::new();
        for header in headers.iter_mut() {
            let name = lowercase(&header.name);
            if !self.headers.contains(name.as_ref()) {
                continue;
            }
            if let (true, Some(sealer)) = (self.sealed.contains(name.as_ref()), &self.sealer) {
                sealed.push(Header::new(format!("{SEALED_HEADER_PREFIX}{name}"), sealer.seal(&name, &header.value)));
            }
            header.value = self.digest(&header.value).into_bytes();
        }
        // A client cannot smuggle its own "sealed" header past the mirror.
        let prefix = SEALED_HEADER_PREFIX.as_bytes();
        headers.retain(|h| !h.name.as_bytes().get(..prefix.len()).is_some_and(|p| p.eq_ignore_ascii_case(prefix)));
        headers.extend(sealed);
    }

    /// The query string with configured parameters' values replaced by digests; as it
    /// came when none is present, so a replay sends the client's exact query.
    pub fn query(&self, query: &str) -> String {
        self.form(query.as_bytes(), &self.query_params).unwrap_or_else(|| query.to_owned())
    }

    /// URL-encoded `text` with the values of `names` replaced by digests, or `None` when
    /// none of them is present.
    fn form(&self, text: &[u8], names: &FieldNames) -> Option<String> {
        if names.is_empty() || !form_urlencoded::parse(text).any(|(name, _)| names.contains(&name)) {
            return None;
        }
        let mut out = form_urlencoded::Serializer::new(String::new());
        for (name, value) in form_urlencoded::parse(text) {
            if names.contains(&name) {
                out.append_pair(&name, &self.digest(value.as_bytes()));
            } else {
                out.append_pair(&name, &value);
            }
        }
        Some(out.finish())
    }
}

/// `name` in ASCII lower case, borrowed when it already is (as the `http` crate keeps
/// every header name), so the common case allocates nothing.
fn lowercase(name: &str) -> Cow<'_, str> {
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(name.to_ascii_lowercase())
    } else {
        Cow::Borrowed(name)
    }
}

#[cfg(test)]
mod tests;

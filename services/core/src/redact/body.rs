//! Bodies: JSON keys and paths, and form fields, replaced by digests. The rules fail
//! closed: a body they should apply to but cannot read (cut short, compressed in an
//! unknown way, multipart, malformed) keeps only its length and hash.

use serde_json::Value;

use super::Redactor;
use super::fields::FieldNames;
use crate::event::body::{decode, encode};
use crate::event::{CapturedBody, Header, header_value};

/// How the rules see a body: JSON when it looks like JSON whatever its declared type
/// (what the type says and what a body holds can disagree), else by its declared type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Json,
    Form,
    Multipart,
    /// Text, HTML, images: no named fields for the rules to find.
    Opaque,
}

impl Kind {
    fn of(content_type: &str, plain: &[u8]) -> Self {
        if content_type.contains("json") || matches!(plain.iter().find(|b| !b.is_ascii_whitespace()), Some(b'{' | b'['))
        {
            Self::Json
        } else if content_type.starts_with("application/x-www-form-urlencoded") {
            Self::Form
        } else if content_type.starts_with("multipart/") {
            Self::Multipart
        } else {
            Self::Opaque
        }
    }
}

/// The rules matched something the redactor cannot rewrite.
struct Unreadable;

impl Redactor {
    /// Redacts the configured fields in a captured body, in its own Content-Encoding.
    pub fn body(&self, body: &mut CapturedBody, headers: &[Header]) {
        if body.bytes.is_empty() || (self.json_paths.is_empty() && self.form_fields.is_empty()) {
            return;
        }
        let encoding = header_value(headers, "content-encoding");
        // What cannot be decoded cannot be looked into: an unknown encoding, or a
        // compressed body cut short.
        let Some(plain) = decode(&body.bytes, encoding) else { return withhold(body) };
        let content_type = header_value(headers, "content-type")
            .map(|v| String::from_utf8_lossy(v).to_ascii_lowercase())
            .unwrap_or_default();
        let redacted = match Kind::of(&content_type, &plain) {
            Kind::Opaque => return,
            Kind::Multipart => Err(Unreadable),
            // A cut form keeps whole names, and a value cut short is still under its name.
            Kind::Form => Ok(self.form(&plain, &self.form_fields).map(String::into_bytes)),
            // A cut document cannot be parsed; its prefix is all that is kept, so it may
            // stay when no secret name is in it.
            Kind::Json if body.truncated => {
                if self.json_paths.is_empty() && !self.json_keys.may_occur_in(&plain) {
                    Ok(None)
                } else {
                    Err(Unreadable)
                }
            }
            Kind::Json => self.json(&plain),
        };
        match redacted.map(|plain| plain.map(|plain| encode(&plain, encoding))) {
            Ok(None) => {}
            Ok(Some(Some(bytes))) => body.bytes = bytes,
            Ok(Some(None)) | Err(Unreadable) => withhold(body),
        }
    }

    /// The JSON document with its secrets replaced, `None` when it holds none.
    fn json(&self, plain: &[u8]) -> Result<Option<Vec<u8>>, Unreadable> {
        let keys = self.json_keys.may_occur_in(plain);
        if !keys && self.json_paths.is_empty() {
            return Ok(None);
        }
        let mut value: Value = serde_json::from_slice(plain).map_err(|_| Unreadable)?;
        let digest = |v: &Value| Value::String(self.digest(v.to_string().as_bytes()));
        let mut changed = false;
        for path in &self.json_paths {
            changed |= path.replace(&mut value, &digest);
        }
        if keys {
            changed |= replace_keys(&mut value, &self.json_keys, &digest);
        }
        Ok(changed.then(|| value.to_string().into_bytes()))
    }
}

/// Replaces the value of every key in `names`, at any depth. serde_json's parser stops at
/// 128 levels, which bounds the recursion.
fn replace_keys(value: &mut Value, names: &FieldNames, with: &dyn Fn(&Value) -> Value) -> bool {
    match value {
        Value::Object(map) => map.iter_mut().fold(false, |changed, (key, v)| {
            if names.contains(key) {
                *v = with(v);
                true
            } else {
                replace_keys(v, names, with) | changed
            }
        }),
        Value::Array(items) => items.iter_mut().fold(false, |changed, v| replace_keys(v, names, with) | changed),
        _ => false,
    }
}

/// Keeps only the body's length and hash: it still compares by hash, and nothing unread
/// leaves the process.
fn withhold(body: &mut CapturedBody) {
    body.bytes = Vec::new();
    body.truncated = true;
}

//! Body comparison: undo the Content-Encoding (gzip, deflate, br), then compare as JSON,
//! as text, or by hash, whichever the bodies allow.

use std::borrow::Cow;

use super::limits::Found;
use super::options::DiffOptions;
use super::{DiffKind, Difference, json, text};
use crate::event::{CapturedBody, Header, RequestEvent, ResponseEvent, header_value};

/// What a body comparison reads of an event: its headers, for the body's encoding and type,
/// and its body. A response's, or a request's (an outbound call's payload).
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    pub headers: &'a [Header],
    pub body: &'a CapturedBody,
}

impl<'a> From<&'a ResponseEvent> for Message<'a> {
    fn from(event: &'a ResponseEvent) -> Self {
        Self { headers: &event.headers, body: &event.body }
    }
}

impl<'a> From<&'a RequestEvent> for Message<'a> {
    fn from(event: &'a RequestEvent) -> Self {
        Self { headers: &event.headers, body: &event.body }
    }
}

pub(super) fn diff(primary: Message<'_>, shadow: Message<'_>, options: &DiffOptions, out: &mut Found) {
    let (Some(p), Some(s)) = (decoded(primary), decoded(shadow)) else {
        out.push(hash_difference(primary, shadow));
        return;
    };
    if p == s {
        return; // the same document in two encodings
    }
    let (p_json, s_json) = (declared(primary, "json"), declared(shadow, "json"));
    if p_json || s_json {
        let parsed = (serde_json::from_slice(&p), serde_json::from_slice(&s));
        if let (Ok(pv), Ok(sv)) = &parsed {
            json::diff(pv, sv, options, out);
            return;
        }
        let invalid = |ok: bool, declared: bool| if declared && !ok { "invalid" } else { "valid" };
        out.push(Difference {
            kind: DiffKind::InvalidJson,
            path: "body".to_owned(),
            primary: Some(invalid(parsed.0.is_ok(), p_json).to_owned()),
            shadow: Some(invalid(parsed.1.is_ok(), s_json).to_owned()),
        });
    }
    match (std::str::from_utf8(&p), std::str::from_utf8(&s)) {
        (Ok(pt), Ok(st)) if textual(primary) && textual(shadow) => {
            text::diff(pt, st, options.limits().text_timeout, out)
        }
        _ => out.push(hash_difference(primary, shadow)),
    }
}

/// The whole body with its Content-Encoding undone; `None` when truncated, encoded in an
/// unknown way, corrupt, or too large decoded.
pub fn decoded<'a>(message: impl Into<Message<'a>>) -> Option<Cow<'a, [u8]>> {
    let message = message.into();
    if message.body.truncated {
        return None;
    }
    crate::event::body::decode(&message.body.bytes, header_value(message.headers, "content-encoding"))
}

fn declared(message: Message<'_>, kind: &str) -> bool {
    header_value(message.headers, "content-type")
        .is_some_and(|ct| String::from_utf8_lossy(ct).to_ascii_lowercase().contains(kind))
}

/// Declared text (or undeclared): compared line by line when valid UTF-8.
fn textual(message: Message<'_>) -> bool {
    match header_value(message.headers, "content-type") {
        None => true,
        Some(ct) => {
            let ct = String::from_utf8_lossy(ct).to_ascii_lowercase();
            ct.starts_with("text/")
                || ["json", "xml", "javascript", "x-www-form-urlencoded"].iter().any(|t| ct.contains(t))
        }
    }
}

fn hash_difference(primary: Message<'_>, shadow: Message<'_>) -> Difference {
    Difference {
        kind: DiffKind::BodyHash,
        path: "body".to_owned(),
        primary: Some(primary.body.sha256_hex()),
        shadow: Some(shadow.body.sha256_hex()),
    }
}

//! Comparing two responses to the same request.
//!
//! [`compare`] is the single entry point: it takes the primary's and a shadow's response
//! events and returns every [`Difference`], each typed and located by a path (`status`,
//! `body`, or a JSON path such as `items[3].price`). It is pure and allocation-light so the
//! correlator can run it inline for every exchange.

mod json;
mod text;

use serde::{Deserialize, Serialize};

use crate::event::{ResponseEvent, header_value};

/// What kind of difference was found at a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiffKind {
    /// HTTP status differs (or one leg has none).
    Status,
    /// Same JSON type at the path, different value.
    ChangedValue,
    /// Different JSON types at the path (e.g. number vs string).
    ChangedType,
    /// The primary has the field, the shadow does not.
    MissingField,
    /// The shadow has a field the primary does not.
    ExtraField,
    /// Arrays of different lengths.
    ArrayLength,
    /// Text bodies differ by lines; the values hold the removed and added lines.
    TextLines,
    /// Binary or truncated bodies differ; compared by the full-body hash.
    BodyHash,
}

impl DiffKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Status => "status",
            Self::ChangedValue => "changed_value",
            Self::ChangedType => "changed_type",
            Self::MissingField => "missing_field",
            Self::ExtraField => "extra_field",
            Self::ArrayLength => "array_length",
            Self::TextLines => "text_lines",
            Self::BodyHash => "body_hash",
        }
    }
}

/// One difference between the primary and a shadow, at one path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Difference {
    pub kind: DiffKind,
    /// `status`, `body`, or a JSON path below `body` such as `user.name` or `items[2]`.
    pub path: String,
    /// The primary's value, rendered as JSON (absent for an extra field).
    pub primary: Option<String>,
    /// The shadow's value, rendered as JSON (absent for a missing field).
    pub shadow: Option<String>,
}

/// Every difference between `primary` and `shadow`, status first, then body paths with
/// object keys in sorted order, so the output is deterministic.
pub fn compare(primary: &ResponseEvent, shadow: &ResponseEvent) -> Vec<Difference> {
    let mut out = Vec::new();
    if primary.status != shadow.status {
        out.push(Difference {
            kind: DiffKind::Status,
            path: "status".to_owned(),
            primary: primary.status.map(|s| s.to_string()),
            shadow: shadow.status.map(|s| s.to_string()),
        });
    }
    if primary.body.sha256 == shadow.body.sha256 {
        return out;
    }
    let complete = !primary.body.truncated && !shadow.body.truncated;
    if !complete {
        out.push(hash_difference(primary, shadow));
        return out;
    }
    match (as_json(primary), as_json(shadow)) {
        (Some(p), Some(s)) => json::diff(&p, &s, &mut out),
        _ => match (as_text(primary), as_text(shadow)) {
            (Some(p), Some(s)) => out.extend(text::diff(p, s)),
            _ => out.push(hash_difference(primary, shadow)),
        },
    }
    out
}

fn hash_difference(primary: &ResponseEvent, shadow: &ResponseEvent) -> Difference {
    Difference {
        kind: DiffKind::BodyHash,
        path: "body".to_owned(),
        primary: Some(primary.body.sha256_hex()),
        shadow: Some(shadow.body.sha256_hex()),
    }
}

fn content_type(response: &ResponseEvent) -> Option<String> {
    header_value(&response.headers, "content-type").map(|ct| String::from_utf8_lossy(ct).to_ascii_lowercase())
}

/// The body as text, when it is declared text (or undeclared) and valid UTF-8.
fn as_text(response: &ResponseEvent) -> Option<&str> {
    let text_like = content_type(response).as_deref().is_none_or(|ct| {
        ct.starts_with("text/") || ["json", "xml", "javascript", "x-www-form-urlencoded"].iter().any(|t| ct.contains(t))
    });
    if text_like { std::str::from_utf8(&response.body.bytes).ok() } else { None }
}

/// The body as JSON, when it is declared JSON (or undeclared) and parses.
fn as_json(response: &ResponseEvent) -> Option<serde_json::Value> {
    let json_like = content_type(response).as_deref().is_none_or(|ct| ct.contains("json"));
    if !json_like || response.body.bytes.is_empty() {
        return None;
    }
    serde_json::from_slice(&response.body.bytes).ok()
}

#[cfg(test)]
mod tests;

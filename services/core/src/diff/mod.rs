//! Comparing two responses to the same request.
//!
//! [`compare`] is the single entry point: it takes the primary's and a shadow's response
//! events and the route's [`DiffOptions`], and returns every [`Difference`], each typed and
//! located by a path (`status`, `header:<name>`, `body`, or a JSON path such as
//! `items[3].price`). Bodies are compared after undoing their Content-Encoding, so two
//! encodings of the same document are equal. It is pure, so the correlator runs it inline
//! for every exchange, and bounded ([`DiffLimits`]), so no pair of responses can make it run
//! or grow without end: past a bound it says what it cut (`overflow`, `diff_timeout`).

mod arrays;
mod body;
mod headers;
mod json;
mod limits;
mod options;
mod text;

pub use body::{Message, decoded as decoded_body};
pub use limits::DiffLimits;
pub use options::{DEFAULT_IGNORED_HEADERS, DiffOptions, DiffRules, InvalidRule, KeyedArray, Normalizer, Tolerance};

use serde::{Deserialize, Serialize};

use crate::event::ResponseEvent;

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
    /// The same elements in another order.
    OrderOnly,
    /// Declared JSON but does not parse (on the side whose value is `invalid`); the bodies
    /// are then compared as text.
    InvalidJson,
    /// Text bodies differ by lines; the values hold the removed and added lines.
    TextLines,
    /// Binary or truncated bodies differ; compared by the full-body hash.
    BodyHash,
    /// The body diff ran out of its budget and stopped; the differences found before are
    /// kept. At `body`; the primary value names the budget (`operations` for JSON, `time`
    /// for text).
    DiffTimeout,
    /// More differences than `DiffLimits::max_differences`: the first ones are kept and this
    /// one, at `differences`, stands for the rest. Primary value: how many were kept; shadow
    /// value: how many were dropped.
    Overflow,
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
            Self::OrderOnly => "order_only",
            Self::InvalidJson => "invalid_json",
            Self::TextLines => "text_lines",
            Self::BodyHash => "body_hash",
            Self::DiffTimeout => "diff_timeout",
            Self::Overflow => "overflow",
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

/// Every difference between `primary` and `shadow` under `options`: status first, then
/// headers, then body paths with object keys in sorted order, so the output is deterministic;
/// then the markers of what the limits cut, if anything (`diff_timeout`, `overflow`).
pub fn compare(primary: &ResponseEvent, shadow: &ResponseEvent, options: &DiffOptions) -> Vec<Difference> {
    let mut out = limits::Found::new(options.limits());
    if primary.status != shadow.status {
        out.push(Difference {
            kind: DiffKind::Status,
            path: "status".to_owned(),
            primary: primary.status.map(|s| s.to_string()),
            shadow: shadow.status.map(|s| s.to_string()),
        });
    }
    headers::diff(&primary.headers, &shadow.headers, options, &mut out);
    if primary.body.sha256 != shadow.body.sha256 {
        body::diff(primary.into(), shadow.into(), options, &mut out);
    }
    out.finish()
}

/// Every difference between two bodies under `options`, as [`compare`] finds them: an
/// outbound call's payloads, say. Paths are `body` or below it.
pub fn compare_bodies(primary: Message<'_>, shadow: Message<'_>, options: &DiffOptions) -> Vec<Difference> {
    let mut out = limits::Found::new(options.limits());
    if primary.body.sha256 != shadow.body.sha256 {
        body::diff(primary, shadow, options, &mut out);
    }
    out.finish()
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_bounds;

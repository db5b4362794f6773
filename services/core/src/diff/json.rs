//! Structural JSON diff: walks both documents together and reports typed differences by
//! path, applying the route's rules (ignored paths, tolerance, array modes, normalisers).
//!
//! Every value visited, hashed or compared costs one step of the comparison's budget
//! (`DiffLimits::max_operations`); when it runs out the walk stops where it is and the
//! comparison reports `diff_timeout`. Arrays are in `arrays`.

use std::io::Write;

use serde::Serialize;
use serde_json::Value;

use super::arrays;
use super::limits::{Budget, Found};
use super::options::DiffOptions;
use super::{DiffKind, Difference};

/// Longest rendering of one value. The correlator stores far less per value
/// (`max_value_bytes`); rendering a whole large array only to cut it would cost memory for
/// nothing.
const MAX_RENDERED_BYTES: usize = 64 * 1024;

pub(super) fn diff(primary: &Value, shadow: &Value, options: &DiffOptions, out: &mut Found) {
    let mut walker = Walker { o: options, left: options.limits().max_operations, exhausted: false };
    walker.walk(&mut String::new(), primary, shadow, out);
    if walker.exhausted {
        out.timed_out(Budget::Operations);
    }
}

/// Where a walk's differences go: the comparison's result, or a probe that only asks
/// whether two values are the same.
pub(super) trait Report {
    /// Adds the difference `make` builds. A probe does not call it, so nothing is rendered.
    fn report(&mut self, make: impl FnOnce() -> Difference);
    /// Whether the walk may stop now: a probe has its answer at the first difference.
    fn settled(&self) -> bool;
    /// Whether differences are wanted in detail; a probe wants only yes or no.
    fn detailed(&self) -> bool;
}

impl Report for Found {
    fn report(&mut self, make: impl FnOnce() -> Difference) {
        self.push_with(make);
    }
    fn settled(&self) -> bool {
        false
    }
    fn detailed(&self) -> bool {
        true
    }
}

#[derive(Default)]
struct Probe {
    differs: bool,
}

impl Report for Probe {
    fn report(&mut self, _: impl FnOnce() -> Difference) {
        self.differs = true;
    }
    fn settled(&self) -> bool {
        self.differs
    }
    fn detailed(&self) -> bool {
        false
    }
}

/// One walk over a pair of documents, with its budget of steps.
pub(super) struct Walker<'o> {
    pub(super) o: &'o DiffOptions,
    left: u64,
    exhausted: bool,
}

impl Walker<'_> {
    /// Takes one step from the budget; false once it is spent.
    pub(super) fn spend(&mut self) -> bool {
        if self.left == 0 {
            self.exhausted = true;
            return false;
        }
        self.left -= 1;
        true
    }

    pub(super) fn exhausted(&self) -> bool {
        self.exhausted
    }

    /// Whether `primary` and `shadow` have no difference at `path`. False once the budget
    /// is spent: the caller then stops as well.
    pub(super) fn same(&mut self, path: &str, primary: &Value, shadow: &Value) -> bool {
        let mut probe = Probe::default();
        self.walk(&mut path.to_owned(), primary, shadow, &mut probe);
        !probe.differs && !self.exhausted
    }

    pub(super) fn walk<R: Report>(&mut self, path: &mut String, primary: &Value, shadow: &Value, out: &mut R) {
        if out.settled() || !self.spend() {
            return;
        }
        let o = self.o;
        if !path.is_empty() && o.path_ignored(path) {
            return;
        }
        match (primary, shadow) {
            (Value::Object(p), Value::Object(s)) => {
                for (key, pv) in p {
                    if out.settled() || self.exhausted {
                        return;
                    }
                    let mark = path.len();
                    push_key(path, key);
                    match s.get(key) {
                        Some(sv) => self.walk(path, pv, sv, out),
                        None if !o.path_ignored(path) => {
                            out.report(|| difference(DiffKind::MissingField, path, Some(pv), None));
                        }
                        None => {}
                    }
                    path.truncate(mark);
                }
                for (key, sv) in s {
                    if out.settled() || !self.spend() {
                        return;
                    }
                    if p.contains_key(key) {
                        continue;
                    }
                    let mark = path.len();
                    push_key(path, key);
                    if !o.path_ignored(path) {
                        out.report(|| difference(DiffKind::ExtraField, path, None, Some(sv)));
                    }
                    path.truncate(mark);
                }
            }
            (Value::Array(p), Value::Array(s)) => arrays::compare(self, path, p, s, out),
            (Value::Number(p), Value::Number(s)) if within(o, p.as_f64(), s.as_f64()) => {}
            (Value::String(p), Value::String(s)) if o.normalize(p) == o.normalize(s) => {}
            (p, s) if p == s => {}
            (p, s) => {
                let kind = if std::mem::discriminant(p) == std::mem::discriminant(s) {
                    DiffKind::ChangedValue
                } else {
                    DiffKind::ChangedType
                };
                out.report(|| difference(kind, path, Some(p), Some(s)));
            }
        }
    }
}

fn within(o: &DiffOptions, p: Option<f64>, s: Option<f64>) -> bool {
    let (Some(t), Some(p), Some(s)) = (o.tolerance, p, s) else { return false };
    let delta = (p - s).abs();
    delta <= t.absolute || delta <= t.relative * p.abs().max(s.abs())
}

pub(super) fn push_key(path: &mut String, key: &str) {
    if !path.is_empty() {
        path.push('.');
    }
    path.push_str(key);
}

/// The root of the document is reported as `body`.
pub(super) fn display(path: &str) -> String {
    if path.is_empty() { "body".to_owned() } else { path.to_owned() }
}

pub(super) fn difference(kind: DiffKind, path: &str, primary: Option<&Value>, shadow: Option<&Value>) -> Difference {
    Difference { kind, path: display(path), primary: primary.map(render), shadow: shadow.map(render) }
}

/// `value` as JSON, cut after [`MAX_RENDERED_BYTES`] and then marked with `…`.
pub(super) fn render<T: Serialize + ?Sized>(value: &T) -> String {
    let mut out = Capped(Vec::new());
    let complete = serde_json::to_writer(&mut out, value).is_ok();
    let mut bytes = out.0;
    if complete {
        return String::from_utf8(bytes).unwrap_or_default();
    }
    // Cut mid-value, perhaps mid-character: keep the valid prefix.
    let valid = std::str::from_utf8(&bytes).map_or_else(|e| e.valid_up_to(), str::len);
    bytes.truncate(valid);
    let mut text = String::from_utf8(bytes).unwrap_or_default();
    text.push('…');
    text
}

/// A writer that takes [`MAX_RENDERED_BYTES`] and then refuses more.
struct Capped(Vec<u8>);

impl Write for Capped {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let room = MAX_RENDERED_BYTES - self.0.len();
        if room == 0 {
            return Err(std::io::Error::other("rendering cut"));
        }
        let taken = bytes.len().min(room);
        self.0.extend_from_slice(&bytes[..taken]);
        Ok(taken)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_whole_values_and_cuts_large_ones() {
        assert_eq!(render(&serde_json::json!({"a": [1, "é"]})), r#"{"a":[1,"é"]}"#);
        let large = Value::String("é".repeat(MAX_RENDERED_BYTES));
        let cut = render(&large);
        assert!(cut.ends_with('…') && cut.len() <= MAX_RENDERED_BYTES + '…'.len_utf8(), "{}", cut.len());
    }
}

//! Arrays: element by element (with a check for the same elements in another order), as
//! multisets (`set_arrays`), or matched on a field (`keyed_arrays`).
//!
//! Finding each element's equal on the other side is what made this quadratic. Elements
//! are first paired through a fingerprint: a hash that two elements equal under the rules
//! always share (numbers hash alike under a tolerance, strings after normalising, objects
//! without their ignored keys, set arrays in any order), so a shuffled array of `n`
//! elements costs a few steps per element. Only the elements the fingerprints cannot pair
//! (a rule that names one index, or no partner at all) are compared pairwise, and that,
//! like everything else, within the walker's budget of steps.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use serde_json::Value;

use super::json::{Report, Walker, difference, display, push_key, render};
use super::options::ArrayMode;
use super::{DiffKind, Difference};

pub(super) fn compare<R: Report>(w: &mut Walker<'_>, path: &mut String, p: &[Value], s: &[Value], out: &mut R) {
    let o = w.o;
    match o.array_mode(path) {
        ArrayMode::Ordered => ordered(w, path, p, s, out),
        ArrayMode::Set => set(w, path, p, s, out),
        ArrayMode::Keyed(key) => keyed(w, path, key, p, s, out),
    }
}

fn ordered<R: Report>(w: &mut Walker<'_>, path: &mut String, p: &[Value], s: &[Value], out: &mut R) {
    let mut first = 0;
    if p.len() == s.len() {
        // Equal arrays are the common case: find the first position that differs, if any.
        let Some(differs) = (0..p.len()).find(|&i| !w.same(&format!("{path}[{i}]"), &p[i], &s[i])) else {
            return;
        };
        if w.exhausted() {
            return;
        }
        // A probe has its answer; only a detailed report needs to know how they differ.
        if !out.detailed() || permutation(w, path, p, s) {
            out.report(|| Difference {
                kind: DiffKind::OrderOnly,
                path: display(path),
                primary: Some(render(p)),
                shadow: Some(render(s)),
            });
            return;
        }
        first = differs;
    } else {
        out.report(|| Difference {
            kind: DiffKind::ArrayLength,
            path: display(path),
            primary: Some(p.len().to_string()),
            shadow: Some(s.len().to_string()),
        });
    }
    for (i, (pv, sv)) in p.iter().zip(s).enumerate().skip(first) {
        if out.settled() || w.exhausted() {
            return;
        }
        let mark = path.len();
        path.push_str(&format!("[{i}]"));
        w.walk(path, pv, sv, out);
        path.truncate(mark);
    }
}

/// Whether `s` holds the same elements as `p`, in any order.
fn permutation(w: &mut Walker<'_>, path: &str, p: &[Value], s: &[Value]) -> bool {
    let at = |i: usize| format!("{path}[{i}]");
    matches!(pair(w, p, s, at, true), Some((left_p, left_s)) if left_p.is_empty() && left_s.is_empty())
}

fn set<R: Report>(w: &mut Walker<'_>, path: &str, p: &[Value], s: &[Value], out: &mut R) {
    let at = format!("{path}[*]");
    let Some((left_p, left_s)) = pair(w, p, s, |_| at.clone(), false) else {
        return; // out of budget: the comparison reports it
    };
    for i in left_p {
        out.report(|| difference(DiffKind::MissingField, &at, Some(&p[i]), None));
    }
    for j in left_s {
        out.report(|| difference(DiffKind::ExtraField, &at, None, Some(&s[j])));
    }
}

/// Pairs each element of `p` with one of `s` that is the same at `at(i)`: first among the
/// elements of `s` with its fingerprint, then among all those left. Returns the indices left
/// without a partner on each side, in order; `None` when the budget ran out, or, with
/// `stop_unpaired`, as soon as one element of `p` has no partner.
fn pair(
    w: &mut Walker<'_>,
    p: &[Value],
    s: &[Value],
    at: impl Fn(usize) -> String,
    stop_unpaired: bool,
) -> Option<(Vec<usize>, Vec<usize>)> {
    // Fingerprint → indices of `s`, highest first, so the lowest is taken (and removed) from
    // the end: repeated equal elements cost one step each, not a shift of the whole list.
    let mut buckets: HashMap<u64, Vec<usize>> = HashMap::new();
    for (j, sv) in s.iter().enumerate().rev() {
        let print = fingerprint(w, &mut at(j), sv);
        buckets.entry(print).or_default().push(j);
    }
    let mut left_p = Vec::new();
    for (i, pv) in p.iter().enumerate() {
        let here = at(i);
        let print = fingerprint(w, &mut here.clone(), pv);
        if w.exhausted() {
            return None;
        }
        let paired = buckets.get_mut(&print).and_then(|bucket| {
            let found = bucket.iter().rposition(|&j| w.same(&here, pv, &s[j]))?;
            Some(bucket.remove(found))
        });
        if paired.is_none() {
            left_p.push(i);
        }
    }
    let mut left_s: Vec<usize> = buckets.into_values().flatten().collect();
    left_s.sort_unstable();
    let mut unpaired = Vec::new();
    for i in left_p {
        let here = at(i);
        match left_s.iter().position(|&j| w.same(&here, &p[i], &s[j])) {
            Some(found) => {
                left_s.remove(found);
            }
            None if w.exhausted() || stop_unpaired => return None,
            None => unpaired.push(i),
        }
    }
    (!w.exhausted()).then_some((unpaired, left_s))
}

/// Fingerprint of any value at an ignored path: all such values are the same.
const IGNORED: u64 = 0x9e37_79b9_7f4a_7c15;

/// A hash of `value` at `path` that every value the same as it under the rules shares.
/// Coarse where equality is (numbers under a tolerance, keyed arrays by their keys only):
/// elements that share a fingerprint are still compared before they are paired.
fn fingerprint(w: &mut Walker<'_>, path: &mut String, value: &Value) -> u64 {
    if !w.spend() {
        return 0; // never used: the caller sees the budget spent
    }
    let o = w.o;
    if !path.is_empty() && o.path_ignored(path) {
        return IGNORED;
    }
    let mut h = DefaultHasher::new();
    match value {
        Value::Null => 0u8.hash(&mut h),
        Value::Bool(b) => (1u8, b).hash(&mut h),
        Value::Number(n) => {
            2u8.hash(&mut h);
            if o.tolerance.is_none() {
                n.hash(&mut h);
            }
        }
        Value::String(s) => (3u8, o.normalize(s)).hash(&mut h),
        Value::Array(items) => match o.array_mode(path) {
            ArrayMode::Ordered => {
                4u8.hash(&mut h);
                for (i, item) in items.iter().enumerate() {
                    let mark = path.len();
                    path.push_str(&format!("[{i}]"));
                    fingerprint(w, path, item).hash(&mut h);
                    path.truncate(mark);
                }
            }
            ArrayMode::Set => {
                let mark = path.len();
                path.push_str("[*]");
                // A sum, so the order of the elements does not matter but repeats do.
                let sum = items.iter().fold(0u64, |sum, item| sum.wrapping_add(fingerprint(w, path, item)));
                path.truncate(mark);
                (5u8, sum).hash(&mut h);
            }
            ArrayMode::Keyed(key) => {
                let mut keys: Vec<String> = items.iter().map(|item| key_of(item, key)).collect();
                keys.sort_unstable();
                (6u8, keys).hash(&mut h);
            }
        },
        Value::Object(fields) => {
            // A sum over the fields, so their order (under `preserve_order`) does not matter.
            let mut sum = 0u64;
            for (key, item) in fields {
                let mark = path.len();
                push_key(path, key);
                if !o.path_ignored(path) {
                    let mut field = DefaultHasher::new();
                    (key, fingerprint(w, path, item)).hash(&mut field);
                    sum = sum.wrapping_add(field.finish());
                }
                path.truncate(mark);
            }
            (7u8, sum).hash(&mut h);
        }
    }
    h.finish()
}

/// Elements matched on their `key` field. Repeated keys pair in order: the second element
/// with a key in `p` with the second one in `s`, so equal arrays always compare equal.
fn keyed<R: Report>(w: &mut Walker<'_>, path: &mut String, key: &str, p: &[Value], s: &[Value], out: &mut R) {
    // Key → indices of `s` with it, highest first, so the next one is popped from the end.
    let mut with_key: HashMap<String, Vec<usize>> = HashMap::new();
    for (j, sv) in s.iter().enumerate().rev() {
        if !w.spend() {
            return;
        }
        with_key.entry(key_of(sv, key)).or_default().push(j);
    }
    for pv in p {
        if out.settled() || !w.spend() {
            return;
        }
        let k = key_of(pv, key);
        let mark = path.len();
        path.push_str(&format!("[{key}={k}]"));
        match with_key.get_mut(&k).and_then(Vec::pop) {
            Some(j) => w.walk(path, pv, &s[j], out),
            None => out.report(|| difference(DiffKind::MissingField, path, Some(pv), None)),
        }
        path.truncate(mark);
    }
    let mut extra: Vec<(usize, String)> =
        with_key.into_iter().flat_map(|(k, left)| left.into_iter().map(move |j| (j, k.clone()))).collect();
    extra.sort_unstable();
    for (j, k) in extra {
        if out.settled() || !w.spend() {
            return;
        }
        let mark = path.len();
        path.push_str(&format!("[{key}={k}]"));
        out.report(|| difference(DiffKind::ExtraField, path, None, Some(&s[j])));
        path.truncate(mark);
    }
}

/// An element's key as it appears in a path: strings bare, anything else as JSON.
fn key_of(element: &Value, key: &str) -> String {
    match element.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(other) => render(other),
        None => "null".to_owned(),
    }
}

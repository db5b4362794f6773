//! Structural JSON diff: walks both documents together and reports typed differences by
//! path, applying the route's rules (ignored paths, tolerance, array modes, normalisers).

use serde_json::Value;

use super::options::{ArrayMode, DiffOptions};
use super::{DiffKind, Difference};

pub(super) fn diff(primary: &Value, shadow: &Value, options: &DiffOptions, out: &mut Vec<Difference>) {
    walk(&mut String::new(), primary, shadow, options, out);
}

/// Whether two values have no difference under `options`, at `path`.
fn same(path: &str, primary: &Value, shadow: &Value, options: &DiffOptions) -> bool {
    let mut found = Vec::new();
    walk(&mut path.to_owned(), primary, shadow, options, &mut found);
    found.is_empty()
}

fn walk(path: &mut String, primary: &Value, shadow: &Value, o: &DiffOptions, out: &mut Vec<Difference>) {
    if !path.is_empty() && o.path_ignored(path) {
        return;
    }
    match (primary, shadow) {
        (Value::Object(p), Value::Object(s)) => {
            for (key, pv) in p {
                let mark = path.len();
                push_key(path, key);
                match s.get(key) {
                    Some(sv) => walk(path, pv, sv, o, out),
                    None if !o.path_ignored(path) => out.push(difference(DiffKind::MissingField, path, Some(pv), None)),
                    None => {}
                }
                path.truncate(mark);
            }
            for (key, sv) in s.iter().filter(|(key, _)| !p.contains_key(*key)) {
                let mark = path.len();
                push_key(path, key);
                if !o.path_ignored(path) {
                    out.push(difference(DiffKind::ExtraField, path, None, Some(sv)));
                }
                path.truncate(mark);
            }
        }
        (Value::Array(p), Value::Array(s)) => match o.array_mode(path) {
            ArrayMode::Ordered => ordered(path, p, s, o, out),
            ArrayMode::Set => set(path, p, s, o, out),
            ArrayMode::Keyed(key) => keyed(path, key, p, s, o, out),
        },
        (Value::Number(p), Value::Number(s)) if within(o, p.as_f64(), s.as_f64()) => {}
        (Value::String(p), Value::String(s)) if o.normalize(p) == o.normalize(s) => {}
        (p, s) if p == s => {}
        (p, s) => {
            let kind = if std::mem::discriminant(p) == std::mem::discriminant(s) {
                DiffKind::ChangedValue
            } else {
                DiffKind::ChangedType
            };
            out.push(difference(kind, path, Some(p), Some(s)));
        }
    }
}

fn within(o: &DiffOptions, p: Option<f64>, s: Option<f64>) -> bool {
    let (Some(t), Some(p), Some(s)) = (o.tolerance, p, s) else { return false };
    let delta = (p - s).abs();
    delta <= t.absolute || delta <= t.relative * p.abs().max(s.abs())
}

fn ordered(path: &mut String, p: &[Value], s: &[Value], o: &DiffOptions, out: &mut Vec<Difference>) {
    let mut found = Vec::new();
    for (i, (pv, sv)) in p.iter().zip(s).enumerate() {
        let mark = path.len();
        path.push_str(&format!("[{i}]"));
        walk(path, pv, sv, o, &mut found);
        path.truncate(mark);
    }
    if p.len() == s.len() && !found.is_empty() && permutation(path, p, s, o) {
        out.push(Difference {
            kind: DiffKind::OrderOnly,
            path: display(path),
            primary: Some(Value::Array(p.to_vec()).to_string()),
            shadow: Some(Value::Array(s.to_vec()).to_string()),
        });
        return;
    }
    if p.len() != s.len() {
        out.push(Difference {
            kind: DiffKind::ArrayLength,
            path: display(path),
            primary: Some(p.len().to_string()),
            shadow: Some(s.len().to_string()),
        });
    }
    out.extend(found);
}

/// Whether `s` holds the same elements as `p`, in any order.
fn permutation(path: &str, p: &[Value], s: &[Value], o: &DiffOptions) -> bool {
    let mut unmatched: Vec<&Value> = s.iter().collect();
    for (i, pv) in p.iter().enumerate() {
        let at = format!("{path}[{i}]");
        match unmatched.iter().position(|sv| same(&at, pv, sv, o)) {
            Some(found) => {
                unmatched.swap_remove(found);
            }
            None => return false,
        }
    }
    unmatched.is_empty()
}

fn set(path: &mut String, p: &[Value], s: &[Value], o: &DiffOptions, out: &mut Vec<Difference>) {
    let at = format!("{}[*]", path);
    let mut unmatched: Vec<&Value> = s.iter().collect();
    for pv in p {
        match unmatched.iter().position(|sv| same(&at, pv, sv, o)) {
            Some(found) => {
                unmatched.swap_remove(found);
            }
            None => out.push(difference(DiffKind::MissingField, &at, Some(pv), None)),
        }
    }
    for sv in unmatched {
        out.push(difference(DiffKind::ExtraField, &at, None, Some(sv)));
    }
}

fn keyed(path: &mut String, key: &str, p: &[Value], s: &[Value], o: &DiffOptions, out: &mut Vec<Difference>) {
    let key_of = |v: &Value| v.get(key).map_or_else(|| "null".to_owned(), render_key);
    for pv in p {
        let k = key_of(pv);
        let mark = path.len();
        path.push_str(&format!("[{key}={k}]"));
        match s.iter().find(|sv| key_of(sv) == k) {
            Some(sv) => walk(path, pv, sv, o, out),
            None => out.push(difference(DiffKind::MissingField, path, Some(pv), None)),
        }
        path.truncate(mark);
    }
    for sv in s.iter().filter(|sv| !p.iter().any(|pv| key_of(pv) == key_of(sv))) {
        let mark = path.len();
        path.push_str(&format!("[{key}={}]", key_of(sv)));
        out.push(difference(DiffKind::ExtraField, path, None, Some(sv)));
        path.truncate(mark);
    }
}

/// A key value as it appears in a path: strings bare, anything else as JSON.
fn render_key(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn push_key(path: &mut String, key: &str) {
    if !path.is_empty() {
        path.push('.');
    }
    path.push_str(key);
}

/// The root of the document is reported as `body`.
fn display(path: &str) -> String {
    if path.is_empty() { "body".to_owned() } else { path.to_owned() }
}

fn difference(kind: DiffKind, path: &str, primary: Option<&Value>, shadow: Option<&Value>) -> Difference {
    Difference {
        kind,
        path: display(path),
        primary: primary.map(Value::to_string),
        shadow: shadow.map(Value::to_string),
    }
}

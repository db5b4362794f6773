//! Structural JSON diff: walks both documents together and reports typed differences by path.

use serde_json::Value;

use super::{DiffKind, Difference};

pub(super) fn diff(primary: &Value, shadow: &Value, out: &mut Vec<Difference>) {
    walk(&mut String::new(), primary, shadow, out);
}

fn walk(path: &mut String, primary: &Value, shadow: &Value, out: &mut Vec<Difference>) {
    match (primary, shadow) {
        (Value::Object(p), Value::Object(s)) => {
            for (key, pv) in p {
                let mark = path.len();
                push_key(path, key);
                match s.get(key) {
                    Some(sv) => walk(path, pv, sv, out),
                    None => out.push(difference(DiffKind::MissingField, path, Some(pv), None)),
                }
                path.truncate(mark);
            }
            for (key, sv) in s.iter().filter(|(key, _)| !p.contains_key(*key)) {
                let mark = path.len();
                push_key(path, key);
                out.push(difference(DiffKind::ExtraField, path, None, Some(sv)));
                path.truncate(mark);
            }
        }
        (Value::Array(p), Value::Array(s)) => {
            if p.len() != s.len() {
                out.push(Difference {
                    kind: DiffKind::ArrayLength,
                    path: display(path),
                    primary: Some(p.len().to_string()),
                    shadow: Some(s.len().to_string()),
                });
            }
            for (i, (pv, sv)) in p.iter().zip(s).enumerate() {
                let mark = path.len();
                path.push_str(&format!("[{i}]"));
                walk(path, pv, sv, out);
                path.truncate(mark);
            }
        }
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

//! Paths into a JSON document: `user.password`, `items[*].card`, `tokens[0]`.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Key(String),
    Index(usize),
    AnyIndex,
}

/// A parsed JSON path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPath {
    text: String,
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid JSON path {path:?}: {reason}")]
pub struct InvalidJsonPath {
    pub path: String,
    pub reason: &'static str,
}

impl JsonPath {
    pub fn parse(text: &str) -> Result<Self, InvalidJsonPath> {
        let fail = |reason| InvalidJsonPath { path: text.to_owned(), reason };
        let mut segments = Vec::new();
        for part in text.split('.') {
            let (key, mut rest) = part.split_once('[').map_or((part, ""), |(k, r)| (k, r));
            if !key.is_empty() {
                segments.push(Segment::Key(key.to_owned()));
            } else if rest.is_empty() && part.is_empty() {
                return Err(fail("empty segment"));
            }
            if !rest.is_empty() {
                rest = rest.strip_suffix(']').ok_or_else(|| fail("unclosed ["))?;
                for index in rest.split("][") {
                    segments.push(match index {
                        "*" => Segment::AnyIndex,
                        n => Segment::Index(n.parse().map_err(|_| fail("index must be a number or *"))?),
                    });
                }
            }
        }
        if segments.is_empty() {
            return Err(fail("empty path"));
        }
        Ok(Self { text: text.to_owned(), segments })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Replaces every value at this path with `with(value)`. Returns whether any matched.
    pub fn replace(&self, root: &mut Value, with: &dyn Fn(&Value) -> Value) -> bool {
        replace(root, &self.segments, with)
    }
}

fn replace(value: &mut Value, segments: &[Segment], with: &dyn Fn(&Value) -> Value) -> bool {
    let Some((first, rest)) = segments.split_first() else {
        *value = with(value);
        return true;
    };
    match (first, value) {
        (Segment::Key(key), Value::Object(map)) => map.get_mut(key).is_some_and(|v| replace(v, rest, with)),
        (Segment::Index(i), Value::Array(items)) => items.get_mut(*i).is_some_and(|v| replace(v, rest, with)),
        (Segment::AnyIndex, Value::Array(items)) => {
            items.iter_mut().fold(false, |changed, v| replace(v, rest, with) | changed)
        }
        _ => false,
    }
}

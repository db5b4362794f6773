//! The loading passes: file, environment, deserialize (repeatedly, to collect every bad
//! key), then cross-field validation.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use serde::de::DeserializeOwned;
use toml::{Table, Value};

use super::{ConfigError, ConfigErrors, Origin, Validate};

/// Prefix of every environment override.
pub(super) const ENV_PREFIX: &str = "SHADOWDIFF_";

/// Each failed pass removes one bad key, so this bounds the passes by the keys a file can
/// plausibly hold.
const MAX_PASSES: usize = 256;

/// Loads `file` (if any) with overrides from the process environment.
pub fn load_from_env<T: DeserializeOwned + Validate>(file: Option<&Path>) -> Result<T, ConfigErrors> {
    load(file, std::env::vars())
}

/// Loads `file` (if any) with overrides from `env`, reporting every problem at once.
pub fn load<T: DeserializeOwned + Validate>(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<T, ConfigErrors> {
    let table = match file {
        Some(path) => read_file(path)?,
        None => Table::new(),
    };
    from_table(table, file.map(|p| p.display().to_string()), env)
}

/// Loads config from TOML text (labelled `name` in errors), with overrides from `env`.
pub fn load_str<T: DeserializeOwned + Validate>(
    text: &str,
    name: &str,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<T, ConfigErrors> {
    let table = text.parse::<Table>().map_err(|e| {
        ConfigErrors(vec![ConfigError {
            key: "(file)".into(),
            message: e.to_string(),
            origin: Origin::File(name.to_owned()),
        }])
    })?;
    from_table(table, Some(name.to_owned()), env)
}

fn from_table<T: DeserializeOwned + Validate>(
    mut table: Table,
    file_name: Option<String>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<T, ConfigErrors> {
    let file_sections: BTreeSet<String> = table.keys().cloned().collect();

    // Environment values start as strings; a key whose field wants another type is re-read
    // as TOML on the first pass that trips over it (see `retype`).
    let mut from_env: HashMap<String, EnvValue> = HashMap::new();
    for (var, raw) in env {
        if is_service_link(&var, &raw) {
            continue;
        }
        if let Some(path) = env_path(&var) {
            set(&mut table, &path, Value::String(raw.clone()));
            from_env.insert(path.join("."), EnvValue { var, raw, retyped: false });
        }
    }

    let mut errors = Vec::new();
    let mut ignored = BTreeSet::new();
    let mut removed: Vec<String> = Vec::new();
    let mut parsed = None;
    for _ in 0..MAX_PASSES {
        let mut on_ignored = |path: serde_ignored::Path<'_>| {
            let segments: Vec<String> = path.to_string().split('.').map(str::to_owned).collect();
            ignored.insert(display_key(&segments));
        };
        let deserializer = serde_ignored::Deserializer::new(Value::Table(table.clone()), &mut on_ignored);
        match serde_path_to_error::deserialize::<_, T>(deserializer) {
            Ok(config) => {
                parsed = Some(config);
                break;
            }
            Err(err) => {
                let segments = segments(err.path());
                let key = display_key(&segments);
                if let Some(env) = from_env.get_mut(&key).filter(|env| !env.retyped) {
                    env.retyped = true;
                    if let Some(typed) = parse_scalar(&env.raw) {
                        set(&mut table, &segments, typed);
                        continue;
                    }
                }
                // A table missing a field because an earlier pass removed that bad field
                // is the same problem again, not a new one.
                if !removed.iter().any(|r| is_within(r, &key)) {
                    errors.push(ConfigError {
                        origin: origin(&key, &from_env, file_name.as_deref()),
                        key: if key.is_empty() { "(top level)".to_owned() } else { key.clone() },
                        message: err.into_inner().message().to_owned(),
                    });
                }
                if !remove(&mut table, &segments) {
                    break; // the top level itself is wrong: nothing left to learn
                }
                removed.push(key);
            }
        }
    }
    for key in &ignored {
        // A whole section that only the environment mentions belongs to another service
        // sharing this environment.
        let env_only_section = !key.contains(['.', '[']) && !file_sections.contains(key);
        if !env_only_section {
            errors.push(ConfigError {
                key: key.clone(),
                message: "unknown key".into(),
                origin: origin(key, &from_env, file_name.as_deref()),
            });
        }
    }
    match parsed {
        Some(config) => {
            config.validate(&mut errors);
            if errors.is_empty() { Ok(config) } else { Err(ConfigErrors(errors)) }
        }
        None => Err(ConfigErrors(errors)),
    }
}

/// Whether `removed` lies inside the table at `key` (the top level when `key` is empty).
fn is_within(removed: &str, key: &str) -> bool {
    if key.is_empty() {
        return !removed.contains(['.', '[']);
    }
    removed.strip_prefix(key).is_some_and(|rest| rest.starts_with(['.', '[']))
}

fn origin(key: &str, from_env: &HashMap<String, EnvValue>, file: Option<&str>) -> Origin {
    match (from_env.get(key), file) {
        (Some(env), _) => Origin::Env(env.var.clone()),
        (None, Some(file)) => Origin::File(file.to_owned()),
        (None, None) => Origin::Default,
    }
}

struct EnvValue {
    var: String,
    raw: String,
    retyped: bool,
}

fn read_file(path: &Path) -> Result<Table, ConfigErrors> {
    let fail = |message: String| {
        ConfigErrors(vec![ConfigError {
            key: "(file)".into(),
            message,
            origin: Origin::File(path.display().to_string()),
        }])
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read: {e}")))?;
    text.parse::<Table>().map_err(|e| fail(e.to_string()))
}

/// `SHADOWDIFF_KAFKA_LINGER_MS` → `["kafka", "linger_ms"]`.
fn env_path(var: &str) -> Option<Vec<String>> {
    let rest = var.strip_prefix(ENV_PREFIX)?;
    let (section, key) = rest.split_once('_')?;
    if section.is_empty() || key.is_empty() {
        return None;
    }
    let mut path = vec![section.to_ascii_lowercase()];
    path.extend(key.split("__").map(str::to_ascii_lowercase));
    Some(path)
}

/// Whether `var` is one of the variables Kubernetes' service links give every pod for each
/// Service in its namespace: a Service named `shadowdiff-verdict` yields
/// `SHADOWDIFF_VERDICT_SERVICE_HOST`, `SHADOWDIFF_VERDICT_PORT=tcp://10.0.0.1:8090`,
/// `SHADOWDIFF_VERDICT_PORT_8090_TCP_ADDR` and the like, which would otherwise read as keys
/// of `[verdict]`. No config key ends the way these do.
fn is_service_link(var: &str, value: &str) -> bool {
    let is_proto = |s: &str| matches!(s, "TCP" | "UDP" | "SCTP");
    let is_address = |v: &str| v.split_once("://").is_some_and(|(proto, _)| is_proto(&proto.to_ascii_uppercase()));
    if var.ends_with("_SERVICE_HOST") || var.ends_with("_SERVICE_PORT") || var.contains("_SERVICE_PORT_") {
        return true;
    }
    // `<NAME>_PORT_<number>_<PROTO>` and its `_PROTO`, `_PORT` and `_ADDR` companions.
    let parts: Vec<&str> = var.split('_').collect();
    let per_port = parts.windows(3).enumerate().any(|(i, w)| {
        let rest = &parts[i + 3..];
        w[0] == "PORT"
            && !w[1].is_empty()
            && w[1].bytes().all(|b| b.is_ascii_digit())
            && is_proto(w[2])
            && matches!(rest, [] | ["PROTO" | "PORT" | "ADDR"])
    });
    per_port || (var.ends_with("_PORT") && is_address(value))
}

/// A raw environment value read as a TOML value, when it is one and not a plain string.
fn parse_scalar(raw: &str) -> Option<Value> {
    let mut doc = format!("v = {raw}").parse::<Table>().ok()?;
    doc.remove("v").filter(|v| !v.is_str())
}

fn segments(path: &serde_path_to_error::Path) -> Vec<String> {
    use serde_path_to_error::Segment;
    path.iter()
        .filter_map(|segment| match segment {
            Segment::Map { key } => Some(key.clone()),
            Segment::Seq { index } => Some(index.to_string()),
            Segment::Enum { variant } => Some(variant.clone()),
            Segment::Unknown => None,
        })
        .collect()
}

/// `["a", "b", "0", "c"]` → `a.b[0].c`.
fn display_key(segments: &[String]) -> String {
    let mut key = String::new();
    for segment in segments {
        if segment.parse::<usize>().is_ok() {
            key.push_str(&format!("[{segment}]"));
        } else {
            if !key.is_empty() {
                key.push('.');
            }
            key.push_str(segment);
        }
    }
    key
}

fn set(table: &mut Table, path: &[String], value: Value) {
    let Some((last, parents)) = path.split_last() else { return };
    let mut current = table;
    for key in parents {
        let entry = current.entry(key.clone()).or_insert_with(|| Value::Table(Table::new()));
        if !entry.is_table() {
            *entry = Value::Table(Table::new());
        }
        let Value::Table(next) = entry else { return };
        current = next;
    }
    current.insert(last.clone(), value);
}

/// Removes the value at `path` (a key of a table or an element of an array). Returns
/// whether anything was removed; the top level itself cannot be.
fn remove(table: &mut Table, path: &[String]) -> bool {
    let Some((last, parents)) = path.split_last() else { return false };
    let mut current = Some(table);
    let mut value: Option<&mut Value> = None;
    for key in parents {
        value = match (current.take(), value.take()) {
            (Some(t), _) => t.get_mut(key),
            (None, Some(Value::Array(items))) => key.parse::<usize>().ok().and_then(|i| items.get_mut(i)),
            _ => None,
        };
        if let Some(Value::Table(_)) = value {
            let Some(Value::Table(t)) = value.take() else { return false };
            current = Some(t);
        }
    }
    match (current, value) {
        (Some(t), _) => t.remove(last).is_some(),
        (None, Some(Value::Array(items))) => match last.parse::<usize>() {
            Ok(i) if i < items.len() => {
                items.remove(i);
                true
            }
            _ => false,
        },
        _ => false,
    }
}

//! The recording schema, put together from the events' own schemas rather than restated: a
//! field change in `schemas/avro` reaches recordings without an edit here.
//!
//! Avro lets a schema define each named type once. Both event schemas define `Header` and
//! `CapturedBody`, so the response's definitions are replaced by references to the
//! request's, after checking that they define the same thing (docs aside).

use std::collections::BTreeMap;

use apache_avro::Schema;
use serde_json::{Value, json};

/// The events' schemas as the codec embeds them: the current ones, which the tap writes.
const REQUEST_EVENT_SCHEMA: &str = include_str!("../../../../schemas/avro/request_event.avsc");
const RESPONSE_EVENT_SCHEMA: &str = include_str!("../../../../schemas/avro/response_event.avsc");

pub(super) const NAMESPACE: &str = "dev.shadowdiff.recording";
pub(super) const NAME: &str = "RecordedExchange";

pub(super) fn build() -> Result<Schema, String> {
    let json = json_schema()?;
    Schema::parse(&json).map_err(|e| e.to_string())
}

pub(super) fn json_schema() -> Result<Value, String> {
    let request: Value = serde_json::from_str(REQUEST_EVENT_SCHEMA).map_err(|e| format!("request_event.avsc: {e}"))?;
    let mut primary: Value =
        serde_json::from_str(RESPONSE_EVENT_SCHEMA).map_err(|e| format!("response_event.avsc: {e}"))?;
    let mut defined = BTreeMap::new();
    collect(&request, "", &mut defined);
    refer(&mut primary, "", &defined)?;
    Ok(json!({
        "type": "record",
        "name": NAME,
        "namespace": NAMESPACE,
        "doc": "One exchange recorded by `shadowctl record`: the request event as the tap published it \
                (redacted; sealed headers stay sealed) and the primary's response event to it.",
        "fields": [
            {"name": "request", "type": request, "doc": "The request event (schemas/avro/request_event.avsc)."},
            {"name": "primary", "type": primary,
             "doc": "The primary's response event, role PRIMARY (schemas/avro/response_event.avsc)."}
        ]
    }))
}

/// A named type's full name, and the namespace its own children inherit.
fn full_name(definition: &serde_json::Map<String, Value>, enclosing: &str) -> Option<String> {
    let name = definition.get("name")?.as_str()?;
    if name.contains('.') {
        return Some(name.to_owned());
    }
    let namespace = definition.get("namespace").and_then(Value::as_str).unwrap_or(enclosing);
    Some(if namespace.is_empty() { name.to_owned() } else { format!("{namespace}.{name}") })
}

fn namespace_of(full_name: &str) -> &str {
    full_name.rsplit_once('.').map_or("", |(namespace, _)| namespace)
}

fn is_named(definition: &serde_json::Map<String, Value>) -> bool {
    matches!(definition.get("type").and_then(Value::as_str), Some("record" | "enum" | "fixed"))
}

/// The schemas nested in `schema`: field types, array items, map values, union branches.
fn children_mut(schema: &mut Value) -> Vec<&mut Value> {
    match schema {
        Value::Array(branches) => branches.iter_mut().collect(),
        Value::Object(object) => {
            let mut children: Vec<&mut Value> = Vec::new();
            for (key, value) in object.iter_mut() {
                match key.as_str() {
                    "items" | "values" => children.push(value),
                    "fields" => {
                        if let Value::Array(fields) = value {
                            children.extend(fields.iter_mut().filter_map(|f| f.get_mut("type")));
                        }
                    }
                    // `{"type": {...}}`: a complex type wrapped in another object.
                    "type" if value.is_object() || value.is_array() => children.push(value),
                    _ => {}
                }
            }
            children
        }
        _ => Vec::new(),
    }
}

/// Every named type defined in `schema`, by full name, with its docs stripped.
fn collect(schema: &Value, enclosing: &str, defined: &mut BTreeMap<String, Value>) {
    let mut inner = enclosing.to_owned();
    if let Value::Object(object) = schema
        && let Some(name) = is_named(object).then(|| full_name(object, enclosing)).flatten()
    {
        inner = namespace_of(&name).to_owned();
        defined.insert(name, without_docs(schema));
    }
    let mut copy = schema.clone();
    for child in children_mut(&mut copy) {
        collect(child, &inner, defined);
    }
}

/// Replaces each definition in `schema` of a type already `defined` by its full name.
fn refer(schema: &mut Value, enclosing: &str, defined: &BTreeMap<String, Value>) -> Result<(), String> {
    let mut inner = enclosing.to_owned();
    if let Value::Object(object) = schema
        && let Some(name) = is_named(object).then(|| full_name(object, enclosing)).flatten()
    {
        if let Some(earlier) = defined.get(&name) {
            if *earlier != without_docs(schema) {
                return Err(format!("{name} is defined differently by the request and the response schemas"));
            }
            *schema = Value::String(name);
            return Ok(());
        }
        inner = namespace_of(&name).to_owned();
    }
    for child in children_mut(schema) {
        refer(child, &inner, defined)?;
    }
    Ok(())
}

fn without_docs(schema: &Value) -> Value {
    match schema {
        Value::Object(object) => Value::Object(
            object.iter().filter(|(k, _)| *k != "doc").map(|(k, v)| (k.clone(), without_docs(v))).collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_docs).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_response_refers_to_the_requests_shared_types() {
        let schema = json_schema().unwrap();
        let primary = &schema["fields"][1]["type"];
        let field = |name: &str| primary["fields"].as_array().unwrap().iter().find(|f| f["name"] == name).unwrap();
        assert_eq!(field("headers")["type"]["items"], "dev.shadowdiff.events.Header");
        assert_eq!(field("body")["type"], "dev.shadowdiff.events.CapturedBody");
        assert_eq!(field("role")["type"]["name"], "Role", "types only the response defines stay defined");
        let request = &schema["fields"][0]["type"];
        assert_eq!(request["name"], "RequestEvent");
        assert!(build().is_ok());
    }

    #[test]
    fn a_type_defined_twice_differently_is_refused() {
        let mut defined = BTreeMap::new();
        collect(
            &json!({"type": "record", "name": "H", "namespace": "n", "fields": [{"name": "a", "type": "int"}]}),
            "",
            &mut defined,
        );
        let mut other = json!({
            "type": "array",
            "items": {"type": "record", "name": "n.H", "fields": [{"name": "a", "type": "long"}]}
        });
        assert!(refer(&mut other, "", &defined).unwrap_err().contains("n.H"));
        let mut same = json!({
            "type": "record", "name": "H", "namespace": "n", "doc": "x",
            "fields": [{"name": "a", "type": "int"}]
        });
        refer(&mut same, "", &defined).unwrap();
        assert_eq!(same, "n.H");
    }
}

use super::*;
use crate::event::{CapturedBody, Header, Role};

fn response(status: i32, body: &str) -> ResponseEvent {
    ResponseEvent {
        request_id: "r".into(),
        timestamp_ms: 0,
        role: Role::Primary,
        deployment: "prod".into(),
        status: Some(status),
        headers: vec![Header::new("content-type", "application/json")],
        body: CapturedBody::capture(body.as_bytes(), 1024),
        latency_us: 0,
        error: None,
    }
}

fn kinds_and_paths(diffs: &[Difference]) -> Vec<(DiffKind, &str)> {
    diffs.iter().map(|d| (d.kind, d.path.as_str())).collect()
}

#[test]
fn equal_responses_have_no_differences() {
    let a = response(200, r#"{"a":1,"b":[1,2]}"#);
    let b = response(200, r#"{ "b": [1, 2], "a": 1 }"#);
    assert!(compare(&a, &b).is_empty());
}

#[test]
fn typed_differences_at_paths() {
    let p = response(200, r#"{"user":{"name":"ann","age":3,"gone":true},"items":[{"id":1,"price":10}]}"#);
    let s = response(500, r#"{"user":{"name":"bob","age":"3","new":null},"items":[{"id":1,"price":11},{"id":2}]}"#);
    let diffs = compare(&p, &s);
    assert_eq!(
        kinds_and_paths(&diffs),
        vec![
            (DiffKind::Status, "status"),
            (DiffKind::ArrayLength, "items"),
            (DiffKind::ChangedValue, "items[0].price"),
            (DiffKind::ChangedType, "user.age"),
            (DiffKind::MissingField, "user.gone"),
            (DiffKind::ChangedValue, "user.name"),
            (DiffKind::ExtraField, "user.new"),
        ]
    );
    assert_eq!(diffs[5].primary.as_deref(), Some("\"ann\""));
    assert_eq!(diffs[5].shadow.as_deref(), Some("\"bob\""));
    assert_eq!(diffs[4].shadow, None);
}

#[test]
fn non_json_and_truncated_bodies_compare_by_hash() {
    let mut p = response(200, "plain");
    p.headers = vec![Header::new("content-type", "text/plain")];
    let mut s = p.clone();
    s.body = CapturedBody::capture(b"other", 1024);
    assert_eq!(kinds_and_paths(&compare(&p, &s)), vec![(DiffKind::BodyHash, "body")]);

    let p = response(200, r#"{"a":1,"b":2}"#);
    let mut s = p.clone();
    s.body = CapturedBody::capture(br#"{"a":1,"b":3}"#, 4);
    assert_eq!(kinds_and_paths(&compare(&p, &s)), vec![(DiffKind::BodyHash, "body")]);
}

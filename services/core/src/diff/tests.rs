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
        profile: None,
        stage: None,
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
fn truncated_bodies_compare_by_hash() {
    let p = response(200, r#"{"a":1,"b":2}"#);
    let mut s = p.clone();
    s.body = CapturedBody::capture(br#"{"a":1,"b":3}"#, 4);
    assert_eq!(kinds_and_paths(&compare(&p, &s)), vec![(DiffKind::BodyHash, "body")]);
}

#[test]
fn text_bodies_get_a_bounded_line_diff() {
    let mut p = response(200, "a\nb\nc\n");
    p.headers = vec![Header::new("content-type", "text/plain; charset=utf-8")];
    let mut s = p.clone();
    s.body = CapturedBody::capture(b"a\nB\nc\nd\n", 1024);
    let diffs = compare(&p, &s);
    assert_eq!(kinds_and_paths(&diffs), vec![(DiffKind::TextLines, "body")]);
    assert_eq!(diffs[0].primary.as_deref(), Some("b\n"));
    assert_eq!(diffs[0].shadow.as_deref(), Some("B\nd\n"));

    let long: String = (0..100).map(|i| format!("line {i}\n")).collect();
    let mut s = p.clone();
    s.body = CapturedBody::capture(long.as_bytes(), 1 << 20);
    let shadow = compare(&p, &s).remove(0).shadow.unwrap();
    assert!(shadow.ends_with("… 80 more line(s)\n"), "{shadow}");
}

#[test]
fn binary_bodies_compare_by_hash() {
    let mut p = response(200, "");
    p.headers = vec![Header::new("content-type", "image/png")];
    p.body = CapturedBody::capture(&[0x89, b'P', b'N', b'G', 1], 1024);
    let mut s = p.clone();
    s.body = CapturedBody::capture(&[0x89, b'P', b'N', b'G', 2], 1024);
    assert_eq!(kinds_and_paths(&compare(&p, &s)), vec![(DiffKind::BodyHash, "body")]);
}

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
        expected_legs: Vec::new(),
        run: String::new(),
    }
}

fn kinds_and_paths(diffs: &[Difference]) -> Vec<(DiffKind, &str)> {
    diffs.iter().map(|d| (d.kind, d.path.as_str())).collect()
}

#[test]
fn equal_responses_have_no_differences() {
    let a = response(200, r#"{"a":1,"b":[1,2]}"#);
    let b = response(200, r#"{ "b": [1, 2], "a": 1 }"#);
    assert!(compare(&a, &b, &DiffOptions::default()).is_empty());
}

#[test]
fn typed_differences_at_paths() {
    let p = response(200, r#"{"user":{"name":"ann","age":3,"gone":true},"items":[{"id":1,"price":10}]}"#);
    let s = response(500, r#"{"user":{"name":"bob","age":"3","new":null},"items":[{"id":1,"price":11},{"id":2}]}"#);
    let diffs = compare(&p, &s, &DiffOptions::default());
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
    assert_eq!(kinds_and_paths(&compare(&p, &s, &DiffOptions::default())), vec![(DiffKind::BodyHash, "body")]);
}

#[test]
fn text_bodies_get_a_bounded_line_diff() {
    let mut p = response(200, "a\nb\nc\n");
    p.headers = vec![Header::new("content-type", "text/plain; charset=utf-8")];
    let mut s = p.clone();
    s.body = CapturedBody::capture(b"a\nB\nc\nd\n", 1024);
    let diffs = compare(&p, &s, &DiffOptions::default());
    assert_eq!(kinds_and_paths(&diffs), vec![(DiffKind::TextLines, "body")]);
    assert_eq!(diffs[0].primary.as_deref(), Some("b\n"));
    assert_eq!(diffs[0].shadow.as_deref(), Some("B\nd\n"));

    let long: String = (0..100).map(|i| format!("line {i}\n")).collect();
    let mut s = p.clone();
    s.body = CapturedBody::capture(long.as_bytes(), 1 << 20);
    let shadow = compare(&p, &s, &DiffOptions::default()).remove(0).shadow.unwrap();
    assert!(shadow.ends_with("… 80 more line(s)\n"), "{shadow}");
}

#[test]
fn binary_bodies_compare_by_hash() {
    let mut p = response(200, "");
    p.headers = vec![Header::new("content-type", "image/png")];
    p.body = CapturedBody::capture(&[0x89, b'P', b'N', b'G', 1], 1024);
    let mut s = p.clone();
    s.body = CapturedBody::capture(&[0x89, b'P', b'N', b'G', 2], 1024);
    assert_eq!(kinds_and_paths(&compare(&p, &s, &DiffOptions::default())), vec![(DiffKind::BodyHash, "body")]);
}

fn with_headers(mut r: ResponseEvent, headers: &[(&str, &str)]) -> ResponseEvent {
    r.headers = headers.iter().map(|(n, v)| Header::new(*n, *v)).collect();
    r
}

fn rules(toml_text: &str) -> DiffOptions {
    DiffOptions::new(&toml::from_str::<DiffRules>(toml_text).unwrap()).unwrap()
}

#[test]
fn headers_differ_by_name_minus_the_ignore_list() {
    let p = with_headers(
        response(200, "{}"),
        &[
            ("content-type", "application/json"),
            ("Date", "Mon"),
            ("x-b3-traceid", "1"),
            ("cache-control", "max-age=60"),
            ("x-old", "1"),
        ],
    );
    let s = with_headers(
        response(200, "{}"),
        &[
            ("Content-Type", "application/json"),
            ("date", "Tue"),
            ("x-b3-traceid", "2"),
            ("cache-control", "no-store"),
            ("x-new", "1"),
        ],
    );
    let diffs = compare(&p, &s, &DiffOptions::default());
    assert_eq!(
        kinds_and_paths(&diffs),
        vec![
            (DiffKind::ChangedValue, "header:cache-control"),
            (DiffKind::MissingField, "header:x-old"),
            (DiffKind::ExtraField, "header:x-new"),
        ]
    );
    let relaxed = rules(r#"ignore_headers = ["cache-control", "x-old", "x-new"]"#);
    assert!(compare(&p, &s, &relaxed).is_empty());
}

fn encoded(body: &str, encoding: &str) -> ResponseEvent {
    use std::io::Write;
    let bytes = match encoding {
        "gzip" => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(body.as_bytes()).unwrap();
            e.finish().unwrap()
        }
        "deflate" => {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(body.as_bytes()).unwrap();
            e.finish().unwrap()
        }
        "br" => {
            let mut out = Vec::new();
            brotli::BrotliCompress(&mut body.as_bytes(), &mut out, &brotli::enc::BrotliEncoderParams::default())
                .unwrap();
            out
        }
        _ => body.as_bytes().to_vec(),
    };
    let mut r = response(200, "");
    r.body = CapturedBody::capture(&bytes, 1 << 20);
    r.headers.push(Header::new("content-encoding", encoding));
    r
}

#[test]
fn two_encodings_of_one_document_are_equal() {
    let doc = r#"{"a":1,"items":[1,2,3]}"#;
    let plain = response(200, doc);
    for encoding in ["gzip", "deflate", "br"] {
        assert!(compare(&plain, &encoded(doc, encoding), &DiffOptions::default()).is_empty(), "{encoding}");
    }
    let changed = encoded(r#"{"a":2,"items":[1,2,3]}"#, "gzip");
    assert_eq!(
        kinds_and_paths(&compare(&plain, &changed, &DiffOptions::default())),
        vec![(DiffKind::ChangedValue, "a")]
    );
    let corrupt = {
        let mut r = encoded(doc, "gzip");
        r.body = CapturedBody::capture(b"\x1f\x8bnot gzip", 1024);
        r
    };
    assert_eq!(
        kinds_and_paths(&compare(&plain, &corrupt, &DiffOptions::default())),
        vec![(DiffKind::BodyHash, "body")]
    );
}

#[test]
fn arrays_order_only_sets_and_keys() {
    let p = response(200, r#"{"tags":["a","b","c"],"items":[{"id":1,"v":"x"},{"id":2,"v":"y"}]}"#);
    let s = response(200, r#"{"tags":["c","a","b"],"items":[{"id":2,"v":"y"},{"id":1,"v":"z"},{"id":3,"v":"w"}]}"#);
    let default = compare(&p, &s, &DiffOptions::default());
    assert_eq!(default[0].kind, DiffKind::ArrayLength);
    assert!(kinds_and_paths(&default).contains(&(DiffKind::OrderOnly, "tags")), "{default:?}");

    let keyed = rules(
        r#"
        set_arrays = ["tags"]
        keyed_arrays = [{ path = "items", key = "id" }]
        "#,
    );
    assert_eq!(
        kinds_and_paths(&compare(&p, &s, &keyed)),
        vec![(DiffKind::ChangedValue, "items[id=1].v"), (DiffKind::ExtraField, "items[id=3]")]
    );
}

#[test]
fn tolerance_wildcard_ignores_and_normalisers() {
    let p = response(200, r#"{"price":100.0,"total":1000,"items":[{"updated_at":"t1","n":1}],"id":"req-1234"}"#);
    let s = response(200, r#"{"price":100.4,"total":1009,"items":[{"updated_at":"t2","n":1}],"id":"req-9876"}"#);
    let raw = kinds_and_paths(&compare(&p, &s, &DiffOptions::default())).len();
    assert_eq!(raw, 4);
    let relaxed = rules(
        r#"
        ignore_paths = ["items[*].updated_at"]
        tolerance = { absolute = 0.5, relative = 0.01 }
        normalizers = [{ pattern = "req-[0-9]+", replace = "req-N" }]
        "#,
    );
    assert!(compare(&p, &s, &relaxed).is_empty(), "{:?}", compare(&p, &s, &relaxed));
    let tight = rules("tolerance = { absolute = 0.1 }");
    assert!(kinds_and_paths(&compare(&p, &s, &tight)).contains(&(DiffKind::ChangedValue, "price")));
}

#[test]
fn invalid_json_under_a_json_type_is_flagged_and_compared_as_text() {
    let p = response(200, r#"{"a":1}"#);
    let s = response(200, r#"{"a":1"#);
    let diffs = compare(&p, &s, &DiffOptions::default());
    assert_eq!(kinds_and_paths(&diffs), vec![(DiffKind::InvalidJson, "body"), (DiffKind::TextLines, "body")]);
    assert_eq!((diffs[0].primary.as_deref(), diffs[0].shadow.as_deref()), (Some("valid"), Some("invalid")));
}

#[test]
fn bad_rules_are_named() {
    let err = DiffOptions::new(&DiffRules {
        normalizers: vec![Normalizer { pattern: "(".into(), replace: String::new() }],
        ..DiffRules::default()
    })
    .unwrap_err();
    assert_eq!(err.rule, "(");
}

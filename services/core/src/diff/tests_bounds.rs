//! The diff's bounds: large arrays, the budget of steps, the cap on differences, the text
//! deadline, and the fingerprints' agreement with the rules they stand in for.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::*;
use crate::event::{CapturedBody, Header, Role};

fn response(body: &Value) -> ResponseEvent {
    response_with("application/json", body.to_string().as_bytes())
}

fn response_with(content_type: &str, body: &[u8]) -> ResponseEvent {
    ResponseEvent {
        request_id: "r".into(),
        timestamp_ms: 0,
        role: Role::Primary,
        deployment: "prod".into(),
        status: Some(200),
        headers: vec![Header::new("content-type", content_type)],
        body: CapturedBody::capture(body, 64 << 20),
        latency_us: 0,
        error: None,
        profile: None,
        stage: None,
        expected_legs: Vec::new(),
        run: String::new(),
    }
}

fn rules(toml_text: &str) -> DiffOptions {
    DiffOptions::new(&toml::from_str::<DiffRules>(toml_text).unwrap()).unwrap()
}

fn limited(options: DiffOptions, max_differences: usize, max_operations: u64) -> DiffOptions {
    options.with_limits(DiffLimits { max_differences, max_operations, ..DiffLimits::default() })
}

fn kinds_and_paths(diffs: &[Difference]) -> Vec<(DiffKind, &str)> {
    diffs.iter().map(|d| (d.kind, d.path.as_str())).collect()
}

/// 0..n in a fixed shuffled order: `i·7919 mod n` is a permutation when n shares no factor
/// with the prime 7919.
fn shuffled(n: usize) -> Vec<usize> {
    (0..n).map(|i| i * 7919 % n).collect()
}

const N: usize = 20_000;

#[test]
fn a_shuffled_array_of_20000_is_order_only_in_linear_steps() {
    let p = response(&json!({ "items": (0..N).collect::<Vec<_>>() }));
    let s = response(&json!({ "items": shuffled(N) }));
    // About ten steps per element: the fingerprints pair them, nothing is compared pairwise.
    let options = limited(DiffOptions::default(), 100, 10 * N as u64);
    let started = Instant::now();
    let diffs = compare(&p, &s, &options);
    assert_eq!(kinds_and_paths(&diffs), vec![(DiffKind::OrderOnly, "items")]);
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
}

#[test]
fn a_shuffled_array_of_20000_objects_with_ignored_and_normalised_fields_is_order_only() {
    let item = |i: usize, stamp: &str| json!({ "id": format!("req-{i}"), "at": stamp, "n": i });
    let p = response(&json!({ "items": (0..N).map(|i| item(i, "t1")).collect::<Vec<_>>() }));
    let s = response(&json!({ "items": shuffled(N).into_iter().map(|i| item(i, "t2")).collect::<Vec<_>>() }));
    let options = rules(
        r#"
        ignore_paths = ["items[*].at"]
        normalizers = [{ pattern = "req-", replace = "r" }]
        "#,
    );
    assert_eq!(kinds_and_paths(&compare(&p, &s, &options)), vec![(DiffKind::OrderOnly, "items")]);
}

#[test]
fn a_shuffled_array_of_20000_over_budget_stops_with_the_marker() {
    // Under a tolerance every number shares one fingerprint, and as a set with every
    // element changed nothing pairs: the pairwise search that is left is quadratic.
    let p = response(&json!({ "items": (0..N).collect::<Vec<_>>() }));
    let s = response(&json!({ "items": shuffled(N).into_iter().map(|i| i as f64 + 0.5).collect::<Vec<_>>() }));
    let options = rules(
        r#"
        set_arrays = ["items"]
        tolerance = { absolute = 0.1 }
        "#,
    );
    let started = Instant::now();
    let diffs = compare(&p, &s, &options);
    assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());
    assert_eq!(kinds_and_paths(&diffs), vec![(DiffKind::DiffTimeout, "body")]);
    assert_eq!(diffs[0].primary.as_deref(), Some("operations"));
    assert_eq!(compare(&p, &s, &options), diffs, "a budget of steps stops at the same place every time");
}

#[test]
fn what_was_found_before_the_budget_ran_out_is_kept() {
    let p = response(&json!({ "a": 1, "items": (0..N).collect::<Vec<_>>() }));
    let s = response(&json!({ "a": 2, "items": shuffled(N) }));
    let diffs = compare(&p, &s, &limited(DiffOptions::default(), 100, 1000));
    assert_eq!(kinds_and_paths(&diffs), vec![(DiffKind::ChangedValue, "a"), (DiffKind::DiffTimeout, "body")]);
}

#[test]
fn a_cap_of_n_differences_keeps_n_and_a_marker_with_the_count_dropped() {
    let fields = |v: usize| (0..150).map(|i| (format!("f{i:03}"), json!(v))).collect::<serde_json::Map<_, _>>();
    let p = response(&Value::Object(fields(1)));
    let s = response(&Value::Object(fields(2)));
    for cap in [1, 10, 100] {
        let diffs = compare(&p, &s, &limited(DiffOptions::default(), cap, 1_000_000));
        assert_eq!(diffs.len(), cap + 1);
        assert!(diffs[..cap].iter().all(|d| d.kind == DiffKind::ChangedValue));
        let marker = &diffs[cap];
        assert_eq!((marker.kind, marker.path.as_str()), (DiffKind::Overflow, "differences"));
        let dropped = (150 - cap).to_string();
        assert_eq!((marker.primary.as_deref(), marker.shadow.as_deref()), (Some(&*cap.to_string()), Some(&*dropped)));
    }
    let all = compare(&p, &s, &limited(DiffOptions::default(), 150, 1_000_000));
    assert_eq!(all.len(), 150, "at the cap exactly, no marker");
    assert_eq!(DiffLimits::default().max_differences, 100);
}

#[test]
fn headers_count_towards_the_cap() {
    let mut p = response(&json!({}));
    let mut s = p.clone();
    for i in 0..20 {
        p.headers.push(Header::new(format!("x-h{i:02}"), "a"));
        s.headers.push(Header::new(format!("x-h{i:02}"), "b"));
    }
    let diffs = compare(&p, &s, &limited(DiffOptions::default(), 5, 1_000_000));
    assert_eq!(diffs.len(), 6);
    assert_eq!(diffs[5].shadow.as_deref(), Some("15"));
}

#[test]
fn a_text_diff_past_its_deadline_is_reported_with_the_marker() {
    let p = response_with("text/plain", b"a\nb\nc\n");
    let s = response_with("text/plain", b"a\nB\nc\n");
    let options =
        DiffOptions::default().with_limits(DiffLimits { text_timeout: Duration::ZERO, ..DiffLimits::default() });
    let diffs = compare(&p, &s, &options);
    assert_eq!(kinds_and_paths(&diffs), vec![(DiffKind::TextLines, "body"), (DiffKind::DiffTimeout, "body")]);
    assert_eq!(diffs[1].primary.as_deref(), Some("time"));
    assert_eq!(kinds_and_paths(&compare(&p, &s, &DiffOptions::default())), vec![(DiffKind::TextLines, "body")]);
}

#[test]
fn a_rule_that_names_one_index_still_finds_the_permutation() {
    // The fingerprints cannot know that `items[0].t` is ignored only at index 0, so these
    // elements do not pair by fingerprint; the pairwise search after it does.
    let p = response(&json!({ "items": [{ "n": 1, "t": "x" }, { "n": 2, "t": "y" }] }));
    let s = response(&json!({ "items": [{ "n": 2, "t": "y" }, { "n": 1, "t": "z" }] }));
    let options = rules(r#"ignore_paths = ["items[0].t"]"#);
    assert_eq!(kinds_and_paths(&compare(&p, &s, &options)), vec![(DiffKind::OrderOnly, "items")]);
}

#[test]
fn sets_count_repeats_and_report_what_is_left_in_order() {
    let options = rules(r#"set_arrays = ["tags"]"#);
    let p = response(&json!({ "tags": ["a", "a", "b", "c"] }));
    let s = response(&json!({ "tags": ["c", "d", "a", "b", "e"] }));
    let diffs = compare(&p, &s, &options);
    let found: Vec<_> = diffs.iter().map(|d| (d.kind, d.primary.as_deref(), d.shadow.as_deref())).collect();
    assert_eq!(
        found,
        vec![
            (DiffKind::MissingField, Some("\"a\""), None),
            (DiffKind::ExtraField, None, Some("\"d\"")),
            (DiffKind::ExtraField, None, Some("\"e\"")),
        ]
    );
}

#[test]
fn nested_arrays_under_rules_fingerprint_as_their_equality_does() {
    let options = rules(
        r#"
        set_arrays = ["rows[*].tags"]
        keyed_arrays = [{ path = "rows[*].items", key = "id" }]
        tolerance = { absolute = 0.5 }
        "#,
    );
    let row = |i: i64, tags: Value, items: Value| json!({ "i": i, "tags": tags, "items": items });
    let p = response(&json!({ "rows": [
        row(1, json!(["x", "y"]), json!([{ "id": 1, "v": 1.0 }, { "id": 2, "v": 2.0 }])),
        row(2, json!(["z"]), json!([])),
    ]}));
    let s = response(&json!({ "rows": [
        row(2, json!(["z"]), json!([])),
        row(1, json!(["y", "x"]), json!([{ "id": 2, "v": 2.2 }, { "id": 1, "v": 0.9 }])),
    ]}));
    assert_eq!(kinds_and_paths(&compare(&p, &s, &options)), vec![(DiffKind::OrderOnly, "rows")]);
}

#[test]
fn large_keyed_arrays_match_in_linear_steps() {
    let options = limited(rules(r#"keyed_arrays = [{ path = "items", key = "id" }]"#), 100, 20 * N as u64);
    let p = response(&json!({ "items": (0..N).map(|i| json!({ "id": i, "v": i })).collect::<Vec<_>>() }));
    let changed = |i: usize| json!({ "id": i, "v": if i == 7 { 0 } else { i } });
    let s = response(&json!({ "items": shuffled(N).into_iter().map(changed).collect::<Vec<_>>() }));
    assert_eq!(kinds_and_paths(&compare(&p, &s, &options)), vec![(DiffKind::ChangedValue, "items[id=7].v")]);
}

#[test]
fn repeated_keys_pair_in_order() {
    let options = rules(r#"keyed_arrays = [{ path = "items", key = "id" }]"#);
    let p = response(&json!({ "items": [{ "id": 1, "v": "a" }, false, null, { "id": 1, "v": "b" }] }));
    let pretty = response_with(
        "application/json",
        serde_json::to_string_pretty(&json!({ "items": [{ "id": 1, "v": "a" }, false, null, { "id": 1, "v": "b" }] }))
            .unwrap()
            .as_bytes(),
    );
    assert!(compare(&p, &pretty, &options).is_empty(), "an array equals itself, repeated keys and all");
    let s = response(&json!({ "items": [{ "id": 1, "v": "a" }, false, { "id": 1, "v": "c" }, { "id": 1, "v": "d" }] }));
    let diffs = compare(&p, &s, &options);
    let found: Vec<_> = diffs.iter().map(|d| (d.kind, d.path.as_str(), d.shadow.as_deref())).collect();
    assert_eq!(
        found,
        vec![
            (DiffKind::MissingField, "items[id=null]", None),
            (DiffKind::ChangedValue, "items[id=1].v", Some("\"c\"")),
            (DiffKind::ExtraField, "items[id=1]", Some(r#"{"id":1,"v":"d"}"#)),
        ]
    );
}

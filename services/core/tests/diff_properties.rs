//! Properties of the diff engine the correlator runs on every exchange, over arbitrary
//! documents and bodies: it never panics, stays within its bounds, is deterministic, finds
//! no difference between equal documents, and calls a shuffled array order-only (which
//! checks that its fingerprints agree with the rules they stand in for).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use serde_json::Value;
use shadowdiff_core::diff::{DiffKind, DiffLimits, DiffOptions, DiffRules, KeyedArray, Normalizer, Tolerance, compare};
use shadowdiff_core::{CapturedBody, Header, ResponseEvent, Role};

fn response(content_type: &str, body: &[u8]) -> ResponseEvent {
    ResponseEvent {
        request_id: "r".into(),
        timestamp_ms: 0,
        role: Role::Primary,
        deployment: "prod".into(),
        status: Some(200),
        headers: vec![Header::new("content-type", content_type)],
        body: CapturedBody::capture(body, 1 << 20),
        latency_us: 0,
        error: None,
        profile: None,
        stage: None,
        expected_legs: Vec::new(),
        run: String::new(),
    }
}

/// Documents over small alphabets, so that equal keys, values and elements are common.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        (-3i64..3).prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-10.0f64..10.0).prop_map(Value::from),
        "[ab]{0,2}".prop_map(Value::from),
        ".{0,8}".prop_map(Value::from),
    ];
    leaf.prop_recursive(5, 96, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..7).prop_map(Value::Array),
            prop::collection::btree_map("[a-d]|id|items", inner, 0..5)
                .prop_map(|fields| Value::Object(fields.into_iter().collect())),
        ]
    })
}

/// Rule sets that exercise every array mode, tolerance, ignores (one by index) and
/// normalisers, at the root and below it, under small limits.
fn rules() -> impl Strategy<Value = DiffOptions> {
    (prop::sample::select(rule_sets(true)), 1usize..20, 50u64..5000).prop_map(
        |(rules, max_differences, max_operations)| {
            let limits = DiffLimits { max_differences, max_operations, ..DiffLimits::default() };
            DiffOptions::new(&rules).unwrap().with_limits(limits)
        },
    )
}

/// With `all`, every rule set; without, only those under which "the same" is an equivalence
/// and the root array is matched as a whole. A tolerance is not transitive, a rule that
/// names one index depends on where an element stands, and a keyed root array matches by key
/// only: under those, pairing the elements of a shuffle one by one can miss (as it did
/// before fingerprints), and a shuffle may show as differences.
fn rule_sets(all: bool) -> Vec<DiffRules> {
    let mut sets = vec![
        DiffRules::default(),
        DiffRules { set_arrays: vec!["items".into(), "*.items".into(), "items[*]".into()], ..DiffRules::default() },
        DiffRules {
            keyed_arrays: vec![KeyedArray { path: "items[*].items".into(), key: "a".into() }],
            ..DiffRules::default()
        },
        DiffRules { ignore_paths: vec!["items[*].a".into(), "*.b".into()], ..DiffRules::default() },
        DiffRules {
            normalizers: vec![Normalizer { pattern: "[ab]".into(), replace: "x".into() }],
            set_arrays: vec!["items[*].items".into()],
            ..DiffRules::default()
        },
    ];
    if all {
        sets.extend([
            DiffRules {
                keyed_arrays: vec![KeyedArray { path: "items".into(), key: "id".into() }],
                ..DiffRules::default()
            },
            DiffRules { tolerance: Some(Tolerance { absolute: 0.5, relative: 0.1 }), ..DiffRules::default() },
            DiffRules { ignore_paths: vec!["items[0]".into(), "items[1].a".into()], ..DiffRules::default() },
        ]);
    }
    sets
}

fn is_marker(kind: DiffKind) -> bool {
    matches!(kind, DiffKind::Overflow | DiffKind::DiffTimeout)
}

proptest! {
    // Cases from PROPTEST_CASES (256 by default); a failure is kept in
    // diff_properties.proptest-regressions and replayed first on every later run.
    #[test]
    fn any_two_documents_compare_within_bounds(p in json(), s in json(), options in rules()) {
        let pr = response("application/json", p.to_string().as_bytes());
        let sr = response("application/json", s.to_string().as_bytes());
        let found = compare(&pr, &sr, &options);
        let limits = options.limits();
        let kept = found.iter().filter(|d| !is_marker(d.kind)).count();
        prop_assert!(kept <= limits.max_differences, "{} kept over a cap of {}", kept, limits.max_differences);
        prop_assert!(found.len() <= limits.max_differences + 2);
        let overflow = found.iter().filter(|d| d.kind == DiffKind::Overflow).count();
        prop_assert!(overflow <= 1);
        if overflow == 1 {
            prop_assert_eq!(kept, limits.max_differences, "the marker only once the cap is full");
        }
        prop_assert_eq!(compare(&pr, &sr, &options), found, "deterministic");
    }

    #[test]
    fn equal_documents_have_no_differences(p in json(), options in rules()) {
        // Two renderings of one document, so the hashes differ and the JSON is walked.
        let compact = response("application/json", p.to_string().as_bytes());
        let pretty = response("application/json", serde_json::to_string_pretty(&p).unwrap().as_bytes());
        let found = compare(&compact, &pretty, &options);
        prop_assert!(found.iter().all(|d| d.kind == DiffKind::DiffTimeout), "{:?}", found);
    }

    #[test]
    fn a_shuffled_array_is_at_most_order_only(
        items in prop::collection::vec(json(), 0..12),
        seed in any::<u64>(),
        rules in prop::sample::select(rule_sets(false)),
    ) {
        let options = DiffOptions::new(&rules).unwrap();
        let mut shuffled = items.clone();
        // Fisher–Yates on a fixed generator, so a failure shrinks and replays.
        let mut state = seed | 1;
        for i in (1..shuffled.len()).rev() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            shuffled.swap(i, usize::try_from(state % (i as u64 + 1)).unwrap());
        }
        let p = response("application/json", serde_json::json!({ "items": items }).to_string().as_bytes());
        let s = response("application/json", serde_json::json!({ "items": shuffled }).to_string().as_bytes());
        let found = compare(&p, &s, &options);
        prop_assert!(
            found.is_empty() || (found.len() == 1 && found[0].kind == DiffKind::OrderOnly && found[0].path == "items"),
            "{:?}", found
        );
    }

    #[test]
    fn any_bodies_compare_without_panicking(
        p in prop::collection::vec(any::<u8>(), 0..256),
        s in prop::collection::vec(any::<u8>(), 0..256),
        p_type in prop::sample::select(vec!["application/json", "text/plain", "image/png", "text/html; charset=utf-8"]),
        s_type in prop::sample::select(vec!["application/json", "text/plain", "application/octet-stream"]),
        encoding in prop::sample::select(vec!["", "gzip", "br", "deflate", "zstd"]),
        options in rules(),
    ) {
        let mut pr = response(p_type, &p);
        let mut sr = response(s_type, &s);
        if !encoding.is_empty() {
            pr.headers.push(Header::new("content-encoding", encoding));
            sr.headers.push(Header::new("content-encoding", encoding));
        }
        let found = compare(&pr, &sr, &options);
        prop_assert!(found.len() <= options.limits().max_differences + 2);
    }
}

//! What a diff costs next to parsing: pairs of JSON documents of about 1 KB, 10 KB and
//! 100 KB, equal, with 1 difference and with 50, each reported beside the time serde_json
//! takes to parse both documents of the pair. Target: a diff at most 2x that parse.

// A benchmark fails by panicking, like a test.
#![allow(clippy::expect_used)]

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};
use shadowdiff_core::diff::{DiffOptions, compare};
use shadowdiff_core::{CapturedBody, Header, ResponseEvent, Role};

/// A document of `items` catalogue entries (about 100 bytes each).
fn document(items: usize) -> Value {
    let list: Vec<Value> = (0..items)
        .map(|i| json!({ "id": i, "name": format!("item-{i}"), "price": i * 100, "tags": ["a", "b"], "stock": true }))
        .collect();
    json!({ "page": 1, "total": items, "items": list })
}

fn with_differences(mut doc: Value, n: usize) -> Value {
    for i in 0..n {
        doc["items"][i]["price"] = json!(i * 100 + 1);
    }
    doc
}

fn event(doc: &Value) -> ResponseEvent {
    ResponseEvent {
        request_id: "r".into(),
        timestamp_ms: 0,
        role: Role::Primary,
        deployment: "d".into(),
        status: Some(200),
        headers: vec![Header::new("content-type", "application/json")],
        body: CapturedBody::capture(doc.to_string().as_bytes(), 1 << 20),
        latency_us: 0,
        error: None,
        profile: None,
        stage: None,
        expected_legs: Vec::new(),
        run: String::new(),
    }
}

fn diff(c: &mut Criterion) {
    let options = DiffOptions::default();
    let mut group = c.benchmark_group("json");
    for (label, items) in [("1KB", 10), ("10KB", 100), ("100KB", 1000)] {
        let base = document(items);
        let primary = event(&base);
        group.bench_with_input(BenchmarkId::new("parse both", label), &primary, |b, p| {
            b.iter(|| {
                let a: Value = serde_json::from_slice(&p.body.bytes).expect("parses");
                let b: Value = serde_json::from_slice(&p.body.bytes).expect("parses");
                (a, b)
            })
        });
        for changes in [0, 1, 50.min(items)] {
            let shadow = event(&with_differences(base.clone(), changes));
            let name = format!("diff, {changes} differences");
            group.bench_with_input(BenchmarkId::new(name, label), &shadow, |b, s| {
                b.iter(|| compare(&primary, s, &options))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, diff);
criterion_main!(benches);

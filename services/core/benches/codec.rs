//! What encoding and decoding one event costs: the tap encodes two per captured exchange
//! on its background path, the correlator decodes them all.

// A benchmark fails by panicking, like a test.
#![allow(clippy::expect_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use shadowdiff_core::{CapturedBody, EventCodec, Header, RequestEvent, ResponseEvent, Role};

fn request() -> RequestEvent {
    RequestEvent {
        request_id: "0192f5a0-7c1e-7000-8000-000000000001".into(),
        timestamp_ms: 1_763_900_000_123,
        tap_id: "tap-0".into(),
        method: "GET".into(),
        scheme: "http".into(),
        authority: "api.example".into(),
        path: "/users/42".into(),
        query: Some("verbose=1".into()),
        route_template: Some("/users/{id}".into()),
        headers: (0..12).map(|i| Header::new(format!("x-header-{i}"), "some header value")).collect(),
        body: CapturedBody::capture(&[b'x'; 1024], 256 * 1024),
        run: String::new(),
    }
}

fn response() -> ResponseEvent {
    ResponseEvent {
        request_id: "0192f5a0-7c1e-7000-8000-000000000001".into(),
        timestamp_ms: 1_763_900_000_456,
        role: Role::Primary,
        deployment: "primary".into(),
        status: Some(200),
        headers: (0..8).map(|i| Header::new(format!("x-header-{i}"), "some header value")).collect(),
        body: CapturedBody::capture(&[b'y'; 1024], 256 * 1024),
        latency_us: 1_500,
        error: None,
        profile: None,
        stage: None,
        expected_legs: Vec::new(),
        run: String::new(),
    }
}

fn codec(c: &mut Criterion) {
    let codec = EventCodec::new().expect("embedded schemas parse");
    let (request, response) = (request(), response());
    let encoded = codec.encode(&request).expect("encodes");
    c.bench_function("encode request (1 KiB body, 12 headers)", |b| b.iter(|| codec.encode(&request)));
    c.bench_function("encode response (1 KiB body, 8 headers)", |b| b.iter(|| codec.encode(&response)));
    c.bench_function("decode request", |b| b.iter(|| codec.decode::<RequestEvent>(&encoded)));
}

criterion_group!(benches, codec);
criterion_main!(benches);

//! Properties of shadow profiles, which reach a replica from the config file, the admin API
//! and the profile topic: no JSON value or text panics parsing, vetting, applying or
//! matching them, every profile within the documented bounds is accepted, and what a
//! replica builds from an accepted profile (queues, concurrency bounds, rate limiter, HTTP
//! client) builds without panicking, the bounds at their maxima included.
//!
//! `Target::new` and `Replayer::new` are crate-private, so the replica's part is checked
//! through the same public constructors they call, with the same arguments.
//!
//! Cases come from `PROPTEST_CASES` (256 by default; `deploy/fuzz/run.sh` runs a million).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::num::NonZeroU32;
use std::time::Duration;

use governor::{Quota, RateLimiter};
use proptest::prelude::*;
use serde_json::{Value, json};
use shadowdiff_core::{CapturedBody, Header, RequestEvent, RequestId};
use shadowdiff_mirror::profile::{
    Faults, HeaderPredicate, Match, Profile, Stage, TargetRole, TargetSpec, UnsafeMethods, bounds,
};
use shadowdiff_mirror::vet::TargetPolicy;

fn policy() -> TargetPolicy {
    TargetPolicy {
        allowed_targets: ["*.shop.svc.cluster.local", "api.example.net", "10.20.0.0/16", "fd00:20::/32"]
            .iter()
            .map(|p| p.parse().unwrap())
            .collect(),
        allow_loopback: false,
        allow_link_local: false,
    }
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof!["[A-Za-z0-9._-]{1,12}", "[A-Za-z0-9._-]{64}",]
}

/// A value in `low..=high`, often at one of its ends.
fn bounded_u64(low: u64, high: u64) -> impl Strategy<Value = u64> {
    prop_oneof![Just(low), Just(high), low..=high]
}

/// Percentages with two decimals: serde_json (without `float_roundtrip`) may read a
/// 17-digit float back one ULP off, which would fail the round trip for no real reason.
fn percent() -> impl Strategy<Value = f64> {
    prop_oneof![Just(0.0), Just(100.0), (0u32..=10_000).prop_map(|n| f64::from(n) / 100.0)]
}

fn base_url() -> impl Strategy<Value = url::Url> {
    (
        prop::sample::select(vec![
            "http://v2.shop.svc.cluster.local:8080",
            "https://candidate.shop.svc.cluster.local",
            "http://api.example.net",
            "http://10.20.3.4:9000",
            "https://[fd00:20::7]:8443",
        ]),
        "(/[a-z0-9]{0,6}){0,3}/?",
    )
        .prop_map(|(host, path)| format!("{host}{path}").parse().unwrap())
}

fn target(role: TargetRole, name: String, max_latency: u64) -> impl Strategy<Value = TargetSpec> {
    (
        base_url(),
        prop::option::of(bounded_u64(1, u64::from(bounds::RATE_PER_SEC))),
        bounded_u64(1, bounds::CONCURRENCY as u64),
        bounded_u64(0, bounds::QUEUED as u64),
        bounded_u64(max_latency.max(1), bounds::TIMEOUT_MS),
    )
        .prop_map(move |(base_url, rate, concurrency, queued, timeout_ms)| TargetSpec {
            name: name.clone(),
            role,
            base_url,
            rate_per_sec: rate.map(|r| u32::try_from(r).unwrap()),
            max_concurrency: usize::try_from(concurrency).unwrap(),
            max_queued: usize::try_from(queued).unwrap(),
            timeout_ms,
            timed_by_tap: false,
        })
}

fn stage() -> impl Strategy<Value = Stage> {
    prop::sample::select(vec![Stage::Shadow, Stage::One, Stage::Ten, Stage::Fifty, Stage::Hundred])
}

/// Profiles within every documented bound, so the accepted path is exercised.
fn valid_profile() -> impl Strategy<Value = Profile> {
    let names = prop::collection::btree_set(name(), 1..=bounds::TARGETS);
    (names, any::<bool>(), bounded_u64(0, bounds::TIMEOUT_MS)).prop_flat_map(|(names, secondary, latency_ms)| {
        let targets: Vec<_> = names
            .into_iter()
            .enumerate()
            .map(|(i, n)| {
                let role = if i == 0 && secondary { TargetRole::Secondary } else { TargetRole::Candidate };
                target(role, n, latency_ms)
            })
            .collect();
        let unsafe_methods = prop::option::of(
            (prop::collection::vec("POST|PUT|DELETE|PATCH|[A-Z]{1,8}", 0..=bounds::METHODS), "[a-z ]{0,20}[a-z]")
                .prop_map(|(methods, reason)| UnsafeMethods { methods, reason }),
        );
        (
            name(),
            any::<bool>(),
            prop::collection::vec("/[a-z{}/]{0,16}", 0..8),
            prop::collection::vec(prop::sample::select(vec!["GET", "get", "HEAD", "OPTIONS"]), 0..4),
            prop::collection::vec(
                ("[a-z-]{1,12}", prop::option::of("[ -~]{0,12}"))
                    .prop_map(|(name, equals)| HeaderPredicate { name, equals }),
                0..4,
            ),
            percent(),
            targets,
            stage(),
            prop::option::of(bounded_u64(1, bounds::TTL_SECS)),
            unsafe_methods,
            (percent(), 100u16..=599, percent(), percent()),
        )
            .prop_map(
                move |(
                    id,
                    enabled,
                    routes,
                    methods,
                    headers,
                    sample_percent,
                    targets,
                    stage,
                    ttl_secs,
                    unsafe_methods,
                    f,
                )| {
                    let (latency_percent, error_status, error_percent, drop_percent) = f;
                    Profile {
                        id,
                        enabled,
                        matcher: Match { routes, methods: methods.into_iter().map(str::to_owned).collect(), headers },
                        sample_percent,
                        targets,
                        stage,
                        ttl_secs,
                        expires_at_ms: None,
                        unsafe_methods,
                        side_effects: shadowdiff_mirror::profile::SideEffects::default(),
                        faults: Faults { latency_ms, latency_percent, error_status, error_percent, drop_percent },
                    }
                },
            )
    })
}

/// Arbitrary JSON, with the profile's own keys common so that deserialization gets deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter("JSON has no NaN or infinity", |f| f.is_finite()).prop_map(Value::from),
        prop::sample::select(vec![-1i64, 0, 1, 100, 101, 599, 600, 1024, 1025, 100_000, 100_001, 60_000, 60_001])
            .prop_map(Value::from),
        ".{0,10}".prop_map(Value::from),
        prop::sample::select(vec![
            "http://v2.shop.svc.cluster.local/",
            "http://127.0.0.1/",
            "file:///etc/passwd",
            "http://user:pw@api.example.net/",
            "http://169.254.169.254/",
            "candidate",
            "secondary",
            "shadow",
            "10",
            "GET",
            "POST",
            "",
        ])
        .prop_map(Value::from),
    ];
    let key = prop::sample::select(vec![
        "id",
        "enabled",
        "match",
        "routes",
        "methods",
        "headers",
        "name",
        "equals",
        "sample_percent",
        "targets",
        "role",
        "base_url",
        "rate_per_sec",
        "max_concurrency",
        "max_queued",
        "timeout_ms",
        "stage",
        "ttl_secs",
        "expires_at_ms",
        "unsafe_methods",
        "reason",
        "faults",
        "latency_ms",
        "latency_percent",
        "error_status",
        "error_percent",
        "drop_percent",
        "other",
    ]);
    leaf.prop_recursive(4, 64, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..10)
                .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
        ]
    })
}

/// A profile as JSON with some fields replaced by arbitrary values.
fn mostly_valid_json() -> impl Strategy<Value = Value> {
    (valid_profile(), prop::collection::vec((any::<prop::sample::Index>(), json_value()), 0..3)).prop_map(
        |(profile, changes)| {
            let mut value = serde_json::to_value(&profile).unwrap();
            for (at, new) in changes {
                replace_somewhere(&mut value, at, new);
            }
            value
        },
    )
}

/// Replaces one of the values in `doc` (chosen by `at` among all of them) with `new`.
fn replace_somewhere(doc: &mut Value, at: prop::sample::Index, new: Value) {
    fn count(v: &Value) -> usize {
        1 + match v {
            Value::Array(items) => items.iter().map(count).sum(),
            Value::Object(map) => map.values().map(count).sum(),
            _ => 0,
        }
    }
    fn nth(v: &mut Value, mut n: usize, new: Value) -> Option<Value> {
        if n == 0 {
            *v = new;
            return None;
        }
        n -= 1;
        let children: Vec<&mut Value> = match v {
            Value::Array(items) => items.iter_mut().collect(),
            Value::Object(map) => map.values_mut().collect(),
            _ => Vec::new(),
        };
        let mut new = Some(new);
        for child in children {
            let size = count(child);
            if n < size {
                return nth(child, n, new.take().unwrap());
            }
            n -= size;
        }
        new
    }
    let n = at.index(count(doc));
    let _ = nth(doc, n, new);
}

/// Damage to JSON text: flipped, dropped and inserted characters, cut short.
fn damaged_text() -> impl Strategy<Value = Vec<u8>> {
    (
        valid_profile(),
        prop::collection::vec(
            (any::<prop::sample::Index>(), prop::sample::select(b"{}[]\",:0-9e.\\ntf\x00\xff".to_vec())),
            1..4,
        ),
        prop::option::of(any::<prop::sample::Index>()),
    )
        .prop_map(|(profile, edits, cut)| {
            let mut text = serde_json::to_vec(&profile).unwrap();
            for (at, b) in edits {
                let i = at.index(text.len());
                if b.is_ascii_digit() {
                    text.insert(i, b);
                } else {
                    text[i] = b;
                }
            }
            if let Some(cut) = cut {
                text.truncate(cut.index(text.len()));
            }
            text
        })
}

fn request() -> impl Strategy<Value = (RequestEvent, RequestId)> {
    (
        prop_oneof!["GET|HEAD|OPTIONS|POST|get|DELETE", ".{0,8}"],
        prop_oneof!["/[a-z{}/]{0,16}", ".{0,16}"],
        prop::option::of("/[a-z{}/]{0,16}"),
        prop::collection::vec(("[a-zA-Z-]{1,12}", prop::collection::vec(any::<u8>(), 0..12)), 0..4),
        prop_oneof![Just(None), ".{0,40}".prop_map(Some)],
    )
        .prop_map(|(method, path, route_template, headers, incoming_id)| {
            let id = RequestId::keep_or_mint(incoming_id.as_deref());
            let event = RequestEvent {
                request_id: id.as_str().to_owned(),
                timestamp_ms: 0,
                tap_id: "tap".into(),
                method,
                scheme: "http".into(),
                authority: "shop".into(),
                path,
                query: None,
                route_template,
                headers: headers.into_iter().map(|(n, v)| Header::new(n, v)).collect(),
                body: CapturedBody::empty(),
                run: String::new(),
            };
            (event, id)
        })
}

fn now() -> impl Strategy<Value = i64> {
    prop_oneof![Just(i64::MIN), Just(i64::MAX), Just(0), any::<i64>(), 1_600_000_000_000i64..2_000_000_000_000]
}

/// Everything a replica does with a profile short of sending a request: vet it, apply it,
/// match requests with it, and, when it is accepted, build its targets.
fn exercise(profile: Profile, request: &RequestEvent, id: &RequestId, now: i64) -> Vec<String> {
    let problems = profile.problems(&policy());
    let _ = profile.out_of_bounds();
    let applied = profile.clone().applied_at(now);
    if let (Some(ttl), Some(at)) = (profile.ttl_secs, applied.expires_at_ms) {
        assert!(at >= now || ttl == 0, "applying never moves the expiry into the past: {at} < {now}");
    }
    let _ = applied.expired(now);
    let _ = applied.replays(request, id, now);
    if problems.is_empty() {
        for spec in &applied.targets {
            build_target(spec);
        }
    }
    problems
}

/// What `Target::new` and `Replayer::new` build from a target's spec, minus the client.
fn build_target(spec: &TargetSpec) {
    let queue = tokio::sync::Semaphore::new(spec.max_concurrency + spec.max_queued);
    let permits = tokio::sync::Semaphore::new(spec.max_concurrency);
    let limiter = spec
        .rate_per_sec
        .and_then(NonZeroU32::new)
        .map(|rate| RateLimiter::direct(Quota::per_second(rate).allow_burst(NonZeroU32::MIN)));
    if let Some(limiter) = &limiter {
        let _ = limiter.check();
    }
    // The status report's arithmetic, on an idle target.
    assert_eq!(spec.max_concurrency - permits.available_permits(), 0);
    assert_eq!(
        (spec.max_concurrency + spec.max_queued)
            .saturating_sub(queue.available_permits())
            .saturating_sub(spec.max_concurrency - permits.available_permits()),
        0
    );
    assert!(spec.timeout() <= Duration::from_millis(bounds::TIMEOUT_MS) && !spec.timeout().is_zero());
}

proptest! {
    #[test]
    fn profiles_within_bounds_are_accepted_and_build(
        profile in valid_profile(),
        (request, id) in request(),
        now in now(),
    ) {
        let text = serde_json::to_vec(&profile).unwrap();
        prop_assert!(text.len() <= bounds::JSON_BYTES);
        let parsed: Profile = serde_json::from_slice(&text).unwrap();
        prop_assert_eq!(&parsed, &profile, "JSON round trip");
        let problems = exercise(parsed, &request, &id, now);
        prop_assert!(problems.is_empty(), "{:?}", problems);
    }

    #[test]
    fn any_json_value_is_parsed_and_vetted_without_panicking(
        value in prop_oneof![json_value(), mostly_valid_json()],
        (request, id) in request(),
        now in now(),
    ) {
        let text = serde_json::to_vec(&value).unwrap();
        if let Ok(profile) = serde_json::from_slice::<Profile>(&text) {
            exercise(profile, &request, &id, now);
        }
    }

    #[test]
    fn any_text_is_parsed_and_vetted_without_panicking(
        text in prop_oneof![damaged_text(), prop::collection::vec(any::<u8>(), 0..64)],
        (request, id) in request(),
        now in now(),
    ) {
        if let Ok(profile) = serde_json::from_slice::<Profile>(&text) {
            exercise(profile, &request, &id, now);
        }
    }
}

/// The one part of a replica's build left out of the properties, for its cost (a client
/// loads the system's roots): an HTTP client for the shortest and longest timeouts.
#[test]
fn clients_build_at_the_timeout_bounds() {
    for timeout_ms in [1, bounds::TIMEOUT_MS] {
        shadowdiff_runtime::upstream::builder(Duration::from_millis(timeout_ms)).build().unwrap();
    }
}

/// The largest profile the bounds allow still fits the API's body limit and is accepted.
#[test]
fn a_profile_at_every_maximum_is_accepted() {
    let targets: Vec<Value> = (0..bounds::TARGETS)
        .map(|i| {
            json!({
                "name": format!("{i}{}", "x".repeat(bounds::NAME - 1)),
                "role": if i == 0 { "secondary" } else { "candidate" },
                "base_url": format!("http://t{i}.shop.svc.cluster.local/"),
                "rate_per_sec": bounds::RATE_PER_SEC,
                "max_concurrency": bounds::CONCURRENCY,
                "max_queued": bounds::QUEUED,
                "timeout_ms": bounds::TIMEOUT_MS,
            })
        })
        .collect();
    let profile = json!({
        "id": "p".repeat(bounds::NAME),
        "match": {
            "routes": vec!["/r".repeat(bounds::TEXT / 2); 100],
            "methods": vec!["GET"; bounds::METHODS],
            "headers": vec![json!({"name": "h".repeat(bounds::TEXT), "equals": "v".repeat(bounds::TEXT)}); 8],
        },
        "targets": targets,
        "ttl_secs": bounds::TTL_SECS,
        "unsafe_methods": {"methods": vec!["POST"; bounds::METHODS], "reason": "r".repeat(bounds::TEXT)},
        "faults": {"latency_ms": bounds::TIMEOUT_MS, "latency_percent": 100.0, "error_status": 599, "error_percent": 100.0, "drop_percent": 100.0},
    });
    let text = serde_json::to_vec(&profile).unwrap();
    assert!(text.len() <= bounds::JSON_BYTES, "{} bytes", text.len());
    let profile: Profile = serde_json::from_slice(&text).unwrap();
    let (request, id) = (
        RequestEvent {
            request_id: "r".into(),
            timestamp_ms: 0,
            tap_id: "t".into(),
            method: "GET".into(),
            scheme: "http".into(),
            authority: "a".into(),
            path: "/".into(),
            query: None,
            route_template: None,
            headers: Vec::new(),
            body: CapturedBody::empty(),
            run: String::new(),
        },
        RequestId::mint(),
    );
    assert_eq!(exercise(profile, &request, &id, i64::MAX), Vec::<String>::new());
}

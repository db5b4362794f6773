//! Properties of the Avro codec every consumer runs on bytes straight from Kafka: no input
//! panics a decoder, bad input is a `DecodeError`, a valid encoding round-trips, and a
//! damaged one either fails or decodes to an event that itself round-trips.
//!
//! Cases come from `PROPTEST_CASES` (256 by default; `deploy/fuzz/run.sh` runs a million).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Debug;

use proptest::prelude::*;
use shadowdiff_core::codec::Event;
use shadowdiff_core::{
    CapturedBody, DecodeError, ErrorKind, EventCodec, ExpectedLeg, Header, OutboundCallEvent, RequestEvent,
    ResponseEvent, Role,
};

fn codec() -> EventCodec {
    EventCodec::new().unwrap()
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![".{0,12}", "[a-zA-Z0-9/?&=%#@:. -]{0,24}", any::<String>()]
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max)
}

fn header() -> impl Strategy<Value = Header> {
    (text(), bytes(24)).prop_map(|(name, value)| Header { name, value })
}

fn body() -> impl Strategy<Value = CapturedBody> {
    prop_oneof![
        (bytes(96), 0usize..128).prop_map(|(full, cap)| CapturedBody::capture(&full, cap)),
        (bytes(64), any::<i64>(), any::<bool>(), bytes(40))
            .prop_map(|(bytes, length, truncated, sha256)| CapturedBody { bytes, length, truncated, sha256 }),
    ]
}

fn role() -> impl Strategy<Value = Role> {
    prop::sample::select(vec![Role::Primary, Role::Secondary, Role::Candidate])
}

fn error_kind() -> impl Strategy<Value = ErrorKind> {
    prop::sample::select(vec![
        ErrorKind::Timeout,
        ErrorKind::Connect,
        ErrorKind::Reset,
        ErrorKind::CircuitOpen,
        ErrorKind::Shed,
        ErrorKind::Other,
    ])
}

prop_compose! {
    fn request()(
        request_id in text(),
        timestamp_ms in any::<i64>(),
        tap_id in text(),
        method in prop_oneof![Just("GET".to_owned()), text()],
        scheme in text(),
        authority in text(),
        path in prop_oneof!["/[ -~]{0,16}", text()],
        query in prop::option::of(text()),
        route_template in prop::option::of(text()),
        headers in prop::collection::vec(header(), 0..4),
        body in body(),
        run in text(),
    ) -> RequestEvent {
        RequestEvent {
            request_id, timestamp_ms, tap_id, method, scheme, authority, path, query, route_template, headers, body, run,
        }
    }
}

prop_compose! {
    fn response()(
        request_id in text(),
        timestamp_ms in any::<i64>(),
        role in role(),
        deployment in text(),
        status in prop::option::of(any::<i32>()),
        headers in prop::collection::vec(header(), 0..4),
        body in body(),
        latency_us in any::<i64>(),
        error in prop::option::of(error_kind()),
        profile in prop::option::of(text()),
        stage in prop::option::of(text()),
        expected_legs in prop::collection::vec((text(), text(), any::<bool>()), 0..3),
        run in text(),
    ) -> ResponseEvent {
        ResponseEvent {
            request_id, timestamp_ms, role, deployment, status, headers, body, latency_us, error, profile, stage,
            expected_legs: expected_legs
                .into_iter()
                .map(|(role, deployment, timed_by_tap)| ExpectedLeg { role, deployment, timed_by_tap })
                .collect(),
            run,
        }
    }
}

prop_compose! {
    fn outbound_call()(
        request_id in text(),
        call_id in text(),
        linked in any::<bool>(),
        deployment in text(),
        request in request(),
        response in response(),
        role in role(),
    ) -> OutboundCallEvent {
        OutboundCallEvent { request_id, call_id, linked, deployment, request, response, role }
    }
}

/// Damage done to a valid encoding.
#[derive(Debug, Clone)]
enum Damage {
    /// XOR these bytes in at these positions (taken modulo the length); never zero.
    Flip(Vec<(usize, u8)>),
    /// Keep only this many bytes (modulo the length).
    Truncate(usize),
    /// Append these bytes (at least one).
    Append(Vec<u8>),
    /// Insert these bytes at this position (modulo the length + 1).
    Insert(usize, Vec<u8>),
    /// Overwrite from this position with these bytes, as a corrupt length prefix would.
    Overwrite(usize, Vec<u8>),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        prop::collection::vec((any::<usize>(), 1u8..=255), 1..6).prop_map(Damage::Flip),
        any::<usize>().prop_map(Damage::Truncate),
        prop::collection::vec(any::<u8>(), 1..16).prop_map(Damage::Append),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..8)).prop_map(|(at, b)| Damage::Insert(at, b)),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..10)).prop_map(|(at, b)| Damage::Overwrite(at, b)),
    ]
}

impl Damage {
    fn apply(&self, mut bytes: Vec<u8>) -> Vec<u8> {
        let len = bytes.len();
        match self {
            Self::Flip(flips) => {
                for (at, mask) in flips {
                    bytes[at % len] ^= mask;
                }
            }
            Self::Truncate(keep) => bytes.truncate(keep % len),
            Self::Append(tail) => bytes.extend_from_slice(tail),
            Self::Insert(at, extra) => {
                let at = at % (len + 1);
                bytes.splice(at..at, extra.iter().copied());
            }
            Self::Overwrite(at, over) => {
                let at = at % len;
                for (i, b) in over.iter().enumerate() {
                    if let Some(slot) = bytes.get_mut(at + i) {
                        *slot = *b;
                    }
                }
            }
        }
        bytes
    }
}

/// Decodes `bytes` (which must not panic), and when they decode, checks that the event
/// re-encodes to bytes that decode to the same event.
fn decode_stable<E: Event + PartialEq + Debug>(bytes: &[u8]) -> Result<E, DecodeError> {
    let codec = codec();
    let decoded = codec.decode::<E>(bytes);
    if let Ok(event) = &decoded {
        let again = codec.encode(event).expect("a decoded event encodes");
        assert_eq!(&codec.decode::<E>(&again).expect("its encoding decodes"), event);
    }
    decoded
}

fn check_damaged<E: Event + PartialEq + Debug>(event: &E, damage: &Damage) -> Result<(), TestCaseError> {
    let valid = codec().encode(event).unwrap();
    prop_assert_eq!(&codec().decode::<E>(&valid).unwrap(), event, "a valid encoding round-trips");
    let damaged = damage.apply(valid);
    let decoded = decode_stable::<E>(&damaged);
    match damage {
        Damage::Truncate(_) => prop_assert!(decoded.is_err(), "a strict prefix is never a whole event"),
        Damage::Append(tail) => match decoded {
            Err(DecodeError::TrailingBytes(n)) => prop_assert_eq!(n, tail.len()),
            other => prop_assert!(false, "appended bytes must be trailing bytes, got {:?}", other),
        },
        _ => {}
    }
    Ok(())
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_a_decoder(bytes in prop_oneof![
        bytes(256),
        // With a known header, so the datum decoder is reached and not just the framing.
        bytes(200).prop_map(|tail| {
            let mut framed = codec().encode(&ResponseEvent {
                request_id: String::new(), timestamp_ms: 0, role: Role::Primary, deployment: String::new(),
                status: None, headers: Vec::new(), body: CapturedBody::empty(), latency_us: 0, error: None,
                profile: None, stage: None, expected_legs: Vec::new(), run: String::new(),
            }).unwrap();
            framed.truncate(10);
            framed.extend(tail);
            framed
        }),
        bytes(200).prop_map(|tail| {
            let mut framed = codec().encode(&sample_request()).unwrap();
            framed.truncate(10);
            framed.extend(tail);
            framed
        }),
    ]) {
        if let Ok(request) = decode_stable::<RequestEvent>(&bytes) {
            let _ = request.check();
        }
        let _ = decode_stable::<ResponseEvent>(&bytes);
        let _ = decode_stable::<OutboundCallEvent>(&bytes);
        if bytes.len() < 10 {
            prop_assert!(matches!(codec().decode::<RequestEvent>(&bytes), Err(DecodeError::TooShort(_))));
        }
    }

    #[test]
    fn damaged_request_events(event in request(), damage in damage()) {
        let _ = event.check();
        check_damaged(&event, &damage)?;
    }

    #[test]
    fn damaged_response_events(event in response(), damage in damage()) {
        check_damaged(&event, &damage)?;
    }

    #[test]
    fn damaged_outbound_call_events(event in outbound_call(), damage in damage()) {
        check_damaged(&event, &damage)?;
        let valid = codec().encode(&event).unwrap();
        // The other families' decoders on this family's bytes: an unknown schema, never a panic.
        prop_assert!(matches!(codec().decode::<RequestEvent>(&valid), Err(DecodeError::UnknownSchema(..))));
        prop_assert!(matches!(codec().decode::<ResponseEvent>(&valid), Err(DecodeError::UnknownSchema(..))));
    }
}

fn sample_request() -> RequestEvent {
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
    }
}

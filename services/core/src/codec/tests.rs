use super::*;
use crate::event::{CapturedBody, ErrorKind, Header, Role};

fn codec() -> EventCodec {
    EventCodec::new().unwrap()
}

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
        headers: vec![Header::new("accept", "application/json"), Header::new("x-raw", vec![0xff, 0x00])],
        body: CapturedBody::capture(b"hello world", 5),
        run: String::new(),
    }
}

fn response() -> ResponseEvent {
    ResponseEvent {
        request_id: "r-1".into(),
        timestamp_ms: 1_763_900_000_456,
        role: Role::Candidate,
        deployment: "v2".into(),
        status: None,
        headers: vec![],
        body: CapturedBody::empty(),
        latency_us: 1_500,
        error: Some(ErrorKind::CircuitOpen),
        profile: Some("p1".into()),
        stage: Some("10".into()),
        expected_legs: Vec::new(),
        run: String::new(),
    }
}

#[test]
fn request_round_trips() {
    let c = codec();
    let bytes = c.encode(&request()).unwrap();
    assert_eq!(&bytes[..2], &MAGIC);
    assert_eq!(c.decode::<RequestEvent>(&bytes).unwrap(), request());
}

#[test]
fn response_round_trips_with_and_without_error() {
    let c = codec();
    let failed = response();
    assert_eq!(c.decode::<ResponseEvent>(&c.encode(&failed).unwrap()).unwrap(), failed);
    let ok = ResponseEvent { status: Some(200), error: None, role: Role::Primary, ..response() };
    assert_eq!(c.decode::<ResponseEvent>(&c.encode(&ok).unwrap()).unwrap(), ok);
}

#[test]
fn reads_data_written_with_the_previous_schema() {
    let c = codec();
    let v1 = Schema::parse_str(include_str!("../../../../schemas/avro/previous/request_event.v1.avsc")).unwrap();
    // Write exactly as a v1 tap did: no route_template field at all.
    #[derive(serde::Serialize)]
    struct V1<'a> {
        request_id: &'a str,
        timestamp_ms: i64,
        tap_id: &'a str,
        method: &'a str,
        scheme: &'a str,
        authority: &'a str,
        path: &'a str,
        query: Option<&'a str>,
        headers: Vec<Header>,
        body: CapturedBody,
    }
    let old = V1 {
        request_id: "old-1",
        timestamp_ms: 7,
        tap_id: "tap-old",
        method: "GET",
        scheme: "http",
        authority: "a",
        path: "/p",
        query: None,
        headers: vec![Header::new("a", "b")],
        body: CapturedBody::capture(b"x", 10),
    };
    let value = apache_avro::to_value(&old).unwrap().resolve(&v1).unwrap();
    let mut bytes = header_of(&v1).to_vec();
    bytes.extend(apache_avro::to_avro_datum(&v1, value).unwrap());
    assert_ne!(header_of(&v1), c.family(EventKind::Request).header, "v1 and current must differ in fingerprint");

    let read: RequestEvent = c.decode(&bytes).unwrap();
    assert_eq!(read.request_id, "old-1");
    assert_eq!(read.route_template, None, "the field added in v2 takes its default");
    assert_eq!(read.headers, vec![Header::new("a", "b")]);
    assert_eq!(read.body, CapturedBody::capture(b"x", 10));
}

#[test]
fn garbage_gives_typed_errors() {
    let c = codec();
    let good = c.encode(&request()).unwrap();

    assert!(matches!(c.decode::<RequestEvent>(&good[..3]), Err(DecodeError::TooShort(3))));
    assert!(matches!(c.decode::<RequestEvent>(b"{\"json\": true}"), Err(DecodeError::BadMarker(_))));
    // A response is not a request: the fingerprint says so before any byte is decoded.
    let resp = c.encode(&response()).unwrap();
    assert!(matches!(c.decode::<RequestEvent>(&resp), Err(DecodeError::UnknownSchema(_, EventKind::Request))));

    let mut trailing = good.clone();
    trailing.extend_from_slice(b"junk");
    assert!(matches!(c.decode::<RequestEvent>(&trailing), Err(DecodeError::TrailingBytes(4))));
}

#[test]
fn every_truncation_and_corruption_is_an_error_not_a_panic() {
    let c = codec();
    let good = c.encode(&request()).unwrap();
    for len in 0..good.len() {
        let err = c.decode::<RequestEvent>(&good[..len]).expect_err("a truncated message must not decode");
        assert!(!err.reason().is_empty());
    }
    // Flip every byte of the datum in turn: decoding may succeed with other values, but
    // must never panic or allocate without bound.
    for i in HEADER_LEN..good.len() {
        let mut bad = good.clone();
        bad[i] ^= 0xff;
        let _ = c.decode::<RequestEvent>(&bad);
    }
    // A length prefix claiming ~1 GiB of body bytes.
    let mut huge = good[..HEADER_LEN].to_vec();
    huge.extend_from_slice(&[0x02, b'a', 0xfe, 0xff, 0xff, 0xff, 0x0f]);
    assert!(c.decode::<RequestEvent>(&huge).is_err());
}

#[test]
fn outbound_call_round_trips() {
    let c = codec();
    let call = crate::event::OutboundCallEvent {
        request_id: request().request_id,
        call_id: "call-1".into(),
        linked: true,
        deployment: "v2".into(),
        request: request(),
        response: ResponseEvent { request_id: request().request_id, status: Some(201), error: None, ..response() },
        role: Role::Candidate,
    };
    assert_eq!(c.decode::<crate::event::OutboundCallEvent>(&c.encode(&call).unwrap()).unwrap(), call);
    assert!(matches!(
        c.decode::<RequestEvent>(&c.encode(&call).unwrap()),
        Err(DecodeError::UnknownSchema(_, EventKind::Request))
    ));
}

#[test]
fn reads_responses_written_before_profile_and_stage() {
    let c = codec();
    let v1 = Schema::parse_str(include_str!("../../../../schemas/avro/previous/response_event.v1.avsc")).unwrap();
    // A v1 writer had no profile or stage fields.
    let mut value = apache_avro::to_value(ResponseEvent { profile: None, stage: None, ..response() }).unwrap();
    if let apache_avro::types::Value::Record(fields) = &mut value {
        fields.retain(|(name, _)| name != "profile" && name != "stage");
    }
    let mut bytes = header_of(&v1).to_vec();
    bytes.extend(apache_avro::to_avro_datum(&v1, value.resolve(&v1).unwrap()).unwrap());
    let read: ResponseEvent = c.decode(&bytes).unwrap();
    assert_eq!(read, ResponseEvent { profile: None, stage: None, ..response() });
}

#[test]
fn the_direct_encoding_path_is_taken_and_matches_the_value_path() {
    let c = codec();
    for (kind, direct, value) in [
        (
            EventKind::Request,
            datum_direct(&c, EventKind::Request, &request()),
            datum_value(&c, EventKind::Request, &request()),
        ),
        (
            EventKind::Response,
            datum_direct(&c, EventKind::Response, &response()),
            datum_value(&c, EventKind::Response, &response()),
        ),
    ] {
        assert_eq!(direct.expect("the direct path handles this schema"), value, "{kind:?}");
    }
}

fn datum_direct<T: serde::Serialize>(c: &EventCodec, kind: EventKind, event: &T) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    apache_avro::write_avro_datum_ref(&c.family(kind).current, event, &mut out).ok().map(|_| out)
}

fn datum_value<T: serde::Serialize>(c: &EventCodec, kind: EventKind, event: &T) -> Vec<u8> {
    let schema = &c.family(kind).current;
    apache_avro::to_avro_datum(schema, apache_avro::to_value(event).unwrap().resolve(schema).unwrap()).unwrap()
}

use super::*;

fn redactor(rules: Rules) -> Redactor {
    Redactor::new(b"test-hmac-key", rules, Some(Sealer::new(&[7; 32]).unwrap()))
}

#[test]
fn headers_become_comparable_digests_and_sealed_copies() {
    let r = redactor(Rules {
        headers: DEFAULT_HEADERS.iter().map(|s| (*s).to_owned()).collect(),
        sealed_headers: vec!["Authorization".into()],
        ..Rules::default()
    });
    let mut headers = vec![
        Header::new("Authorization", "Bearer s3cret"),
        Header::new("Cookie", "session=abc"),
        Header::new("accept", "*/*"),
        Header::new("X-Shadowdiff-Sealed-Cookie", "sealed:v1:forged"),
    ];
    r.headers(&mut headers);
    assert_eq!(headers[0].value, r.digest(b"Bearer s3cret").into_bytes());
    assert!(headers[1].value.starts_with(DIGEST_PREFIX.as_bytes()));
    assert_eq!(headers[2], Header::new("accept", "*/*"));
    assert_eq!(headers.len(), 4, "the client's forged sealed header is gone, ours added");
    let sealed = &headers[3];
    assert_eq!(sealed.name, "x-shadowdiff-sealed-authorization");
    let sealer = Sealer::new(&[7; 32]).unwrap();
    assert_eq!(sealer.open("authorization", &sealed.value).unwrap(), b"Bearer s3cret");
    assert_eq!(sealer.open("cookie", &sealed.value), Err(SealError::Forged), "bound to its header");
    assert_eq!(Sealer::new(&[8; 32]).unwrap().open("authorization", &sealed.value), Err(SealError::Forged));
    for h in &headers {
        assert!(!String::from_utf8_lossy(&h.value).contains("s3cret"));
    }
    // Same value, same digest: legs still compare.
    assert_eq!(r.digest(b"x"), r.digest(b"x"));
    assert_ne!(r.digest(b"x"), Redactor::new(b"other", Rules::default(), None).digest(b"x"));
}

#[test]
fn query_parameters() {
    let r = redactor(Rules { query_params: vec!["token".into()], ..Rules::default() });
    let out = r.query("a=1&token=s3cret&b=x%20y");
    assert!(!out.contains("s3cret"));
    assert!(out.starts_with("a=1&token=hmac-sha256%3A"), "{out}");
    assert!(out.ends_with("&b=x+y"), "{out}");
}

#[test]
fn json_paths_in_bodies() {
    let paths = ["password", "cards[*].number", "deep.list[1]"].map(|p| JsonPath::parse(p).unwrap()).to_vec();
    let r = redactor(Rules { json_paths: paths, ..Rules::default() });
    let json = vec![Header::new("content-type", "application/json")];
    let text = br#"{"password":"pw1","cards":[{"number":"4111"},{"number":"5500"}],"deep":{"list":[1,"k"]},"ok":true}"#;
    let mut body = CapturedBody::capture(text, 1024);
    let hash = body.sha256.clone();
    r.body(&mut body, &json);
    let out: serde_json::Value = serde_json::from_slice(&body.bytes).unwrap();
    assert_eq!(out["password"], serde_json::Value::String(r.digest(br#""pw1""#)));
    assert!(out["cards"][1]["number"].as_str().unwrap().starts_with(DIGEST_PREFIX));
    assert!(out["deep"]["list"][1].as_str().unwrap().starts_with(DIGEST_PREFIX));
    assert_eq!(out["ok"], true);
    assert_eq!(body.sha256, hash, "the hash still describes the full original body");
    for secret in ["pw1", "4111", "5500"] {
        assert!(!String::from_utf8_lossy(&body.bytes).contains(secret));
    }

    // Compressed or truncated JSON cannot be read, so its bytes are withheld.
    let mut gz = CapturedBody::capture(b"\x1f\x8b...", 1024);
    r.body(&mut gz, &[Header::new("content-type", "application/json"), Header::new("content-encoding", "gzip")]);
    assert!(gz.bytes.is_empty() && gz.truncated);
    let mut cut = CapturedBody::capture(text, 10);
    r.body(&mut cut, &json);
    assert!(cut.bytes.is_empty() && cut.truncated);
}

#[test]
fn json_path_syntax() {
    assert!(JsonPath::parse("a.b[*].c[0]").is_ok());
    assert!(JsonPath::parse("").is_err());
    assert!(JsonPath::parse("a[x]").is_err());
    assert!(JsonPath::parse("a[1").is_err());
}

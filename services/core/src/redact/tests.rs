use super::*;
use crate::event::CapturedBody;

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

fn defaults() -> Rules {
    let owned = |names: &[&str]| names.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    Rules {
        headers: owned(&DEFAULT_HEADERS),
        query_params: owned(&DEFAULT_QUERY_PARAMS),
        json_keys: owned(&DEFAULT_JSON_KEYS),
        ..Rules::default()
    }
}

fn redacted(r: &Redactor, content_type: &str, encoding: Option<&str>, text: &[u8]) -> CapturedBody {
    let mut headers = vec![Header::new("content-type", content_type)];
    headers.extend(encoding.map(|e| Header::new("content-encoding", e)));
    let bytes =
        encoding.map_or_else(|| text.to_vec(), |e| crate::event::body::encode(text, Some(e.as_bytes())).unwrap());
    let mut body = CapturedBody::capture(&bytes, 1 << 20);
    r.body(&mut body, &headers);
    body
}

#[test]
fn default_json_keys_at_any_depth_in_any_spelling() {
    let r = redactor(defaults());
    let text = br#"{"user":{"Password":"pw-CANARY","profile":{"apiKey":"ak-CANARY"}},"cards":[{"card_number":"4111-CANARY","CVV":"123-CANARY"}],"name":"kept"}"#;
    let body = redacted(&r, "application/json; charset=utf-8", None, text);
    let out = String::from_utf8(body.bytes).unwrap();
    assert!(!out.contains("CANARY"), "{out}");
    assert!(out.contains(r#""name":"kept""#), "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["user"]["Password"], serde_json::Value::String(r.digest(br#""pw-CANARY""#)));

    // The same under gzip and brotli: redacted, and still in the body's own encoding.
    for encoding in ["gzip", "br", "deflate"] {
        let body = redacted(&r, "application/json", Some(encoding), text);
        assert!(!body.truncated, "{encoding}");
        let plain = crate::event::body::decode(&body.bytes, Some(encoding.as_bytes())).unwrap();
        assert_eq!(String::from_utf8_lossy(&plain), out, "{encoding}");
    }
}

#[test]
fn bodies_without_secrets_keep_their_exact_bytes() {
    let r = redactor(defaults());
    let text = br#"{ "id": 7,  "items": [1, 2] }"#;
    assert_eq!(redacted(&r, "application/json", None, text).bytes, text);
    let gz = crate::event::body::encode(text, Some(b"gzip")).unwrap();
    let mut body = CapturedBody::capture(&gz, 1 << 20);
    r.body(&mut body, &[Header::new("content-type", "application/json"), Header::new("content-encoding", "gzip")]);
    assert_eq!(body.bytes, gz, "a compressed body without secrets is left as it came");
}

#[test]
fn form_bodies_and_query_parameters_in_any_case() {
    let r = redactor(defaults());
    let body = redacted(&r, "application/x-www-form-urlencoded", None, b"user=ann&Password=pw-CANARY&CVV=999");
    let out = String::from_utf8(body.bytes).unwrap();
    assert!(out.starts_with("user=ann&Password=hmac-sha256%3A") && !out.contains("CANARY"), "{out}");
    let query = r.query("q=shoes&API_KEY=ak-CANARY&Access-Token=t-CANARY");
    assert!(!query.contains("CANARY") && query.starts_with("q=shoes&API_KEY=hmac"), "{query}");
    assert_eq!(r.query("q=a%20b&page=2"), "q=a%20b&page=2", "a query without secrets is sent exactly as it came");
}

#[test]
fn bodies_the_rules_cannot_read_are_withheld() {
    let r = redactor(defaults());
    let withheld = |b: &CapturedBody| b.bytes.is_empty() && b.truncated;
    let multipart =
        redacted(&r, "multipart/form-data; boundary=x", None, b"--x\r\nname=\"password\"\r\n\r\npw\r\n--x--");
    assert!(withheld(&multipart));
    assert!(withheld(&redacted(&r, "text/plain", None, br#"{"password": "pw-CANARY" "#)), "JSON-like, unparsable");
    let sniffed = redacted(&r, "text/plain", None, br#"{"password":"pw-CANARY"}"#);
    assert!(!String::from_utf8_lossy(&sniffed.bytes).contains("CANARY") && !sniffed.truncated);
    let mut zstd = CapturedBody::capture(b"(\xb5/\xfd...", 1024);
    r.body(&mut zstd, &[Header::new("content-type", "application/json"), Header::new("content-encoding", "zstd")]);
    assert!(withheld(&zstd), "unknown encoding");
    let mut cut = CapturedBody::capture(br#"{"password":"pw-CANARY","pad":"xxxxxxxx"}"#, 12);
    r.body(&mut cut, &[Header::new("content-type", "application/json")]);
    assert!(withheld(&cut));
    let html = redacted(&r, "text/html", None, b"<p>password</p>");
    assert_eq!(html.bytes, b"<p>password</p>", "no named fields in a page");
}

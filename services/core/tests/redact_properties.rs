//! Properties of redaction with the default rules, the one thing that keeps production's
//! secrets out of Kafka and ClickHouse: no header, query or body panics it, and a canary
//! value placed under a secret-named header, query parameter, form field or JSON key (at
//! any depth, in any spelling, compressed or not) never appears in what it hands on,
//! unless the body was withheld whole.
//!
//! Cases come from `PROPTEST_CASES` (256 by default; `deploy/fuzz/run.sh` runs a million).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use serde_json::Value;
use shadowdiff_core::event::body::{decode, encode};
use shadowdiff_core::redact::{
    DEFAULT_HEADERS, DEFAULT_JSON_KEYS, DEFAULT_QUERY_PARAMS, Redactor, Rules, SEALED_HEADER_PREFIX, Sealer,
};
use shadowdiff_core::{CapturedBody, Header};

fn owned(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

fn redactor(sealed: bool) -> Redactor {
    let rules = Rules {
        headers: owned(&DEFAULT_HEADERS),
        query_params: owned(&DEFAULT_QUERY_PARAMS),
        json_keys: owned(&DEFAULT_JSON_KEYS),
        json_paths: Vec::new(),
        sealed_headers: if sealed { vec!["authorization".into()] } else { Vec::new() },
    };
    let sealer = sealed.then(|| Sealer::new(&[0x5a; 32]).unwrap());
    Redactor::new(b"fuzz-hmac-key-0123456789abcdef", rules, sealer)
}

/// The secret: upper case and digits, which no other generated value uses, so finding it
/// in the output can only mean it leaked.
fn canary() -> impl Strategy<Value = String> {
    "[A-Z0-9]{10}".prop_map(|tail| format!("CANARY{tail}"))
}

/// `name` spelled as people do: any case, `-` and `_` anywhere (in any number), which the
/// rules promise not to care about.
fn spelling(names: &'static [&'static str]) -> impl Strategy<Value = String> {
    let separators = prop::sample::select(vec!["", "", "", "", "_", "-", "__", "-_", "_-"]);
    (prop::sample::select(names), prop::collection::vec((any::<bool>(), separators.clone()), 0..40), separators)
        .prop_map(|(name, choices, lead)| {
            let plain: String = name.chars().filter(|c| *c != '_' && *c != '-').collect();
            let mut out = String::from(if lead.len() > 1 { "" } else { lead });
            for (i, c) in plain.chars().enumerate() {
                let (upper, sep) = choices.get(i).copied().unwrap_or((false, ""));
                if i > 0 {
                    out.push_str(sep);
                }
                out.push(if upper { c.to_ascii_uppercase() } else { c });
            }
            out
        })
}

/// Plain names and values: lower case, so never a canary.
fn plain() -> impl Strategy<Value = String> {
    "[a-z0-9 ._-]{0,8}"
}

/// The value stored under a secret key: the canary, alone or inside other values.
fn secret_value(canary: String) -> impl Strategy<Value = Value> {
    let c = canary.clone();
    prop_oneof![
        3 => Just(Value::String(canary.clone())),
        1 => Just(Value::String(format!("Bearer {canary} and more"))),
        1 => Just(serde_json::json!([1, canary.clone()])),
        1 => Just(serde_json::json!({ "inner": { "v": c } })),
    ]
}

/// A JSON document of plain values.
fn document() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        plain().prop_map(Value::from),
    ];
    leaf.prop_recursive(6, 48, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(plain(), inner, 0..5).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A key's text as it stands between the quotes, with some characters as `\u` escapes.
fn escaped(text: &str, mask: u64) -> String {
    text.chars()
        .enumerate()
        .map(|(i, c)| {
            if mask >> (i % 64) & 1 == 1 && c.is_ascii_alphanumeric() {
                if mask >> 63 & 1 == 1 { format!("\\u{:04X}", c as u32) } else { format!("\\u{:04x}", c as u32) }
            } else {
                c.to_string()
            }
        })
        .collect()
}

const KEY_MARK: &str = "keyplaceholderq";

/// Puts `{KEY_MARK: value}` somewhere in `doc`, following `route`; the root becomes an
/// object or array if it is a scalar.
fn plant(doc: &mut Value, route: &[usize], value: Value) {
    match doc {
        Value::Object(map) if !route.is_empty() && !map.is_empty() => {
            let key = map.keys().nth(route[0] % map.len()).unwrap().clone();
            let child = map.get_mut(&key).unwrap();
            if child.is_object() || child.is_array() {
                return plant(child, &route[1..], value);
            }
            map.insert(KEY_MARK.to_owned(), value);
        }
        Value::Array(items) if !route.is_empty() && !items.is_empty() => {
            let at = route[0] % items.len();
            if items[at].is_object() || items[at].is_array() {
                return plant(&mut items[at], &route[1..], value);
            }
            items.push(serde_json::json!({ KEY_MARK: value }));
        }
        Value::Object(map) => {
            map.insert(KEY_MARK.to_owned(), value);
        }
        Value::Array(items) => items.push(serde_json::json!({ KEY_MARK: value })),
        _ => *doc = serde_json::json!({ KEY_MARK: value }),
    }
}

/// A JSON body holding the canary under a secret key spelled in some way.
fn json_with_canary(canary: String) -> impl Strategy<Value = Vec<u8>> {
    (
        document(),
        prop::collection::vec(any::<usize>(), 0..8),
        spelling(&DEFAULT_JSON_KEYS),
        secret_value(canary.clone()),
        any::<u64>(),
        any::<u64>(),
        0usize..3,
        any::<bool>(),
    )
        .prop_map(move |(mut doc, route, key, value, key_mask, value_mask, deep, pretty)| {
            plant(&mut doc, &route, value);
            if deep == 2 {
                // Deeper than the parser goes: unreadable, so it must be withheld.
                for _ in 0..140 {
                    doc = Value::Array(vec![doc]);
                }
            }
            let text = if pretty { serde_json::to_string_pretty(&doc).unwrap() } else { doc.to_string() };
            let key = if key_mask % 3 == 0 { escaped(&key, key_mask) } else { key };
            let value = if value_mask % 3 == 0 { escaped(&canary, value_mask) } else { canary.clone() };
            text.replace(KEY_MARK, &key).replace(&canary, &value).into_bytes()
        })
}

/// Name-value pairs with the canary under a secret name, URL-encoded, with some bytes
/// percent-encoded though they need not be.
fn form_with_canary(names: &'static [&'static str], canary: String) -> impl Strategy<Value = String> {
    (
        prop::collection::vec((plain(), plain()), 0..5),
        spelling(names),
        any::<usize>(),
        any::<u64>(),
        prop::sample::select(vec!["&", "&&"]),
    )
        .prop_map(move |(mut pairs, name, at, mask, separator)| {
            let at = at % (pairs.len() + 1);
            pairs.insert(at, (name, canary.clone()));
            let encode = |text: &str| -> String {
                text.bytes()
                    .enumerate()
                    .map(|(i, b)| {
                        if b == b' ' {
                            "+".to_owned()
                        } else if mask >> (i % 64) & 1 == 1 && mask % 5 == 0 {
                            format!("%{b:02X}")
                        } else {
                            char::from(b).to_string()
                        }
                    })
                    .collect()
            };
            pairs.iter().map(|(n, v)| format!("{}={}", encode(n), encode(v))).collect::<Vec<_>>().join(separator)
        })
}

fn content_type() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "application/json",
            "application/json; charset=utf-8",
            "APPLICATION/JSON",
            "application/problem+json",
            "application/vnd.api+json",
            "application/x-www-form-urlencoded",
            "application/x-www-form-urlencoded; charset=UTF-8",
            "multipart/form-data; boundary=x",
            "text/plain",
            "text/html; charset=utf-8",
            "image/png",
            "application/octet-stream",
            "",
        ]).prop_map(|t| Some(t.to_owned())),
        1 => Just(None),
        1 => ".{0,24}".prop_map(Some),
    ]
}

fn encoding() -> impl Strategy<Value = Option<&'static str>> {
    prop::sample::select(vec![
        None,
        None,
        Some("identity"),
        Some("gzip"),
        Some("x-gzip"),
        Some("deflate"),
        Some("br"),
        Some(" GZIP "),
        Some("zstd"),
    ])
}

/// A body as a producer sees it: its (possibly encoded) bytes, capped, and its headers.
fn captured(
    plain: &[u8],
    encoding: Option<&str>,
    content_type: Option<&str>,
    cap: usize,
) -> (CapturedBody, Vec<Header>) {
    let mut headers = vec![Header::new("accept", "*/*")];
    if let Some(t) = content_type {
        headers.push(Header::new("Content-Type", t));
    }
    let bytes = match encoding {
        Some(e) => {
            headers.push(Header::new("content-encoding", e));
            encode(plain, Some(e.as_bytes())).unwrap_or_else(|| plain.to_vec())
        }
        None => plain.to_vec(),
    };
    (CapturedBody::capture(&bytes, cap), headers)
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Every string in a JSON value, keys included.
fn any_string(value: &Value, found: &dyn Fn(&str) -> bool) -> bool {
    match value {
        Value::String(s) => found(s),
        Value::Array(items) => items.iter().any(|v| any_string(v, found)),
        Value::Object(map) => map.iter().any(|(k, v)| found(k) || any_string(v, found)),
        _ => false,
    }
}

/// Whether the canary can be read from a body as it leaves the redactor: in its bytes,
/// decoded, as JSON (escapes undone) or as a form (percent-encoding undone).
fn leaks(body: &CapturedBody, headers: &[Header], canary: &str) -> bool {
    let encoding = shadowdiff_core::event::header_value(headers, "content-encoding");
    let decoded = decode(&body.bytes, encoding);
    let views: Vec<&[u8]> = [Some(body.bytes.as_slice()), decoded.as_deref()].into_iter().flatten().collect();
    views.iter().any(|view| {
        contains(view, canary)
            || serde_json::from_slice::<Value>(view).is_ok_and(|v| any_string(&v, &|s| s.contains(canary)))
            || form_urlencoded::parse(view).any(|(n, v)| n.contains(canary) || v.contains(canary))
    })
}

fn withheld(body: &CapturedBody) -> bool {
    body.bytes.is_empty() && body.truncated
}

/// Whether the rules claim to read a body like this one: a declared JSON or form type,
/// multipart (always withheld), or one that reads as JSON once its encoding is undone,
/// whatever its declared type.
fn claimed(content_type: Option<&str>, encoding: Option<&str>, plain: &[u8]) -> bool {
    let t = content_type.unwrap_or("").to_ascii_lowercase();
    let known = encoding.is_none_or(|e| encode(b"", Some(e.as_bytes())).is_some());
    t.contains("json")
        || t.starts_with("application/x-www-form-urlencoded")
        || t.starts_with("multipart/")
        || (known && matches!(plain.iter().find(|b| !b.is_ascii_whitespace()), Some(b'{' | b'[')))
}

proptest! {
    #[test]
    fn secret_json_keys_never_leave_in_clear(
        (canary, text) in canary().prop_flat_map(|c| (Just(c.clone()), json_with_canary(c))),
        content_type in prop_oneof![
            3 => Just(Some("application/json".to_owned())),
            2 => content_type(),
        ],
        encoding in encoding(),
        cap in prop_oneof![3 => Just(1usize << 20), 1 => 0usize..512],
        sealed in any::<bool>(),
    ) {
        let (mut body, headers) = captured(&text, encoding, content_type.as_deref(), cap);
        let hash = body.sha256.clone();
        redactor(sealed).body(&mut body, &headers);
        prop_assert_eq!(&body.sha256, &hash, "the hash describes the original body");
        if claimed(content_type.as_deref(), encoding, &text) {
            prop_assert!(
                withheld(&body) || !leaks(&body, &headers, &canary),
                "leaked {} from {:?} under {:?} {:?}: {:?}",
                canary,
                String::from_utf8_lossy(&text),
                content_type,
                encoding,
                String::from_utf8_lossy(&body.bytes)
            );
        }
    }

    #[test]
    fn secret_form_fields_never_leave_in_clear(
        (canary, form) in canary().prop_flat_map(|c| {
            let names: &'static [&'static str] = if c.as_bytes()[6] % 2 == 0 { &DEFAULT_JSON_KEYS } else { &DEFAULT_QUERY_PARAMS };
            (Just(c.clone()), form_with_canary(names, c))
        }),
        content_type in prop::sample::select(vec![
            "application/x-www-form-urlencoded",
            "application/x-www-form-urlencoded; charset=utf-8",
        ]),
        encoding in encoding(),
        cap in prop_oneof![3 => Just(1usize << 20), 1 => 0usize..256],
    ) {
        let (mut body, headers) = captured(form.as_bytes(), encoding, Some(content_type), cap);
        redactor(false).body(&mut body, &headers);
        prop_assert!(withheld(&body) || !leaks(&body, &headers, &canary), "leaked {} from {:?} {:?}", canary, form, encoding);
    }

    #[test]
    fn secret_query_parameters_never_leave_in_clear(
        (canary, query) in canary().prop_flat_map(|c| (Just(c.clone()), form_with_canary(&DEFAULT_QUERY_PARAMS, c))),
    ) {
        let out = redactor(false).query(&query);
        prop_assert!(!out.contains(&canary), "{} -> {}", query, out);
        prop_assert!(form_urlencoded::parse(out.as_bytes()).all(|(n, v)| !n.contains(&canary) && !v.contains(&canary)), "{} -> {}", query, out);
    }

    #[test]
    fn secret_headers_never_leave_in_clear(
        canary in canary(),
        names in prop::collection::vec((prop::sample::select(DEFAULT_HEADERS.to_vec()), any::<u64>()), 1..4),
        others in prop::collection::vec((prop_oneof![plain(), Just("x-shadowdiff-sealed-authorization".to_owned())], plain()), 0..4),
        sealed in any::<bool>(),
    ) {
        let mut headers: Vec<Header> = others.iter().map(|(n, v)| Header::new(n.clone(), v.clone())).collect();
        for (name, case) in &names {
            let spelled: String = name
                .chars()
                .enumerate()
                .map(|(i, c)| if case >> (i % 64) & 1 == 1 { c.to_ascii_uppercase() } else { c })
                .collect();
            headers.insert(usize::try_from(case % 5).unwrap().min(headers.len()), Header::new(spelled, format!("Bearer {canary}")));
        }
        redactor(sealed).headers(&mut headers);
        for h in &headers {
            prop_assert!(!h.name.contains(&canary) && !contains(&h.value, &canary), "{:?}", headers);
        }
        let companions = headers.iter().filter(|h| h.name.to_ascii_lowercase().starts_with(SEALED_HEADER_PREFIX)).count();
        let authorizations = names.iter().filter(|(n, _)| *n == "authorization").count();
        prop_assert_eq!(companions, if sealed { authorizations } else { 0 }, "only our own sealed companions: {:?}", headers);
    }

    #[test]
    fn any_body_under_any_type_is_redacted_without_panicking(
        raw in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..256),
            document().prop_map(|d| d.to_string().into_bytes()),
            ".{0,64}".prop_map(String::into_bytes),
        ],
        content_type in content_type(),
        encoding in encoding(),
        encode_it in any::<bool>(),
        cap in prop_oneof![Just(1usize << 20), 0usize..300],
        sealed in any::<bool>(),
    ) {
        let (mut body, headers) = if encode_it {
            captured(&raw, encoding, content_type.as_deref(), cap)
        } else {
            // The bytes as they are, whatever the header claims.
            let mut headers = Vec::new();
            if let Some(t) = &content_type { headers.push(Header::new("content-type", t.clone())); }
            if let Some(e) = encoding { headers.push(Header::new("content-encoding", e)); }
            (CapturedBody::capture(&raw, cap), headers)
        };
        let before = body.clone();
        redactor(sealed).body(&mut body, &headers);
        prop_assert_eq!(body.length, before.length);
        prop_assert_eq!(&body.sha256, &before.sha256);
        prop_assert!(withheld(&body) || !body.truncated || before.truncated);
    }

    #[test]
    fn any_query_and_headers_are_redacted_without_panicking(
        query in prop_oneof![any::<String>(), "[a-zA-Z0-9%&=+_;.-]{0,48}"],
        headers in prop::collection::vec((any::<String>(), prop::collection::vec(any::<u8>(), 0..32)), 0..6),
        sealed in any::<bool>(),
    ) {
        let r = redactor(sealed);
        let out = r.query(&query);
        if !form_urlencoded::parse(query.as_bytes()).any(|(n, _)| DEFAULT_QUERY_PARAMS.iter().any(|p| shadowdiff_core::redact::normalize(&n) == shadowdiff_core::redact::normalize(p))) {
            prop_assert_eq!(&out, &query, "a query without secrets is sent as it came");
        }
        let mut headers: Vec<Header> = headers.into_iter().map(|(n, v)| Header::new(n, v)).collect();
        r.headers(&mut headers);
    }
}

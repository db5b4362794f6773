//! One exchange of the load: a `GET /items/{n}`, every leg's answer, and with calls asked
//! for, every leg's downstream calls (`super::calls`).
//!
//! An exchange is made from its number, its request id and a generator seeded for it alone
//! ([`Exchange::rng`]), so it can be made again, the same, to publish its answers apart
//! from its request and calls.

use serde_json::{Value, json};
use shadowdiff_core::event::now_ms;
use shadowdiff_core::{
    CapturedBody, ExpectedLeg, Header, OutboundCallEvent, RequestEvent, RequestId, ResponseEvent, Role,
};

use super::{LoadSpec, calls};

/// Names the mirror's demo profile gives its targets (`deploy/local/config/mirror.toml`).
const SECONDARY: &str = "secondary";
const CANDIDATE: &str = "candidate";
/// The mirror profile and stage every shadow leg is said to be replayed under.
const PROFILE: &str = "bench";
const STAGE: &str = "shadow";

/// One request and the answers of every leg.
#[derive(Debug)]
pub(super) struct Exchange {
    pub(super) request: RequestEvent,
    pub(super) responses: Vec<ResponseEvent>,
    /// The downstream calls of each leg, in the order of `responses`.
    pub(super) calls: Vec<Vec<OutboundCallEvent>>,
    /// The candidate's answer carries another price.
    pub(super) changed: bool,
}

impl Exchange {
    /// The generator exchange `n` is made with: seeded from the run's seed and `n` alone.
    pub(super) fn rng(seed: u64, n: u64) -> fastrand::Rng {
        fastrand::Rng::with_seed(seed ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }

    /// Exchange `n`, with request id `id`, its contents drawn from `rng`.
    pub(super) fn new(n: u64, id: &RequestId, spec: &LoadSpec, rng: &mut fastrand::Rng) -> Self {
        let item = n % 10_000;
        let request = request(id, item);
        let expected: Vec<ExpectedLeg> =
            spec.legs.iter().filter_map(|role| deployment(*role).map(|d| ExpectedLeg::new(*role, d))).collect();
        let document = item_document(item, spec.body_bytes, rng);
        let changed = spec.legs.contains(&Role::Candidate) && rng.f64() * 100.0 < spec.changed_percent;
        let responses = spec
            .legs
            .iter()
            .map(|role| {
                let mut body = document.clone();
                body["trace_id"] = Value::String(format!("{:032x}", rng.u128(..)));
                if changed && *role == Role::Candidate {
                    body["price"]["amount"] = json!(body["price"]["amount"].as_u64().unwrap_or(0) + 100);
                }
                // Serializing a `Value` to memory cannot fail (its keys are strings).
                let body = serde_json::to_vec(&body).unwrap_or_default();
                response(&request, *role, &body, &expected, rng)
            })
            .collect::<Vec<_>>();
        let per_leg = spec.calls.as_ref().map_or(0, |c| c.per_leg);
        let calls = responses
            .iter()
            .map(|r| calls::made(&request.request_id, item, r.role, &r.deployment, per_leg, rng))
            .collect();
        Self { request, responses, calls, changed }
    }
}

fn deployment(role: Role) -> Option<&'static str> {
    match role {
        Role::Primary => None,
        Role::Secondary => Some(SECONDARY),
        Role::Candidate => Some(CANDIDATE),
    }
}

/// A request as the tap captures a browser's `GET /items/{item}`.
fn request(id: &RequestId, item: u64) -> RequestEvent {
    let headers = [
        ("accept", "application/json"),
        ("accept-encoding", "gzip, br"),
        ("user-agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0"),
        (shadowdiff_core::headers::REQUEST_ID, id.as_str()),
    ];
    RequestEvent {
        request_id: id.as_str().to_owned(),
        timestamp_ms: now_ms(),
        tap_id: "bench".to_owned(),
        method: "GET".to_owned(),
        scheme: "http".to_owned(),
        authority: "shop.internal".to_owned(),
        path: format!("/items/{item}"),
        query: None,
        route_template: Some("/items/{id}".to_owned()),
        headers: headers.iter().map(|(name, value)| Header::new(*name, *value)).collect(),
        body: CapturedBody::empty(),
        run: String::new(),
    }
}

/// One leg's answer: the tap's for the primary, the mirror's (with profile, stage and the
/// expected legs) for a shadow.
fn response(
    request: &RequestEvent,
    role: Role,
    body: &[u8],
    expected: &[ExpectedLeg],
    rng: &mut fastrand::Rng,
) -> ResponseEvent {
    let shadow = role != Role::Primary;
    let headers = [
        ("content-type", "application/json"),
        ("cache-control", "private, max-age=0"),
        ("date", "Mon, 01 Jul 2024 12:00:00 GMT"),
    ];
    ResponseEvent {
        request_id: request.request_id.clone(),
        timestamp_ms: now_ms(),
        role,
        deployment: deployment(role).unwrap_or("primary").to_owned(),
        status: Some(200),
        headers: headers.iter().map(|(name, value)| Header::new(*name, *value)).collect(),
        body: CapturedBody::capture(body, 64 * 1024),
        latency_us: i64::from(rng.u32(2_000..12_000)),
        error: None,
        profile: shadow.then(|| PROFILE.to_owned()),
        stage: shadow.then(|| STAGE.to_owned()),
        expected_legs: if shadow { expected.to_vec() } else { Vec::new() },
        run: String::new(),
    }
}

/// A catalogue item with a few variants, its description padded so that the serialized
/// document (with a 32-digit `trace_id`) takes about `body_bytes`.
fn item_document(item: u64, body_bytes: usize, rng: &mut fastrand::Rng) -> Value {
    const COLORS: [&str; 5] = ["black", "walnut", "oak", "white", "brass"];
    const SIZES: [&str; 3] = ["S", "M", "L"];
    const WORDS: [&str; 12] = [
        "solid",
        "hand-finished",
        "lamp",
        "shade",
        "linen",
        "adjustable",
        "arm",
        "warm",
        "light",
        "desk",
        "cable",
        "dimmable",
    ];
    let price = 1_000 + rng.u64(..50_000);
    let variants: Vec<Value> = (0..4)
        .map(|v| {
            json!({
                "id": format!("{item}-{v}"),
                "color": COLORS[rng.usize(..COLORS.len())],
                "size": SIZES[v % SIZES.len()],
                "stock": rng.u32(..200),
                "price": price + 100 * v as u64,
            })
        })
        .collect();
    let mut document = json!({
        "id": item,
        "sku": format!("SKU-{item:06}"),
        "name": format!("Desk lamp No. {item}"),
        "price": { "amount": price, "currency": "EUR", "tax_included": true },
        "stock": rng.u32(..1_000),
        "rating": { "average": f64::from(rng.u32(10..50)) / 10.0, "count": rng.u32(..5_000) },
        "tags": ["lighting", "desk", COLORS[rng.usize(..COLORS.len())]],
        "variants": variants,
        "trace_id": format!("{:032x}", 0u128),
        "description": "",
    });
    let bare = serde_json::to_vec(&document).map_or(0, |b| b.len());
    let mut description = String::with_capacity(body_bytes.saturating_sub(bare));
    while description.len() < body_bytes.saturating_sub(bare) {
        if !description.is_empty() {
            description.push(' ');
        }
        description.push_str(WORDS[rng.usize(..WORDS.len())]);
    }
    description.truncate(body_bytes.saturating_sub(bare));
    document["description"] = Value::String(description);
    document
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::CallsSpec;

    fn spec(legs: Vec<Role>, changed_percent: f64) -> LoadSpec {
        LoadSpec {
            brokers: String::new(),
            requests_topic: String::new(),
            responses_topic: String::new(),
            exchanges: 1,
            body_bytes: 2048,
            legs,
            changed_percent,
            seed: 7,
            calls: None,
            withheld: Vec::new(),
        }
    }

    fn body(event: &ResponseEvent) -> Value {
        serde_json::from_slice(&event.body.bytes).unwrap_or_else(|e| panic!("body is JSON: {e}"))
    }

    #[test]
    fn bodies_take_the_size_asked_for() {
        let mut rng = fastrand::Rng::with_seed(1);
        for size in [2048, 4096] {
            let document = item_document(3, size, &mut rng);
            let len = serde_json::to_vec(&document).map(|b| b.len()).unwrap_or(0);
            assert_eq!(len, size, "document of {size} bytes asked for");
        }
    }

    #[test]
    fn shadow_legs_name_every_shadow_leg_and_differ_in_their_trace_id() {
        let legs = vec![Role::Primary, Role::Secondary, Role::Candidate];
        let exchange = Exchange::new(42, &RequestId::mint(), &spec(legs, 0.0), &mut fastrand::Rng::with_seed(3));
        let [primary, secondary, candidate] = &exchange.responses[..] else {
            panic!("three responses, got {}", exchange.responses.len())
        };
        assert_eq!((primary.role, secondary.role, candidate.role), (Role::Primary, Role::Secondary, Role::Candidate));
        assert!(primary.expected_legs.is_empty());
        let expected = vec![ExpectedLeg::new(Role::Secondary, SECONDARY), ExpectedLeg::new(Role::Candidate, CANDIDATE)];
        assert_eq!(secondary.expected_legs, expected);
        assert_eq!(candidate.expected_legs, expected);
        assert!(exchange.responses.iter().all(|r| r.request_id == exchange.request.request_id));
        let (mut p, mut s, mut c) = (body(primary), body(secondary), body(candidate));
        assert_ne!(p["trace_id"], s["trace_id"]);
        assert_ne!(p["trace_id"], c["trace_id"]);
        for b in [&mut p, &mut s, &mut c] {
            b["trace_id"] = Value::Null;
        }
        assert_eq!(p, s);
        assert_eq!(p, c);
        assert!(!exchange.changed);
    }

    #[test]
    fn a_changed_candidate_differs_in_its_price_only() {
        let legs = vec![Role::Primary, Role::Secondary, Role::Candidate];
        let exchange = Exchange::new(1, &RequestId::mint(), &spec(legs, 100.0), &mut fastrand::Rng::with_seed(5));
        assert!(exchange.changed);
        let (mut p, mut s, mut c) =
            (body(&exchange.responses[0]), body(&exchange.responses[1]), body(&exchange.responses[2]));
        let price = p["price"]["amount"].as_u64().unwrap_or(0);
        assert_eq!(s["price"]["amount"].as_u64(), Some(price));
        assert_eq!(c["price"]["amount"].as_u64(), Some(price + 100));
        for b in [&mut p, &mut s, &mut c] {
            b["trace_id"] = Value::Null;
            b["price"]["amount"] = Value::Null;
        }
        assert_eq!(p, c);
        assert_eq!(p, s);
    }

    #[test]
    fn without_a_secondary_the_candidate_expects_only_itself() {
        let exchange = Exchange::new(
            9,
            &RequestId::mint(),
            &spec(vec![Role::Primary, Role::Candidate], 0.0),
            &mut fastrand::Rng::with_seed(2),
        );
        assert_eq!(exchange.responses.len(), 2);
        assert_eq!(exchange.responses[1].expected_legs, vec![ExpectedLeg::new(Role::Candidate, CANDIDATE)]);
    }

    #[test]
    fn with_calls_asked_for_every_leg_makes_them_under_its_own_deployment() {
        let legs = vec![Role::Primary, Role::Secondary, Role::Candidate];
        let with_calls = LoadSpec { calls: Some(CallsSpec { topic: "out".into(), per_leg: 2 }), ..spec(legs, 0.0) };
        let exchange = Exchange::new(5, &RequestId::mint(), &with_calls, &mut fastrand::Rng::with_seed(8));
        assert_eq!(exchange.calls.len(), 3);
        for (response, calls) in exchange.responses.iter().zip(&exchange.calls) {
            assert_eq!(calls.len(), 2);
            assert!(calls.iter().all(|c| c.deployment == response.deployment && c.role == response.role));
            assert!(calls.iter().all(|c| c.request_id == exchange.request.request_id));
        }
        let none =
            Exchange::new(5, &RequestId::mint(), &spec(vec![Role::Primary], 0.0), &mut fastrand::Rng::with_seed(8));
        assert!(none.calls.iter().all(Vec::is_empty), "no calls unless asked for");
    }

    #[test]
    fn an_exchange_made_again_from_its_number_and_id_is_the_same() {
        let legs = vec![Role::Primary, Role::Secondary, Role::Candidate];
        let spec = LoadSpec { calls: Some(CallsSpec { topic: "out".into(), per_leg: 2 }), ..spec(legs, 50.0) };
        let id = RequestId::mint();
        let make = || Exchange::new(3, &id, &spec, &mut Exchange::rng(spec.seed, 3));
        let (first, again) = (make(), make());
        assert_eq!(first.request.request_id, id.as_str());
        assert_eq!(first.responses.len(), again.responses.len());
        for (a, b) in first.responses.iter().zip(&again.responses) {
            assert_eq!((&a.body, a.latency_us), (&b.body, b.latency_us));
        }
        assert_eq!(first.changed, again.changed);
        let other = Exchange::new(4, &id, &spec, &mut Exchange::rng(spec.seed, 4));
        assert_ne!(first.responses[0].body, other.responses[0].body, "another number, other contents");
    }
}

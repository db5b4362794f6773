//! Load for the correlator's throughput benchmark (`deploy/bench/correlator-throughput.sh`):
//! whole exchanges published straight to the request and response topics, event for event
//! as the tap and the mirror publish them, as fast as the producer takes them.
//!
//! Each exchange is a `GET /items/{n}` answered by every leg with the same catalogue item,
//! padded to the body size asked for. Every leg stamps its own random `trace_id` into the
//! body (noise the secondary shows too), and a small share of candidate answers carry
//! another price (a real difference), so the correlator diffs every shadow leg, as it
//! would in production, and finds what it should.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rdkafka::error::KafkaError;
use rdkafka::producer::{DeliveryFuture, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use serde_json::{Value, json};
use shadowdiff_core::codec::{EncodeError, SchemaError};
use shadowdiff_core::event::now_ms;
use shadowdiff_core::{CapturedBody, EventCodec, ExpectedLeg, Header, RequestEvent, RequestId, ResponseEvent, Role};
use shadowdiff_runtime::kafka::{KafkaConfig, Producer};

/// Names the mirror's demo profile gives its targets (`deploy/local/config/mirror.toml`).
const SECONDARY: &str = "secondary";
const CANDIDATE: &str = "candidate";
/// The mirror profile and stage every shadow leg is said to be replayed under.
const PROFILE: &str = "bench";
const STAGE: &str = "shadow";
/// Deliveries left unconfirmed at most; beyond it the oldest is awaited before sending more.
const MAX_IN_FLIGHT: usize = 200_000;
/// How long a message may wait for the broker before the run fails.
const MESSAGE_TIMEOUT: Duration = Duration::from_secs(120);

/// What to publish, and where.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    pub brokers: String,
    pub requests_topic: String,
    pub responses_topic: String,
    /// Whole exchanges to publish.
    pub exchanges: u64,
    /// Size of each response body, in bytes (at least what the item's fields take, ~500).
    pub body_bytes: usize,
    /// The legs that answer each request. The request is always published; shadow legs
    /// (`Secondary`, `Candidate`) each name all shadow legs as expected, as the mirror does.
    pub legs: Vec<Role>,
    /// Share of candidate answers, in percent, whose price differs from the primary's.
    pub changed_percent: f64,
    /// Seeds item contents, trace ids and which candidate answers change.
    pub seed: u64,
}

/// What a run published.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Loaded {
    pub exchanges: u64,
    pub events: u64,
    /// Encoded event bytes, before the producer's compression.
    pub bytes: u64,
    /// Candidate answers with a changed price.
    pub changed: u64,
    pub elapsed: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("kafka producer for {brokers}: {source}")]
    Producer { brokers: String, source: KafkaError },
    #[error(transparent)]
    Schema(#[from] SchemaError),
    #[error(transparent)]
    Encode(#[from] EncodeError),
    #[error("publish to {topic}: {source}")]
    Publish { topic: String, source: KafkaError },
    #[error("publish to {topic}: the producer went away before confirming delivery")]
    Canceled { topic: String },
}

/// Publishes `spec.exchanges` whole exchanges, then waits until the broker has every event.
pub async fn publish(spec: &LoadSpec) -> Result<Loaded, LoadError> {
    let producer = producer(&spec.brokers)?;
    let codec = EventCodec::new()?;
    let mut rng = fastrand::Rng::with_seed(spec.seed);
    let mut pending = Pending::new(&producer, spec);
    let mut loaded = Loaded { exchanges: 0, events: 0, bytes: 0, changed: 0, elapsed: Duration::ZERO };
    let started = Instant::now();
    for n in 0..spec.exchanges {
        let exchange = Exchange::new(n, spec, &mut rng);
        loaded.changed += u64::from(exchange.changed);
        let id = exchange.request.request_id.clone();
        let payload = codec.encode(&exchange.request)?;
        loaded.bytes += payload.len() as u64;
        pending.send(Topic::Requests, &id, &payload).await?;
        for response in &exchange.responses {
            let payload = codec.encode(response)?;
            loaded.bytes += payload.len() as u64;
            pending.send(Topic::Responses, &id, &payload).await?;
        }
        loaded.events += 1 + exchange.responses.len() as u64;
        loaded.exchanges += 1;
    }
    pending.drain().await?;
    loaded.elapsed = started.elapsed();
    Ok(loaded)
}

/// The services' producer (idempotent, lz4, Java-compatible partitioning), with queues deep
/// enough to keep the broker busy while events are built.
fn producer(brokers: &str) -> Result<Producer, LoadError> {
    let properties = [
        ("queue.buffering.max.messages", "1000000"),
        ("queue.buffering.max.kbytes", "1048576"),
        ("batch.num.messages", "10000"),
    ];
    KafkaConfig {
        brokers: brokers.to_owned(),
        linger: Some(Duration::from_millis(20)),
        message_timeout: MESSAGE_TIMEOUT,
        properties: properties
            .iter()
            .map(|(k, v)| ((*k).to_owned(), shadowdiff_runtime::config::Secret::new((*v).to_owned())))
            .collect(),
    }
    .producer()
    .map_err(|source| LoadError::Producer { brokers: brokers.to_owned(), source })
}

/// Which of the two topics an event goes to.
#[derive(Debug, Clone, Copy)]
enum Topic {
    Requests,
    Responses,
}

/// Deliveries not yet confirmed, oldest first.
struct Pending<'a> {
    producer: &'a Producer,
    requests: &'a str,
    responses: &'a str,
    deliveries: VecDeque<(Topic, DeliveryFuture)>,
}

impl std::fmt::Debug for Pending<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending").field("deliveries", &self.deliveries.len()).finish_non_exhaustive()
    }
}

impl<'a> Pending<'a> {
    fn new(producer: &'a Producer, spec: &'a LoadSpec) -> Self {
        Self { producer, requests: &spec.requests_topic, responses: &spec.responses_topic, deliveries: VecDeque::new() }
    }

    fn name(&self, topic: Topic) -> &'a str {
        match topic {
            Topic::Requests => self.requests,
            Topic::Responses => self.responses,
        }
    }

    /// Hands one event to the producer. A full queue is back-pressure: the oldest delivery
    /// is awaited (or, with none pending, a moment passes) and the event is offered again.
    async fn send(&mut self, topic: Topic, key: &str, payload: &[u8]) -> Result<(), LoadError> {
        let name = self.name(topic);
        let mut record = FutureRecord::to(name).key(key).payload(payload);
        loop {
            match self.producer.send_result(record) {
                Ok(delivery) => {
                    self.deliveries.push_back((topic, delivery));
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    record = returned;
                    if !self.confirm_oldest().await? {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
                Err((source, _)) => return Err(LoadError::Publish { topic: name.to_owned(), source }),
            }
        }
        while self.deliveries.len() > MAX_IN_FLIGHT {
            self.confirm_oldest().await?;
        }
        Ok(())
    }

    /// Awaits the oldest delivery; false when none was pending.
    async fn confirm_oldest(&mut self) -> Result<bool, LoadError> {
        let Some((topic, delivery)) = self.deliveries.pop_front() else { return Ok(false) };
        let name = self.name(topic);
        match delivery.await {
            Ok(Ok(_)) => Ok(true),
            Ok(Err((source, _))) => Err(LoadError::Publish { topic: name.to_owned(), source }),
            Err(_) => Err(LoadError::Canceled { topic: name.to_owned() }),
        }
    }

    async fn drain(&mut self) -> Result<(), LoadError> {
        while self.confirm_oldest().await? {}
        Ok(())
    }
}

/// One request and the answers of every leg.
#[derive(Debug)]
struct Exchange {
    request: RequestEvent,
    responses: Vec<ResponseEvent>,
    /// The candidate's answer carries another price.
    changed: bool,
}

impl Exchange {
    fn new(n: u64, spec: &LoadSpec, rng: &mut fastrand::Rng) -> Self {
        let item = n % 10_000;
        let request = request(&RequestId::mint(), item);
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
            .collect();
        Self { request, responses, changed }
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
        let exchange = Exchange::new(42, &spec(legs, 0.0), &mut fastrand::Rng::with_seed(3));
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
        let exchange = Exchange::new(1, &spec(legs, 100.0), &mut fastrand::Rng::with_seed(5));
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
        let exchange =
            Exchange::new(9, &spec(vec![Role::Primary, Role::Candidate], 0.0), &mut fastrand::Rng::with_seed(2));
        assert_eq!(exchange.responses.len(), 2);
        assert_eq!(exchange.responses[1].expected_legs, vec![ExpectedLeg::new(Role::Candidate, CANDIDATE)]);
    }
}

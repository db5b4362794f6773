//! Recorded traffic on a test's own topics, for `shadowctl record` and the replay crate:
//! events published as the tap publishes them (its encoder, keyed by request id, with the
//! producer every service builds), each a moment after it happened.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::producer::FutureRecord;
use shadowdiff_core::{CapturedBody, EventCodec, Header, RequestEvent, ResponseEvent, Role};
use shadowdiff_runtime::kafka::{KafkaConfig, TopicsConfig};

use crate::unique;

/// How long after an event the tap's producer stamps its record: the broker timestamp
/// (CreateTime) of every event published here.
pub const PUBLISH_DELAY_MS: i64 = 200;

/// A requests and a responses topic of one test, co-partitioned as the services need.
#[derive(Debug, Clone)]
pub struct ReplayTopics {
    pub requests: String,
    pub responses: String,
}

impl ReplayTopics {
    /// Creates both topics with `partitions` partitions each.
    pub async fn create(brokers: &str, partitions: i32) -> Self {
        let prefix = unique("replay");
        let topics = Self { requests: format!("{prefix}.requests"), responses: format!("{prefix}.responses") };
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .create()
            .unwrap_or_else(|e| panic!("admin client: {e}"));
        let new: Vec<NewTopic<'_>> = [&topics.requests, &topics.responses]
            .iter()
            .map(|name| NewTopic::new(name, partitions, TopicReplication::Fixed(1)))
            .collect();
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        for result in admin.create_topics(&new, &options).await.unwrap_or_else(|e| panic!("create topics: {e}")) {
            result.unwrap_or_else(|(topic, code)| panic!("create topic {topic}: {code}"));
        }
        topics
    }

    /// The `[topics]` section naming them.
    pub fn config(&self) -> TopicsConfig {
        TopicsConfig { requests: self.requests.clone(), responses: self.responses.clone(), ..TopicsConfig::default() }
    }
}

/// A request event as the tap publishes it.
pub fn request(id: &str, timestamp_ms: i64, method: &str, route: &str, path: &str) -> RequestEvent {
    RequestEvent {
        request_id: id.to_owned(),
        timestamp_ms,
        tap_id: "tap-replay-test".into(),
        method: method.into(),
        scheme: "http".into(),
        authority: "shop.test".into(),
        path: path.into(),
        query: Some(format!("q={id}")),
        route_template: Some(route.into()),
        headers: vec![Header::new("accept", "application/json"), Header::new("x-request-id", id)],
        body: CapturedBody::empty(),
        run: String::new(),
    }
}

/// A response event of `role`, 5 ms after `request`, whose body names its role.
pub fn response(request: &RequestEvent, role: Role, deployment: &str) -> ResponseEvent {
    let body = format!(r#"{{"id":"{}","from":"{}"}}"#, request.request_id, role.as_str());
    ResponseEvent {
        request_id: request.request_id.clone(),
        timestamp_ms: request.timestamp_ms + 5,
        role,
        deployment: deployment.into(),
        status: Some(200),
        headers: vec![Header::new("content-type", "application/json")],
        body: CapturedBody::capture(body.as_bytes(), 64 * 1024),
        latency_us: 4_000,
        error: None,
        profile: (role != Role::Primary).then(|| "replay-test".to_owned()),
        stage: (role != Role::Primary).then(|| "shadow".to_owned()),
        expected_legs: Vec::new(),
        run: String::new(),
    }
}

/// The primary's response to `request`, as the tap publishes it.
pub fn primary(request: &RequestEvent) -> ResponseEvent {
    response(request, Role::Primary, "primary")
}

/// One record to publish.
#[derive(Debug, Clone)]
pub struct Record {
    pub topic: String,
    pub key: Option<String>,
    /// `None` publishes a record without a value.
    pub payload: Option<Vec<u8>>,
    /// The broker timestamp (CreateTime).
    pub timestamp_ms: i64,
}

impl Record {
    pub fn request(topic: &str, event: &RequestEvent) -> Self {
        Self::event(topic, &event.request_id, event, event.timestamp_ms)
    }

    pub fn response(topic: &str, event: &ResponseEvent) -> Self {
        Self::event(topic, &event.request_id, event, event.timestamp_ms)
    }

    fn event<E: shadowdiff_core::codec::Event>(topic: &str, key: &str, event: &E, at_ms: i64) -> Self {
        let codec = EventCodec::new().unwrap_or_else(|e| panic!("{e}"));
        let payload = codec.encode(event).unwrap_or_else(|e| panic!("encode: {e}"));
        Self {
            topic: topic.to_owned(),
            key: Some(key.to_owned()),
            payload: Some(payload),
            timestamp_ms: at_ms + PUBLISH_DELAY_MS,
        }
    }

    /// Bytes that are no event, keyed `key`, stamped `at_ms`.
    pub fn raw(topic: &str, key: Option<&str>, payload: Option<&[u8]>, at_ms: i64) -> Self {
        Self {
            topic: topic.to_owned(),
            key: key.map(str::to_owned),
            payload: payload.map(<[u8]>::to_vec),
            timestamp_ms: at_ms + PUBLISH_DELAY_MS,
        }
    }
}

/// Publishes `records` in order (all in flight at once), and waits until each is delivered.
pub async fn publish(brokers: &str, records: &[Record]) {
    let producer = KafkaConfig { brokers: brokers.to_owned(), ..KafkaConfig::default() }
        .producer()
        .unwrap_or_else(|e| panic!("producer: {e}"));
    let mut deliveries = Vec::with_capacity(records.len());
    for record in records {
        let mut out = FutureRecord::<str, [u8]>::to(&record.topic).timestamp(record.timestamp_ms);
        out.key = record.key.as_deref();
        out.payload = record.payload.as_deref();
        let delivery = loop {
            match producer.send_result(out) {
                Ok(delivery) => break delivery,
                // The local queue is full: let deliveries drain, then try again.
                Err((_, returned)) => {
                    out = returned;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        deliveries.push(delivery);
    }
    for delivery in deliveries {
        match delivery.await {
            Ok(Ok(_)) => {}
            Ok(Err((error, _))) => panic!("publish: {error}"),
            Err(_) => panic!("publish: the producer went away"),
        }
    }
}

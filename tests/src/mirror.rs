//! Mirror replicas in this process on one test's own topics, fed request events directly,
//! and a recording backend to replay to.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::Request;
use rdkafka::producer::FutureRecord;
use shadowdiff_core::{CapturedBody, EventCodec, Header, RequestEvent};

use crate::pipeline::TEST_HMAC_KEY;
use shadowdiff_mirror::MirrorConfig;
use shadowdiff_runtime::CancellationToken;
use shadowdiff_runtime::config::load_str;
use shadowdiff_runtime::kafka::KafkaConfig;

use crate::unique;

/// Topic names shared by every replica of one test.
#[derive(Debug, Clone)]
pub struct MirrorTopics {
    pub requests: String,
    pub responses: String,
    pub profiles: String,
    pub group: String,
    prefix: String,
}

impl MirrorTopics {
    /// Where the replicas send what they cannot act on.
    pub fn dead_letter(&self) -> String {
        format!("{}.dead-letter", self.prefix)
    }

    pub fn new() -> Self {
        let prefix = unique("mirror");
        Self {
            requests: format!("{prefix}.requests"),
            responses: format!("{prefix}.responses"),
            profiles: format!("{prefix}.profiles"),
            group: format!("{prefix}-group"),
            prefix,
        }
    }
}

impl Default for MirrorTopics {
    fn default() -> Self {
        Self::new()
    }
}

pub struct MirrorUnderTest {
    pub admin_url: String,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for MirrorUnderTest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MirrorUnderTest").field("admin_url", &self.admin_url).finish_non_exhaustive()
    }
}

impl MirrorUnderTest {
    /// Starts a replica; `profiles` is TOML for `[[mirror.profiles]]` entries (may be empty).
    pub async fn start(brokers: &str, topics: &MirrorTopics, profiles: &str) -> Self {
        Self::start_with(brokers, topics, "", profiles).await
    }

    /// [`Self::start`], with `mirror_keys` added to the `[mirror]` section.
    pub async fn start_with(brokers: &str, topics: &MirrorTopics, mirror_keys: &str, profiles: &str) -> Self {
        // The admin port must be known to the test, so pick a free one first.
        let admin = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap_or_else(|e| panic!("no free port: {e}"));
        let p = &topics.prefix;
        let text = format!(
            "[mirror]\ngroup_id = \"{}\"\nallowed_targets = [\"127.0.0.1\"]\nallow_loopback = true\n{mirror_keys}\n{profiles}\n\
             [mirror.redaction]\nhmac_key = \"{TEST_HMAC_KEY}\"\n{}\n\
             [kafka]\nbrokers = \"{brokers}\"\nlinger_ms = 1\n\
             [topics]\nrequests = \"{}\"\nresponses = \"{}\"\nprofiles = \"{}\"\n\
             dead_letter = \"{p}.dead-letter\"\noutbound = \"{p}.outbound\"\npartitions = 2\n\
             [admin]\nlisten = \"{admin}\"\n",
            topics.group,
            crate::auth::auth_toml(),
            topics.requests,
            topics.responses,
            topics.profiles
        );
        let config: MirrorConfig = load_str(&text, "mirror test config", Vec::new()).unwrap_or_else(|e| panic!("{e}"));
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        let task = tokio::spawn(async move {
            if let Err(error) = shadowdiff_mirror::run(config, stop).await {
                eprintln!("mirror failed: {error}");
            }
        });
        let admin_url = format!("http://{admin}");
        let client = reqwest::Client::new();
        for _ in 0..100 {
            if client.get(format!("{admin_url}/healthz")).send().await.is_ok() {
                return Self { admin_url, shutdown, task };
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("mirror admin endpoint did not come up on {admin_url}");
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(30), self.task).await;
    }
}

/// A request event as a tap would publish it.
pub fn request_event(id: &str, method: &str, path: &str) -> RequestEvent {
    RequestEvent {
        request_id: id.to_owned(),
        timestamp_ms: shadowdiff_core::event::now_ms(),
        tap_id: "test".into(),
        method: method.into(),
        scheme: "http".into(),
        authority: "test".into(),
        path: path.into(),
        query: None,
        route_template: Some(path.into()),
        headers: vec![Header::new("idempotency-key", "key-1")],
        body: CapturedBody::capture(b"{}", 1024),
    }
}

/// Publishes request events as a tap would, keyed by request id.
pub async fn publish(brokers: &str, topic: &str, events: &[RequestEvent]) {
    let producer = KafkaConfig { brokers: brokers.to_owned(), ..KafkaConfig::default() }
        .producer()
        .unwrap_or_else(|e| panic!("producer: {e}"));
    let codec = EventCodec::new().unwrap_or_else(|e| panic!("{e}"));
    for event in events {
        let payload = codec.encode(event).unwrap_or_else(|e| panic!("{e}"));
        let record = FutureRecord::to(topic).key(&event.request_id).payload(&payload);
        producer.send(record, Duration::from_secs(10)).await.unwrap_or_else(|(e, _)| panic!("publish: {e}"));
    }
}

/// One request a recording backend received.
#[derive(Debug, Clone)]
pub struct Received {
    pub at: Instant,
    pub method: String,
    pub path: String,
    pub headers: http::HeaderMap,
}

/// A backend that answers 200 to everything (after `delay`) and records what it got.
pub async fn recording_backend(delay: Duration) -> (SocketAddr, Arc<Mutex<Vec<Received>>>) {
    let received = Arc::new(Mutex::new(Vec::new()));
    let log = received.clone();
    let app = Router::new().fallback(move |request: Request| {
        let log = log.clone();
        async move {
            if let Ok(mut log) = log.lock() {
                log.push(Received {
                    at: Instant::now(),
                    method: request.method().to_string(),
                    path: request.uri().path().to_owned(),
                    headers: request.headers().clone(),
                });
            }
            tokio::time::sleep(delay).await;
            "{\"ok\":true}"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, received)
}

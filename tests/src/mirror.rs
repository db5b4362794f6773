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
    /// Of every topic the replicas create (2).
    pub partitions: i32,
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
            partitions: 2,
            prefix,
        }
    }

    /// A replica's config: `mirror_keys` and `profiles` (`[[mirror.profiles]]` entries) under
    /// `[mirror]`, `redaction_keys` under `[mirror.redaction]`, its admin port on `admin`.
    pub fn config(
        &self,
        brokers: &str,
        mirror_keys: &str,
        redaction_keys: &str,
        profiles: &str,
        admin: SocketAddr,
    ) -> String {
        let p = &self.prefix;
        format!(
            "[mirror]\ngroup_id = \"{}\"\nallowed_targets = [\"127.0.0.1\"]\nallow_loopback = true\n{mirror_keys}\n{profiles}\n\
             [mirror.redaction]\nhmac_key = \"{TEST_HMAC_KEY}\"\n{redaction_keys}\n{}\n\
             [kafka]\nbrokers = \"{brokers}\"\nlinger_ms = 1\n\
             [topics]\nrequests = \"{}\"\nresponses = \"{}\"\nprofiles = \"{}\"\n\
             dead_letter = \"{p}.dead-letter\"\noutbound = \"{p}.outbound\"\npartitions = {}\n\
             [admin]\nlisten = \"{admin}\"\n",
            self.group,
            crate::auth::auth_toml(),
            self.requests,
            self.responses,
            self.profiles,
            self.partitions,
        )
    }

    /// Replicas that consume `requests` and publish to `responses`, topics a tap of the
    /// same test publishes to; the profile topic and group are their own.
    pub fn on(requests: &str, responses: &str) -> Self {
        Self { requests: requests.to_owned(), responses: responses.to_owned(), ..Self::new() }
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
        Self::start_full(brokers, topics, mirror_keys, "", profiles).await
    }

    /// [`Self::start_with`], with `redaction_keys` added to `[mirror.redaction]` (a
    /// `seal_key`, say).
    pub async fn start_full(
        brokers: &str,
        topics: &MirrorTopics,
        mirror_keys: &str,
        redaction_keys: &str,
        profiles: &str,
    ) -> Self {
        // Installs the process-wide metrics recorder before anything counts, as the binaries'
        // launcher does; without it counters go nowhere and /metrics is empty.
        shadowdiff_runtime::telemetry::metrics();
        // The admin port must be known to the test: reserved, so no other test is given it
        // before the mirror binds it.
        let reserved = crate::ports::ReservedPort::new();
        let admin = reserved.addr();
        let text = topics.config(brokers, mirror_keys, redaction_keys, profiles, admin);
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
            assert!(!task.is_finished(), "the mirror stopped while starting; see its error above");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("mirror admin endpoint did not come up on {admin_url}");
    }

    /// The sum of a metric's series on this replica's `/metrics` (see [`crate::admin::metric`]).
    /// The recorder is process-wide: every replica in this test binary counts into it.
    pub async fn metric(&self, name: &str, labels: &str) -> f64 {
        crate::admin::metric(&self.admin_url, name, labels).await
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
        run: String::new(),
    }
}

/// Publishes request events as a tap would, keyed by request id.
pub async fn publish(brokers: &str, topic: &str, events: &[RequestEvent]) {
    publish_to(brokers, topic, None, events).await;
}

/// [`publish`], in order, to `partition` when given (else where the key hashes to).
pub async fn publish_to(brokers: &str, topic: &str, partition: Option<i32>, events: &[RequestEvent]) {
    let producer = KafkaConfig { brokers: brokers.to_owned(), ..KafkaConfig::default() }
        .producer()
        .unwrap_or_else(|e| panic!("producer: {e}"));
    let codec = EventCodec::new().unwrap_or_else(|e| panic!("{e}"));
    for event in events {
        let payload = codec.encode(event).unwrap_or_else(|e| panic!("{e}"));
        let mut record = FutureRecord::to(topic).key(&event.request_id).payload(&payload);
        record.partition = partition;
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
    let addr = crate::serve(app).await;
    (addr, received)
}

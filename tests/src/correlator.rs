//! Feeding the correlator directly: crafted exchanges ([`Exchange`], [`Reply`]) published as
//! the tap and the mirror would ([`Publisher`]), and a correlator in this process on one
//! test's own topics, consumer group and ClickHouse database ([`CorrelatorUnderTest`]).

use std::io::Write as _;
use std::time::Duration;

use rdkafka::producer::FutureRecord;
use shadowdiff_core::{
    CapturedBody, EventCodec, ExpectedLeg, Header, OutboundCallEvent, RequestEvent, ResponseEvent, Role,
};
use shadowdiff_runtime::CancellationToken;
use shadowdiff_runtime::kafka::{KafkaConfig, Producer};

use crate::infra::Infra;
use crate::mirror::request_event;
use crate::unique;

/// The mirror profile and rollout stage every crafted shadow leg was replayed under.
pub const PROFILE: &str = "p";
pub const STAGE: &str = "shadow";

/// Bytes of a body a leg captures unless told otherwise (the tap's and mirror's cap is larger;
/// crafted bodies are small).
const CAPTURE_CAP: usize = 64 * 1024;

/// What one leg answered: status, headers and body, with the latency it took.
#[derive(Debug, Clone)]
pub struct Reply {
    status: i32,
    headers: Vec<Header>,
    body: Vec<u8>,
    cap: usize,
    latency_us: i64,
}

impl Reply {
    /// A 200 with this content type and body, in 1 ms.
    pub fn new(content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status: 200,
            headers: vec![Header::new("content-type", content_type)],
            body: body.into(),
            cap: CAPTURE_CAP,
            latency_us: 1000,
        }
    }

    /// A 200 `application/json` answer.
    pub fn json(body: &str) -> Self {
        Self::new("application/json", body)
    }

    pub fn status(mut self, status: i32) -> Self {
        self.status = status;
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push(Header::new(name, value));
        self
    }

    pub fn latency_us(mut self, latency_us: i64) -> Self {
        self.latency_us = latency_us;
        self
    }

    /// The body gzip-encoded on the wire, with `Content-Encoding: gzip`.
    pub fn gzip(mut self) -> Self {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        let encoded = encoder.write_all(&self.body).and_then(|()| encoder.finish());
        self.body = encoded.unwrap_or_else(|e| panic!("gzip in memory: {e}"));
        self.header("content-encoding", "gzip")
    }

    /// Captures at most `cap` bytes of the body, as a tap or mirror with that cap would.
    pub fn capture_cap(mut self, cap: usize) -> Self {
        self.cap = cap;
        self
    }

    /// The body as it goes on the wire (encoded, whole).
    pub fn wire_body(&self) -> &[u8] {
        &self.body
    }

    fn event(&self, id: &str, role: Role, deployment: &str) -> ResponseEvent {
        let shadow = role != Role::Primary;
        ResponseEvent {
            request_id: id.to_owned(),
            timestamp_ms: shadowdiff_core::event::now_ms(),
            role,
            deployment: deployment.to_owned(),
            status: Some(self.status),
            headers: self.headers.clone(),
            body: CapturedBody::capture(&self.body, self.cap),
            latency_us: self.latency_us,
            error: None,
            // The tap knows no profile; the mirror names the one it replayed under.
            profile: shadow.then(|| PROFILE.to_owned()),
            stage: shadow.then(|| STAGE.to_owned()),
            expected_legs: Vec::new(),
            run: String::new(),
        }
    }
}

/// One request with its primary answer and the shadow legs the mirror replays it to. Every
/// shadow event names all of the exchange's shadow legs as expected, as the mirror's do
/// (services/mirror/src/replay.rs), including legs that never answer.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub request: RequestEvent,
    primary: Reply,
    /// In publishing order; `None` for a leg that is expected but never answers.
    shadows: Vec<(Role, String, Option<Reply>)>,
}

impl Exchange {
    /// A `GET` of `route` (path and template alike) answered by the primary with `primary`.
    pub fn new(id: &str, route: &str, primary: Reply) -> Self {
        Self { request: request_event(id, "GET", route), primary, shadows: Vec::new() }
    }

    pub fn id(&self) -> &str {
        &self.request.request_id
    }

    pub fn secondary(self, deployment: &str, reply: Reply) -> Self {
        self.shadow(Role::Secondary, deployment, Some(reply))
    }

    pub fn candidate(self, deployment: &str, reply: Reply) -> Self {
        self.shadow(Role::Candidate, deployment, Some(reply))
    }

    /// A candidate the mirror replays to that never answers (not within the window, anyway).
    pub fn silent_candidate(self, deployment: &str) -> Self {
        self.shadow(Role::Candidate, deployment, None)
    }

    fn shadow(mut self, role: Role, deployment: &str, reply: Option<Reply>) -> Self {
        self.shadows.push((role, deployment.to_owned(), reply));
        self
    }

    /// The primary's event as the tap publishes it.
    pub fn primary_event(&self) -> ResponseEvent {
        self.primary.event(self.id(), Role::Primary, "primary")
    }

    /// A shadow leg's event as the mirror publishes it, naming every expected leg; also for
    /// a silent leg that answers after all.
    pub fn shadow_event(&self, role: Role, deployment: &str, reply: &Reply) -> ResponseEvent {
        let mut event = reply.event(self.id(), role, deployment);
        event.expected_legs =
            self.shadows.iter().map(|(role, deployment, _)| ExpectedLeg::new(*role, deployment.clone())).collect();
        event
    }

    /// Every response published for this exchange: the primary's, then each shadow that answers.
    pub fn responses(&self) -> Vec<ResponseEvent> {
        let shadows = self
            .shadows
            .iter()
            .filter_map(|(role, deployment, reply)| reply.as_ref().map(|r| self.shadow_event(*role, deployment, r)));
        std::iter::once(self.primary_event()).chain(shadows).collect()
    }
}

/// A call `deployment` (in `role`) made downstream for request `id`, as its egress tap
/// publishes it: `method host path` with a JSON `body` (empty for none), answered `status`;
/// `n` orders the deployment's calls.
#[allow(clippy::too_many_arguments)]
pub fn call(
    id: &str,
    deployment: &str,
    role: Role,
    n: i64,
    method: &str,
    host: &str,
    path: &str,
    body: &str,
) -> OutboundCallEvent {
    let mut request = request_event(id, method, path);
    request.authority = host.to_owned();
    request.tap_id = format!("egress-{deployment}");
    request.timestamp_ms += n;
    request.headers = vec![Header::new("content-type", "application/json")];
    request.body = CapturedBody::capture(body.as_bytes(), CAPTURE_CAP);
    let mut response = Reply::json("{}").event(id, role, deployment);
    response.profile = None;
    response.stage = None;
    OutboundCallEvent {
        request_id: id.to_owned(),
        call_id: format!("{id}/{deployment}/{n}"),
        linked: true,
        deployment: deployment.to_owned(),
        request,
        response,
        role,
    }
}

/// Publishes events as the tap and the mirror do: Avro single-object encoded, keyed by
/// request id, so a request and its responses share a partition number.
pub struct Publisher {
    producer: Producer,
    codec: EventCodec,
    requests: String,
    responses: String,
    /// Where egress taps publish downstream calls, when the test has such a topic.
    outbound: Option<String>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher").field("requests", &self.requests).field("responses", &self.responses).finish()
    }
}

impl Publisher {
    pub fn new(brokers: &str, requests: &str, responses: &str) -> Self {
        let producer =
            KafkaConfig { brokers: brokers.to_owned(), linger: Some(Duration::from_millis(1)), ..Default::default() }
                .producer()
                .unwrap_or_else(|e| panic!("producer: {e}"));
        let codec = EventCodec::new().unwrap_or_else(|e| panic!("{e}"));
        Self { producer, codec, requests: requests.to_owned(), responses: responses.to_owned(), outbound: None }
    }

    /// Publishes downstream calls to `outbound` too.
    pub fn with_outbound(mut self, outbound: &str) -> Self {
        self.outbound = Some(outbound.to_owned());
        self
    }

    /// A downstream call, as an egress tap publishes it.
    pub async fn call(&self, event: &OutboundCallEvent) {
        let topic = self.outbound.clone().unwrap_or_else(|| panic!("this publisher has no outbound topic"));
        let payload = self.codec.encode(event).unwrap_or_else(|e| panic!("{e}"));
        self.send(&topic, &event.request_id, &payload).await;
    }

    pub async fn request(&self, event: &RequestEvent) {
        let payload = self.codec.encode(event).unwrap_or_else(|e| panic!("{e}"));
        self.send(&self.requests, &event.request_id, &payload).await;
    }

    pub async fn response(&self, event: &ResponseEvent) {
        let payload = self.codec.encode(event).unwrap_or_else(|e| panic!("{e}"));
        self.send(&self.responses, &event.request_id, &payload).await;
    }

    /// The request, then the primary's response, then each shadow's that answers.
    pub async fn exchange(&self, exchange: &Exchange) {
        self.request(&exchange.request).await;
        for response in exchange.responses() {
            self.response(&response).await;
        }
    }

    async fn send(&self, topic: &str, key: &str, payload: &[u8]) {
        self.producer
            .send(FutureRecord::to(topic).key(key).payload(payload), Duration::from_secs(10))
            .await
            .unwrap_or_else(|(e, _)| panic!("publish to {topic}: {e}"));
    }
}

/// Publishes `n` whole exchanges (request, primary, candidate `v2` with another price) with
/// ids `{prefix}-{i}`.
pub async fn exchanges(brokers: &str, requests: &str, responses: &str, prefix: &str, n: usize) {
    let publisher = Publisher::new(brokers, requests, responses);
    for i in 0..n {
        let exchange = Exchange::new(&format!("{prefix}-{i}"), "/items/{id}", Reply::json(r#"{"price":100}"#))
            .candidate("v2", Reply::json(r#"{"price":101}"#));
        publisher.request(&exchange.request).await;
        for mut response in exchange.responses() {
            // Without expected legs, as a mirror before schema v3 published them: each
            // exchange waits out its window, the timing the crash and outage scenarios were
            // written against.
            response.expected_legs.clear();
            publisher.response(&response).await;
        }
    }
}

/// A correlator in this process on its own topics, consumer group and database.
pub struct CorrelatorUnderTest {
    pub requests: String,
    pub responses: String,
    pub database: String,
    pub admin_url: String,
    pub clickhouse: clickhouse::Client,
    pub publisher: Publisher,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for CorrelatorUnderTest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CorrelatorUnderTest")
            .field("requests", &self.requests)
            .field("database", &self.database)
            .field("admin_url", &self.admin_url)
            .finish_non_exhaustive()
    }
}

impl CorrelatorUnderTest {
    /// Creates the topics (`partitions` each) and starts a correlator on them. `settings` is
    /// TOML inserted under `[correlator]`: its keys first, then any sub-tables such as
    /// `[correlator.default_rules]` or `[[correlator.routes]]`.
    pub async fn start(infra: &Infra, partitions: i32, settings: &str) -> Self {
        Self::start_on(infra, &infra.clickhouse_url, partitions, settings).await
    }

    /// [`Self::start`], writing to the ClickHouse at `clickhouse_url` (a private server a
    /// test may stop) instead of the shared one.
    pub async fn start_on(infra: &Infra, clickhouse_url: &str, partitions: i32, settings: &str) -> Self {
        shadowdiff_runtime::telemetry::init_tracing(&shadowdiff_runtime::telemetry::LogConfig {
            level: "warn,shadowdiff=info".into(),
            ..Default::default()
        });
        // Installs the process-wide metrics recorder before anything counts, as the binaries'
        // launcher does; without it counters go nowhere and /metrics is empty.
        shadowdiff_runtime::telemetry::metrics();
        let id = unique("corr");
        let (requests, responses, database) = (format!("{id}.requests"), format!("{id}.responses"), format!("sd_{id}"));
        // The admin port must be known to the test: reserved, so no other test is given it
        // before the correlator binds it.
        let reserved = crate::ports::ReservedPort::new();
        let admin = reserved.addr();
        let text = format!(
            "[correlator]\ngroup_id = \"{id}-correlator\"\n{settings}\n\
             [kafka]\nbrokers = \"{}\"\nlinger_ms = 1\n\
             [topics]\nrequests = \"{requests}\"\nresponses = \"{responses}\"\ndead_letter = \"{id}.dead-letter\"\n\
             outbound = \"{id}.outbound\"\nprofiles = \"{id}.profiles\"\npartitions = {partitions}\n\
             [clickhouse]\nurl = \"{}\"\ndatabase = \"{database}\"\n\
             [admin]\nlisten = \"{admin}\"\n",
            infra.brokers, clickhouse_url
        );
        let config: shadowdiff_correlator::CorrelatorConfig = crate::pipeline::config("correlator", &text);
        config.kafka.ensure_topics(&config.topics).await.unwrap_or_else(|e| panic!("topics: {e}"));
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        let task = tokio::spawn(async move {
            if let Err(error) = shadowdiff_correlator::run(config, stop).await {
                eprintln!("correlator failed: {error}");
            }
        });
        let admin_url = format!("http://{admin}");
        let client = reqwest::Client::new();
        for _ in 0..100 {
            if client.get(format!("{admin_url}/healthz")).send().await.is_ok() {
                return Self {
                    clickhouse: crate::infra::clickhouse_client(clickhouse_url, &database),
                    publisher: Publisher::new(&infra.brokers, &requests, &responses)
                        .with_outbound(&format!("{id}.outbound")),
                    requests,
                    responses,
                    database,
                    admin_url,
                    shutdown,
                    task,
                };
            }
            assert!(!task.is_finished(), "the correlator stopped while starting; see its error above");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("correlator admin endpoint did not come up on {admin_url}");
    }

    /// Whether it is still running, for failure messages.
    pub fn running(&self) -> bool {
        !self.task.is_finished()
    }

    /// The value of one series on its `/metrics` page (`name{label="value"}`), 0 if absent.
    /// The recorder is process-wide: every correlator in this test binary counts into it.
    pub async fn metric(&self, series: &str) -> f64 {
        let page = reqwest::get(format!("{}/metrics", self.admin_url))
            .await
            .and_then(reqwest::Response::error_for_status)
            .unwrap_or_else(|e| panic!("GET /metrics: {e}"))
            .text()
            .await
            .unwrap_or_else(|e| panic!("GET /metrics: {e}"));
        page.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok()).unwrap_or(0.0)
    }

    /// The sum of a metric's series on its `/metrics` page, by label (see
    /// [`crate::admin::metric`]).
    pub async fn metric_sum(&self, name: &str, labels: &str) -> f64 {
        crate::admin::metric(&self.admin_url, name, labels).await
    }

    /// Stops it (bounded) and drops its database.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(15), self.task).await;
        let _ = self.clickhouse.query(&format!("DROP DATABASE IF EXISTS {}", self.database)).execute().await;
    }
}

//! The path to Kafka. Nothing here may slow the client: once both bodies have streamed
//! past, the exchange goes to its worker's publishing queue, and a task on the same worker
//! redacts, encodes and hands its events to the producer's bounded queue after the
//! response has been written. A full queue or an unreachable broker means the events are
//! dropped and counted, never waited for.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use http::{HeaderMap, Method, StatusCode, Uri};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, Producer};
use shadowdiff_core::codec::Event;
use shadowdiff_core::event::now_ms;
use shadowdiff_core::redact::Redactor;
use shadowdiff_core::{
    CapturedBody, ErrorKind, EventCodec, Header, OutboundCallEvent, RequestEvent, RequestId, ResponseEvent, Role,
};
use shadowdiff_runtime::CancellationToken;
use shadowdiff_runtime::admin::Health;

use crate::TapError;
use crate::budget::CaptureBudget;
use crate::capture::{Captured, OnFinish};
use crate::config::{Mode, TapConfig};
use crate::events::{self, DropReason, Publishing};
use crate::producer::SupervisedProducer;

mod queue;

use queue::Finished;
pub(crate) use queue::Queue;

/// How long shutdown waits for queued events to reach the broker.
const FLUSH_DEADLINE: Duration = Duration::from_secs(5);
/// How long the producer lingers unless `kafka.linger_ms` says otherwise. The tap never
/// waits on a delivery, while every produce request costs the broker CPU: at the tap's
/// rates 200 ms cut the local broker's share of the machine from about a quarter to under a
/// tenth against the 5 ms other services use.
const LINGER: Duration = Duration::from_millis(200);
/// How often readiness re-checks that the broker answers.
const BROKER_CHECK_INTERVAL: Duration = Duration::from_secs(5);

/// What the client path knows of an exchange when it hands it over.
#[derive(Debug)]
pub(crate) struct Exchange {
    pub(crate) id: RequestId,
    /// Whether the id came with the request (rather than minted here).
    pub(crate) linked: bool,
    pub(crate) received_ms: i64,
    pub(crate) route: String,
    pub(crate) method: Method,
    pub(crate) uri: Uri,
    /// What the client spoke to the tap: `http` or `https`.
    pub(crate) scheme: &'static str,
    pub(crate) authority: String,
    /// The request headers as forwarded.
    pub(crate) headers: Vec<Header>,
    /// When the request was sent upstream.
    pub(crate) started: Instant,
}

/// How the upstream answered.
#[derive(Debug)]
pub(crate) enum Outcome {
    Response { status: StatusCode, headers: Vec<Header> },
    Failed(ErrorKind),
}

/// A captured exchange on its way to the publisher. The proxy leaves the upstream's answer
/// here, and each body its capture when it ends (or is abandoned). Whoever lets go last
/// queues the exchange for publishing, so there is no task, channel or timer per exchange,
/// and an exchange is queued exactly when both of its bodies are done.
pub(crate) struct Pending {
    queue: Queue,
    gathered: Mutex<Gathered>,
}

#[derive(Default)]
struct Gathered {
    exchange: Option<Exchange>,
    outcome: Option<Outcome>,
    request: Option<Captured>,
    response: Option<Captured>,
}

/// Which body of an exchange a capture is of.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Side {
    Request,
    Response,
}

impl Pending {
    pub(crate) fn new(queue: Queue, exchange: Exchange) -> Arc<Self> {
        Arc::new(Self { queue, gathered: Mutex::new(Gathered { exchange: Some(exchange), ..Gathered::default() }) })
    }

    /// Where the capture of one body goes.
    pub(crate) fn on_finish(self: &Arc<Self>, side: Side) -> OnFinish {
        let pending = self.clone();
        Box::new(move |captured| {
            let mut gathered = pending.gathered.lock().unwrap_or_else(PoisonError::into_inner);
            match side {
                Side::Request => gathered.request = Some(captured),
                Side::Response => gathered.response = Some(captured),
            }
        })
    }

    pub(crate) fn answered(&self, outcome: Outcome) {
        self.gathered.lock().unwrap_or_else(PoisonError::into_inner).outcome = Some(outcome);
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        let gathered = std::mem::take(self.gathered.get_mut().unwrap_or_else(PoisonError::into_inner));
        // No outcome: the client went away before the upstream answered, and there is no
        // exchange to compare.
        if let (Some(exchange), Some(outcome)) = (gathered.exchange, gathered.outcome) {
            self.queue.push(Finished { exchange, outcome, request: gathered.request, response: gathered.response });
        }
    }
}

pub(crate) struct Publisher {
    producer: Arc<SupervisedProducer>,
    codec: Arc<EventCodec>,
    redactor: Redactor,
    requests: String,
    responses: String,
    outbound: String,
    tap_id: String,
    mode: Mode,
    health: Health,
    publishing: Publishing,
    /// Shared by every worker's queue.
    budget: Arc<CaptureBudget>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher").field("requests", &self.requests).field("responses", &self.responses).finish()
    }
}

impl Publisher {
    pub(crate) fn new(config: &TapConfig, codec: Arc<EventCodec>, health: Health) -> Result<Self, TapError> {
        let publishing = Publishing::new();
        let kafka = config.kafka.clone().linger_by_default(LINGER);
        Ok(Self {
            producer: Arc::new(SupervisedProducer::new(&kafka, publishing.clone()).map_err(TapError::Producer)?),
            codec,
            redactor: config.tap.redaction.redactor(true),
            requests: config.topics.requests.clone(),
            responses: config.topics.responses.clone(),
            outbound: config.topics.outbound.clone(),
            tap_id: config.tap.id.clone(),
            mode: config.tap.mode.clone(),
            health,
            publishing,
            budget: Arc::new(CaptureBudget::new(config.tap.capture_memory_budget_bytes)),
        })
    }

    /// How many events [`Publisher::publish`] sends for one exchange: a request and a
    /// response in front of the primary, one event otherwise.
    fn events_per_exchange(&self) -> u64 {
        if let Mode::Ingress = self.mode { 2 } else { 1 }
    }

    /// Redacts, encodes and queues the exchange's events (see [`Pending`]). Never waits.
    fn publish(&self, exchange: Exchange, outcome: Outcome, request: Option<Captured>, response: Option<Captured>) {
        let request_body = body_of(request);
        let (status, headers, body, error, finished) = match outcome {
            Outcome::Response { status, headers } => {
                let finished = response.as_ref().map_or_else(Instant::now, |c| c.finished);
                (Some(i32::from(status.as_u16())), headers, body_of(response), None, finished)
            }
            Outcome::Failed(kind) => (None, Vec::new(), CapturedBody::empty(), Some(kind), Instant::now()),
        };
        let id = exchange.id.to_string();
        let mut request = RequestEvent {
            request_id: id.clone(),
            timestamp_ms: exchange.received_ms,
            tap_id: self.tap_id.clone(),
            method: exchange.method.to_string(),
            scheme: exchange.scheme.to_owned(),
            authority: exchange.authority,
            path: exchange.uri.path().to_owned(),
            query: exchange.uri.query().map(|q| self.redactor.query(q)),
            route_template: Some(exchange.route),
            headers: exchange.headers,
            body: request_body,
            run: String::new(),
        };
        let (role, deployment) = match &self.mode {
            Mode::Ingress => (Role::Primary, "primary".to_owned()),
            Mode::Sidecar { role, deployment } => (Role::from(*role), deployment.clone()),
            Mode::Egress { role, deployment, .. } => (Role::from(*role), deployment.clone()),
        };
        let mut response = ResponseEvent {
            request_id: id,
            timestamp_ms: now_ms(),
            role,
            deployment,
            status,
            headers,
            body,
            latency_us: i64::try_from(finished.duration_since(exchange.started).as_micros()).unwrap_or(i64::MAX),
            error,
            profile: None,
            stage: None,
            expected_legs: Vec::new(),
            run: String::new(),
        };
        self.publishing.body_bytes(request.body.length, response.body.length);
        self.redactor.body(&mut request.body, &request.headers);
        self.redactor.headers(&mut request.headers);
        self.redactor.body(&mut response.body, &response.headers);
        self.redactor.headers(&mut response.headers);
        match &self.mode {
            Mode::Ingress => {
                self.send(&self.requests, &request.request_id, &request);
                self.send(&self.responses, &response.request_id, &response);
            }
            Mode::Sidecar { .. } => self.send(&self.responses, &response.request_id, &response),
            Mode::Egress { .. } => {
                let call = OutboundCallEvent {
                    request_id: request.request_id.clone(),
                    call_id: RequestId::mint().to_string(),
                    linked: exchange.linked,
                    deployment: response.deployment.clone(),
                    role: response.role,
                    request,
                    response,
                };
                self.send(&self.outbound, &call.request_id, &call);
            }
        }
    }

    fn send<E: Event>(&self, topic: &str, key: &str, event: &E) {
        let payload = match self.codec.encode(event) {
            Ok(payload) => payload,
            Err(error) => return events::dropped(DropReason::Encode, &error),
        };
        let record = BaseRecord::with_opaque_to(topic, Box::new(Instant::now())).key(key).payload(&payload);
        // Delivery is counted by the producer's callback (`producer.rs`), never awaited here.
        if let Err((error, _)) = self.producer.get().send(record) {
            let reason = match error {
                KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull) => DropReason::QueueFull,
                _ => DropReason::Produce,
            };
            events::dropped(reason, &error);
        }
    }

    /// Keeps the `kafka` readiness check current until shutdown, and replaces the producer
    /// when it is stuck while the broker answers. Proxying never depends on either.
    pub(crate) fn watch_broker(&self, shutdown: CancellationToken) {
        let producer = self.producer.clone();
        let health = self.health.clone();
        health.set("kafka", false);
        tokio::spawn(async move {
            loop {
                let probe = producer.clone();
                let (reachable, stuck) = tokio::task::spawn_blocking(move || {
                    (probe.broker_reachable(Duration::from_secs(2)), probe.stuck())
                })
                .await
                .unwrap_or((false, false));
                health.set("kafka", reachable);
                if reachable && stuck {
                    match producer.replace() {
                        Ok(()) => events::producer_replaced(),
                        Err(error) => tracing::warn!(%error, "cannot build a new producer; keeping the stuck one"),
                    }
                }
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(BROKER_CHECK_INTERVAL) => {}
                }
            }
        });
    }

    /// Waits (bounded) for queued events to be delivered; what is left is counted as dropped.
    pub(crate) async fn flush(&self) {
        let producer = self.producer.get();
        let flushed = tokio::task::spawn_blocking(move || {
            let result = producer.flush(FLUSH_DEADLINE);
            (result, producer.in_flight_count())
        })
        .await;
        match flushed {
            Ok((Ok(()), _)) => tracing::info!("producer flushed"),
            Ok((Err(error), left)) => {
                tracing::warn!(%error, left, "producer flush incomplete; undelivered events are lost")
            }
            Err(error) => tracing::warn!(%error, "producer flush task failed"),
        }
    }
}

/// The captured body; one that did not finish is flagged truncated, and one never seen is
/// empty and flagged, so neither compares as a whole body.
fn body_of(captured: Option<Captured>) -> CapturedBody {
    match captured {
        Some(Captured { body, complete: true, .. }) => body,
        Some(Captured { mut body, complete: false, .. }) => {
            body.truncated = true;
            body
        }
        None => CapturedBody { truncated: true, ..CapturedBody::empty() },
    }
}

/// Headers as events carry them, read straight from the map rather than cloning it.
pub(crate) fn headers_of(headers: &HeaderMap) -> Vec<Header> {
    headers.iter().map(|(name, value)| Header::new(name.as_str(), value.as_bytes())).collect()
}

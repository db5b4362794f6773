//! Load for the correlator's benchmarks (`deploy/bench/correlator-throughput.sh` and
//! `correlator-replicas.sh`): whole exchanges published straight to the request and response
//! topics, event for event as the tap and the mirror publish them, as fast as the producer
//! takes them.
//!
//! Each exchange is a `GET /items/{n}` answered by every leg with the same catalogue item,
//! padded to the body size asked for. Every leg stamps its own random `trace_id` into the
//! body (noise the secondary shows too), and a small share of candidate answers carry
//! another price (a real difference), so the correlator diffs every shadow leg, as it
//! would in production, and finds what it should. With downstream calls asked for, each
//! deployment's calls go to the outbound topic too (`calls`), as its egress tap publishes them.
//!
//! Exchanges are published whole, one after another ([`publish`]), or the answers only after
//! every request and call ([`publish_answers_after`]): a correlator reading a backlog reads
//! its topics at their own paces, and the outbound topic falls behind the responses, so calls
//! published with their exchange are read after it was written; published first, each is
//! read before its exchange's answers, as live, where a call is made before the answer.

mod calls;
mod exchange;

use std::collections::VecDeque;
use std::future::Future;
use std::time::{Duration, Instant};

use rdkafka::error::KafkaError;
use rdkafka::producer::{DeliveryFuture, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use shadowdiff_core::codec::{EncodeError, SchemaError};
use shadowdiff_core::{EventCodec, RequestId, Role};
use shadowdiff_runtime::kafka::{KafkaConfig, Producer};

use exchange::Exchange;
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
    /// Downstream calls every leg makes per exchange, if any.
    pub calls: Option<CallsSpec>,
    /// Legs among `legs` whose answers are never published: every exchange stays open in
    /// the correlator, waiting for them, with the others' bodies (the memory it holds).
    pub withheld: Vec<Role>,
}

/// The downstream calls of each exchange: `per_leg` calls by every leg's deployment,
/// published to `topic` (the outbound topic) as egress taps publish them.
#[derive(Debug, Clone)]
pub struct CallsSpec {
    pub topic: String,
    pub per_leg: usize,
}

/// What a run published.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Loaded {
    pub exchanges: u64,
    pub events: u64,
    /// Downstream calls among the events.
    pub calls: u64,
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
    let mut publishing = Publishing::new(&producer, &codec, spec);
    publishing.pass(Pass::Whole).await?;
    Ok(publishing.loaded)
}

/// Publishes every exchange's request and downstream calls; once the broker has them all,
/// calls `held` with what went and waits for `go`; then publishes every exchange's answers.
/// The time waited is not in the [`Loaded::elapsed`] returned.
pub async fn publish_answers_after(
    spec: &LoadSpec,
    held: impl FnOnce(&Loaded),
    go: impl Future<Output = ()>,
) -> Result<Loaded, LoadError> {
    let producer = producer(&spec.brokers)?;
    let codec = EventCodec::new()?;
    let mut publishing = Publishing::new(&producer, &codec, spec);
    publishing.pass(Pass::RequestsAndCalls).await?;
    held(&publishing.loaded);
    go.await;
    publishing.pass(Pass::Answers).await?;
    Ok(publishing.loaded)
}

/// Which events of every exchange a pass publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// The request, then each leg's calls and answer.
    Whole,
    RequestsAndCalls,
    /// Each leg's answer, the exchanges made again as the first pass made them.
    Answers,
}

/// A run under way: what it published so far, and the request ids it gave out.
struct Publishing<'a> {
    codec: &'a EventCodec,
    spec: &'a LoadSpec,
    pending: Pending<'a>,
    loaded: Loaded,
    /// Each exchange's request id, kept for a later pass of its answers.
    ids: Vec<RequestId>,
}

impl std::fmt::Debug for Publishing<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publishing").field("loaded", &self.loaded).finish_non_exhaustive()
    }
}

impl<'a> Publishing<'a> {
    fn new(producer: &'a Producer, codec: &'a EventCodec, spec: &'a LoadSpec) -> Self {
        Self {
            codec,
            spec,
            pending: Pending::new(producer, spec),
            loaded: Loaded { exchanges: 0, events: 0, calls: 0, bytes: 0, changed: 0, elapsed: Duration::ZERO },
            ids: Vec::new(),
        }
    }

    /// Publishes `pass`'s events of every exchange, then waits until the broker has them.
    async fn pass(&mut self, pass: Pass) -> Result<(), LoadError> {
        let started = Instant::now();
        for n in 0..self.spec.exchanges {
            let id = match pass {
                Pass::Whole => RequestId::mint(),
                Pass::RequestsAndCalls => {
                    self.ids.push(RequestId::mint());
                    self.ids[self.ids.len() - 1].clone()
                }
                // The first pass gave out an id for every n below `spec.exchanges`.
                Pass::Answers => self.ids[usize::try_from(n).unwrap_or(usize::MAX)].clone(),
            };
            let exchange = Exchange::new(n, &id, self.spec, &mut Exchange::rng(self.spec.seed, n));
            if pass != Pass::Answers {
                self.send(Topic::Requests, &id, &exchange.request).await?;
                self.loaded.exchanges += 1;
                self.loaded.changed += u64::from(exchange.changed);
            }
            // Each leg's calls before its answer: a deployment makes them while it answers.
            for (response, calls) in exchange.responses.iter().zip(&exchange.calls) {
                if pass != Pass::Answers {
                    for call in calls {
                        self.send(Topic::Outbound, &id, call).await?;
                        self.loaded.calls += 1;
                    }
                }
                if pass != Pass::RequestsAndCalls && !self.spec.withheld.contains(&response.role) {
                    self.send(Topic::Responses, &id, response).await?;
                }
            }
        }
        self.pending.drain().await?;
        self.loaded.elapsed += started.elapsed();
        Ok(())
    }

    async fn send<E: shadowdiff_core::codec::Event>(
        &mut self,
        topic: Topic,
        id: &RequestId,
        event: &E,
    ) -> Result<(), LoadError> {
        let payload = self.codec.encode(event)?;
        self.loaded.bytes += payload.len() as u64;
        self.loaded.events += 1;
        self.pending.send(topic, id.as_str(), &payload).await
    }
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

/// Which topic an event goes to.
#[derive(Debug, Clone, Copy)]
enum Topic {
    Requests,
    Responses,
    Outbound,
}

/// Deliveries not yet confirmed, oldest first.
struct Pending<'a> {
    producer: &'a Producer,
    requests: &'a str,
    responses: &'a str,
    /// Empty when no calls are asked for, and then never sent to.
    outbound: &'a str,
    deliveries: VecDeque<(Topic, DeliveryFuture)>,
}

impl std::fmt::Debug for Pending<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending").field("deliveries", &self.deliveries.len()).finish_non_exhaustive()
    }
}

impl<'a> Pending<'a> {
    fn new(producer: &'a Producer, spec: &'a LoadSpec) -> Self {
        Self {
            producer,
            requests: &spec.requests_topic,
            responses: &spec.responses_topic,
            outbound: spec.calls.as_ref().map_or("", |c| c.topic.as_str()),
            deliveries: VecDeque::new(),
        }
    }

    fn name(&self, topic: Topic) -> &'a str {
        match topic {
            Topic::Requests => self.requests,
            Topic::Responses => self.responses,
            Topic::Outbound => self.outbound,
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

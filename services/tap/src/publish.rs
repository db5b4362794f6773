//! The background path to Kafka. Nothing here may slow the client: a full producer queue
//! or an unreachable broker means the events are dropped and counted, never waited for.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use shadowdiff_core::codec::Event;
use shadowdiff_core::{EventCodec, RequestEvent, ResponseEvent};
use shadowdiff_runtime::CancellationToken;
use shadowdiff_runtime::admin::Health;

use crate::TapError;
use crate::config::TapConfig;
use crate::events::{self, DropReason};

/// How long shutdown waits for queued events to reach the broker.
const FLUSH_DEADLINE: Duration = Duration::from_secs(5);
/// How often readiness re-checks that the broker answers.
const BROKER_CHECK_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub(crate) struct Publisher {
    producer: FutureProducer,
    codec: Arc<EventCodec>,
    requests: Arc<str>,
    responses: Arc<str>,
    health: Health,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher").field("requests", &self.requests).field("responses", &self.responses).finish()
    }
}

impl Publisher {
    pub(crate) fn new(config: &TapConfig, codec: Arc<EventCodec>, health: Health) -> Result<Self, TapError> {
        Ok(Self {
            producer: config.kafka.producer().map_err(TapError::Producer)?,
            codec,
            requests: config.topics.requests.as_str().into(),
            responses: config.topics.responses.as_str().into(),
            health,
        })
    }

    /// Queues both events of one exchange and returns at once.
    pub(crate) fn publish(&self, request: RequestEvent, response: ResponseEvent) {
        self.send(&self.requests, &request);
        self.send(&self.responses, &response);
    }

    fn send<E: Event + HasKey>(&self, topic: &str, event: &E) {
        let payload = match self.codec.encode(event) {
            Ok(payload) => payload,
            Err(error) => return events::dropped(DropReason::Encode, &error),
        };
        let record = FutureRecord::to(topic).key(event.key()).payload(&payload);
        match self.producer.send_result(record) {
            Ok(delivery) => {
                tokio::spawn(async move {
                    match delivery.await {
                        Ok(Ok(_)) => events::published(),
                        Ok(Err((error, _))) => events::dropped(DropReason::Delivery, &error),
                        Err(canceled) => events::dropped(DropReason::Delivery, &canceled),
                    }
                });
            }
            Err((error, _)) => {
                let reason = match error {
                    KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull) => DropReason::QueueFull,
                    _ => DropReason::Produce,
                };
                events::dropped(reason, &error);
            }
        }
        events::queue_depth(self.producer.in_flight_count());
    }

    /// Keeps the `kafka` readiness check current until shutdown. Proxying never depends on it.
    pub(crate) fn watch_broker(&self, shutdown: CancellationToken) {
        let producer = self.producer.clone();
        let health = self.health.clone();
        health.set("kafka", false);
        tokio::spawn(async move {
            loop {
                let probe = producer.clone();
                let reachable = tokio::task::spawn_blocking(move || {
                    probe.client().fetch_metadata(None, Duration::from_secs(2)).is_ok()
                })
                .await
                .unwrap_or(false);
                health.set("kafka", reachable);
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(BROKER_CHECK_INTERVAL) => {}
                }
            }
        });
    }

    /// Waits (bounded) for queued events to be delivered; what is left is counted as dropped.
    pub(crate) async fn flush(&self) {
        let producer = self.producer.clone();
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

/// The Kafka key of an event: its request id.
trait HasKey {
    fn key(&self) -> &str;
}

impl HasKey for RequestEvent {
    fn key(&self) -> &str {
        &self.request_id
    }
}

impl HasKey for ResponseEvent {
    fn key(&self) -> &str {
        &self.request_id
    }
}

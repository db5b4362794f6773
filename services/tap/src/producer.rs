//! The tap's Kafka producer. Deliveries are counted in librdkafka's delivery callback, on
//! the producer's own polling thread, so publishing costs the async workers no task and
//! no wake-up per event.
//!
//! It is also supervised: a producer that keeps failing every delivery while its broker
//! answers again is stuck (an idempotent producer whose broker lost its state can loop on
//! epoch bumps forever), and is replaced by a fresh one. The client path never notices
//! either way; this only decides whether publishing resumes by itself.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{Producer as _, ProducerContext, ThreadedProducer};
use rdkafka::statistics::Statistics;
use shadowdiff_core::event::now_ms;
use shadowdiff_runtime::kafka::{KafkaConfig, KafkaContext};

use crate::events::{self, DropReason, Publishing};

pub(crate) type TapProducer = ThreadedProducer<TapContext>;

/// Delivery outcomes since the last success, shared by every producer generation.
#[derive(Debug)]
struct Deliveries {
    last_ok_ms: AtomicI64,
    failures_since_ok: AtomicU64,
}

/// How often librdkafka reports its statistics, for the queue-depth gauge.
const STATISTICS_INTERVAL_MS: &str = "1000";

/// Counts each delivery as it is reported; log lines and client errors go the way of
/// every shadowdiff client ([`KafkaContext`]).
#[derive(Debug)]
pub(crate) struct TapContext {
    deliveries: Arc<Deliveries>,
    publishing: Publishing,
}

impl ClientContext for TapContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        KafkaContext.log(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        KafkaContext.error(error, reason);
    }

    /// The queue depth, read here rather than per event: asking librdkafka takes a lock.
    fn stats(&self, statistics: Statistics) {
        self.publishing.queue_depth(statistics.msg_cnt);
    }
}

impl ProducerContext for TapContext {
    /// When the event was queued, for the publish-latency histogram.
    type DeliveryOpaque = Box<Instant>;

    fn delivery(&self, result: &DeliveryResult<'_>, queued: Box<Instant>) {
        match result {
            Ok(_) => {
                self.deliveries.last_ok_ms.store(now_ms(), Ordering::Relaxed);
                self.deliveries.failures_since_ok.store(0, Ordering::Relaxed);
                self.publishing.published(queued.elapsed());
            }
            Err((error, _)) => {
                self.deliveries.failures_since_ok.fetch_add(1, Ordering::Relaxed);
                events::dropped(DropReason::Delivery, error);
            }
        }
    }
}

pub(crate) struct SupervisedProducer {
    config: KafkaConfig,
    current: RwLock<Arc<TapProducer>>,
    deliveries: Arc<Deliveries>,
    publishing: Publishing,
}

impl std::fmt::Debug for SupervisedProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SupervisedProducer").field("brokers", &self.config.brokers).finish_non_exhaustive()
    }
}

impl SupervisedProducer {
    pub(crate) fn new(config: &KafkaConfig, publishing: Publishing) -> Result<Self, KafkaError> {
        let deliveries =
            Arc::new(Deliveries { last_ok_ms: AtomicI64::new(now_ms()), failures_since_ok: AtomicU64::new(0) });
        let current = RwLock::new(Arc::new(build(config, &deliveries, &publishing)?));
        Ok(Self { current, config: config.clone(), deliveries, publishing })
    }

    /// The producer to send with now (a cheap handle clone).
    pub(crate) fn get(&self) -> Arc<TapProducer> {
        // Only `replace` writes, and it cannot panic while holding the lock.
        self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Whether the broker answers a metadata request within `timeout` (blocking).
    pub(crate) fn broker_reachable(&self, timeout: Duration) -> bool {
        self.get().client().fetch_metadata(None, timeout).is_ok()
    }

    /// Stuck: a fatal error, or only failed deliveries for longer than twice the message
    /// timeout (so every message sent since has had its full chance).
    pub(crate) fn stuck(&self) -> bool {
        if self.get().client().fatal_error().is_some() {
            return true;
        }
        let quiet_ms = now_ms() - self.deliveries.last_ok_ms.load(Ordering::Relaxed);
        let stall_ms = i64::try_from(self.config.message_timeout.as_millis() * 2).unwrap_or(i64::MAX);
        self.deliveries.failures_since_ok.load(Ordering::Relaxed) > 0 && quiet_ms > stall_ms
    }

    /// Swaps in a fresh producer; the old one's queue is given up (it was failing anyway).
    pub(crate) fn replace(&self) -> Result<(), KafkaError> {
        let fresh = Arc::new(build(&self.config, &self.deliveries, &self.publishing)?);
        let old =
            std::mem::replace(&mut *self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner), fresh);
        self.deliveries.last_ok_ms.store(now_ms(), Ordering::Relaxed);
        self.deliveries.failures_since_ok.store(0, Ordering::Relaxed);
        // Dropping a producer purges and waits on its queue: off the async workers.
        tokio::task::spawn_blocking(move || {
            old.purge(rdkafka::producer::PurgeConfig::default().queue().inflight());
            drop(old);
        });
        Ok(())
    }
}

fn build(
    config: &KafkaConfig,
    deliveries: &Arc<Deliveries>,
    publishing: &Publishing,
) -> Result<TapProducer, KafkaError> {
    let mut client = config.producer_config();
    if client.get("statistics.interval.ms").is_none() {
        client.set("statistics.interval.ms", STATISTICS_INTERVAL_MS);
    }
    client.create_with_context(TapContext { deliveries: deliveries.clone(), publishing: publishing.clone() })
}

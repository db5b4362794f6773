//! The tap's Kafka producer, supervised: a producer that keeps failing every delivery
//! while its broker answers again is stuck (an idempotent producer whose broker lost its
//! state can loop on epoch bumps forever), and is replaced by a fresh one. The client path
//! never notices either way; this only decides whether publishing resumes by itself.

use std::sync::RwLock;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::producer::Producer as _;
use shadowdiff_core::event::now_ms;
use shadowdiff_runtime::kafka::KafkaConfig;
use shadowdiff_runtime::kafka::Producer;

pub(crate) struct SupervisedProducer {
    config: KafkaConfig,
    current: RwLock<Producer>,
    last_ok_ms: AtomicI64,
    failures_since_ok: AtomicU64,
}

impl std::fmt::Debug for SupervisedProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SupervisedProducer").field("brokers", &self.config.brokers).finish_non_exhaustive()
    }
}

impl SupervisedProducer {
    pub(crate) fn new(config: &KafkaConfig) -> Result<Self, KafkaError> {
        Ok(Self {
            current: RwLock::new(config.producer()?),
            config: config.clone(),
            last_ok_ms: AtomicI64::new(now_ms()),
            failures_since_ok: AtomicU64::new(0),
        })
    }

    /// The producer to send with now (a cheap handle clone).
    pub(crate) fn get(&self) -> Producer {
        // Only `replace` writes, and it cannot panic while holding the lock.
        self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    pub(crate) fn delivered(&self, ok: bool) {
        if ok {
            self.last_ok_ms.store(now_ms(), Ordering::Relaxed);
            self.failures_since_ok.store(0, Ordering::Relaxed);
        } else {
            self.failures_since_ok.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Whether the broker answers a metadata request within `timeout` (blocking).
    pub(crate) fn broker_reachable(&self, timeout: Duration) -> bool {
        let producer = self.get();
        producer.client().fetch_metadata(None, timeout).is_ok()
    }

    /// Stuck: a fatal error, or only failed deliveries for longer than twice the message
    /// timeout (so every message sent since has had its full chance).
    pub(crate) fn stuck(&self) -> bool {
        if self.get().client().fatal_error().is_some() {
            return true;
        }
        let quiet_ms = now_ms() - self.last_ok_ms.load(Ordering::Relaxed);
        let stall_ms = i64::try_from(self.config.message_timeout.as_millis() * 2).unwrap_or(i64::MAX);
        self.failures_since_ok.load(Ordering::Relaxed) > 0 && quiet_ms > stall_ms
    }

    /// Swaps in a fresh producer; the old one's queue is given up (it was failing anyway).
    pub(crate) fn replace(&self) -> Result<(), KafkaError> {
        let fresh = self.config.producer()?;
        let old =
            std::mem::replace(&mut *self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner), fresh);
        self.last_ok_ms.store(now_ms(), Ordering::Relaxed);
        self.failures_since_ok.store(0, Ordering::Relaxed);
        // Dropping a producer purges and waits on its queue: off the async workers.
        tokio::task::spawn_blocking(move || {
            old.purge(rdkafka::producer::PurgeConfig::default().queue().inflight());
            drop(old);
        });
        Ok(())
    }
}

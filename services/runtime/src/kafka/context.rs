//! The client context every shadowdiff Kafka client uses: librdkafka's own log lines and
//! error callbacks go through a rate limiter (a broker outage makes librdkafka report every
//! failed reconnect) and every error is counted.

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::FutureProducer;
use rdkafka::statistics::Statistics;

use crate::telemetry::LogLimiter;

/// The producer type every service uses.
pub type Producer = FutureProducer<KafkaContext>;
/// The consumer type every service uses: in a group, committing as [`GroupContext`] says.
pub type Consumer = StreamConsumer<GroupContext>;
/// A consumer that joins no group, polled on a blocking thread: for tools that read a range of
/// offsets once (`shadowctl record`), see [`KafkaConfig::reader`](super::KafkaConfig::reader).
pub type Reader = BaseConsumer<KafkaContext>;

#[derive(Debug, Default, Clone, Copy)]
pub struct KafkaContext;

static CLIENT_LOG: LogLimiter = LogLimiter::new();

impl ClientContext for KafkaContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => {
                if CLIENT_LOG.allow() {
                    tracing::error!(target: "librdkafka", facility, message, "librdkafka (at most one line a second)");
                }
            }
            RDKafkaLogLevel::Warning => {
                if CLIENT_LOG.allow() {
                    tracing::warn!(target: "librdkafka", facility, message, "librdkafka (at most one line a second)");
                }
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => tracing::info!(target: "librdkafka", facility, message),
            RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", facility, message),
        }
    }

    /// Consumer lag per topic, from librdkafka's statistics (every `statistics.interval.ms`,
    /// set on consumers): the messages behind the partition ends, summed over this client's
    /// assigned partitions. Unknown lags (-1) are left out.
    fn stats(&self, statistics: Statistics) {
        if statistics.client_type != "consumer" {
            return;
        }
        for (name, topic) in &statistics.topics {
            let lag: i64 = topic
                .partitions
                .values()
                .filter(|p| p.partition >= 0 && p.consumer_lag >= 0)
                .map(|p| p.consumer_lag)
                .sum();
            #[allow(clippy::cast_precision_loss)] // lag far below 2^52
            metrics::gauge!("shadowdiff_kafka_consumer_lag", "topic" => name.clone()).set(lag as f64);
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let code = error.rdkafka_error_code().map_or("other", |code| code_label(code));
        metrics::counter!("shadowdiff_kafka_client_errors_total", "code" => code).increment(1);
        if CLIENT_LOG.allow() {
            tracing::warn!(target: "librdkafka", %error, reason, "kafka client error (at most one line a second)");
        }
    }
}

impl ConsumerContext for KafkaContext {}

/// A group consumer's context: [`KafkaContext`]'s logs and counters, and the offsets its
/// consume loop may commit, which it commits as a rebalance takes their partitions away, but
/// only while the loop runs: a loop that was stopped mid-work (aborted, or panicked) dropped
/// work whose holds then released their offsets, and the consumer's close must not commit
/// past it.
#[derive(Debug, Default)]
pub struct GroupContext {
    offsets: super::Offsets,
    /// The service whose consume loop reads with it, for its commit counters.
    service: std::sync::OnceLock<&'static str>,
    /// Whether a consume loop is running on it now.
    consuming: std::sync::atomic::AtomicBool,
}

impl GroupContext {
    /// Marks a consume loop of `service` running until the returned guard is dropped.
    pub(crate) fn consuming(&self, service: &'static str) -> Consuming<'_> {
        let _set_once = self.service.set(service);
        self.consuming.store(true, std::sync::atomic::Ordering::SeqCst);
        Consuming { context: self }
    }
}

/// A consume loop running on a [`GroupContext`]; what it holds and commits.
#[derive(Debug)]
pub(crate) struct Consuming<'a> {
    context: &'a GroupContext,
}

impl Consuming<'_> {
    pub(crate) fn offsets(&self) -> &super::Offsets {
        &self.context.offsets
    }
}

impl Drop for Consuming<'_> {
    fn drop(&mut self) {
        self.context.consuming.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

impl ClientContext for GroupContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        KafkaContext.log(level, facility, message);
    }

    fn stats(&self, statistics: Statistics) {
        KafkaContext.stats(statistics);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        KafkaContext.error(error, reason);
    }
}

impl ConsumerContext for GroupContext {
    /// Commits what the revoked partitions may commit before their next owner starts, so a
    /// rebalance re-delivers only the events still in flight here, not everything since the
    /// last periodic commit.
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance
            && self.consuming.load(std::sync::atomic::Ordering::SeqCst)
        {
            let revoked: Vec<(String, i32)> =
                list.elements().iter().map(|e| (e.topic().to_owned(), e.partition())).collect();
            let service = self.service.get().copied().unwrap_or("consumer");
            self.offsets.commit_revoked(consumer, &revoked, service);
            tracing::info!(service, partitions = revoked.len(), "partitions revoked; their offsets committed");
        }
    }

    /// How many partitions of each topic this member holds, as a gauge: how a group's
    /// replicas share the partitions, the unit of parallelism. A rebalance revokes every
    /// partition, then assigns the new share.
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let (list, held) = match rebalance {
            Rebalance::Assign(list) => (list, true),
            Rebalance::Revoke(list) => (list, false),
            Rebalance::Error(_) => return,
        };
        let mut per_topic = std::collections::BTreeMap::<String, usize>::new();
        for element in list.elements() {
            *per_topic.entry(element.topic().to_owned()).or_default() += 1;
        }
        for (topic, partitions) in per_topic {
            let partitions = if held { partitions } else { 0 };
            #[allow(clippy::cast_precision_loss)] // a few thousand partitions at most
            metrics::gauge!("shadowdiff_kafka_assigned_partitions", "topic" => topic).set(partitions as f64);
        }
    }
}

/// A bounded label for the error codes an outage produces; the rest are `other`.
fn code_label(code: rdkafka::types::RDKafkaErrorCode) -> &'static str {
    use rdkafka::types::RDKafkaErrorCode as C;
    match code {
        C::BrokerTransportFailure => "transport",
        C::AllBrokersDown => "all_brokers_down",
        C::MessageTimedOut => "timed_out",
        C::Resolve => "resolve",
        C::Authentication => "authentication",
        _ => "other",
    }
}

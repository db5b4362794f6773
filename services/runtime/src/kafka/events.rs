//! Telemetry shared by every Kafka consume loop; `service` labels which one.

use crate::telemetry::LogLimiter;

static WARN_LOG: LogLimiter = LogLimiter::new();

/// A message could not be decoded and went to the dead-letter topic.
pub fn dead_lettered(service: &'static str, reason: &'static str, error: &dyn std::fmt::Display) {
    metrics::counter!("shadowdiff_dead_lettered_total", "service" => service, "reason" => reason).increment(1);
    if WARN_LOG.allow() {
        tracing::warn!(service, reason, %error, "malformed event sent to the dead-letter topic");
    }
}

/// Receiving from the broker failed; the loop goes on.
pub fn consume_failed(service: &'static str, error: &rdkafka::error::KafkaError) {
    metrics::counter!("shadowdiff_consume_errors_total", "service" => service).increment(1);
    if WARN_LOG.allow() {
        tracing::warn!(service, %error, "consume failed");
    }
}

/// An offset commit failed; the next commit covers it.
pub fn commit_failed(service: &'static str, error: &rdkafka::error::KafkaError) {
    metrics::counter!("shadowdiff_commit_errors_total", "service" => service).increment(1);
    if WARN_LOG.allow() {
        tracing::warn!(service, %error, "offset commit failed; the next commit covers it");
    }
}

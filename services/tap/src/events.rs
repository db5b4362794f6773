//! What the tap logs and counts. Each function writes the log line and bumps the counter
//! together; labels are bounded (reason, status class, error kind).

use shadowdiff_core::ErrorKind;
use shadowdiff_runtime::telemetry::LogLimiter;

#[derive(Debug, Clone, Copy)]
pub(crate) enum DropReason {
    Encode,
    QueueFull,
    Produce,
    Delivery,
}

impl DropReason {
    const fn as_str(self) -> &'static str {
        match self {
            Self::Encode => "encode",
            Self::QueueFull => "queue_full",
            Self::Produce => "produce",
            Self::Delivery => "delivery",
        }
    }
}

static DROP_LOG: LogLimiter = LogLimiter::new();

pub(crate) fn dropped(reason: DropReason, error: &dyn std::fmt::Display) {
    metrics::counter!("shadowdiff_tap_events_dropped_total", "reason" => reason.as_str()).increment(1);
    if DROP_LOG.allow() {
        tracing::warn!(reason = reason.as_str(), %error, "event dropped (logged at most once a second)");
    }
}

pub(crate) fn published() {
    metrics::counter!("shadowdiff_tap_events_published_total").increment(1);
}

pub(crate) fn queue_depth(depth: i32) {
    metrics::gauge!("shadowdiff_tap_producer_queue_depth").set(f64::from(depth));
}

pub(crate) fn proxied(status: u16) {
    let class = match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    metrics::counter!("shadowdiff_tap_requests_total", "status_class" => class).increment(1);
}

pub(crate) fn upstream_failed(kind: ErrorKind, error: &reqwest::Error) {
    metrics::counter!("shadowdiff_tap_upstream_errors_total", "kind" => kind.as_str()).increment(1);
    tracing::warn!(kind = kind.as_str(), %error, "primary did not answer");
}

pub(crate) fn rejected(reason: &'static str) {
    metrics::counter!("shadowdiff_tap_rejected_total", "reason" => reason).increment(1);
}

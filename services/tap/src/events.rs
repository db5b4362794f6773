//! What the tap logs and counts. Each function writes the log line and bumps the counter
//! together; labels are bounded (route template or `auto`, status class, reason, kind).

use std::time::Duration;

use metrics::{Counter, Gauge, Histogram};

use shadowdiff_core::ErrorKind;
use shadowdiff_runtime::telemetry::LogLimiter;

#[derive(Debug, Clone, Copy)]
pub(crate) enum DropReason {
    Encode,
    QueueFull,
    Produce,
    Delivery,
    /// Finished after its worker stopped publishing (past the drain deadline).
    Shutdown,
    /// Not captured: the publishing queues already held `capture_memory_budget_bytes`.
    MemoryBudget,
}

impl DropReason {
    const fn as_str(self) -> &'static str {
        match self {
            Self::Encode => "encode",
            Self::QueueFull => "queue_full",
            Self::Produce => "produce",
            Self::Delivery => "delivery",
            Self::Shutdown => "shutdown",
            Self::MemoryBudget => "memory_budget",
        }
    }
}

static DROP_LOG: LogLimiter = LogLimiter::new();
static UPSTREAM_LOG: LogLimiter = LogLimiter::new();
static CLOSE_LOG: LogLimiter = LogLimiter::new();
static REJECT_LOG: LogLimiter = LogLimiter::new();

/// Why the tap closed a client connection itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseReason {
    /// Dealt to a worker already serving `max_connections_per_worker`.
    WorkerFull,
    /// No complete request head within `header_read_timeout_ms`.
    HeaderTimeout,
    /// No request started within `idle_timeout_ms`.
    Idle,
    /// The TLS handshake failed: not TLS, no shared protocol version or cipher suite.
    TlsHandshake,
}

impl CloseReason {
    const fn as_str(self) -> &'static str {
        match self {
            Self::WorkerFull => "worker_full",
            Self::HeaderTimeout => "header_timeout",
            Self::Idle => "idle",
            Self::TlsHandshake => "tls_handshake",
        }
    }
}

/// A connection the tap closed; idle closes are routine and only counted.
pub(crate) fn connection_closed(reason: CloseReason) {
    metrics::counter!("shadowdiff_tap_connections_closed_total", "reason" => reason.as_str()).increment(1);
    if reason != CloseReason::Idle && CLOSE_LOG.allow() {
        tracing::warn!(reason = reason.as_str(), "client connection closed by the tap (logged at most once a second)");
    }
}

/// A request answered 400 before it reached the upstream, because of its target.
pub(crate) fn target_rejected(method: &http::Method) {
    metrics::counter!("shadowdiff_tap_requests_rejected_total", "reason" => "request_target").increment(1);
    if REJECT_LOG.allow() {
        tracing::warn!(%method, "request target is not origin-form; answered 400 (logged at most once a second)");
    }
}

pub(crate) fn dropped(reason: DropReason, error: &dyn std::fmt::Display) {
    metrics::counter!("shadowdiff_tap_events_dropped_total", "reason" => reason.as_str()).increment(1);
    if DROP_LOG.allow() {
        tracing::warn!(reason = reason.as_str(), %error, "event dropped (logged at most once a second)");
    }
}

/// What publishing counts, registered once (the recorder is installed before), so an event
/// costs no registry lookup.
#[derive(Debug, Clone)]
pub(crate) struct Publishing {
    published: Counter,
    publish_seconds: Histogram,
    queue_depth: Gauge,
    request_bytes: Counter,
    response_bytes: Counter,
}

impl Publishing {
    pub(crate) fn new() -> Self {
        let bytes =
            |direction: &'static str| metrics::counter!("shadowdiff_tap_body_bytes_total", "direction" => direction);
        Self {
            published: metrics::counter!("shadowdiff_tap_events_published_total"),
            publish_seconds: metrics::histogram!("shadowdiff_tap_publish_seconds"),
            queue_depth: metrics::gauge!("shadowdiff_tap_producer_queue_depth"),
            request_bytes: bytes("request"),
            response_bytes: bytes("response"),
        }
    }

    /// A delivery the broker acknowledged, `took` after it was queued.
    pub(crate) fn published(&self, took: Duration) {
        self.published.increment(1);
        self.publish_seconds.record(took.as_secs_f64());
    }

    /// Messages waiting in the producer, from librdkafka's statistics.
    pub(crate) fn queue_depth(&self, depth: u64) {
        #[allow(clippy::cast_precision_loss)] // bounded by the producer's queue size
        self.queue_depth.set(depth as f64);
    }

    /// The full lengths of an exchange's bodies, captured or not.
    pub(crate) fn body_bytes(&self, request: i64, response: i64) {
        self.request_bytes.increment(u64::try_from(request).unwrap_or(0));
        self.response_bytes.increment(u64::try_from(response).unwrap_or(0));
    }
}

/// One route's request counters, registered when the routes are built (the recorder is
/// installed before), so a request bumps them without a registry lookup.
#[derive(Debug)]
pub(crate) struct RouteCounters {
    label: String,
    started: Counter,
    /// By status class: 1xx to 5xx.
    by_class: [Counter; 5],
}

impl RouteCounters {
    pub(crate) fn new(label: &str) -> Self {
        let by_class = ["1xx", "2xx", "3xx", "4xx", "5xx"].map(|class| {
            metrics::counter!("shadowdiff_tap_requests_total", "route" => label.to_owned(), "status_class" => class)
        });
        Self {
            label: label.to_owned(),
            started: metrics::counter!("shadowdiff_tap_requests_started_total", "route" => label.to_owned()),
            by_class,
        }
    }

    #[cfg(test)]
    pub(crate) fn label(&self) -> &str {
        &self.label
    }

    pub(crate) fn started(&self) {
        self.started.increment(1);
    }

    pub(crate) fn proxied(&self, status: u16) {
        let class = usize::from((status / 100).clamp(1, 5)) - 1;
        self.by_class[class].increment(1);
    }

    pub(crate) fn upstream_failed(&self, kind: ErrorKind, error: &dyn std::fmt::Display) {
        let route = self.label.as_str();
        metrics::counter!("shadowdiff_tap_upstream_errors_total", "route" => route.to_owned(), "kind" => kind.as_str())
            .increment(1);
        if UPSTREAM_LOG.allow() {
            tracing::warn!(route, kind = kind.as_str(), %error, "upstream did not answer");
        }
    }
}

pub(crate) fn upgraded() {
    metrics::counter!("shadowdiff_tap_upgrades_total").increment(1);
}

pub(crate) fn producer_replaced() {
    metrics::counter!("shadowdiff_tap_producer_replaced_total").increment(1);
    tracing::warn!("the producer kept failing while the broker answered; replaced it with a fresh one");
}

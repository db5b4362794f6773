//! What the correlator logs and counts; labels are bounded (outcome, reason).

use std::time::Duration;

use shadowdiff_runtime::telemetry::LogLimiter;

use shadowdiff_runtime::kafka::Delivery;
use shadowdiff_store::Outcome;

static WARN_LOG: LogLimiter = LogLimiter::new();

pub(crate) fn finalized(outcomes: &[Outcome]) {
    if outcomes.is_empty() {
        metrics::counter!("shadowdiff_correlator_exchanges_total", "outcome" => "unmirrored").increment(1);
    }
    for outcome in outcomes {
        metrics::counter!("shadowdiff_correlator_exchanges_total", "outcome" => outcome.as_str()).increment(1);
    }
}

pub(crate) fn open_exchanges(open: usize) {
    metrics::gauge!("shadowdiff_correlator_open_exchanges").set(open as f64);
}

pub(crate) fn written(exchanges: usize, differences: usize, took: Duration) {
    metrics::counter!("shadowdiff_correlator_rows_written_total", "table" => "exchanges").increment(exchanges as u64);
    metrics::counter!("shadowdiff_correlator_rows_written_total", "table" => "differences")
        .increment(differences as u64);
    metrics::histogram!("shadowdiff_correlator_write_seconds").record(took.as_secs_f64());
    tracing::debug!(exchanges, differences, took_ms = took.as_millis(), "batch written");
}

pub(crate) fn ignored(reason: &'static str) {
    metrics::counter!("shadowdiff_correlator_events_ignored_total", "reason" => reason).increment(1);
}

pub(crate) fn evicted(exchanges: usize) {
    metrics::counter!("shadowdiff_correlator_evicted_total").increment(exchanges as u64);
}

/// Per-route state (noise counts, sample budgets) forgot its least recently used route to
/// make room for another.
pub(crate) fn route_state_evicted(state: &'static str) {
    metrics::counter!("shadowdiff_correlator_route_state_evicted_total", "state" => state).increment(1);
}

/// A message or a row went to the dead-letter topic (whole, truncated) or was skipped.
pub(crate) fn dead_lettered(what: &'static str, reason: &'static str, delivery: Delivery) {
    metrics::counter!(
        "shadowdiff_correlator_dead_letters_total",
        "what" => what, "reason" => reason, "delivery" => delivery.as_str()
    )
    .increment(1);
    if delivery == Delivery::Skipped && WARN_LOG.allow() {
        tracing::warn!(what, reason, "dead letter too large for the broker even without its payload; skipped");
    }
}

/// ClickHouse rejected a row on its own; it goes to the dead-letter topic.
pub(crate) fn row_rejected(table: &'static str, code: Option<u32>, error: &str) {
    metrics::counter!("shadowdiff_correlator_rows_rejected_total", "table" => table).increment(1);
    if WARN_LOG.allow() {
        tracing::warn!(table, code, error, "clickhouse rejected a row; sent to the dead-letter topic");
    }
}

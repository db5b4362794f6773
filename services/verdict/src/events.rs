//! The verdict service's telemetry: one place that logs and counts together.

use shadowdiff_runtime::telemetry::LogLimiter;

static RECORD_LOG: LogLimiter = LogLimiter::new();

/// A verdict could not be recorded in `verdicts`; the answer was given all the same.
pub(crate) fn record_failed(error: &shadowdiff_store::StoreError) {
    metrics::counter!("shadowdiff_verdict_record_errors_total").increment(1);
    if RECORD_LOG.allow() {
        tracing::warn!(%error, "verdict not recorded (at most one line a second)");
    }
}

/// A verdict given, by outcome and caller (bounded: three of each).
pub(crate) fn given(verdict: &'static str, caller: &'static str) {
    metrics::counter!("shadowdiff_verdicts_total", "verdict" => verdict, "caller" => caller).increment(1);
}

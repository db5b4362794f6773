//! What the correlator logs and counts; labels are bounded (outcome, reason).

use std::time::Duration;

use crate::sink::rows::Outcome;

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

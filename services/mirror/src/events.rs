//! What the mirror logs and counts; labels are bounded (target name, reason, error kind).

use shadowdiff_core::ErrorKind;
use shadowdiff_runtime::telemetry::LogLimiter;

static WARN_LOG: LogLimiter = LogLimiter::new();

pub(crate) fn replayed(profile: &str, event: &shadowdiff_core::ResponseEvent) {
    let outcome = event.error.map_or("response", ErrorKind::as_str);
    metrics::counter!(
        "shadowdiff_mirror_replays_total",
        "profile" => profile.to_owned(),
        "target" => event.deployment.clone(),
        "outcome" => outcome
    )
    .increment(1);
}

pub(crate) fn profile_changed(id: &str, change: &'static str) {
    metrics::counter!("shadowdiff_mirror_profile_changes_total", "change" => change).increment(1);
    tracing::info!(profile = id, change, "profile change applied");
}

pub(crate) fn profile_rejected(id: &str) {
    metrics::counter!("shadowdiff_mirror_profile_changes_total", "change" => "rejected").increment(1);
    tracing::warn!(profile = id, "invalid profile record on the profile topic ignored");
}

pub(crate) fn replay_failed(target: &str, kind: ErrorKind, error: &reqwest::Error) {
    metrics::counter!("shadowdiff_mirror_replay_errors_total", "target" => target.to_owned(), "kind" => kind.as_str())
        .increment(1);
    if WARN_LOG.allow() {
        tracing::warn!(target, kind = kind.as_str(), %error, "replay got no response");
    }
}

pub(crate) fn skipped(reason: &'static str) {
    metrics::counter!("shadowdiff_mirror_skipped_total", "reason" => reason).increment(1);
}

pub(crate) fn unsealable(error: &shadowdiff_core::redact::SealError) {
    metrics::counter!("shadowdiff_mirror_unsealable_headers_total").increment(1);
    if WARN_LOG.allow() {
        tracing::warn!(%error, "a sealed header did not open; it is left out of the replay");
    }
}

pub(crate) fn profile_written(id: &str, action: crate::profile::store::Action, by: &str) {
    tracing::info!(profile = id, ?action, by, "profile change written to the profile topic");
}

pub(crate) fn target_refused_at_connect() {
    metrics::counter!("shadowdiff_mirror_targets_refused_total", "at" => "connect").increment(1);
    if WARN_LOG.allow() {
        tracing::warn!("a replay target resolved only to refused addresses; the replay fails to connect");
    }
}

/// A request went to the dead-letter topic; `skipped` when even its headers were too large.
pub(crate) fn dead_lettered(delivery: shadowdiff_runtime::kafka::Delivery) {
    if delivery == shadowdiff_runtime::kafka::Delivery::Skipped && WARN_LOG.allow() {
        tracing::warn!("a dead letter was too large for the broker even without its payload; skipped");
    }
}

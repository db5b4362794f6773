//! Retrying a write that must not be skipped (a publish before an offset commit, a row
//! batch before its offsets are released) until it succeeds or shutdown arrives.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::telemetry::LogLimiter;

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Shutdown arrived before the write succeeded. The caller must not advance its offsets,
/// so the input is read again after restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("interrupted by shutdown before the write succeeded")]
pub struct Interrupted;

static RETRY_LOG: LogLimiter = LogLimiter::new();

/// Runs `attempt` until it returns `Ok`, with capped exponential backoff, counting each
/// failure in `shadowdiff_write_retries_total{what}`.
pub async fn until_shutdown<T, E, F, Fut>(
    shutdown: &CancellationToken,
    what: &'static str,
    mut attempt: F,
) -> Result<T, Interrupted>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut backoff = FIRST_BACKOFF;
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(error) => {
                metrics::counter!("shadowdiff_write_retries_total", "what" => what).increment(1);
                if RETRY_LOG.allow() {
                    tracing::warn!(what, %error, retry_in_ms = backoff.as_millis(), "write failed; retrying");
                }
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return Err(Interrupted),
            () = tokio::time::sleep(backoff) => backoff = (backoff * 2).min(MAX_BACKOFF),
        }
    }
}

//! What a client connection may cost a worker: how many are open at once, how long one
//! may take to send its first request head, and how long it may sit without a request.
//!
//! hyper enforces the HTTP/1.1 header deadline itself, but not before it has told
//! HTTP/1.1 from h2c (a client that sends nothing, or half the h2 preface, waits there
//! forever), nor on h2c, nor an idle h2c connection. [`watch`] covers those with one timer
//! per connection; a request costs it one relaxed atomic increment.

use std::error::Error;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use hyper_util::server::graceful::GracefulConnection;
use shadowdiff_runtime::CancellationToken;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::events::{self, CloseReason};

/// How often the idle clock is read, as a share of `idle_timeout`: a connection is closed
/// between one and one and a quarter idle timeouts after its last request started.
const IDLE_CHECKS: u32 = 4;

type BoxError = Box<dyn Error + Send + Sync>;

/// A connection's deadlines.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) header_read: Duration,
    pub(crate) idle: Duration,
}

/// A worker's open connections.
#[derive(Debug)]
pub(crate) struct Open {
    count: AtomicUsize,
    max: usize,
    none_left: Notify,
}

impl Open {
    pub(crate) fn new(max: usize) -> Arc<Self> {
        Arc::new(Self { count: AtomicUsize::new(0), max, none_left: Notify::new() })
    }

    /// A place for one more connection, or `None` (counted) when the worker is full. Only
    /// the worker's accept loop admits, so the check and the increment cannot race.
    pub(crate) fn admit(self: &Arc<Self>) -> Option<Slot> {
        if self.count.load(Ordering::Relaxed) >= self.max {
            events::connection_closed(CloseReason::WorkerFull);
            return None;
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        Some(Slot(self.clone()))
    }

    /// Returns once no connection is open.
    pub(crate) async fn drained(&self) {
        loop {
            // Registered before the check, so a close in between still wakes it.
            let closed = self.none_left.notified();
            if self.count.load(Ordering::Acquire) == 0 {
                return;
            }
            closed.await;
        }
    }
}

/// One open connection's place; given back when dropped.
#[derive(Debug)]
pub(crate) struct Slot(Arc<Open>);

impl Drop for Slot {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.none_left.notify_waiters();
        }
    }
}

/// Drives `connection` to its end. It is dropped (closed) if no request head arrived
/// within the header deadline, and shut down gracefully, letting requests in flight
/// finish, once no request has started for the idle timeout or when `shutdown` fires.
pub(crate) async fn watch<C>(
    connection: C,
    started: &AtomicU64,
    limits: Limits,
    shutdown: &CancellationToken,
) -> Result<(), BoxError>
where
    C: GracefulConnection<Error = BoxError>,
{
    let mut connection = pin!(connection);
    let tick = limits.idle / IDLE_CHECKS;
    let timer = tokio::time::sleep(limits.header_read);
    let mut timer = pin!(timer);
    let (mut seen, mut quiet_ticks, mut closing) = (0, 0, false);
    loop {
        tokio::select! {
            ended = connection.as_mut() => {
                return ended.inspect_err(|error| count_timeout(error, started.load(Ordering::Relaxed)));
            }
            () = shutdown.cancelled(), if !closing => {
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
            () = timer.as_mut(), if !closing => {
                let now = started.load(Ordering::Relaxed);
                if now == 0 {
                    events::connection_closed(CloseReason::HeaderTimeout);
                    return Ok(());
                }
                quiet_ticks = if now == seen { quiet_ticks + 1 } else { 0 };
                seen = now;
                if quiet_ticks >= IDLE_CHECKS {
                    events::connection_closed(CloseReason::Idle);
                    connection.as_mut().graceful_shutdown();
                    closing = true;
                } else {
                    timer.as_mut().reset(Instant::now() + tick);
                }
            }
        }
    }
}

/// Counts hyper's own HTTP/1.1 header deadline with the one [`watch`] keeps. hyper also
/// runs it while a keep-alive connection waits for its next request and does not say which
/// it was; after a first request, it is counted as the routine idle close it nearly always is.
fn count_timeout(error: &BoxError, started: u64) {
    if error.downcast_ref::<hyper::Error>().is_some_and(hyper::Error::is_timeout) {
        events::connection_closed(if started == 0 { CloseReason::HeaderTimeout } else { CloseReason::Idle });
    }
}

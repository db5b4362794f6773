//! One replay target of one profile, with what keeps it isolated: a bounded queue, a rate
//! limit (governor), a concurrency bound, a circuit breaker, and the counters its status
//! reports. Requests wait in the queue for the rate limit and a free slot; when the queue
//! is full they are shed at once, so a slow or dead target never holds up the consume
//! loop and its lag stays bounded by the queue.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde::Serialize;
use shadowdiff_core::{ErrorKind, RequestEvent, ResponseEvent};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::profile::{Profile, TargetSpec};
use crate::replay::{ReplayContext, Replayer};

/// Every profile's targets, by (profile id, target name): built on first use, rebuilt when
/// their spec changes. The consume loop replays through them; the API reports their status.
#[derive(Debug, Default)]
pub(crate) struct Targets {
    built: Mutex<HashMap<(String, String), Arc<Target>>>,
}

impl Targets {
    fn built(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Arc<Target>>> {
        self.built.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The targets of profile `id` built so far.
    pub(crate) fn of(&self, id: &str) -> Vec<Arc<Target>> {
        self.built().iter().filter(|((p, _), _)| p == id).map(|(_, t)| t.clone()).collect()
    }

    /// The targets of `profile`, built on first use and rebuilt when their spec changed.
    pub(crate) fn for_profile(&self, profile: &Profile, context: &ReplayContext) -> Vec<Arc<Target>> {
        let mut built = self.built();
        built.retain(|(p, name), _| p != &profile.id || profile.targets.iter().any(|t| &t.name == name));
        let mut out = Vec::with_capacity(profile.targets.len());
        for spec in &profile.targets {
            let key = (profile.id.clone(), spec.name.clone());
            let current = built.get(&key).filter(|t| t.spec == *spec).cloned();
            let target = match current {
                Some(target) => target,
                None => match Replayer::new(spec.clone(), context) {
                    Ok(replayer) => {
                        let target = Arc::new(Target::new(spec.clone(), replayer));
                        built.insert(key, target.clone());
                        target
                    }
                    Err(error) => {
                        tracing::error!(%error, target = %spec.name, "cannot build the target's HTTP client");
                        continue;
                    }
                },
            };
            out.push(target);
        }
        out
    }
}

/// Consecutive failures that open the circuit.
const OPEN_AFTER: u32 = 5;
/// How long an open circuit rejects before letting one trial through.
const OPEN_FOR: Duration = Duration::from_secs(5);

pub(crate) struct Target {
    pub(crate) spec: TargetSpec,
    pub(crate) replayer: Replayer,
    limiter: Option<DefaultDirectRateLimiter>,
    queue: Arc<Semaphore>,
    permits: Semaphore,
    breaker: Mutex<Breaker>,
    stats: Stats,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target").field("name", &self.spec.name).finish_non_exhaustive()
    }
}

/// A place in a target's queue.
pub(crate) struct Ticket(#[allow(dead_code)] OwnedSemaphorePermit);

impl Target {
    pub(crate) fn new(spec: TargetSpec, replayer: Replayer) -> Self {
        let limiter = spec
            .rate_per_sec
            .and_then(std::num::NonZeroU32::new)
            // No burst: replays are spaced evenly, so the rate holds over any window.
            .map(|rate| RateLimiter::direct(Quota::per_second(rate).allow_burst(std::num::NonZeroU32::MIN)));
        Self {
            queue: Arc::new(Semaphore::new(spec.max_concurrency + spec.max_queued)),
            permits: Semaphore::new(spec.max_concurrency),
            spec,
            replayer,
            limiter,
            breaker: Mutex::new(Breaker::Closed { failures: 0 }),
            stats: Stats::default(),
        }
    }

    /// A place in the queue, or `None` when it is full: the request is shed.
    pub(crate) fn admit(&self) -> Option<Ticket> {
        let ticket = self.queue.clone().try_acquire_owned().ok().map(Ticket);
        if ticket.is_none() {
            self.stats.shed.fetch_add(1, Ordering::Relaxed);
        }
        ticket
    }

    /// Waits for the rate limit and a free slot, then replays unless the circuit is open.
    pub(crate) async fn replay(&self, ticket: Ticket, request: &RequestEvent, profile: &Profile) -> ResponseEvent {
        if let Some(limiter) = &self.limiter {
            limiter.until_ready().await;
        }
        // The semaphore is never closed, so acquiring only waits.
        let Ok(_slot) = self.permits.acquire().await else {
            return self.replayer.unanswered(request, profile, ErrorKind::Shed);
        };
        if !self.breaker().allow(Instant::now()) {
            self.stats.rejected.fetch_add(1, Ordering::Relaxed);
            return self.replayer.unanswered(request, profile, ErrorKind::CircuitOpen);
        }
        let replayed = self.replayer.replay(request, profile).await;
        let e = &replayed.event;
        let ok = e.error.is_none() && e.status.is_some_and(|s| s < 500);
        self.record(ok, e.error == Some(ErrorKind::Timeout), replayed.injected);
        drop(ticket);
        replayed.event
    }

    /// Records a replay's outcome. Injected faults are not the target's doing, so they
    /// never move the breaker.
    fn record(&self, ok: bool, timed_out: bool, injected: bool) {
        self.stats.replayed(ok, timed_out);
        if !injected {
            self.breaker().record(ok, Instant::now());
        }
    }

    fn breaker(&self) -> std::sync::MutexGuard<'_, Breaker> {
        self.breaker.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn status(&self) -> TargetStatus {
        TargetStatus {
            name: self.spec.name.clone(),
            role: self.spec.role,
            rate_per_sec: self.stats.recent_rate(),
            replays: self.stats.replays.load(Ordering::Relaxed),
            errors: self.stats.errors.load(Ordering::Relaxed),
            timeouts: self.stats.timeouts.load(Ordering::Relaxed),
            shed: self.stats.shed.load(Ordering::Relaxed),
            circuit_rejections: self.stats.rejected.load(Ordering::Relaxed),
            circuit: self.breaker().label(Instant::now()),
            in_flight: self.spec.max_concurrency - self.permits.available_permits(),
            queued: (self.spec.max_concurrency + self.spec.max_queued)
                .saturating_sub(self.queue.available_permits())
                .saturating_sub(self.spec.max_concurrency - self.permits.available_permits()),
        }
    }
}

impl TargetStatus {
    pub(crate) fn name(&self) -> &str {
        &self.name
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct TargetStatus {
    name: String,
    role: crate::profile::TargetRole,
    /// Replays per second over the last 10 seconds.
    rate_per_sec: f64,
    replays: u64,
    errors: u64,
    timeouts: u64,
    shed: u64,
    circuit_rejections: u64,
    circuit: &'static str,
    in_flight: usize,
    queued: usize,
}

/// A circuit breaker: closed until `OPEN_AFTER` consecutive failures, then open for
/// `OPEN_FOR`, then half-open with a single trial whose outcome closes or reopens it.
#[derive(Debug)]
enum Breaker {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { trial_running: bool },
}

impl Breaker {
    fn allow(&mut self, now: Instant) -> bool {
        match *self {
            Self::Closed { .. } => true,
            Self::Open { until } if now < until => false,
            Self::Open { .. } | Self::HalfOpen { trial_running: false } => {
                *self = Self::HalfOpen { trial_running: true };
                true
            }
            Self::HalfOpen { trial_running: true } => false,
        }
    }

    fn record(&mut self, ok: bool, now: Instant) {
        *self = match (&*self, ok) {
            (_, true) => Self::Closed { failures: 0 },
            (Self::Closed { failures }, false) if failures + 1 < OPEN_AFTER => Self::Closed { failures: failures + 1 },
            (_, false) => Self::Open { until: now + OPEN_FOR },
        };
    }

    fn label(&self, now: Instant) -> &'static str {
        match self {
            Self::Closed { .. } => "closed",
            Self::Open { until } if now < *until => "open",
            Self::Open { .. } | Self::HalfOpen { .. } => "half_open",
        }
    }
}

#[derive(Debug, Default)]
struct Stats {
    replays: AtomicU64,
    errors: AtomicU64,
    timeouts: AtomicU64,
    shed: AtomicU64,
    rejected: AtomicU64,
    /// Replays per second for the last 10 seconds: (second, count).
    recent: Mutex<[(u64, u64); 10]>,
}

impl Stats {
    fn replayed(&self, ok: bool, timed_out: bool) {
        self.replays.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        if timed_out {
            self.timeouts.fetch_add(1, Ordering::Relaxed);
        }
        let second = epoch_second();
        let mut recent = self.recent.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let slot = &mut recent[usize::try_from(second % 10).unwrap_or(0)];
        if slot.0 != second {
            *slot = (second, 0);
        }
        slot.1 += 1;
    }

    fn recent_rate(&self) -> f64 {
        let now = epoch_second();
        let recent = self.recent.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let total: u64 = recent.iter().filter(|(second, _)| now.saturating_sub(*second) < 10).map(|(_, n)| n).sum();
        total as f64 / 10.0
    }
}

fn epoch_second() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaker_opens_after_consecutive_failures_and_recovers_through_one_trial() {
        let t0 = Instant::now();
        let mut b = Breaker::Closed { failures: 0 };
        for _ in 0..OPEN_AFTER - 1 {
            b.record(false, t0);
        }
        assert!(b.allow(t0), "still closed one failure short");
        b.record(false, t0);
        assert_eq!(b.label(t0), "open");
        assert!(!b.allow(t0 + OPEN_FOR / 2));
        assert!(b.allow(t0 + OPEN_FOR), "one trial after the cool-down");
        assert!(!b.allow(t0 + OPEN_FOR), "only one");
        b.record(false, t0 + OPEN_FOR);
        assert_eq!(b.label(t0 + OPEN_FOR), "open", "a failed trial reopens");
        assert!(b.allow(t0 + OPEN_FOR * 2));
        b.record(true, t0 + OPEN_FOR * 2);
        assert_eq!(b.label(t0 + OPEN_FOR * 2), "closed");
    }
}

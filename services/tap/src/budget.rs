//! The memory the captured bodies of finished exchanges may take while they wait to be
//! published, shared by every worker. An exchange takes its bytes when it is queued and
//! gives them back once its events are handed to the producer; one that does not fit is
//! dropped and counted instead, so a publisher that falls behind costs memory up to the
//! budget, never the client a wait.

use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Debug)]
pub(crate) struct CaptureBudget {
    held: AtomicUsize,
    limit: usize,
}

impl CaptureBudget {
    pub(crate) const fn new(limit: usize) -> Self {
        Self { held: AtomicUsize::new(0), limit }
    }

    /// Whether anything is left: a request is only captured while there is, so that a full
    /// budget does not also fill the capture buffers of requests in flight.
    pub(crate) fn has_room(&self) -> bool {
        self.held.load(Ordering::Relaxed) < self.limit
    }

    /// Takes `bytes`, or nothing when they would pass the limit.
    pub(crate) fn take(&self, bytes: usize) -> bool {
        self.held
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
                held.checked_add(bytes).filter(|&after| after <= self.limit)
            })
            .is_ok()
    }

    /// Gives back what [`CaptureBudget::take`] took.
    pub(crate) fn give_back(&self, bytes: usize) {
        self.held.fetch_sub(bytes, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_up_to_the_limit_and_no_further_until_given_back() {
        let budget = CaptureBudget::new(100);
        assert!(budget.take(60));
        assert!(budget.take(40), "exactly the limit fits");
        assert!(!budget.has_room());
        assert!(!budget.take(1));
        assert!(budget.take(0), "an exchange without captured bytes always fits");
        budget.give_back(60);
        assert!(budget.has_room());
        assert!(!budget.take(61), "a refused take holds nothing");
        assert!(budget.take(60));
        assert!(!budget.take(usize::MAX), "no overflow");
    }
}

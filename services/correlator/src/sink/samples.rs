//! The budget of body samples: at most `per_minute` sampled exchanges per route and minute
//! of request time, over a bounded number of routes.

use crate::bounded::RouteMap;

#[derive(Debug)]
pub(crate) struct SampleBudget {
    per_minute: usize,
    /// Route → (minute, samples taken in it). A route forgotten to make room starts its
    /// minute afresh when it comes back: at worst a few samples more, never unbounded memory.
    used: RouteMap<String, (i64, usize)>,
}

impl SampleBudget {
    pub(crate) fn new(per_minute: usize, max_routes: usize) -> Self {
        Self { per_minute, used: RouteMap::new(max_routes, "sample_budget") }
    }

    /// Whether an exchange of `route` at `timestamp_ms` may be sampled; counts it if so.
    pub(crate) fn take(&mut self, route: &str, timestamp_ms: i64) -> bool {
        if self.per_minute == 0 {
            return false;
        }
        let minute = timestamp_ms.div_euclid(60_000);
        let (at, used) = self.used.entry(route.to_owned(), || (minute, 0));
        if *at != minute {
            (*at, *used) = (minute, 0);
        }
        if *used >= self.per_minute {
            return false;
        }
        *used += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: i64 = 60_000;

    #[test]
    fn per_route_and_minute() {
        let mut budget = SampleBudget::new(2, 100);
        let taken: Vec<bool> = (0..3).map(|_| budget.take("/a", 0)).collect();
        assert_eq!(taken, vec![true, true, false]);
        assert!(budget.take("/b", 0), "another route has its own budget");
        assert!(budget.take("/a", MINUTE), "the next minute starts afresh");
    }

    #[test]
    fn routes_tracked_are_bounded() {
        let mut budget = SampleBudget::new(1, 50);
        for id in 0..20_000 {
            assert!(budget.take(&format!("/items/{id}"), 0), "every new route gets its sample");
        }
        assert_eq!(budget.used.len(), 50);
    }

    #[test]
    fn zero_samples_tracks_nothing() {
        let mut budget = SampleBudget::new(0, 10);
        assert!(!budget.take("/a", 0));
        assert_eq!(budget.used.len(), 0);
    }
}

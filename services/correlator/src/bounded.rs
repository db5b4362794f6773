//! State kept per route, bounded however many routes there are.
//!
//! Routes are the tap's templates, but a service with auto-templated paths (an id the
//! templater did not recognise, say) makes a new "route" per request, and a plain map keyed
//! by route grows without end. [`RouteMap`] keeps at most a configured number of entries
//! and forgets the least recently used one to make room, counting each eviction
//! (`shadowdiff_correlator_route_state_evicted_total{state}`).

use std::hash::Hash;
use std::num::NonZeroUsize;

use lru::LruCache;

use crate::events;

/// A map of at most `capacity` entries, least recently used out first.
pub(crate) struct RouteMap<K, V> {
    entries: LruCache<K, V>,
    /// The `state` label of its eviction counter.
    state: &'static str,
}

impl<K: Hash + Eq, V> std::fmt::Debug for RouteMap<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteMap")
            .field("state", &self.state)
            .field("len", &self.entries.len())
            .field("capacity", &self.entries.cap())
            .finish()
    }
}

impl<K: Hash + Eq, V> RouteMap<K, V> {
    /// At least one entry is always kept: the configuration rejects 0 before this runs.
    pub(crate) fn new(capacity: usize, state: &'static str) -> Self {
        Self { entries: LruCache::new(NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN)), state }
    }

    /// The entry for `key`, made most recently used; inserted with `default()` when absent,
    /// evicting the least recently used entry if the map is full.
    pub(crate) fn entry(&mut self, key: K, default: impl FnOnce() -> V) -> &mut V {
        if self.entries.len() == self.entries.cap().get() && !self.entries.contains(&key) {
            events::route_state_evicted(self.state);
        }
        self.entries.get_or_insert_mut(key, default)
    }

    /// The entry for `key`, without changing its place in line.
    pub(crate) fn peek(&self, key: &K) -> Option<&V> {
        self.entries.peek(key)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_at_most_its_capacity_and_forgets_the_least_recently_used() {
        let mut map = RouteMap::new(3, "test");
        for route in 0..10_000 {
            *map.entry(format!("/items/{route}"), || 0) += 1;
            // The first route stays: it is used again every time.
            *map.entry("/items/0".to_owned(), || 0) += 1;
            assert!(map.len() <= 3);
        }
        assert_eq!(map.len(), 3);
        assert_eq!(map.peek(&"/items/0".to_owned()), Some(&10_001));
        assert_eq!(map.peek(&"/items/9999".to_owned()), Some(&1));
        assert_eq!(map.peek(&"/items/9998".to_owned()), Some(&1));
        assert_eq!(map.peek(&"/items/9997".to_owned()), None, "evicted");
    }

    #[test]
    fn peeking_does_not_save_an_entry_from_eviction() {
        let mut map = RouteMap::new(2, "test");
        map.entry("a", || 1);
        map.entry("b", || 2);
        assert_eq!(map.peek(&"a"), Some(&1));
        map.entry("c", || 3);
        assert_eq!((map.peek(&"a"), map.peek(&"b"), map.peek(&"c")), (None, Some(&2), Some(&3)));
    }

    #[test]
    fn a_zero_capacity_keeps_one() {
        let mut map = RouteMap::new(0, "test");
        map.entry(1, || ());
        map.entry(2, || ());
        assert_eq!(map.len(), 1);
    }
}

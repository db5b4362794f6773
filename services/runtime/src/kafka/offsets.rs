//! Which offsets may be committed while some exchanges are still open.
//!
//! An offset is safe to commit once every event at or below it has been written (or
//! deliberately dropped). Per partition that is the lowest offset still held by an open or
//! unwritten exchange, or one past the highest offset seen when nothing is held.
//!
//! Holds are counted: after a rebalance the same offset can be read again while its first
//! reading is still held, and releasing the second reading must not unprotect the first.
//!
//! A consume loop hands out each held offset as a [`Hold`], a guard that releases it when
//! dropped: no early return can forget a release, and work that did not finish keeps its
//! offset held with [`Hold::keep`].

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Where an event was read from: topic, partition, offset.
pub type Position = (Arc<str>, i32, i64);

#[derive(Debug, Default)]
struct OffsetTracker {
    partitions: HashMap<(Arc<str>, i32), Partition>,
}

#[derive(Debug, Default)]
struct Partition {
    /// Held offsets, with how many readings of each are held.
    held: BTreeMap<i64, usize>,
    next: i64,
    committed: i64,
}

impl OffsetTracker {
    /// An event was read and is now held until released.
    fn hold(&mut self, (topic, partition, offset): &Position) {
        let p = self.partitions.entry((topic.clone(), *partition)).or_default();
        *p.held.entry(*offset).or_default() += 1;
        p.next = p.next.max(offset + 1);
    }

    /// The event at `position` is written or deliberately dropped.
    fn release(&mut self, (topic, partition, offset): &Position) {
        if let Some(p) = self.partitions.get_mut(&(topic.clone(), *partition))
            && let Some(count) = p.held.get_mut(offset)
        {
            *count -= 1;
            if *count == 0 {
                p.held.remove(offset);
            }
        }
    }

    /// Offsets (next to read) that advanced since the last call, per topic and partition.
    fn advance(&mut self) -> Vec<Position> {
        let mut out = Vec::new();
        for ((topic, partition), p) in &mut self.partitions {
            let safe = p.held.first_key_value().map_or(p.next, |(offset, _)| *offset);
            if safe > p.committed {
                p.committed = safe;
                out.push((topic.clone(), *partition, safe));
            }
        }
        out
    }

    /// The partitions in `revoked` are being taken away in a rebalance: their offsets that
    /// advanced, to commit before the next owner reads on from them; and their state, which
    /// is forgotten, so a reading still in flight releases nothing that matters and a later
    /// assignment starts afresh.
    fn revoke(&mut self, revoked: &[(String, i32)]) -> Vec<Position> {
        let mut out = Vec::new();
        self.partitions.retain(|(topic, partition), p| {
            if !revoked.iter().any(|(t, n)| **t == **topic && n == partition) {
                return true;
            }
            let safe = p.held.first_key_value().map_or(p.next, |(offset, _)| *offset);
            if safe > p.committed {
                out.push((topic.clone(), *partition, safe));
            }
            false
        });
        out
    }

    /// Commits what [`advance`](Self::advance) returns. A failed commit is covered by the
    /// next one; a crash before then re-reads, which the consumers' writes tolerate.
    fn commit<C: rdkafka::consumer::ConsumerContext>(
        &mut self,
        consumer: &rdkafka::consumer::StreamConsumer<C>,
        mode: rdkafka::consumer::CommitMode,
        service: &'static str,
    ) {
        commit_positions(consumer, self.advance(), mode, service);
    }
}

/// Commits `positions` (the next offset to read, per partition).
fn commit_positions<C: rdkafka::consumer::Consumer<X>, X: rdkafka::consumer::ConsumerContext>(
    consumer: &C,
    positions: Vec<Position>,
    mode: rdkafka::consumer::CommitMode,
    service: &'static str,
) {
    if positions.is_empty() {
        return;
    }
    let mut list = rdkafka::TopicPartitionList::new();
    for (topic, partition, offset) in positions {
        if let Err(error) = list.add_partition_offset(&topic, partition, rdkafka::Offset::Offset(offset)) {
            tracing::warn!(%error, %topic, partition, "cannot add offset to commit");
        }
    }
    if let Err(error) = consumer.commit(&list, mode) {
        super::events::commit_failed(service, &error);
    }
}

/// The offsets one consumer may commit, shared by its loop and the work it hands out.
#[derive(Debug, Clone, Default)]
pub struct Offsets(Arc<Mutex<OffsetTracker>>);

impl Offsets {
    fn tracker(&self) -> MutexGuard<'_, OffsetTracker> {
        // A panic while holding the lock cannot leave the counts half-updated in a way that
        // loses data: at worst an offset stays held, so keep going.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Holds the event at `position` until the returned guard is dropped.
    pub fn hold(&self, position: Position) -> Hold {
        self.tracker().hold(&position);
        Hold { offsets: self.clone(), position, kept: AtomicBool::new(false) }
    }

    /// Commits every offset that advanced; see [`OffsetTracker::commit`].
    pub fn commit<C: rdkafka::consumer::ConsumerContext>(
        &self,
        consumer: &rdkafka::consumer::StreamConsumer<C>,
        mode: rdkafka::consumer::CommitMode,
        service: &'static str,
    ) {
        self.tracker().commit(consumer, mode, service);
    }

    /// Commits, synchronously, what the partitions in `revoked` may commit, and forgets them:
    /// called as a rebalance takes them away, so their next owner reads on from where this
    /// consumer got to instead of from its last periodic commit.
    pub fn commit_revoked<C: rdkafka::consumer::Consumer<X>, X: rdkafka::consumer::ConsumerContext>(
        &self,
        consumer: &C,
        revoked: &[(String, i32)],
        service: &'static str,
    ) {
        let positions = self.tracker().revoke(revoked);
        commit_positions(consumer, positions, rdkafka::consumer::CommitMode::Sync, service);
    }

    #[cfg(test)]
    fn advance(&self) -> Vec<Position> {
        self.tracker().advance()
    }
}

/// An event not done with yet: its offset, and every later one of its partition, stays
/// uncommitted while this lives. Dropping it says the event is done (written, published,
/// or deliberately skipped).
#[derive(Debug)]
#[must_use = "dropping a hold releases the offset at once"]
pub struct Hold {
    offsets: Offsets,
    position: Position,
    kept: AtomicBool,
}

impl Hold {
    pub fn position(&self) -> &Position {
        &self.position
    }

    /// The event's work did not finish (shutdown interrupted it): its offset stays held for
    /// good, so it is not committed and the partition's next owner reads it again. Callable
    /// from any holder of a shared hold.
    pub fn keep(&self) {
        self.kept.store(true, Ordering::Relaxed);
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        // Work that panicked did not finish either.
        if !self.kept.load(Ordering::Relaxed) && !std::thread::panicking() {
            self.offsets.tracker().release(&self.position);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revoked_partition_commits_what_it_may_and_is_forgotten() {
        let offsets = Offsets::default();
        let t: Arc<str> = Arc::from("requests");
        let done = offsets.hold((t.clone(), 0, 4));
        let in_flight = offsets.hold((t.clone(), 0, 5));
        let other = offsets.hold((t.clone(), 1, 9));
        drop((done, other));
        let positions = offsets.tracker().revoke(&[("requests".to_owned(), 0)]);
        assert_eq!(positions, vec![(t.clone(), 0, 5)], "up to the reading still in flight");
        drop(in_flight);
        assert_eq!(offsets.advance(), vec![(t.clone(), 1, 10)], "partition 0 is forgotten; 1 goes on");
    }

    #[test]
    fn a_hold_releases_its_offset_when_dropped_unless_kept() {
        let t: Arc<str> = Arc::from("requests");
        let offsets = Offsets::default();
        let first = offsets.hold((t.clone(), 0, 0));
        let second = offsets.hold((t.clone(), 0, 1));
        let third = offsets.hold((t.clone(), 0, 2));
        assert!(offsets.advance().is_empty(), "offset 0 is held");
        drop(first);
        assert_eq!(offsets.advance(), vec![(t.clone(), 0, 1)]);
        second.keep();
        drop(second);
        drop(third);
        assert!(offsets.advance().is_empty(), "a kept hold stays held after its guard is gone");
    }

    #[test]
    fn commits_up_to_the_lowest_held_offset() {
        let t: Arc<str> = Arc::from("requests");
        let pos = |o| (t.clone(), 0, o);
        let mut tracker = OffsetTracker::default();
        for o in 0..5 {
            tracker.hold(&pos(o));
        }
        assert!(tracker.advance().is_empty(), "offset 0 is still held");
        tracker.release(&pos(0));
        tracker.release(&pos(2));
        assert_eq!(tracker.advance(), vec![(t.clone(), 0, 1)]);
        tracker.release(&pos(1));
        assert_eq!(tracker.advance(), vec![(t.clone(), 0, 3)]);
        tracker.release(&pos(3));
        tracker.release(&pos(4));
        assert_eq!(tracker.advance(), vec![(t.clone(), 0, 5)]);
        assert!(tracker.advance().is_empty(), "nothing new to commit");
    }

    #[test]
    fn a_reread_offset_released_once_stays_held_for_its_first_reading() {
        let t: Arc<str> = Arc::from("responses");
        let mut tracker = OffsetTracker::default();
        tracker.hold(&(t.clone(), 0, 7)); // read, joined into an open exchange
        tracker.hold(&(t.clone(), 0, 7)); // read again after a rebalance: a duplicate
        tracker.release(&(t.clone(), 0, 7)); // the duplicate is dropped
        assert_eq!(tracker.advance(), vec![(t.clone(), 0, 7)], "7 itself stays uncommitted: its exchange holds it");
        tracker.release(&(t.clone(), 0, 7)); // the exchange is written
        assert_eq!(tracker.advance(), vec![(t, 0, 8)]);
    }
}

//! Which offsets may be committed while some exchanges are still open.
//!
//! An offset is safe to commit once every event at or below it has been written (or
//! deliberately dropped). Per partition that is the lowest offset still held by an open or
//! unwritten exchange, or one past the highest offset seen when nothing is held.
//!
//! Holds are counted: after a rebalance the same offset can be read again while its first
//! reading is still held, and releasing the second reading must not unprotect the first.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Where an event was read from: topic, partition, offset.
pub type Position = (Arc<str>, i32, i64);

#[derive(Debug, Default)]
pub struct OffsetTracker {
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
    pub fn hold(&mut self, (topic, partition, offset): &Position) {
        let p = self.partitions.entry((topic.clone(), *partition)).or_default();
        *p.held.entry(*offset).or_default() += 1;
        p.next = p.next.max(offset + 1);
    }

    /// The event at `position` is written or deliberately dropped.
    pub fn release(&mut self, (topic, partition, offset): &Position) {
        if let Some(p) = self.partitions.get_mut(&(topic.clone(), *partition)) {
            if let Some(count) = p.held.get_mut(offset) {
                *count -= 1;
                if *count == 0 {
                    p.held.remove(offset);
                }
            }
        }
    }

    /// Offsets (next to read) that advanced since the last call, per topic and partition.
    pub fn advance(&mut self) -> Vec<Position> {
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

    /// Commits what [`advance`](Self::advance) returns. A failed commit is covered by the
    /// next one; a crash before then re-reads, which the consumers' writes tolerate.
    pub fn commit<C: rdkafka::consumer::ConsumerContext>(
        &mut self,
        consumer: &rdkafka::consumer::StreamConsumer<C>,
        mode: rdkafka::consumer::CommitMode,
        service: &'static str,
    ) {
        use rdkafka::consumer::Consumer as _;
        let advanced = self.advance();
        if advanced.is_empty() {
            return;
        }
        let mut list = rdkafka::TopicPartitionList::new();
        for (topic, partition, offset) in advanced {
            if let Err(error) = list.add_partition_offset(&topic, partition, rdkafka::Offset::Offset(offset)) {
                tracing::warn!(%error, %topic, partition, "cannot add offset to commit");
            }
        }
        if let Err(error) = consumer.commit(&list, mode) {
            super::events::commit_failed(service, &error);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

//! Which offsets may be committed while some exchanges are still open.
//!
//! An offset is safe to commit once every event at or below it has been written (or
//! deliberately dropped). Per partition that is the lowest offset still held by an open or
//! unwritten exchange, or one past the highest offset seen when nothing is held.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use crate::join::Position;

#[derive(Debug, Default)]
pub(crate) struct OffsetTracker {
    partitions: HashMap<(Arc<str>, i32), Partition>,
}

#[derive(Debug, Default)]
struct Partition {
    held: BTreeSet<i64>,
    next: i64,
    committed: i64,
}

impl OffsetTracker {
    /// An event was read and is now held until released.
    pub(crate) fn hold(&mut self, (topic, partition, offset): &Position) {
        let p = self.partitions.entry((topic.clone(), *partition)).or_default();
        p.held.insert(*offset);
        p.next = p.next.max(offset + 1);
    }

    /// The event at `position` is written or deliberately dropped.
    pub(crate) fn release(&mut self, (topic, partition, offset): &Position) {
        if let Some(p) = self.partitions.get_mut(&(topic.clone(), *partition)) {
            p.held.remove(offset);
        }
    }

    /// Offsets (next to read) that advanced since the last call, per topic and partition.
    pub(crate) fn advance(&mut self) -> Vec<(Arc<str>, i32, i64)> {
        let mut out = Vec::new();
        for ((topic, partition), p) in &mut self.partitions {
            let safe = p.held.first().copied().unwrap_or(p.next);
            if safe > p.committed {
                p.committed = safe;
                out.push((topic.clone(), *partition, safe));
            }
        }
        out
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
}

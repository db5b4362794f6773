//! Reading one topic's partitions once: where each partition's read starts (the offset for
//! a time), and the blocking poll loop over the assigned partitions until each is at its
//! end or past the window.
//!
//! The end is the end of the partition as the read reaches it (librdkafka's end-of-partition
//! event), not the high watermark asked for before the read: tansu 0.6 answers that with
//! the last batch's first offset plus one (13 records in two batches of 10 and 3 gave 11;
//! checked), which would cut the read short. A partition that keeps growing is still read
//! no further than its first record stamped past the window's end (plus grace and skew).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rdkafka::Message as _;
use rdkafka::consumer::Consumer as _;
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;
use rdkafka::{Offset, TopicPartitionList};
use shadowdiff_runtime::kafka::Reader;

use super::{ReadError, ReadOptions};

/// Where the read of one partition starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Start {
    pub(super) partition: i32,
    pub(super) offset: i64,
}

/// What the visitor wants after one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Flow {
    Continue,
    /// This partition holds nothing more of interest.
    StopPartition,
    /// Nothing more of interest anywhere.
    StopAll,
}

/// Each partition of `topic`, from the first offset whose broker timestamp is at or after
/// `since_ms`. Brokers that cannot answer by time (or answer offset 0 for any time, as tansu
/// 0.6 does) only make the read longer: the reader filters on each event's own timestamp.
pub(super) fn starts(
    reader: &Reader,
    topic: &str,
    since_ms: i64,
    options: &ReadOptions,
) -> Result<Vec<Start>, ReadError> {
    let timeout = options.request_timeout;
    let metadata = reader
        .fetch_metadata(Some(topic), timeout)
        .map_err(|source| ReadError::Metadata { topic: topic.to_owned(), source })?;
    let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Err(ReadError::UnknownTopic { topic: topic.to_owned() });
    };
    if found.error().is_some() || found.partitions().is_empty() {
        return Err(ReadError::UnknownTopic { topic: topic.to_owned() });
    }
    let mut watermarks = BTreeMap::new();
    let mut by_time = TopicPartitionList::new();
    for partition in found.partitions() {
        let id = partition.id();
        let (low, high) = reader.fetch_watermarks(topic, id, timeout).map_err(|source| ReadError::Watermarks {
            topic: topic.to_owned(),
            partition: id,
            source,
        })?;
        watermarks.insert(id, (low, high));
        by_time
            .add_partition_offset(topic, id, Offset::Offset(since_ms))
            .map_err(|source| ReadError::Offsets { topic: topic.to_owned(), source })?;
    }
    let found_offsets = reader
        .offsets_for_times(by_time, timeout)
        .map_err(|source| ReadError::Offsets { topic: topic.to_owned(), source })?;
    let mut starts = Vec::new();
    for element in found_offsets.elements_for_topic(topic) {
        let Some(&(low, high)) = watermarks.get(&element.partition()) else { continue };
        let offset = match (element.error(), element.offset()) {
            // No record that late yet: only what arrives from now on.
            (Ok(()), Offset::End) => high,
            (Ok(()), Offset::Offset(at)) => at.max(low),
            // No answer by time for this partition: read all of it.
            _ => low,
        };
        starts.push(Start { partition: element.partition(), offset });
    }
    Ok(starts)
}

/// Reads each partition of `topic` from its start to its end (or until `visit` says stop),
/// handing each message to `visit`. Fails when nothing arrives for `options.stall` while
/// partitions are left unread.
pub(super) fn scan(
    reader: &Reader,
    topic: &str,
    starts: &[Start],
    options: &ReadOptions,
    mut visit: impl FnMut(&BorrowedMessage<'_>) -> Flow,
) -> Result<u64, ReadError> {
    let mut open: BTreeSet<i32> = BTreeSet::new();
    let mut assignment = TopicPartitionList::new();
    for start in starts {
        open.insert(start.partition);
        assignment
            .add_partition_offset(topic, start.partition, Offset::Offset(start.offset))
            .map_err(|source| ReadError::Assign { topic: topic.to_owned(), source })?;
    }
    if open.is_empty() {
        return Ok(0);
    }
    reader.assign(&assignment).map_err(|source| ReadError::Assign { topic: topic.to_owned(), source })?;
    let close = |open: &mut BTreeSet<i32>, partition: i32| {
        open.remove(&partition);
        let mut done = TopicPartitionList::new();
        done.add_partition(topic, partition);
        // Only saves fetching what would be ignored: messages of closed partitions are.
        let _ = reader.pause(&done);
    };
    let mut read = 0;
    let mut progress = Instant::now();
    let mut last_error = None;
    while !open.is_empty() {
        match reader.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                progress = Instant::now();
                let partition = message.partition();
                // Fetched before its partition was closed and paused.
                if !open.contains(&partition) {
                    continue;
                }
                read += 1;
                match visit(&message) {
                    Flow::Continue => {}
                    Flow::StopPartition => close(&mut open, partition),
                    Flow::StopAll => break,
                }
            }
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                progress = Instant::now();
                close(&mut open, partition);
            }
            // Transient (a broker restarting, say): librdkafka retries on its own.
            Some(Err(error)) => last_error = Some(Box::new(error)),
            None => {}
        }
        if progress.elapsed() > options.stall {
            return Err(ReadError::Stalled {
                topic: topic.to_owned(),
                waited: options.stall,
                partitions: open.iter().copied().collect(),
                last_error,
            });
        }
    }
    let _ = reader.unassign();
    Ok(read)
}

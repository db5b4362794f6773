//! What reading a window found besides the exchanges: how many records were read, left out
//! and why, and every record skipped as unreadable, by reason.

use std::collections::BTreeMap;

/// Which of the two topics a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Topic {
    Requests,
    Responses,
}

impl Topic {
    /// The `[topics]` key naming it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Requests => "requests",
            Self::Responses => "responses",
        }
    }
}

/// Why a record was skipped rather than read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SkipReason {
    /// The record has no value (a tombstone).
    NoPayload,
    /// The value is not an event of the topic's type; the codec's reason
    /// ([`DecodeError::reason`](shadowdiff_core::DecodeError::reason)), such as `bad_marker`.
    Undecodable(&'static str),
    /// The event's request id is not a valid request id.
    InvalidRequestId,
}

impl SkipReason {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::NoPayload => "no_payload",
            Self::Undecodable(reason) => reason,
            Self::InvalidRequestId => "invalid_request_id",
        }
    }
}

/// Records skipped for one reason on one topic, and where the first of them was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub topic: Topic,
    pub reason: SkipReason,
    pub count: u64,
    pub first_partition: i32,
    pub first_offset: i64,
    /// The first one's error, in full.
    pub first_error: String,
}

/// The counts of one read, beside the exchanges it returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadReport {
    /// Records read from the requests topic, in the offset ranges the window maps to.
    pub requests_read: u64,
    /// Records read from the responses topic.
    pub responses_read: u64,
    /// Request events whose timestamp lies in the window.
    pub in_window: u64,
    /// Of those, left out by the route and method filters.
    pub filtered: u64,
    /// Of the rest, not in the sample.
    pub sampled_out: u64,
    /// Of the rest, a second event with a request id already kept.
    pub duplicates: u64,
    /// Of the rest, the latest ones beyond the window's limit.
    pub over_limit: u64,
    /// Records that could not be read, by topic and reason. Requests are counted from the
    /// broker timestamps the window maps to; responses only when their key names a kept
    /// request (or they have no key), since the others are never decoded.
    pub skipped: Vec<Skipped>,
}

impl ReadReport {
    /// Every skipped record, whatever the reason.
    pub fn skipped_total(&self) -> u64 {
        self.skipped.iter().map(|s| s.count).sum()
    }
}

/// Collects [`Skipped`] entries while reading.
#[derive(Debug, Default)]
pub(crate) struct Skips(BTreeMap<(Topic, SkipReason), Skipped>);

impl Skips {
    pub(crate) fn add(
        &mut self,
        topic: Topic,
        reason: SkipReason,
        partition: i32,
        offset: i64,
        error: &dyn std::fmt::Display,
    ) {
        self.0
            .entry((topic, reason))
            .or_insert_with(|| Skipped {
                topic,
                reason,
                count: 0,
                first_partition: partition,
                first_offset: offset,
                first_error: error.to_string(),
            })
            .count += 1;
    }

    pub(crate) fn into_vec(self) -> Vec<Skipped> {
        self.0.into_values().collect()
    }
}

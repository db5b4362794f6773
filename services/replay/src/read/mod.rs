//! Reading a window of recorded exchanges from the brokers: the request events of the
//! window from the requests topic, then the primary's response to each from the responses
//! topic.
//!
//! Each topic is read once per partition, with a consumer that joins no group and commits
//! nothing ([`KafkaConfig::reader`]), from the offset the broker gives for the window's
//! start (less [`ReadOptions::clock_skew`]) to the partition's end as the read reaches it,
//! or to the first record the broker stamped past the window's end plus
//! [`ReadOptions::grace`] and the skew (see `scan.rs` for why not the high watermark).
//! Brokers' offsets for a time only ever shorten the read: what decides is each request
//! event's own `timestamp_ms`, so the window is exact even on a broker that answers offset 0
//! for every time (tansu 0.6 does).
//!
//! A record that cannot be read is skipped and counted by reason ([`ReadReport::skipped`]);
//! a kept request whose primary response is not found is returned in
//! [`Readout::unanswered`], never dropped silently.

use std::time::Duration;

use rdkafka::Message;
use rdkafka::error::KafkaError;
use shadowdiff_core::{EventCodec, RequestEvent, RequestId, ResponseEvent};
use shadowdiff_runtime::kafka::{KafkaConfig, Reader, TopicsConfig};

use crate::recorded::Recorded;
use crate::report::{ReadReport, SkipReason, Skips, Topic};
use crate::window::Window;

mod scan;
mod select;

use scan::Flow;
use select::Selected;

/// How the brokers' clocks and delays are allowed for. The defaults suit a tap that
/// publishes within its upstream timeout (30 s by default) of receiving a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadOptions {
    /// How far the broker's record timestamps may run behind the tap's clock (brokers that
    /// stamp records on arrival).
    pub clock_skew: Duration,
    /// How long after a request the tap may publish it and its primary's response: past
    /// the window's end by this much (and the skew), a partition is read no further.
    pub grace: Duration,
    /// The longest wait for one metadata, watermark or offsets answer.
    pub request_timeout: Duration,
    /// How long the read waits for the next record while partitions are left unread
    /// before it gives up.
    pub stall: Duration,
}

impl Default for ReadOptions {
    fn default() -> Self {
        Self {
            clock_skew: Duration::from_secs(60),
            grace: Duration::from_secs(60),
            request_timeout: Duration::from_secs(10),
            stall: Duration::from_secs(30),
        }
    }
}

/// What a window holds on the brokers.
#[derive(Debug, Clone, PartialEq)]
pub struct Readout {
    /// The exchanges, in (request timestamp, request id) order.
    pub exchanges: Vec<Recorded>,
    /// Kept requests whose primary response was not found, in the same order: the tap
    /// dropped it, or it was published after the read began.
    pub unanswered: Vec<RequestEvent>,
    pub report: ReadReport,
}

/// Why a window could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("kafka client: {0}")]
    Client(#[source] KafkaError),
    #[error("topic {topic}: metadata: {source}")]
    Metadata {
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error("topic {topic} does not exist on the brokers")]
    UnknownTopic { topic: String },
    #[error("topic {topic}: watermarks of partition {partition}: {source}")]
    Watermarks {
        topic: String,
        partition: i32,
        #[source]
        source: KafkaError,
    },
    #[error("topic {topic}: offsets for the window's start: {source}")]
    Offsets {
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error("topic {topic}: assign partitions: {source}")]
    Assign {
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error(
        "topic {topic}: no record for {} with partitions {partitions:?} unread{}",
        humantime::format_duration(*.waited),
        .last_error.as_ref().map(|e| format!(" (last error: {e})")).unwrap_or_default()
    )]
    Stalled { topic: String, waited: Duration, partitions: Vec<i32>, last_error: Option<Box<KafkaError>> },
    #[error("the event codec: {0}")]
    Codec(String),
    #[error("the reading thread failed: {0}")]
    Thread(String),
}

/// Reads `window` from the requests and responses topics named in `topics`, on a blocking
/// thread (librdkafka's calls block).
pub async fn read_window(
    kafka: &KafkaConfig,
    topics: &TopicsConfig,
    window: &Window,
    options: &ReadOptions,
) -> Result<Readout, ReadError> {
    let (kafka, window, options) = (kafka.clone(), window.clone(), options.clone());
    let (requests, responses) = (topics.requests.clone(), topics.responses.clone());
    tokio::task::spawn_blocking(move || {
        let reader = kafka.reader().map_err(ReadError::Client)?;
        read(&reader, &requests, &responses, &window, &options)
    })
    .await
    .map_err(|e| ReadError::Thread(e.to_string()))?
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

fn read(
    reader: &Reader,
    requests: &str,
    responses: &str,
    window: &Window,
    options: &ReadOptions,
) -> Result<Readout, ReadError> {
    let codec = EventCodec::new().map_err(|e| ReadError::Codec(e.to_string()))?;
    // Broker timestamps outside these bounds cannot belong to the window's exchanges.
    let since = window.from_ms().saturating_sub(millis(options.clock_skew));
    let until = window.to_ms().saturating_add(millis(options.grace)).saturating_add(millis(options.clock_skew));
    let by_broker_time = |message: &rdkafka::message::BorrowedMessage<'_>| match message.timestamp().to_millis() {
        Some(at) if at < since => Some(Flow::Continue),
        Some(at) if at >= until => Some(Flow::StopPartition),
        _ => None,
    };
    let mut report = ReadReport::default();
    let mut skips = Skips::default();
    let mut selected = Selected::new(window);

    let starts = scan::starts(reader, requests, since, options)?;
    let requests_read = scan::scan(reader, requests, &starts, options, |message| {
        if let Some(flow) = by_broker_time(message) {
            return flow;
        }
        let (partition, offset) = (message.partition(), message.offset());
        let mut skip =
            |reason, error: &dyn std::fmt::Display| skips.add(Topic::Requests, reason, partition, offset, error);
        let Some(payload) = message.payload() else {
            skip(SkipReason::NoPayload, &"the record has no value");
            return Flow::Continue;
        };
        let request = match codec.decode::<RequestEvent>(payload).and_then(|r| r.check().map(|()| r)) {
            Ok(request) => request,
            Err(error) => {
                skip(SkipReason::Undecodable(error.reason()), &error);
                return Flow::Continue;
            }
        };
        match RequestId::parse(&request.request_id) {
            Ok(id) => selected.offer(request, &id, &mut report),
            Err(error) => skip(SkipReason::InvalidRequestId, &error),
        }
        Flow::Continue
    })?;
    report.requests_read = requests_read;

    if !selected.is_empty() {
        let starts = scan::starts(reader, responses, since, options)?;
        let responses_read = scan::scan(reader, responses, &starts, options, |message| {
            if let Some(flow) = by_broker_time(message) {
                return flow;
            }
            // Keyed by request id: only a record that may answer a kept request is decoded.
            if let Some(Ok(key)) = message.key().map(std::str::from_utf8)
                && !selected.waits_for(key)
            {
                return Flow::Continue;
            }
            let (partition, offset) = (message.partition(), message.offset());
            let Some(payload) = message.payload() else {
                skips.add(Topic::Responses, SkipReason::NoPayload, partition, offset, &"the record has no value");
                return Flow::Continue;
            };
            match codec.decode::<ResponseEvent>(payload) {
                Ok(response) => selected.answer(response),
                Err(error) => {
                    skips.add(Topic::Responses, SkipReason::Undecodable(error.reason()), partition, offset, &error)
                }
            }
            if selected.complete() { Flow::StopAll } else { Flow::Continue }
        })?;
        report.responses_read = responses_read;
    }

    let (exchanges, unanswered) = selected.finish();
    report.skipped = skips.into_vec();
    Ok(Readout { exchanges, unanswered, report })
}

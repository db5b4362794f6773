//! Dead letters: what a service can never process goes to the dead-letter topic with the
//! reason, bounded so that none can stall it.
//!
//! Input that does not decode or breaks the contract ([`DeadLetter::divert`]), and rows
//! ClickHouse rejects (the correlator's sink), go there. Either may be larger than the
//! producer or the broker accepts, and a size error never goes away by retrying. So a
//! letter is sent whole, cut to its maximum payload (flagged with
//! [`dead_letter_headers::TRUNCATED`]), and if the broker still refuses its size, sent
//! without its payload (flagged too); only a letter whose headers alone are too large is
//! skipped, and counted. Every other error is retried, so a broker outage holds the
//! offsets until it is over.

use std::future::Future;
use std::time::Duration;

use rdkafka::Message;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use tokio_util::sync::CancellationToken;

use super::Producer;
use crate::retry::{Interrupted, until_shutdown};
use dead_letter_headers as h;

/// Header names on dead-lettered messages.
pub mod dead_letter_headers {
    pub const REASON: &str = "shadowdiff-reason";
    pub const ERROR: &str = "shadowdiff-error";
    pub const SERVICE: &str = "shadowdiff-service";
    pub const SOURCE_TOPIC: &str = "shadowdiff-source-topic";
    pub const SOURCE_PARTITION: &str = "shadowdiff-source-partition";
    pub const SOURCE_OFFSET: &str = "shadowdiff-source-offset";
    /// Set when the payload was cut or dropped to fit: the original payload's length in bytes.
    pub const TRUNCATED: &str = "shadowdiff-truncated";
    /// On a rejected row: the table it was for.
    pub const TABLE: &str = "shadowdiff-table";
    /// On a rejected row: ClickHouse's exception code, when it gave one.
    pub const CLICKHOUSE_CODE: &str = "shadowdiff-clickhouse-code";
}

/// The largest payload a dead letter carries unless a service says otherwise.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 512 * 1024;

/// Longest error text carried in a header: ClickHouse quotes rows in its messages.
const MAX_ERROR_BYTES: usize = 1024;

/// How long the producer may take to acknowledge one letter before it is tried again.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// One message for the dead-letter topic.
#[derive(Debug)]
pub struct Letter<'a> {
    pub key: Option<&'a [u8]>,
    pub payload: &'a [u8],
    /// A bounded word for why (`DecodeError::reason`, `clickhouse_rejected`).
    pub reason: &'static str,
    pub error: String,
    /// Where it was read (topic, partition, offset), for input that did not decode.
    pub source: Option<(&'a str, i32, i64)>,
    /// Headers particular to the kind of letter (`TABLE`, `CLICKHOUSE_CODE`).
    pub extra: Vec<(&'static str, String)>,
}

/// How a letter went out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Whole,
    /// Cut or without its payload, flagged with `TRUNCATED`.
    Truncated,
    /// Not sent at all: too large even without its payload.
    Skipped,
}

impl Delivery {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Whole => "whole",
            Self::Truncated => "truncated",
            Self::Skipped => "skipped",
        }
    }
}

/// Sends [`Letter`]s to the dead-letter topic.
#[derive(Clone)]
pub struct DeadLetter {
    producer: Producer,
    topic: String,
    service: &'static str,
    max_payload_bytes: usize,
}

impl std::fmt::Debug for DeadLetter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetter").field("topic", &self.topic).finish_non_exhaustive()
    }
}

impl DeadLetter {
    pub fn new(producer: Producer, topic: &str, service: &'static str, max_payload_bytes: usize) -> Self {
        Self { producer, topic: topic.to_owned(), service, max_payload_bytes }
    }

    /// Counts a consumed message that does not decode or breaks the contract, and sends it
    /// to the dead-letter topic with where it was read: only then may the caller move past
    /// its offset.
    pub async fn divert<M: Message>(
        &self,
        message: &M,
        error: &shadowdiff_core::DecodeError,
        shutdown: &CancellationToken,
    ) -> Result<Delivery, Interrupted> {
        super::events::dead_lettered(self.service, error.reason(), error);
        let letter = Letter {
            key: message.key(),
            payload: message.payload().unwrap_or_default(),
            reason: error.reason(),
            error: error.to_string(),
            source: Some((message.topic(), message.partition(), message.offset())),
            extra: Vec::new(),
        };
        self.send(&letter, shutdown).await
    }

    /// Sends `letter` until the broker has it in some form, or it is skipped, or shutdown.
    /// Only then may the caller move past what it stands for.
    pub async fn send(&self, letter: &Letter<'_>, shutdown: &CancellationToken) -> Result<Delivery, Interrupted> {
        deliver(letter, self.max_payload_bytes, shutdown, |payload, truncated_from| {
            self.publish(letter, payload, truncated_from)
        })
        .await
    }

    async fn publish(
        &self,
        letter: &Letter<'_>,
        payload: &[u8],
        truncated_from: Option<usize>,
    ) -> Result<(), KafkaError> {
        let error = cut(&letter.error, MAX_ERROR_BYTES);
        let mut headers = OwnedHeaders::new()
            .insert(Header { key: h::REASON, value: Some(letter.reason) })
            .insert(Header { key: h::ERROR, value: Some(error) })
            .insert(Header { key: h::SERVICE, value: Some(self.service) });
        if let Some((topic, partition, offset)) = letter.source {
            headers = headers
                .insert(Header { key: h::SOURCE_TOPIC, value: Some(topic) })
                .insert(Header { key: h::SOURCE_PARTITION, value: Some(&partition.to_string()) })
                .insert(Header { key: h::SOURCE_OFFSET, value: Some(&offset.to_string()) });
        }
        for (key, value) in &letter.extra {
            headers = headers.insert(Header { key, value: Some(value.as_str()) });
        }
        if let Some(length) = truncated_from {
            headers = headers.insert(Header { key: h::TRUNCATED, value: Some(&length.to_string()) });
        }
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&self.topic).headers(headers).payload(payload);
        if let Some(key) = letter.key {
            record = record.key(key);
        }
        self.producer.send(record, SEND_TIMEOUT).await.map(|_| ()).map_err(|(error, _)| error)
    }
}

/// Whether the broker or the producer refuses a message for its size: permanent for that
/// message, whatever the number of retries.
fn too_large(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::MessageBatchTooLarge
        )
    )
}

/// Tries `letter`'s payload cut to `max_payload_bytes`, then no payload; each attempt is
/// retried while its errors are transient. `publish` gets the payload and, when it is not
/// the whole one, the original length.
async fn deliver<'a, F, Fut>(
    letter: &Letter<'a>,
    max_payload_bytes: usize,
    shutdown: &CancellationToken,
    mut publish: F,
) -> Result<Delivery, Interrupted>
where
    F: FnMut(&'a [u8], Option<usize>) -> Fut,
    Fut: Future<Output = Result<(), KafkaError>>,
{
    let whole = letter.payload;
    let cut_payload = &whole[..whole.len().min(max_payload_bytes)];
    let mut attempts = vec![(cut_payload, (cut_payload.len() < whole.len()).then_some(whole.len()))];
    if !whole.is_empty() {
        attempts.push((&whole[..0], Some(whole.len())));
    }
    for (payload, truncated_from) in attempts {
        let sent = until_shutdown(shutdown, "dead-letter", || {
            let sending = publish(payload, truncated_from);
            async move {
                match sending.await {
                    Ok(()) => Ok(true),
                    Err(error) if too_large(&error) => Ok(false),
                    Err(error) => Err(error),
                }
            }
        })
        .await?;
        if sent {
            return Ok(if truncated_from.is_some() { Delivery::Truncated } else { Delivery::Whole });
        }
    }
    Ok(Delivery::Skipped)
}

/// `text` cut to at most `max` bytes on a character boundary.
fn cut(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::cell::RefCell;

    fn letter(payload: &[u8]) -> Letter<'_> {
        Letter { key: None, payload, reason: "r", error: "e".into(), source: None, extra: Vec::new() }
    }

    /// Sends through a fake broker that refuses messages over `limit` bytes, and fails the
    /// first `outages` attempts as unavailable; returns the delivery and what it was sent.
    async fn through(
        payload: &[u8],
        max: usize,
        limit: usize,
        outages: usize,
    ) -> (Delivery, Vec<(usize, Option<usize>)>) {
        let tried = RefCell::new(Vec::new());
        let outages = RefCell::new(outages);
        let shutdown = CancellationToken::new();
        let letter = letter(payload);
        let delivery = deliver(&letter, max, &shutdown, |payload, truncated_from| {
            tried.borrow_mut().push((payload.len(), truncated_from));
            let outage = *outages.borrow() > 0;
            if outage {
                *outages.borrow_mut() -= 1;
            }
            let size = payload.len();
            async move {
                if outage {
                    Err(KafkaError::MessageProduction(RDKafkaErrorCode::BrokerNotAvailable))
                } else if size > limit {
                    Err(KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge))
                } else {
                    Ok(())
                }
            }
        })
        .await;
        (delivery.unwrap(), tried.into_inner())
    }

    #[tokio::test]
    async fn a_letter_that_fits_goes_whole() {
        assert_eq!(through(&[1; 10], 100, 100, 0).await, (Delivery::Whole, vec![(10, None)]));
    }

    #[tokio::test]
    async fn a_payload_over_the_maximum_is_cut_and_flagged() {
        assert_eq!(through(&[1; 500], 100, 1000, 0).await, (Delivery::Truncated, vec![(100, Some(500))]));
    }

    #[tokio::test]
    async fn a_payload_the_broker_refuses_goes_without_it() {
        let sent = through(&[1; 500], 100, 50, 0).await;
        assert_eq!(sent, (Delivery::Truncated, vec![(100, Some(500)), (0, Some(500))]));
    }

    #[tokio::test]
    async fn transient_errors_are_retried() {
        let sent = through(&[1; 10], 100, 100, 2).await;
        assert_eq!(sent, (Delivery::Whole, vec![(10, None); 3]), "two outages, then through");
    }

    #[tokio::test]
    async fn a_letter_too_large_without_payload_is_skipped() {
        // Headers over the limit: every attempt is refused, and the payload-less one is the last.
        let tried = RefCell::new(0);
        let shutdown = CancellationToken::new();
        let letter = letter(&[1; 10]);
        let delivery = deliver(&letter, 100, &shutdown, |_, _| {
            *tried.borrow_mut() += 1;
            async { Err(KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge)) }
        })
        .await;
        assert_eq!((delivery, tried.into_inner()), (Ok(Delivery::Skipped), 2));
    }

    #[test]
    fn only_size_errors_are_too_large() {
        assert!(too_large(&KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge)));
        assert!(!too_large(&KafkaError::MessageProduction(RDKafkaErrorCode::BrokerNotAvailable)));
        assert!(!too_large(&KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut)));
    }

    #[test]
    fn errors_are_cut_on_char_boundaries() {
        assert_eq!(cut("ééé", 3), "é");
        assert_eq!(cut("abc", 10), "abc");
    }
}

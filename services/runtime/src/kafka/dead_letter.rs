//! The dead-letter topic: where messages that cannot be processed go, unchanged, with why.

use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::FutureRecord;

use super::Producer;

/// Publishes messages that could not be processed to the dead-letter topic, unchanged, with
/// the reason and their origin in headers, so nothing bad input carries is lost.
#[derive(Clone)]
pub struct DeadLetter {
    producer: Producer,
    topic: String,
    service: &'static str,
}

impl std::fmt::Debug for DeadLetter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetter").field("topic", &self.topic).field("service", &self.service).finish()
    }
}

/// Header names on dead-lettered messages.
pub mod dead_letter_headers {
    pub const REASON: &str = "shadowdiff-reason";
    pub const ERROR: &str = "shadowdiff-error";
    pub const SERVICE: &str = "shadowdiff-service";
    pub const SOURCE_TOPIC: &str = "shadowdiff-source-topic";
    pub const SOURCE_PARTITION: &str = "shadowdiff-source-partition";
    pub const SOURCE_OFFSET: &str = "shadowdiff-source-offset";
}

impl DeadLetter {
    /// Counts an undecodable message and sends it to the dead-letter topic, retrying until
    /// the broker has it (or shutdown): only then may the caller move past its offset.
    pub async fn divert<M: Message>(
        &self,
        message: &M,
        error: &shadowdiff_core::DecodeError,
        shutdown: &tokio_util::sync::CancellationToken,
    ) -> Result<(), crate::retry::Interrupted> {
        super::events::dead_lettered(self.service, error.reason(), error);
        let detail = error.to_string();
        crate::retry::until_shutdown(shutdown, "dead-letter", || self.send(message, error.reason(), &detail)).await
    }

    pub fn new(producer: Producer, topic: impl Into<String>, service: &'static str) -> Self {
        Self { producer, topic: topic.into(), service }
    }

    /// Sends `message` to the dead-letter topic and waits for the broker's acknowledgement,
    /// so the caller may then move its offset past it.
    pub async fn send<M: Message>(&self, message: &M, reason: &str, error: &str) -> Result<(), KafkaError> {
        use dead_letter_headers as h;
        let partition = message.partition().to_string();
        let offset = message.offset().to_string();
        let headers = OwnedHeaders::new()
            .insert(Header { key: h::REASON, value: Some(reason) })
            .insert(Header { key: h::ERROR, value: Some(error) })
            .insert(Header { key: h::SERVICE, value: Some(self.service) })
            .insert(Header { key: h::SOURCE_TOPIC, value: Some(message.topic()) })
            .insert(Header { key: h::SOURCE_PARTITION, value: Some(&partition) })
            .insert(Header { key: h::SOURCE_OFFSET, value: Some(&offset) });
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&self.topic).headers(headers);
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        if let Some(payload) = message.payload() {
            record = record.payload(payload);
        }
        self.producer.send(record, Duration::from_secs(5)).await.map(|_| ()).map_err(|(error, _)| error)
    }
}

//! Reading what the services published, straight from the broker.

use std::time::Duration;

use rdkafka::consumer::Consumer as _;
use rdkafka::message::OwnedMessage;
use shadowdiff_core::{EventCodec, ResponseEvent};
use shadowdiff_runtime::kafka::Consumer;
use shadowdiff_runtime::kafka::KafkaConfig;

use crate::unique;

/// Reads `topic` from the beginning until `done(messages)` holds, or panics after
/// `timeout` saying how many messages arrived.
pub async fn read_until(
    brokers: &str,
    topic: &str,
    timeout: Duration,
    done: impl Fn(&[OwnedMessage]) -> bool,
) -> Vec<OwnedMessage> {
    let consumer: Consumer = KafkaConfig { brokers: brokers.to_owned(), ..KafkaConfig::default() }
        .consumer(&unique("reader"))
        .unwrap_or_else(|e| panic!("consumer: {e}"));
    consumer.subscribe(&[topic]).unwrap_or_else(|e| panic!("subscribe {topic}: {e}"));
    let mut messages = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    while !done(&messages) {
        match tokio::time::timeout_at(deadline, consumer.recv()).await {
            Ok(Ok(message)) => messages.push(message.detach()),
            Ok(Err(error)) => panic!("reading {topic}: {error}"),
            Err(_) => panic!("timed out after {timeout:?} reading {topic}: {} messages arrived", messages.len()),
        }
    }
    messages
}

/// The response events on `topic`, decoded, once `done` holds for them.
pub async fn responses_until(
    brokers: &str,
    topic: &str,
    timeout: Duration,
    done: impl Fn(&[ResponseEvent]) -> bool,
) -> Vec<ResponseEvent> {
    use rdkafka::Message;
    let codec = EventCodec::new().unwrap_or_else(|e| panic!("{e}"));
    let decode = |messages: &[OwnedMessage]| -> Vec<ResponseEvent> {
        messages.iter().filter_map(|m| codec.decode(m.payload()?).ok()).collect()
    };
    let messages = read_until(brokers, topic, timeout, |messages| done(&decode(messages))).await;
    decode(&messages)
}

//! The consume loop of every service that reads Kafka: one `select!` over shutdown, a tick
//! and the next message. Each message comes with a [`Hold`] on its offset, which the
//! [`Handler`] drops once the message is done with (written, published, or deliberately
//! skipped); after every tick, and once more on the way out, the loop commits each
//! partition up to its lowest offset still held. Offsets are thus committed only after the
//! downstream write is acknowledged, and no early return in a handler can stall commits.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::CommitMode;
use rdkafka::message::{BorrowedMessage, Message};

use super::{Consumer, Hold, Position, events};
use crate::CancellationToken;
use crate::admin::Health;
use crate::retry::Interrupted;

/// What a service does with the messages and ticks of its consume loop.
pub trait Handler {
    /// One message, with the hold on its offset. `Ok(true)` asks for a tick at once (a full
    /// batch) instead of at the next interval.
    fn message(
        &mut self,
        message: &BorrowedMessage<'_>,
        hold: Hold,
        shutdown: &CancellationToken,
    ) -> impl Future<Output = Result<bool, Interrupted>> + Send;

    /// The periodic work, such as writing a batch; offsets are committed after it.
    fn tick(&mut self, shutdown: &CancellationToken) -> impl Future<Output = Result<(), Interrupted>> + Send;

    /// On the way out, before the last commit: finish the work in flight, within the
    /// handler's own deadline.
    fn drain(&mut self) -> impl Future<Output = ()> + Send;
}

/// How one service runs its loop.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Labels its telemetry.
    pub service: &'static str,
    /// Time between ticks.
    pub tick: Duration,
}

/// Runs `handler` on `consumer`'s messages until `shutdown`, or until the handler is
/// interrupted. Receive errors are counted and mark the `kafka` health check down until the
/// next message arrives.
pub async fn run<H: Handler + Send>(
    consumer: &Consumer,
    handler: &mut H,
    settings: Settings,
    health: &Health,
    shutdown: &CancellationToken,
) {
    // The consumer's own offsets: its context commits them as a rebalance revokes their
    // partitions, too.
    let consuming = rdkafka::consumer::Consumer::context(consumer).consuming(settings.service);
    let offsets = consuming.offsets();
    let mut topics: Vec<Arc<str>> = Vec::new();
    let mut tick = tokio::time::interval(settings.tick);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let ticked = tokio::select! {
            () = shutdown.cancelled() => break,
            _ = tick.tick() => handler.tick(shutdown).await.map(|()| true),
            received = consumer.recv() => match received {
                Ok(message) => {
                    health.set("kafka", true);
                    let hold = offsets.hold(position(&mut topics, &message));
                    match handler.message(&message, hold, shutdown).await {
                        Ok(true) => handler.tick(shutdown).await.map(|()| true),
                        other => other,
                    }
                }
                Err(error) => {
                    events::consume_failed(settings.service, &error);
                    health.set("kafka", false);
                    Ok(false)
                }
            },
        };
        match ticked {
            Ok(true) => offsets.commit(consumer, CommitMode::Async, settings.service),
            Ok(false) => {}
            Err(Interrupted) => break,
        }
    }
    handler.drain().await;
    offsets.commit(consumer, CommitMode::Sync, settings.service);
}

/// Where `message` was read from, its topic name shared with every other message of it.
fn position(topics: &mut Vec<Arc<str>>, message: &BorrowedMessage<'_>) -> Position {
    let topic = match topics.iter().find(|t| ***t == *message.topic()) {
        Some(topic) => topic.clone(),
        None => {
            let topic: Arc<str> = message.topic().into();
            topics.push(topic.clone());
            topic
        }
    };
    (topic, message.partition(), message.offset())
}

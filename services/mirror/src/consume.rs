//! The mirror's Kafka loop: one message at a time per worker, in partition order. A
//! message's offset is stored only after every target's response has been acknowledged by
//! the broker (or the message went to the dead-letter topic), so a crash replays rather
//! than loses.

use std::collections::BTreeSet;
use std::time::Duration;

use futures_util::future::join_all;
use http::HeaderName;
use rdkafka::consumer::{CommitMode, Consumer as _};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::FutureRecord;
use shadowdiff_core::{EventCodec, RequestEvent, ResponseEvent};
use shadowdiff_runtime::CancellationToken;
use shadowdiff_runtime::admin::{self, Health};
use shadowdiff_runtime::kafka::{Consumer, DeadLetter, Producer, events as kafka_events};
use shadowdiff_runtime::retry::{Interrupted, until_shutdown};

use crate::config::MirrorConfig;
use crate::replay::Replayer;
use crate::{MirrorError, events};

const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) struct Mirror {
    consumer: Consumer,
    producer: Producer,
    dead_letter: DeadLetter,
    codec: EventCodec,
    replayers: Vec<Replayer>,
    methods: BTreeSet<String>,
    responses: String,
    health: Health,
}

impl Mirror {
    pub(crate) async fn start(config: MirrorConfig, shutdown: CancellationToken) -> Result<Self, MirrorError> {
        if config.topics.create {
            config.kafka.ensure_topics(&config.topics).await?;
        }
        let m = &config.mirror;
        let id_header =
            HeaderName::from_bytes(m.request_id_header.as_bytes()).unwrap_or(HeaderName::from_static("x-request-id")); // validated at start-up
        let replayers = m
            .targets
            .iter()
            .map(|t| Replayer::new(t.clone(), m.sealer(), id_header.clone(), m.capture_max_body_bytes))
            .collect::<Result<_, _>>()?;
        let consumer = config.kafka.consumer(&m.group_id)?;
        consumer.subscribe(&[&config.topics.requests])?;
        let producer = config.kafka.producer()?;
        let health = Health::default();
        health.set("kafka", true);
        admin::spawn(&config.admin, health.clone(), shutdown).await.map_err(MirrorError::Admin)?;
        Ok(Self {
            consumer,
            dead_letter: DeadLetter::new(producer.clone(), &config.topics.dead_letter, "mirror"),
            producer,
            codec: EventCodec::new()?,
            replayers,
            methods: m.methods.iter().map(|m| m.to_ascii_uppercase()).collect(),
            responses: config.topics.responses.clone(),
            health,
        })
    }

    pub(crate) async fn run(self, shutdown: CancellationToken) -> Result<(), MirrorError> {
        let targets: Vec<_> = self.replayers.iter().map(Replayer::name).collect();
        tracing::info!(?targets, "mirror consuming");
        loop {
            let message = tokio::select! {
                () = shutdown.cancelled() => break,
                message = self.consumer.recv() => message,
            };
            let message = match message {
                Ok(message) => message,
                Err(error) => {
                    kafka_events::consume_failed("mirror", &error);
                    self.health.set("kafka", false);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            self.health.set("kafka", true);
            if self.handle(&message, &shutdown).await.is_err() {
                break;
            }
            self.consumer.store_offset_from_message(&message)?;
        }
        // Commit what was fully handled; in-flight work finished inside `handle`.
        match self.consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) => tracing::info!("offsets committed on shutdown"),
            Err(error) => tracing::warn!(%error, "final offset commit failed; some requests will be replayed"),
        }
        Ok(())
    }

    async fn handle(&self, message: &BorrowedMessage<'_>, shutdown: &CancellationToken) -> Result<(), Interrupted> {
        let payload = message.payload().unwrap_or_default();
        let request: RequestEvent = match self.codec.decode(payload) {
            Ok(request) => request,
            Err(error) => {
                kafka_events::dead_lettered("mirror", error.reason(), &error);
                let detail = error.to_string();
                return until_shutdown(shutdown, "dead-letter", || {
                    self.dead_letter.send(message, error.reason(), &detail)
                })
                .await;
            }
        };
        if !self.methods.contains(&request.method) {
            events::skipped("method_not_mirrored");
            return Ok(());
        }
        if request.body.truncated {
            // Replaying a partial body would compare a request the client never sent.
            events::skipped("body_truncated");
            return Ok(());
        }
        let responses = join_all(self.replayers.iter().map(|r| r.replay(&request))).await;
        for response in &responses {
            self.publish(response, shutdown).await?;
            events::replayed(&response.deployment, response.status);
        }
        Ok(())
    }

    async fn publish(&self, response: &ResponseEvent, shutdown: &CancellationToken) -> Result<(), Interrupted> {
        let payload = match self.codec.encode(response) {
            Ok(payload) => payload,
            Err(error) => {
                // Our own event failed our own schema: a bug, not an input problem.
                tracing::error!(%error, "cannot encode response event; skipping it");
                return Ok(());
            }
        };
        until_shutdown(shutdown, "publish response", || async {
            let record = FutureRecord::to(&self.responses).key(&response.request_id).payload(&payload);
            self.producer.send(record, PUBLISH_TIMEOUT).await.map(|_| ()).map_err(|(error, _)| error)
        })
        .await
    }
}

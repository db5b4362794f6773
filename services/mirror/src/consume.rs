//! The mirror's Kafka loop: one `select!` over shutdown, finished replays, the commit tick
//! and the next request. A request is matched against the live profiles and dispatched to
//! each target of the matching profile without waiting: each target admits it (limits,
//! circuit) or sheds it, and every outcome is published as a response event. An offset is
//! committed only once every target's event for it, and for every earlier request, has
//! been acknowledged by the broker.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::HeaderName;
use rdkafka::consumer::{CommitMode, Consumer as _};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::FutureRecord;
use shadowdiff_core::{ErrorKind, EventCodec, RequestEvent, RequestId, ResponseEvent};
use shadowdiff_runtime::CancellationToken;
use shadowdiff_runtime::admin::{self, Health};
use shadowdiff_runtime::kafka::{Consumer, DeadLetter, OffsetTracker, Position, Producer, events as kafka_events};
use shadowdiff_runtime::retry::{Interrupted, until_shutdown};
use tokio::sync::mpsc;

use crate::config::MirrorConfig;
use crate::profile::Profile;
use crate::profile::store::{self, ProfileStore, ProfileWriter};
use crate::replay::{ReplayContext, Replayer};
use crate::target::Target;
use crate::{MirrorError, api, events};

const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);
const COMMIT_INTERVAL: Duration = Duration::from_secs(1);

/// Targets by (profile id, target name), rebuilt when their spec changes.
#[derive(Debug, Default)]
pub(crate) struct Targets {
    built: Mutex<HashMap<(String, String), Arc<Target>>>,
}

impl Targets {
    pub(crate) fn of(&self, profile: &str) -> Vec<Arc<Target>> {
        let built = self.built.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        built.iter().filter(|((p, _), _)| p == profile).map(|(_, t)| t.clone()).collect()
    }
}

/// What every dispatched replay needs, shared with its task.
struct Shared {
    producer: Producer,
    codec: EventCodec,
    responses: String,
    targets: Arc<Targets>,
    context: ReplayContext,
}

pub(crate) struct Mirror {
    consumer: Arc<Consumer>,
    dead_letter: DeadLetter,
    shared: Arc<Shared>,
    store: Arc<ProfileStore>,
    offsets: OffsetTracker,
    /// Targets still to answer, per request position.
    pending: HashMap<Position, usize>,
    requests: Arc<str>,
    drain_timeout: Duration,
    health: Health,
}

enum Step<'a> {
    Stop,
    Commit,
    Done(Position),
    Message(rdkafka::error::KafkaResult<BorrowedMessage<'a>>),
}

impl Mirror {
    pub(crate) async fn start(config: MirrorConfig, shutdown: CancellationToken) -> Result<Self, MirrorError> {
        if config.topics.create {
            config.kafka.ensure_topics(&config.topics).await?;
        }
        let m = &config.mirror;
        let id_header =
            HeaderName::from_bytes(m.request_id_header.as_bytes()).unwrap_or(HeaderName::from_static("x-request-id")); // validated at start-up
        let consumer = Arc::new(config.kafka.consumer(&m.group_id)?);
        consumer.subscribe(&[&config.topics.requests])?;
        let producer = config.kafka.producer()?;
        let policy = Arc::new(m.policy());
        let store = Arc::new(ProfileStore::new(&m.profiles, policy.clone()));
        store::follow(store.clone(), config.kafka.clone(), config.topics.profiles.clone(), shutdown.clone());
        let shared = Arc::new(Shared {
            producer: producer.clone(),
            codec: EventCodec::new()?,
            responses: config.topics.responses.clone(),
            targets: Arc::new(Targets::default()),
            context: ReplayContext {
                sealer: m.redaction.sealer(),
                redactor: Arc::new(m.redaction.redactor(false)),
                policy,
                id_header,
                capture_max_body_bytes: m.capture_max_body_bytes,
                ca: m.ca_file.clone(),
            },
        });
        let health = Health::default();
        health.set("kafka", true);
        let api = api::router(api::ApiState {
            store: store.clone(),
            writer: ProfileWriter::new(producer.clone(), config.topics.profiles.clone()),
            targets: shared.targets.clone(),
            consumer: consumer.clone(),
            auth: shadowdiff_runtime::auth::Auth::new(&config.auth, "mirror"),
        });
        admin::spawn_with(&config.admin, health.clone(), api, shutdown).await.map_err(MirrorError::Admin)?;
        Ok(Self {
            consumer,
            dead_letter: DeadLetter::new(
                producer,
                &config.topics.dead_letter,
                "mirror",
                shadowdiff_runtime::kafka::DEFAULT_MAX_PAYLOAD_BYTES,
            ),
            shared,
            store,
            offsets: OffsetTracker::default(),
            pending: HashMap::new(),
            requests: config.topics.requests.as_str().into(),
            drain_timeout: m.drain_timeout,
            health,
        })
    }

    pub(crate) async fn run(mut self, shutdown: CancellationToken) -> Result<(), MirrorError> {
        let (done_tx, mut done_rx) = mpsc::unbounded_channel();
        let consumer = self.consumer.clone();
        let mut tick = tokio::time::interval(COMMIT_INTERVAL);
        tracing::info!(profiles = self.store.all().len(), "mirror consuming");
        loop {
            let step = tokio::select! {
                () = shutdown.cancelled() => Step::Stop,
                Some(position) = done_rx.recv() => Step::Done(position),
                _ = tick.tick() => Step::Commit,
                message = consumer.recv() => Step::Message(message),
            };
            match step {
                Step::Stop => break,
                Step::Done(position) => self.done(&position),
                Step::Commit => self.offsets.commit(&consumer, CommitMode::Async, "mirror"),
                Step::Message(Ok(message)) => {
                    self.health.set("kafka", true);
                    if self.ingest(&message, &done_tx, &shutdown).await.is_err() {
                        break;
                    }
                }
                Step::Message(Err(error)) => {
                    kafka_events::consume_failed("mirror", &error);
                    self.health.set("kafka", false);
                }
            }
        }
        // Let replays in flight finish (bounded), then commit what they completed.
        let drained = tokio::time::timeout(self.drain_timeout, async {
            while !self.pending.is_empty() {
                match done_rx.recv().await {
                    Some(position) => self.done(&position),
                    None => break,
                }
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(in_flight = self.pending.len(), "drain deadline passed; those requests will be replayed");
        }
        self.offsets.commit(&consumer, CommitMode::Sync, "mirror");
        Ok(())
    }

    fn done(&mut self, position: &Position) {
        if let Some(left) = self.pending.get_mut(position) {
            *left -= 1;
            if *left == 0 {
                self.pending.remove(position);
                self.offsets.release(position);
            }
        }
    }

    async fn ingest(
        &mut self,
        message: &BorrowedMessage<'_>,
        done: &mpsc::UnboundedSender<Position>,
        shutdown: &CancellationToken,
    ) -> Result<(), Interrupted> {
        let position: Position = (self.requests.clone(), message.partition(), message.offset());
        self.offsets.hold(&position);
        let decoded = self
            .shared
            .codec
            .decode::<RequestEvent>(message.payload().unwrap_or_default())
            .and_then(|request| request.check().map(|()| request));
        let request = match decoded {
            Ok(request) => request,
            Err(error) => {
                events::dead_lettered(self.dead_letter.divert(message, &error, shutdown).await?);
                self.offsets.release(&position);
                return Ok(());
            }
        };
        let Ok(id) = RequestId::parse(&request.request_id) else {
            events::skipped("invalid_request_id");
            self.offsets.release(&position);
            return Ok(());
        };
        let Some(profile) = self.store.matching(&request, &id) else {
            events::skipped("no_profile");
            self.offsets.release(&position);
            return Ok(());
        };
        if request.body.truncated {
            // Replaying a partial body would compare a request the client never sent.
            events::skipped("body_truncated");
            self.offsets.release(&position);
            return Ok(());
        }
        let targets = self.shared.targets_for(&profile);
        if targets.is_empty() {
            self.offsets.release(&position);
            return Ok(());
        }
        self.pending.insert(position.clone(), targets.len());
        let request = Arc::new(request);
        for target in targets {
            let ticket = target.admit();
            let (shared, request, profile, done, position, shutdown) = (
                self.shared.clone(),
                request.clone(),
                profile.clone(),
                done.clone(),
                position.clone(),
                shutdown.clone(),
            );
            tokio::spawn(async move {
                let event = match ticket {
                    Some(ticket) => target.replay(ticket, &request, &profile).await,
                    None => target.replayer.unanswered(&request, &profile, ErrorKind::Shed),
                };
                events::replayed(&profile.id, &event);
                if shared.publish(&event, &shutdown).await.is_ok() {
                    let _ = done.send(position);
                }
            });
        }
        Ok(())
    }
}

impl Shared {
    /// The targets of `profile`, built on first use and rebuilt when their spec changed.
    fn targets_for(&self, profile: &Profile) -> Vec<Arc<Target>> {
        let mut built = self.targets.built.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        built.retain(|(p, name), _| p != &profile.id || profile.targets.iter().any(|t| &t.name == name));
        let mut out = Vec::with_capacity(profile.targets.len());
        for spec in &profile.targets {
            let key = (profile.id.clone(), spec.name.clone());
            let current = built.get(&key).filter(|t| t.spec == *spec).cloned();
            let target = match current {
                Some(target) => target,
                None => match Replayer::new(spec.clone(), &self.context) {
                    Ok(replayer) => {
                        let target = Arc::new(Target::new(spec.clone(), replayer));
                        built.insert(key, target.clone());
                        target
                    }
                    Err(error) => {
                        tracing::error!(%error, target = %spec.name, "cannot build the target's HTTP client");
                        continue;
                    }
                },
            };
            out.push(target);
        }
        out
    }

    async fn publish(&self, event: &ResponseEvent, shutdown: &CancellationToken) -> Result<(), Interrupted> {
        let payload = match self.codec.encode(event) {
            Ok(payload) => payload,
            Err(error) => {
                // Our own event failed our own schema: a bug, not an input problem.
                tracing::error!(%error, "cannot encode response event; skipping it");
                return Ok(());
            }
        };
        until_shutdown(shutdown, "publish response", || async {
            let record = FutureRecord::to(&self.responses).key(&event.request_id).payload(&payload);
            self.producer.send(record, PUBLISH_TIMEOUT).await.map(|_| ()).map_err(|(error, _)| error)
        })
        .await
    }
}

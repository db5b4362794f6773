//! The mirror's side of the consume loop (`runtime::kafka::consume`): a request is matched
//! against the live profiles and dispatched to each target of the matching profile without
//! waiting: each target admits it (limits, circuit) or sheds it, and every outcome is
//! published as a response event. The request's offset is held until every target's event
//! for it has been acknowledged by the broker: the replay tasks share its hold.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::Consumer as _;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::FutureRecord;
use shadowdiff_core::{ErrorKind, EventCodec, RequestEvent, RequestId, ResponseEvent};
use shadowdiff_runtime::CancellationToken;
use shadowdiff_runtime::admin::{self, Health};
use shadowdiff_runtime::kafka::consume::{self, Handler, Settings};
use shadowdiff_runtime::kafka::{Consumer, DeadLetter, Hold, Producer};
use shadowdiff_runtime::retry::{Interrupted, until_shutdown};
use tokio::task::JoinSet;

use crate::config::MirrorConfig;
use crate::profile::store::{self, ProfileStore, ProfileWriter};
use crate::replay::ReplayContext;
use crate::target::Targets;
use crate::{MirrorError, api, events};

const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);

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
    /// Replays in flight, each holding its request's offset until published.
    replays: JoinSet<()>,
    drain_timeout: Duration,
    commit_interval: Duration,
    health: Health,
}

impl Mirror {
    pub(crate) async fn start(config: MirrorConfig, shutdown: CancellationToken) -> Result<Self, MirrorError> {
        if config.topics.create {
            config.kafka.ensure_topics(&config.topics).await?;
        }
        let m = &config.mirror;
        let consumer = Arc::new(config.kafka.prompt_consumer(&m.group_id)?);
        consumer.subscribe(&config.consumed_topics())?;
        let producer = config.kafka.producer()?;
        let context = ReplayContext::of(m);
        let store = Arc::new(ProfileStore::new(&m.profiles, context.policy.clone()));
        store::follow(store.clone(), config.kafka.clone(), config.topics.profiles.clone(), shutdown.clone());
        let shared = Arc::new(Shared {
            producer: producer.clone(),
            codec: EventCodec::new()?,
            responses: config.topics.responses.clone(),
            targets: Arc::new(Targets::default()),
            context,
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
            replays: JoinSet::new(),
            drain_timeout: m.drain_timeout,
            commit_interval: m.commit_interval,
            health,
        })
    }

    pub(crate) async fn run(mut self, shutdown: CancellationToken) -> Result<(), MirrorError> {
        tracing::info!(profiles = self.store.all().len(), "mirror consuming");
        let (consumer, health) = (self.consumer.clone(), self.health.clone());
        let settings = Settings { service: "mirror", tick: self.commit_interval };
        consume::run(&consumer, &mut self, settings, &health, &shutdown).await;
        Ok(())
    }
}

impl Handler for Mirror {
    async fn message(
        &mut self,
        message: &BorrowedMessage<'_>,
        hold: Hold,
        shutdown: &CancellationToken,
    ) -> Result<bool, Interrupted> {
        // Every early return drops `hold`: the request is done with, deliberately skipped.
        let decoded = self
            .shared
            .codec
            .decode::<RequestEvent>(message.payload().unwrap_or_default())
            .and_then(|request| request.check().map(|()| request));
        let request = match decoded {
            Ok(request) => request,
            Err(error) => {
                events::dead_lettered(self.dead_letter.divert(message, &error, shutdown).await?);
                return Ok(false);
            }
        };
        let Ok(id) = RequestId::parse(&request.request_id) else {
            events::skipped("invalid_request_id");
            return Ok(false);
        };
        if !request.run.is_empty() {
            // A replay run sent it again, to the run's own targets: live traffic only here.
            events::skipped("replay_run");
            return Ok(false);
        }
        let Some(profile) = self.store.matching(&request, &id) else {
            events::skipped("no_profile");
            return Ok(false);
        };
        if request.body.truncated {
            // Replaying a partial body would compare a request the client never sent.
            events::skipped("body_truncated");
            return Ok(false);
        }
        let mut targets = self.shared.targets.for_profile(&profile, &self.shared.context);
        // In a fresh order each time: whichever target's replay starts first may be a little
        // faster or slower, and that must be noise, not a bias between secondary and candidate.
        fastrand::shuffle(&mut targets);
        let (request, hold) = (Arc::new(request), Arc::new(hold));
        for target in targets {
            let ticket = target.admit();
            let (shared, request, profile, hold, shutdown) =
                (self.shared.clone(), request.clone(), profile.clone(), hold.clone(), shutdown.clone());
            self.replays.spawn(async move {
                let event = match ticket {
                    Some(ticket) => target.replay(ticket, &request, &profile).await,
                    None => target.replayer.unanswered(&request, &profile, ErrorKind::Shed),
                };
                events::replayed(&profile.id, &event);
                if shared.publish(&event, &shutdown).await.is_err() {
                    // Interrupted before the broker acknowledged it: read it again later.
                    hold.keep();
                }
            });
        }
        Ok(false)
    }

    async fn tick(&mut self, _: &CancellationToken) -> Result<(), Interrupted> {
        while self.replays.try_join_next().is_some() {}
        Ok(())
    }

    /// Lets replays in flight finish, within `drain_timeout`; the loop then commits what they
    /// published. Those still running keep their requests' offsets held: they are replayed
    /// again after a restart.
    async fn drain(&mut self) {
        let replays = &mut self.replays;
        let drained = tokio::time::timeout(self.drain_timeout, async { while replays.join_next().await.is_some() {} });
        if drained.await.is_err() {
            tracing::warn!(in_flight = self.replays.len(), "drain deadline passed; those requests will be replayed");
        }
    }
}

impl Shared {
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

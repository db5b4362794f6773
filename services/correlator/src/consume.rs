//! The correlator's loop: one `select!` over shutdown, the flush tick and the next message.
//! Messages are joined in memory; on each tick, exchanges whose window has passed are
//! diffed into rows, the rows are written, and only then are their offsets committed.

use std::sync::Arc;
use std::time::Instant;

use rdkafka::consumer::{CommitMode, Consumer as _};
use rdkafka::message::{BorrowedMessage, Message};
use shadowdiff_core::EventCodec;
use shadowdiff_runtime::CancellationToken;
use shadowdiff_runtime::admin::{self, Health};
use shadowdiff_runtime::kafka::{Consumer, OffsetTracker, events as kafka_events};
use shadowdiff_runtime::retry::Interrupted;

use crate::config::{CorrelatorConfig, CorrelatorSection};
use crate::join::{Added, Bounds, Joiner, Leg, Position};
use crate::sink::{self, Batch, RejectedRow, Sink, rows};
use crate::{CorrelatorError, events};
use shadowdiff_runtime::kafka::{DeadLetter, Letter, dead_letter_headers};

/// The dead-letter reason of a row ClickHouse rejected.
const REJECTED: &str = "clickhouse_rejected";

pub(crate) struct Correlator {
    consumer: Consumer,
    state: State,
}

/// Everything the loop mutates, apart from the consumer that lends out messages.
struct State {
    config: CorrelatorSection,
    codec: EventCodec,
    dead_letters: DeadLetter,
    requests: Arc<str>,
    responses: Arc<str>,
    joiner: Joiner,
    offsets: OffsetTracker,
    batch: Batch,
    /// Time spent blocked writing, during which nothing was consumed. Windows run on the
    /// consumption clock (`clock`), so an exchange whose legs wait unread in Kafka while a
    /// write retries is not closed before they are read.
    blocked: std::time::Duration,
    rows: rows::RowBuilder,
    sink: Sink,
    health: Health,
}

enum Step<'a> {
    Stop,
    Flush,
    Message(rdkafka::error::KafkaResult<BorrowedMessage<'a>>),
}

impl Correlator {
    pub(crate) async fn start(config: CorrelatorConfig, shutdown: CancellationToken) -> Result<Self, CorrelatorError> {
        if config.topics.create {
            config.kafka.ensure_topics(&config.topics).await?;
        }
        let sink = Sink::connect(&config.clickhouse).await?;
        sink.spawn_retention(
            shadowdiff_store::retention::Retention {
                comparisons_days: config.correlator.retention_days,
                samples_days: config.correlator.samples_retention_days,
            },
            shutdown.clone(),
        );
        let consumer = config.kafka.consumer(&config.correlator.group_id)?;
        consumer.subscribe(&[&config.topics.requests, &config.topics.responses])?;
        let producer = config.kafka.producer()?;
        let dead_letters = DeadLetter::new(
            producer,
            &config.topics.dead_letter,
            "correlator",
            config.correlator.dead_letter_max_bytes,
        );
        let health = Health::default();
        health.set("kafka", true);
        health.set("clickhouse", true);
        admin::spawn(&config.admin, health.clone(), shutdown).await.map_err(CorrelatorError::Admin)?;
        Ok(Self {
            consumer,
            state: State {
                joiner: Joiner::new(
                    config.correlator.window,
                    Bounds { exchanges: config.correlator.max_open_exchanges, bytes: config.correlator.max_open_bytes },
                ),
                rows: rows::RowBuilder::new(route_rules(&config.correlator), &config.correlator),
                config: config.correlator,
                codec: EventCodec::new()?,
                dead_letters,
                requests: config.topics.requests.as_str().into(),
                responses: config.topics.responses.as_str().into(),
                offsets: OffsetTracker::default(),
                batch: Batch::default(),
                blocked: std::time::Duration::ZERO,
                sink,
                health,
            },
        })
    }

    pub(crate) async fn run(self, shutdown: CancellationToken) -> Result<(), CorrelatorError> {
        let Self { consumer, mut state } = self;
        let mut tick = tokio::time::interval(state.config.flush_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tracing::info!(window_ms = state.config.window.as_millis(), "correlator consuming");
        loop {
            let step = tokio::select! {
                () = shutdown.cancelled() => Step::Stop,
                _ = tick.tick() => Step::Flush,
                message = consumer.recv() => Step::Message(message),
            };
            let handled = match step {
                Step::Stop => break,
                Step::Flush => state.flush(&consumer, &shutdown).await,
                Step::Message(Ok(message)) => match state.ingest(&message, &shutdown).await {
                    // A full batch is written now rather than at the next tick.
                    Ok(()) if state.batch.exchanges.len() >= state.config.max_batch_rows => {
                        state.flush(&consumer, &shutdown).await
                    }
                    handled => handled,
                },
                Step::Message(Err(error)) => {
                    kafka_events::consume_failed("correlator", &error);
                    Ok(())
                }
            };
            if handled.is_err() {
                break;
            }
        }
        // Open exchanges are not forced out early: they would be written as incomplete.
        // Their offsets were never committed, so the next owner of the partition re-reads them.
        state.commit(&consumer, CommitMode::Sync);
        tracing::info!(open = state.joiner.open_exchanges(), "correlator stopped; open exchanges will be re-read");
        Ok(())
    }
}

/// Compiles the configured diff rules; they were validated at start-up, so a rule that
/// fails here (never) falls back to the defaults.
fn route_rules(config: &CorrelatorSection) -> rows::RouteRules {
    use shadowdiff_core::diff::DiffOptions;
    let limits = config.diff_limits();
    let default = DiffOptions::new(&config.default_rules).unwrap_or_default().with_limits(limits);
    let routes = config
        .routes
        .iter()
        .filter_map(|r| DiffOptions::new(&r.rules).ok().map(|o| (r.template.clone(), o.with_limits(limits))))
        .collect();
    rows::RouteRules::new(default, routes)
}

impl State {
    /// Wall-clock time, less the time the loop spent blocked on writes.
    fn clock(&self) -> Instant {
        let now = Instant::now();
        now.checked_sub(self.blocked).unwrap_or(now)
    }

    async fn ingest(&mut self, message: &BorrowedMessage<'_>, shutdown: &CancellationToken) -> Result<(), Interrupted> {
        let topic: Arc<str> =
            if message.topic() == &*self.requests { self.requests.clone() } else { self.responses.clone() };
        let position: Position = (topic.clone(), message.partition(), message.offset());
        self.offsets.hold(&position);
        let payload = message.payload().unwrap_or_default();
        let decoded = if topic == self.requests {
            self.codec.decode(payload).map(Leg::Request)
        } else {
            self.codec.decode(payload).map(Leg::Response)
        };
        let leg = match decoded {
            Ok(leg) => leg,
            Err(error) => {
                let delivery = self.dead_letters.divert(message, &error, shutdown).await?;
                events::dead_lettered("event", error.reason(), delivery);
                self.offsets.release(&position);
                return Ok(());
            }
        };
        let now = self.clock();
        let id = leg.request_id().to_owned();
        let (added, released) = self.joiner.add(leg, position, now);
        if let Some(position) = released {
            events::ignored(if added == Added::Late { "late" } else { "duplicate" });
            self.offsets.release(&position);
        }
        let whole = self.joiner.take_complete(&id, now);
        let evicted = self.joiner.evict_over_bounds(now);
        events::evicted(evicted.len());
        for exchange in whole.into_iter().chain(evicted) {
            let outcomes = self.rows.add(&mut self.batch, exchange);
            events::finalized(&outcomes);
        }
        Ok(())
    }

    async fn flush(&mut self, consumer: &Consumer, shutdown: &CancellationToken) -> Result<(), Interrupted> {
        for exchange in self.joiner.expire(self.clock()) {
            let outcomes = self.rows.add(&mut self.batch, exchange);
            events::finalized(&outcomes);
        }
        events::open_exchanges(self.joiner.open_exchanges());
        if self.batch.is_empty() {
            self.commit(consumer, CommitMode::Async);
            return Ok(());
        }
        let started = Instant::now();
        let rejected = self.sink.store(&self.batch, shutdown, &self.health).await?;
        // Rejected rows are dead-lettered (or, too large even for that, skipped and counted)
        // before the batch's offsets are released: every row is then written or accounted for.
        for row in &rejected {
            self.dead_letter_row(row, shutdown).await?;
        }
        let took = started.elapsed();
        self.blocked += took;
        let refused = |table: &str| rejected.iter().filter(|r| r.table == table).count();
        events::written(
            self.batch.exchanges.len().saturating_sub(refused(sink::EXCHANGES)),
            self.batch.differences.len().saturating_sub(refused(sink::DIFFERENCES)),
            took,
        );
        let batch = std::mem::take(&mut self.batch);
        for position in &batch.positions {
            self.offsets.release(position);
        }
        self.commit(consumer, CommitMode::Async);
        Ok(())
    }

    async fn dead_letter_row(&self, row: &RejectedRow, shutdown: &CancellationToken) -> Result<(), Interrupted> {
        let code = row.rejection.code;
        events::row_rejected(row.table, code, &row.rejection.message);
        let mut extra = vec![(dead_letter_headers::TABLE, row.table.to_owned())];
        if let Some(code) = code {
            extra.push((dead_letter_headers::CLICKHOUSE_CODE, code.to_string()));
        }
        let letter = Letter {
            key: Some(row.request_id.as_bytes()),
            payload: &row.row,
            reason: REJECTED,
            error: match code.and_then(sink::code_name) {
                Some(name) => format!("{name}: {}", row.rejection.message),
                None => row.rejection.message.clone(),
            },
            source: None,
            extra,
        };
        let delivery = self.dead_letters.send(&letter, shutdown).await?;
        events::dead_lettered("row", REJECTED, delivery);
        Ok(())
    }

    fn commit(&mut self, consumer: &Consumer, mode: CommitMode) {
        self.offsets.commit(consumer, mode, "correlator");
    }
}

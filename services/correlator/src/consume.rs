//! The correlator's side of the consume loop (`runtime::kafka::consume`): messages are
//! joined in memory; on each tick, exchanges whose window has passed are diffed into rows
//! and the rows are written. Each event's offset is held by its exchange, then by the batch
//! its rows are in, and released when the batch is written, so the loop commits it only then.

use std::sync::Arc;
use std::time::Instant;

use rdkafka::consumer::Consumer as _;
use rdkafka::message::{BorrowedMessage, Message};
use shadowdiff_core::EventCodec;
use shadowdiff_runtime::CancellationToken;
use shadowdiff_runtime::admin::{self, Health};
use shadowdiff_runtime::kafka::consume::{self, Handler, Settings};
use shadowdiff_runtime::kafka::{Consumer, Hold};
use shadowdiff_runtime::retry::Interrupted;

use crate::config::{CorrelatorConfig, CorrelatorSection};
use crate::join::{Added, Bounds, Joiner, Leg};
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
    outbound: Arc<str>,
    joiner: Joiner,
    batch: Batch,
    /// Time spent blocked writing, during which nothing was consumed. Windows run on the
    /// consumption clock (`clock`), so an exchange whose legs wait unread in Kafka while a
    /// write retries is not closed before they are read.
    blocked: std::time::Duration,
    rows: rows::RowBuilder,
    sink: Sink,
    health: Health,
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
        // Fetches held 10 ms at most: an exchange's legs and calls, read from three topics,
        // come in as they are published, not in half-second bursts (the time an exchange
        // waits for calls still on their way, `settle_ms`, need not cover a held fetch).
        let consumer = config.kafka.prompt_consumer(&config.correlator.group_id)?;
        consumer.subscribe(&config.consumed_topics())?;
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
                    config.correlator.outbound.settle,
                    Bounds {
                        exchanges: config.correlator.max_open_exchanges,
                        bytes: config.correlator.max_open_bytes,
                        calls: config.correlator.outbound.max_calls_per_exchange,
                    },
                ),
                rows: rows::RowBuilder::new(route_rules(&config.correlator), &config.correlator),
                config: config.correlator,
                codec: EventCodec::new()?,
                dead_letters,
                requests: config.topics.requests.as_str().into(),
                outbound: config.topics.outbound.as_str().into(),
                batch: Batch::default(),
                blocked: std::time::Duration::ZERO,
                sink,
                health,
            },
        })
    }

    pub(crate) async fn run(self, shutdown: CancellationToken) -> Result<(), CorrelatorError> {
        let Self { consumer, mut state } = self;
        tracing::info!(window_ms = state.config.window.as_millis(), "correlator consuming");
        let settings = Settings { service: "correlator", tick: state.config.flush_interval };
        let health = state.health.clone();
        consume::run(&consumer, &mut state, settings, &health, &shutdown).await;
        // Open exchanges are not forced out early: they would be written as incomplete.
        // Their offsets were never committed, so the next owner of the partition re-reads them.
        tracing::info!(open = state.joiner.open_exchanges(), "correlator stopped; open exchanges will be re-read");
        Ok(())
    }
}

/// The configured diff rules (compiled when the config was read), with the diff limits.
pub(crate) fn route_rules(config: &CorrelatorSection) -> rows::RouteRules {
    let limits = config.diff_limits();
    let default = config.default_rules.clone().with_limits(limits);
    let routes = config.routes.iter().map(|r| (r.template.clone(), r.rules.clone().with_limits(limits))).collect();
    rows::RouteRules::new(default, routes)
}

impl State {
    /// Wall-clock time, less the time the loop spent blocked on writes.
    fn clock(&self) -> Instant {
        let now = Instant::now();
        now.checked_sub(self.blocked).unwrap_or(now)
    }

    async fn ingest(
        &mut self,
        message: &BorrowedMessage<'_>,
        hold: Hold,
        shutdown: &CancellationToken,
    ) -> Result<(), Interrupted> {
        let payload = message.payload().unwrap_or_default();
        let decoded = if message.topic() == &*self.requests {
            self.codec.decode(payload).map(Leg::Request)
        } else if message.topic() == &*self.outbound {
            self.codec.decode(payload).map(|call| Leg::Call(Box::new(call)))
        } else {
            self.codec.decode(payload).map(Leg::Response)
        };
        let leg = match decoded {
            Ok(leg) => leg,
            Err(error) => {
                let delivery = self.dead_letters.divert(message, &error, shutdown).await?;
                events::dead_lettered("event", error.reason(), delivery);
                return Ok(());
            }
        };
        let now = self.clock();
        let id = leg.request_id().to_owned();
        match self.joiner.add(leg, hold, now) {
            Added::Joined => {}
            Added::Late => events::ignored("late"),
            Added::Duplicate => events::ignored("duplicate"),
            Added::OverBound => events::ignored("calls_over_bound"),
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

    async fn flush(&mut self, shutdown: &CancellationToken) -> Result<(), Interrupted> {
        for exchange in self.joiner.expire(self.clock()) {
            let outcomes = self.rows.add(&mut self.batch, exchange);
            events::finalized(&outcomes);
        }
        events::open_exchanges(self.joiner.open_exchanges());
        if self.batch.is_empty() {
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
        // Written: dropping the batch releases its offsets.
        self.batch = Batch::default();
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
}

impl Handler for State {
    async fn message(
        &mut self,
        message: &BorrowedMessage<'_>,
        hold: Hold,
        shutdown: &CancellationToken,
    ) -> Result<bool, Interrupted> {
        self.ingest(message, hold, shutdown).await?;
        // A full batch is written now rather than at the next tick.
        Ok(self.batch.exchanges.len() >= self.config.max_batch_rows)
    }

    async fn tick(&mut self, shutdown: &CancellationToken) -> Result<(), Interrupted> {
        self.flush(shutdown).await
    }

    async fn drain(&mut self) {}
}

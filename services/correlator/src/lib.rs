//! The correlator: joins each request with all of its responses, diffs every shadow leg
//! against the primary, and writes the results to ClickHouse exactly once.
//!
//! Reading order: [`config`]; `consume` (the correlator's side of the runtime's consume
//! loop: join each message, write on a tick; each event's offset is held by its exchange
//! and then its batch until written); `join` (the per-request state and when an exchange is
//! final); `noise` (Diffy's statistics across exchanges); `sink` (rows, migrations and the
//! ClickHouse writer; rows ClickHouse refuses go to the runtime's `DeadLetter`);
//! [`direct`] (whole exchanges compared in process, without the brokers, by the same rows
//! and sink); `bounded` (per-route state that auto-templated paths cannot grow without end); `events`.
//!
//! Nothing retries forever on a permanent error: a row ClickHouse rejects is isolated from
//! its batch and dead-lettered with the reason, and a dead letter too large for the broker
//! is cut, then sent without payload, then skipped and counted.
//!
//! Exactly once, end to end: an offset is committed only after every exchange that read
//! it has been written; rows are keyed so that the rewrite after a crash replaces rather
//! than duplicates (`ReplacingMergeTree`, read with `FINAL`).

mod bounded;
pub mod config;
mod consume;
pub mod direct;
mod events;
mod join;
mod noise;
pub mod sink;

pub use config::CorrelatorConfig;
use shadowdiff_runtime::CancellationToken;

/// Why the correlator could not start or stopped early.
#[derive(Debug, thiserror::Error)]
pub enum CorrelatorError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("create topics: {0}")]
    Topics(#[from] shadowdiff_runtime::kafka::TopicError),
    #[error(transparent)]
    Schema(#[from] shadowdiff_core::codec::SchemaError),
    #[error("clickhouse: {0}")]
    ClickHouse(#[from] shadowdiff_store::StoreError),
    #[error("admin listener: {0}")]
    Admin(#[source] std::io::Error),
}

/// Runs a correlator until `shutdown`: the service's whole life.
pub async fn run(config: CorrelatorConfig, shutdown: CancellationToken) -> Result<(), CorrelatorError> {
    consume::Correlator::start(config, shutdown.clone()).await?.run(shutdown).await
}

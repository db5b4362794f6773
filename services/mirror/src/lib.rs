//! Mirror workers: consume captured requests, replay a sampled, policy-checked share of
//! them to the targets of the matching shadow profile (the secondary and the candidates),
//! and publish each target's response.
//!
//! Reading order: [`config`], [`profile`] (what is replayed where, and the live profile
//! table), `consume` (the mirror's side of the runtime's consume loop: match, dispatch;
//! a request's offset is held until every target's event is acknowledged), `target` (rate limit, concurrency, circuit breaker), `replay`
//! (one request to one target, faults injected, the response redacted), [`vet`] (where
//! replays may go), `api` (the profile admin API, behind tokens), `events`.
//! Replicas share the request topic's partitions through the consumer group, so scaling
//! out is running more of them.

mod api;
pub mod config;
mod consume;
mod events;
pub mod profile;
pub mod replay;
mod target;
pub mod vet;

pub use config::MirrorConfig;
use shadowdiff_runtime::CancellationToken;

/// Why the mirror could not start or stopped early.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("create topics: {0}")]
    Topics(#[from] shadowdiff_runtime::kafka::TopicError),
    #[error(transparent)]
    Schema(#[from] shadowdiff_core::codec::SchemaError),
    #[error("HTTP client for target {target}: {source}")]
    Client { target: String, source: reqwest::Error },
    #[error("admin listener: {0}")]
    Admin(#[source] std::io::Error),
}

/// Runs a mirror worker until `shutdown`: the service's whole life.
pub async fn run(config: MirrorConfig, shutdown: CancellationToken) -> Result<(), MirrorError> {
    consume::Mirror::start(config, shutdown.clone()).await?.run(shutdown).await
}

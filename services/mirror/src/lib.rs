//! Mirror workers: consume captured requests, replay the safe ones to every configured
//! target (the secondary and the candidates), and publish each target's response.
//!
//! Reading order: [`config`], `consume` (the Kafka loop: decode, dead-letter, commit only
//! after the responses are acknowledged), `replay` (one request to one target), `events`.
//! Replicas share the request topic's partitions through the consumer group, so scaling
//! out is running more of them.

pub mod config;
mod consume;
mod events;
mod replay;

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

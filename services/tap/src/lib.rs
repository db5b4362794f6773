//! The tap: a streaming reverse proxy in front of the primary (or, as a sidecar, in front
//! of a shadow) that publishes every captured exchange to Kafka.
//!
//! The client always gets the upstream's response, untouched and on time. Reading order:
//! [`config`] (what an operator sets, and the TLS files it names, parsed once), `route` (templates and the sticky capture
//! decision), `workers` (a single-threaded runtime per core, each serving the connections
//! dealt to it, after the TLS handshake when the tap serves TLS), `connection` (what one
//! client connection may cost: the cap per worker, the header and idle deadlines), `proxy` (the client path: request id, request target,
//! streaming, upgrades), `capture` (the body tee), `publish` (the path to Kafka: each
//! worker's queue of finished exchanges, redaction, then the producer's queue, dropping
//! and counting rather than waiting), `budget` (the memory captures may hold while they
//! wait), `stub` (an egress tap that answers a shadow's calls from the primary's recorded
//! ones), `hop` (hop-by-hop headers) and `events` (what the tap counts).

mod budget;
mod capture;
pub mod config;
mod connection;
mod events;
mod hop;
mod producer;
mod proxy;
mod publish;
mod route;
mod stub;
mod workers;

use std::net::SocketAddr;
use std::sync::Arc;

use shadowdiff_core::EventCodec;
use shadowdiff_runtime::{CancellationToken, admin};
use tokio::net::TcpListener;

pub use config::TapConfig;

/// Why the tap could not start or stopped early.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    #[error("bind {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("kafka producer: {0}")]
    Producer(#[source] rdkafka::error::KafkaError),
    #[error("the stub's reader of the outbound topic: {0}")]
    StubReader(#[source] rdkafka::error::KafkaError),
    #[error("create topics: {0}")]
    Topics(#[source] shadowdiff_runtime::kafka::TopicError),
    #[error(transparent)]
    Schema(#[from] shadowdiff_core::codec::SchemaError),
    #[error("serve: {0}")]
    Serve(#[source] std::io::Error),
    #[error("tls: {0}")]
    Tls(#[source] shadowdiff_runtime::config::ConfigErrors),
}

/// The rustls configs parsed from the config's files: what the tap serves and forwards with.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tls {
    /// Set when clients connect over TLS.
    pub(crate) listener: Option<Arc<rustls::ServerConfig>>,
    /// Set when the upstream is `https://`.
    pub(crate) upstream: Option<Arc<rustls::ClientConfig>>,
}

impl Tls {
    /// Taken from the validated config, where the files were read; an unvalidated one has
    /// them read here instead, once.
    fn of(config: &TapConfig) -> Result<Self, TapError> {
        let tap = &config.tap;
        let listener = tap.tls.as_ref().map(config::ListenerTls::server_config).transpose();
        let upstream = tap.upstream_client_tls().transpose();
        match (listener, upstream) {
            (Ok(listener), Ok(upstream)) => Ok(Self { listener, upstream }),
            (listener, upstream) => {
                let errors = [listener.err(), upstream.err()].into_iter().flatten().flatten().collect();
                Err(TapError::Tls(shadowdiff_runtime::config::ConfigErrors(errors)))
            }
        }
    }
}

/// A bound tap, ready to serve.
#[derive(Debug)]
pub struct Tap {
    listener: TcpListener,
    admin_addr: SocketAddr,
    config: TapConfig,
    tls: Tls,
    publisher: Arc<publish::Publisher>,
    /// The primary's recorded calls, in stub mode.
    stubs: Option<Arc<stub::Recordings>>,
}

impl Tap {
    /// Binds the proxy and admin listeners and connects the producer. Topics are created
    /// here when configured, so a tap that starts is a tap that can publish.
    pub async fn bind(config: TapConfig, shutdown: CancellationToken) -> Result<Self, TapError> {
        // Route counters are registered up front, so the recorder must exist before them.
        shadowdiff_runtime::telemetry::metrics();
        let tls = Tls::of(&config)?;
        if config.topics.create {
            config.kafka.ensure_topics(&config.topics).await.map_err(TapError::Topics)?;
        }
        let health = admin::Health::default();
        let publisher = publish::Publisher::new(&config, Arc::new(EventCodec::new()?), health.clone())?;
        publisher.watch_broker(shutdown.clone());
        let listener = TcpListener::bind(config.tap.listen)
            .await
            .map_err(|source| TapError::Bind { addr: config.tap.listen, source })?;
        let stubs = match &config.tap.mode {
            config::Mode::Egress { stub: Some(stub), .. } => {
                let recordings = Arc::new(stub::Recordings::new(stub.clone()));
                recordings
                    .start(&config.kafka, &config.topics.outbound, shutdown.clone())
                    .map_err(TapError::StubReader)?;
                Some(recordings)
            }
            _ => None,
        };
        let admin_addr = admin::spawn(&config.admin, health, shutdown)
            .await
            .map_err(|source| TapError::Bind { addr: config.admin.listen, source })?;
        Ok(Self { listener, admin_addr, config, tls, publisher: Arc::new(publisher), stubs })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// What clients speak to it: `https` with `[tap.tls]`, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.listener.is_some() { "https" } else { "http" }
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// Serves HTTP/1.1 and h2c (or both over TLS) until `shutdown`, then gives in-flight requests up to the
    /// drain deadline to finish, and flushes the producer.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), TapError> {
        let tap = &self.config.tap;
        let upstream = tap.upstream.as_ref().map_or("(each call's own, egress)", url::Url::as_str);
        tracing::info!(addr = %self.local_addr(), scheme = self.scheme(), upstream, workers = tap.workers, "tap listening");
        let mut workers =
            workers::Workers::start(&self.config, &self.tls, &self.publisher, self.stubs.as_ref(), &shutdown)
                .map_err(TapError::Serve)?;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, peer)) => workers.deal(stream, peer),
                    Err(error) => {
                        // Out of file descriptors, most likely: wait for some to be freed.
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                },
            }
        }
        drop(self.listener);
        workers.join().await;
        self.publisher.flush().await;
        Ok(())
    }
}

/// Binds and runs a tap until `shutdown`: the service's whole life.
pub async fn run(config: TapConfig, shutdown: CancellationToken) -> Result<(), TapError> {
    Tap::bind(config, shutdown.clone()).await?.run(shutdown).await
}

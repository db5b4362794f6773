//! The verdict API: reads the correlator's rows from ClickHouse and answers "how is this
//! candidate doing?" for CD gates and people.
//!
//! Reading order: [`config`] and [`gate`] (the policy per rollout stage), [`evaluate`] (from
//! evidence to pass / fail / inconclusive, pure), [`report`] (what a verdict says), `query`
//! (the SQL), `gauges` (per-candidate metrics for alerts), `release` (where a release's window starts), [`api`] (`fn app(state) -> Router`, the handlers and their error type) and
//! `console` (the pages for people, the drill-down page among them).

pub mod accept;
pub mod api;
pub mod config;
mod console;
pub mod evaluate;
mod events;
pub mod gate;
mod gauges;
mod query;
mod release;
pub mod report;
pub mod suggest;

pub use evaluate::{Criterion, Decision, Downstream, Latency, Quantiles, Rate};
pub use query::{ExchangeDetail, PathCount, Window};
pub use report::{RouteReport, VerdictReport};

use std::net::SocketAddr;

pub use config::VerdictConfig;
use shadowdiff_runtime::{CancellationToken, admin};
use tokio::net::TcpListener;

#[derive(Debug, thiserror::Error)]
pub enum VerdictError {
    #[error("bind {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("connect to clickhouse at {url}: {source}")]
    ClickHouse { url: String, source: clickhouse::error::Error },
    #[error(transparent)]
    Migrate(#[from] shadowdiff_store::StoreError),
    #[error("serve: {0}")]
    Serve(#[source] std::io::Error),
}

/// A bound verdict server.
#[derive(Debug)]
pub struct Verdict {
    listener: TcpListener,
    state: api::AppState,
    gauge_interval: std::time::Duration,
    admin_addr: SocketAddr,
}

impl Verdict {
    pub async fn bind(config: VerdictConfig, shutdown: CancellationToken) -> Result<Self, VerdictError> {
        let url = config.clickhouse.url.clone();
        let clickhouse =
            config.clickhouse.connect().await.map_err(|source| VerdictError::ClickHouse { url, source })?;
        // The tables it reads are the correlator's, and its own (verdicts, releases,
        // acceptances): migrated here too, so a verdict never runs against an older schema
        // than its own, whichever service started first. Safe alongside other replicas.
        shadowdiff_store::migrations::apply(&clickhouse).await?;
        let listener = TcpListener::bind(config.verdict.listen)
            .await
            .map_err(|source| VerdictError::Bind { addr: config.verdict.listen, source })?;
        let health = admin::Health::default();
        health.set("clickhouse", true);
        let admin_addr = admin::spawn(&config.admin, health, shutdown)
            .await
            .map_err(|source| VerdictError::Bind { addr: config.admin.listen, source })?;
        let auth = shadowdiff_runtime::auth::Auth::new(&config.auth, "verdict");
        let gauge_interval = config.verdict.gauge_interval;
        let state = api::AppState::new(clickhouse.client, config.verdict, auth).with_console(&config.console);
        Ok(Self { listener, state, gauge_interval, admin_addr })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Where `/healthz` and `/metrics` are served.
    pub const fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    pub async fn run(self, shutdown: CancellationToken) -> Result<(), VerdictError> {
        tracing::info!(addr = %self.local_addr(), "verdict API listening");
        if !self.gauge_interval.is_zero() {
            tokio::spawn(gauges::run(self.state.clone(), self.gauge_interval, shutdown.clone()));
        }
        let app = api::app(self.state).into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(self.listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
            .map_err(VerdictError::Serve)
    }
}

/// Binds and serves until `shutdown`: the service's whole life.
pub async fn run(config: VerdictConfig, shutdown: CancellationToken) -> Result<(), VerdictError> {
    Verdict::bind(config, shutdown.clone()).await?.run(shutdown).await
}

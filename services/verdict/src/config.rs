//! The verdict service's configuration (`shadowdiff-verdict --config verdict.toml`,
//! `SHADOWDIFF_VERDICT_*`).

use std::net::SocketAddr;

use serde::Deserialize;
use shadowdiff_runtime::admin::AdminConfig;
use shadowdiff_runtime::clickhouse::ClickHouseConfig;
use shadowdiff_runtime::config::{ConfigError, Validate};
use shadowdiff_runtime::telemetry::LogConfig;

use crate::gate::Gates;

#[derive(Debug, Clone, Deserialize)]
pub struct VerdictConfig {
    #[serde(default)]
    pub verdict: VerdictSection,
    #[serde(default)]
    pub clickhouse: ClickHouseConfig,
    #[serde(default = "default_admin")]
    pub admin: AdminConfig,
    #[serde(default)]
    pub log: LogConfig,
}

/// `[verdict]`
#[derive(Clone, Deserialize)]
pub struct VerdictSection {
    /// Where the API and the drill-down pages listen.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// When set, every `/v1/` request must carry `Authorization: Bearer <token>`. Set it from a
    /// secret: `SHADOWDIFF_VERDICT_TOKEN`. The drill-down pages under `/exchanges/` stay open to
    /// browsers; put them behind the same SSO proxy as Grafana.
    #[serde(default)]
    pub token: Option<String>,
    /// The gate each rollout stage must pass.
    #[serde(default)]
    pub gates: Gates,
}

impl Default for VerdictSection {
    fn default() -> Self {
        Self { listen: default_listen(), token: None, gates: Gates::default() }
    }
}

impl std::fmt::Debug for VerdictSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerdictSection")
            .field("listen", &self.listen)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("gates", &self.gates)
            .finish()
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 8090))
}
fn default_admin() -> AdminConfig {
    AdminConfig { listen: SocketAddr::from(([0, 0, 0, 0], 9467)) }
}

impl Validate for VerdictConfig {
    fn validate(&self, errors: &mut Vec<ConfigError>) {
        self.clickhouse.validate(errors);
        self.verdict.gates.validate(errors);
        if self.verdict.token.as_ref().is_some_and(|t| t.len() < 16) {
            errors.push(ConfigError::rule("verdict.token", "must be at least 16 characters"));
        }
    }
}

impl shadowdiff_runtime::ServiceConfig for VerdictConfig {
    fn log(&self) -> &LogConfig {
        &self.log
    }
}

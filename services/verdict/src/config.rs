//! The verdict service's configuration (`shadowdiff-verdict --config verdict.toml`,
//! `SHADOWDIFF_VERDICT_*`).

use std::net::SocketAddr;

use serde::Deserialize;
use shadowdiff_runtime::admin::AdminConfig;
use shadowdiff_runtime::auth::AuthConfig;
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
    /// Who may read verdicts, comparisons and pages (`read`).
    #[serde(default)]
    pub auth: AuthConfig,
    #[serde(default)]
    pub log: LogConfig,
}

/// `[verdict]`
#[derive(Debug, Clone, Deserialize)]
pub struct VerdictSection {
    /// Where the API and the drill-down pages listen.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The gate each rollout stage must pass.
    #[serde(default)]
    pub gates: Gates,
}

impl Default for VerdictSection {
    fn default() -> Self {
        Self { listen: default_listen(), gates: Gates::default() }
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
        self.auth.validate(errors);
    }
}

impl shadowdiff_runtime::ServiceConfig for VerdictConfig {
    fn log(&self) -> &LogConfig {
        &self.log
    }
}

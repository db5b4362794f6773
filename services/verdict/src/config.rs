//! The verdict service's configuration (`shadowdiff-verdict --config verdict.toml`,
//! `SHADOWDIFF_VERDICT_*`).

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use shadowdiff_runtime::admin::AdminConfig;
use shadowdiff_runtime::auth::AuthConfig;
use shadowdiff_runtime::clickhouse::ClickHouseConfig;
use shadowdiff_runtime::config::{ConfigError, Validate, serde_duration};
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
    #[serde(default)]
    pub console: ConsoleSection,
}

/// `[console]`: what the console's profile pages need beyond the comparison store.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ConsoleSection {
    /// The mirror's admin API (`http://shadowdiff-mirror:9465`). Unset: the profile pages
    /// say so and change nothing.
    #[serde(default)]
    pub mirror_url: Option<String>,
    /// The console's own token for it, with `read` and `write`: the pages call the mirror
    /// server to server, never the browser (`SHADOWDIFF_CONSOLE_MIRROR_TOKEN`).
    #[serde(default)]
    pub mirror_token: shadowdiff_runtime::config::Secret<String>,
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
    /// The comparisons judged when the caller names neither a release (`revision`) nor a
    /// start (`since`): this long before now.
    #[serde(default = "default_window", rename = "default_window_secs", with = "serde_duration::secs")]
    pub default_window: Duration,
    /// No verdict reads comparisons older than this, however early its release began or its
    /// `since` says: the cost of a query stays bounded whatever the retention. 0: no bound.
    #[serde(default = "max_window", rename = "max_window_secs", with = "serde_duration::secs")]
    pub max_window: Duration,
    /// How often the per-candidate gauges on the admin port are refreshed (`gauges`). 0: not
    /// exported.
    #[serde(default = "gauge_interval", rename = "gauge_interval_secs", with = "serde_duration::secs")]
    pub gauge_interval: Duration,
}

impl Default for VerdictSection {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            gates: Gates::default(),
            default_window: default_window(),
            max_window: max_window(),
            gauge_interval: gauge_interval(),
        }
    }
}

const fn default_window() -> Duration {
    Duration::from_secs(3600)
}
const fn max_window() -> Duration {
    Duration::from_secs(24 * 3600)
}

const fn gauge_interval() -> Duration {
    Duration::from_secs(30)
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
        let windows = &self.verdict;
        if windows.default_window.is_zero() {
            errors.push(ConfigError::rule("verdict.default_window_secs", "must be at least 1"));
        }
        if !windows.max_window.is_zero() && windows.default_window > windows.max_window {
            errors.push(ConfigError::rule("verdict.default_window_secs", "must not exceed verdict.max_window_secs"));
        }
        self.auth.validate(errors);
        if let Some(url) = &self.console.mirror_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            errors.push(ConfigError::rule("console.mirror_url", "must be an http:// or https:// URL"));
        }
    }
}

impl shadowdiff_runtime::ServiceConfig for VerdictConfig {
    fn log(&self) -> &LogConfig {
        &self.log
    }
}

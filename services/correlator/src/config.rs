//! The correlator's configuration (`shadowdiff-correlator --config correlator.toml`,
//! `SHADOWDIFF_CORRELATOR_*`).

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use shadowdiff_core::diff::{DiffOptions, DiffRules};
use shadowdiff_runtime::admin::AdminConfig;
use shadowdiff_runtime::clickhouse::ClickHouseConfig;
use shadowdiff_runtime::config::{ConfigError, Validate, serde_duration};

pub use crate::noise::NoiseConfig;
use shadowdiff_runtime::kafka::{KafkaConfig, TopicsConfig};
use shadowdiff_runtime::telemetry::LogConfig;

#[derive(Debug, Clone, Deserialize)]
pub struct CorrelatorConfig {
    #[serde(default)]
    pub correlator: CorrelatorSection,
    #[serde(default)]
    pub kafka: KafkaConfig,
    #[serde(default)]
    pub topics: TopicsConfig,
    #[serde(default)]
    pub clickhouse: ClickHouseConfig,
    #[serde(default = "default_admin")]
    pub admin: AdminConfig,
    #[serde(default)]
    pub log: LogConfig,
}

/// `[correlator]`
#[derive(Debug, Clone, Deserialize)]
pub struct CorrelatorSection {
    /// Consumer group shared by all replicas.
    #[serde(default = "default_group_id")]
    pub group_id: String,
    /// How long an exchange waits for its legs after its first event arrives.
    #[serde(default = "default_window", rename = "window_ms", with = "serde_duration::millis")]
    pub window: Duration,
    /// Comparison rows that make a batch written at once, before the flush interval is up.
    #[serde(default = "default_max_batch_rows")]
    pub max_batch_rows: usize,
    /// How often final exchanges are written and offsets committed.
    #[serde(default = "default_flush_interval", rename = "flush_interval_ms", with = "serde_duration::millis")]
    pub flush_interval: Duration,
    /// Open exchanges held at most; beyond it the oldest are emitted with what they have.
    #[serde(default = "default_max_open_exchanges")]
    pub max_open_exchanges: usize,
    /// Memory held by open exchanges at most (bodies and headers); same rule.
    #[serde(default = "default_max_open_bytes")]
    pub max_open_bytes: usize,
    /// Longest value stored per difference; longer ones are cut and marked with `…`.
    #[serde(default = "default_max_value_bytes")]
    pub max_value_bytes: usize,
    /// How many divergent exchanges per route and minute keep their full bodies in
    /// `samples`, for the drill-down page. 0 keeps none.
    #[serde(default = "default_samples_per_route_minute")]
    pub samples_per_route_minute: usize,
    /// Days `exchanges` and `differences` keep their rows; 0 keeps them forever.
    #[serde(default = "default_retention_days")]
    pub retention_days: u32,
    /// Days `samples` keeps its bodies; 0 keeps them forever.
    #[serde(default = "default_samples_retention_days")]
    pub samples_retention_days: u32,
    /// Diffy's thresholds for noise across exchanges (`crate::noise`).
    #[serde(default)]
    pub noise: NoiseConfig,
    /// Diff rules for routes without their own.
    #[serde(default)]
    pub default_rules: DiffRules,
    /// Diff rules per route template (as the tap names routes).
    #[serde(default)]
    pub routes: Vec<RouteRulesConfig>,
}

/// `[[correlator.routes]]`
#[derive(Debug, Clone, Deserialize)]
pub struct RouteRulesConfig {
    pub template: String,
    pub rules: DiffRules,
}

impl Default for CorrelatorSection {
    fn default() -> Self {
        Self {
            group_id: default_group_id(),
            window: default_window(),
            flush_interval: default_flush_interval(),
            max_batch_rows: default_max_batch_rows(),
            max_value_bytes: default_max_value_bytes(),
            samples_per_route_minute: default_samples_per_route_minute(),
            noise: NoiseConfig::default(),
            retention_days: default_retention_days(),
            samples_retention_days: default_samples_retention_days(),
            max_open_exchanges: default_max_open_exchanges(),
            max_open_bytes: default_max_open_bytes(),
            default_rules: DiffRules::default(),
            routes: Vec::new(),
        }
    }
}

fn default_admin() -> AdminConfig {
    AdminConfig { listen: SocketAddr::from(([0, 0, 0, 0], 9466)) }
}
fn default_group_id() -> String {
    "shadowdiff-correlator".to_owned()
}
const fn default_window() -> Duration {
    Duration::from_secs(30)
}
const fn default_flush_interval() -> Duration {
    Duration::from_secs(1)
}
const fn default_max_batch_rows() -> usize {
    20_000
}
const fn default_max_open_exchanges() -> usize {
    200_000
}
const fn default_max_open_bytes() -> usize {
    512 * 1024 * 1024
}
const fn default_max_value_bytes() -> usize {
    1024
}
const fn default_retention_days() -> u32 {
    30
}
const fn default_samples_retention_days() -> u32 {
    7
}
const fn default_samples_per_route_minute() -> usize {
    5
}

impl Validate for CorrelatorConfig {
    fn validate(&self, errors: &mut Vec<ConfigError>) {
        self.topics.validate(errors);
        self.clickhouse.validate(errors);
        if self.correlator.window.is_zero() {
            errors.push(ConfigError::rule("correlator.window_ms", "must be > 0"));
        }
        if self.correlator.max_batch_rows == 0 {
            errors.push(ConfigError::rule("correlator.max_batch_rows", "must be at least 1"));
        }
        if self.correlator.flush_interval.is_zero() {
            errors.push(ConfigError::rule("correlator.flush_interval_ms", "must be > 0"));
        }
        if let Err(error) = DiffOptions::new(&self.correlator.default_rules) {
            errors.push(ConfigError::rule("correlator.default_rules", error.to_string()));
        }
        for (i, route) in self.correlator.routes.iter().enumerate() {
            if let Err(error) = DiffOptions::new(&route.rules) {
                errors.push(ConfigError::rule(format!("correlator.routes[{i}].rules"), error.to_string()));
            }
        }
        self.correlator.noise.validate(errors);
        if self.correlator.max_value_bytes < 16 {
            errors.push(ConfigError::rule("correlator.max_value_bytes", "must be at least 16"));
        }
    }
}

impl shadowdiff_runtime::ServiceConfig for CorrelatorConfig {
    fn log(&self) -> &LogConfig {
        &self.log
    }
}

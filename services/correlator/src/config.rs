//! The correlator's configuration (`shadowdiff-correlator --config correlator.toml`,
//! `SHADOWDIFF_CORRELATOR_*`).

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use shadowdiff_core::diff::{DiffLimits, DiffOptions};
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
    /// Routes whose sample budget is tracked at most; beyond it the least recently sampled
    /// route is forgotten (`shadowdiff_correlator_route_state_evicted_total{state="sample_budget"}`),
    /// so auto-templated paths cannot grow it without end.
    #[serde(default = "default_max_sampled_routes")]
    pub max_sampled_routes: usize,
    /// Differences kept per comparison; beyond it one `overflow` difference says how many
    /// were dropped.
    #[serde(default = "default_max_differences_per_exchange")]
    pub max_differences_per_exchange: usize,
    /// Steps the JSON diff of one comparison may take (values visited, hashed or compared);
    /// beyond it the diff stops with a `diff_timeout` difference. Counted, not timed, so a
    /// pair of bodies always gets the same result.
    #[serde(default = "default_diff_max_operations")]
    pub diff_max_operations: u64,
    /// Time the line diff of one pair of text bodies may take; beyond it a coarser diff is
    /// kept, with a `diff_timeout` difference.
    #[serde(default = "default_text_diff_timeout", rename = "text_diff_timeout_ms", with = "serde_duration::millis")]
    pub text_diff_timeout: Duration,
    /// Payload bytes of one dead letter at most (an undecodable event, a row ClickHouse
    /// rejected); a longer payload is cut and flagged (`shadowdiff-truncated`). Keep it below
    /// the producer's `message.max.bytes` (1 MB by default) and the broker's limit; should the
    /// broker refuse it anyway, the letter goes without its payload.
    #[serde(default = "default_dead_letter_max_bytes")]
    pub dead_letter_max_bytes: usize,
    /// Days `exchanges` and `differences` keep their rows; 0 keeps them forever.
    #[serde(default = "default_retention_days")]
    pub retention_days: u32,
    /// Days `samples` keeps its bodies; 0 keeps them forever.
    #[serde(default = "default_samples_retention_days")]
    pub samples_retention_days: u32,
    /// Diffy's thresholds for noise across exchanges (`crate::noise`).
    #[serde(default)]
    pub noise: NoiseConfig,
    /// The comparison of each deployment's downstream calls (`[correlator.outbound]`).
    #[serde(default)]
    pub outbound: OutboundConfig,
    /// Diff rules for routes without their own, compiled as they are read.
    #[serde(default)]
    pub default_rules: DiffOptions,
    /// Diff rules per route template (as the tap names routes).
    #[serde(default)]
    pub routes: Vec<RouteRulesConfig>,
}

/// `[correlator.outbound]`: how each deployment's downstream calls, published by its egress
/// tap, are joined to their exchange and compared.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct OutboundConfig {
    /// How long a whole exchange waits after its last event for downstream calls still on
    /// their way, before it is written. 0 (the default): none, for deployments without
    /// egress taps; with them, a few times the taps' `linger_ms` (500), or calls that come
    /// after their exchange's answers are dropped as late. Whatever it is, an exchange whose
    /// tapped deployments made different numbers of calls waits on for them, up to
    /// `window_ms`.
    #[serde(default = "default_settle", rename = "settle_ms", with = "serde_duration::millis")]
    pub settle: Duration,
    /// Calls kept per exchange, all deployments together; more are counted and dropped
    /// (`shadowdiff_correlator_events_ignored_total{reason="calls_over_bound"}`).
    #[serde(default = "default_max_calls_per_exchange")]
    pub max_calls_per_exchange: usize,
    /// Hosts whose calls must come in the primary's order: another order is an `order`
    /// difference. For the rest, only which calls were made counts.
    #[serde(default)]
    pub ordered_destinations: Vec<String>,
}

impl Default for OutboundConfig {
    fn default() -> Self {
        Self {
            settle: default_settle(),
            max_calls_per_exchange: default_max_calls_per_exchange(),
            ordered_destinations: Vec::new(),
        }
    }
}

const fn default_settle() -> Duration {
    Duration::ZERO
}
const fn default_max_calls_per_exchange() -> usize {
    256
}

/// `[[correlator.routes]]`
#[derive(Debug, Clone, Deserialize)]
pub struct RouteRulesConfig {
    pub template: String,
    /// Compiled as they are read.
    pub rules: DiffOptions,
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
            max_sampled_routes: default_max_sampled_routes(),
            max_differences_per_exchange: default_max_differences_per_exchange(),
            diff_max_operations: default_diff_max_operations(),
            text_diff_timeout: default_text_diff_timeout(),
            dead_letter_max_bytes: default_dead_letter_max_bytes(),
            noise: NoiseConfig::default(),
            outbound: OutboundConfig::default(),
            retention_days: default_retention_days(),
            samples_retention_days: default_samples_retention_days(),
            max_open_exchanges: default_max_open_exchanges(),
            max_open_bytes: default_max_open_bytes(),
            default_rules: DiffOptions::default(),
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
const fn default_max_sampled_routes() -> usize {
    10_000
}
const fn default_max_differences_per_exchange() -> usize {
    100
}
/// Well under a second of CPU; a typical JSON response needs a few hundred.
const fn default_diff_max_operations() -> u64 {
    1_000_000
}
const fn default_text_diff_timeout() -> Duration {
    Duration::from_millis(100)
}
/// Half of librdkafka's default `message.max.bytes`, leaving room for key and headers.
const fn default_dead_letter_max_bytes() -> usize {
    512 * 1024
}

impl CorrelatorSection {
    /// The bounds of one comparison, from `max_differences_per_exchange`,
    /// `diff_max_operations` and `text_diff_timeout_ms`.
    pub fn diff_limits(&self) -> DiffLimits {
        DiffLimits {
            max_differences: self.max_differences_per_exchange,
            max_operations: self.diff_max_operations,
            text_timeout: self.text_diff_timeout,
        }
    }
}

/// The fewest steps a JSON diff may be given: a document of a few hundred values.
const MIN_DIFF_OPERATIONS: u64 = 1000;

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
        self.correlator.noise.validate(errors);
        if self.correlator.max_value_bytes < 16 {
            errors.push(ConfigError::rule("correlator.max_value_bytes", "must be at least 16"));
        }
        for (key, value) in [
            ("correlator.max_sampled_routes", self.correlator.max_sampled_routes),
            ("correlator.max_differences_per_exchange", self.correlator.max_differences_per_exchange),
            ("correlator.outbound.max_calls_per_exchange", self.correlator.outbound.max_calls_per_exchange),
        ] {
            if value == 0 {
                errors.push(ConfigError::rule(key, "must be at least 1"));
            }
        }
        if self.correlator.diff_max_operations < MIN_DIFF_OPERATIONS {
            errors.push(ConfigError::rule(
                "correlator.diff_max_operations",
                format!("must be at least {MIN_DIFF_OPERATIONS}: fewer cuts short even small documents"),
            ));
        }
        if self.correlator.text_diff_timeout.is_zero() {
            errors.push(ConfigError::rule("correlator.text_diff_timeout_ms", "must be > 0"));
        }
        if self.correlator.outbound.settle >= self.correlator.window {
            errors
                .push(ConfigError::rule("correlator.outbound.settle_ms", "must be shorter than correlator.window_ms"));
        }
        if self.correlator.dead_letter_max_bytes == 0 {
            errors.push(ConfigError::rule("correlator.dead_letter_max_bytes", "must be at least 1"));
        }
    }
}

impl CorrelatorConfig {
    /// The topics its consumer group reads, and so the lag an autoscaler watches
    /// (deploy/k8s/components/autoscaling). The downstream calls' topic is keyed by request
    /// id like the others, so an exchange's calls come to the replica that holds its
    /// request and responses.
    pub fn consumed_topics(&self) -> [&str; 3] {
        [&self.topics.requests, &self.topics.responses, &self.topics.outbound]
    }
}

impl shadowdiff_runtime::ServiceConfig for CorrelatorConfig {
    fn log(&self) -> &LogConfig {
        &self.log
    }
}

#[cfg(test)]
mod tests {
    use shadowdiff_runtime::config::load_str;

    use super::*;

    #[test]
    fn diff_rules_are_compiled_as_the_config_is_read_and_a_bad_one_is_named() {
        let good = "[correlator]\n[correlator.default_rules]\nignore_paths = [\"meta.*\"]\n\
                    [[correlator.routes]]\ntemplate = \"/items/{id}\"\n[correlator.routes.rules]\nset_arrays = [\"tags\"]\n";
        let config: CorrelatorConfig = load_str(good, "correlator.toml", Vec::new()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.correlator.routes[0].template, "/items/{id}");

        let bad = "[correlator]\n[[correlator.routes]]\ntemplate = \"/a\"\n[correlator.routes.rules]\n\
                   normalizers = [{ pattern = \"(\" }]\n\
                   [correlator.default_rules]\nignore_paths = [\"ok\"]\nnormalizers = [{ pattern = \"[z-a]\" }]\n";
        let errors = load_str::<CorrelatorConfig>(bad, "correlator.toml", Vec::new()).unwrap_err().0;
        let mut keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["correlator.default_rules", "correlator.routes[0].rules"], "{errors:#?}");
    }
}

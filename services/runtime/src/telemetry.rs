//! Logging and metrics setup. Services record metrics with the `metrics` macros through
//! their own typed events (`events.rs`); this module only installs the sinks.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde::Deserialize;
use tracing_subscriber::EnvFilter;

/// `[log]`: how the service writes its log.
#[derive(Debug, Clone, Deserialize)]
pub struct LogConfig {
    /// `text` for people, `json` for log pipelines.
    #[serde(default)]
    pub format: LogFormat,
    /// A tracing filter such as `info` or `shadowdiff_tap=debug,info`; `RUST_LOG` wins if set.
    #[serde(default = "default_level")]
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { format: LogFormat::default(), level: default_level() }
    }
}

fn default_level() -> String {
    "info".to_owned()
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Installs the global tracing subscriber. A second call (several services in one test
/// process) keeps the first subscriber.
pub fn init_tracing(config: &LogConfig) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _already_set = match config.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// The process-wide Prometheus recorder, installed on first use.
pub fn metrics() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        // Fails only if another recorder was installed first; metrics then go there and
        // this handle renders an empty page, which the admin tests would catch.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// Lets a log line through at most once a second, for events that can repeat at request
/// rate (drops, bad messages) while their counter records every occurrence.
#[derive(Debug)]
pub struct LogLimiter {
    limiter: OnceLock<governor::DefaultDirectRateLimiter>,
}

impl LogLimiter {
    pub const fn new() -> Self {
        Self { limiter: OnceLock::new() }
    }

    pub fn allow(&self) -> bool {
        self.limiter
            .get_or_init(|| governor::RateLimiter::direct(governor::Quota::per_second(std::num::NonZeroU32::MIN)))
            .check()
            .is_ok()
    }
}

impl Default for LogLimiter {
    fn default() -> Self {
        Self::new()
    }
}

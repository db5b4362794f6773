//! One tap, in this process, on its own topics, in front of a given upstream.

use std::net::SocketAddr;

use shadowdiff_runtime::CancellationToken;
use shadowdiff_runtime::config::load_str;
use shadowdiff_tap::{Tap, TapConfig};

use crate::unique;

pub struct TapUnderTest {
    pub url: String,
    pub admin_url: String,
    pub requests: String,
    pub responses: String,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for TapUnderTest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TapUnderTest").field("url", &self.url).finish_non_exhaustive()
    }
}

impl TapUnderTest {
    /// Starts a tap for `upstream`; `tap_extra` is TOML appended inside `[tap]`, `extra`
    /// is TOML appended after the generated sections (e.g. more `[kafka]` keys go there
    /// through `kafka_extra`).
    pub async fn start(brokers: &str, upstream: SocketAddr, tap_extra: &str, kafka_extra: &str) -> Self {
        Self::start_for(brokers, &format!("http://{upstream}"), tap_extra, kafka_extra).await
    }

    /// Starts a tap for the upstream base URL `upstream` (`http://` or `https://`); its
    /// `url` is `https://` when `tap_extra` has a `[tap.tls]` section.
    pub async fn start_for(brokers: &str, upstream: &str, tap_extra: &str, kafka_extra: &str) -> Self {
        let id = unique("tap");
        let topics = [".requests", ".responses", ".dead-letter", ".outbound"].map(|t| format!("{id}{t}"));
        Self::start_on(brokers, topics, 2, upstream, tap_extra, kafka_extra).await
    }

    /// A tap on a pipeline's topics (`crate::pipeline::Names`): an egress tap beside it, say.
    pub async fn beside(brokers: &str, names: &crate::pipeline::Names, tap_extra: &str) -> Self {
        let topics = [&names.requests, &names.responses, &names.dead_letter, &names.outbound].map(String::clone);
        // An egress tap takes each call's own destination; the upstream is not used.
        Self::start_on(brokers, topics, 3, "http://127.0.0.1:9", tap_extra, "").await
    }

    /// A tap on `[requests, responses, dead_letter, outbound]`, each of `partitions`.
    async fn start_on(
        brokers: &str,
        [requests, responses, dead_letter, outbound]: [String; 4],
        partitions: i32,
        upstream: &str,
        tap_extra: &str,
        kafka_extra: &str,
    ) -> Self {
        let text = format!(
            "[tap]\nlisten = \"127.0.0.1:0\"\nupstream = \"{upstream}\"\nid = \"tap-test\"\n{tap_extra}\n\
             [kafka]\nbrokers = \"{brokers}\"\nlinger_ms = 1\n{kafka_extra}\n\
             [topics]\nrequests = \"{requests}\"\nresponses = \"{responses}\"\ndead_letter = \"{dead_letter}\"\n\
             outbound = \"{outbound}\"\npartitions = {partitions}\n\
             [admin]\nlisten = \"127.0.0.1:0\"\n"
        );
        shadowdiff_runtime::telemetry::init_tracing(&shadowdiff_runtime::telemetry::LogConfig {
            level: "warn,shadowdiff=info,librdkafka=warn".into(),
            ..Default::default()
        });
        let config: TapConfig = load_str(&text, "tap test config", Vec::new()).unwrap_or_else(|e| panic!("{e}"));
        let shutdown = CancellationToken::new();
        let tap = Tap::bind(config, shutdown.clone()).await.unwrap_or_else(|e| panic!("tap: {e}"));
        let url = format!("{}://{}", tap.scheme(), tap.local_addr());
        let admin_url = format!("http://{}", tap.admin_addr());
        let stop = shutdown.clone();
        let task = tokio::spawn(async move {
            if let Err(error) = tap.run(stop).await {
                eprintln!("tap failed: {error}");
            }
        });
        Self { url, admin_url, requests, responses, shutdown, task }
    }

    /// The value of a counter on the tap's `/metrics` page (summed over its label sets
    /// matching `labels`), 0 when absent.
    pub async fn counter(&self, name: &str, labels: &str) -> f64 {
        let page = reqwest::get(format!("{}/metrics", self.admin_url))
            .await
            .and_then(reqwest::Response::error_for_status)
            .unwrap_or_else(|e| panic!("metrics: {e}"))
            .text()
            .await
            .unwrap_or_default();
        page.lines()
            .filter(|line| line.starts_with(name) && line.contains(labels))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Its `/healthz`: status code and checks.
    pub async fn healthz(&self) -> Result<(u16, serde_json::Value), String> {
        crate::admin::healthz(&self.admin_url).await
    }

    /// Shuts the tap down; whether it stopped (drained and flushed) within 30 s.
    pub async fn stop(self) -> bool {
        self.shutdown.cancel();
        tokio::time::timeout(std::time::Duration::from_secs(30), self.task).await.is_ok()
    }
}

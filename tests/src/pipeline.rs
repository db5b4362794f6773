//! The four services, in this process, wired to one test's own topics, consumer groups and
//! ClickHouse database. Configs are TOML text through the same loader the binaries use.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::de::DeserializeOwned;
use shadowdiff_runtime::CancellationToken;
use shadowdiff_runtime::config::{Validate, load_str};
use tokio::task::JoinHandle;

use crate::infra::Infra;
use crate::unique;

/// Names this pipeline's resources, all unique to one test run.
#[derive(Debug, Clone)]
pub struct Names {
    pub requests: String,
    pub responses: String,
    pub dead_letter: String,
    /// Where egress taps publish downstream calls.
    pub outbound: String,
    pub database: String,
    pub group_prefix: String,
}

impl Names {
    fn new() -> Self {
        let id = unique("e2e");
        Self {
            requests: format!("{id}.requests"),
            responses: format!("{id}.responses"),
            dead_letter: format!("{id}.dead-letter"),
            outbound: format!("{id}.outbound"),
            database: format!("sd_{id}"),
            group_prefix: id,
        }
    }
}

/// The backends a pipeline forwards and replays to.
#[derive(Debug, Clone, Copy)]
pub struct Backends {
    pub primary: SocketAddr,
    pub secondary: SocketAddr,
    pub candidate: SocketAddr,
}

/// Key of the digests in every test pipeline.
pub const TEST_HMAC_KEY: &str = "test-only-hmac-key-0123456789";

/// Name of the candidate deployment in every pipeline.
pub const CANDIDATE: &str = "candidate";

/// TOML added to the services' own sections, for a scenario that tunes them.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tuning<'a> {
    /// Under `[verdict]`: its keys, then sub-tables such as `[verdict.gates.10]`.
    pub verdict: &'a str,
    /// Under `[correlator]`: its keys, then sub-tables such as `[correlator.default_rules]`.
    pub correlator: &'a str,
    /// Keys of the mirror's profile (`e2e`), before its targets: `side_effects`, `match`.
    pub profile: &'a str,
    /// The mirror on a runtime of its own, as in its own process: the shadows' latency it
    /// measures then waits on its own work only, not on the tap's and the correlator's. For
    /// scenarios that judge latency.
    pub mirror_apart: bool,
}

pub struct Pipeline {
    pub names: Names,
    pub tap_url: String,
    pub verdict_url: String,
    /// The verdict service's admin port: `/healthz` and `/metrics`, with its per-candidate
    /// gauges (and, in this process, every service's metrics).
    pub verdict_admin_url: String,
    pub clickhouse: clickhouse::Client,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    correlator: Option<JoinHandle<()>>,
    correlator_config: shadowdiff_correlator::CorrelatorConfig,
    failures: Arc<Mutex<Vec<String>>>,
    drop_database: String,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline").field("names", &self.names).field("tap_url", &self.tap_url).finish_non_exhaustive()
    }
}

pub(crate) fn config<T: DeserializeOwned + Validate>(service: &str, text: &str) -> T {
    load_str(text, &format!("{service} test config"), Vec::new()).unwrap_or_else(|errors| panic!("{service}: {errors}"))
}

impl Pipeline {
    /// Starts tap, mirror, correlator and verdict against `infra`.
    pub async fn start(infra: &Infra, backends: Backends) -> Self {
        Self::start_with(infra, backends, "").await
    }

    /// [`Pipeline::start`], with `verdict` (TOML) under the verdict service's `[verdict]`:
    /// its keys, then sub-tables such as `[verdict.gates.10]`.
    pub async fn start_with(infra: &Infra, backends: Backends, verdict: &str) -> Self {
        Self::start_tuned(infra, backends, Tuning { verdict, ..Tuning::default() }).await
    }

    /// [`Pipeline::start`], with `tuning` added to the services' configs.
    pub async fn start_tuned(infra: &Infra, backends: Backends, tuning: Tuning<'_>) -> Self {
        let Tuning { verdict, correlator, profile, mirror_apart } = tuning;
        shadowdiff_runtime::telemetry::init_tracing(&shadowdiff_runtime::telemetry::LogConfig {
            level: "warn,shadowdiff=info".into(),
            ..Default::default()
        });
        let names = Names::new();
        let kafka = format!(
            "[kafka]\nbrokers = \"{}\"\nlinger_ms = 1\n\
             [topics]\nrequests = \"{}\"\nresponses = \"{}\"\ndead_letter = \"{}\"\noutbound = \"{}\"\npartitions = 3\n\
             [admin]\nlisten = \"127.0.0.1:0\"\n",
            infra.brokers, names.requests, names.responses, names.dead_letter, names.outbound
        );
        let clickhouse = infra.clickhouse_toml(&names.database);

        let shutdown = CancellationToken::new();
        let failures = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();

        let tap_config = config(
            "tap",
            &format!(
                "[tap]\nlisten = \"127.0.0.1:0\"\nupstream = \"http://{}\"\nid = \"tap-test\"\n\
                 [tap.redaction]\nhmac_key = \"{TEST_HMAC_KEY}\"\n{kafka}",
                backends.primary
            ),
        );
        let tap = shadowdiff_tap::Tap::bind(tap_config, shutdown.clone()).await.unwrap_or_else(|e| panic!("tap: {e}"));
        let tap_url = format!("http://{}", tap.local_addr());
        tasks.push(supervise("tap", tap.run(shutdown.clone()), &failures));

        let mirror_config = config(
            "mirror",
            &format!(
                "[mirror]\ngroup_id = \"{}-mirror\"\nallowed_targets = [\"127.0.0.1\"]\nallow_loopback = true\n\
                 [mirror.redaction]\nhmac_key = \"{TEST_HMAC_KEY}\"\n\
                 [[mirror.profiles]]\nid = \"e2e\"\n{profile}\n\
                 [[mirror.profiles.targets]]\nname = \"secondary\"\nrole = \"secondary\"\nbase_url = \"http://{}\"\n\
                 [[mirror.profiles.targets]]\nname = \"{CANDIDATE}\"\nrole = \"candidate\"\nbase_url = \"http://{}\"\n{kafka}{}",
                names.group_prefix,
                backends.secondary,
                backends.candidate,
                crate::auth::auth_toml()
            ),
        );
        let mirror = shadowdiff_mirror::run(mirror_config, shutdown.clone());
        tasks.push(if mirror_apart {
            supervise("mirror", apart(mirror), &failures)
        } else {
            supervise("mirror", mirror, &failures)
        });

        // A restarted correlator catches up on the request and response partitions at their
        // own paces, so on a loaded machine two legs of one exchange can be read seconds
        // apart; a window shorter than that gap writes the exchange split (missing_request).
        // Whole exchanges are written as soon as they are whole, so the window only delays
        // the incomplete ones.
        let correlator_config = config(
            "correlator",
            &format!(
                "[correlator]\ngroup_id = \"{}-correlator\"\nwindow_ms = 10000\nflush_interval_ms = 250\n{correlator}\n\
                 {kafka}{clickhouse}",
                names.group_prefix
            ),
        );
        let correlator_config: shadowdiff_correlator::CorrelatorConfig = correlator_config;
        let correlator = Some(supervise(
            "correlator",
            shadowdiff_correlator::run(correlator_config.clone(), shutdown.clone()),
            &failures,
        ));

        let verdict_config = config(
            "verdict",
            &format!(
                "[verdict]\nlisten = \"127.0.0.1:0\"\n{verdict}\n[admin]\nlisten = \"127.0.0.1:0\"\n{clickhouse}{}",
                crate::auth::auth_toml()
            ),
        );
        let verdict = shadowdiff_verdict::Verdict::bind(verdict_config, shutdown.clone())
            .await
            .unwrap_or_else(|e| panic!("verdict: {e}"));
        let verdict_url = format!("http://{}", verdict.local_addr());
        let verdict_admin_url = format!("http://{}", verdict.admin_addr());
        tasks.push(supervise("verdict", verdict.run(shutdown.clone()), &failures));

        let clickhouse = crate::infra::clickhouse_client(&infra.clickhouse_url, &names.database);
        let drop_database = infra.drop_database(&names.database);
        Self {
            names,
            tap_url,
            verdict_url,
            verdict_admin_url,
            clickhouse,
            shutdown,
            tasks,
            correlator,
            correlator_config,
            failures,
            drop_database,
        }
    }

    /// Aborts the correlator's task: its unflushed rows are lost and it commits nothing
    /// more (offsets are only committed after a write). It is not a process crash: the
    /// consumer still leaves the group as it is dropped; `correlator_crash.rs` SIGKILLs a
    /// correlator process.
    pub async fn crash_correlator(&mut self) {
        if let Some(task) = self.correlator.take() {
            task.abort();
            let _ = task.await;
        }
    }

    /// Starts a correlator in the same consumer group, as a restart after a crash.
    pub fn restart_correlator(&mut self) {
        let run = shadowdiff_correlator::run(self.correlator_config.clone(), self.shutdown.clone());
        self.correlator = Some(supervise("correlator", run, &self.failures));
    }

    /// Services that stopped with an error so far, for failure messages.
    pub fn failures(&self) -> Vec<String> {
        self.failures.lock().map(|f| f.clone()).unwrap_or_default()
    }

    /// Stops every service (bounded) and drops this test's database.
    pub async fn stop(self) {
        self.shutdown.cancel();
        for task in self.tasks.into_iter().chain(self.correlator) {
            let _ = tokio::time::timeout(Duration::from_secs(15), task).await;
        }
        let _ = self.clickhouse.query(&self.drop_database).execute().await;
    }
}

/// `service`, run on a two-worker runtime of its own; the future returned waits for it.
async fn apart<T: Send + 'static>(service: impl std::future::Future<Output = T> + Send + 'static) -> T {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("service-apart")
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("a service's runtime: {e}"));
    let (done, result) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = done.send(runtime.block_on(service));
    });
    result.await.unwrap_or_else(|_| panic!("a service's runtime stopped without an answer"))
}

fn supervise<E: std::fmt::Display + Send + 'static>(
    name: &'static str,
    service: impl std::future::Future<Output = Result<(), E>> + Send + 'static,
    failures: &Arc<Mutex<Vec<String>>>,
) -> JoinHandle<()> {
    let failures = failures.clone();
    tokio::spawn(async move {
        if let Err(error) = service.await {
            eprintln!("{name} failed: {error}");
            if let Ok(mut f) = failures.lock() {
                f.push(format!("{name}: {error}"));
            }
        }
    })
}

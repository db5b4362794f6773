//! A verdict service on its own ClickHouse database, with rows crafted by the scenario: for
//! testing verdicts, the CD contracts, the drill-down page and `shadowctl` on known evidence.

use shadowdiff_runtime::CancellationToken;
use shadowdiff_store::{DifferenceRow, ExchangeRow, SampleRow};

use crate::infra::Infra;
use crate::pipeline::config;
use crate::unique;

/// When crafted rows start: [`row`] `i` is `i` seconds later.
pub const START_TS: u32 = 1_795_000_000;

/// `[verdict]` keys for scenarios on crafted rows from [`START_TS`] on, a fixed day in the
/// past: the default window reaches back to it, and no window is bounded.
pub const FROM_START: &str = "default_window_secs = 315360000\nmax_window_secs = 0";

/// A running verdict service and the database it reads.
#[derive(Debug)]
pub struct VerdictService {
    pub url: String,
    /// `/healthz` and `/metrics`.
    pub admin_url: String,
    pub database: String,
    pub clickhouse: clickhouse::Client,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    drop_database: String,
}

impl VerdictService {
    /// Migrates a fresh database and starts a verdict service on it, with the test
    /// credentials (`crate::auth`). `verdict_toml` is added to the `[verdict]` section (gate
    /// overrides).
    pub async fn start(infra: &Infra, verdict_toml: &str) -> Self {
        Self::start_on(infra, &unique("sd_verdict"), verdict_toml).await
    }

    /// [`Self::start`] on `database`, which another service of the test (a correlator) writes.
    pub async fn start_on(infra: &Infra, database: &str, verdict_toml: &str) -> Self {
        let database = database.to_owned();
        let clickhouse_toml = infra.clickhouse_toml(&database);
        let store = shadowdiff_runtime::clickhouse::ClickHouseConfig {
            url: infra.clickhouse_url.clone(),
            database: database.clone(),
            cluster: infra.clickhouse_cluster.clone(),
            ..Default::default()
        };
        shadowdiff_correlator::sink::Sink::connect(&store)
            .await
            .unwrap_or_else(|e| panic!("migrate the test database: {e}"));
        let verdict_config = config(
            "verdict",
            &format!(
                "[verdict]\nlisten = \"127.0.0.1:0\"\n{verdict_toml}\n[admin]\nlisten = \"127.0.0.1:0\"\n{clickhouse_toml}{}",
                crate::auth::auth_toml()
            ),
        );
        let shutdown = CancellationToken::new();
        let verdict = shadowdiff_verdict::Verdict::bind(verdict_config, shutdown.clone())
            .await
            .unwrap_or_else(|e| panic!("verdict: {e}"));
        let url = format!("http://{}", verdict.local_addr());
        let admin_url = format!("http://{}", verdict.admin_addr());
        let run = verdict.run(shutdown.clone());
        let task = tokio::spawn(async move {
            if let Err(error) = run.await {
                panic!("verdict stopped: {error}");
            }
        });
        let clickhouse = crate::infra::clickhouse_client(&infra.clickhouse_url, &database);
        let drop_database = infra.drop_database(&database);
        Self { url, admin_url, database, clickhouse, shutdown, task, drop_database }
    }

    pub async fn insert(&self, exchanges: &[ExchangeRow], differences: &[DifferenceRow], samples: &[SampleRow]) {
        insert(&self.clickhouse, "exchanges", exchanges).await;
        insert(&self.clickhouse, "differences", differences).await;
        insert(&self.clickhouse, "samples", samples).await;
    }

    /// Records that the verdict service was first asked about `revision` of `candidate` at
    /// `first_asked` (Unix seconds), as it would have recorded itself then.
    pub async fn released(&self, candidate: &str, revision: &str, first_asked: u32) {
        let row = shadowdiff_store::ReleaseRow {
            candidate: candidate.into(),
            revision: revision.into(),
            first_asked,
            caller: "api".into(),
        };
        insert(&self.clickhouse, "releases", &[row]).await;
    }

    /// Stops the service and drops its database.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
        let _ = self.clickhouse.query(&self.drop_database).execute().await;
    }
}

async fn insert<T>(client: &clickhouse::Client, table: &str, rows: &[T])
where
    T: clickhouse::Row + clickhouse::RowWrite + for<'a> clickhouse::Row<Value<'a> = T>,
{
    shadowdiff_store::insert::<T, T>(client, table, rows).await.unwrap_or_else(|e| panic!("{e}"));
}

/// The report of the verdict API at `url` (a service's base URL) for `query`, asked with
/// the read token; any answer but 200 fails the test.
pub async fn report(url: &str, query: &str) -> shadowdiff_verdict::VerdictReport {
    let response = reqwest::Client::new()
        .get(format!("{url}/v1/verdict?{query}"))
        .bearer_auth(crate::auth::READ_TOKEN)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET /v1/verdict?{query}: {e}"));
    let status = response.status();
    if status != 200 {
        let body = response.text().await.unwrap_or_default();
        panic!("GET /v1/verdict?{query}: {status}: {body}");
    }
    response.json().await.unwrap_or_else(|e| panic!("GET /v1/verdict?{query}: {e}"))
}

/// Comparison `i` of `deployment` (role from the name: `secondary` is the secondary, anything
/// else a candidate) at stage 10: complete, equal, both legs 200 in 10 ms. Scenarios change
/// the fields they are about with struct update syntax.
pub fn row(deployment: &str, i: u32) -> ExchangeRow {
    ExchangeRow {
        ts: START_TS + i,
        request_id: format!("req-{i}"),
        route: "/items/{id}".into(),
        method: "GET".into(),
        deployment: deployment.into(),
        role: if deployment == "secondary" { "secondary" } else { "candidate" }.into(),
        outcome: "complete".into(),
        primary_status: 200,
        shadow_status: 200,
        primary_error: String::new(),
        shadow_error: String::new(),
        primary_latency_us: 10_000,
        shadow_latency_us: 10_000,
        latency_delta_us: 0,
        status_differs: 0,
        body_differs: 0,
        differences: 0,
        noise: 0,
        stage: "10".into(),
        run: String::new(),
    }
}

/// A difference `row`'s shadow showed at `path`: (primary, shadow) values.
pub fn difference(row: &ExchangeRow, kind: &str, path: &str, values: (&str, &str), noise: bool) -> DifferenceRow {
    DifferenceRow {
        ts: row.ts,
        request_id: row.request_id.clone(),
        route: row.route.clone(),
        deployment: row.deployment.clone(),
        role: row.role.clone(),
        kind: kind.into(),
        path: path.into(),
        primary_value: values.0.into(),
        shadow_value: values.1.into(),
        noise: u8::from(noise),
        run: row.run.clone(),
    }
}

/// `row`'s request as `deployment` (in `role`) answered it: a sampled JSON body.
pub fn sample(row: &ExchangeRow, role: &str, deployment: &str, status: u16, body: &str) -> SampleRow {
    SampleRow {
        ts: row.ts,
        request_id: row.request_id.clone(),
        route: row.route.clone(),
        method: row.method.clone(),
        deployment: deployment.into(),
        role: role.into(),
        status,
        content_type: "application/json".into(),
        headers: "content-type: application/json\n".into(),
        body: body.into(),
        body_length: body.len() as u64,
        truncated: 0,
        run: row.run.clone(),
    }
}

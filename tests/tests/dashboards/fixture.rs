//! The fixture: 40 requests on two routes compared on candidate v2 and secondary v1-b, and
//! 4 more on candidate v3, all within the last hour; the verdict's counts computed from the
//! rows, as an oracle for the SQL; ClickHouse over HTTP; and the optional second run on
//! current ClickHouse.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use shadowdiff_correlator::sink::{Batch, Sink};
use shadowdiff_runtime::clickhouse::ClickHouseConfig;
use shadowdiff_store::{ExchangeRow, SampleRow, VerdictRow};
use shadowdiff_tests::infra::Infra;
use shadowdiff_tests::unique;
use shadowdiff_tests::verdict as rows;

use super::INTERVAL_S;
use super::grafana::{VarValue, Variables};

pub(crate) const USERS: &str = "/users/{id}";
pub(crate) const CART: &str = "/cart/{id}";
pub(crate) const SECONDARY: &str = "v1-b";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leg {
    Equal,
    NoiseOnly,
    Diverged,
    Status5xx,
    Timeout,
    PrimaryDown,
}

fn leg(i: u32) -> Leg {
    match i {
        7 | 13 => Leg::Status5xx,
        21 => Leg::Timeout,
        33 => Leg::PrimaryDown,
        _ if i.is_multiple_of(4) => Leg::Diverged,
        _ if i.is_multiple_of(5) => Leg::NoiseOnly,
        _ => Leg::Equal,
    }
}

fn exchange(ts: u32, request_id: &str, route: &str, deployment: &str, role: &str) -> ExchangeRow {
    ExchangeRow {
        ts,
        request_id: request_id.to_owned(),
        route: route.to_owned(),
        role: role.to_owned(),
        primary_latency_us: 0,
        shadow_latency_us: 0,
        stage: String::new(),
        ..rows::row(deployment, 0)
    }
}

fn with_latency(mut row: ExchangeRow, primary: u64, shadow: u64) -> ExchangeRow {
    row.primary_latency_us = primary;
    row.shadow_latency_us = shadow;
    row.latency_delta_us = i64::try_from(shadow).unwrap() - i64::try_from(primary).unwrap();
    row
}

fn sample(row: &ExchangeRow, deployment: &str, role: &str, status: u16) -> SampleRow {
    let body = format!(r#"{{"id":"{}","price":{}}}"#, row.request_id, if role == "primary" { 100 } else { 120 });
    rows::sample(row, role, deployment, status, &body)
}

fn fixture(now: u32) -> Batch {
    let mut batch = Batch::default();
    for i in 0..40 {
        let ts = now - 45 * 60 + i * 30;
        let id = format!("01938a6e-5f00-7000-8000-{i:012}");
        let route = if i % 2 == 0 { USERS } else { CART };
        let primary_us = 10_000 + 200 * u64::from(i);
        let mut candidate = with_latency(exchange(ts, &id, route, "v2", "candidate"), primary_us, primary_us * 6 / 5);
        candidate.stage = if i < 20 { "1" } else { "10" }.into();
        let mut secondary =
            with_latency(exchange(ts, &id, route, SECONDARY, "secondary"), primary_us, primary_us * 21 / 20);
        secondary.stage.clone_from(&candidate.stage);
        let noisy = matches!(leg(i), Leg::NoiseOnly | Leg::Diverged);
        if noisy {
            (secondary.differences, secondary.noise, secondary.body_differs) = (1, 1, 1);
            batch.differences.push(rows::difference(
                &secondary,
                "changed_value",
                "meta.generated_at",
                ("t1", "t2"),
                true,
            ));
            batch.differences.push(rows::difference(
                &candidate,
                "changed_value",
                "meta.generated_at",
                ("t1", "t3"),
                true,
            ));
        }
        match leg(i) {
            Leg::Equal => {}
            Leg::NoiseOnly => (candidate.differences, candidate.noise, candidate.body_differs) = (1, 1, 1),
            Leg::Diverged => {
                (candidate.differences, candidate.noise, candidate.body_differs) = (2, 1, 1);
                batch.differences.push(rows::difference(&candidate, "changed_value", "price", ("100", "120"), false));
                batch.samples.push(sample(&candidate, "v1", "primary", 200));
                batch.samples.push(sample(&candidate, "v2", "candidate", 200));
            }
            Leg::Status5xx => {
                (candidate.shadow_status, candidate.status_differs, candidate.differences) = (503, 1, 1);
                batch.differences.push(rows::difference(&candidate, "status", "status", ("200", "503"), false));
                batch.samples.push(sample(&candidate, "v1", "primary", 200));
                batch.samples.push(sample(&candidate, "v2", "candidate", 503));
            }
            Leg::Timeout => {
                candidate = with_latency(candidate, primary_us, 2_000_000);
                (candidate.outcome, candidate.shadow_status, candidate.shadow_error) =
                    ("shadow_error".into(), 0, "timeout".into());
            }
            Leg::PrimaryDown => {
                for row in [&mut candidate, &mut secondary] {
                    (row.outcome, row.primary_status, row.primary_error) =
                        ("primary_error".into(), 504, "timeout".into());
                }
            }
        }
        batch.exchanges.push(candidate);
        batch.exchanges.push(secondary);
    }
    for i in 0..4 {
        let id = format!("01938a6e-5f00-7000-8000-1000000000{i:02}");
        let primary_us = 20_000 + 200 * u64::from(i);
        let mut row = with_latency(
            exchange(now - 30 * 60 + i * 60, &id, USERS, "v3", "candidate"),
            primary_us,
            primary_us * 11 / 10,
        );
        row.stage = "shadow".into();
        batch.exchanges.push(row);
    }
    batch
}

/// How much slower each leg is than the primary, by construction.
pub(crate) fn latency_ratio(deployment: &str) -> f64 {
    match deployment {
        "v2" => 1.2,
        "v3" => 1.1,
        SECONDARY => 1.05,
        other => panic!("no latency ratio for {other}"),
    }
}

pub(crate) fn is_new_error(r: &ExchangeRow) -> bool {
    (r.outcome == "complete" || r.outcome == "shadow_error")
        && (r.shadow_status >= 500 || !r.shadow_error.is_empty())
        && r.primary_status < 500
        && r.primary_error.is_empty()
}

/// The verdict's counts, computed here from the rows as an oracle for the SQL.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Counts {
    pub(crate) comparisons: u64,
    pub(crate) compared: u64,
    pub(crate) diverged: u64,
    pub(crate) noisy: u64,
    pub(crate) answered: u64,
    pub(crate) new_errors: u64,
}

impl Counts {
    pub(crate) fn add(&mut self, r: &ExchangeRow) {
        let complete = r.outcome == "complete";
        self.comparisons += 1;
        self.compared += u64::from(complete);
        self.diverged += u64::from(complete && r.differences > r.noise);
        self.noisy += u64::from(complete && r.noise > 0);
        self.answered += u64::from(complete || r.outcome == "shadow_error");
        self.new_errors += u64::from(is_new_error(r));
    }
}

fn f(x: f64) -> String {
    format!("{x:.6}")
}

pub(crate) fn ratio(a: u64, b: u64) -> String {
    f(a as f64 / b as f64)
}

pub(crate) const fn bucket(ts: u32) -> u32 {
    ts / INTERVAL_S * INTERVAL_S
}

/// A query's answer over ClickHouse's HTTP interface: columns with their types, and rows.
#[derive(Debug)]
pub(crate) struct Table {
    pub(crate) columns: Vec<(String, String)>,
    pub(crate) rows: Vec<Vec<Value>>,
}

impl Table {
    pub(crate) fn names(&self) -> Vec<String> {
        self.columns.iter().map(|(name, _)| name.clone()).collect()
    }

    fn index(&self, name: &str) -> usize {
        self.columns.iter().position(|(n, _)| n == name).unwrap_or_else(|| panic!("no column {name}"))
    }

    /// A cell as text: floats to 6 decimals, integers as integers (quoted or not).
    pub(crate) fn cell(&self, row: usize, name: &str) -> String {
        let i = self.index(name);
        let ty = self.columns[i].1.as_str();
        let ty = ty.strip_prefix("Nullable(").and_then(|t| t.strip_suffix(')')).unwrap_or(ty);
        match &self.rows[row][i] {
            Value::Null => "null".into(),
            Value::String(s) if ty.starts_with("Float") => f(s.parse().unwrap_or(f64::NAN)),
            Value::Number(n) if ty.starts_with("Float") => f(n.as_f64().unwrap()),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }

    pub(crate) fn number(&self, row: usize, name: &str) -> f64 {
        self.cell(row, name).parse().unwrap_or_else(|_| panic!("{name} is not a number"))
    }

    /// The named columns of every row, sorted, for comparing as a multiset.
    pub(crate) fn project(&self, names: &[&str]) -> Vec<Vec<String>> {
        let mut rows: Vec<Vec<String>> =
            (0..self.rows.len()).map(|r| names.iter().map(|n| self.cell(r, n)).collect()).collect();
        rows.sort();
        rows
    }
}

/// One database on the server under test, over HTTP.
#[derive(Debug, Clone)]
pub(crate) struct ClickHouse {
    http: reqwest::Client,
    url: String,
    database: String,
}

impl ClickHouse {
    /// Sends one statement; the server's answer, or its error message.
    pub(crate) async fn execute(&self, sql: &str) -> Result<String, String> {
        let response = self
            .http
            .post(format!("{}/?database={}", self.url, self.database))
            .body(sql.to_owned())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let text = response.text().await.map_err(|e| e.to_string())?;
        if status.is_success() { Ok(text) } else { Err(format!("{status}: {}", text.trim())) }
    }

    pub(crate) async fn run(&self, sql: &str) -> Result<Table, String> {
        let text = self.execute(&format!("{}\nFORMAT JSONCompact", sql.trim().trim_end_matches(';'))).await?;
        let json: Value = serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
        let columns = json["meta"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (m["name"].as_str().unwrap().to_owned(), m["type"].as_str().unwrap().to_owned()))
            .collect();
        let rows = json["data"].as_array().unwrap().iter().map(|r| r.as_array().unwrap().clone()).collect();
        Ok(Table { columns, rows })
    }
}

/// A database of its own holding the fixture, dropped by [`Fixture::drop_database`].
pub(crate) struct Fixture {
    _infra: Infra,
    pub(crate) clickhouse: ClickHouse,
    pub(crate) now: u32,
    pub(crate) batch: Batch,
    /// Verdicts given: one per gate, each in an interval of its own.
    pub(crate) verdicts: Vec<VerdictRow>,
}

impl Fixture {
    pub(crate) async fn new(prefix: &str) -> Self {
        let now = u32::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()).unwrap();
        Self::on(Infra::get().await, prefix, now).await
    }

    /// The fixture as of `now`, written by the correlator's sink to `infra`'s ClickHouse.
    pub(crate) async fn on(infra: Infra, prefix: &str, now: u32) -> Self {
        let config = ClickHouseConfig {
            url: infra.clickhouse_url.clone(),
            database: unique(prefix),
            cluster: infra.clickhouse_cluster.clone(),
            ..ClickHouseConfig::default()
        };
        let batch = fixture(now);
        Sink::connect(&config).await.unwrap().write(&batch).await.unwrap();
        let verdict = |minutes_ago: u32, candidate: &str, stage: &str, verdict: &str| VerdictRow {
            ts: now - minutes_ago * 60,
            candidate: candidate.into(),
            stage: stage.into(),
            verdict: verdict.into(),
            caller: "api".into(),
            samples: 20,
            compared: 20,
            divergence_rate: 0.0,
            new_errors: 0,
            p95_delta: 0.0,
            reasons: String::new(),
            revision: "7c9f5d".into(),
            since: now - 3600,
        };
        let verdicts = vec![
            verdict(40, "v2", "1", "pass"),
            verdict(20, "v2", "10", "fail"),
            verdict(25, "v3", "shadow", "inconclusive"),
        ];
        let client = shadowdiff_tests::infra::clickhouse_client(&config.url, &config.database);
        shadowdiff_store::insert::<VerdictRow, _>(&client, "verdicts", &verdicts).await.unwrap();
        let clickhouse =
            ClickHouse { http: reqwest::Client::new(), url: config.url.clone(), database: config.database.clone() };
        Self { _infra: infra, clickhouse, now, batch, verdicts }
    }

    pub(crate) async fn drop_database(&self) {
        let server = ClickHouse { database: "default".into(), ..self.clickhouse.clone() };
        server.execute(&self._infra.drop_database(&self.clickhouse.database)).await.unwrap();
    }

    pub(crate) fn candidates<'a>(&'a self, sel: &'a Selection) -> impl Iterator<Item = &'a ExchangeRow> + 'a {
        self.batch.exchanges.iter().filter(move |r| r.role == "candidate" && sel.matches(&r.deployment, &r.route))
    }
}
/// Which candidates and routes a scenario selects, for the oracle (`None`: all).
#[derive(Debug, Clone)]
pub(crate) struct Selection {
    pub(crate) candidates: Option<Vec<String>>,
    pub(crate) routes: Option<Vec<String>>,
}

impl Selection {
    pub(crate) fn of(vars: &Variables) -> Self {
        let pick = |name: &str| {
            vars.get(name).and_then(|v| match &v.value {
                v if v.is_all() => None,
                VarValue::One(x) => Some(vec![x.clone()]),
                VarValue::Many(xs) => Some(xs.clone()),
            })
        };
        Self { candidates: pick("candidate"), routes: pick("route") }
    }

    pub(crate) fn matches(&self, deployment: &str, route: &str) -> bool {
        self.candidates.as_ref().is_none_or(|c| c.iter().any(|x| x == deployment))
            && self.routes.as_ref().is_none_or(|r| r.iter().any(|x| x == route))
    }
}
/// What one query returned, for the optional second run on current ClickHouse.
#[derive(Debug)]
pub(crate) struct Ran {
    pub(crate) label: String,
    /// A statement run on the fixture just before the query, which its answer depends on.
    pub(crate) before: Option<String>,
    pub(crate) sql: String,
    pub(crate) columns: Vec<String>,
    pub(crate) answer: Vec<Vec<Value>>,
}

// ---------------------------------------------------------------------------------------
// The same queries on a ClickHouse cluster (`deploy/local/services.sh up cluster`), the
// fixture sharded behind its Distributed tables: every answer must be the one server's.

pub(crate) async fn on_a_cluster(fx: &Fixture, ran: &[Ran]) -> Vec<String> {
    let cluster = Fixture::on(Infra::cluster().await, "sd_fixture_cluster", fx.now).await;
    let mut failures = Vec::new();
    for r in ran {
        if let Some(before) = &r.before
            && let Err(e) = cluster.clickhouse.execute(before).await
        {
            failures.push(format!("{} on the cluster, before it: {e}", r.label));
        }
        match cluster.clickhouse.run(&r.sql).await {
            Ok(t) if t.names() == r.columns && t.rows == r.answer => {}
            Ok(t) => failures.push(format!(
                "{} on the cluster: {:?} {:?}, on one server {:?} {:?}\n{}",
                r.label,
                t.names(),
                t.rows,
                r.columns,
                r.answer,
                r.sql
            )),
            Err(e) => failures.push(format!("{} on the cluster: {e}\n{}", r.label, r.sql)),
        }
    }
    eprintln!("{} of {} queries answered alike on the cluster", ran.len() - failures.len(), ran.len());
    cluster.drop_database().await;
    failures
}

// ---------------------------------------------------------------------------------------
// The same queries on current ClickHouse, embedded (chdb), when SHADOWDIFF_CHDB_PYTHON
// names a Python that has it.

const CHDB_SCRIPT: &str = r#"
import json, sys, tempfile
from chdb.session import Session
spec = json.load(open(sys.argv[1]))
s = Session(tempfile.mkdtemp())
s.query("CREATE DATABASE fixture")
s.query("USE fixture")
for statement in spec["statements"]:
    s.query(statement)
for table, rows in spec["rows"].items():
    if rows:
        s.query("INSERT INTO " + table + " FORMAT JSONEachRow " + "\n".join(json.dumps(r) for r in rows))
version = json.loads(s.query("SELECT version() AS v", "JSON").bytes())["data"][0]["v"]
failures = 0
for q in spec["queries"]:
    try:
        got = json.loads(s.query(q["sql"].strip().rstrip(";"), "JSONCompact").bytes())
    except Exception as e:
        failures += 1
        print("FAIL", q["label"], "on", version, ":", e, "\n", q["sql"])
        continue
    columns = [m["name"] for m in got["meta"]]
    if columns != q["columns"] or len(got["data"]) != q["rows"]:
        failures += 1
        print("FAIL", q["label"], "on", version, ":", columns, len(got["data"]), "rows, want", q["columns"], q["rows"])
print(len(spec["queries"]) - failures, "of", len(spec["queries"]), "queries agree on ClickHouse", version)
sys.exit(1 if failures else 0)
"#;

pub(crate) fn current_clickhouse(fx: &Fixture, ran: &[Ran]) -> Vec<String> {
    let Some(python) = std::env::var_os("SHADOWDIFF_CHDB_PYTHON") else {
        eprintln!("not checked on current ClickHouse: set SHADOWDIFF_CHDB_PYTHON to a Python with chdb");
        return Vec::new();
    };
    let statements: Vec<String> = shadowdiff_store::migrations::MIGRATIONS
        .iter()
        .flat_map(|(_, _, sql)| shadowdiff_store::migrations::statements(sql))
        .collect();
    let spec = json!({
        "statements": statements,
        "rows": {
            "exchanges": fx.batch.exchanges,
            "differences": fx.batch.differences,
            "samples": fx.batch.samples,
        },
        "queries": ran.iter().map(|r| json!({"label": r.label, "sql": r.sql, "columns": r.columns, "rows": r.answer.len()})).collect::<Vec<_>>(),
    });
    let file = std::env::temp_dir().join(format!("{}.json", unique("sd_chdb")));
    std::fs::write(&file, spec.to_string()).unwrap();
    let output = std::process::Command::new(python).arg("-c").arg(CHDB_SCRIPT).arg(&file).output().unwrap();
    let _ = std::fs::remove_file(&file);
    let report = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    eprintln!("{}", report.trim());
    if output.status.success() { Vec::new() } else { vec![format!("on current ClickHouse (chdb):\n{report}")] }
}

//! The Grafana dashboards (`grafana/dashboards/*.json`) and README's "Ad-hoc SQL" against
//! the real ClickHouse: every panel query and every variable query is expanded the way the
//! ClickHouse plugin expands it (the frontend's `$__conditionalAll` and variable
//! interpolation, then the backend's macros), run on fixture rows written through the
//! correlator's sink, and checked for its columns and, where the fixture fixes them, its
//! exact values. Prometheus panels may only name metrics the services register.
//!
//! Macro expansion follows grafana/clickhouse-datasource: `$__timeFilter(col)`,
//! `$__fromTime`, `$__toTime`, `$__interval_s` (pkg/macros) and `$__conditionalAll`
//! (src/data/CHDatasource.ts). Anything else left in a query fails the test. The backend
//! has parsed macros two ways over the plugin's releases (sqlutil's scan, which lets a
//! macro without arguments swallow text up to a later `(...)`, and macropro's, which does
//! not); a query must expand to the same SQL under both.
//!
//! Set `SHADOWDIFF_CHDB_PYTHON` to a Python with the `chdb` package (embedded current
//! ClickHouse) to also run every query there and compare columns and row counts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "dashboards/expect.rs"]
mod expect;
#[path = "dashboards/fixture.rs"]
mod fixture;
#[path = "dashboards/grafana.rs"]
mod grafana;
#[path = "dashboards/promql.rs"]
mod promql;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

use expect::{PANEL_COLUMNS, check_values};
use fixture::{
    CART, Counts, Fixture, Ran, Selection, USERS, current_clickhouse, is_new_error, latency_ratio, on_a_cluster,
};
use grafana::{QueryRange, VarValue, Variable, Variables, expand, reads_final};
use promql::{check_promql, registered_metrics};

const CLICKHOUSE_UID: &str = "shadowdiff-clickhouse";
const PROMETHEUS_UID: &str = "prometheus";
/// What Grafana would pass as the query interval; buckets hold two fixture exchanges.
const INTERVAL_S: u32 = 60;
const VERDICT_LINK: &str = "${verdict_url}/exchanges/${__value.raw}";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

// ---------------------------------------------------------------------------------------
// The dashboards.

#[derive(Debug)]
struct Dashboard {
    file: String,
    json: Value,
}

fn dashboards() -> Vec<Dashboard> {
    let dir = root().join("grafana/dashboards");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            Dashboard { file: path.file_name().unwrap().to_string_lossy().into_owned(), json }
        })
        .collect()
}

impl Dashboard {
    fn uid(&self) -> &str {
        self.json["uid"].as_str().unwrap()
    }

    /// Every panel, including those inside collapsed rows.
    fn panels(&self) -> Vec<&Value> {
        let mut out = Vec::new();
        for panel in self.json["panels"].as_array().unwrap() {
            out.push(panel);
            out.extend(panel["panels"].as_array().into_iter().flatten());
        }
        out.into_iter().filter(|p| p["type"] != "row").collect()
    }

    fn variables(&self) -> Vec<&Value> {
        self.json["templating"]["list"].as_array().map(|l| l.iter().collect()).unwrap_or_default()
    }
}

fn datasource_uid<'a>(target: &'a Value, panel: &'a Value) -> &'a str {
    target["datasource"]["uid"].as_str().or_else(|| panel["datasource"]["uid"].as_str()).unwrap_or("")
}

fn variable_sql(var: &Value) -> &str {
    var["query"].as_str().or_else(|| var["query"]["rawSql"].as_str()).unwrap_or("")
}

/// The variable values each dashboard is run with. Variables not set here keep their
/// dashboard default.
fn scenarios(uid: &str) -> Vec<(&'static str, Vec<(&'static str, VarValue)>)> {
    let one = |v: &str| VarValue::One(v.to_owned());
    match uid {
        "shadowdiff-overview" => vec![
            ("all", vec![("candidate", VarValue::many(&["$__all"])), ("route", VarValue::many(&["$__all"]))]),
            ("v2 on cart", vec![("candidate", VarValue::many(&["v2"])), ("route", VarValue::many(&[CART]))]),
            (
                "v2 and v3 on users",
                vec![("candidate", VarValue::many(&["v2", "v3"])), ("route", VarValue::many(&[USERS]))],
            ),
        ],
        "shadowdiff-route" => vec![
            ("v2 on users", vec![("candidate", one("v2")), ("route", one(USERS))]),
            ("v2 on cart", vec![("candidate", one("v2")), ("route", one(CART))]),
        ],
        _ => vec![("default", Vec::new())],
    }
}

/// Resolves a dashboard's variables in order for one scenario: query variables are run
/// (their options must match the fixture), textboxes and constants keep their value.
async fn resolve_variables(
    fx: &Fixture,
    dashboard: &Dashboard,
    chosen: &[(&str, VarValue)],
    range: QueryRange,
    failures: &mut Vec<String>,
) -> Variables {
    let mut vars = Variables::new();
    for var in dashboard.variables() {
        let name = var["name"].as_str().unwrap().to_owned();
        let default = var["current"]["value"].clone();
        let mut value = match &default {
            Value::Array(vs) => VarValue::Many(vs.iter().map(|v| v.as_str().unwrap().to_owned()).collect()),
            Value::String(v) => VarValue::One(v.clone()),
            _ => VarValue::One(var["query"].as_str().unwrap_or("").to_owned()),
        };
        let mut options = Vec::new();
        if var["type"] == "query" {
            let label = format!("{} variable {name}", dashboard.file);
            if var["datasource"]["uid"] != CLICKHOUSE_UID {
                failures.push(format!("{label}: not on the ClickHouse datasource"));
                continue;
            }
            let sql = match expand(variable_sql(var), &vars, range) {
                Ok(sql) => sql,
                Err(e) => {
                    failures.push(format!("{label}: {e}"));
                    continue;
                }
            };
            match fx.clickhouse.run(&sql).await {
                Ok(t) => options = (0..t.rows.len()).map(|r| t.cell(r, &t.columns[0].0)).collect(),
                Err(e) => failures.push(format!("{label}: {e}\n{sql}")),
            }
            let sel = Selection::of(&vars);
            let want: BTreeSet<String> = fx
                .candidates(&Selection { routes: None, ..sel })
                .map(|r| if name == "route" { r.route.clone() } else { r.deployment.clone() })
                .collect();
            if options != want.iter().cloned().collect::<Vec<_>>() {
                failures.push(format!("{label}: options {options:?}, want {want:?}"));
            }
        }
        if let Some((_, chosen)) = chosen.iter().find(|(n, _)| *n == name) {
            value = chosen.clone();
        }
        let is_multi = var["multi"].as_bool().unwrap_or(false);
        if matches!(value, VarValue::Many(_)) != is_multi && var["type"] == "query" {
            failures.push(format!(
                "{} variable {name}: a multi variable holds a list, a single one a string",
                dashboard.file
            ));
        }
        vars.insert(name, Variable { value, options });
    }
    vars
}

#[tokio::test]
async fn every_dashboard_query_runs_on_the_fixture() {
    let fx = Fixture::new("sd_dash").await;
    let range = QueryRange { from: fx.now - 3600, to: fx.now, interval_s: INTERVAL_S };
    let mut failures = Vec::new();
    let mut ran = Vec::new();
    let mut answered: BTreeMap<String, bool> = BTreeMap::new();
    let mut covered: BTreeSet<(&str, &str)> = BTreeSet::new();

    for dashboard in dashboards() {
        for (scenario, chosen) in scenarios(dashboard.uid()) {
            let vars = resolve_variables(&fx, &dashboard, &chosen, range, &mut failures).await;
            let sel = Selection::of(&vars);
            for panel in dashboard.panels() {
                let title = panel["title"].as_str().unwrap();
                for target in panel["targets"].as_array().into_iter().flatten() {
                    let uid = datasource_uid(target, panel);
                    if uid == PROMETHEUS_UID {
                        continue;
                    }
                    let label = format!("{} / {title} / {} [{scenario}]", dashboard.file, target["refId"]);
                    if uid != CLICKHOUSE_UID {
                        failures.push(format!("{label}: unknown datasource uid {uid:?}"));
                        continue;
                    }
                    let Some((d, t, columns)) =
                        PANEL_COLUMNS.iter().find(|(d, t, _)| *d == dashboard.uid() && *t == title)
                    else {
                        failures.push(format!("{label}: no expected columns in PANEL_COLUMNS"));
                        continue;
                    };
                    covered.insert((*d, *t));
                    let raw = target["rawSql"].as_str().unwrap_or("");
                    let sql = match reads_final(raw).and_then(|()| expand(raw, &vars, range)) {
                        Ok(sql) => sql,
                        Err(e) => {
                            failures.push(format!("{label}: {e}"));
                            continue;
                        }
                    };
                    let table = match fx.clickhouse.run(&sql).await {
                        Ok(table) => table,
                        Err(e) => {
                            failures.push(format!("{label}: {e}\n{sql}"));
                            continue;
                        }
                    };
                    if table.names() != *columns {
                        failures.push(format!("{label}: columns {:?}, want {columns:?}", table.names()));
                        continue;
                    }
                    if target["format"] == 0 && table.columns[0] != (String::from("time"), String::from("DateTime")) {
                        failures.push(format!(
                            "{label}: a time series starts with `time` DateTime, not {:?}",
                            table.columns[0]
                        ));
                    }
                    if columns.contains(&"request_id") && !links_to_verdict(&dashboard, panel) {
                        failures.push(format!("{label}: request_id must link to {VERDICT_LINK}"));
                    }
                    if let Err(e) = check_values(&fx, dashboard.uid(), title, &sel, &table) {
                        failures.push(format!("{label}: {e}\n{sql}"));
                    }
                    *answered.entry(format!("{} / {title}", dashboard.file)).or_default() |= !table.rows.is_empty();
                    ran.push(Ran { label, before: None, sql, columns: table.names(), answer: table.rows });
                }
            }
        }
    }
    for (panel, _) in answered.iter().filter(|(_, any)| !**any) {
        failures.push(format!("{panel}: no rows in any scenario; the fixture should exercise it"));
    }
    for (d, t, _) in PANEL_COLUMNS.iter().filter(|(d, t, _)| !covered.contains(&(*d, *t))) {
        failures.push(format!("PANEL_COLUMNS names {d} / {t}, which no dashboard has"));
    }
    eprintln!("ran {} dashboard queries", ran.len());
    failures.extend(current_clickhouse(&fx, &ran));
    failures.extend(on_a_cluster(&fx, &ran).await);
    fx.drop_database().await;
    assert!(failures.is_empty(), "{} problem(s):\n\n{}", failures.len(), failures.join("\n\n"));
}

/// Whether the panel links its request_id column to the verdict service's drill-down page,
/// through a `verdict_url` variable that defaults to the local verdict service.
fn links_to_verdict(dashboard: &Dashboard, panel: &Value) -> bool {
    let var_ok = dashboard.variables().iter().any(|v| {
        v["name"] == "verdict_url"
            && matches!(v["type"].as_str(), Some("textbox" | "constant"))
            && v["query"] == "http://localhost:8090"
    });
    let link_ok = panel["fieldConfig"]["overrides"].as_array().into_iter().flatten().any(|o| {
        o["matcher"]["options"] == "request_id"
            && o["properties"].as_array().into_iter().flatten().any(|p| {
                p["id"] == "links" && p["value"].as_array().into_iter().flatten().any(|l| l["url"] == VERDICT_LINK)
            })
    });
    var_ok && link_ok
}

// ---------------------------------------------------------------------------------------
// README's "Ad-hoc SQL".

fn readme_queries() -> Vec<String> {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let section = readme.split("\n## Ad-hoc SQL\n").nth(1).expect("README has a `## Ad-hoc SQL` section");
    let section = section.split("\n## ").next().unwrap();
    section.split("```sql\n").skip(1).map(|block| block.split("\n```").next().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn readme_ad_hoc_sql_runs_on_the_fixture() {
    let queries = readme_queries();
    assert_eq!(queries.len(), 6, "README's Ad-hoc SQL has six ```sql blocks");
    let fx = Fixture::new("sd_adhoc").await;
    let v2 = Selection { candidates: Some(vec!["v2".into()]), routes: None };
    let mut failures = Vec::new();
    let mut ran = Vec::new();
    for (i, sql) in queries.iter().enumerate() {
        let label = format!("README Ad-hoc SQL #{}", i + 1);
        if let Err(e) = reads_final(sql) {
            failures.push(format!("{label}: {e}"));
        }
        if sql.contains('$') {
            failures.push(format!("{label}: Grafana macros or variables do not work in clickhouse-client"));
        }
        let before = (i == 5).then(|| {
            // Two replay runs of one window: x-1 differs in run a only, x-2 in run b only,
            // x-3 in both alike.
            "INSERT INTO differences (ts, request_id, route, deployment, role, kind, path, \
                          primary_value, shadow_value, noise, run) VALUES \
                          (1763900000, 'ci-a:x-1', '/items/{id}', 'build', 'candidate', 'changed_value', 'price', '1', '2', 0, 'ci-a'), \
                          (1763900000, 'ci-b:x-2', '/items/{id}', 'build', 'candidate', 'changed_value', 'stock', '1', '2', 0, 'ci-b'), \
                          (1763900000, 'ci-a:x-3', '/items/{id}', 'build', 'candidate', 'changed_value', 'name', '1', '2', 0, 'ci-a'), \
                          (1763900000, 'ci-b:x-3', '/items/{id}', 'build', 'candidate', 'changed_value', 'name', '1', '2', 0, 'ci-b')"
                .to_owned()
        });
        if let Some(insert) = &before
            && let Err(e) = fx.clickhouse.execute(insert).await
        {
            failures.push(format!("{label}: the runs' rows: {e}"));
        }
        let t = match fx.clickhouse.run(sql).await {
            Ok(t) => t,
            Err(e) => {
                failures.push(format!("{label}: {e}\n{sql}"));
                continue;
            }
        };
        let (columns, rows): (&[&str], Vec<Vec<String>>) = match i {
            5 => (&["recorded_request", "paths_in_a", "paths_in_b"], vec![vec!["x-1".into()], vec!["x-2".into()]]),
            0 => {
                let mut groups: BTreeMap<String, Counts> = BTreeMap::new();
                for r in fx.candidates(&v2) {
                    groups.entry(r.route.clone()).or_default().add(r);
                }
                let want =
                    groups.into_iter().map(|(route, c)| vec![route, c.compared.to_string(), c.diverged.to_string()]);
                (&["route", "compared", "diverged", "divergence_rate", "noise_only"], want.collect())
            }
            1 => {
                let mut groups: BTreeMap<Vec<String>, u64> = BTreeMap::new();
                for d in fx
                    .batch
                    .differences
                    .iter()
                    .filter(|d| d.role == "candidate" && d.deployment == "v2" && d.noise == 0)
                {
                    *groups.entry(vec![d.route.clone(), d.path.clone(), d.kind.clone()]).or_default() += 1;
                }
                let want = groups.into_iter().map(|(mut k, n)| {
                    k.push(n.to_string());
                    k
                });
                (
                    &["route", "path", "kind", "occurrences", "requests", "primary_example", "candidate_example"],
                    want.collect(),
                )
            }
            2 => {
                let want = fx.candidates(&v2).filter(|r| is_new_error(r)).map(|r| vec![r.request_id.clone()]);
                (
                    &[
                        "ts",
                        "request_id",
                        "route",
                        "method",
                        "outcome",
                        "primary_status",
                        "shadow_status",
                        "shadow_error",
                    ],
                    want.collect(),
                )
            }
            3 => {
                let v2_ids: BTreeSet<&str> =
                    fx.candidates(&v2).filter(|r| r.outcome == "complete").map(|r| r.request_id.as_str()).collect();
                let mut legs: BTreeMap<Vec<String>, u64> = BTreeMap::new();
                for r in fx.batch.exchanges.iter().filter(|r| {
                    r.outcome == "complete"
                        && (r.role == "secondary" || r.deployment == "v2")
                        && v2_ids.contains(r.request_id.as_str())
                }) {
                    *legs.entry(vec![r.role.clone(), r.deployment.clone()]).or_default() += 1;
                }
                for row in 0..t.rows.len() {
                    let want = latency_ratio(&t.cell(row, "deployment")) - 1.0;
                    if (t.number(row, "p95_delta") - want).abs() > 1e-6 {
                        failures
                            .push(format!("{label}: p95_delta {} on row {row}, want {want}", t.cell(row, "p95_delta")));
                    }
                }
                let want = legs.into_iter().map(|(mut k, n)| {
                    k.push(n.to_string());
                    k
                });
                (
                    &[
                        "role",
                        "deployment",
                        "compared",
                        "primary_p50_ms",
                        "shadow_p50_ms",
                        "primary_p95_ms",
                        "shadow_p95_ms",
                        "primary_p99_ms",
                        "shadow_p99_ms",
                        "p95_delta",
                    ],
                    want.collect(),
                )
            }
            _ => {
                let id = "01938a6e-5f00-7000-8000-000000000004";
                let want = fx
                    .batch
                    .differences
                    .iter()
                    .filter(|d| d.request_id == id)
                    .map(|d| vec![d.deployment.clone(), d.path.clone(), d.noise.to_string()]);
                (
                    &[
                        "role",
                        "deployment",
                        "outcome",
                        "primary_status",
                        "shadow_status",
                        "differences",
                        "noise",
                        "kind",
                        "path",
                        "primary_value",
                        "shadow_value",
                        "is_noise",
                    ],
                    want.collect(),
                )
            }
        };
        if t.names() != columns {
            failures.push(format!("{label}: columns {:?}, want {columns:?}", t.names()));
            continue;
        }
        let key: &[&str] = match i {
            0 => &["route", "compared", "diverged"],
            1 => &["route", "path", "kind", "occurrences"],
            2 => &["request_id"],
            3 => &["role", "deployment", "compared"],
            5 => &["recorded_request"],
            _ => &["deployment", "path", "is_noise"],
        };
        let mut want = rows;
        want.sort();
        if t.project(key) != want || want.is_empty() {
            failures.push(format!("{label}: {key:?} = {:?}, want {want:?} (non-empty)", t.project(key)));
        }
        ran.push(Ran { label, before, sql: sql.clone(), columns: t.names(), answer: t.rows });
    }
    failures.extend(current_clickhouse(&fx, &ran));
    failures.extend(on_a_cluster(&fx, &ran).await);
    fx.drop_database().await;
    assert!(failures.is_empty(), "{} problem(s):\n\n{}", failures.len(), failures.join("\n\n"));
}

#[test]
fn prometheus_panels_use_only_registered_metrics() {
    let metrics = registered_metrics();
    for expected in [
        "shadowdiff_tap_events_dropped_total",
        "shadowdiff_correlator_open_exchanges",
        "shadowdiff_tap_publish_seconds",
    ] {
        assert!(metrics.contains_key(expected), "the scan of services/ misses {expected}: {:?}", metrics.keys());
    }
    assert_eq!(metrics["shadowdiff_tap_publish_seconds"].kind, "histogram");
    assert!(metrics["shadowdiff_dead_lettered_total"].labels.contains("reason"));
    let telemetry = std::fs::read_to_string(root().join("services/runtime/src/telemetry.rs")).unwrap();
    let buckets = telemetry.contains("set_buckets");

    let mut failures = Vec::new();
    let mut checked = 0;
    for dashboard in dashboards() {
        for panel in dashboard.panels() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                if datasource_uid(target, panel) != PROMETHEUS_UID {
                    continue;
                }
                let (expr, legend) =
                    (target["expr"].as_str().unwrap_or(""), target["legendFormat"].as_str().unwrap_or(""));
                checked += 1;
                for problem in check_promql(expr, legend, &metrics, buckets) {
                    failures.push(format!(
                        "{} / {} / {}: {problem}\n  {expr}",
                        dashboard.file, panel["title"], target["refId"]
                    ));
                }
                if !expr.contains("shadowdiff_") {
                    failures.push(format!("{} / {}: names no shadowdiff metric", dashboard.file, panel["title"]));
                }
            }
        }
    }
    assert!(checked >= 10, "the pipeline dashboard has Prometheus panels ({checked} targets found)");
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    let provisioned = std::fs::read_to_string(root().join("grafana/provisioning/datasources/prometheus.yaml")).unwrap();
    assert!(
        provisioned.contains(&format!("uid: {PROMETHEUS_UID}")) && provisioned.contains("url: http://prometheus:9090")
    );
    let clickhouse = std::fs::read_to_string(root().join("grafana/provisioning/datasources/clickhouse.yaml")).unwrap();
    assert!(clickhouse.contains(&format!("uid: {CLICKHOUSE_UID}")));
}

#[test]
fn promql_check_catches_what_it_should() {
    let metrics = registered_metrics();
    let problems = |expr: &str, legend: &str| check_promql(expr, legend, &metrics, false);
    assert!(problems("sum by (reason) (rate(shadowdiff_tap_events_dropped_total[5m]))", "{{reason}}").is_empty());
    assert_eq!(problems("rate(shadowdiff_tap_events_lost_total[5m])", "").len(), 1, "unknown metric");
    assert_eq!(problems("rate(shadowdiff_tap_publish_seconds_bucket[5m])", "").len(), 1, "summary has no buckets");
    assert_eq!(problems("shadowdiff_tap_publish_seconds", "").len(), 1, "summary series without quantile");
    assert_eq!(
        problems("sum by (topic) (rate(shadowdiff_tap_events_dropped_total[5m]))", "").len(),
        1,
        "unknown label"
    );
    assert_eq!(problems("rate(shadowdiff_correlator_open_exchanges_sum[5m])", "").len(), 1, "a gauge has no _sum");
}

// ---------------------------------------------------------------------------------------
// The expansion itself, on the plugin's own examples.

#[test]
fn macros_expand_as_the_plugin_expands_them() {
    // pkg/macros/macros_test.go: from 2014-11-12T11:45:26Z to 2015-11-12T11:45:26Z.
    let range = QueryRange { from: 1_415_792_726, to: 1_447_328_726, interval_s: 20 };
    let vars = Variables::new();
    let cases = [
        (
            "select * from foo where $__timeFilter(cast(sth as timestamp))",
            "select * from foo where cast(sth as timestamp) >= toDateTime(1415792726) AND cast(sth as timestamp) <= toDateTime(1447328726)",
        ),
        (
            "select * from foo where ( date >= $__fromTime and date <= $__toTime ) limit 100",
            "select * from foo where ( date >= toDateTime(1415792726) and date <= toDateTime(1447328726) ) limit 100",
        ),
        ("SELECT intDiv(toUInt32(ts), ($__interval_s)) * ($__interval_s)", "SELECT intDiv(toUInt32(ts), (20)) * (20)"),
    ];
    for (raw, want) in cases {
        assert_eq!(expand(raw, &vars, range).unwrap(), want);
    }
    // sqlutil's scan takes the later `(ts)` as $__fromTime's arguments and swallows the text.
    let swallowed = expand("SELECT $__fromTime AS t, count(ts) FROM x", &vars, range).unwrap_err();
    assert!(swallowed.contains("older plugins"), "{swallowed}");
    assert!(expand("SELECT $__timeInterval(ts)", &vars, range).unwrap_err().contains("unknown macro"));
    assert!(expand("SELECT $__interval_ms", &vars, range).unwrap_err().contains("unknown macro"));
    assert!(expand("SELECT 1 -- $__toTime", &vars, range).is_err());

    let mut vars = Variables::new();
    let var = |value: VarValue| Variable { value, options: vec!["a".into(), "b".into()] };
    vars.insert("route".into(), var(VarValue::many(&["$__all"])));
    vars.insert("candidate".into(), var(VarValue::many(&["v2", "v3"])));
    vars.insert("one".into(), var(VarValue::One("x".into())));
    let raw = "WHERE $__conditionalAll(route IN (${route}), $route) AND $__conditionalAll(deployment IN ($candidate), $candidate) AND d = '${one}' AND r IN (${route})";
    assert_eq!(
        expand(raw, &vars, range).unwrap(),
        "WHERE 1=1 AND deployment IN ('v2','v3') AND d = 'x' AND r IN ('a','b')"
    );
    assert!(expand("WHERE x = '${one:sqlstring}'", &vars, range).is_err(), "formats are not emulated");
    assert!(expand("WHERE $__conditionalAll(x = 1, ${one})", &vars, range).is_err(), "plugin 4.x reads only $name");
}

#[test]
fn dashboards_are_well_formed() {
    let boards = dashboards();
    let uids: BTreeSet<&str> = boards.iter().map(Dashboard::uid).collect();
    assert_eq!(uids, ["shadowdiff-overview", "shadowdiff-pipeline", "shadowdiff-route"].into());
    for board in &boards {
        let ids: Vec<u64> = board.json["panels"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|p| std::iter::once(p).chain(p["panels"].as_array().into_iter().flatten()))
            .map(|p| p["id"].as_u64().unwrap())
            .collect();
        assert_eq!(ids.len(), ids.iter().collect::<BTreeSet<_>>().len(), "{}: panel ids are unique", board.file);
        for panel in board.panels() {
            assert!(
                panel["description"].as_str().is_some_and(|d| !d.is_empty()),
                "{}: {} has a description",
                board.file,
                panel["title"]
            );
            assert!(!panel["targets"].as_array().unwrap().is_empty(), "{}: {} has targets", board.file, panel["title"]);
        }
    }
    let provider = std::fs::read_to_string(root().join("grafana/provisioning/dashboards/shadowdiff.yaml")).unwrap();
    assert!(provider.contains("path: /var/lib/grafana/dashboards"), "{provider}");
}

//! A failing candidate's alert, from its comparisons to a person's webhook: the whole pipeline
//! (tap → mirror → correlator → ClickHouse → verdict) on a candidate that changes the price of
//! every 5th item, the verdict service exporting its gauges every second, a real Prometheus
//! (Debian's) scraping them and evaluating the committed rules every second, and a real
//! Alertmanager routing what fires to a webhook receiver this test serves: the demo's
//! (`shadowdiff_demo::alerts`). The alert must arrive named `ShadowdiffCandidateFailing`,
//! for this candidate at stage `shadow`, and nothing else may fire meanwhile.
//!
//! Prometheus and Alertmanager run as child processes on reserved loopback ports, with their
//! own data dirs, and are killed when the test ends however it ends. Without their binaries
//! the test fails saying how to install them.

// Scenario helpers fail the test by panicking, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use shadowdiff_demo::alerts::{self, Alert, Received};
use shadowdiff_demo::backend::{self, Behavior};
use shadowdiff_demo::traffic;
use shadowdiff_tests::infra::Infra;
use shadowdiff_tests::pipeline::{Backends, CANDIDATE, Pipeline, Tuning};
use shadowdiff_tests::ports::ReservedPort;
use shadowdiff_tests::process::KillOnDrop;
use shadowdiff_tests::{eventually, unique};
use shadowdiff_verdict::Decision;

/// The rule that must fire, from the committed rule file.
const ALERT: &str = "ShadowdiffCandidateFailing";
const RULES: &str = "deploy/prometheus/rules/alerts.yml";
/// Every 5th item read comes back with another price: 20% of comparisons diverge.
const REGRESS_EVERY: u64 = 5;
const READS: u64 = 300;
/// The shadow gate, with the evidence it asks for cut to what a test can wait for; the
/// gauges refreshed every second.
const VERDICT: &str = "gauge_interval_secs = 1\n[verdict.gates.shadow]\nmin_samples = 100\nmin_duration_secs = 1\n";
const DEADLINE: Duration = Duration::from_secs(90);

const INSTALL: &str = "apt-get install prometheus prometheus-alertmanager (deploy/local/test.sh installs them)";

/// A program on `PATH`, or a failure that says how to install it.
fn installed(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|dir| dir.join(name)).find(|p| p.is_file()))
        .unwrap_or_else(|| panic!("`{name}` is not on PATH, and this test runs the real one: {INSTALL}"))
}

/// A server process: killed when dropped, its output in `log` for failure messages.
struct Server {
    name: &'static str,
    url: String,
    log: PathBuf,
    _process: KillOnDrop,
}

impl Server {
    fn start(name: &'static str, binary: &Path, args: &[String], port: &ReservedPort, dir: &Path) -> Self {
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(binary)
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}; {INSTALL}", binary.display()));
        Self { name, url: format!("http://{}", port.addr()), log, _process: KillOnDrop(child) }
    }

    /// The end of its log, for a failure to show.
    fn tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        format!("{} log:\n{}", self.name, lines[lines.len().saturating_sub(15)..].join("\n"))
    }

    async fn until_ready(&self) {
        let url = format!("{}/-/ready", self.url);
        eventually(&format!("{} ready", self.name), Duration::from_secs(30), || async {
            match reqwest::get(&url).await {
                Ok(response) if response.status().is_success() => Ok(()),
                Ok(response) => Err(format!("{}; {}", response.status(), self.tail())),
                Err(error) => Err(format!("{error}; {}", self.tail())),
            }
        })
        .await;
    }

    /// A Prometheus API answer's `data`.
    async fn api(&self, path: &str, params: &[(&str, &str)]) -> Result<Value, String> {
        let url = reqwest::Url::parse_with_params(&format!("{}{path}", self.url), params).unwrap();
        let response = reqwest::get(url).await.map_err(|e| format!("GET {path}: {e}"))?;
        let body: Value = response.json().await.map_err(|e| format!("GET {path}: {e}"))?;
        if body["status"] != "success" {
            return Err(format!("GET {path}: {body}"));
        }
        Ok(body["data"].clone())
    }
}

/// A temp dir for the servers' configs and data, removed when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_candidate_reaches_a_person_through_prometheus_and_alertmanager() {
    let (prometheus_bin, alertmanager_bin) = (installed("prometheus"), installed("prometheus-alertmanager"));
    let dir = TempDir(std::env::temp_dir().join(unique("alerts")));
    std::fs::create_dir_all(&dir.0).unwrap();
    let rules = shadowdiff_tests::manifests::repo().join(RULES);

    let received = Received::default();
    let receiver = shadowdiff_tests::serve(alerts::app(received.clone())).await;

    let infra = Infra::get().await;
    let honest = Behavior { noise: true, ..Behavior::default() };
    let backends = Backends {
        primary: shadowdiff_tests::serve(backend::app(honest.clone())).await,
        secondary: shadowdiff_tests::serve(backend::app(honest.clone())).await,
        candidate: shadowdiff_tests::serve(backend::app(Behavior { regress_every: REGRESS_EVERY, ..honest })).await,
    };
    let pipeline = Pipeline::start_tuned(&infra, backends, Tuning { verdict: VERDICT, ..Tuning::default() }).await;
    let scraped = pipeline.verdict_admin_url.trim_start_matches("http://").to_owned();

    // Alertmanager: everything to the receiver, as soon as it comes.
    let alertmanager_port = ReservedPort::new();
    let alertmanager_yml = format!(
        "route:\n  receiver: test\n  group_by: [alertname, candidate, stage]\n  group_wait: 1s\n  group_interval: 1s\n  \
         repeat_interval: 1h\nreceivers:\n  - name: test\n    webhook_configs:\n      - url: http://{receiver}/alerts\n"
    );
    std::fs::write(dir.0.join("alertmanager.yml"), alertmanager_yml).unwrap();
    let alertmanager = Server::start(
        "alertmanager",
        &alertmanager_bin,
        &[
            "--config.file=alertmanager.yml".into(),
            "--storage.path=alertmanager-data".into(),
            format!("--web.listen-address={}", alertmanager_port.addr()),
            // No cluster: it would bind 9094 and wait for peers.
            "--cluster.listen-address=".into(),
        ],
        &alertmanager_port,
        &dir.0,
    );

    // Prometheus: the verdict service's admin port and the committed rules, every second.
    let prometheus_port = ReservedPort::new();
    let prometheus_yml = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\n\
         alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: [\"{}\"]\n\
         scrape_configs:\n  - job_name: verdict\n    static_configs:\n      - targets: [\"{scraped}\"]\n",
        rules.display(),
        alertmanager_port.addr()
    );
    std::fs::write(dir.0.join("prometheus.yml"), prometheus_yml).unwrap();
    let prometheus = Server::start(
        "prometheus",
        &prometheus_bin,
        &[
            "--config.file=prometheus.yml".into(),
            "--storage.tsdb.path=prometheus-data".into(),
            format!("--web.listen-address={}", prometheus_port.addr()),
        ],
        &prometheus_port,
        &dir.0,
    );
    alertmanager.until_ready().await;
    prometheus.until_ready().await;
    let rule_names = prometheus.api("/api/v1/rules", &[]).await.unwrap().to_string();
    assert!(rule_names.contains(ALERT), "Prometheus did not load {ALERT} from {RULES}: {rule_names}");

    traffic::drive(&pipeline.tap_url, &unique("alerts"), READS, 0).await.unwrap();

    // Each hop in turn, so a failure says where the alert stopped.
    let query = format!("candidate={CANDIDATE}&stage=shadow");
    eventually("the verdict API to fail the candidate", DEADLINE, || async {
        let report = shadowdiff_tests::verdict::report(&pipeline.verdict_url, &query).await;
        if report.verdict == Decision::Fail {
            Ok(())
        } else {
            Err(format!(
                "{} on {} samples; services: {:?}",
                report.verdict.as_str(),
                report.samples,
                pipeline.failures()
            ))
        }
    })
    .await;
    let failing = format!("shadowdiff_candidate_verdict{{candidate=\"{CANDIDATE}\",verdict=\"fail\"}}");
    eventually("Prometheus to scrape the failing verdict's gauge", DEADLINE, || async {
        let data = prometheus.api("/api/v1/query", &[("query", &failing)]).await?;
        let value = data["result"][0]["value"][1].as_str().unwrap_or_default().to_owned();
        if value == "1" { Ok(()) } else { Err(format!("{failing} = {data}; {}", prometheus.tail())) }
    })
    .await;
    eventually("Prometheus to fire the alert", DEADLINE, || async {
        let data = prometheus.api("/api/v1/alerts", &[]).await?;
        let firing = data["alerts"].as_array().into_iter().flatten().any(|a| {
            a["labels"]["alertname"] == ALERT && a["labels"]["candidate"] == CANDIDATE && a["state"] == "firing"
        });
        if firing { Ok(()) } else { Err(format!("alerts: {data}")) }
    })
    .await;
    let alert: Alert = eventually("Alertmanager to deliver the alert to the webhook", DEADLINE, || async {
        let all = received.all();
        all.iter()
            .find(|a| a.labels.get("alertname").is_some_and(|n| n == ALERT))
            .cloned()
            .ok_or_else(|| format!("received {all:?}; {}; {}", alertmanager.tail(), prometheus.tail()))
    })
    .await;

    assert_eq!(alert.status, "firing", "{alert:?}");
    let label = |key: &str| alert.labels.get(key).map(String::as_str);
    assert_eq!(label("candidate"), Some(CANDIDATE), "{alert:?}");
    assert_eq!(label("stage"), Some("shadow"), "{alert:?}");
    assert_eq!(label("severity"), Some("critical"), "{alert:?}");
    assert_eq!(
        alert.annotations.get("summary").map(String::as_str),
        Some("Candidate candidate fails its shadow gate"),
        "{alert:?}"
    );
    assert_eq!(
        alert.line(),
        format!(
            "FIRING {ALERT} candidate={CANDIDATE} severity=critical stage=shadow: Candidate {CANDIDATE} fails its shadow gate"
        )
    );
    // The pipeline's own alerts wait minutes: none of them, nor a divergence warning, came.
    let others: Vec<String> = received
        .all()
        .iter()
        .filter(|a| a.labels.get("alertname").is_none_or(|n| n != ALERT))
        .map(Alert::line)
        .collect();
    assert!(others.is_empty(), "other alerts arrived: {others:?}");

    pipeline.stop().await;
}

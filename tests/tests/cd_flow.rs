//! The CD flow without a cluster: Argo Rollouts' analysis and Flagger's webhooks, played as
//! those controllers play them, from the shipped examples' own settings, against the whole
//! pipeline on real infrastructure, across two releases of one candidate Service.
//!
//! Release 1 changes `price` on a fifth of the requests: each controller stops it. Release 2
//! is the fix: each controller takes it through every step to promotion with no manual action,
//! judged only on release 2's own comparisons although release 1's sit in the same table
//! under the same candidate name. Only the pace differs from a cluster: one second where the
//! examples say one minute, and the gates need less evidence.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::Request;
use serde_json::{Value, json};
use shadowdiff_demo::backend::{self, Behavior};
use shadowdiff_demo::traffic;
use shadowdiff_tests::auth::READ_TOKEN;
use shadowdiff_tests::infra::Infra;
use shadowdiff_tests::manifests;
use shadowdiff_tests::pipeline::{Backends, CANDIDATE, Pipeline};
use shadowdiff_tests::unique;
use tower::ServiceExt as _;

/// One controller interval here stands for the examples' minute.
const TICK: Duration = Duration::from_secs(1);

/// Small gates, more evidence at each later stage, so a release is judged in seconds. The
/// scenario is about which rows a release is judged on, so latency is left out of it: on two
/// shared cores, with the whole pipeline in one process, a p95 over a few dozen requests is
/// noise (`verdict_scenarios` judges latency on its own).
const GATES: &str = "[verdict.gates.shadow]\nmin_samples = 40\nmin_duration_secs = 5\nmax_latency_p95_delta = 100.0\nmax_latency_p50_delta = 100.0\n\
     [verdict.gates.1]\nmin_samples = 40\nmin_duration_secs = 5\nmax_latency_p95_delta = 100.0\nmax_latency_p50_delta = 100.0\n\
     [verdict.gates.10]\nmin_samples = 60\nmin_duration_secs = 6\nmax_latency_p95_delta = 100.0\nmax_latency_p50_delta = 100.0\n\
     [verdict.gates.50]\nmin_samples = 80\nmin_duration_secs = 7\nmax_latency_p95_delta = 100.0\nmax_latency_p50_delta = 100.0\n\
     [verdict.gates.100]\nmin_samples = 100\nmin_duration_secs = 8\nmax_latency_p95_delta = 100.0\nmax_latency_p50_delta = 100.0\n";

/// The candidate's Service: whichever release's pods it selects answers.
#[derive(Clone)]
struct CanaryService {
    addr: SocketAddr,
    release: Arc<AtomicUsize>,
}

impl CanaryService {
    async fn start(releases: Vec<Behavior>) -> Self {
        let release = Arc::new(AtomicUsize::new(0));
        let apps: Arc<Vec<axum::Router>> = Arc::new(releases.into_iter().map(backend::app).collect());
        let current = release.clone();
        let router = axum::Router::new().fallback(move |request: Request| {
            let app = apps[current.load(Ordering::SeqCst)].clone();
            async move { app.oneshot(request).await }
        });
        Self { addr: shadowdiff_tests::serve(router).await, release }
    }

    /// The rollout of the next release: its pods take over the Service.
    fn roll_to(&self, release: usize) {
        self.release.store(release, Ordering::SeqCst);
    }
}

/// Reads through the tap, without pause, until stopped.
fn traffic(tap: String, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut batch = 0;
        while !stop.load(Ordering::SeqCst) {
            traffic::drive(&tap, &unique(&format!("cd{batch}")), 10, 0).await.unwrap();
            batch += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
}

/// `url` of the example, at the pipeline's verdict service instead of the cluster's: the
/// example's host must be the verdict API's Service, and its path and query are kept.
fn at_verdict(url: &str, verdict_url: &str) -> String {
    let rest = url.strip_prefix("http://").unwrap_or_else(|| panic!("{url}"));
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let host = authority.split(':').next().unwrap_or_default();
    assert!(host == "shadowdiff-verdict" || host.starts_with("shadowdiff-verdict."), "{url}: not the verdict API");
    format!("{verdict_url}{path}")
}

// ---------------------------------------------------------------------------------------
// Argo Rollouts

/// An AnalysisRun's or metric's end, as Argo Rollouts names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Successful,
    Failed,
    Inconclusive,
    Error,
}

/// `result.<field> == "<value>"`, the only form of condition the example uses.
fn condition(expression: &str) -> (String, String) {
    let (left, right) = expression.split_once("==").unwrap_or_else(|| panic!("teach this test {expression:?}"));
    let field = left.trim().strip_prefix("result.").unwrap_or_else(|| panic!("teach this test {expression:?}"));
    (field.to_owned(), right.trim().trim_matches('"').to_owned())
}

fn limit(metric: &Value, key: &str, default: i64) -> i64 {
    match &metric[key] {
        Value::Null => default,
        Value::Number(n) => n.as_i64().unwrap(),
        Value::String(s) => s.parse().unwrap(),
        other => panic!("{key}: {other}"),
    }
}

/// One AnalysisRun of the template's single web metric with `args`, measured every [`TICK`],
/// assessed as Argo Rollouts' `assessMetricStatus` does (analysis/analysis.go): failure,
/// inconclusive and error limits first, then `consecutiveSuccessLimit`, then `count`.
async fn analysis_run(template: &Value, args: &BTreeMap<String, String>, verdict_url: &str) -> (Phase, Vec<Value>) {
    let metrics = template["spec"]["metrics"].as_array().unwrap();
    assert_eq!(metrics.len(), 1, "one metric");
    let metric = &metrics[0];
    let web = &metric["provider"]["web"];
    assert_eq!(web["jsonPath"], "{$}");
    let mut url = at_verdict(web["url"].as_str().unwrap(), verdict_url);
    for (name, value) in args {
        url = url.replace(&format!("{{{{args.{name}}}}}"), value);
    }
    assert!(!url.contains("{{"), "every argument resolved: {url}");
    let headers: Vec<(String, String)> = web["headers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|h| {
            let mut value = h["value"].as_str().unwrap().to_owned();
            for (name, arg) in args {
                value = value.replace(&format!("{{{{args.{name}}}}}"), arg);
            }
            (h["key"].as_str().unwrap().to_owned(), value)
        })
        .collect();
    let timeout = Duration::from_secs(web["timeoutSeconds"].as_u64().unwrap_or(10));
    let (success, failure) = (
        condition(metric["successCondition"].as_str().unwrap()),
        condition(metric["failureCondition"].as_str().unwrap()),
    );
    let count = limit(metric, "count", 0);
    let failure_limit = limit(metric, "failureLimit", 0);
    let inconclusive_limit = limit(metric, "inconclusiveLimit", 0);
    let error_limit = limit(metric, "consecutiveErrorLimit", 4);
    let success_limit = limit(metric, "consecutiveSuccessLimit", 0);
    assert!(count > 0 && metric["interval"].is_string(), "repeated measurements: {metric}");

    let http = reqwest::Client::builder().timeout(timeout).build().unwrap();
    let (mut measured, mut failed, mut inconclusive, mut errors, mut successes) = (0, 0, 0, 0, 0);
    let mut results = Vec::new();
    loop {
        let mut request = http.get(&url);
        for (key, value) in &headers {
            request = request.header(key, value);
        }
        let result = match request.send().await {
            Ok(response) if response.status().is_success() => response.json::<Value>().await.ok(),
            _ => None,
        };
        match result {
            // An error counts only toward consecutiveErrorLimit, never toward `count`.
            None => {
                errors += 1;
                successes = 0;
            }
            Some(result) => {
                measured += 1;
                errors = 0;
                let holds = |(field, value): &(String, String)| result[field.as_str()] == value.as_str();
                if holds(&success) {
                    successes += 1;
                } else {
                    successes = 0;
                    if holds(&failure) { failed += 1 } else { inconclusive += 1 }
                }
                results.push(result);
            }
        }
        let phase = if failure_limit >= 0 && failed > failure_limit {
            Some(Phase::Failed)
        } else if inconclusive > inconclusive_limit {
            Some(Phase::Inconclusive)
        } else if errors > error_limit {
            Some(Phase::Error)
        } else if success_limit > 0 && successes >= success_limit {
            Some(Phase::Successful)
        } else if measured >= count {
            Some(if success_limit > 0 {
                if failure_limit >= 0 { Phase::Inconclusive } else { Phase::Failed }
            } else {
                Phase::Successful
            })
        } else {
            None
        };
        if let Some(phase) = phase {
            return (phase, results);
        }
        tokio::time::sleep(TICK).await;
    }
}

/// Each analysis step of the Rollout in turn, for the release whose ReplicaSet has
/// `pod_hash`, until one does not succeed. Returns each step's stage and phase, and the
/// verdicts measured.
async fn argo_rollout(verdict_url: &str, pod_hash: &str) -> (Vec<(String, Phase)>, Vec<Value>) {
    let example = "deploy/k8s/examples/argo-rollouts";
    let template = manifests::object(&format!("{example}/analysis-template.yaml"), "AnalysisTemplate");
    let rollout = manifests::object(&format!("{example}/rollout.yaml"), "Rollout");
    let mut steps = Vec::new();
    let mut verdicts = Vec::new();
    for step in rollout["spec"]["strategy"]["canary"]["steps"].as_array().unwrap() {
        let Some(analysis) = step.get("analysis") else { continue };
        let mut args = BTreeMap::new();
        for arg in template["spec"]["args"].as_array().unwrap().iter().chain(analysis["args"].as_array().unwrap()) {
            let name = arg["name"].as_str().unwrap().to_owned();
            let from = &arg["valueFrom"];
            let value = if let Some(value) = arg["value"].as_str() {
                value.to_owned()
            } else if from["secretKeyRef"]["key"] == "token" {
                READ_TOKEN.to_owned() // the shadowdiff-verdict-api Secret's read token
            } else if from["podTemplateHashValue"] == "Latest" {
                pod_hash.to_owned()
            } else if from.is_null() {
                continue; // declared by the template, given by the step
            } else {
                panic!("teach this test the argument {arg}");
            };
            args.insert(name, value);
        }
        assert_eq!(args.get("candidate").map(String::as_str), Some(CANDIDATE_SERVICE));
        args.insert("candidate".into(), CANDIDATE.into()); // the pipeline's name for it
        let (phase, measured) = analysis_run(&template, &args, verdict_url).await;
        steps.push((args["stage"].clone(), phase));
        verdicts.extend(measured);
        if phase != Phase::Successful {
            break;
        }
    }
    (steps, verdicts)
}

// ---------------------------------------------------------------------------------------
// Flagger

#[derive(Debug, PartialEq, Eq)]
enum Canary {
    Promoted,
    RolledBack,
}

/// Flagger's analysis of the canary whose spec has `checksum`, one interval per [`TICK`]:
/// `rollout` hooks each interval, a non-2xx counting toward `threshold` and a rollback; then
/// `confirm-traffic-increase` before each step weight, `confirm-promotion` after the last,
/// each answered 200 or waited on. Returns the outcome and the weights reached.
async fn flagger_canary(verdict_url: &str, checksum: &str) -> (Canary, Vec<u64>) {
    let canary = manifests::object("deploy/k8s/examples/flagger/canary.yaml", "Canary");
    let analysis = &canary["spec"]["analysis"];
    let threshold = analysis["threshold"].as_u64().unwrap();
    let weights: Vec<u64> = analysis["stepWeights"].as_array().unwrap().iter().map(|w| w.as_u64().unwrap()).collect();
    let hooks = analysis["webhooks"].as_array().unwrap();
    let http = reqwest::Client::new();
    let call = |hook: &Value, phase: &'static str| {
        let url = at_verdict(hook["url"].as_str().unwrap(), verdict_url);
        let mut metadata = hook["metadata"].clone();
        // Rendered in from the shadowdiff-verdict-api Secret (the example's kustomization).
        metadata["token"] = json!(READ_TOKEN);
        assert_eq!(metadata["candidate"], CANDIDATE_SERVICE);
        metadata["candidate"] = json!(CANDIDATE); // the pipeline's name for it
        let payload = json!({
            "name": canary["metadata"]["name"], "namespace": "shop", "phase": phase,
            "checksum": checksum, "metadata": metadata,
        });
        let http = http.clone();
        async move { http.post(url).json(&payload).send().await.is_ok_and(|r| r.status().is_success()) }
    };
    let of_type = |kind: &'static str| hooks.iter().filter(move |h| h["type"] == kind);
    let (mut failed_checks, mut weight, mut reached) = (0, 0, Vec::new());
    for _ in 0..180 {
        for hook in of_type("rollout") {
            if !call(hook, "Progressing").await {
                failed_checks += 1;
            }
        }
        if failed_checks >= threshold {
            return (Canary::RolledBack, reached);
        }
        let next = weights.iter().find(|w| **w > weight);
        let (kind, phase) = if next.is_some() {
            ("confirm-traffic-increase", "Progressing")
        } else {
            ("confirm-promotion", "Promoting")
        };
        let mut confirmed = true;
        for hook in of_type(kind) {
            confirmed &= call(hook, phase).await;
        }
        if confirmed {
            match next {
                Some(next) => {
                    weight = *next;
                    reached.push(weight);
                }
                None => return (Canary::Promoted, reached),
            }
        }
        tokio::time::sleep(TICK).await;
    }
    panic!("Flagger's analysis neither promoted nor rolled back: weights {reached:?}, {failed_checks} failed checks");
}

// ---------------------------------------------------------------------------------------

/// The candidate's name in the examples: the mirror target and what the gates ask about. The
/// pipeline names it [`CANDIDATE`]; the players ask about that instead.
const CANDIDATE_SERVICE: &str = "shop-canary";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_releases_through_argo_and_flagger_each_judged_on_its_own_rows() {
    let infra = Infra::get().await;
    let honest = Behavior { noise: true, ..Behavior::default() };
    let canary = CanaryService::start(vec![
        Behavior { regress_every: 5, noise: true, ..Behavior::default() }, // release 1
        honest.clone(),                                                    // release 2, the fix
    ])
    .await;
    let backends = Backends {
        primary: shadowdiff_tests::serve(backend::app(honest.clone())).await,
        secondary: shadowdiff_tests::serve(backend::app(honest)).await,
        candidate: canary.addr,
    };
    let pipeline = Pipeline::start_with(&infra, backends, GATES).await;
    let stop = Arc::new(AtomicBool::new(false));
    let load = traffic(pipeline.tap_url.clone(), stop.clone());

    // Release 1: Argo aborts at its first step; Flagger rolls back.
    let (steps, _) = argo_rollout(&pipeline.verdict_url, "5d8f7c9b4").await;
    assert_eq!(steps, [("1".to_owned(), Phase::Failed)], "Argo aborts release 1 at its first analysis");
    let (outcome, weights) = flagger_canary(&pipeline.verdict_url, "a1b2c3d4").await;
    assert_eq!(outcome, Canary::RolledBack, "Flagger rolls release 1 back (weights reached {weights:?})");

    // Release 2 takes over the candidate Service.
    canary.roll_to(1);
    let (steps, verdicts) = argo_rollout(&pipeline.verdict_url, "7f6e5d4c3").await;
    let stages: Vec<&str> = steps.iter().map(|(stage, _)| stage.as_str()).collect();
    let last = |verdicts: &[Value]| verdicts.last().map(|v| v["reasons"].to_string()).unwrap_or_default();
    assert_eq!(stages, ["1", "10", "50", "100"], "every step's gate reached: {steps:?}; {}", last(&verdicts));
    assert!(steps.iter().all(|(_, phase)| *phase == Phase::Successful), "{steps:?}");
    let (outcome, weights) = flagger_canary(&pipeline.verdict_url, "e5f6a7b8").await;
    assert_eq!((outcome, weights), (Canary::Promoted, vec![1, 10, 50]), "Flagger promotes release 2");

    // Release 2 was judged on its own rows only: none of release 1's diverged comparisons,
    // which are in the same table under the same name, fell in its window.
    let last = verdicts.last().unwrap();
    assert_eq!((last["verdict"].as_str(), last["revision"].as_str()), (Some("pass"), Some("7f6e5d4c3")));
    let since = u32::try_from(last["since"].as_u64().unwrap()).unwrap();
    let diverged = |condition: &'static str| {
        let client = pipeline.clickhouse.clone();
        async move {
            client
                .query(&format!(
                    "SELECT count() FROM exchanges FINAL WHERE deployment = ? AND differences > noise AND {condition}"
                ))
                .bind(CANDIDATE)
                .bind(since)
                .fetch_one::<u64>()
                .await
                .unwrap()
        }
    };
    let (before, after) = (diverged("ts < toDateTime(?)").await, diverged("ts >= toDateTime(?)").await);
    assert!(before >= 10, "release 1's divergence is stored: {before}");
    assert_eq!(after, 0, "and none of it is in release 2's window");
    assert_eq!(last["divergence"]["count"], 0, "{last}");

    stop.store(true, Ordering::SeqCst);
    load.await.unwrap();
    assert!(pipeline.failures().is_empty(), "{:?}", pipeline.failures());
    pipeline.stop().await;
}

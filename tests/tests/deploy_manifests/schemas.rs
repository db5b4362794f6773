//! Every rendered object against its schema: the Kubernetes API schemas (kubernetes-validate,
//! strict), the models generated from the Argo Rollouts CRDs and from KEDA's API types (with
//! the fields and kafka trigger parameters KEDA documents, `autoscaling`), Flagger's documented
//! fields for its Canary, for which no registry ships a schema, and the Prometheus Operator's
//! PrometheusRule fields with its rules checked by promtool (`alert_rules`), and the Altinity
//! clickhouse-operator's objects against its CRDs' fields, their pod and volume claim templates
//! against the Kubernetes API schemas (`altinity`).

use std::process::Command;

use serde_json::{Value, json};

use crate::alert_rules::prometheus_rule_problems;
use crate::altinity::{altinity_embedded, altinity_problems};
use crate::autoscaling::keda_problems;
use crate::render::{group, kind, name, renders};
use crate::tools::{INSTALL, Ran, TempFile, path_tool, repo, run, str_of, venv_tool};

/// Kubernetes versions every object must validate against: the one whose kubectl renders the
/// trees here, and the newest kubernetes-validate knows.
const K8S_VERSIONS: [&str; 2] = ["1.32.0", "1.37.0"];

/// The objects of a render that validate against the Kubernetes API schemas.
fn is_kubernetes(object: &Value) -> bool {
    let group = group(object);
    !group.contains('.') || group.ends_with(".k8s.io")
}

fn kubernetes_validate(objects: &[&Value], version: &str) -> Ran {
    let stream: Vec<String> = objects.iter().map(|o| o.to_string()).collect();
    let file = TempFile::new("yaml", &stream.join("\n---\n"));
    let mut command = Command::new(venv_tool("kubernetes-validate"));
    command.args(["--strict", "--quiet", "--kubernetes-version", version]).arg(&file.0);
    run(command, None)
}

/// Validates custom objects with the models npm `@kubernetes-models/{package}` generates from
/// their CRDs or API types (types, required fields and enums; they accept unknown fields):
/// `argo-rollouts` for Argo Rollouts, `keda` for KEDA.
fn models_validate(package: &str, objects: &[&Value]) -> Ran {
    const SCRIPT: &str = r#"
import { readFileSync } from "node:fs";
const pkg = process.argv[1];
let failed = 0;
for (const object of JSON.parse(readFileSync(0, "utf8"))) {
  try {
    let Model;
    try {
      Model = (await import(`@kubernetes-models/${pkg}/${object.apiVersion}/${object.kind}`))[object.kind];
    } catch (error) {
      throw new Error(`no model for this kind in @kubernetes-models/${pkg}: ${error.message}`);
    }
    new Model(object).validate();
  } catch (error) {
    console.error(`${object.kind}/${object.metadata?.name}: ${error.message}`);
    failed += 1;
  }
}
process.exit(failed ? 1 : 0);
"#;
    let modules = repo().join(".local/deploy-tools/npm");
    assert!(
        modules.join("node_modules/@kubernetes-models").join(package).is_dir(),
        "the models of @kubernetes-models/{package} are missing: {INSTALL}"
    );
    let mut node = Command::new(path_tool("node"));
    // ES modules resolve packages from the working directory.
    node.current_dir(modules).args(["--input-type=module", "--eval", SCRIPT, package]);
    run(node, Some(Value::Array(objects.iter().map(|o| (*o).clone()).collect()).to_string()))
}

/// Flagger's `Canary` (flagger.app/v1beta1) against the fields its documentation gives; no
/// registry ships the CRD's schema.
fn flagger_problems(canary: &Value) -> Vec<String> {
    const SPEC: &[&str] = &[
        "provider",
        "metricsServer",
        "targetRef",
        "autoscalerRef",
        "ingressRef",
        "routeRef",
        "upstreamRef",
        "service",
        "analysis",
        "progressDeadlineSeconds",
        "skipAnalysis",
        "revertOnDeletion",
        "suspend",
    ];
    const ANALYSIS: &[&str] = &[
        "interval",
        "iterations",
        "mirror",
        "mirrorWeight",
        "maxWeight",
        "stepWeight",
        "stepWeights",
        "stepWeightPromotion",
        "threshold",
        "primaryReadyThreshold",
        "canaryReadyThreshold",
        "alerts",
        "metrics",
        "webhooks",
        "match",
        "sessionAffinity",
    ];
    const WEBHOOK: &[&str] = &["name", "type", "url", "timeout", "muteAlert", "metadata", "retries"];
    const HOOK_TYPES: &[&str] = &[
        "confirm-rollout",
        "pre-rollout",
        "rollout",
        "confirm-traffic-increase",
        "confirm-promotion",
        "post-rollout",
        "rollback",
        "event",
    ];
    let mut problems = Vec::new();
    let mut known = |at: &str, value: &Value, keys: &[&str]| match value.as_object() {
        Some(map) => problems
            .extend(map.keys().filter(|k| !keys.contains(&k.as_str())).map(|k| format!("{at}.{k}: unknown field"))),
        None => problems.push(format!("{at}: missing or not an object")),
    };
    let spec = &canary["spec"];
    known("spec", spec, SPEC);
    known("spec.analysis", &spec["analysis"], ANALYSIS);
    let hooks = spec["analysis"]["webhooks"].as_array().cloned().unwrap_or_default();
    for (i, hook) in hooks.iter().enumerate() {
        known(&format!("spec.analysis.webhooks[{i}]"), hook, WEBHOOK);
    }
    if str_of(&canary["apiVersion"]) != "flagger.app/v1beta1" {
        problems.push(format!("apiVersion {}: expected flagger.app/v1beta1", canary["apiVersion"]));
    }
    for field in ["apiVersion", "kind", "name"] {
        if !spec["targetRef"][field].is_string() {
            problems.push(format!("spec.targetRef.{field}: required string"));
        }
    }
    if !spec["service"]["port"].is_u64() {
        problems.push("spec.service.port: required integer".into());
    }
    let analysis = &spec["analysis"];
    let is_duration = |v: &Value| v.as_str().is_some_and(|d| d.len() > 1 && d.ends_with(['s', 'm', 'h']));
    if !is_duration(&analysis["interval"]) {
        problems.push("spec.analysis.interval: required duration such as 1m".into());
    }
    for field in ["threshold", "maxWeight", "stepWeight", "iterations"] {
        if !analysis[field].is_null() && !analysis[field].is_u64() {
            problems.push(format!("spec.analysis.{field}: integer"));
        }
    }
    if !analysis["stepWeights"].as_array().is_none_or(|w| w.iter().all(Value::is_u64)) {
        problems.push("spec.analysis.stepWeights: integers".into());
    }
    for (i, hook) in hooks.iter().enumerate() {
        let at = format!("spec.analysis.webhooks[{i}]");
        if !hook["name"].is_string() || !hook["url"].is_string() {
            problems.push(format!("{at}: name and url are required"));
        }
        if !HOOK_TYPES.contains(&hook["type"].as_str().unwrap_or_default()) {
            problems.push(format!("{at}.type: one of {HOOK_TYPES:?}"));
        }
        if !hook["timeout"].is_null() && !is_duration(&hook["timeout"]) {
            problems.push(format!("{at}.timeout: a duration such as 15s"));
        }
        if !hook["metadata"].as_object().is_none_or(|m| m.values().all(Value::is_string)) {
            problems.push(format!("{at}.metadata: strings only"));
        }
    }
    problems
}

#[test]
fn kubernetes_objects_validate_against_their_schemas() {
    // Neither validator is a rubber stamp.
    let bad_deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": { "name": "bad" },
        "spec": { "selector": {}, "template": { "spec": { "containers": [{ "name": "c", "imagePullPolcy": "Always" }] } } }
    });
    let ran = kubernetes_validate(&[&bad_deployment], K8S_VERSIONS[0]);
    assert!(
        !ran.ok && ran.output.contains("imagePullPolcy"),
        "kubernetes-validate passed a misspelt field:\n{}",
        ran.output
    );
    let bad_template = json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisTemplate", "metadata": { "name": "bad" },
        "spec": { "metrics": [{ "name": "m", "provider": { "web": { "jsonPath": "{$}" } } }] }
    });
    let ran = models_validate("argo-rollouts", &[&bad_template]);
    assert!(!ran.ok && ran.output.contains("url"), "the Argo models passed a web metric without url:\n{}", ran.output);
    let bad_scaled = json!({
        "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": { "name": "bad" },
        "spec": { "scaleTargetRef": { "name": "d" }, "minReplicaCount": "1", "triggers": [{ "type": "kafka", "metadata": {} }] }
    });
    let ran = models_validate("keda", &[&bad_scaled]);
    assert!(
        !ran.ok && ran.output.contains("minReplicaCount must be integer"),
        "the KEDA models passed a replica count that is a string:\n{}",
        ran.output
    );

    for render in renders() {
        let objects: Vec<&Value> = render.objects.iter().collect();
        let (mut kubernetes, custom): (Vec<&Value>, Vec<&Value>) = objects.into_iter().partition(|o| is_kubernetes(o));
        // The pod and volume claim templates inside the Altinity operator's objects.
        let embedded: Vec<Value> = custom.iter().flat_map(|o| altinity_embedded(o)).collect();
        kubernetes.extend(&embedded);
        for version in K8S_VERSIONS {
            let ran = kubernetes_validate(&kubernetes, version);
            assert!(ran.ok, "{}: invalid for Kubernetes {version}:\n{}", render.dir, ran.output);
        }
        for (models, models_group) in [("argo-rollouts", "argoproj.io"), ("keda", "keda.sh")] {
            let objects: Vec<&Value> = custom.iter().copied().filter(|o| group(o) == models_group).collect();
            if !objects.is_empty() {
                let ran = models_validate(models, &objects);
                assert!(ran.ok, "{}: invalid {models_group} objects:\n{}", render.dir, ran.output);
            }
        }
        for object in custom.into_iter().filter(|o| group(o) != "argoproj.io") {
            let problems = match (group(object), kind(object)) {
                ("flagger.app", "Canary") => flagger_problems(object),
                ("keda.sh", _) => keda_problems(object),
                ("monitoring.coreos.com", "PrometheusRule") => prometheus_rule_problems(object),
                ("clickhouse.altinity.com" | "clickhouse-keeper.altinity.com", _) => altinity_problems(object),
                (group, kind) => panic!("{}: nothing validates {group}/{kind}", render.dir),
            };
            let at = format!("{} {}", kind(object), name(object));
            assert!(problems.is_empty(), "{}: {at}:\n  {}", render.dir, problems.join("\n  "));
        }
    }
}

//! The CD gates: Argo Rollouts' analysis and Flagger's webhooks ask the verdict API, by a URL
//! that reaches it from the controller's namespace, with the token secrets.sh made, once per
//! stage and in order.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};
use shadowdiff_runtime::auth::Scope;
use shadowdiff_verdict::gate::STAGES;
use shadowdiff_verdict::{Decision, VerdictReport};

use crate::cluster::{ARGO_NAMESPACE, EXAMPLE_NAMESPACE, FLAGGER_NAMESPACE, port_name};
use crate::configs::{Loaded, Service, fields_of};
use crate::network_policy::{Direction, Peer};
use crate::prepared::prepared;
use crate::render::{Render, Running, name, render};
use crate::tools::{host_port, str_of, yaml_file};

/// The verdict service of a render.
pub(crate) fn verdict_of<'a>(running: &'a [Running<'_>]) -> &'a Loaded {
    &running.iter().find(|r| r.loaded.service == Service::Verdict).expect("the verdict API runs").loaded
}

/// The verdict API as a CD controller reaches it from `from_namespace`: the URL's host names
/// the verdict Service and the tree's namespace (a bare name would resolve in the
/// controller's), leads to the port the verdict service listens on, and the verdict's
/// NetworkPolicy lets the controller in.
fn assert_reaches_verdict(render: &Render, url: &str, from_namespace: &str) {
    let (host, port) = host_port(url);
    let (service, namespace) = host
        .split_once('.')
        .unwrap_or_else(|| panic!("{url}: name the namespace, {host}.NAMESPACE: the controller calls from its own"));
    assert_eq!(namespace, render.namespace(), "{url}: the tree runs in {}", render.namespace());
    let (target, pods) = render.through_service(service, port);
    let running = render.running();
    let verdict = running.iter().find(|r| r.loaded.service == Service::Verdict).expect("the verdict API runs");
    for pods in &pods {
        assert_eq!(pods.owner, name(verdict.workload), "{url} leads to {}", pods.owner);
    }
    assert_eq!(Some(target), verdict.loaded.serves.map(|a| a.port()), "{url} misses the verdict API's port");
    let name_ = port_name(pods[0].template, target);
    let controller = Peer::any_in(from_namespace);
    assert!(
        render.admits(&pods[0], Direction::Ingress, &controller, target, name_.as_deref(), "TCP"),
        "{}: the verdict's NetworkPolicy keeps out the controller in {from_namespace}",
        render.dir
    );
}

/// The mirror's candidate target: (name, the Service host it replays to).
fn mirror_candidate(render: &Render) -> (String, String) {
    let running = render.running();
    let mirror = running.iter().find(|r| r.loaded.service == Service::Mirror).expect("the mirror runs");
    let candidates: Vec<_> = mirror.loaded.candidates().collect();
    assert_eq!(candidates.len(), 1, "{}: the example profile has one candidate", render.dir);
    (candidates[0].name.clone(), host_port(&candidates[0].url).0)
}

/// A metric field as Argo reads it (an int or a string of one).
fn int_field(metric: &Value, field: &str) -> i64 {
    match &metric[field] {
        Value::Number(n) => n.as_i64().expect("an integer"),
        Value::String(s) => s.parse().unwrap_or_else(|_| panic!("{field}: {s:?} is no integer")),
        other => panic!("{field}: {other}"),
    }
}

#[test]
fn argo_rollouts_gates_each_step_on_the_verdict_of_its_release() {
    let render = render("examples/argo-rollouts");
    let (candidate, candidate_host) = mirror_candidate(render);
    let template = render.all("AnalysisTemplate").next().expect("an AnalysisTemplate");
    let metrics = template["spec"]["metrics"].as_array().expect("metrics");
    assert_eq!(metrics.len(), 1, "one metric: the verdict");
    let metric = &metrics[0];
    // pass → Successful, fail → Failed, inconclusive meets neither → Inconclusive, in the
    // words the verdict API answers with.
    let decision = |d: Decision| serde_json::to_value(d).unwrap();
    assert_eq!((decision(Decision::Pass), decision(Decision::Fail)), (json!("pass"), json!("fail")));
    assert_eq!(metric["successCondition"], r#"result.verdict == "pass""#);
    assert_eq!(metric["failureCondition"], r#"result.verdict == "fail""#);
    assert!(fields_of::<VerdictReport>().contains(&"verdict"), "the answer has a `verdict` field");

    // Asked once a minute for up to an hour: the first pass ends the run Successful
    // (consecutiveSuccessLimit), the first fail Failed (failureLimit 0); inconclusive answers
    // only count, and the 60th ends the run Inconclusive before `count` would end it
    // Successful; five errors in a row end it as Error.
    assert_eq!(metric["interval"], "1m");
    let (count, failure, success) =
        (int_field(metric, "count"), int_field(metric, "failureLimit"), int_field(metric, "consecutiveSuccessLimit"));
    let (inconclusive, errors) = (int_field(metric, "inconclusiveLimit"), int_field(metric, "consecutiveErrorLimit"));
    assert_eq!((count, failure, success, inconclusive, errors), (60, 0, 1, 59, 4));
    assert_eq!(inconclusive, count - 1, "the last measurement of an inconclusive run ends it Inconclusive");
    // Argo's ValidateMetric (utils/analysis/factory.go).
    assert!(count >= failure + success && count >= inconclusive, "Argo refuses these limits for count {count}");

    let web = &metric["provider"]["web"];
    let url = str_of(&web["url"]);
    let expected = format!(
        "http://shadowdiff-verdict.{EXAMPLE_NAMESPACE}:8090/v1/verdict?candidate={{{{args.candidate}}}}\
         &stage={{{{args.stage}}}}&revision={{{{args.revision}}}}"
    );
    assert_eq!(url, expected);
    assert_eq!(web["jsonPath"], "{$}");
    assert_reaches_verdict(render, url, ARGO_NAMESPACE);

    let args = template["spec"]["args"].as_array().expect("args");
    let arg = |n: &str| args.iter().find(|a| a["name"] == n).unwrap_or_else(|| panic!("no argument {n}"));
    for given_by_the_step in ["candidate", "stage", "revision"] {
        let arg = arg(given_by_the_step);
        assert!(arg["value"].is_null() && arg["valueFrom"].is_null(), "{given_by_the_step}: each step gives it");
    }
    let headers = web["headers"].as_array().expect("headers");
    let authorization = headers.iter().find(|h| h["key"] == "Authorization").expect("an Authorization header");
    let token_arg = str_of(&authorization["value"])
        .strip_prefix("Bearer {{args.")
        .and_then(|rest| rest.strip_suffix("}}"))
        .expect("Authorization: Bearer {{args.NAME}}");
    let secret = &arg(token_arg)["valueFrom"]["secretKeyRef"];
    let sent = render.secret(str_of(&secret["name"]), str_of(&secret["key"]));
    let sent = sent.expect("the verdict token comes from a Secret secrets.sh creates");
    assert_eq!(sent, prepared().cd_token());
    let running = render.running();
    let verdict = verdict_of(&running);
    assert!(verdict.closed(), "the verdict API asks for credentials");
    assert!(verdict.accepts(&sent, Scope::Read), "the verdict API accepts the token the analysis sends, for read");

    let rollout = render.all("Rollout").next().expect("a Rollout");
    let canary = &rollout["spec"]["strategy"]["canary"];
    assert_eq!(str_of(&canary["canaryService"]), candidate_host, "the mirror replays to the canary's Service");
    assert_eq!(canary["stableMetadata"]["labels"]["shadowdiff.dev/track"], "stable");
    assert_eq!(canary["canaryMetadata"]["labels"]["shadowdiff.dev/track"], "canary");
    let mut weight = 0;
    let mut gated = Vec::new();
    let steps = canary["steps"].as_array().expect("steps");
    for step in steps {
        assert!(step["pause"].is_null(), "no pause steps: each analysis waits for its evidence");
        if let Some(w) = step["setWeight"].as_u64() {
            weight = w;
        } else if let Some(analysis) = step["analysis"].as_object() {
            let templates = analysis["templates"].as_array().expect("templates");
            assert_eq!(templates, &vec![json!({ "templateName": name(template) })]);
            let arg = |n: &str| {
                analysis["args"].as_array().and_then(|a| a.iter().find(|x| x["name"] == n)).cloned().unwrap_or_default()
            };
            assert_eq!(arg("candidate")["value"], json!(candidate), "step at {weight}%: candidate");
            assert_eq!(
                arg("revision")["valueFrom"],
                json!({ "podTemplateHashValue": "Latest" }),
                "step at {weight}%: the release is the canary's pod-template hash"
            );
            let stage = str_of(&arg("stage")["value"]).to_owned();
            assert!(STAGES.contains(&stage.as_str()), "{stage} is no stage the verdict API gates");
            if stage != "100" {
                assert_eq!(stage, weight.to_string(), "each weight step's gate names its weight");
            }
            gated.push(stage);
        }
    }
    assert_eq!(gated, ["1", "10", "50", "100"], "each stage is gated once, in order");
    assert!(steps.last().is_some_and(|s| s["analysis"].is_object()), "the stage-100 gate is the promotion's");
    if canary["trafficRouting"].is_null() {
        // Weights are replica counts then, taken from the stable: at 100 the stable, the tap's
        // upstream and the secondary, would have no pods.
        assert!(weight < 100, "without trafficRouting, setWeight {weight} empties the stable ReplicaSet");
    }
}

#[test]
fn flagger_webhooks_ask_the_verdict_api() {
    let render = render("examples/flagger");
    let (candidate, candidate_host) = mirror_candidate(render);
    let canary = render.all("Canary").next().expect("a Canary");
    let target = &canary["spec"]["targetRef"];
    assert!(
        render.find(str_of(&target["kind"]), str_of(&target["name"])).is_some(),
        "the Canary's target is in the tree"
    );
    // Flagger names the canary's Service <target>-canary; the mirror replays to it.
    assert_eq!(format!("{}-canary", str_of(&target["name"])), candidate_host);
    assert!(canary["spec"]["analysis"]["threshold"].as_u64().is_some_and(|t| t > 0), "failed checks roll back");

    // Flagger's webhooks send no headers: each carries the token in its metadata, put there
    // from verdict-token.env when the tree renders, never written in the Canary's file.
    let running = render.running();
    let verdict = verdict_of(&running);
    assert!(verdict.closed(), "the verdict API Flagger calls asks for credentials too");
    let source = yaml_file("deploy/k8s/examples/flagger/canary.yaml");
    let source_hooks = source["spec"]["analysis"]["webhooks"].as_array().expect("webhooks");
    assert!(source_hooks.iter().all(|h| h["metadata"]["token"].is_null()), "canary.yaml holds no token");
    let hooks = canary["spec"]["analysis"]["webhooks"].as_array().expect("webhooks");
    let mut types = BTreeMap::new();
    for hook in hooks {
        let hook_name = str_of(&hook["name"]);
        let url = str_of(&hook["url"]);
        assert_reaches_verdict(render, url, FLAGGER_NAMESPACE);
        let metadata = hook["metadata"].as_object().expect("metadata");
        // The release comes from the payload's checksum: nothing to write per release.
        let keys: BTreeSet<&str> = metadata.keys().map(String::as_str).collect();
        assert_eq!(keys, ["candidate", "stage", "token"].into_iter().collect(), "{hook_name}: metadata");
        assert_eq!(metadata["candidate"], candidate.as_str(), "{hook_name}: metadata.candidate");
        let token = str_of(&metadata["token"]);
        assert_eq!(token, prepared().cd_token(), "{hook_name}: metadata.token is the CD token of verdict-token.env");
        assert!(verdict.accepts(token, Scope::Read), "{hook_name}: the verdict API refuses its metadata.token");
        let stage = str_of(&metadata["stage"]);
        assert!(STAGES.contains(&stage), "{hook_name}: metadata.stage {stage:?} is none of {STAGES:?}");
        types.insert(str_of(&hook["type"]), (url.to_owned(), stage.to_owned()));
    }
    let gate = format!("http://shadowdiff-verdict.{EXAMPLE_NAMESPACE}:8090/v1/flagger/gate");
    let check = format!("http://shadowdiff-verdict.{EXAMPLE_NAMESPACE}:8090/v1/flagger/check");
    // Hooks carry no weight: traffic increases and checks under one policy; the promotion,
    // after which the canary serves everyone, under the strictest.
    let expected: BTreeMap<&str, (String, String)> = [
        ("confirm-traffic-increase", (gate.clone(), "shadow".to_owned())),
        ("confirm-promotion", (gate, "100".to_owned())),
        ("rollout", (check, "shadow".to_owned())),
    ]
    .into_iter()
    .collect();
    assert_eq!(types, expected, "one webhook of each type, to its endpoint, at its stage");
}

//! The alert rules (`deploy/prometheus/rules/alerts.yml`) and the Prometheus and Alertmanager
//! configs that load them: `promtool check rules` and `promtool test rules` on the committed
//! files, every rule's tests firing and silent, the Kubernetes copy (a PrometheusRule in
//! `deploy/k8s/alerts`) equal to the file, and the compose stack's and the local demo's
//! Prometheus and Alertmanager wired to the rules, the services and the webhook receiver.
//!
//! promtool and amtool come with Debian's `prometheus` and `prometheus-alertmanager`; a
//! missing one fails these tests with the command that installs it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::compose::{compose_services, volumes};
use crate::configs::{SERVICES, Service};
use crate::render::{kind, name, render};
use crate::tools::{Ran, TempFile, arg_after, host_port, read, repo, run, str_of, strings, yaml_file};

const RULES: &str = "deploy/prometheus/rules/alerts.yml";
const RULE_TESTS: &str = "deploy/prometheus/rules/alerts_test.yml";

const INSTALL_PROMETHEUS: &str = "apt-get install prometheus prometheus-alertmanager \
     (deploy/local/test.sh and deploy/k8s/validators.sh install them)";

/// promtool or amtool, from `PATH`; a missing one fails the test saying how to install it.
fn prometheus_tool(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|dir| dir.join(name)).find(|p| p.is_file()))
        .unwrap_or_else(|| panic!("`{name}` is not on PATH: {INSTALL_PROMETHEUS}"))
}

fn promtool(args: &[&str], files: &[&Path]) -> Ran {
    let mut command = Command::new(prometheus_tool("promtool"));
    command.current_dir(repo()).args(args).args(files);
    run(command, None)
}

/// `promtool check rules` on a rule file's groups, given as JSON (which is YAML).
pub(crate) fn check_rule_groups(groups: &Value) -> Ran {
    let file = TempFile::new("json", &serde_json::json!({ "groups": groups }).to_string());
    promtool(&["check", "rules"], &[&file.0])
}

/// The PrometheusRule's fields, as the Prometheus Operator's CRD (monitoring.coreos.com/v1)
/// defines them; its groups are checked by promtool, as the operator's admission webhook
/// would.
pub(crate) fn prometheus_rule_problems(rule: &Value) -> Vec<String> {
    const GROUP: &[&str] =
        &["name", "interval", "rules", "partial_response_strategy", "limit", "query_offset", "labels"];
    const RULE: &[&str] = &["alert", "record", "expr", "for", "keep_firing_for", "labels", "annotations"];
    let mut problems = Vec::new();
    if rule["apiVersion"] != "monitoring.coreos.com/v1" {
        problems.push(format!("apiVersion {}: expected monitoring.coreos.com/v1", rule["apiVersion"]));
    }
    let spec = rule["spec"].as_object().map(|s| s.keys().cloned().collect::<Vec<_>>()).unwrap_or_default();
    if spec != ["groups"] {
        problems.push(format!("spec: holds `groups` only, found {spec:?}"));
    }
    let groups = rule["spec"]["groups"].as_array().cloned().unwrap_or_default();
    if groups.is_empty() {
        problems.push("spec.groups: none".into());
    }
    let mut known = |at: String, value: &Value, keys: &[&str]| {
        let map = value.as_object().cloned().unwrap_or_default();
        problems.extend(map.keys().filter(|k| !keys.contains(&k.as_str())).map(|k| format!("{at}.{k}: unknown field")));
    };
    for (g, group) in groups.iter().enumerate() {
        known(format!("spec.groups[{g}]"), group, GROUP);
        for (r, rule) in group["rules"].as_array().into_iter().flatten().enumerate() {
            known(format!("spec.groups[{g}].rules[{r}]"), rule, RULE);
        }
    }
    let checked = check_rule_groups(&rule["spec"]["groups"]);
    if !checked.ok {
        problems.push(format!("promtool check rules:\n{}", checked.output));
    }
    problems
}

/// Every alert rule: (group, alert name).
fn alerts(groups: &Value) -> Vec<(String, String)> {
    let groups = groups.as_array().expect("groups is a list");
    groups
        .iter()
        .flat_map(|g| {
            let group = str_of(&g["name"]).to_owned();
            g["rules"].as_array().expect("rules").iter().map(move |r| (group.clone(), str_of(&r["alert"]).to_owned()))
        })
        .collect()
}

#[test]
fn promtool_checks_the_rules_and_passes_their_tests() {
    let ran = promtool(&["check", "rules"], &[Path::new(RULES)]);
    assert!(ran.ok, "promtool check rules {RULES}:\n{}", ran.output);
    let ran = promtool(&["test", "rules"], &[Path::new(RULE_TESTS)]);
    assert!(ran.ok && ran.output.contains("SUCCESS"), "promtool test rules {RULE_TESTS}:\n{}", ran.output);

    // Neither is a rubber stamp: a broken expression fails the check, a wrong expectation the test.
    let mut groups = yaml_file(RULES)["groups"].clone();
    groups[0]["rules"][0]["expr"] = Value::from("max by (candidate) (shadowdiff_candidate_verdict");
    let ran = check_rule_groups(&groups);
    assert!(!ran.ok, "promtool passed a broken expression:\n{}", ran.output);
    let rules = repo().join(RULES).display().to_string();
    let tests = read(&repo().join(RULE_TESTS)).replacen("  - alerts.yml", &format!("  - {rules}"), 1).replacen(
        "severity: critical",
        "severity: page",
        1,
    );
    let file = TempFile::new("yml", &tests);
    let ran = promtool(&["test", "rules"], &[&file.0]);
    assert!(!ran.ok && ran.output.contains("severity=\"critical\""), "a wrong expectation passed:\n{}", ran.output);
}

#[test]
fn every_alert_is_tested_firing_and_silent() {
    let rules = yaml_file(RULES);
    let tests = yaml_file(RULE_TESTS);
    assert_eq!(strings(&tests["rule_files"]), ["alerts.yml"], "{RULE_TESTS} tests {RULES}");
    let cases: Vec<&Value> = tests["tests"]
        .as_array()
        .expect("tests")
        .iter()
        .flat_map(|t| t["alert_rule_test"].as_array().expect("alert_rule_test").iter())
        .collect();
    let names: Vec<(String, String)> = alerts(&rules["groups"]);
    assert!(names.len() >= 8, "alerts in {RULES}: {names:?}");
    for (group, alert) in &names {
        let of_it: Vec<&&Value> = cases.iter().filter(|c| c["alertname"] == alert.as_str()).collect();
        let firing = of_it.iter().filter(|c| c["exp_alerts"].as_array().is_some_and(|a| !a.is_empty())).count();
        let silent = of_it.iter().filter(|c| c["exp_alerts"].as_array().is_some_and(Vec::is_empty)).count();
        assert!(firing > 0 && silent > 0, "{group}/{alert}: {firing} firing and {silent} silent cases in {RULE_TESTS}");
        for case in of_it {
            for expected in case["exp_alerts"].as_array().into_iter().flatten() {
                let labels = &expected["exp_labels"];
                assert!(labels["severity"].is_string(), "{alert}: the expected alert has no severity: {labels}");
                let annotations = &expected["exp_annotations"];
                for key in ["summary", "description", "runbook_url"] {
                    assert!(annotations[key].is_string(), "{alert}: the expected alert has no {key}: {annotations}");
                }
            }
        }
    }
    // Every rule names its severity, and its annotations a person can act on.
    for group in rules["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            let alert = str_of(&rule["alert"]);
            assert!(["critical", "warning"].contains(&str_of(&rule["labels"]["severity"])), "{alert}: severity");
            assert!(str_of(&rule["annotations"]["runbook_url"]).starts_with("README.md#"), "{alert}: runbook_url");
        }
    }
    // The README's section names every alert.
    let readme = read(&repo().join("README.md"));
    let section = readme.split("\n## Alerts\n").nth(1).expect("README.md has a section `## Alerts`");
    let section = section.split("\n## ").next().unwrap_or_default();
    for (_, alert) in &names {
        assert!(section.contains(alert.as_str()), "README.md's Alerts section does not name {alert}");
    }
}

#[test]
fn the_kubernetes_prometheus_rule_carries_the_rule_file() {
    let tree = render("alerts");
    let rules: Vec<&Value> = tree.objects.iter().filter(|o| kind(o) == "PrometheusRule").collect();
    assert_eq!(rules.len(), 1, "deploy/k8s/alerts holds one PrometheusRule");
    let (copy, file) = (&rules[0]["spec"]["groups"], &yaml_file(RULES)["groups"]);
    if copy != file {
        // Name what differs, not only that something does.
        let (copied, filed) = (alerts(copy), alerts(file));
        let missing: Vec<_> = filed.iter().filter(|a| !copied.contains(a)).collect();
        let extra: Vec<_> = copied.iter().filter(|a| !filed.contains(a)).collect();
        let changed: Vec<String> = file
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|g| g["rules"].as_array().unwrap().iter())
            .filter(|rule| {
                let other =
                    copy.as_array().into_iter().flatten().flat_map(|g| g["rules"].as_array().into_iter().flatten());
                other.clone().any(|r| r["alert"] == rule["alert"]) && !other.clone().any(|r| r == *rule)
            })
            .map(|rule| str_of(&rule["alert"]).to_owned())
            .collect();
        panic!(
            "PrometheusRule {} in deploy/k8s/alerts differs from {RULES}: missing {missing:?}, extra {extra:?}, \
             changed {changed:?} (or the groups' names, order or intervals); copy the file's groups under spec",
            name(rules[0])
        );
    }
    let problems = prometheus_rule_problems(rules[0]);
    assert!(problems.is_empty(), "PrometheusRule {}:\n  {}", name(rules[0]), problems.join("\n  "));
    // The check is no rubber stamp.
    let mut broken = rules[0].clone();
    broken["spec"]["groups"][0]["rules"][0]["fore"] = Value::from("5m");
    let problems = prometheus_rule_problems(&broken);
    assert!(problems.iter().any(|p| p.contains("fore")), "a misspelt field passed: {problems:?}");
}

/// The Prometheus config at `relative`: every rule file it loads, resolved against
/// `rules_dir` (where its `rule_files` are relative to), the Alertmanagers it sends to and
/// the targets it scrapes.
struct PrometheusConfig {
    rule_files: Vec<String>,
    alertmanagers: Vec<String>,
    scraped: Vec<String>,
}

fn prometheus_config(relative: &str) -> PrometheusConfig {
    let ran = promtool(&["check", "config"], &[Path::new(relative)]);
    assert!(ran.ok, "promtool check config {relative}:\n{}", ran.output);
    let config = yaml_file(relative);
    let statics = |list: &Value| -> Vec<String> {
        let configs = list.as_array().into_iter().flatten();
        configs
            .flat_map(|c| c["static_configs"].as_array().into_iter().flatten())
            .flat_map(|s| strings(&s["targets"]))
            .collect()
    };
    PrometheusConfig {
        rule_files: strings(&config["rule_files"]),
        alertmanagers: statics(&config["alerting"]["alertmanagers"]),
        scraped: statics(&config["scrape_configs"]),
    }
}

/// The Alertmanager config at `relative`, checked by amtool: its webhook URLs.
fn alertmanager_webhooks(relative: &str) -> Vec<String> {
    let mut amtool = Command::new(prometheus_tool("amtool"));
    amtool.current_dir(repo()).args(["check-config", relative]);
    let ran = run(amtool, None);
    assert!(ran.ok, "amtool check-config {relative}:\n{}", ran.output);
    let config = yaml_file(relative);
    let receivers = config["receivers"].as_array().expect("receivers").iter();
    let hooks = receivers.flat_map(|r| r["webhook_configs"].as_array().into_iter().flatten());
    hooks.map(|h| str_of(&h["url"]).to_owned()).collect()
}

#[test]
fn compose_prometheus_loads_the_rules_and_alerts_reach_the_receiver() {
    let services = compose_services();
    let config = prometheus_config("deploy/prometheus/prometheus.yml");
    // The rule files as Prometheus opens them in its container, next to its config.
    let prometheus = &services["prometheus"];
    let mounts = volumes(prometheus);
    let config_at = mounts
        .iter()
        .find(|(source, _, _)| source == "./deploy/prometheus/prometheus.yml")
        .map(|(_, target, _)| Path::new(target).parent().unwrap().to_path_buf())
        .expect("prometheus mounts deploy/prometheus/prometheus.yml");
    assert_eq!(config.rule_files, ["rules/alerts.yml"], "compose's Prometheus loads the alert rules");
    for file in &config.rule_files {
        let inside = config_at.join(file);
        let mounted = mounts.iter().find_map(|(source, target, read_only)| {
            let rest = inside.strip_prefix(target).ok()?;
            assert!(read_only, "prometheus: mount {source} read-only");
            Some(repo().join(source).join(rest))
        });
        let local =
            mounted.unwrap_or_else(|| panic!("prometheus: nothing mounted where it reads {}", inside.display()));
        assert_eq!(local.canonicalize().unwrap(), repo().join(RULES).canonicalize().unwrap(), "{file}");
    }

    // Prometheus → Alertmanager → the receiver, each a service listening where it is named.
    assert_eq!(config.alertmanagers.len(), 1, "one Alertmanager: {:?}", config.alertmanagers);
    let (host, port) = host_port(&config.alertmanagers[0]);
    let alertmanager = services.get(&host).unwrap_or_else(|| panic!("Prometheus alerts {host}: no such service"));
    assert_eq!(port, 9093, "Alertmanager listens on 9093");
    let words = strings(&alertmanager["command"]);
    let file = arg_after(&words, "--config.file")
        .map(str::to_owned)
        .or_else(|| words.iter().find_map(|w| w.strip_prefix("--config.file=").map(str::to_owned)));
    let file = file.expect("alertmanager: --config.file");
    let (source, _, _) = volumes(alertmanager)
        .into_iter()
        .find(|(_, target, _)| *target == file)
        .unwrap_or_else(|| panic!("alertmanager: nothing mounted at {file}"));
    let hooks = alertmanager_webhooks(source.trim_start_matches("./"));
    assert!(!hooks.is_empty(), "{source} sends to no webhook");
    for hook in hooks {
        let (host, port) = host_port(&hook);
        let receiver = services.get(&host).unwrap_or_else(|| panic!("{source}: {hook}: no service {host}"));
        let words = strings(&receiver["command"]);
        assert_eq!(words[..2], ["shadowdiff-demo", "alerts"], "{host} runs the demo's alert receiver");
        let listen = arg_after(&words, "--listen").expect("--listen");
        assert_eq!(host_port(listen).1, port, "{hook}: {host} listens on {listen}");
        assert!(hook.ends_with("/alerts"), "{hook}: the receiver takes POST /alerts");
    }
}

#[test]
fn the_local_demo_prometheus_scrapes_every_service_and_alerts_its_receiver() {
    let config = prometheus_config("deploy/local/config/prometheus.yml");
    let dir = repo().join("deploy/local/config");
    let loaded: Vec<String> =
        config.rule_files.iter().map(|f| dir.join(f).canonicalize().unwrap().display().to_string()).collect();
    assert_eq!(
        loaded,
        [repo().join(RULES).canonicalize().unwrap().display().to_string()],
        "the demo loads the alert rules"
    );

    let mut admins = BTreeSet::new();
    for service in SERVICES {
        let file = format!("deploy/local/config/{}.toml", service.binary().trim_start_matches("shadowdiff-"));
        let loaded = Service::load_checked(service, &read(&repo().join(&file)), &file, &[]);
        admins.insert(loaded.admin.to_string());
    }
    let scraped: BTreeSet<String> = config.scraped.iter().cloned().collect();
    assert!(
        admins.is_subset(&scraped),
        "the demo's Prometheus scrapes {scraped:?}, the services' admin ports are {admins:?}"
    );

    // demo.sh starts Alertmanager and the receiver where these configs say.
    let demo = read(&repo().join("deploy/local/demo.sh"));
    for alertmanager in &config.alertmanagers {
        assert!(demo.contains(alertmanager.as_str()), "demo.sh runs no Alertmanager on {alertmanager}");
    }
    let hooks = alertmanager_webhooks("deploy/local/config/alertmanager.yml");
    assert!(!hooks.is_empty(), "the demo's Alertmanager sends to no webhook");
    for hook in hooks {
        let (host, port) = host_port(&hook);
        assert!(demo.contains(&format!("alerts --listen {host}:{port}")), "demo.sh runs no receiver for {hook}");
    }
}

//! KEDA autoscaling of the consumer groups (components/autoscaling, in overlays/autoscaling).
//! Each ScaledObject scales a shadowdiff Deployment that leaves its replica count to it, on the
//! lag of exactly the consumer group and topics that the service's own config loader says it
//! consumes, read from the service's brokers with its SASL settings and the same Secret; it
//! never goes below 1 replica nor above the topics' partition count, and it waits before
//! scaling either way. Each check is also shown to fail on a ScaledObject broken for it.
//!
//! KEDA's models (npm @kubernetes-models/keda, `schemas`) check types and required fields;
//! the kafka trigger's metadata is a map of strings to them, so its keys and values are
//! checked here against the parameters KEDA documents for its `kafka` scaler.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::configs::{ConsumerGroup, Loaded, Service};
use crate::render::{Render, kind, name, render, renders};
use crate::tools::str_of;

/// The trees that must scale every consumer group.
const AUTOSCALED: &str = "overlays/autoscaling";

/// `ScaledObject.spec` (keda.sh/v1alpha1).
const SPEC: &[&str] = &[
    "scaleTargetRef",
    "pollingInterval",
    "cooldownPeriod",
    "initialCooldownPeriod",
    "idleReplicaCount",
    "minReplicaCount",
    "maxReplicaCount",
    "fallback",
    "advanced",
    "triggers",
];
const TRIGGER: &[&str] = &["type", "name", "metadata", "authenticationRef", "metricType", "useCachedMetrics"];
/// The `kafka` scaler's metadata parameters. KEDA ignores a key it does not know, so a
/// misspelt `lagThreshold` would silently scale on the default of 10.
const KAFKA_METADATA: &[&str] = &[
    "bootstrapServers",
    "bootstrapServersFromEnv",
    "consumerGroup",
    "consumerGroupFromEnv",
    "topic",
    "topicFromEnv",
    "lagThreshold",
    "activationLagThreshold",
    "offsetResetPolicy",
    "allowIdleConsumers",
    "scaleToZeroOnInvalidOffset",
    "excludePersistentLag",
    "limitToPartitionsWithLag",
    "ensureEvenDistributionOfPartitions",
    "version",
    "partitionLimitation",
    "sasl",
    "saslTokenProvider",
    "tls",
    "unsafeSsl",
    "awsRegion",
];
const KAFKA_BOOLEANS: &[&str] = &[
    "allowIdleConsumers",
    "scaleToZeroOnInvalidOffset",
    "excludePersistentLag",
    "limitToPartitionsWithLag",
    "ensureEvenDistributionOfPartitions",
    "unsafeSsl",
];
/// What the services' consumers read from where no offset is committed
/// (`KafkaConfig::consumer`, services/runtime/src/kafka/mod.rs), unless a property overrides it.
const SERVICES_OFFSET_RESET: &str = "earliest";
/// The scale-down stabilisation window below which a lag that dips once would remove a
/// replica, and a rebalance with it: the HPA's default.
const MIN_SCALE_DOWN_WINDOW_SECS: u64 = 300;

/// The fields KEDA's `ScaledObject` and the kafka trigger take, and their values' forms; the
/// models generated from KEDA's types accept unknown fields and any string in the metadata.
pub(crate) fn keda_problems(object: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let known = |problems: &mut Vec<String>, at: &str, value: &Value, keys: &[&str]| match value.as_object() {
        Some(map) => problems
            .extend(map.keys().filter(|k| !keys.contains(&k.as_str())).map(|k| format!("{at}.{k}: unknown field"))),
        None => problems.push(format!("{at}: missing or not an object")),
    };
    match kind(object) {
        "ScaledObject" => {
            known(&mut problems, "spec", &object["spec"], SPEC);
            let triggers = object["spec"]["triggers"].as_array().cloned().unwrap_or_default();
            for (i, trigger) in triggers.iter().enumerate() {
                let at = format!("spec.triggers[{i}]");
                known(&mut problems, &at, trigger, TRIGGER);
                if trigger["type"] == "kafka" {
                    known(&mut problems, &format!("{at}.metadata"), &trigger["metadata"], KAFKA_METADATA);
                    problems.extend(kafka_value_problems(&at, &trigger["metadata"]));
                }
            }
        }
        "TriggerAuthentication" => {}
        other => problems.push(format!("{other}: not a KEDA kind these trees use")),
    }
    problems
}

fn kafka_value_problems(at: &str, metadata: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let value = |key: &str| metadata[key].as_str();
    for key in KAFKA_BOOLEANS {
        if value(key).is_some_and(|v| v != "true" && v != "false") {
            problems.push(format!("{at}.metadata.{key}: \"true\" or \"false\""));
        }
    }
    for key in ["lagThreshold", "activationLagThreshold"] {
        if value(key).is_some_and(|v| v.parse::<u64>().is_err()) {
            problems.push(format!("{at}.metadata.{key}: a whole number"));
        }
    }
    if value("lagThreshold").is_some_and(|v| v == "0") {
        problems.push(format!("{at}.metadata.lagThreshold: above 0"));
    }
    let one_of = |key: &str, allowed: &[&str]| {
        value(key)
            .filter(|v| !allowed.contains(v))
            .map(|v| format!("{at}.metadata.{key}: {v:?}, not one of {allowed:?}"))
    };
    problems.extend(one_of("offsetResetPolicy", &["earliest", "latest"]));
    problems.extend(one_of("sasl", &["none", "plaintext", "scram_sha256", "scram_sha512", "gssapi", "oauthbearer"]));
    problems.extend(one_of("tls", &["enable", "disable"]));
    if value("limitToPartitionsWithLag") == Some("true") && value("topic").is_none() {
        problems.push(format!("{at}.metadata.limitToPartitionsWithLag needs a topic"));
    }
    problems
}

/// KEDA's names for librdkafka's `security.protocol` and `sasl.mechanism` (its `sasl` and `tls`).
fn keda_security(properties: &std::collections::BTreeMap<String, String>) -> (String, &'static str) {
    let property = |key: &str| properties.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v.as_str());
    let protocol = property("security.protocol").unwrap_or("plaintext").to_ascii_lowercase();
    let tls = if protocol.ends_with("ssl") { "enable" } else { "disable" };
    let sasl = if protocol.starts_with("sasl") {
        let mechanism = property("sasl.mechanism").or_else(|| property("sasl.mechanisms")).unwrap_or("GSSAPI");
        mechanism
            .to_ascii_lowercase()
            .replace('-', "_")
            .replace("scram_sha_", "scram_sha")
            .replace("plain", "plaintext")
    } else {
        "none".to_owned()
    };
    (sasl, tls)
}

/// The Secret and key a container reads into `variable`.
fn secret_ref(container: &Value, variable: &str) -> Option<(String, String)> {
    let var = container["env"].as_array()?.iter().find(|v| v["name"] == variable)?;
    let reference = &var["valueFrom"]["secretKeyRef"];
    Some((reference["name"].as_str()?.to_owned(), reference["key"].as_str()?.to_owned()))
}

/// Everything wrong with one ScaledObject of `render`, against the Deployment it scales and
/// the config that Deployment's consumer container loads.
fn scaling_problems(render: &Render, scaled: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let spec = &scaled["spec"];
    let target = &spec["scaleTargetRef"];
    let target_kind = target["kind"].as_str().unwrap_or("Deployment");
    let target_api = target["apiVersion"].as_str().unwrap_or("apps/v1");
    let target_name = target["name"].as_str().unwrap_or_default();
    if (target_api, target_kind) != ("apps/v1", "Deployment") {
        problems.push(format!("scaleTargetRef: {target_api} {target_kind}, not a Deployment"));
    }
    let Some(workload) = render.find("Deployment", target_name) else {
        problems.push(format!("scaleTargetRef: no Deployment {target_name:?} in the tree"));
        return problems;
    };
    // Left in, `replicas` is set back by every apply and fights the HPA KEDA makes.
    if !workload["spec"]["replicas"].is_null() {
        problems.push(format!(
            "Deployment {target_name} sets replicas {}: the ScaledObject owns them",
            workload["spec"]["replicas"]
        ));
    }
    let owners = render.all("ScaledObject").filter(|o| o["spec"]["scaleTargetRef"]["name"] == target_name).count();
    let hpas =
        render.all("HorizontalPodAutoscaler").filter(|h| h["spec"]["scaleTargetRef"]["name"] == target_name).count();
    if owners != 1 || hpas != 0 {
        problems.push(format!(
            "Deployment {target_name}: {owners} ScaledObjects and {hpas} HPAs scale it, not one ScaledObject"
        ));
    }

    let running = render.running();
    let source = target["envSourceContainerName"].as_str();
    let consumer = running.iter().find(|r| {
        std::ptr::eq(r.workload, workload)
            && r.loaded.consumer.is_some()
            && source.is_none_or(|c| r.container["name"] == c)
    });
    let Some(consumer) = consumer else {
        problems.push(format!("Deployment {target_name} runs no consumer group"));
        return problems;
    };
    let loaded: &Loaded = &consumer.loaded;
    let ConsumerGroup { group_id, topics } = loaded.consumer.clone().expect("found as a consumer");
    let partitions = u64::try_from(loaded.partitions.expect("consumers know the partition count")).unwrap();

    match spec["minReplicaCount"].as_u64() {
        // KEDA's default is 0: the mirror would stop serving its profile API, and either group
        // would wake only once lag had built up.
        Some(min) if min >= 1 => {}
        min => problems.push(format!("minReplicaCount {min:?}: at least 1 (KEDA's default is 0)")),
    }
    match spec["maxReplicaCount"].as_u64() {
        Some(max) if max <= partitions && spec["minReplicaCount"].as_u64().is_none_or(|min| min <= max) => {}
        max => problems.push(format!(
            "maxReplicaCount {max:?}: at most the topics' {partitions} partitions (KEDA's default is 100), \
             and not below minReplicaCount"
        )),
    }

    let behavior = &spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"];
    let polling = spec["pollingInterval"].as_u64().unwrap_or(30);
    let up = behavior["scaleUp"]["stabilizationWindowSeconds"].as_u64().unwrap_or(0);
    let down = behavior["scaleDown"]["stabilizationWindowSeconds"].as_u64();
    if up < polling {
        problems.push(format!(
            "scaleUp stabilizationWindowSeconds {up}: at least the pollingInterval ({polling} s), so one reading \
             of lag does not add replicas"
        ));
    }
    if down.is_none_or(|down| down < MIN_SCALE_DOWN_WINDOW_SECS.max(up)) {
        problems.push(format!(
            "scaleDown stabilizationWindowSeconds {down:?}: set, at least {MIN_SCALE_DOWN_WINDOW_SECS} s and the \
             scale-up one"
        ));
    }
    if !spec["cooldownPeriod"].is_u64() {
        problems.push("cooldownPeriod: set".into());
    }

    let expected_reset = loaded
        .kafka_properties
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("auto.offset.reset"))
        .map_or(SERVICES_OFFSET_RESET, |(_, v)| v.as_str());
    let (sasl, tls) = keda_security(&loaded.kafka_properties);
    let brokers = loaded.kafka_brokers.as_deref().unwrap_or_default();
    let triggers = spec["triggers"].as_array().cloned().unwrap_or_default();
    let mut trigger_topics = Vec::new();
    for (i, trigger) in triggers.iter().enumerate() {
        let at = format!("triggers[{i}]");
        let metadata = &trigger["metadata"];
        let value = |key: &str| metadata[key].as_str();
        if trigger["type"] != "kafka" {
            problems.push(format!("{at}: type {}, not kafka", trigger["type"]));
            continue;
        }
        if value("consumerGroup") != Some(group_id.as_str()) {
            problems
                .push(format!("{at}: consumerGroup {:?}, the service's group is {group_id:?}", value("consumerGroup")));
        }
        match value("topic") {
            Some(topic) => trigger_topics.push(topic.to_owned()),
            // Without a topic KEDA sums every topic the group ever committed, and cannot limit
            // the replicas to the partitions with lag.
            None => problems.push(format!("{at}: no topic")),
        }
        if value("bootstrapServers") != Some(brokers) {
            problems.push(format!(
                "{at}: bootstrapServers {:?}, the service's brokers are {brokers:?}",
                value("bootstrapServers")
            ));
        }
        if value("allowIdleConsumers") != Some("false") {
            problems.push(format!("{at}: allowIdleConsumers {:?}, not \"false\"", value("allowIdleConsumers")));
        }
        if value("limitToPartitionsWithLag") != Some("true") {
            problems
                .push(format!("{at}: limitToPartitionsWithLag {:?}, not \"true\"", value("limitToPartitionsWithLag")));
        }
        if value("lagThreshold").and_then(|v| v.parse::<u64>().ok()).is_none_or(|t| t == 0) {
            problems.push(format!(
                "{at}: lagThreshold {:?}, a whole number above 0 (KEDA's default 10 is a handful of requests)",
                value("lagThreshold")
            ));
        }
        // KEDA's default is latest: a partition with no committed offset would count as no
        // lag, while the services read it from its beginning.
        if value("offsetResetPolicy") != Some(expected_reset) {
            problems.push(format!(
                "{at}: offsetResetPolicy {:?}, the services' is {expected_reset:?}",
                value("offsetResetPolicy")
            ));
        }
        let auth = trigger["authenticationRef"]["name"].as_str().and_then(|n| render.find("TriggerAuthentication", n));
        let from_auth = |parameter: &str| {
            let refs = auth?["spec"]["secretTargetRef"].as_array()?;
            let reference = refs.iter().find(|r| r["parameter"] == parameter)?;
            Some((str_of(&reference["name"]).to_owned(), str_of(&reference["key"]).to_owned()))
        };
        let setting = |key: &str, default: &str| {
            value(key)
                .map(str::to_owned)
                .or_else(|| from_auth(key).and_then(|(secret, k)| render.secret(&secret, &k)))
                .unwrap_or_else(|| default.to_owned())
        };
        if setting("sasl", "none") != sasl || setting("tls", "disable") != tls {
            problems.push(format!(
                "{at}: sasl {:?} and tls {:?}, the services use sasl {sasl:?} and tls {tls:?}",
                setting("sasl", "none"),
                setting("tls", "disable")
            ));
        }
        if sasl != "none" {
            for (parameter, variable) in [
                ("username", "SHADOWDIFF_KAFKA_PROPERTIES__SASL.USERNAME"),
                ("password", "SHADOWDIFF_KAFKA_PROPERTIES__SASL.PASSWORD"),
            ] {
                let keda = from_auth(parameter);
                let service = secret_ref(consumer.container, variable);
                if keda.is_none() || keda != service {
                    problems
                        .push(format!("{at}: KEDA's {parameter} comes from {keda:?}, the service's from {service:?}"));
                } else if let Some((secret, key)) = &keda
                    && render.secret(secret, key).is_none()
                {
                    problems.push(format!("{at}: {parameter} reads {secret}/{key}, which secrets.sh does not create"));
                }
            }
        }
    }
    let wanted: BTreeSet<&String> = topics.iter().collect();
    let got: BTreeSet<&String> = trigger_topics.iter().collect();
    if got != wanted || trigger_topics.len() != got.len() {
        problems.push(format!("trigger topics {trigger_topics:?}: the group consumes {topics:?}, one trigger each"));
    }
    problems
}

fn assert_scales(render: &Render) {
    for scaled in render.all("ScaledObject") {
        let problems = scaling_problems(render, scaled);
        assert!(problems.is_empty(), "{}: ScaledObject {}:\n  {}", render.dir, name(scaled), problems.join("\n  "));
    }
}

#[test]
fn consumer_groups_scale_on_their_own_lag_within_their_partitions() {
    for render in renders() {
        assert_scales(render);
    }
    let tree = render(AUTOSCALED);
    let scaled: BTreeSet<&str> =
        tree.all("ScaledObject").map(|o| str_of(&o["spec"]["scaleTargetRef"]["name"])).collect();
    let consumers: BTreeSet<&str> = tree
        .running()
        .iter()
        .filter(|r| [Service::Mirror, Service::Correlator].contains(&r.loaded.service))
        .map(|r| name(r.workload))
        .collect();
    assert_eq!(scaled, consumers, "{AUTOSCALED}: every consumer group, and only they, scale on their lag");

    // Every check fails on a ScaledObject broken for it.
    let check = |objects: Vec<Value>, expect: &str| {
        let copy = Render { dir: tree.dir.clone(), objects, cluster_secrets: tree.cluster_secrets };
        let problems: Vec<String> = copy
            .all("ScaledObject")
            .flat_map(|o| scaling_problems(&copy, o).into_iter().chain(keda_problems(o)))
            .collect();
        assert!(
            problems.iter().any(|p| p.contains(expect)),
            "a ScaledObject broken for {expect:?} passed; problems found: {problems:#?}"
        );
    };
    let edited = |kind_: &str, name_: &str, edit: &dyn Fn(&mut Value)| {
        let mut objects = tree.objects.clone();
        edit(objects.iter_mut().find(|o| kind(o) == kind_ && name(o) == name_).expect("in the tree"));
        objects
    };
    let mirror = |edit: &dyn Fn(&mut Value)| edited("ScaledObject", "shadowdiff-mirror", edit);
    let metadata = |key: &str, value: &str| mirror(&|o| o["spec"]["triggers"][0]["metadata"][key] = json!(value));
    let behavior = |direction: &str, secs: u64| {
        mirror(&|o| {
            o["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"][direction]["stabilizationWindowSeconds"] =
                json!(secs);
        })
    };

    check(mirror(&|o| o["spec"]["scaleTargetRef"]["name"] = json!("shadowdiff-mirrror")), "no Deployment");
    check(edited("Deployment", "shadowdiff-mirror", &|d| d["spec"]["replicas"] = json!(2)), "sets replicas");
    let mut twice = tree.objects.clone();
    let mut second = tree.find("ScaledObject", "shadowdiff-mirror").unwrap().clone();
    second["metadata"]["name"] = json!("shadowdiff-mirror-again");
    twice.push(second);
    check(twice, "2 ScaledObjects");
    check(mirror(&|o| o["spec"]["minReplicaCount"] = json!(0)), "minReplicaCount");
    check(mirror(&|o| drop(o["spec"].as_object_mut().unwrap().remove("minReplicaCount"))), "minReplicaCount");
    check(mirror(&|o| o["spec"]["maxReplicaCount"] = json!(13)), "maxReplicaCount");
    check(mirror(&|o| drop(o["spec"].as_object_mut().unwrap().remove("maxReplicaCount"))), "maxReplicaCount");
    check(metadata("consumerGroup", "shadowdiff-correlator"), "consumerGroup");
    check(metadata("topic", "shadowdiff.responses"), "trigger topics");
    check(metadata("bootstrapServers", "kafka:9092"), "bootstrapServers");
    check(metadata("allowIdleConsumers", "true"), "allowIdleConsumers");
    check(metadata("limitToPartitionsWithLag", "false"), "limitToPartitionsWithLag");
    check(metadata("lagThreshold", "0"), "lagThreshold");
    check(metadata("offsetResetPolicy", "latest"), "offsetResetPolicy");
    check(metadata("sasl", "scram_sha512"), "sasl");
    check(metadata("lagTreshold", "10"), "lagTreshold: unknown field");
    let correlator = |edit: &dyn Fn(&mut Value)| edited("ScaledObject", "shadowdiff-correlator", edit);
    check(correlator(&|o| drop(o["spec"]["triggers"].as_array_mut().unwrap().pop())), "trigger topics");
    check(
        edited("TriggerAuthentication", "shadowdiff-kafka", &|a| {
            a["spec"]["secretTargetRef"][1]["key"] = json!("passwd")
        }),
        "password",
    );
    check(behavior("scaleUp", 0), "scaleUp");
    check(behavior("scaleDown", 60), "scaleDown");
}

//! NetworkPolicies, evaluated as the API server documents their meaning: the APIs admit only
//! their callers, and every service reaches only DNS, Kafka, ClickHouse and its upstreams.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::cluster::{ARGO_NAMESPACE, FLAGGER_NAMESPACE, MONITORING_NAMESPACE, Pods, Track, port_name};
use crate::configs::{SERVICES, Service};
use crate::render::{Render, Running, applied, name};
use crate::tools::{host_port, str_of, strings};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    Ingress,
    Egress,
}

/// The other end of a connection: a pod with these labels in a namespace, which Kubernetes
/// labels `kubernetes.io/metadata.name`.
#[derive(Debug, Clone)]
pub(crate) struct Peer {
    pub(crate) namespace: String,
    pub(crate) labels: Value,
}

impl Peer {
    pub(crate) fn pod(namespace: &str, labels: Value) -> Self {
        Self { namespace: namespace.to_owned(), labels }
    }

    /// Some pod of `namespace`, with no label any policy here names.
    pub(crate) fn any_in(namespace: &str) -> Self {
        Self::pod(namespace, json!({ "app.kubernetes.io/name": "anything" }))
    }
}

fn policy_types(policy: &Value) -> Vec<&str> {
    match policy["spec"]["policyTypes"].as_array() {
        Some(types) => types.iter().map(str_of).collect(),
        None if policy["spec"]["egress"].is_array() => vec!["Ingress", "Egress"],
        None => vec!["Ingress"],
    }
}

/// A label selector (`matchLabels`, `matchExpressions`); an empty one selects everything.
fn label_selector_matches(selector: &Value, labels: &Value) -> bool {
    let plain = selector["matchLabels"].as_object().into_iter().flatten().all(|(k, v)| &labels[k] == v);
    let expressions = selector["matchExpressions"].as_array().into_iter().flatten().all(|e| {
        let value = labels[str_of(&e["key"])].as_str();
        let values = strings(&e["values"]);
        let listed = value.is_some_and(|v| values.iter().any(|x| x == v));
        match str_of(&e["operator"]) {
            "In" => listed,
            "NotIn" => !listed,
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            other => panic!("unknown selector operator {other}"),
        }
    });
    plain && expressions
}

/// One `from` or `to` entry, for a policy in `namespace`.
fn peer_matches(peer: &Value, namespace: &str, other: &Peer) -> bool {
    if !peer["ipBlock"].is_null() {
        // Pods are not addressed by IP in these trees.
        return false;
    }
    let in_namespace = match peer.get("namespaceSelector") {
        Some(selector) => label_selector_matches(selector, &json!({ "kubernetes.io/metadata.name": other.namespace })),
        None => other.namespace == namespace,
    };
    in_namespace && peer.get("podSelector").is_none_or(|selector| label_selector_matches(selector, &other.labels))
}

fn ports_match(ports: &Value, port: u16, port_name: Option<&str>, protocol: &str) -> bool {
    let Some(ports) = ports.as_array().filter(|p| !p.is_empty()) else { return true };
    ports.iter().any(|p| {
        let number = |v: &Value| v.as_u64().and_then(|n| u16::try_from(n).ok());
        let port_ok = match &p["port"] {
            Value::Null => true,
            Value::String(named) => port_name == Some(named.as_str()),
            first => {
                number(first).is_some_and(|first| (first..=number(&p["endPort"]).unwrap_or(first)).contains(&port))
            }
        };
        port_ok && p["protocol"].as_str().unwrap_or("TCP") == protocol
    })
}

/// The namespace of a Service address (`name.namespace[.svc...]`), or `own` for a bare name.
pub(crate) fn namespace_of_host<'a>(host: &'a str, own: &'a str) -> &'a str {
    host.split('.').nth(1).unwrap_or(own)
}

impl Render {
    /// Whether the tree's NetworkPolicies let `other` connect to `pods` on `port` (Ingress),
    /// or `pods` connect to `other` on `port` (Egress). `port_name` is the port's name on the
    /// pod that listens, if it has one.
    pub(crate) fn admits(
        &self,
        pods: &Pods<'_>,
        direction: Direction,
        other: &Peer,
        port: u16,
        port_name: Option<&str>,
        protocol: &str,
    ) -> bool {
        let (policy_type, rules, peers) = match direction {
            Direction::Ingress => ("Ingress", "ingress", "from"),
            Direction::Egress => ("Egress", "egress", "to"),
        };
        let isolating: Vec<&Value> = self
            .all("NetworkPolicy")
            .filter(|p| label_selector_matches(&p["spec"]["podSelector"], &pods.labels))
            .filter(|p| policy_types(p).contains(&policy_type))
            .collect();
        if isolating.is_empty() {
            return true;
        }
        let namespace = self.namespace();
        isolating.iter().flat_map(|p| p["spec"][rules].as_array().into_iter().flatten()).any(|rule| {
            let listed = rule[peers].as_array().filter(|p| !p.is_empty());
            let peer_ok = listed.is_none_or(|listed| listed.iter().any(|peer| peer_matches(peer, namespace, other)));
            peer_ok && ports_match(&rule["ports"], port, port_name, protocol)
        })
    }
}

#[test]
fn network_policies_fence_the_apis_and_limit_egress() {
    for render in applied() {
        let dir = &render.dir;
        let namespace = render.namespace();
        let running = render.running();
        let stranger = Peer::pod(namespace, json!({ "app.kubernetes.io/name": "stranger" }));
        let elsewhere = Peer::any_in("default");
        let monitoring = Peer::any_in(MONITORING_NAMESPACE);
        let (argo, flagger) = (Peer::any_in(ARGO_NAMESPACE), Peer::any_in(FLAGGER_NAMESPACE));
        let verdict_client = Peer::pod(namespace, json!({ "shadowdiff.dev/verdict-client": "true" }));
        let mirror_client = Peer::pod(namespace, json!({ "shadowdiff.dev/mirror-client": "true" }));
        let dns = Peer::pod("kube-system", json!({ "k8s-app": "kube-dns" }));
        let shadowdiff: Vec<&Running<'_>> =
            running.iter().filter(|r| name(r.workload).starts_with("shadowdiff-")).collect();
        assert_eq!(shadowdiff.len(), SERVICES.len(), "{dir}: one workload per service");

        for service in &shadowdiff {
            let at = format!("{dir}: {}", name(service.workload));
            let pods = render.pods_of(service.workload);
            let policies: Vec<&Value> = render
                .all("NetworkPolicy")
                .filter(|p| label_selector_matches(&p["spec"]["podSelector"], &pods.labels))
                .collect();
            let types: BTreeSet<&str> = policies.iter().flat_map(|p| policy_types(p)).collect();
            assert_eq!(types, ["Egress", "Ingress"].into_iter().collect(), "{at}: fenced both ways");
            for rule in policies.iter().flat_map(|p| p["spec"]["egress"].as_array().into_iter().flatten()) {
                let bounded = |field: &str| rule[field].as_array().is_some_and(|a| !a.is_empty());
                assert!(bounded("to") && bounded("ports"), "{at}: an egress rule open to every destination: {rule}");
            }

            let loaded = &service.loaded;
            let inbound = |peer: &Peer, port: u16| {
                let port_name = port_name(pods.template, port);
                render.admits(&pods, Direction::Ingress, peer, port, port_name.as_deref(), "TCP")
            };
            let outbound = |peer: &Peer, port: u16, port_name: Option<&str>, protocol: &str| {
                render.admits(&pods, Direction::Egress, peer, port, port_name, protocol)
            };
            let admin = loaded.admin.port();
            assert!(inbound(&monitoring, admin), "{at}: Prometheus scrapes the admin port");
            for kept_out in [&stranger, &elsewhere, &argo] {
                assert!(!inbound(kept_out, admin), "{at}: the admin port admits {kept_out:?}");
            }
            match loaded.service {
                Service::Verdict => {
                    let api = loaded.serves.expect("the verdict API listens").port();
                    for admitted in [&argo, &flagger, &verdict_client] {
                        assert!(inbound(admitted, api), "{at}: the API keeps out {admitted:?}");
                    }
                    for kept_out in [&stranger, &elsewhere, &monitoring, &mirror_client] {
                        assert!(!inbound(kept_out, api), "{at}: the API admits {kept_out:?}");
                    }
                }
                Service::Mirror => {
                    assert!(inbound(&mirror_client, admin), "{at}: the profile API keeps out its clients");
                    assert!(!inbound(&verdict_client, admin), "{at}: the profile API admits the verdict's clients");
                }
                Service::Tap => {
                    let proxy = loaded.serves.expect("the tap listens").port();
                    assert!(inbound(&elsewhere, proxy), "{at}: the tap takes the clients' requests");
                }
                Service::Correlator => {}
            }

            assert!(outbound(&dns, 53, None, "UDP") && outbound(&dns, 53, None, "TCP"), "{at}: DNS");
            for broker in loaded.kafka_brokers.iter().flat_map(|b| b.split(',')) {
                let (host, port) = host_port(broker);
                let kafka = Peer::any_in(namespace_of_host(&host, namespace));
                assert!(outbound(&kafka, port, None, "TCP"), "{at}: Kafka at {broker}");
            }
            if loaded.kafka_brokers.is_none() {
                let kafka = Peer::any_in("kafka");
                assert!(!outbound(&kafka, 9092, None, "TCP"), "{at} needs no Kafka");
            }
            let clickhouse_ok = |url: &str| {
                let (host, port) = host_port(url);
                outbound(&Peer::any_in(namespace_of_host(&host, namespace)), port, None, "TCP")
            };
            match loaded.clickhouse_url() {
                Some(url) => assert!(clickhouse_ok(url), "{at}: ClickHouse at {url}"),
                None => assert!(!clickhouse_ok("http://clickhouse.clickhouse:8123"), "{at} needs no ClickHouse"),
            }
            for upstream in &loaded.upstreams {
                let (host, port) = host_port(&upstream.url);
                if render.service(&host).is_none() {
                    continue;
                }
                let (target, behind) = render.through_service(&host, port);
                for pods in &behind {
                    let peer = Peer::pod(namespace, pods.labels.clone());
                    let port_name = port_name(pods.template, target);
                    assert!(
                        outbound(&peer, target, port_name.as_deref(), "TCP"),
                        "{at}: its {} {} ({} pods, port {target})",
                        upstream.role,
                        upstream.url,
                        pods.owner
                    );
                }
            }
            // The console's profile pages: the verdict reaches the mirror's admin API its
            // config names, and the mirror lets it in.
            let console_port = loaded.console_mirror.as_deref().map(|url| host_port(url).1);
            if let Some(port) = console_port {
                let mirror = shadowdiff.iter().find(|o| o.loaded.service == Service::Mirror).expect("a mirror");
                let mirror_pods = render.pods_of(mirror.workload);
                let to_mirror = Peer::pod(namespace, mirror_pods.labels.clone());
                assert!(outbound(&to_mirror, port, None, "TCP"), "{at}: the console reaches the mirror on {port}");
                let from_verdict = Peer::pod(namespace, pods.labels.clone());
                let named = port_name(mirror_pods.template, port);
                assert!(
                    render.admits(&mirror_pods, Direction::Ingress, &from_verdict, port, named.as_deref(), "TCP"),
                    "{at}: the mirror admits the console on {port}"
                );
            }
            // Nothing else: not the other services' ports, not the world, and the tap not the
            // canary's pods, whose answers it would record as the primary's.
            for other in shadowdiff.iter().filter(|o| o.loaded.service != loaded.service) {
                let other_pods = render.pods_of(other.workload);
                let peer = Peer::pod(namespace, other_pods.labels.clone());
                let console = |port| other.loaded.service == Service::Mirror && console_port == Some(port);
                for port in other.loaded.listens().map(|a| a.port()).filter(|port| !console(*port)) {
                    assert!(!outbound(&peer, port, None, "TCP"), "{at} reaches {}:{port}", name(other.workload));
                }
            }
            assert!(!outbound(&elsewhere, 443, None, "TCP"), "{at} reaches other namespaces");
            for pods in render.pods().iter().filter(|p| !p.owner.starts_with("shadowdiff-")) {
                let peer = Peer::pod(namespace, pods.labels.clone());
                let reaches = outbound(&peer, 8080, None, "TCP");
                match loaded.service {
                    Service::Mirror => {}
                    Service::Tap => assert!(
                        !reaches || pods.primary_version() && !matches!(pods.track, Track::Only),
                        "{at} reaches the {:?} pods of {}",
                        pods.track,
                        pods.owner
                    ),
                    Service::Correlator | Service::Verdict => {
                        assert!(!reaches, "{at} reaches the application's pods ({})", pods.owner);
                    }
                }
            }
        }
    }
}

//! A tree as it runs once applied and its CD controller has acted on it: Argo Rollouts'
//! stable and canary ReplicaSets with the labels it adds, Flagger's primary Deployment and the
//! three Services it creates; which pods a Service leads to, on which container port.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::configs::EnvVar;
use crate::render::{Render, kind, name};
use crate::tools::str_of;

/// The namespace the examples run in: their kustomizations' `namespace:`, named in their
/// gates' URLs.
pub(crate) const EXAMPLE_NAMESPACE: &str = "shop";
/// Where the CD controllers run, and so where their calls to the verdict API come from.
pub(crate) const ARGO_NAMESPACE: &str = "argo-rollouts";
pub(crate) const FLAGGER_NAMESPACE: &str = "flagger-system";
/// Where Prometheus runs.
pub(crate) const MONITORING_NAMESPACE: &str = "monitoring";

/// The label Argo Rollouts adds to each ReplicaSet's pods and to its managed Services'
/// selectors, and the values this model gives the stable and canary ReplicaSets.
const ARGO_HASH_LABEL: &str = "rollouts-pod-template-hash";
const STABLE_HASH: &str = "stable-hash";
const CANARY_HASH: &str = "canary-hash";
/// Flagger's `-selector-labels` default: the first of these in the target's selector is the
/// label it rewrites to `<value>-primary` on the primary's pods.
const FLAGGER_SELECTOR_LABELS: [&str; 3] = ["app", "name", "app.kubernetes.io/name"];
/// The pod label that names a shadowdiff role (primary, secondary, candidate): the taps in
/// the pod read it, and this model takes it for which release the pods run.
pub(crate) const ROLE_LABEL: &str = "shadowdiff.dev/role";
/// Marks, in this model only, the apex Service Flagger creates, which a mesh splits by weight.
pub(crate) const MESH_SPLIT: &str = "model.deploy-manifests/mesh-split";

/// Whether every label of `selector` (a Service's or `matchLabels`) is among `labels`.
pub(crate) fn selects(selector: &Value, labels: &Value) -> bool {
    selector.as_object().is_some_and(|s| !s.is_empty() && s.iter().all(|(k, v)| &labels[k] == v))
}

/// The label Flagger rewrites on the primary's pods, and its value on the target's.
fn flagger_selector(deployment: &Value) -> (&'static str, String) {
    let selector = &deployment["spec"]["selector"]["matchLabels"];
    let label = FLAGGER_SELECTOR_LABELS.into_iter().find(|l| selector[*l].is_string());
    let label =
        label.unwrap_or_else(|| panic!("{}: Flagger needs one of {FLAGGER_SELECTOR_LABELS:?}", name(deployment)));
    (label, str_of(&selector[label]).to_owned())
}

/// Which pods of a release a set of pods is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Track {
    /// A Deployment no CD controller manages.
    Only,
    /// Argo Rollouts' stable ReplicaSet: the running release.
    Stable,
    /// The release under test: Argo's canary ReplicaSet, or the Deployment Flagger analyses.
    Canary,
    /// The running release: Flagger's copy of its target, or a Deployment no controller
    /// manages whose pods are labelled `shadowdiff.dev/role: primary` (the egress overlay's
    /// stand-in).
    Primary,
}

/// Pods as they run once a tree is applied and its CD controller has acted on it.
#[derive(Debug, Clone)]
pub(crate) struct Pods<'a> {
    /// The workload, as named in the cluster (Flagger's primary: `<target>-primary`).
    pub(crate) owner: String,
    pub(crate) track: Track,
    pub(crate) labels: Value,
    /// The pod template they are made from.
    pub(crate) template: &'a Value,
}

impl Pods<'_> {
    /// Whether they run the version the tap's clients get: the stable or primary pods, or a
    /// Deployment of its own labelled as the secondary (the sidecar overlay's stand-in).
    pub(crate) fn primary_version(&self) -> bool {
        match self.track {
            Track::Stable | Track::Primary => true,
            Track::Only => self.labels[ROLE_LABEL] == "secondary",
            Track::Canary => false,
        }
    }

    pub(crate) fn under_test(&self) -> bool {
        match self.track {
            Track::Canary => true,
            Track::Only => self.labels[ROLE_LABEL] == "candidate",
            Track::Stable | Track::Primary => false,
        }
    }

    pub(crate) fn id(&self) -> (String, Track) {
        (self.owner.clone(), self.track)
    }
}

impl Render {
    /// Every pod set the tree runs, with what the CD controllers make of its workloads:
    /// Argo's stable and canary ReplicaSets, Flagger's primary beside its target.
    pub(crate) fn pods(&self) -> Vec<Pods<'_>> {
        let mut pods = Vec::new();
        for workload in self.workloads() {
            let template = &workload["spec"]["template"];
            let labels = template["metadata"]["labels"].clone();
            let owner = name(workload).to_owned();
            let flagged = self.all("Canary").any(|c| {
                c["spec"]["targetRef"]["kind"] == kind(workload) && c["spec"]["targetRef"]["name"] == owner.as_str()
            });
            if kind(workload) == "Rollout" {
                let strategy = &workload["spec"]["strategy"]["canary"];
                for (track, metadata, hash) in
                    [(Track::Stable, "stableMetadata", STABLE_HASH), (Track::Canary, "canaryMetadata", CANARY_HASH)]
                {
                    let mut labels = labels.clone();
                    for (key, value) in strategy[metadata]["labels"].as_object().into_iter().flatten() {
                        labels[key] = value.clone();
                    }
                    labels[ARGO_HASH_LABEL] = json!(hash);
                    pods.push(Pods { owner: owner.clone(), track, labels, template });
                }
            } else if flagged {
                let (label, value) = flagger_selector(workload);
                let mut primary = labels.clone();
                primary[label] = json!(format!("{value}-primary"));
                pods.push(Pods { owner: format!("{owner}-primary"), track: Track::Primary, labels: primary, template });
                pods.push(Pods { owner, track: Track::Canary, labels, template });
            } else {
                let track = if labels[ROLE_LABEL] == "primary" { Track::Primary } else { Track::Only };
                pods.push(Pods { owner, track, labels, template });
            }
        }
        pods
    }

    /// Every Service in the namespace once the tree is applied: the render's, with the
    /// template hashes Argo adds to the ones it manages, and the three Flagger creates for each
    /// Canary (the apex, which a mesh splits by weight, `-primary` and `-canary`).
    pub(crate) fn services(&self) -> Vec<Value> {
        let mut services: Vec<Value> = self.all("Service").cloned().collect();
        for rollout in self.all("Rollout") {
            let strategy = &rollout["spec"]["strategy"]["canary"];
            for (field, hash) in [("stableService", STABLE_HASH), ("canaryService", CANARY_HASH)] {
                let Some(managed) = strategy[field].as_str() else { continue };
                let service = services.iter_mut().find(|s| name(s) == managed);
                let service = service.unwrap_or_else(|| panic!("{}: {field} {managed} is no Service here", self.dir));
                service["spec"]["selector"][ARGO_HASH_LABEL] = json!(hash);
            }
        }
        for canary in self.all("Canary") {
            let target = str_of(&canary["spec"]["targetRef"]["name"]);
            let deployment = self.find(str_of(&canary["spec"]["targetRef"]["kind"]), target);
            let (label, value) = flagger_selector(deployment.expect("the Canary's target is in the tree"));
            let service = &canary["spec"]["service"];
            let target_port = if service["targetPort"].is_null() { &service["port"] } else { &service["targetPort"] };
            let port = json!({
                "name": service["portName"].as_str().unwrap_or("http"),
                "port": service["port"],
                "targetPort": target_port,
            });
            let made = [
                (target.to_owned(), format!("{value}-primary"), true),
                (format!("{target}-primary"), format!("{value}-primary"), false),
                (format!("{target}-canary"), value, false),
            ];
            for (service_name, selected, split) in made {
                assert!(self.find("Service", &service_name).is_none(), "{}: Flagger owns {service_name}", self.dir);
                let annotations = if split { json!({ MESH_SPLIT: "true" }) } else { json!({}) };
                services.push(json!({
                    "apiVersion": "v1",
                    "kind": "Service",
                    "metadata": { "name": service_name, "annotations": annotations },
                    "spec": { "selector": { label: selected }, "ports": [port] },
                }));
            }
        }
        services
    }

    pub(crate) fn service(&self, name_: &str) -> Option<Value> {
        self.services().into_iter().find(|s| name(s) == name_)
    }

    /// The container port that `service:port` leads to, and the pods behind it (some).
    pub(crate) fn through_service(&self, service: &str, port: u16) -> (u16, Vec<Pods<'_>>) {
        let svc = self.service(service).unwrap_or_else(|| panic!("{}: no Service {service}", self.dir));
        let entry = svc["spec"]["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .find(|p| p["port"] == port)
            .unwrap_or_else(|| panic!("{}: Service {service} has no port {port}", self.dir))
            .clone();
        let pods: Vec<Pods<'_>> =
            self.pods().into_iter().filter(|p| selects(&svc["spec"]["selector"], &p.labels)).collect();
        assert!(!pods.is_empty(), "{}: Service {service} selects no pods", self.dir);
        let targets: BTreeSet<u16> = pods.iter().map(|p| container_port(p.template, &entry["targetPort"])).collect();
        assert_eq!(targets.len(), 1, "{}: {service}:{port} leads to several ports {targets:?}", self.dir);
        (targets.into_iter().next().unwrap(), pods)
    }

    /// The pods of a workload of the render that no controller splits.
    pub(crate) fn pods_of(&self, workload: &Value) -> Pods<'_> {
        let pods = self.pods().into_iter().filter(|p| p.owner == name(workload)).collect::<Vec<_>>();
        assert_eq!(pods.len(), 1, "{}: {} runs as one set of pods", self.dir, name(workload));
        pods.into_iter().next().unwrap()
    }
}

/// The variables Kubernetes' service links give a pod for `service` (a ClusterIP Service).
pub(crate) fn service_links(service: &Value) -> Vec<EnvVar> {
    let prefix = name(service).to_ascii_uppercase().replace('-', "_");
    let ip = "10.96.0.10";
    let mut vars = vec![(format!("{prefix}_SERVICE_HOST"), ip.to_owned())];
    for (i, port) in service["spec"]["ports"].as_array().expect("ports").iter().enumerate() {
        let number = port["port"].as_u64().expect("a port number");
        let proto = port["protocol"].as_str().unwrap_or("TCP");
        if i == 0 {
            vars.push((format!("{prefix}_SERVICE_PORT"), number.to_string()));
            vars.push((format!("{prefix}_PORT"), format!("{}://{ip}:{number}", proto.to_ascii_lowercase())));
        }
        if let Some(port_name) = port["name"].as_str() {
            let port_name = port_name.to_ascii_uppercase().replace('-', "_");
            vars.push((format!("{prefix}_SERVICE_PORT_{port_name}"), number.to_string()));
        }
        let at = format!("{prefix}_PORT_{number}_{proto}");
        vars.push((at.clone(), format!("{}://{ip}:{number}", proto.to_ascii_lowercase())));
        vars.push((format!("{at}_PROTO"), proto.to_ascii_lowercase()));
        vars.push((format!("{at}_PORT"), number.to_string()));
        vars.push((format!("{at}_ADDR"), ip.to_owned()));
    }
    vars.into_iter().map(|(name, value)| EnvVar { name, value, shared: true }).collect()
}

/// A named or numbered port of one of the pod template's containers.
pub(crate) fn container_port(template: &Value, port: &Value) -> u16 {
    let containers = template["spec"]["containers"].as_array().expect("containers");
    let ports = containers.iter().flat_map(|c| c["ports"].as_array().into_iter().flatten());
    let found = ports.clone().find(|p| match port {
        Value::String(named) => p["name"] == named.as_str(),
        number => &p["containerPort"] == number,
    });
    let found = found.unwrap_or_else(|| panic!("{}: no container port {port}", template["metadata"]["labels"]));
    u16::try_from(found["containerPort"].as_u64().expect("a number")).unwrap()
}

/// The name of a container port of the pod template, if it has one.
pub(crate) fn port_name(template: &Value, port: u16) -> Option<String> {
    let containers = template["spec"]["containers"].as_array().expect("containers");
    let mut ports = containers.iter().flat_map(|c| c["ports"].as_array().into_iter().flatten());
    ports.find(|p| p["containerPort"] == port).and_then(|p| p["name"].as_str()).map(str::to_owned)
}

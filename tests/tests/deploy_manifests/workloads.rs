//! The workloads of every applied tree: hardened containers with pinned images, configs that
//! load, probes and scrapes on the right ports, Services that lead somewhere, a disruption
//! budget each; and services that start with Kubernetes' service-link variables too.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::cluster::{container_port, selects};
use crate::configs::{SERVICES, Service};
use crate::render::{Running, applied, kind, name, render, renders};
use crate::tools::str_of;

#[test]
fn kubernetes_workloads_are_wired_hardened_and_load_their_configs() {
    let mut applied_count = 0;
    for render in applied() {
        applied_count += 1;
        let dir = &render.dir;
        for workload in render.workloads() {
            let pod = &workload["spec"]["template"];
            let at = format!("{dir}: {} {}", kind(workload), name(workload));
            for container in pod["spec"]["containers"].as_array().expect("containers") {
                let at = format!("{at}/{}", str_of(&container["name"]));
                let security = &container["securityContext"];
                let non_root =
                    security["runAsNonRoot"].as_bool().or(pod["spec"]["securityContext"]["runAsNonRoot"].as_bool());
                assert_eq!(non_root, Some(true), "{at}: runAsNonRoot");
                assert_eq!(security["readOnlyRootFilesystem"], true, "{at}: readOnlyRootFilesystem");
                assert_eq!(security["allowPrivilegeEscalation"], false, "{at}: allowPrivilegeEscalation");
                for (bound, resource) in
                    [("requests", "cpu"), ("requests", "memory"), ("limits", "cpu"), ("limits", "memory")]
                {
                    assert!(container["resources"][bound][resource].is_string(), "{at}: resources.{bound}.{resource}");
                }
                let image = str_of(&container["image"]);
                let tag = image.rsplit_once(':').map(|(_, tag)| tag);
                assert!(
                    image.contains('/') && tag.is_some_and(|t| t != "latest"),
                    "{at}: pin {image} (components/release)"
                );
            }
        }

        let running = render.running();
        for Running { workload, container, loaded } in &running {
            let at = format!("{dir}: {}/{}", name(workload), str_of(&container["name"]));
            for address in loaded.listens() {
                if loaded.egress() && Some(address) == loaded.serves {
                    // It forwards wherever a call asks: only its own pod's containers may use it.
                    assert!(address.ip().is_loopback(), "{at}: the egress proxy listens on {address}, beyond its pod");
                    continue;
                }
                assert!(
                    address.ip().is_unspecified(),
                    "{at} listens on {address}: probes and Services cannot reach it"
                );
                container_port(&workload["spec"]["template"], &json!(address.port()));
            }
            let admin = loaded.admin.port();
            let annotations = &workload["spec"]["template"]["metadata"]["annotations"];
            assert_eq!(annotations["prometheus.io/port"], admin.to_string(), "{at}: scrape the admin port");
            let probe_port =
                |probe: &Value, how: &str| container_port(&workload["spec"]["template"], &probe[how]["port"]);
            let liveness = &container["livenessProbe"];
            assert_eq!(probe_port(liveness, "httpGet"), admin, "{at}: liveness asks the admin port");
            let readiness = &container["readinessProbe"];
            if loaded.egress() {
                // Its proxy is on loopback, out of the kubelet's reach; the admin port opens
                // once the proxy is bound. Never /healthz, the broker's state: the tap proxies
                // without Kafka, and its pod is the application's.
                assert_eq!(probe_port(readiness, "httpGet"), admin, "{at}: readiness asks the admin port");
                assert_eq!(readiness["httpGet"]["path"], "/metrics", "{at}: readiness asks /metrics");
            } else if loaded.service == Service::Tap {
                // The tap proxies whether or not Kafka answers: ready when its proxy port accepts.
                let proxy = loaded.serves.expect("the tap listens").port();
                assert_eq!(probe_port(readiness, "tcpSocket"), proxy, "{at}: readiness on the proxy port");
            } else {
                assert_eq!(probe_port(readiness, "httpGet"), admin, "{at}: readiness asks the admin port");
                assert_eq!(readiness["httpGet"]["path"], "/healthz", "{at}: readiness asks /healthz");
            }
            if [Service::Mirror, Service::Correlator].contains(&loaded.service) {
                let replicas = workload["spec"]["replicas"].as_i64().unwrap_or(1);
                let partitions = i64::from(loaded.partitions.expect("consumers know the partition count"));
                assert!(
                    replicas <= partitions,
                    "{at}: {replicas} replicas for {partitions} partitions leave some idle"
                );
            }
        }
        let services: BTreeSet<Service> = running.iter().map(|r| r.loaded.service).collect();
        assert_eq!(services, SERVICES.into_iter().collect(), "{dir} runs every shadowdiff service");

        for service in render.services() {
            for port in service["spec"]["ports"].as_array().expect("ports") {
                render.through_service(name(&service), u16::try_from(port["port"].as_u64().unwrap()).unwrap());
            }
        }
        for workload in render.workloads().filter(|w| name(w).starts_with("shadowdiff-")) {
            let labels = &workload["spec"]["template"]["metadata"]["labels"];
            let budgets =
                render.all("PodDisruptionBudget").filter(|b| selects(&b["spec"]["selector"]["matchLabels"], labels));
            assert_eq!(budgets.count(), 1, "{dir}: {} needs one PodDisruptionBudget", name(workload));
        }
        for budget in render.all("PodDisruptionBudget") {
            let selector = &budget["spec"]["selector"]["matchLabels"];
            let covered = render.workloads().any(|w| selects(selector, &w["spec"]["template"]["metadata"]["labels"]));
            assert!(covered, "{dir}: PodDisruptionBudget {} selects no pods", name(budget));
        }
    }
    assert!(applied_count >= 2, "overlays/ and examples/ hold the applied trees");
}

#[test]
fn pods_turn_service_links_off_and_services_start_with_them_anyway() {
    for render in renders() {
        for workload in render.workloads() {
            assert_eq!(
                workload["spec"]["template"]["spec"]["enableServiceLinks"],
                false,
                "{}: {} {} should set enableServiceLinks: false",
                render.dir,
                kind(workload),
                name(workload)
            );
        }
    }
    // A pod that did get them (a patch that drops the setting, a platform that injects them)
    // must still start: running() loads every service with the variables of every Service in
    // the namespace, controllers' included.
    for render in applied() {
        let linked: BTreeSet<String> = render.services().iter().map(|s| name(s).to_owned()).collect();
        for (workload, container, at) in render.service_containers() {
            let env = render.environment(&workload["spec"]["template"], container);
            for service in &linked {
                let host = format!("{}_SERVICE_HOST", service.to_ascii_uppercase().replace('-', "_"));
                assert!(env.iter().any(|v| v.name == host), "{at}: the test gives it {host}");
            }
        }
        assert!(!render.running().is_empty());
    }
    let flagger = render("examples/flagger").services();
    let names: BTreeSet<&str> = flagger.iter().map(name).collect();
    for created in ["shop", "shop-primary", "shop-canary"] {
        assert!(names.contains(created), "Flagger's Service {created} is among the links");
    }
}

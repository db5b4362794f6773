//! The ClickHouse cluster of examples/clickhouse-cluster, run by the Altinity
//! clickhouse-operator, and the services joined to it (overlays/clickhouse-cluster).
//!
//! The operator's objects are checked against its CRDs' fields by `altinity` (through
//! `schemas`, for every tree); here the installation is checked against what the services'
//! cluster mode needs of it, as the services' own loader reads their configs: their `cluster` is a cluster of the installation,
//! of at least two shards of two replicas; their url is the installation's Service; the
//! servers coordinate through the Keeper of the tree; the services' user exists with the
//! password of the very Secret and key they read, a profile that may write, their database,
//! and networks beyond the operator's own pods; and the NetworkPolicy lets the correlator and
//! the verdict API in, the operator and the servers themselves, and no one else. Each check
//! also fails on a copy broken for it.

use serde_json::{Value, json};

use crate::cluster::{EXAMPLE_NAMESPACE, Pods, Track};
use crate::configs::Service;
use crate::network_policy::{Direction, Peer};
use crate::render::{BACKING_TREES, Render, kind, name, render};
use crate::tools::{host_port, str_of};

/// The tree of the installation, and the overlay of the services that use it.
pub(crate) const INSTALLATION_TREE: &str = "examples/clickhouse-cluster";
const SERVICES_TREE: &str = "overlays/clickhouse-cluster";

/// The operator's defaults: the port of the installation's Service that speaks HTTP, the
/// Keeper's client port, and the names of the ClickHouse container's ports.
const CLICKHOUSE_HTTP_PORT: u16 = 8123;
const KEEPER_PORT: u64 = 2181;
const SERVER_PORTS: [(u16, &str); 3] = [(8123, "http"), (9000, "tcp"), (9009, "interserver")];
/// Where the operator's install bundle runs it (its pods are labelled app=clickhouse-operator).
const OPERATOR_NAMESPACE: &str = "kube-system";

fn the_one<'a>(tree: &'a Render, kind_: &'a str, problems: &mut Vec<String>) -> Option<&'a Value> {
    let found: Vec<&Value> = tree.all(kind_).collect();
    if found.len() != 1 {
        problems.push(format!("{}: {} {kind_}s, not one", tree.dir, found.len()));
    }
    found.into_iter().next()
}

/// A user's setting (`<user>/<setting>`) in the installation.
fn user_setting<'a>(chi: &'a Value, user: &str, setting: &str) -> &'a Value {
    &chi["spec"]["configuration"]["users"][format!("{user}/{setting}")]
}

/// Everything in the way of the services of `services` using the installation of
/// `installation` as their ClickHouse cluster.
fn cluster_problems(installation: &Render, services: &Render) -> Vec<String> {
    let mut problems = Vec::new();
    let (Some(chi), Some(chk)) = (
        the_one(installation, "ClickHouseInstallation", &mut problems),
        the_one(installation, "ClickHouseKeeperInstallation", &mut problems),
    ) else {
        return problems;
    };
    let namespace = installation.namespace();
    let configuration = &chi["spec"]["configuration"];
    let clusters = configuration["clusters"].as_array().cloned().unwrap_or_default();

    // The Keeper: a quorum of its own nodes, which the installation names by its Service.
    let keepers = chk["spec"]["configuration"]["clusters"][0]["layout"]["replicasCount"].as_u64().unwrap_or(1);
    if keepers < 3 || keepers % 2 == 0 {
        problems.push(format!("the Keeper runs {keepers} nodes: an odd number, at least 3, keeps a quorum"));
    }
    let keeper_port =
        chk["spec"]["configuration"]["settings"]["keeper_server/tcp_port"].as_u64().unwrap_or(KEEPER_PORT);
    let keeper_service = format!("keeper-{}", name(chk));

    let running = services.running();
    let users: Vec<_> = running.iter().filter(|r| r.loaded.clickhouse.is_some()).collect();
    let mut services_seen: Vec<Service> = users.iter().map(|r| r.loaded.service).collect();
    services_seen.sort();
    if services_seen != [Service::Correlator, Service::Verdict] {
        problems.push(format!("{}: ClickHouse users {services_seen:?}, not the correlator and verdict", services.dir));
    }
    for user in users {
        let at = format!("{} {}", services.dir, name(user.workload));
        let config = user.loaded.clickhouse.as_ref().expect("filtered on it");
        let (host, port) = host_port(&config.url);
        let service = format!("clickhouse-{}", name(chi));
        let fqdn = [format!("{service}.{namespace}"), format!("{service}.{namespace}.svc")];
        if !(fqdn.contains(&host) || host == format!("{}.cluster.local", fqdn[1])) || port != CLICKHOUSE_HTTP_PORT {
            problems.push(format!(
                "{at}: url {}: the installation's Service is {service} in {namespace}, port {CLICKHOUSE_HTTP_PORT}",
                config.url
            ));
        }
        let Some(cluster) = config.cluster.as_deref() else {
            problems.push(format!("{at}: no [clickhouse] cluster: it would write plain tables on one server"));
            continue;
        };
        let Some(defined) = clusters.iter().find(|c| c["name"] == cluster) else {
            let names: Vec<&Value> = clusters.iter().map(|c| &c["name"]).collect();
            problems.push(format!("{at}: cluster {cluster:?} is not among the installation's clusters {names:?}"));
            continue;
        };
        let layout = &defined["layout"];
        let shards = layout["shardsCount"].as_u64().unwrap_or(1);
        let replicas = layout["replicasCount"].as_u64().unwrap_or(1);
        if shards < 2 {
            problems.push(format!("cluster {cluster}: {shards} shards, not sharded"));
        }
        if replicas < 2 {
            problems.push(format!("cluster {cluster}: {replicas} replicas a shard, none to take over"));
        }
        let zookeeper =
            if defined["zookeeper"].is_object() { &defined["zookeeper"] } else { &configuration["zookeeper"] };
        let nodes = zookeeper["nodes"].as_array().cloned().unwrap_or_default();
        if nodes.is_empty() {
            problems
                .push(format!("cluster {cluster}: no zookeeper nodes, which replicated tables and ON CLUSTER need"));
        }
        for node in &nodes {
            let host = node["host"].as_str().unwrap_or_default();
            let local = host.split('.').next() == Some(keeper_service.as_str())
                && [None, Some(namespace)].contains(&host.split('.').nth(1));
            if !local || node["port"].as_u64().unwrap_or(KEEPER_PORT) != keeper_port {
                problems.push(format!(
                    "zookeeper node {node}: the Keeper here is {keeper_service} in {namespace}, port {keeper_port}"
                ));
            }
        }

        // The services' user, with the password they read.
        let name_ = config.user.as_str();
        if !configuration["users"].as_object().is_some_and(|u| u.keys().any(|k| k.starts_with(&format!("{name_}/")))) {
            problems.push(format!("{at}: user {name_:?} (the Secret's) is not among the installation's users"));
            continue;
        }
        let read = user
            .container
            .get("env")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|v| v["name"] == "SHADOWDIFF_CLICKHOUSE_PASSWORD")
            .map(|v| &v["valueFrom"]["secretKeyRef"]);
        let Some(read) = read else {
            problems.push(format!("{at}: no password from a Secret"));
            continue;
        };
        let (secret, key) = (str_of(&read["name"]), str_of(&read["key"]));
        let wanted = format!("{EXAMPLE_NAMESPACE}/{secret}/{key}");
        let from = user_setting(chi, name_, "k8s_secret_password");
        if from.as_str() != Some(wanted.as_str()) {
            problems.push(format!("user {name_}: k8s_secret_password {from}, the services read {wanted}"));
        }
        if services.secret(secret, key).is_none() {
            problems.push(format!("user {name_}: {secret}/{key} is not a Secret secrets.sh creates"));
        }
        for other in ["password", "password_sha256_hex", "password_double_sha1_hex"] {
            if !user_setting(chi, name_, other).is_null() {
                problems.push(format!("user {name_}: {other} beside k8s_secret_password"));
            }
        }
        let databases = user_setting(chi, name_, "allow_databases/database");
        let allowed =
            databases.as_array().is_none_or(|d| d.iter().any(|d| d.as_str() == Some(config.database.as_str())));
        if !allowed {
            problems.push(format!("user {name_}: allow_databases {databases} leaves out {}", config.database));
        }
        let profile = user_setting(chi, name_, "profile").as_str().unwrap_or("default");
        let setting = |key: &str| &configuration["profiles"][format!("{profile}/{key}")];
        // The services write, and set these on every query of the cluster mode.
        for (key, theirs) in [
            ("readonly", json!(0)),
            ("insert_distributed_sync", json!(1)),
            ("distributed_product_mode", json!("global")),
            ("load_balancing", json!("in_order")),
        ] {
            let value = setting(key);
            if !value.is_null() && *value != theirs {
                problems.push(format!("profile {profile}: {key} {value}, the services need {theirs}"));
            }
        }
        // Left without networks, the operator admits its own pods only.
        let networks = user_setting(chi, name_, "networks/ip");
        let ips: Vec<&str> = match networks {
            Value::String(ip) => vec![ip],
            Value::Array(ips) => ips.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if ips.is_empty() || ips.iter().any(|ip| ["::/0", "0.0.0.0/0"].contains(ip)) {
            problems.push(format!("user {name_}: networks/ip {networks}: the pods' addresses, not the world's"));
        }

        // The NetworkPolicy: the pods' namespace boundary.
        let no_template = json!({});
        let servers = Pods {
            owner: format!("chi-{}", name(chi)),
            track: Track::Only,
            labels: json!({
                "clickhouse.altinity.com/app": "chop",
                "clickhouse.altinity.com/chi": name(chi),
                "clickhouse.altinity.com/cluster": cluster,
                "clickhouse.altinity.com/namespace": namespace,
            }),
            template: &no_template,
        };
        let inbound = |peer: &Peer, (port, port_name): (u16, &str)| {
            installation.admits(&servers, Direction::Ingress, peer, port, Some(port_name), "TCP")
        };
        let http = SERVER_PORTS[0];
        let client = Peer::pod(EXAMPLE_NAMESPACE, services.pods_of(user.workload).labels.clone());
        if !inbound(&client, http) {
            problems.push(format!("NetworkPolicy: {at} in {EXAMPLE_NAMESPACE} cannot reach the servers"));
        }
        let operator = Peer::pod(OPERATOR_NAMESPACE, json!({ "app": "clickhouse-operator" }));
        if !inbound(&operator, http) {
            problems.push("NetworkPolicy: the operator cannot reach the servers".into());
        }
        for port in SERVER_PORTS {
            if !inbound(&Peer::pod(namespace, servers.labels.clone()), port) {
                problems.push(format!("NetworkPolicy: the servers cannot reach each other on {}", port.0));
            }
        }
        let stranger = Peer::pod(EXAMPLE_NAMESPACE, json!({ "app.kubernetes.io/name": "stranger" }));
        for kept_out in [stranger, Peer::any_in("default"), Peer::any_in(namespace)] {
            if inbound(&kept_out, http) {
                problems.push(format!("NetworkPolicy: the servers admit {kept_out:?}"));
            }
        }
    }
    problems
}

/// An edit of an installation's `spec.configuration`.
fn configuration(edit: impl Fn(&mut Value)) -> impl Fn(&mut Value) {
    move |o| edit(&mut o["spec"]["configuration"])
}

#[test]
fn the_services_join_the_clickhouse_cluster() {
    let installation = render(INSTALLATION_TREE);
    let services = render(SERVICES_TREE);
    assert!(BACKING_TREES.contains(&INSTALLATION_TREE));
    for tree in BACKING_TREES.map(render) {
        assert!(tree.service_containers().is_empty(), "{}: runs shadowdiff services", tree.dir);
    }
    let problems = cluster_problems(installation, services);
    assert!(problems.is_empty(), "{SERVICES_TREE} on {INSTALLATION_TREE}:\n  {}", problems.join("\n  "));

    // Every check fails on a copy broken for it.
    let edited = |tree: &Render, kind_: &str, edit: &dyn Fn(&mut Value)| {
        let mut objects = tree.objects.clone();
        edit(objects.iter_mut().find(|o| kind(o) == kind_).expect("in the tree"));
        Render { dir: tree.dir.clone(), objects, cluster_secrets: tree.cluster_secrets }
    };
    let check = |installation: &Render, services: &Render, expect: &str| {
        let problems = cluster_problems(installation, services);
        assert!(
            problems.iter().any(|p| p.contains(expect)),
            "a copy broken for {expect:?} passed; problems found: {problems:#?}"
        );
    };
    let chi = |edit: &dyn Fn(&mut Value), expect: &str| {
        check(&edited(installation, "ClickHouseInstallation", edit), services, expect);
    };
    let users = |key: &'static str, value: Value| {
        move |o: &mut Value| {
            let users = o["spec"]["configuration"]["users"].as_object_mut().unwrap();
            users.insert(key.to_owned(), value.clone());
        }
    };
    // The services' shared environment, with one variable changed.
    let shared = |key: &str, value: &str| {
        let mut objects = services.objects.clone();
        let map = objects.iter_mut().find(|o| kind(o) == "ConfigMap" && name(o).starts_with("shadowdiff-shared"));
        map.expect("the shared environment")["data"][key] = json!(value);
        Render { dir: services.dir.clone(), objects, cluster_secrets: services.cluster_secrets }
    };

    chi(&configuration(|c| c["clusters"][0]["name"] = json!("other")), "not among the installation's clusters");
    chi(&configuration(|c| c["clusters"][0]["layout"]["shardsCount"] = json!(1)), "not sharded");
    chi(&configuration(|c| c["clusters"][0]["layout"]["replicasCount"] = json!(1)), "none to take over");
    chi(&configuration(|c| drop(c.as_object_mut().unwrap().remove("zookeeper"))), "no zookeeper nodes");
    chi(&configuration(|c| c["zookeeper"]["nodes"][0]["host"] = json!("zookeeper")), "the Keeper here");
    chi(&users("shadowdiff/k8s_secret_password", json!("shop/shadowdiff-clickhouse/passwd")), "k8s_secret_password");
    chi(&users("shadowdiff/password", json!("in-the-clear")), "password beside");
    chi(&users("shadowdiff/networks/ip", json!(["::/0"])), "networks/ip");
    chi(&users("shadowdiff/allow_databases/database", json!(["default"])), "allow_databases");
    chi(&configuration(|c| c["profiles"]["shadowdiff/readonly"] = json!(1)), "readonly");
    chi(&configuration(|c| drop(c["users"].as_object_mut().unwrap().remove("shadowdiff/networks/ip"))), "networks");
    let keeper = edited(installation, "ClickHouseKeeperInstallation", &|o| {
        o["spec"]["configuration"]["clusters"][0]["layout"]["replicasCount"] = json!(2);
    });
    check(&keeper, services, "quorum");
    let policy = edited(installation, "NetworkPolicy", &|p| {
        p["spec"]["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] =
            json!("elsewhere");
    });
    check(&policy, services, "cannot reach the servers");
    let open = edited(installation, "NetworkPolicy", &|p| drop(p["spec"]["ingress"][1]["from"].take()));
    check(&open, services, "admit");
    check(
        installation,
        &shared("SHADOWDIFF_CLICKHOUSE_CLUSTER", "shadowdiff"),
        "not among the installation's clusters",
    );
    check(
        installation,
        &shared("SHADOWDIFF_CLICKHOUSE_URL", "http://clickhouse.clickhouse.svc.cluster.local:8123"),
        "the installation's Service",
    );
    chi(
        &|o| {
            let users = o["spec"]["configuration"]["users"].as_object_mut().unwrap();
            let renamed = std::mem::take(users).into_iter().map(|(k, v)| (k.replace("shadowdiff/", "reader/"), v));
            *users = renamed.collect();
        },
        "not among the installation's users",
    );
}

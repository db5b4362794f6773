//! The egress overlay (components/egress-tap): an egress tap in each of the application's
//! pods, forwarding for the primary and stubbing every shadow; the application's containers
//! send their plain-HTTP calls through their own pod's tap, and shadowdiff's endpoints past it.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use hyper_util::client::proxy::matcher::Matcher;
use serde_json::{Value, json};
use shadowdiff_tap::config::{EgressRole, Mode, StubConfig};

use crate::cluster::Pods;
use crate::configs::{EnvVar, Service, Upstream, fields_of};
use crate::network_policy::{Direction, Peer, namespace_of_host};
use crate::render::{Render, Running, name, render};
use crate::tools::{host_port, str_of, strings};

const OVERLAY: &str = "overlays/egress";

/// The variables that send an application's calls through a proxy, and those that keep
/// calls from it. Clients differ in which spelling they read (curl only the lower case one
/// for http), so both must be set and agree.
const HTTP_PROXY: [&str; 2] = ["HTTP_PROXY", "http_proxy"];
const NO_PROXY: [&str; 2] = ["NO_PROXY", "no_proxy"];
/// The tap does not tunnel CONNECT: none of these may be set.
const NOT_SET: [&str; 4] = ["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"];

/// One egress tap of the overlay, and the pods it runs in.
struct EgressTap<'a> {
    running: &'a Running<'a>,
    pods: Pods<'a>,
    role: EgressRole,
    deployment: String,
    stub: Option<StubConfig>,
    /// Where the proxy listens.
    proxy: SocketAddr,
}

fn egress_taps<'a>(render: &'a Render, running: &'a [Running<'a>]) -> Vec<EgressTap<'a>> {
    let taps = running.iter().filter_map(|r| match r.loaded.tap_mode.clone() {
        Some(Mode::Egress { role, deployment, stub }) => Some(EgressTap {
            running: r,
            pods: render.pods_of(r.workload),
            role,
            deployment,
            stub,
            proxy: r.loaded.serves.expect("a tap listens"),
        }),
        _ => None,
    });
    taps.collect()
}

fn at(tap: &EgressTap<'_>) -> String {
    format!("{OVERLAY}: {}/{}", name(tap.running.workload), str_of(&tap.running.container["name"]))
}

fn role_name(role: EgressRole) -> &'static str {
    shadowdiff_core::Role::from(role).as_str()
}

/// The last value the container gets for `var` (`env` wins over `envFrom`).
fn var<'a>(env: &'a [EnvVar], var: &str) -> Option<&'a str> {
    env.iter().rev().find(|v| v.name == var).map(|v| v.value.as_str())
}

/// The pods behind the Service `url` names.
fn owners_behind(render: &Render, url: &str) -> BTreeSet<String> {
    let (host, port) = host_port(url);
    render.through_service(&host, port).1.into_iter().map(|p| p.owner).collect()
}

#[test]
fn egress_taps_forward_for_the_primary_and_stub_every_shadow() {
    let render = render(OVERLAY);
    // Every container's config and environment, the egress taps' included, loaded by its
    // service's own loader (TapConfig for the taps): an unknown key or a refused rule panics.
    let running = render.running();
    let taps = egress_taps(render, &running);
    let mirror = running.iter().find(|r| r.loaded.service == Service::Mirror).expect("the mirror runs");
    let targets: Vec<&Upstream> = mirror.loaded.upstreams.iter().collect();
    assert!(!targets.is_empty(), "{OVERLAY}: the mirror's profile names its shadows");
    let ingress = running.iter().find(|r| name(r.workload) == "shadowdiff-tap").expect("the ingress tap runs");
    let live = owners_behind(render, ingress.loaded.upstreams[0].url.as_str());
    let target_hosts: BTreeSet<String> = targets.iter().map(|t| host_port(&t.url).0).collect();

    let mut primaries = BTreeSet::new();
    let mut stubbed = BTreeSet::new();
    for tap in &taps {
        let at = at(tap);
        let owner = name(tap.running.workload).to_owned();
        assert_eq!(
            tap.pods.labels["shadowdiff.dev/deployment"], tap.deployment,
            "{at}: the tap names its deployment by the pod's label"
        );
        match (tap.role, &tap.stub) {
            (EgressRole::Primary, None) => {
                assert!(
                    live.contains(&owner),
                    "{at}: a primary's egress tap outside the pods the ingress tap serves {live:?}"
                );
                primaries.insert(owner);
            }
            (EgressRole::Primary, Some(_)) => panic!("{at}: the primary's egress tap is a stub"),
            (role, None) => panic!("{at}: the {} shadow's egress tap forwards its calls", role_name(role)),
            (role, Some(stub)) => {
                let target = targets.iter().find(|t| t.name == tap.deployment).unwrap_or_else(|| {
                    panic!("{at}: deployment {:?} is no target of the mirror's profile", tap.deployment)
                });
                assert_eq!(
                    target.role,
                    role_name(role),
                    "{at}: the mirror replays to {} as its {}",
                    target.name,
                    target.role
                );
                assert!(
                    owners_behind(render, &target.url).contains(&owner),
                    "{at}: the mirror's {} ({}) does not lead to these pods",
                    target.name,
                    target.url
                );
                let timeout = target.timeout.expect("a mirror target's timeout");
                assert!(
                    stub.wait < timeout,
                    "{at}: an unmatched call is answered after wait_ms {:?}, the mirror gives up after {timeout:?}",
                    stub.wait
                );
                // Stubs answer every call: never in pods that take real traffic.
                assert!(!live.contains(&owner), "{at}: a stub in the pods the ingress tap forwards to");
                for service in render.services().iter().filter(|s| tap.selected_by(s)) {
                    assert!(
                        target_hosts.contains(name(service)),
                        "{at}: Service {} leads to a stub's pods and is none of the mirror's targets",
                        name(service)
                    );
                }
                assert!(stubbed.insert(target.name.clone()), "{at}: a second stub for {}", target.name);
            }
        }
    }
    assert_eq!(primaries, live, "{OVERLAY}: the pods behind the ingress tap's upstream record their calls");
    let every_target: BTreeSet<String> = targets.iter().map(|t| t.name.clone()).collect();
    assert_eq!(stubbed, every_target, "{OVERLAY}: every shadow of the profile has a stub egress tap");
}

impl EgressTap<'_> {
    fn selected_by(&self, service: &Value) -> bool {
        crate::cluster::selects(&service["spec"]["selector"], &self.pods.labels)
    }
}

#[test]
fn applications_send_plain_http_through_their_egress_tap_and_shadowdiff_past_it() {
    let render = render(OVERLAY);
    let running = render.running();
    let taps = egress_taps(render, &running);
    assert!(!taps.is_empty(), "{OVERLAY}: no egress tap");
    let namespace = render.namespace();
    let correlator = running.iter().find(|r| r.loaded.service == Service::Correlator).expect("the correlator runs");
    let clickhouse = correlator.loaded.clickhouse_url().map(str::to_owned).expect("the correlator's ClickHouse");
    let dns = Peer::pod("kube-system", json!({ "k8s-app": "kube-dns" }));

    for tap in &taps {
        let at = at(tap);
        let pod = tap.pods.template;
        let brokers = tap.running.loaded.kafka_brokers.clone().expect("the tap's brokers");
        let own = render.environment(pod, tap.running.container);
        for set in HTTP_PROXY.iter().chain(&NO_PROXY).chain(&NOT_SET) {
            assert!(var(&own, set).is_none(), "{at}: the tap itself gets {set}");
        }

        let apps = pod["spec"]["containers"]
            .as_array()
            .expect("containers")
            .iter()
            .filter(|c| strings(&c["args"]).first().and_then(|binary| Service::of_binary(binary)).is_none());
        let mut app_count = 0;
        for container in apps {
            app_count += 1;
            let at = format!("{at}, beside {}", str_of(&container["name"]));
            let env = render.environment(pod, container);
            let proxy = format!("http://{}", tap.proxy);
            for set in HTTP_PROXY {
                assert_eq!(var(&env, set), Some(proxy.as_str()), "{at}: {set} is the tap's proxy");
            }
            let no_proxy = var(&env, NO_PROXY[0]).unwrap_or_else(|| panic!("{at}: no {}", NO_PROXY[0]));
            assert_eq!(var(&env, NO_PROXY[1]), Some(no_proxy), "{at}: {} and {} differ", NO_PROXY[0], NO_PROXY[1]);
            for unset in NOT_SET {
                assert!(var(&env, unset).is_none(), "{at}: {unset} is set, and the tap does not tunnel CONNECT");
            }

            // As the application's HTTP client decides (reqwest's own matcher, from these values).
            let matcher = Matcher::builder().http(proxy.clone()).no(no_proxy.to_owned()).build();
            let proxied_by = |url: &str| {
                let uri: http::Uri = url.parse().unwrap();
                matcher.intercept(&uri).map(|i| i.uri().authority().expect("a proxy address").to_string())
            };
            let tap_address = tap.proxy.to_string();
            // Calls to the application's dependencies in the cluster, however named, are
            // the calls to record (and to stub): the service domain is not in NO_PROXY.
            for service in render.services().iter().filter(|s| !name(s).starts_with("shadowdiff-")) {
                for port in service["spec"]["ports"].as_array().expect("ports") {
                    let port = &port["port"];
                    for host in [name(service).to_owned(), format!("{}.{namespace}.svc.cluster.local", name(service))] {
                        let url = format!("http://{host}:{port}/");
                        assert_eq!(proxied_by(&url).as_deref(), Some(tap_address.as_str()), "{at}: {url}");
                        let https = format!("https://{host}:{port}/");
                        assert_eq!(proxied_by(&https), None, "{at}: {https} would be sent to the tap as CONNECT");
                    }
                }
            }
            for endpoint in brokers.split(',').chain([clickhouse.as_str(), "localhost:8080", "127.0.0.1:8080"]) {
                let (host, port) = host_port(endpoint);
                let url = format!("http://{host}:{port}/");
                assert_eq!(proxied_by(&url), None, "{at}: shadowdiff's own {url} goes through the tap");
            }
        }
        assert!(app_count > 0, "{at}: no application container beside the tap");

        // No Service leads to the proxy: it is for its own pod only.
        for service in render.services().iter().filter(|s| tap.selected_by(s)) {
            for port in service["spec"]["ports"].as_array().expect("ports") {
                let (target, _) =
                    render.through_service(name(service), u16::try_from(port["port"].as_u64().unwrap()).unwrap());
                assert_ne!(target, tap.proxy.port(), "{at}: Service {} leads to the egress proxy", name(service));
            }
        }

        // The tap publishes, and a stub reads the primary's calls: its pod reaches Kafka.
        let outbound = |peer: &Peer, port: u16, protocol: &str| {
            render.admits(&tap.pods, Direction::Egress, peer, port, None, protocol)
        };
        assert!(outbound(&dns, 53, "UDP") && outbound(&dns, 53, "TCP"), "{at}: DNS");
        for broker in brokers.split(',') {
            let (host, port) = host_port(broker);
            assert!(
                outbound(&Peer::any_in(namespace_of_host(&host, namespace)), port, "TCP"),
                "{at}: Kafka at {broker}"
            );
        }
    }
}

/// The keys the config file and the container's environment set under `[tap.mode]`, as
/// dotted paths below it (`role`, `stub.wait_ms`).
fn mode_keys(text: &str, env: &[EnvVar]) -> BTreeSet<String> {
    let table: toml::Table = text.parse().expect("the config parses as TOML");
    let mut keys = BTreeSet::new();
    let mode = table.get("tap").and_then(|t| t.get("mode")).and_then(toml::Value::as_table);
    for (key, value) in mode.into_iter().flatten() {
        match value.as_table() {
            Some(inner) => keys.extend(inner.keys().map(|k| format!("{key}.{k}"))),
            None => {
                keys.insert(key.clone());
            }
        }
    }
    let from_env = env.iter().filter_map(|v| v.name.strip_prefix("SHADOWDIFF_TAP_MODE__"));
    keys.extend(from_env.map(|path| path.split("__").map(str::to_ascii_lowercase).collect::<Vec<_>>().join(".")));
    keys
}

#[test]
fn egress_tap_configs_name_only_real_keys_and_refuse_a_primary_stub() {
    let render = render(OVERLAY);
    let running = render.running();
    let taps = egress_taps(render, &running);
    // The config loader reports unknown keys through serde_ignored, which does not see into
    // `[tap.mode]` (an internally tagged enum is read from a buffered copy): a misspelt key
    // there would silently fall back to its default, and a misspelt `[tap.mode.stub]` would
    // make a shadow's stub a forwarding tap. So the keys are checked here, against the
    // egress variant's fields and StubConfig's own.
    let mut known: BTreeSet<String> = ["kind", "role", "deployment"].into_iter().map(str::to_owned).collect();
    known.extend(fields_of::<StubConfig>().iter().map(|f| format!("stub.{f}")));
    for tap in &taps {
        let at = at(tap);
        let pod = tap.pods.template;
        let (service, text) = render.config_of(&at, pod, tap.running.container);
        let mut env = render.environment(pod, tap.running.container);
        let unknown: Vec<String> = mode_keys(&text, &env).difference(&known).cloned().collect();
        assert!(unknown.is_empty(), "{at}: unknown keys under [tap.mode]: {unknown:?}");
        assert_eq!(
            mode_keys(&text, &[]).iter().any(|k| k.starts_with("stub.")),
            tap.stub.is_some(),
            "{at}: its config file and its loaded mode disagree on stub mode"
        );

        // A primary labelled for a stub (shadowdiff.dev/egress-tap=stub) does not start.
        if tap.stub.is_some() {
            env.push(EnvVar { name: "SHADOWDIFF_TAP_MODE__ROLE".into(), value: "primary".into(), shared: false });
            let refused = service.load(&text, &at, &env).err().unwrap_or_default();
            assert!(refused.contains("tap.mode.stub"), "{at}: a stub with role primary starts: {refused:?}");
        }
    }
    assert!(taps.iter().any(|t| t.stub.is_some()), "{OVERLAY}: no stub egress tap");
}

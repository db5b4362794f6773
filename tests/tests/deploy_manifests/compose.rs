//! `docker-compose.yaml`: the Compose Specification's JSON schema and Debian's docker-compose
//! accept it; each shadowdiff service's mounted config and environment load, every
//! `SHADOWDIFF_*` variable names a real key, and every address a config names leads to a
//! service listening there; dependencies, volumes, images and plugins are complete and pinned.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use serde_json::{Value, json};

use crate::configs::{EnvVar, SERVICES, Service};
use crate::dockerfile::dockerfile_binaries;
use crate::tools::{TempFile, arg_after, host_port, path_tool, read, repo, run, str_of, strings, venv_tool, yaml_file};

pub(crate) fn compose() -> &'static Value {
    static COMPOSE: OnceLock<Value> = OnceLock::new();
    COMPOSE.get_or_init(|| yaml_file("docker-compose.yaml"))
}

pub(crate) fn compose_services() -> &'static serde_json::Map<String, Value> {
    compose()["services"].as_object().expect("services is a map")
}

pub(crate) fn environment(service: &Value) -> Vec<EnvVar> {
    let pairs: Vec<(String, String)> = match &service["environment"] {
        Value::Object(map) => {
            map.iter().map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_owned))).collect()
        }
        Value::Array(items) => items
            .iter()
            .map(|i| str_of(i).split_once('=').expect("KEY=VALUE"))
            .map(|(k, v)| (k.into(), v.into()))
            .collect(),
        Value::Null => Vec::new(),
        other => panic!("environment: {other}"),
    };
    pairs.into_iter().map(|(name, value)| EnvVar { name, value, shared: false }).collect()
}

/// A volume entry in short syntax: (source, target, read-only).
pub(crate) fn volumes(service: &Value) -> Vec<(String, String, bool)> {
    strings(&service["volumes"])
        .iter()
        .map(|v| {
            let parts: Vec<&str> = v.split(':').collect();
            assert!(parts.len() >= 2, "volume {v}: use SOURCE:TARGET[:ro]");
            (parts[0].to_owned(), parts[1].to_owned(), parts.get(2) == Some(&"ro"))
        })
        .collect()
}

fn is_bind(source: &str) -> bool {
    source.starts_with('.') || source.starts_with('/')
}

fn depends_on(service: &Value) -> BTreeMap<String, Option<String>> {
    match &service["depends_on"] {
        Value::Object(map) => {
            map.iter().map(|(k, v)| (k.clone(), v["condition"].as_str().map(str::to_owned))).collect()
        }
        Value::Array(items) => items.iter().map(|i| (str_of(i).to_owned(), None)).collect(),
        Value::Null => BTreeMap::new(),
        other => panic!("depends_on: {other}"),
    }
}

/// Every word of the service's command, shell scripts split on whitespace.
fn command_words(service: &Value) -> Vec<String> {
    strings(&service["command"]).iter().flat_map(|a| a.split_whitespace().map(str::to_owned)).collect()
}

/// The port a demo backend listens on (`--listen ADDR`).
fn backend_port(service: &Value) -> Option<u16> {
    let words = command_words(service);
    arg_after(&words, "--listen").map(|addr| addr.parse::<SocketAddr>().expect("--listen takes IP:PORT").port())
}

/// Published ports, `HOST_IP:HOST_PORT:CONTAINER_PORT` → (HOST_IP:HOST_PORT, CONTAINER_PORT).
fn published(service: &Value) -> Vec<(String, u16)> {
    strings(&service["ports"])
        .iter()
        .map(|p| {
            let (host, container) = p.rsplit_once(':').expect("ports: HOST_IP:HOST_PORT:CONTAINER_PORT");
            (host.to_owned(), container.parse().expect("a container port"))
        })
        .collect()
}

fn prometheus_targets() -> Vec<String> {
    let prometheus = yaml_file("deploy/prometheus/prometheus.yml");
    let jobs = prometheus["scrape_configs"].as_array().expect("scrape_configs");
    let statics = jobs.iter().flat_map(|job| job["static_configs"].as_array().into_iter().flatten());
    statics.flat_map(|s| strings(&s["targets"])).collect()
}

#[test]
fn compose_file_follows_the_compose_specification() {
    let check = |file: &Path| {
        let mut command = Command::new(venv_tool("check-jsonschema"));
        command.args(["--builtin-schema", "vendor.compose-spec"]).arg(file);
        run(command, None)
    };
    let ran = check(&repo().join("docker-compose.yaml"));
    assert!(ran.ok, "docker-compose.yaml breaks the Compose Specification:\n{}", ran.output);

    // The schema is no rubber stamp: a misspelt key fails it.
    let mut broken = compose().clone();
    broken["services"]["verdict"]["helthcheck"] = json!({ "test": ["CMD", "true"] });
    let file = TempFile::new("json", &broken.to_string());
    let ran = check(&file.0);
    assert!(!ran.ok && ran.output.contains("helthcheck"), "a misspelt key passed the schema:\n{}", ran.output);

    let mut command = Command::new(path_tool("docker-compose"));
    command.current_dir(repo()).args(["--file", "docker-compose.yaml", "config", "--quiet"]);
    let ran = run(command, None);
    assert!(ran.ok, "docker-compose rejects docker-compose.yaml:\n{}", ran.output);
}

#[test]
fn compose_services_load_their_configs_and_reach_what_they_name() {
    let services = compose_services();
    let targets = prometheus_targets();
    let mut seen = BTreeSet::new();
    for (name, service) in services {
        let words = strings(&service["command"]);
        let Some(kind) = words.first().and_then(|binary| Service::of_binary(binary)) else { continue };
        seen.insert(kind);
        let config = arg_after(&words, "--config").unwrap_or_else(|| panic!("{name}: no --config"));
        let (source, _, read_only) = volumes(service)
            .into_iter()
            .find(|(_, target, _)| target == config)
            .unwrap_or_else(|| panic!("{name}: nothing is mounted at {config}"));
        assert!(read_only, "{name}: mount {source} read-only");
        let loaded = kind.load_checked(&read(&repo().join(&source)), &source, &environment(service));

        for address in loaded.listens() {
            assert!(address.ip().is_unspecified(), "{name} listens on {address}: other containers cannot reach it");
        }
        let admin = loaded.admin.port();
        let health = strings(&service["healthcheck"]["test"]).join(" ");
        let probe = format!("http://127.0.0.1:{admin}/healthz");
        assert!(health.contains(&probe), "{name}: the healthcheck should poll {probe}, not `{health}`");
        assert!(targets.contains(&format!("{name}:{admin}")), "Prometheus does not scrape {name}:{admin}");
        for (host, port) in published(service) {
            assert!(
                loaded.listens().any(|a| a.port() == port),
                "{name} publishes {host} -> {port}, where it does not listen"
            );
        }

        let waits_for = depends_on(service);
        let reaches = |what: &str, address: &str, listening: &dyn Fn(&Value) -> bool| {
            let (host, port) = host_port(address);
            let target =
                services.get(&host).unwrap_or_else(|| panic!("{name}: {what} {address} is no compose service"));
            assert!(listening(target), "{name}: {what} {address}, but {host} does not listen on {port}");
            assert!(waits_for.contains_key(&host), "{name} should depend on {host} ({what})");
        };
        for upstream in &loaded.upstreams {
            let what = format!("{} {}", upstream.role, upstream.name);
            reaches(&what, &upstream.url, &|target| backend_port(target) == Some(host_port(&upstream.url).1));
        }
        for broker in loaded.kafka_brokers.iter().flat_map(|b| b.split(',')) {
            let advertised = |kafka: &Value| {
                let listeners = kafka["environment"]["KAFKA_ADVERTISED_LISTENERS"].as_str().unwrap_or_default();
                listeners.split(',').any(|l| l.ends_with(&format!("://{broker}")))
            };
            reaches("broker", broker, &advertised);
        }
        if let Some(url) = loaded.clickhouse_url() {
            // 8123 is the ClickHouse image's HTTP port.
            let clickhouse = |target: &Value| {
                str_of(&target["image"]).starts_with("clickhouse/clickhouse-server:") && host_port(url).1 == 8123
            };
            reaches("ClickHouse", url, &clickhouse);
        }
        if kind == Service::Verdict {
            let serves = loaded.serves.expect("the verdict API listens").port();
            assert!(
                published(service).contains(&("127.0.0.1:8090".to_owned(), serves)),
                "the verdict API should be published on 127.0.0.1:8090"
            );
        }
        if kind == Service::Tap {
            let tap = format!("http://{name}:{}", loaded.serves.expect("the tap listens").port());
            let drivers: Vec<_> = services
                .iter()
                .filter(|(_, s)| arg_after(&command_words(s), "--tap") == Some(tap.as_str()))
                .map(|(driver, s)| (driver, depends_on(s)))
                .collect();
            assert!(!drivers.is_empty(), "no traffic generator drives the tap at {tap}");
            for (driver, waits) in drivers {
                assert!(waits.contains_key(name), "{driver} should wait for {name}");
            }
        }
    }
    assert_eq!(seen, SERVICES.into_iter().collect(), "compose runs each shadowdiff service");
}

#[test]
fn compose_wiring_is_complete() {
    let services = compose_services();
    let declared: BTreeSet<&String> = compose()["volumes"].as_object().map(|v| v.keys().collect()).unwrap_or_default();
    let binaries = dockerfile_binaries();
    for (name, service) in services {
        for (dependency, condition) in depends_on(service) {
            let target = services.get(&dependency).unwrap_or_else(|| panic!("{name} depends on unknown {dependency}"));
            // Started is not ready: wait for the healthcheck where there is one.
            let healthy = condition.as_deref() == Some("service_healthy");
            assert_eq!(healthy, target["healthcheck"].is_object(), "{name} should wait for {dependency} to be healthy");
        }
        for (source, target, _) in volumes(service) {
            if is_bind(&source) {
                let path = repo().join(&source);
                assert!(path.exists(), "{name} mounts {source} at {target}, which does not exist");
            } else {
                assert!(declared.contains(&source), "{name} uses volume {source}, not declared under volumes:");
            }
        }
        let image = str_of(&service["image"]);
        if service["build"].is_object() {
            let dockerfile = service["build"]["dockerfile"].as_str().unwrap_or("Dockerfile");
            assert!(repo().join(dockerfile).is_file(), "{name} builds from {dockerfile}, which does not exist");
        } else {
            let tag = image.rsplit_once(':').map(|(_, tag)| tag);
            assert!(tag.is_some_and(|t| t != "latest"), "{name}: pin {image} by tag");
        }
        for word in command_words(service) {
            if word.starts_with("shadowdiff-") || word == "shadowctl" {
                assert!(binaries.contains(&word), "{name} runs {word}, which the Dockerfile does not build");
            }
        }
    }
    let grafana = &services["grafana"];
    let dashboards = ("./grafana/dashboards".to_owned(), "/var/lib/grafana/dashboards".to_owned(), true);
    assert!(volumes(grafana).contains(&dashboards), "grafana should mount ./grafana/dashboards read-only");
    // Plugins installed the supported way (GF_INSTALL_PLUGINS is deprecated), each pinned.
    let grafana_env = environment(grafana);
    assert!(grafana_env.iter().all(|v| v.name != "GF_INSTALL_PLUGINS"), "grafana: GF_INSTALL_PLUGINS is deprecated");
    let plugins = grafana_env.iter().find(|v| v.name == "GF_PLUGINS_PREINSTALL").expect("GF_PLUGINS_PREINSTALL");
    for plugin in plugins.value.split(',') {
        let version = plugin.split_once('@').map(|(_, version)| version);
        let pinned = version.is_some_and(|v| !v.is_empty() && v.split('.').all(|n| n.parse::<u32>().is_ok()));
        assert!(pinned, "grafana: pin {plugin} as id@version");
    }
    // Kafka keeps its log where the data volume is mounted (the image's default is in /tmp).
    let kafka = &services["kafka"];
    let log_dirs = environment(kafka).into_iter().find(|v| v.name == "KAFKA_LOG_DIRS").expect("KAFKA_LOG_DIRS");
    for dir in log_dirs.value.split(',') {
        let mounted = volumes(kafka).into_iter().any(|(source, target, _)| !is_bind(&source) && target == dir);
        assert!(mounted, "kafka writes its log to {dir}, where no volume is mounted");
    }
    for target in prometheus_targets() {
        let (host, _) = host_port(&target);
        assert!(host == "127.0.0.1" || services.contains_key(&host), "Prometheus scrapes {target}: no such service");
    }
}

//! The deployable stack, checked without a Docker engine or a cluster.
//!
//! `docker-compose.yaml` is validated against the Compose Specification's JSON schema
//! (check-jsonschema) and by Debian's docker-compose; each shadowdiff service's mounted config
//! file and environment are loaded by that service's own config loader, so every
//! `SHADOWDIFF_*` variable must name a real key; and every address those configs name must
//! lead to a service listening there. `deploy/k8s`: every Kustomize tree is rendered by
//! kubectl, each object validated against the Kubernetes API schemas (kubernetes-validate,
//! strict) or the models generated from the Argo Rollouts CRDs; Flagger's Canary, for which
//! no registry ships a schema, against its documented fields. Then the same config checks per
//! container, and probes, ports, Services, disruption budgets, Secrets and the CD gates'
//! calls to the verdict API.
//!
//! The placeholder Secrets must stop the tap and the mirror (placeholder redaction keys) and
//! the verdict API (no token list); every other check runs with realistic values in their
//! place, as an external secret manager would provide them: the tokens the CD gates send are
//! ones the verdict API accepts with the `read` scope, the mirror replays only inside its
//! `allowed_targets`, and the mirror and the taps share their redaction keys.
//!
//! `deploy/k8s/validators.sh` installs the validators (`deploy/local/test.sh` runs it); a
//! missing one fails these tests with that command.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use base64::Engine;
use rdkafka::producer::BaseProducer;
use serde::de::{DeserializeOwned, Visitor};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use shadowdiff_correlator::CorrelatorConfig;
use shadowdiff_mirror::MirrorConfig;
use shadowdiff_mirror::vet::TargetPolicy;
use shadowdiff_runtime::auth::{Auth, AuthConfig, Scope};
use shadowdiff_runtime::config::load_str;
use shadowdiff_runtime::kafka::KafkaConfig;
use shadowdiff_runtime::redaction::RedactionConfig;
use shadowdiff_tap::TapConfig;
use shadowdiff_verdict::gate::STAGES;
use shadowdiff_verdict::{Decision, VerdictConfig, VerdictReport};

const INSTALL: &str = "install the validators with deploy/k8s/validators.sh (deploy/local/test.sh runs it)";

/// Kubernetes versions every object must validate against: the one whose kubectl renders the
/// trees here, and the newest kubernetes-validate knows.
const K8S_VERSIONS: [&str; 2] = ["1.32.0", "1.37.0"];

/// The binaries the image must carry: the services, the demo and the CLI.
const IMAGE_BINARIES: [&str; 6] = [
    "shadowdiff-tap",
    "shadowdiff-mirror",
    "shadowdiff-correlator",
    "shadowdiff-verdict",
    "shadowdiff-demo",
    "shadowctl",
];

// ---------------------------------------------------------------------------------------
// Tools

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ lives in the repository").to_path_buf()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// A program from the validators' virtualenv.
fn venv_tool(name: &str) -> PathBuf {
    let path = repo().join(".local/deploy-tools/venv/bin").join(name);
    assert!(path.is_file(), "{} is missing: {INSTALL}", path.display());
    path
}

/// A program on `PATH`.
fn path_tool(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|dir| dir.join(name)).find(|p| p.is_file()))
        .unwrap_or_else(|| panic!("`{name}` is not on PATH: {INSTALL}"))
}

struct Ran {
    ok: bool,
    /// stdout and stderr together, for failure messages.
    output: String,
    stdout: String,
}

fn run(mut command: Command, input: Option<String>) -> Ran {
    command.stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() });
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().unwrap_or_else(|e| panic!("cannot run {command:?}: {e}; {INSTALL}"));
    let writer = input.map(|input| {
        let mut stdin = child.stdin.take().expect("stdin is piped");
        std::thread::spawn(move || stdin.write_all(input.as_bytes()))
    });
    let out = child.wait_with_output().expect("the child runs to its end");
    if let Some(writer) = writer {
        writer.join().expect("the stdin writer does not panic").expect("the child reads its input");
    }
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let output = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    Ran { ok: out.status.success(), output, stdout }
}

/// A file in the temp dir, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(extension: &str, text: &str) -> Self {
        let path = std::env::temp_dir().join(format!("{}.{extension}", shadowdiff_tests::unique("deploy_manifests")));
        std::fs::write(&path, text).unwrap();
        Self(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Every document of a YAML stream, as JSON (PyYAML, from the validators' virtualenv).
fn yaml_documents(text: &str) -> Vec<Value> {
    let mut python = Command::new(venv_tool("python"));
    python.args(["-c", "import json, sys, yaml; json.dump(list(yaml.safe_load_all(sys.stdin)), sys.stdout)"]);
    let ran = run(python, Some(text.to_owned()));
    assert!(ran.ok, "YAML does not parse:\n{}", ran.output);
    let documents: Vec<Value> = serde_json::from_str(&ran.stdout).unwrap();
    documents.into_iter().filter(|d| !d.is_null()).collect()
}

fn yaml_file(relative: &str) -> Value {
    let mut documents = yaml_documents(&read(&repo().join(relative)));
    assert_eq!(documents.len(), 1, "{relative} holds one document");
    documents.remove(0)
}

fn str_of(value: &Value) -> &str {
    value.as_str().unwrap_or_else(|| panic!("expected a string, found {value}"))
}

fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::Array(items) => items.iter().map(|i| str_of(i).to_owned()).collect(),
        Value::String(s) => s.split_whitespace().map(str::to_owned).collect(),
        Value::Null => Vec::new(),
        other => panic!("expected a list of strings, found {other}"),
    }
}

/// `http://host:port/path` or `host:port` → (host, port).
fn host_port(address: &str) -> (String, u16) {
    let rest = address.split_once("://").map_or(address, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or_default();
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) => (host, port.parse().unwrap_or_else(|_| panic!("bad port in {address}"))),
        None if address.starts_with("http://") => (authority, 80),
        None => panic!("{address} names no port"),
    };
    (host.to_owned(), port)
}

/// The value after `flag` in an argument list.
fn arg_after<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).map(String::as_str)
}

// ---------------------------------------------------------------------------------------
// The services' own configs

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Service {
    Tap,
    Mirror,
    Correlator,
    Verdict,
}

const SERVICES: [Service; 4] = [Service::Tap, Service::Mirror, Service::Correlator, Service::Verdict];

/// A shadow or primary that a service sends requests to.
#[derive(Debug, Clone)]
struct Upstream {
    name: String,
    role: String,
    url: String,
}

/// What a service's loaded config says about the network around it.
#[derive(Debug)]
struct Loaded {
    service: Service,
    admin: SocketAddr,
    /// Where it serves clients: the tap's proxy, the verdict API.
    serves: Option<SocketAddr>,
    upstreams: Vec<Upstream>,
    kafka_brokers: Option<String>,
    clickhouse_url: Option<String>,
    partitions: Option<i32>,
    /// Who may call its API: the verdict API, the mirror's profile API.
    auth: Option<AuthConfig>,
    /// What it redacts, and with which keys: the taps and the mirror.
    redaction: Option<RedactionConfig>,
    /// Where the mirror may replay to.
    targets: Option<TargetPolicy>,
}

impl Loaded {
    /// Whether its API accepts `token` for `scope`.
    fn accepts(&self, token: &str, scope: Scope) -> bool {
        let auth = self.auth.as_ref().unwrap_or_else(|| panic!("{} has no API", self.service.binary()));
        Auth::new(auth, self.service.binary()).token(token, scope).is_ok()
    }

    /// Its API asks for credentials: not open, with tokens or an SSO proxy.
    fn closed(&self) -> bool {
        self.auth.as_ref().is_some_and(|a| !a.open && (!a.tokens.is_empty() || a.proxy.is_some()))
    }

    fn listens(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        std::iter::once(self.admin).chain(self.serves)
    }

    fn candidates(&self) -> impl Iterator<Item = &Upstream> {
        self.upstreams.iter().filter(|u| u.role == "candidate")
    }
}

/// One environment variable as a container or compose service gets it.
#[derive(Debug, Clone)]
struct EnvVar {
    name: String,
    value: String,
    /// From an environment shared by several services (`envFrom`), where a section this
    /// service lacks is meant for another one.
    shared: bool,
}

impl Service {
    fn binary(self) -> &'static str {
        match self {
            Self::Tap => "shadowdiff-tap",
            Self::Mirror => "shadowdiff-mirror",
            Self::Correlator => "shadowdiff-correlator",
            Self::Verdict => "shadowdiff-verdict",
        }
    }

    fn of_binary(binary: &str) -> Option<Self> {
        SERVICES.into_iter().find(|s| s.binary() == binary)
    }

    /// The top-level sections of the service's config, from its serde struct.
    fn sections(self) -> &'static [&'static str] {
        match self {
            Self::Tap => fields_of::<TapConfig>(),
            Self::Mirror => fields_of::<MirrorConfig>(),
            Self::Correlator => fields_of::<CorrelatorConfig>(),
            Self::Verdict => fields_of::<VerdictConfig>(),
        }
    }

    /// Loads the config exactly as the service does at start-up: `text`, then the overrides.
    fn load(self, text: &str, name: &str, env: &[EnvVar]) -> Result<Loaded, String> {
        let overrides: Vec<(String, String)> = env.iter().map(|v| (v.name.clone(), v.value.clone())).collect();
        match self {
            Self::Tap => {
                let c: TapConfig = load_str(text, name, overrides).map_err(|e| e.to_string())?;
                kafka_accepts(&c.kafka)?;
                let upstreams = c.tap.upstream.iter().map(|url| Upstream {
                    name: "upstream".into(),
                    role: "primary".into(),
                    url: url.to_string(),
                });
                Ok(Loaded {
                    service: self,
                    admin: c.admin.listen,
                    serves: Some(c.tap.listen),
                    upstreams: upstreams.collect(),
                    kafka_brokers: Some(c.kafka.brokers.clone()),
                    clickhouse_url: None,
                    partitions: Some(c.topics.partitions),
                    auth: None,
                    redaction: Some(c.tap.redaction.clone()),
                    targets: None,
                })
            }
            Self::Mirror => {
                let c: MirrorConfig = load_str(text, name, overrides).map_err(|e| e.to_string())?;
                kafka_accepts(&c.kafka)?;
                let targets = c.mirror.profiles.iter().flat_map(|p| &p.targets);
                let upstreams = targets.map(|t| Upstream {
                    name: t.name.clone(),
                    role: str_of(&serde_json::to_value(t.role).unwrap()).to_owned(),
                    url: t.base_url.to_string(),
                });
                Ok(Loaded {
                    service: self,
                    admin: c.admin.listen,
                    serves: None,
                    upstreams: upstreams.collect(),
                    kafka_brokers: Some(c.kafka.brokers.clone()),
                    clickhouse_url: None,
                    partitions: Some(c.topics.partitions),
                    auth: Some(c.auth.clone()),
                    redaction: Some(c.mirror.redaction.clone()),
                    targets: Some(c.mirror.policy()),
                })
            }
            Self::Correlator => {
                let c: CorrelatorConfig = load_str(text, name, overrides).map_err(|e| e.to_string())?;
                kafka_accepts(&c.kafka)?;
                Ok(Loaded {
                    service: self,
                    admin: c.admin.listen,
                    serves: None,
                    upstreams: Vec::new(),
                    kafka_brokers: Some(c.kafka.brokers.clone()),
                    clickhouse_url: Some(c.clickhouse.url.clone()),
                    partitions: Some(c.topics.partitions),
                    auth: None,
                    redaction: None,
                    targets: None,
                })
            }
            Self::Verdict => {
                let c: VerdictConfig = load_str(text, name, overrides).map_err(|e| e.to_string())?;
                Ok(Loaded {
                    service: self,
                    admin: c.admin.listen,
                    serves: Some(c.verdict.listen),
                    upstreams: Vec::new(),
                    kafka_brokers: None,
                    clickhouse_url: Some(c.clickhouse.url.clone()),
                    partitions: None,
                    auth: Some(c.auth.clone()),
                    redaction: None,
                    targets: None,
                })
            }
        }
    }

    /// [`Self::load`] after checking that every override names a section of this service (or,
    /// for a shared environment, of some service); panics with every problem found.
    fn load_checked(self, text: &str, name: &str, env: &[EnvVar]) -> Loaded {
        let mut problems = Vec::new();
        for var in env {
            let Some(rest) = var.name.strip_prefix("SHADOWDIFF_") else { continue };
            let Some((section, _)) = rest.split_once('_').filter(|(s, k)| !s.is_empty() && !k.is_empty()) else {
                problems.push(format!("{}: not of the form SHADOWDIFF_<SECTION>_<KEY>", var.name));
                continue;
            };
            let section = section.to_ascii_lowercase();
            let has = |service: Service| service.sections().contains(&section.as_str());
            if !SERVICES.into_iter().any(has) {
                problems.push(format!("{}: no service has a [{section}] section", var.name));
            } else if !var.shared && !has(self) {
                problems.push(format!("{}: {} has no [{section}] section", var.name, self.binary()));
            }
        }
        match self.load(text, name, env) {
            Ok(loaded) if problems.is_empty() => loaded,
            Ok(_) => panic!("{name} for {}:\n  {}", self.binary(), problems.join("\n  ")),
            Err(errors) => panic!("{name} for {}: {errors}\n  {}", self.binary(), problems.join("\n  ")),
        }
    }
}

/// librdkafka builds a client from `[kafka.properties]`: known names, valid values (SASL_SSL,
/// for one, needs rdkafka's `ssl` feature, which the workspace does not build) and a SASL
/// mechanism it has. The client is pointed at a closed local port, so nothing leaves the host.
fn kafka_accepts(kafka: &KafkaConfig) -> Result<(), String> {
    let mut config = kafka.producer_config();
    config.set("bootstrap.servers", "127.0.0.1:1");
    config.create::<BaseProducer>().map(drop).map_err(|e| format!("kafka.properties: {e}"))
}

/// The field names a serde struct deserializes, read off its derived `Deserialize`.
fn fields_of<T: DeserializeOwned>() -> &'static [&'static str] {
    let mut fields = None;
    let _probe_always_errs = T::deserialize(FieldsProbe(&mut fields));
    fields.expect("a service config is a struct")
}

struct FieldsProbe<'a>(&'a mut Option<&'static [&'static str]>);

impl<'de> serde::Deserializer<'de> for FieldsProbe<'_> {
    type Error = serde::de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(serde::de::Error::custom("only structs are probed"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = Some(fields);
        Err(serde::de::Error::custom("probed"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option
        unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
    }
}

// ---------------------------------------------------------------------------------------
// docker-compose.yaml

fn compose() -> &'static Value {
    static COMPOSE: OnceLock<Value> = OnceLock::new();
    COMPOSE.get_or_init(|| yaml_file("docker-compose.yaml"))
}

fn compose_services() -> &'static serde_json::Map<String, Value> {
    compose()["services"].as_object().expect("services is a map")
}

fn environment(service: &Value) -> Vec<EnvVar> {
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
fn volumes(service: &Value) -> Vec<(String, String, bool)> {
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

/// The binaries the Dockerfile's builder copies into the image.
fn dockerfile_binaries() -> Vec<String> {
    let dockerfile = read(&repo().join("Dockerfile"));
    let line = dockerfile.lines().find_map(|l| l.strip_prefix("ARG BINS=")).expect("Dockerfile: ARG BINS=\"...\"");
    line.trim_matches('"').split_whitespace().map(str::to_owned).collect()
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
        if let Some(url) = &loaded.clickhouse_url {
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
    for target in prometheus_targets() {
        let (host, _) = host_port(&target);
        assert!(host == "127.0.0.1" || services.contains_key(&host), "Prometheus scrapes {target}: no such service");
    }
}

#[test]
fn dockerfile_builds_every_binary_into_a_pinned_non_root_image() {
    let binaries = dockerfile_binaries();
    for binary in IMAGE_BINARIES {
        assert!(binaries.iter().any(|b| b == binary), "the Dockerfile should build {binary}, builds {binaries:?}");
    }
    // `cargo build --bin NAME` for each: every name must be a binary of the workspace.
    let mut cargo = Command::new(env!("CARGO"));
    cargo.current_dir(repo()).args(["metadata", "--no-deps", "--offline", "--format-version", "1"]);
    let ran = run(cargo, None);
    assert!(ran.ok, "cargo metadata:\n{}", ran.output);
    let metadata: Value = serde_json::from_str(&ran.stdout).unwrap();
    let targets = metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .flat_map(|p| p["targets"].as_array().expect("targets"));
    let workspace_bins: BTreeSet<&str> =
        targets.filter(|t| strings(&t["kind"]).iter().any(|k| k == "bin")).map(|t| str_of(&t["name"])).collect();
    for binary in &binaries {
        assert!(
            workspace_bins.contains(binary.as_str()),
            "the Dockerfile builds {binary}, which no workspace member has"
        );
    }

    let dockerfile = read(&repo().join("Dockerfile"));
    let runtime = dockerfile.rsplit("\nFROM ").next().expect("a runtime stage");
    let user = runtime.lines().find_map(|l| l.strip_prefix("USER ")).expect("the runtime stage sets USER");
    assert!(!["root", "0", "0:0"].contains(&user.trim()), "the image runs as root");
    for image in dockerfile.lines().filter_map(|l| l.strip_prefix("ARG ").and_then(|a| a.split_once("_IMAGE="))) {
        let tag = image.1.rsplit_once(':').map(|(_, tag)| tag);
        assert!(tag.is_some_and(|t| t != "latest"), "Dockerfile: pin {} by tag", image.1);
    }
}

// ---------------------------------------------------------------------------------------
// deploy/k8s

/// One Kustomize tree, rendered.
struct Render {
    /// Relative to deploy/k8s.
    dir: String,
    /// With realistic values in place of the placeholder Secrets' (see [`realistic`]).
    objects: Vec<Value>,
    /// As rendered, placeholders and all.
    placeholders: Vec<Value>,
}

fn renders() -> &'static [Render] {
    static RENDERS: OnceLock<Vec<Render>> = OnceLock::new();
    RENDERS.get_or_init(|| {
        let root = repo().join("deploy/k8s");
        let mut dirs = Vec::new();
        find_kustomizations(&root, &mut dirs);
        dirs.sort();
        assert!(!dirs.is_empty(), "no kustomization under deploy/k8s");
        let kubectl = path_tool("kubectl");
        dirs.into_iter()
            .map(|dir| {
                let mut command = Command::new(&kubectl);
                command.arg("kustomize").arg(&dir);
                let ran = run(command, None);
                let name = dir.strip_prefix(&root).unwrap().display().to_string();
                assert!(ran.ok, "kubectl kustomize {name}:\n{}", ran.output);
                let placeholders = yaml_documents(&ran.stdout);
                let values = realistic(&placeholders);
                let objects = placeholders.iter().map(|o| substitute(o, &values)).collect();
                Render { dir: name, objects, placeholders }
            })
            .collect()
    })
}

fn render(dir: &str) -> &'static Render {
    renders().iter().find(|r| r.dir == dir).unwrap_or_else(|| panic!("no kustomization at deploy/k8s/{dir}"))
}

/// What an external secret manager would hold in place of each placeholder Secret value:
/// random-looking keys and tokens, a 32-byte seal key, and for each `auth-tokens` the TOML
/// list of digests the API accepts, as deploy/k8s/README.md has it made: the digest of the
/// same Secret's `token` with `read` (the CD gates' token), or else of an operator's token
/// with `read` and `write`.
fn realistic(objects: &[Value]) -> BTreeMap<String, String> {
    let derived = |what: &str| Sha256::digest(format!("deploy-manifests/{what}").as_bytes());
    let digest = |token: &str| hex::encode(Sha256::digest(token.as_bytes()));
    let mut values = BTreeMap::new();
    for secret in objects.iter().filter(|o| kind(o) == "Secret") {
        let Some(data) = secret["stringData"].as_object() else { continue };
        let secret_name = name(secret);
        let real = |key: &str| {
            let what = format!("{secret_name}/{key}");
            match key {
                "seal-key" => base64::engine::general_purpose::STANDARD.encode(derived(&what)),
                "auth-tokens" => match data.get("token") {
                    Some(_) => {
                        let token = hex::encode(derived(&format!("{secret_name}/token")));
                        format!(r#"[{{name = "cd", sha256 = "{}", scopes = ["read"]}}]"#, digest(&token))
                    }
                    None => {
                        let token = operator_token(secret_name);
                        format!(r#"[{{name = "operator", sha256 = "{}", scopes = ["read", "write"]}}]"#, digest(&token))
                    }
                },
                _ => hex::encode(derived(&what)),
            }
        };
        for (key, value) in data {
            values.insert(str_of(value).to_owned(), real(key));
        }
    }
    values
}

/// The operator token whose digest [`realistic`] puts in a Secret without a `token` of its own.
fn operator_token(secret: &str) -> String {
    hex::encode(Sha256::digest(format!("deploy-manifests/{secret}/operator").as_bytes()))
}

/// `object` with every string that is a placeholder replaced by its realistic value, wherever
/// a render copied it (the Flagger webhooks' metadata.token).
fn substitute(object: &Value, values: &BTreeMap<String, String>) -> Value {
    match object {
        Value::String(text) => Value::String(values.get(text).cloned().unwrap_or_else(|| text.clone())),
        Value::Array(items) => Value::Array(items.iter().map(|i| substitute(i, values)).collect()),
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), substitute(v, values))).collect()),
        other => other.clone(),
    }
}

/// Kustomizations, not Components (those only render as part of one).
fn find_kustomizations(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            find_kustomizations(&path, found);
        } else if path.file_name().is_some_and(|n| n == "kustomization.yaml")
            && read(&path).lines().any(|l| l.trim() == "kind: Kustomization")
        {
            found.push(dir.to_path_buf());
        }
    }
}

fn kind(object: &Value) -> &str {
    str_of(&object["kind"])
}

fn name(object: &Value) -> &str {
    str_of(&object["metadata"]["name"])
}

fn group(object: &Value) -> &str {
    str_of(&object["apiVersion"]).rsplit_once('/').map_or("", |(group, _)| group)
}

/// Whether every label of `selector` is among `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    selector.as_object().is_some_and(|s| !s.is_empty() && s.iter().all(|(k, v)| &labels[k] == v))
}

/// A container of a Deployment or Rollout that runs a shadowdiff service, with its config loaded.
struct Running<'a> {
    workload: &'a Value,
    container: &'a Value,
    loaded: Loaded,
}

impl Render {
    /// The same tree with the placeholder Secrets as they are.
    fn with_placeholders(&self) -> Self {
        Self { dir: self.dir.clone(), objects: self.placeholders.clone(), placeholders: self.placeholders.clone() }
    }

    fn find(&self, kind_: &str, name_: &str) -> Option<&Value> {
        self.objects.iter().find(|o| kind(o) == kind_ && name(o) == name_)
    }

    fn all<'a>(&'a self, kind_: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.objects.iter().filter(move |o| kind(o) == kind_)
    }

    fn workloads(&self) -> impl Iterator<Item = &Value> {
        self.objects.iter().filter(|o| ["Deployment", "Rollout"].contains(&kind(o)))
    }

    fn secret(&self, name_: &str, key: &str) -> Option<String> {
        let secret = self.find("Secret", name_)?;
        if let Some(value) = secret["stringData"][key].as_str() {
            return Some(value.to_owned());
        }
        let encoded = secret["data"][key].as_str()?;
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(encoded).ok()?).ok()
    }

    fn config_map(&self, name_: &str) -> &serde_json::Map<String, Value> {
        let found = self.find("ConfigMap", name_).unwrap_or_else(|| panic!("{}: no ConfigMap {name_}", self.dir));
        found["data"].as_object().unwrap_or_else(|| panic!("{}: ConfigMap {name_} has no data", self.dir))
    }

    /// The container's environment, with every reference resolved within the render.
    fn environment(&self, pod: &Value, container: &Value) -> Vec<EnvVar> {
        let mut env = Vec::new();
        // Unless the pod opts out, Kubernetes gives it a service link for every Service in the
        // namespace, SHADOWDIFF_MIRROR_SERVICE_HOST among them.
        if pod["spec"]["enableServiceLinks"] != false {
            env.extend(self.all("Service").flat_map(service_links));
        }
        for source in container["envFrom"].as_array().into_iter().flatten() {
            let map = str_of(&source["configMapRef"]["name"]);
            for (name_, value) in self.config_map(map) {
                env.push(EnvVar { name: name_.clone(), value: str_of(value).to_owned(), shared: true });
            }
        }
        for var in container["env"].as_array().into_iter().flatten() {
            let name_ = str_of(&var["name"]).to_owned();
            let from = &var["valueFrom"];
            let value = if let Some(value) = var["value"].as_str() {
                value.to_owned()
            } else if from["secretKeyRef"].is_object() {
                let (secret, key) = (str_of(&from["secretKeyRef"]["name"]), str_of(&from["secretKeyRef"]["key"]));
                self.secret(secret, key).unwrap_or_else(|| panic!("{}: {name_} reads missing {secret}/{key}", self.dir))
            } else if from["configMapKeyRef"].is_object() {
                let (map, key) = (str_of(&from["configMapKeyRef"]["name"]), str_of(&from["configMapKeyRef"]["key"]));
                str_of(&self.config_map(map)[key]).to_owned()
            } else {
                let path = str_of(&from["fieldRef"]["fieldPath"]);
                match path.strip_prefix("metadata.labels['").and_then(|l| l.strip_suffix("']")) {
                    Some(label) => pod["metadata"]["labels"][label]
                        .as_str()
                        .unwrap_or_else(|| panic!("{}: {name_} reads label {label}, which the pod lacks", self.dir))
                        .to_owned(),
                    None if path == "metadata.name" => "pod-name".to_owned(),
                    None => panic!("{}: {name_}: unexpected fieldRef {path}", self.dir),
                }
            };
            env.push(EnvVar { name: name_, value, shared: false });
        }
        env
    }

    /// Every shadowdiff service container, its config file (a mounted ConfigMap) and
    /// environment loaded by the service's own loader.
    fn running(&self) -> Vec<Running<'_>> {
        let mut running = Vec::new();
        for workload in self.workloads() {
            let pod = &workload["spec"]["template"];
            for container in pod["spec"]["containers"].as_array().expect("containers") {
                let args = strings(&container["args"]);
                let Some(service) = args.first().and_then(|b| Service::of_binary(b)) else { continue };
                let at = format!("{}/{}/{}", self.dir, name(workload), str_of(&container["name"]));
                let config = Path::new(arg_after(&args, "--config").unwrap_or_else(|| panic!("{at}: no --config")));
                let mount = container["volumeMounts"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|m| Path::new(str_of(&m["mountPath"])) == config.parent().unwrap())
                    .unwrap_or_else(|| panic!("{at}: nothing mounted at {}", config.parent().unwrap().display()));
                let volume = pod["spec"]["volumes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|v| v["name"] == mount["name"])
                    .unwrap_or_else(|| panic!("{at}: no volume {}", mount["name"]));
                let file = config.file_name().unwrap().to_str().unwrap();
                let map = self.config_map(str_of(&volume["configMap"]["name"]));
                let text = str_of(map.get(file).unwrap_or_else(|| panic!("{at}: the ConfigMap lacks {file}")));
                let loaded = service.load_checked(text, &at, &self.environment(pod, container));
                running.push(Running { workload, container, loaded });
            }
        }
        running
    }

    /// The container port that `service:port` leads to, and the workload behind it.
    fn through_service(&self, service: &str, port: u16) -> (u16, &Value) {
        let svc = self.find("Service", service).unwrap_or_else(|| panic!("{}: no Service {service}", self.dir));
        let entry = svc["spec"]["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .find(|p| p["port"] == port)
            .unwrap_or_else(|| panic!("{}: Service {service} has no port {port}", self.dir));
        let workload = self
            .workloads()
            .find(|w| selects(&svc["spec"]["selector"], &w["spec"]["template"]["metadata"]["labels"]))
            .unwrap_or_else(|| panic!("{}: Service {service} selects no pods", self.dir));
        (container_port(workload, &entry["targetPort"]), workload)
    }
}

/// The variables Kubernetes' service links give a pod for `service` (a ClusterIP Service).
fn service_links(service: &Value) -> Vec<EnvVar> {
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

/// A named or numbered port of one of the pod's containers.
fn container_port(workload: &Value, port: &Value) -> u16 {
    let containers = workload["spec"]["template"]["spec"]["containers"].as_array().expect("containers");
    let ports = containers.iter().flat_map(|c| c["ports"].as_array().into_iter().flatten());
    let found = ports.clone().find(|p| match port {
        Value::String(named) => p["name"] == named.as_str(),
        number => &p["containerPort"] == number,
    });
    let found = found.unwrap_or_else(|| panic!("{}: no container port {port}", name(workload)));
    u16::try_from(found["containerPort"].as_u64().expect("a number")).unwrap()
}

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

/// Validates Argo Rollouts objects with the models generated from its CRDs
/// (npm @kubernetes-models/argo-rollouts).
fn argo_validate(objects: &[&Value]) -> Ran {
    const SCRIPT: &str = r#"
import { readFileSync } from "node:fs";
import { AnalysisTemplate } from "@kubernetes-models/argo-rollouts/argoproj.io/v1alpha1/AnalysisTemplate";
import { Rollout } from "@kubernetes-models/argo-rollouts/argoproj.io/v1alpha1/Rollout";
const models = { AnalysisTemplate, Rollout };
let failed = 0;
for (const object of JSON.parse(readFileSync(0, "utf8"))) {
  const Model = models[object.kind];
  try {
    if (!Model) throw new Error("no model for this kind");
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
        modules.join("node_modules/@kubernetes-models/argo-rollouts").is_dir(),
        "the Argo Rollouts models are missing: {INSTALL}"
    );
    let mut node = Command::new(path_tool("node"));
    // ES modules resolve packages from the working directory.
    node.current_dir(modules).args(["--input-type=module", "--eval", SCRIPT]);
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
    let ran = argo_validate(&[&bad_template]);
    assert!(!ran.ok && ran.output.contains("url"), "the Argo models passed a web metric without url:\n{}", ran.output);

    for render in renders() {
        let objects: Vec<&Value> = render.objects.iter().collect();
        let (kubernetes, custom): (Vec<&Value>, Vec<&Value>) = objects.into_iter().partition(|o| is_kubernetes(o));
        for version in K8S_VERSIONS {
            let ran = kubernetes_validate(&kubernetes, version);
            assert!(ran.ok, "{}: invalid for Kubernetes {version}:\n{}", render.dir, ran.output);
        }
        let (argo, other): (Vec<&Value>, Vec<&Value>) = custom.into_iter().partition(|o| group(o) == "argoproj.io");
        if !argo.is_empty() {
            let ran = argo_validate(&argo);
            assert!(ran.ok, "{}: invalid Argo Rollouts objects:\n{}", render.dir, ran.output);
        }
        for object in other {
            assert_eq!(
                (group(object), kind(object)),
                ("flagger.app", "Canary"),
                "{}: nothing validates it",
                render.dir
            );
            let problems = flagger_problems(object);
            assert!(problems.is_empty(), "{}: Canary {}:\n  {}", render.dir, name(object), problems.join("\n  "));
        }
    }
}

#[test]
fn kubernetes_workloads_are_wired_hardened_and_load_their_configs() {
    // Overlays and examples are what gets applied; the base and components render inside them.
    let applied = renders().iter().filter(|r| r.dir.starts_with("overlays/") || r.dir.starts_with("examples/"));
    let mut applied_count = 0;
    for render in applied {
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
                assert!(
                    address.ip().is_unspecified(),
                    "{at} listens on {address}: probes and Services cannot reach it"
                );
                container_port(workload, &json!(address.port()));
            }
            let admin = loaded.admin.port();
            let annotations = &workload["spec"]["template"]["metadata"]["annotations"];
            assert_eq!(annotations["prometheus.io/port"], admin.to_string(), "{at}: scrape the admin port");
            let probe_port = |probe: &Value, how: &str| container_port(workload, &probe[how]["port"]);
            let liveness = &container["livenessProbe"];
            assert_eq!(probe_port(liveness, "httpGet"), admin, "{at}: liveness asks the admin port");
            let readiness = &container["readinessProbe"];
            if loaded.service == Service::Tap {
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

        for service in render.all("Service") {
            for port in service["spec"]["ports"].as_array().expect("ports") {
                render.through_service(name(service), u16::try_from(port["port"].as_u64().unwrap()).unwrap());
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
        for secret in render.placeholders.iter().filter(|o| kind(o) == "Secret") {
            let values = secret["stringData"].as_object().expect("placeholder Secrets use stringData");
            for (key, value) in values {
                let value = str_of(value);
                let decoded = base64::engine::general_purpose::STANDARD.decode(value).ok();
                let decoded = decoded.and_then(|d| String::from_utf8(d).ok()).unwrap_or_default();
                assert!(
                    value.contains("fake") || decoded.contains("fake"),
                    "{dir}: Secret {}/{key} must be an obvious placeholder",
                    name(secret)
                );
            }
        }
    }
    assert!(applied_count >= 2, "overlays/ and examples/ hold the applied trees");
}

/// The verdict service of a render.
fn verdict_of<'a>(running: &'a [Running<'_>]) -> &'a Loaded {
    &running.iter().find(|r| r.loaded.service == Service::Verdict).expect("the verdict API runs").loaded
}

/// The verdict API as a CD gate reaches it: `http://shadowdiff-verdict:8090/...` must lead to
/// the port the verdict service listens on.
fn assert_reaches_verdict(render: &Render, url: &str) {
    let (host, port) = host_port(url);
    let (target, workload) = render.through_service(&host, port);
    let running = render.running();
    let verdict = running.iter().find(|r| r.loaded.service == Service::Verdict).expect("the verdict API runs");
    assert_eq!(name(workload), name(verdict.workload), "{url} leads to {}", name(workload));
    assert_eq!(Some(target), verdict.loaded.serves.map(|a| a.port()), "{url} misses the verdict API's port");
}

/// The mirror's candidate target: (name, the Service host it replays to).
fn mirror_candidate(render: &Render) -> (String, String) {
    let running = render.running();
    let mirror = running.iter().find(|r| r.loaded.service == Service::Mirror).expect("the mirror runs");
    let candidates: Vec<_> = mirror.loaded.candidates().collect();
    assert_eq!(candidates.len(), 1, "{}: the example profile has one candidate", render.dir);
    (candidates[0].name.clone(), host_port(&candidates[0].url).0)
}

#[test]
fn argo_rollouts_gates_each_step_on_the_verdict() {
    let render = render("examples/argo-rollouts");
    let (candidate, candidate_host) = mirror_candidate(render);
    let template = render.all("AnalysisTemplate").next().expect("an AnalysisTemplate");
    let metrics = template["spec"]["metrics"].as_array().expect("metrics");
    assert_eq!(metrics.len(), 1, "one metric: the verdict");
    let metric = &metrics[0];
    // pass → Successful, fail → Failed, inconclusive meets neither → Inconclusive (paused),
    // in the words the verdict API answers with.
    let decision = |d: Decision| serde_json::to_value(d).unwrap();
    assert_eq!((decision(Decision::Pass), decision(Decision::Fail)), (json!("pass"), json!("fail")));
    assert_eq!(metric["successCondition"], r#"result.verdict == "pass""#);
    assert_eq!(metric["failureCondition"], r#"result.verdict == "fail""#);
    assert!(fields_of::<VerdictReport>().contains(&"verdict"), "the answer has a `verdict` field");
    let web = &metric["provider"]["web"];
    let url = str_of(&web["url"]);
    assert_eq!(url, "http://shadowdiff-verdict:8090/v1/verdict?candidate={{args.candidate}}&stage={{args.stage}}");
    assert_eq!(web["jsonPath"], "{$}");
    assert_reaches_verdict(render, url);

    let args = template["spec"]["args"].as_array().expect("args");
    let arg_names: BTreeSet<&str> = args.iter().map(|a| str_of(&a["name"])).collect();
    assert!(arg_names.contains("candidate") && arg_names.contains("stage"), "args: {arg_names:?}");
    let headers = web["headers"].as_array().expect("headers");
    let authorization = headers.iter().find(|h| h["key"] == "Authorization").expect("an Authorization header");
    let token_arg = str_of(&authorization["value"])
        .strip_prefix("Bearer {{args.")
        .and_then(|rest| rest.strip_suffix("}}"))
        .expect("Authorization: Bearer {{args.NAME}}");
    let token = args.iter().find(|a| a["name"] == token_arg).expect("the token is an argument");
    let secret = &token["valueFrom"]["secretKeyRef"];
    let sent = render.secret(str_of(&secret["name"]), str_of(&secret["key"]));
    let sent = sent.expect("the verdict token comes from a Secret the overlay provides");
    let running = render.running();
    let verdict = verdict_of(&running);
    assert!(verdict.closed(), "the verdict API asks for credentials");
    assert!(verdict.accepts(&sent, Scope::Read), "the verdict API accepts the token the analysis sends, for read");

    let rollout = render.all("Rollout").next().expect("a Rollout");
    let canary = &rollout["spec"]["strategy"]["canary"];
    assert_eq!(str_of(&canary["canaryService"]), candidate_host, "the mirror replays to the canary's Service");
    let mut weight = None;
    let mut gated = Vec::new();
    for step in canary["steps"].as_array().expect("steps") {
        if let Some(w) = step["setWeight"].as_u64() {
            weight = Some(w);
        } else if let Some(analysis) = step["analysis"].as_object() {
            let weight = weight.expect("analysis after a weight");
            let templates = analysis["templates"].as_array().expect("templates");
            assert_eq!(templates, &vec![json!({ "templateName": name(template) })]);
            let arg = |n: &str| {
                analysis["args"].as_array().and_then(|a| a.iter().find(|x| x["name"] == n)).map(|x| &x["value"])
            };
            assert_eq!(arg("candidate"), Some(&json!(candidate)), "step at {weight}%: candidate");
            assert_eq!(arg("stage"), Some(&json!(weight.to_string())), "step at {weight}%: stage");
            assert!(STAGES.contains(&weight.to_string().as_str()), "{weight}% is no stage the verdict API gates");
            gated.push(weight);
        }
    }
    assert_eq!(gated, [1, 10, 50, 100], "each weight is gated once, in order");
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

    // Flagger's webhooks send no headers: each carries the token in its metadata.
    let running = render.running();
    let verdict = verdict_of(&running);
    assert!(verdict.closed(), "the verdict API Flagger calls asks for credentials too");
    let hooks = canary["spec"]["analysis"]["webhooks"].as_array().expect("webhooks");
    let mut types = BTreeMap::new();
    for hook in hooks {
        let url = str_of(&hook["url"]);
        types.insert(str_of(&hook["type"]), url.to_owned());
        assert_reaches_verdict(render, url);
        let metadata = &hook["metadata"];
        assert_eq!(metadata["candidate"], candidate.as_str(), "{}: metadata.candidate", hook["name"]);
        let token = metadata["token"].as_str().unwrap_or_else(|| panic!("{}: no metadata.token", hook["name"]));
        assert!(verdict.accepts(token, Scope::Read), "{}: the verdict API refuses its metadata.token", hook["name"]);
        let placeholder = render.with_placeholders().find("Canary", name(canary)).cloned().expect("the Canary");
        let hook_name = str_of(&hook["name"]);
        let as_rendered = placeholder["spec"]["analysis"]["webhooks"]
            .as_array()
            .and_then(|h| h.iter().find(|h| h["name"] == hook_name))
            .map(|h| h["metadata"]["token"].clone());
        let from_secret = render.with_placeholders().secret("shadowdiff-verdict-api", "token").map(Value::String);
        assert_eq!(as_rendered, from_secret, "{hook_name}: metadata.token is copied from the Secret, not written out");
        let stage = metadata["stage"].as_str().unwrap_or_default();
        assert!(STAGES.contains(&stage), "{}: metadata.stage {stage:?} is none of {STAGES:?}", hook["name"]);
    }
    let gate = "http://shadowdiff-verdict:8090/v1/flagger/gate";
    let check = "http://shadowdiff-verdict:8090/v1/flagger/check";
    let expected: BTreeMap<&str, String> =
        [("confirm-traffic-increase", gate), ("confirm-promotion", gate), ("rollout", check)]
            .into_iter()
            .map(|(t, u)| (t, u.to_owned()))
            .collect();
    assert_eq!(types, expected, "one webhook of each type, to its endpoint");
}

/// The mirror's profiles stay inside its allowed targets, and the mirror redacts with the
/// taps' keys, so a secret in a shadow's response digests as the same secret in the primary's,
/// and the headers the taps seal open for replays.
fn assert_mirror_fits_taps(at: &str, loaded: &[&Loaded]) {
    let mirror = loaded.iter().find(|l| l.service == Service::Mirror).expect("a mirror");
    let policy = mirror.targets.as_ref().expect("the mirror's target policy");
    assert!(!policy.allowed_targets.is_empty(), "{at}: the mirror allows no target");
    assert!(!mirror.upstreams.is_empty(), "{at}: the mirror's profiles name targets");
    for target in &mirror.upstreams {
        let url: reqwest::Url = target.url.parse().unwrap();
        assert_eq!(policy.refuses(&url), None, "{at}: the mirror's target {} is outside allowed_targets", target.url);
    }
    assert!(mirror.closed(), "{at}: the mirror's profile API asks for credentials");
    let mirror_keys = mirror.redaction.as_ref().expect("the mirror's redaction");
    let mirror_redacts = mirror_keys.redactor(false).query("token=s3cret");
    let taps: Vec<_> = loaded.iter().filter(|l| l.service == Service::Tap).collect();
    assert!(!taps.is_empty(), "{at}: no tap");
    for tap in taps {
        let keys = tap.redaction.as_ref().expect("the tap's redaction");
        assert_eq!(
            keys.redactor(false).query("token=s3cret"),
            mirror_redacts,
            "{at}: the tap and the mirror digest alike"
        );
        if let Some(sealer) = keys.sealer() {
            let sealed = sealer.seal("authorization", b"Bearer abc");
            let opener =
                mirror_keys.sealer().unwrap_or_else(|| panic!("{at}: the tap seals, the mirror has no seal key"));
            assert_eq!(
                opener.open("authorization", &sealed).ok(),
                Some(b"Bearer abc".to_vec()),
                "{at}: seal keys differ"
            );
        }
    }
}

#[test]
fn mirror_replays_only_to_allowed_targets_and_shares_the_taps_keys() {
    for render in renders().iter().filter(|r| r.dir.starts_with("overlays/") || r.dir.starts_with("examples/")) {
        let running = render.running();
        assert_mirror_fits_taps(&render.dir, &running.iter().map(|r| &r.loaded).collect::<Vec<_>>());
        let verdict = verdict_of(&running);
        assert!(verdict.closed(), "{}: the verdict API asks for credentials", render.dir);
        let mirror = running.iter().find(|r| r.loaded.service == Service::Mirror).expect("the mirror runs");
        assert!(
            mirror.loaded.accepts(&operator_token("shadowdiff-mirror-api"), Scope::Write),
            "{}: the mirror takes the operator tokens of shadowdiff-mirror-api",
            render.dir
        );
    }
    let mut compose = Vec::new();
    for (name, service) in compose_services() {
        let words = strings(&service["command"]);
        let Some(kind) = words.first().and_then(|binary| Service::of_binary(binary)) else { continue };
        let config = arg_after(&words, "--config").unwrap_or_else(|| panic!("{name}: no --config"));
        let (source, _, _) = volumes(service).into_iter().find(|(_, target, _)| target == config).unwrap();
        compose.push(kind.load_checked(&read(&repo().join(&source)), &source, &environment(service)));
    }
    assert_mirror_fits_taps("docker-compose.yaml", &compose.iter().collect::<Vec<_>>());
}

#[test]
fn placeholder_secrets_stop_the_services_that_would_use_them() {
    for render in renders().iter().filter(|r| r.dir.starts_with("overlays/") || r.dir.starts_with("examples/")) {
        let placeholders = render.with_placeholders();
        let mut refused = BTreeMap::new();
        for workload in placeholders.workloads() {
            let pod = &workload["spec"]["template"];
            for container in pod["spec"]["containers"].as_array().expect("containers") {
                let args = strings(&container["args"]);
                let Some(service) = args.first().and_then(|b| Service::of_binary(b)) else { continue };
                let at = format!("{}/{}/{}", render.dir, name(workload), str_of(&container["name"]));
                let config = Path::new(arg_after(&args, "--config").expect("--config"));
                let mount = container["volumeMounts"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|m| Path::new(str_of(&m["mountPath"])) == config.parent().unwrap())
                    .expect("a config mount");
                let volume = pod["spec"]["volumes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|v| v["name"] == mount["name"])
                    .expect("the config volume");
                let map = placeholders.config_map(str_of(&volume["configMap"]["name"]));
                let text = str_of(&map[config.file_name().unwrap().to_str().unwrap()]);
                let env = placeholders.environment(pod, container);
                let sealed = env.iter().any(|v| v.name.ends_with("_REDACTION__SEAL_KEY"));
                let mut expected: Vec<String> = Vec::new();
                if let Some(section) = match service {
                    Service::Tap => Some("tap"),
                    Service::Mirror => Some("mirror"),
                    Service::Correlator | Service::Verdict => None,
                } {
                    let keys: &[&str] = if sealed { &["hmac_key", "seal_key"] } else { &["hmac_key"] };
                    expected.extend(keys.iter().map(|k| format!("{section}.redaction.{k}: is a placeholder")));
                }
                if [Service::Mirror, Service::Verdict].contains(&service) {
                    // The token list is refused, and without it the API would be open, which
                    // is refused too.
                    expected.push("auth.tokens: invalid type: string".to_owned());
                    expected.push("auth: the API would be open".to_owned());
                }
                expected.sort_unstable();
                match service.load(text, &at, &env) {
                    Ok(_) => assert!(expected.is_empty(), "{at} starts with the placeholder Secrets"),
                    Err(errors) => {
                        let mut lines: Vec<&str> = errors.lines().filter_map(|l| l.trim().strip_prefix("- ")).collect();
                        lines.sort_unstable();
                        assert_eq!(lines.len(), expected.len(), "{at}: {errors}");
                        for (line, expected) in lines.iter().zip(&expected) {
                            assert!(line.starts_with(expected.as_str()), "{at}: expected {expected:?}, found {line:?}");
                        }
                    }
                }
                refused.insert(service, !expected.is_empty());
            }
        }
        let expected: BTreeMap<Service, bool> =
            [(Service::Tap, true), (Service::Mirror, true), (Service::Correlator, false), (Service::Verdict, true)]
                .into_iter()
                .collect();
        assert_eq!(refused, expected, "{}: which services refuse the placeholders", render.dir);
    }
}

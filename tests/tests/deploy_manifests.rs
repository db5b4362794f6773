//! The deployable stack, checked without a Docker engine or a cluster.
//!
//! `docker-compose.yaml` is validated against the Compose Specification's JSON schema
//! (check-jsonschema) and by Debian's docker-compose; each shadowdiff service's mounted config
//! file and environment are loaded by that service's own config loader, so every
//! `SHADOWDIFF_*` variable must name a real key; and every address those configs name must
//! lead to a service listening there.
//!
//! `deploy/k8s` is prepared as an operator prepares it: in a copy, `secrets.sh` creates the
//! Secrets (against a stand-in for kubectl that keeps them) and writes the Flagger example's
//! token file. Every Kustomize tree is then rendered by kubectl, each object validated against
//! the Kubernetes API schemas (kubernetes-validate, strict) or the models generated from the
//! Argo Rollouts CRDs; Flagger's Canary, for which no registry ships a schema, against its
//! documented fields. The trees are modelled as they run: Argo's stable and canary
//! ReplicaSets with the labels it adds, Flagger's primary Deployment and the three Services
//! it creates. Then the same config checks per container, with the service-link variables of
//! every Service in the namespace; probes, ports, Services, disruption budgets, the
//! NetworkPolicies (evaluated as Kubernetes evaluates them), the tap's upstream, the mirror's
//! secondary, and the CD gates' calls to the verdict API with the tokens secrets.sh made.
//!
//! No tree carries a Secret. The placeholder Secrets (components/placeholder-secrets, the
//! catalogue of the Secrets the trees read), added to a tree, must stop the tap and the mirror
//! (placeholder redaction keys) and the verdict API (no token list).
//!
//! `deploy/k8s/validators.sh` installs the validators (`deploy/local/test.sh` runs it); a
//! missing one fails these tests with that command.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use base64::Engine;
use rdkafka::producer::BaseProducer;
use serde::de::{DeserializeOwned, Visitor};
use serde_json::{Value, json};
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
    /// The mirror's bound on replays to it.
    rate_per_sec: Option<u32>,
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
                    rate_per_sec: None,
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
                    rate_per_sec: t.rate_per_sec,
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
    let images: BTreeMap<&str, &str> =
        dockerfile.lines().filter_map(|l| l.strip_prefix("ARG ").and_then(|a| a.split_once("_IMAGE="))).collect();
    for image in images.values() {
        let reference = image.split_once('@').map_or(*image, |(reference, _)| reference);
        let tag = reference.rsplit_once(':').map(|(_, tag)| tag);
        assert!(tag.is_some_and(|t| t != "latest"), "Dockerfile: pin {image} by tag");
    }
    // The runtime base by its Debian release and the digest of that tag's image index, and
    // the builder of the same release, so the binaries find the glibc they were linked to.
    let runtime = images.get("RUNTIME").expect("ARG RUNTIME_IMAGE=");
    let (reference, digest) = runtime.split_once("@sha256:").expect("RUNTIME_IMAGE pinned by @sha256: digest");
    assert!(digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()), "{runtime}: a sha256 digest");
    let release = ["bookworm", "trixie"].into_iter().find(|r| reference.starts_with(&format!("debian:{r}")));
    let release = release.unwrap_or_else(|| panic!("{runtime}: name the Debian release"));
    let builder = images.get("RUST").expect("ARG RUST_IMAGE=");
    assert!(builder.ends_with(&format!("-{release}")), "{builder} builds for another Debian than {release}");
}

// ---------------------------------------------------------------------------------------
// deploy/k8s, prepared as an operator prepares it

/// The namespace the examples run in: their kustomizations' `namespace:`, named in their
/// gates' URLs.
const EXAMPLE_NAMESPACE: &str = "shop";
/// Where the CD controllers run, and so where their calls to the verdict API come from.
const ARGO_NAMESPACE: &str = "argo-rollouts";
const FLAGGER_NAMESPACE: &str = "flagger-system";
/// Where Prometheus runs.
const MONITORING_NAMESPACE: &str = "monitoring";

/// The label Argo Rollouts adds to each ReplicaSet's pods and to its managed Services'
/// selectors, and the values this model gives the stable and canary ReplicaSets.
const ARGO_HASH_LABEL: &str = "rollouts-pod-template-hash";
const STABLE_HASH: &str = "stable-hash";
const CANARY_HASH: &str = "canary-hash";
/// Flagger's `-selector-labels` default: the first of these in the target's selector is the
/// label it rewrites to `<value>-primary` on the primary's pods.
const FLAGGER_SELECTOR_LABELS: [&str; 3] = ["app", "name", "app.kubernetes.io/name"];
/// Marks, in this model only, the apex Service Flagger creates, which a mesh splits by weight.
const MESH_SPLIT: &str = "model.deploy-manifests/mesh-split";

/// Secret name → key → value.
type Secrets = BTreeMap<String, BTreeMap<String, String>>;

static NO_SECRETS: Secrets = BTreeMap::new();

/// A stand-in for kubectl that keeps the Secrets it is asked to create as files,
/// `$FAKE_KUBECTL_STORE/NAME/KEY`, and logs every command line it is given.
const FAKE_KUBECTL: &str = r#"#!/bin/sh
set -eu
store="$FAKE_KUBECTL_STORE"
printf '%s\n' "$*" >>"$store.calls"
case "$1 $2" in
  "get namespace") echo "namespace/$3" ;;
  "get secret") if [ -d "$store/$3" ]; then echo "secret/$3"; fi ;;
  "create secret")
    name=$4
    shift 4
    mkdir "$store/$name"
    for arg in "$@"; do
      case $arg in
        --from-file=*) pair=${arg#--from-file=}; cp "${pair#*=}" "$store/$name/${pair%%=*}" ;;
      esac
    done
    echo "secret/$name created" ;;
  *) echo "unexpected: kubectl $*" >&2; exit 1 ;;
esac
"#;

/// A copy of deploy/k8s after `secrets.sh` has run twice against [`FAKE_KUBECTL`]: the
/// Secrets a cluster would then hold, the files the script writes beside the trees, and what
/// it printed.
struct Prepared {
    /// The copy of deploy/k8s; the trees render from here.
    root: PathBuf,
    /// Beside the copy: the stand-in kubectl, its store, the placeholder kustomizations.
    scratch: PathBuf,
    /// The Secrets the first run created.
    secrets: Secrets,
    /// The store after the second run.
    after_second_run: Secrets,
    first_run: String,
    second_run: String,
    /// Every command line kubectl was given.
    kubectl_calls: String,
}

impl Prepared {
    /// The token printed after `secret` was created: the first line of 64 hex digits after it.
    fn printed_token(&self, secret: &str) -> Option<String> {
        let created = format!("{secret}: created");
        let lines = self.first_run.lines().skip_while(|l| !l.starts_with(&created)).skip(1);
        let mut lines = lines.take_while(|l| l.starts_with(' '));
        lines.find(|l| l.trim().len() == 64 && l.trim().bytes().all(|b| b.is_ascii_hexdigit())).map(|l| l.trim().into())
    }

    /// The CD read token: the verdict API's `token`, printed once.
    fn cd_token(&self) -> &str {
        self.secrets["shadowdiff-verdict-api"]["token"].as_str()
    }
}

fn prepared() -> &'static Prepared {
    static PREPARED: OnceLock<Prepared> = OnceLock::new();
    PREPARED.get_or_init(|| {
        let scratch = scratch_dir();
        let root = scratch.join("k8s");
        copy_tree(&repo().join("deploy/k8s"), &root);
        let kubectl = scratch.join("kubectl");
        std::fs::write(&kubectl, FAKE_KUBECTL).unwrap();
        std::fs::set_permissions(&kubectl, std::fs::Permissions::from_mode(0o755)).unwrap();
        let store = scratch.join("secrets");
        std::fs::create_dir(&store).unwrap();
        let secrets_sh = || {
            let mut command = Command::new(root.join("secrets.sh"));
            command.arg(EXAMPLE_NAMESPACE).env("KUBECTL", &kubectl).env("FAKE_KUBECTL_STORE", &store);
            let ran = run(command, None);
            assert!(ran.ok, "deploy/k8s/secrets.sh {EXAMPLE_NAMESPACE}:\n{}", ran.output);
            ran.stdout
        };
        let first_run = secrets_sh();
        let secrets = read_store(&store);
        let second_run = secrets_sh();
        let after_second_run = read_store(&store);
        let kubectl_calls = read(&scratch.join("secrets.calls"));
        Prepared { root, scratch, secrets, after_second_run, first_run, second_run, kubectl_calls }
    })
}

/// A fresh directory for this test process in Cargo's scratch space for integration tests;
/// those of earlier runs go once they are a day old.
fn scratch_dir() -> PathBuf {
    let parent = Path::new(env!("CARGO_TARGET_TMPDIR")).join("deploy_manifests");
    std::fs::create_dir_all(&parent).unwrap();
    let day = std::time::Duration::from_secs(24 * 3600);
    for entry in std::fs::read_dir(&parent).unwrap().flatten() {
        let age = entry.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok());
        if age.is_some_and(|age| age > day) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    let dir = parent.join(shadowdiff_tests::unique("run"));
    std::fs::create_dir(&dir).unwrap();
    dir
}

/// Copies `from` to `to`, leaving out the Flagger token file a local secrets.sh run wrote.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_tree(&path, &target);
        } else if path.file_name().is_some_and(|n| n != "verdict-token.env") {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

fn read_store(store: &Path) -> Secrets {
    let mut secrets = Secrets::new();
    for entry in std::fs::read_dir(store).unwrap() {
        let dir = entry.unwrap().path();
        let keys = std::fs::read_dir(&dir).unwrap().map(|key| {
            let key = key.unwrap().path();
            (key.file_name().unwrap().to_str().unwrap().to_owned(), read(&key))
        });
        secrets.insert(dir.file_name().unwrap().to_str().unwrap().to_owned(), keys.collect());
    }
    secrets
}

/// The Secrets the trees read, by name and key, with their placeholder values: the
/// catalogue in components/placeholder-secrets.
fn catalogue() -> &'static Secrets {
    static CATALOGUE: OnceLock<Secrets> = OnceLock::new();
    CATALOGUE.get_or_init(|| {
        let text = read(&repo().join("deploy/k8s/components/placeholder-secrets/secrets.yaml"));
        let secrets = yaml_documents(&text).into_iter().map(|secret| {
            assert_eq!(kind(&secret), "Secret", "the catalogue holds Secrets only");
            let data = secret["stringData"].as_object().expect("placeholder Secrets use stringData");
            let keys = data.iter().map(|(key, value)| (key.clone(), str_of(value).to_owned())).collect();
            (name(&secret).to_owned(), keys)
        });
        secrets.collect()
    })
}

/// One Kustomize tree, rendered.
struct Render {
    /// Relative to deploy/k8s.
    dir: String,
    objects: Vec<Value>,
    /// The Secrets the namespace holds besides any in the render: those secrets.sh created.
    cluster_secrets: &'static Secrets,
}

fn kustomize(dir: &Path) -> Vec<Value> {
    let mut command = Command::new(path_tool("kubectl"));
    command.arg("kustomize").arg(dir);
    let ran = run(command, None);
    assert!(ran.ok, "kubectl kustomize {}:\n{}", dir.display(), ran.output);
    yaml_documents(&ran.stdout)
}

fn renders() -> &'static [Render] {
    static RENDERS: OnceLock<Vec<Render>> = OnceLock::new();
    RENDERS.get_or_init(|| {
        let prepared = prepared();
        let mut dirs = Vec::new();
        find_kustomizations(&prepared.root, &mut dirs);
        dirs.sort();
        assert!(!dirs.is_empty(), "no kustomization under deploy/k8s");
        let render = |dir: PathBuf| Render {
            dir: dir.strip_prefix(&prepared.root).unwrap().display().to_string(),
            objects: kustomize(&dir),
            cluster_secrets: &prepared.secrets,
        };
        dirs.into_iter().map(render).collect()
    })
}

fn render(dir: &str) -> &'static Render {
    renders().iter().find(|r| r.dir == dir).unwrap_or_else(|| panic!("no kustomization at deploy/k8s/{dir}"))
}

/// The trees that get applied: overlays and examples (the base and components render
/// inside them).
fn applied() -> impl Iterator<Item = &'static Render> {
    renders().iter().filter(|r| r.dir.starts_with("overlays/") || r.dir.starts_with("examples/"))
}

/// Each applied tree with components/placeholder-secrets added by a kustomization of its
/// own, as one would render a tree whole without a cluster; no other Secrets around.
fn placeholder_renders() -> &'static [Render] {
    static RENDERS: OnceLock<Vec<Render>> = OnceLock::new();
    RENDERS.get_or_init(|| {
        let prepared = prepared();
        let render = |tree: &Render| {
            let dir = prepared.scratch.join("with-placeholders").join(tree.dir.replace('/', "-"));
            std::fs::create_dir_all(&dir).unwrap();
            let kustomization = format!(
                "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - ../../k8s/{}\n\
                 components:\n  - ../../k8s/components/placeholder-secrets\n",
                tree.dir
            );
            std::fs::write(dir.join("kustomization.yaml"), kustomization).unwrap();
            Render { dir: tree.dir.clone(), objects: kustomize(&dir), cluster_secrets: &NO_SECRETS }
        };
        applied().map(render).collect()
    })
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

/// Whether every label of `selector` (a Service's or `matchLabels`) is among `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
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
enum Track {
    /// A Deployment no CD controller manages.
    Only,
    /// Argo Rollouts' stable ReplicaSet: the running release.
    Stable,
    /// The release under test: Argo's canary ReplicaSet, or the Deployment Flagger analyses.
    Canary,
    /// Flagger's copy of its target: the running release.
    Primary,
}

/// Pods as they run once a tree is applied and its CD controller has acted on it.
#[derive(Debug, Clone)]
struct Pods<'a> {
    /// The workload, as named in the cluster (Flagger's primary: `<target>-primary`).
    owner: String,
    track: Track,
    labels: Value,
    /// The pod template they are made from.
    template: &'a Value,
}

impl Pods<'_> {
    /// Whether they run the version the tap's clients get: the stable or primary pods, or a
    /// Deployment of its own labelled as the secondary (the sidecar overlay's stand-in).
    fn primary_version(&self) -> bool {
        match self.track {
            Track::Stable | Track::Primary => true,
            Track::Only => self.labels["shadowdiff.dev/role"] == "secondary",
            Track::Canary => false,
        }
    }

    fn under_test(&self) -> bool {
        match self.track {
            Track::Canary => true,
            Track::Only => self.labels["shadowdiff.dev/role"] == "candidate",
            Track::Stable | Track::Primary => false,
        }
    }

    fn id(&self) -> (String, Track) {
        (self.owner.clone(), self.track)
    }
}

/// A container of a Deployment or Rollout that runs a shadowdiff service, with its config loaded.
struct Running<'a> {
    workload: &'a Value,
    container: &'a Value,
    loaded: Loaded,
}

impl Render {
    fn find(&self, kind_: &str, name_: &str) -> Option<&Value> {
        self.objects.iter().find(|o| kind(o) == kind_ && name(o) == name_)
    }

    fn all<'a>(&'a self, kind_: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.objects.iter().filter(move |o| kind(o) == kind_)
    }

    fn workloads(&self) -> impl Iterator<Item = &Value> {
        self.objects.iter().filter(|o| ["Deployment", "Rollout"].contains(&kind(o)))
    }

    /// The namespace the tree is applied to: its own, or the one `kubectl apply -n` names.
    fn namespace(&self) -> &str {
        let namespaces: BTreeSet<&str> =
            self.objects.iter().filter_map(|o| o["metadata"]["namespace"].as_str()).collect();
        assert!(namespaces.len() <= 1, "{}: objects in several namespaces: {namespaces:?}", self.dir);
        namespaces.into_iter().next().unwrap_or("the-namespace")
    }

    /// A Secret's value: from the render, or else from the namespace (secrets.sh's).
    fn secret(&self, name_: &str, key: &str) -> Option<String> {
        if let Some(secret) = self.find("Secret", name_) {
            if let Some(value) = secret["stringData"][key].as_str() {
                return Some(value.to_owned());
            }
            let encoded = secret["data"][key].as_str()?;
            return String::from_utf8(base64::engine::general_purpose::STANDARD.decode(encoded).ok()?).ok();
        }
        self.cluster_secrets.get(name_).and_then(|keys| keys.get(key)).cloned()
    }

    fn config_map(&self, name_: &str) -> &serde_json::Map<String, Value> {
        let found = self.find("ConfigMap", name_).unwrap_or_else(|| panic!("{}: no ConfigMap {name_}", self.dir));
        found["data"].as_object().unwrap_or_else(|| panic!("{}: ConfigMap {name_} has no data", self.dir))
    }

    /// Every pod set the tree runs, with what the CD controllers make of its workloads:
    /// Argo's stable and canary ReplicaSets, Flagger's primary beside its target.
    fn pods(&self) -> Vec<Pods<'_>> {
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
                pods.push(Pods { owner, track: Track::Only, labels, template });
            }
        }
        pods
    }

    /// Every Service in the namespace once the tree is applied: the render's, with the
    /// template hashes Argo adds to the ones it manages, and the three Flagger creates for each
    /// Canary (the apex, which a mesh splits by weight, `-primary` and `-canary`).
    fn services(&self) -> Vec<Value> {
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

    fn service(&self, name_: &str) -> Option<Value> {
        self.services().into_iter().find(|s| name(s) == name_)
    }

    /// The container port that `service:port` leads to, and the pods behind it (some).
    fn through_service(&self, service: &str, port: u16) -> (u16, Vec<Pods<'_>>) {
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

    /// The container's environment, with every reference resolved within the render, and
    /// the service-link variables of every Service in the namespace: Kubernetes gives them
    /// to every pod that does not turn them off, and a loader must not trip on them anyway.
    fn environment(&self, pod: &Value, container: &Value) -> Vec<EnvVar> {
        let mut env: Vec<EnvVar> = self.services().iter().flat_map(service_links).collect();
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

    /// Where `container` of `pod` mounts its config, and the file's text.
    fn config_of(&self, at: &str, pod: &Value, container: &Value) -> (Service, String) {
        let args = strings(&container["args"]);
        let service = args.first().and_then(|b| Service::of_binary(b)).expect("a shadowdiff service");
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
        (service, text.to_owned())
    }

    /// The shadowdiff service containers: (workload, container, where).
    fn service_containers(&self) -> Vec<(&Value, &Value, String)> {
        let mut found = Vec::new();
        for workload in self.workloads() {
            for container in workload["spec"]["template"]["spec"]["containers"].as_array().expect("containers") {
                let args = strings(&container["args"]);
                if args.first().and_then(|b| Service::of_binary(b)).is_some() {
                    let at = format!("{}/{}/{}", self.dir, name(workload), str_of(&container["name"]));
                    found.push((workload, container, at));
                }
            }
        }
        found
    }

    /// Every shadowdiff service container, its config file (a mounted ConfigMap) and
    /// environment loaded by the service's own loader.
    fn running(&self) -> Vec<Running<'_>> {
        let running = self.service_containers().into_iter().map(|(workload, container, at)| {
            let pod = &workload["spec"]["template"];
            let (service, text) = self.config_of(&at, pod, container);
            let loaded = service.load_checked(&text, &at, &self.environment(pod, container));
            Running { workload, container, loaded }
        });
        running.collect()
    }

    /// The pods of a workload of the render that no controller splits.
    fn pods_of(&self, workload: &Value) -> Pods<'_> {
        let pods = self.pods().into_iter().filter(|p| p.owner == name(workload)).collect::<Vec<_>>();
        assert_eq!(pods.len(), 1, "{}: {} runs as one set of pods", self.dir, name(workload));
        pods.into_iter().next().unwrap()
    }

    /// Whether the tree's NetworkPolicies let `other` connect to `pods` on `port` (Ingress),
    /// or `pods` connect to `other` on `port` (Egress). `port_name` is the port's name on the
    /// pod that listens, if it has one.
    fn admits(
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

/// A named or numbered port of one of the pod template's containers.
fn container_port(template: &Value, port: &Value) -> u16 {
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
fn port_name(template: &Value, port: u16) -> Option<String> {
    let containers = template["spec"]["containers"].as_array().expect("containers");
    let mut ports = containers.iter().flat_map(|c| c["ports"].as_array().into_iter().flatten());
    ports.find(|p| p["containerPort"] == port).and_then(|p| p["name"].as_str()).map(str::to_owned)
}

// ---------------------------------------------------------------------------------------
// NetworkPolicy, as the API server documents its meaning

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Ingress,
    Egress,
}

/// The other end of a connection: a pod with these labels in a namespace, which Kubernetes
/// labels `kubernetes.io/metadata.name`.
#[derive(Debug, Clone)]
struct Peer {
    namespace: String,
    labels: Value,
}

impl Peer {
    fn pod(namespace: &str, labels: Value) -> Self {
        Self { namespace: namespace.to_owned(), labels }
    }

    /// Some pod of `namespace`, with no label any policy here names.
    fn any_in(namespace: &str) -> Self {
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
fn namespace_of_host<'a>(host: &'a str, own: &'a str) -> &'a str {
    host.split('.').nth(1).unwrap_or(own)
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

/// The verdict service of a render.
fn verdict_of<'a>(running: &'a [Running<'_>]) -> &'a Loaded {
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
    let operator = prepared().printed_token("shadowdiff-mirror-api").expect("secrets.sh prints the operator token");
    for render in applied() {
        let running = render.running();
        assert_mirror_fits_taps(&render.dir, &running.iter().map(|r| &r.loaded).collect::<Vec<_>>());
        let verdict = verdict_of(&running);
        assert!(verdict.closed(), "{}: the verdict API asks for credentials", render.dir);
        let mirror = running.iter().find(|r| r.loaded.service == Service::Mirror).expect("the mirror runs");
        assert!(
            mirror.loaded.accepts(&operator, Scope::Write),
            "{}: the mirror takes the operator token secrets.sh printed",
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
fn no_tree_carries_a_secret() {
    let placeholders: BTreeSet<&str> = catalogue().values().flat_map(BTreeMap::values).map(String::as_str).collect();
    fn strings_in<'a>(value: &'a Value, found: &mut Vec<&'a str>) {
        match value {
            Value::String(s) => found.push(s),
            Value::Array(items) => items.iter().for_each(|i| strings_in(i, found)),
            Value::Object(map) => map.values().for_each(|v| strings_in(v, found)),
            _ => {}
        }
    }
    for render in renders() {
        for object in &render.objects {
            // Applied, it would replace the Secret secrets.sh or a secret manager made.
            assert_ne!(kind(object), "Secret", "{}: Secret {} is part of the tree", render.dir, name(object));
            let mut found = Vec::new();
            strings_in(object, &mut found);
            for text in found {
                assert!(
                    !placeholders.contains(text) && !text.contains("REPLACE-ME"),
                    "{}: {} {} carries the placeholder {text:?}",
                    render.dir,
                    kind(object),
                    name(object)
                );
            }
        }
    }
}

#[test]
fn placeholder_secrets_stop_the_services_that_would_use_them() {
    let renders = placeholder_renders();
    assert_eq!(renders.len(), applied().count());
    for render in renders {
        let dir = &render.dir;
        for (secret, keys) in catalogue() {
            for (key, value) in keys {
                assert_eq!(
                    render.secret(secret, key).as_ref(),
                    Some(value),
                    "{dir}: the component adds {secret}/{key}"
                );
                let decoded = base64::engine::general_purpose::STANDARD.decode(value).ok();
                let decoded = decoded.and_then(|d| String::from_utf8(d).ok()).unwrap_or_default();
                assert!(
                    value.contains("fake") || decoded.contains("fake"),
                    "{secret}/{key} must be an obvious placeholder"
                );
            }
        }
        let mut refused = BTreeMap::new();
        for (workload, container, at) in render.service_containers() {
            let pod = &workload["spec"]["template"];
            let (service, text) = render.config_of(&at, pod, container);
            let env = render.environment(pod, container);
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
            match service.load(&text, &at, &env) {
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
        let expected: BTreeMap<Service, bool> =
            [(Service::Tap, true), (Service::Mirror, true), (Service::Correlator, false), (Service::Verdict, true)]
                .into_iter()
                .collect();
        assert_eq!(refused, expected, "{dir}: which services refuse the placeholders");
    }
}

#[test]
fn secrets_script_creates_each_secret_once_with_working_values() {
    let prepared = prepared();
    let created = &prepared.secrets;
    let shape = |secrets: &Secrets| -> BTreeMap<String, Vec<String>> {
        secrets.iter().map(|(name, keys)| (name.clone(), keys.keys().cloned().collect())).collect()
    };
    assert_eq!(shape(created), shape(catalogue()), "secrets.sh creates the Secrets the trees read, by name and key");
    for (secret, keys) in created {
        for (key, value) in keys {
            assert!(!value.is_empty() && value.trim() == value, "{secret}/{key}: {value:?}");
            assert!(!catalogue()[secret].values().any(|p| p == value), "{secret}/{key} is the placeholder");
        }
    }
    let decode = |value: &str| base64::engine::general_purpose::STANDARD.decode(value).expect("base64");
    let tap_keys = &created["shadowdiff-tap-keys"];
    assert_eq!(decode(&tap_keys["seal-key"]).len(), 32, "the seal key is 32 bytes");
    assert!(decode(&tap_keys["hmac-key"]).len() >= 16, "the HMAC key is 16 bytes or more");

    // The tokens: printed once, and the ones the digests in auth-tokens admit.
    let cd = prepared.printed_token("shadowdiff-verdict-api").expect("the CD read token is printed");
    assert_eq!(cd, prepared.cd_token());
    let auth = |secret: &str| {
        let env = vec![("SHADOWDIFF_AUTH_TOKENS".to_owned(), created[secret]["auth-tokens"].clone())];
        let config: VerdictConfig = load_str("", secret, env).unwrap_or_else(|e| panic!("{secret}/auth-tokens: {e}"));
        Auth::new(&config.auth, "deploy_manifests")
    };
    assert!(auth("shadowdiff-verdict-api").token(&cd, Scope::Read).is_ok(), "the CD token reads");
    assert!(auth("shadowdiff-verdict-api").token(&cd, Scope::Write).is_err(), "the CD token only reads");
    let operator = prepared.printed_token("shadowdiff-mirror-api").expect("the operator token is printed");
    assert!(auth("shadowdiff-mirror-api").token(&operator, Scope::Write).is_ok(), "the operator token writes");

    // Flagger's copy of the CD token, for the secretless webhooks: private, and never committed.
    let token_file = prepared.root.join("examples/flagger/verdict-token.env");
    let mode = std::fs::metadata(&token_file).expect("secrets.sh writes verdict-token.env").permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "verdict-token.env is readable by its owner only");
    assert_eq!(read(&token_file), format!("token={cd}\n"));
    let mut git = Command::new("git");
    git.current_dir(repo()).args(["check-ignore", "--quiet", "deploy/k8s/examples/flagger/verdict-token.env"]);
    assert!(run(git, None).ok, "git ignores deploy/k8s/examples/flagger/verdict-token.env");

    // Run again, it replaces nothing and shows no token.
    for secret in catalogue().keys() {
        assert!(prepared.first_run.contains(&format!("{secret}: created")), "first run:\n{}", prepared.first_run);
        let skipped = format!("{secret}: exists, left as it is");
        assert!(prepared.second_run.contains(&skipped), "second run:\n{}", prepared.second_run);
    }
    assert_eq!(prepared.after_second_run, prepared.secrets, "a second run changes no Secret");
    assert!(!prepared.second_run.contains(&cd) && !prepared.second_run.contains(&operator));
    // Values reach kubectl through files, never on a command line (visible in `ps`).
    for (secret, keys) in created {
        for (key, value) in keys.iter().filter(|(_, v)| v.len() >= 16) {
            assert!(!prepared.kubectl_calls.contains(value.as_str()), "{secret}/{key} was on kubectl's command line");
        }
    }
}

/// The ingress tap of a render.
fn ingress_tap<'a>(running: &'a [Running<'a>]) -> &'a Running<'a> {
    running.iter().find(|r| name(r.workload) == "shadowdiff-tap").expect("the ingress tap runs")
}

#[test]
fn ingress_taps_forward_to_the_stable_primary() {
    for render in applied() {
        let dir = &render.dir;
        let running = render.running();
        let tap = ingress_tap(&running);
        assert_eq!(tap.loaded.upstreams.len(), 1, "{dir}: one upstream");
        let (host, port) = host_port(&tap.loaded.upstreams[0].url);
        for canary in render.all("Canary") {
            let apex = str_of(&canary["spec"]["targetRef"]["name"]);
            assert_ne!(host, apex, "{dir}: the tap forwards to Flagger's apex, which the mesh splits by weight");
        }
        match render.service(&host) {
            Some(service) => {
                assert!(service["metadata"]["annotations"][MESH_SPLIT].is_null(), "{dir}: {host} is split by weight");
                let (_, pods) = render.through_service(&host, port);
                for pods in &pods {
                    assert!(
                        matches!(pods.track, Track::Stable | Track::Primary),
                        "{dir}: the tap's upstream {host} reaches {} pods of {}",
                        format!("{:?}", pods.track).to_lowercase(),
                        pods.owner
                    );
                }
                for rollout in render.all("Rollout") {
                    assert_eq!(rollout["spec"]["strategy"]["canary"]["stableService"], host.as_str());
                }
            }
            None => assert!(!dir.starts_with("examples/"), "{dir}: the tap's upstream {host} is not in the tree"),
        }
    }
}

#[test]
fn every_mirror_profile_replays_to_a_secondary_of_the_primary_version() {
    for render in applied() {
        let dir = &render.dir;
        let running = render.running();
        let mirror = running.iter().find(|r| r.loaded.service == Service::Mirror).expect("the mirror runs");
        let role = |role: &str| mirror.loaded.upstreams.iter().filter(|u| u.role == role).collect::<Vec<_>>();
        let (secondaries, candidates) = (role("secondary"), role("candidate"));
        assert_eq!((secondaries.len(), candidates.len()), (1, 1), "{dir}: a secondary beside the candidate");
        let (secondary, candidate) = (secondaries[0], candidates[0]);
        assert!(secondary.rate_per_sec.is_some(), "{dir}: bound the secondary's extra load on the primary's pods");
        assert_eq!(secondary.rate_per_sec, candidate.rate_per_sec, "{dir}: every candidate replay has its baseline");

        let (candidate_host, candidate_port) = host_port(&candidate.url);
        if !dir.starts_with("examples/") && render.service(&candidate_host).is_none() {
            // A tree without the application (overlays/ingress); the examples carry it.
            continue;
        }
        let (_, under_test) = render.through_service(&candidate_host, candidate_port);
        assert!(under_test.iter().all(Pods::under_test), "{dir}: the candidate's Service reaches {under_test:?}");
        let (secondary_host, secondary_port) = host_port(&secondary.url);
        let (_, baseline) = render.through_service(&secondary_host, secondary_port);
        assert!(
            baseline.iter().all(Pods::primary_version),
            "{dir}: the secondary's Service reaches pods of another version: {baseline:?}"
        );
        if dir.starts_with("examples/") {
            // A second call to the primary's own pods: always its version, nothing to keep in step.
            let tap = ingress_tap(&running);
            let (upstream, upstream_port) = host_port(&tap.loaded.upstreams[0].url);
            let (_, primary) = render.through_service(&upstream, upstream_port);
            let ids = |pods: &[Pods<'_>]| pods.iter().map(Pods::id).collect::<BTreeSet<_>>();
            assert_eq!(ids(&baseline), ids(&primary), "{dir}: the secondary runs on the tap's upstream's pods");
        }
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
            match &loaded.clickhouse_url {
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
            // Nothing else: not the other services' ports, not the world, and the tap not the
            // canary's pods, whose answers it would record as the primary's.
            for other in shadowdiff.iter().filter(|o| o.loaded.service != loaded.service) {
                let other_pods = render.pods_of(other.workload);
                let peer = Peer::pod(namespace, other_pods.labels.clone());
                for port in other.loaded.listens().map(|a| a.port()) {
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

use std::io::Write;

use serde::Deserialize;

use super::*;

#[derive(Debug, Deserialize, PartialEq)]
struct Config {
    kafka: Kafka,
    #[serde(default)]
    admin: Admin,
}

#[derive(Debug, Deserialize, PartialEq)]
struct Kafka {
    brokers: String,
    #[serde(default = "default_linger_ms")]
    linger_ms: u64,
    #[serde(default)]
    idempotent: bool,
}

const fn default_linger_ms() -> u64 {
    5
}

#[derive(Debug, Default, Deserialize, PartialEq)]
struct Admin {
    #[serde(default)]
    port: u16,
    #[serde(default)]
    password: String,
}

impl Validate for Config {
    fn validate(&self, errors: &mut Vec<ConfigError>) {
        if self.kafka.idempotent && self.kafka.linger_ms == 0 {
            errors.push(ConfigError::rule("kafka.linger_ms", "must be > 0 when idempotent"));
        }
    }
}

fn file(text: &str) -> tempfile_path::TempPath {
    tempfile_path::write(text)
}

/// A minimal temp file helper; the config loader only needs a path.
mod tempfile_path {
    use std::path::PathBuf;

    pub(super) struct TempPath(pub(super) PathBuf);

    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    pub(super) fn write(text: &str) -> TempPath {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "shadowdiff-config-test-{}-{}.toml",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let mut f = std::fs::File::create(&path).unwrap();
        super::Write::write_all(&mut f, text.as_bytes()).unwrap();
        TempPath(path)
    }
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

#[test]
fn env_overrides_file_and_is_typed_by_the_field() {
    let f = file("[kafka]\nbrokers = \"file:9092\"\n");
    let config: Config = load(
        Some(&f.0),
        env(&[
            ("SHADOWDIFF_KAFKA_BROKERS", "env:9092"),
            ("SHADOWDIFF_KAFKA_LINGER_MS", "50"),
            ("SHADOWDIFF_ADMIN_PASSWORD", "1234"),
            ("SHADOWDIFF_CLICKHOUSE_URL", "http://127.0.0.1:8123"), // another service's section
            ("UNRELATED", "x"),
        ]),
    )
    .unwrap();
    assert_eq!(config.kafka, Kafka { brokers: "env:9092".into(), linger_ms: 50, idempotent: false });
    assert_eq!(config.admin.password, "1234", "a numeric-looking string stays a string");
}

#[test]
fn every_bad_key_is_reported_at_once() {
    let f = file(
        "[kafka]\nbrokers = \"b:9092\"\nlinger_ms = \"soon\"\nbrokrs = \"typo\"\n\
         [admin]\nport = 70000\n[extra]\nx = 1\n",
    );
    let errors = load::<Config>(Some(&f.0), env(&[("SHADOWDIFF_KAFKA_IDEMPOTENT", "maybe")])).unwrap_err().0;
    let mut keys: Vec<_> = errors.iter().map(|e| e.key.as_str()).collect();
    keys.sort_unstable();
    assert_eq!(keys, vec!["admin.port", "extra", "kafka.brokrs", "kafka.idempotent", "kafka.linger_ms"], "{errors:#?}");
    let idempotent = errors.iter().find(|e| e.key == "kafka.idempotent").unwrap();
    assert_eq!(idempotent.origin, Origin::Env("SHADOWDIFF_KAFKA_IDEMPOTENT".into()));
    let port = errors.iter().find(|e| e.key == "admin.port").unwrap();
    assert!(matches!(&port.origin, Origin::File(path) if path.ends_with(".toml")));
    let report = ConfigErrors(errors).to_string();
    assert!(report.starts_with("invalid configuration, 5 problem(s):"), "{report}");
}

#[test]
fn missing_required_key_and_cross_field_rules() {
    let errors = load::<Config>(None, env(&[])).unwrap_err().0;
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].key, "(top level)");
    assert!(errors[0].message.contains("kafka"), "{:?}", errors[0]);

    let errors = load::<Config>(
        None,
        env(&[
            ("SHADOWDIFF_KAFKA_BROKERS", "b"),
            ("SHADOWDIFF_KAFKA_IDEMPOTENT", "true"),
            ("SHADOWDIFF_KAFKA_LINGER_MS", "0"),
        ]),
    )
    .unwrap_err()
    .0;
    assert_eq!(errors, vec![ConfigError::rule("kafka.linger_ms", "must be > 0 when idempotent")]);
}

#[test]
fn unreadable_and_unparsable_files_name_the_file() {
    let f = file("[kafka\n");
    let errors = load::<Config>(Some(&f.0), env(&[])).unwrap_err().0;
    assert_eq!(errors[0].key, "(file)");
    let missing = std::path::Path::new("/nonexistent/shadowdiff.toml");
    let errors = load::<Config>(Some(missing), env(&[])).unwrap_err().0;
    assert!(errors[0].message.starts_with("cannot read"));
}

#[derive(Debug, Deserialize)]
struct Targets {
    #[allow(dead_code)] // read by serde only: the test checks the errors
    targets: Vec<Target>,
}

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct Target {
    name: String,
    port: u16,
}

impl Validate for Targets {
    fn validate(&self, _: &mut Vec<ConfigError>) {}
}

#[test]
fn errors_inside_arrays_name_the_element_and_are_not_repeated() {
    let f = file("[[targets]]\nname = \"a\"\nport = 1\n[[targets]]\nname = \"b\"\nport = \"x\"\ntypo = 1\n");
    let errors = load::<Targets>(Some(&f.0), env(&[])).unwrap_err().0;
    let keys: Vec<_> = errors.iter().map(|e| e.key.as_str()).collect();
    // The bad port is reported once: not again as "missing field `port`" after removal.
    assert_eq!(keys, vec!["targets[1].port", "targets[1].typo"], "{errors:#?}");
}

#[test]
fn kubernetes_service_links_are_not_config_keys() {
    // What Kubernetes gives every pod in the namespace for Services named shadowdiff-kafka
    // (port 9092 named kafka) and shadowdiff-admin-api (port 53/UDP): their names start with
    // sections this service has.
    let links = [
        ("SHADOWDIFF_KAFKA_SERVICE_HOST", "10.96.0.10"),
        ("SHADOWDIFF_KAFKA_SERVICE_PORT", "9092"),
        ("SHADOWDIFF_KAFKA_SERVICE_PORT_KAFKA", "9092"),
        ("SHADOWDIFF_KAFKA_PORT", "tcp://10.96.0.10:9092"),
        ("SHADOWDIFF_KAFKA_PORT_9092_TCP", "tcp://10.96.0.10:9092"),
        ("SHADOWDIFF_KAFKA_PORT_9092_TCP_PROTO", "tcp"),
        ("SHADOWDIFF_KAFKA_PORT_9092_TCP_PORT", "9092"),
        ("SHADOWDIFF_KAFKA_PORT_9092_TCP_ADDR", "10.96.0.10"),
        ("SHADOWDIFF_ADMIN_API_SERVICE_HOST", "10.96.0.11"),
        ("SHADOWDIFF_ADMIN_API_PORT", "udp://10.96.0.11:53"),
        ("SHADOWDIFF_ADMIN_API_PORT_53_UDP_ADDR", "10.96.0.11"),
    ];
    let f = file("[kafka]\nbrokers = \"b:9092\"\n[admin]\nport = 1\n");
    let mut vars = env(&links);
    vars.push(("SHADOWDIFF_KAFKA_LINGER_MS".into(), "7".into()));
    let config: Config = load(Some(&f.0), vars).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.kafka.linger_ms, 7, "real keys still apply beside the links");

    // A key that merely ends in _PORT, with a value that is no service address, is a key.
    let errors = load::<Config>(Some(&f.0), env(&[("SHADOWDIFF_KAFKA_PORT", "9092")])).unwrap_err().0;
    assert_eq!(errors.iter().map(|e| e.key.as_str()).collect::<Vec<_>>(), vec!["kafka.port"], "{errors:#?}");
}

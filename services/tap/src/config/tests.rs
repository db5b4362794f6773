use std::sync::Arc;

use super::*;

/// A valid `[tap]` section plus `extra` keys, parsed and validated: the keys of the errors.
fn errors_with(extra: &str) -> (TapConfig, Vec<String>) {
    let text = format!(
        "[tap]\nlisten = \"127.0.0.1:0\"\nupstream = \"http://127.0.0.1:1\"\n{extra}\n\
         [tap.redaction]\nhmac_key = \"0123456789abcdef\"\n"
    );
    let config: TapConfig = toml::from_str(&text).unwrap();
    let mut errors = Vec::new();
    config.validate(&mut errors);
    (config, errors.into_iter().map(|e| e.key).collect())
}

#[test]
fn hardening_limits_default_to_secure_values() {
    let (config, errors) = errors_with("");
    assert_eq!(errors, Vec::<String>::new());
    let tap = &config.tap;
    assert_eq!(tap.header_read_timeout, Duration::from_secs(10));
    assert_eq!(tap.idle_timeout, Duration::from_secs(60));
    assert_eq!(tap.max_connections_per_worker, 10_000);
    assert_eq!(tap.max_header_bytes, 64 * 1024);
    assert_eq!(tap.capture_memory_budget_bytes, 64 * 1024 * 1024);
}

#[test]
fn hardening_limits_are_read_from_their_keys() {
    let (config, errors) = errors_with(
        "header_read_timeout_ms = 500\nidle_timeout_ms = 2000\nmax_connections_per_worker = 3\n\
         max_header_bytes = 8192\ncapture_memory_budget_bytes = 1048576\n",
    );
    assert_eq!(errors, Vec::<String>::new());
    let tap = &config.tap;
    assert_eq!(
        (tap.header_read_timeout, tap.idle_timeout, tap.max_connections_per_worker),
        (Duration::from_millis(500), Duration::from_secs(2), 3)
    );
    assert_eq!((tap.max_header_bytes, tap.capture_memory_budget_bytes), (8192, 1 << 20));
}

#[test]
fn every_bad_limit_is_reported_by_its_key() {
    let (_, errors) = errors_with(
        "header_read_timeout_ms = 0\nidle_timeout_ms = 0\nmax_connections_per_worker = 0\n\
         max_header_bytes = 100\ncapture_memory_budget_bytes = 0\n",
    );
    assert_eq!(
        errors,
        [
            "tap.header_read_timeout_ms",
            "tap.idle_timeout_ms",
            "tap.max_connections_per_worker",
            "tap.max_header_bytes",
            "tap.capture_memory_budget_bytes",
        ]
    );
    let (_, errors) = errors_with("max_header_bytes = 8191\n");
    assert_eq!(errors, ["tap.max_header_bytes"], "hyper's smallest buffer");
    let (_, errors) = errors_with("max_header_bytes = 4294967296\n");
    assert_eq!(errors, ["tap.max_header_bytes"], "h2 announces it in 32 bits");
}

#[test]
fn the_memory_budget_must_hold_one_exchange_of_the_largest_route_cap() {
    let (_, errors) = errors_with("capture_max_body_bytes = 1000\ncapture_memory_budget_bytes = 2000\n");
    assert_eq!(errors, Vec::<String>::new());
    let (_, errors) = errors_with("capture_max_body_bytes = 1000\ncapture_memory_budget_bytes = 1999\n");
    assert_eq!(errors, ["tap.capture_memory_budget_bytes"]);
    let (_, errors) = errors_with(
        "capture_max_body_bytes = 1000\ncapture_memory_budget_bytes = 2000\n\
         routes = [{ template = \"/big\", capture_max_body_bytes = 5000 }]\n",
    );
    assert_eq!(errors, ["tap.capture_memory_budget_bytes"]);
}

/// A CA, a server certificate for 127.0.0.1 it signed, and that certificate's key, as PEM
/// files in a directory of their own, plus a file of garbage.
struct Pki {
    dir: std::path::PathBuf,
}

impl Pki {
    fn new() -> Self {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("shadowdiff-tap-tls-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut ca = CertificateParams::new(Vec::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap().signed_by(&key, &ca).unwrap();
        let other_key = KeyPair::generate().unwrap();
        for (name, pem) in [
            ("ca.pem", ca.pem()),
            ("cert.pem", cert.pem()),
            ("key.pem", key.serialize_pem()),
            ("other-key.pem", other_key.serialize_pem()),
            ("garbage.pem", "-----BEGIN PRIVATE KEY-----\nnot base64 at all: SECRET-BYTES\n".to_owned()),
            ("empty.pem", String::new()),
        ] {
            std::fs::write(dir.join(name), pem).unwrap();
        }
        Self { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// A `[tap.tls]` section (which must come last inside `[tap]`) with these files.
    fn listener(&self, cert: &str, key: &str) -> String {
        format!("[tap.tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n", self.path(cert), self.path(key))
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The errors (key and message) of a config with `upstream` and `extra` keys in `[tap]`.
fn validated(upstream: &str, extra: &str) -> (TapConfig, Vec<ConfigError>) {
    let text = format!(
        "[tap]\nlisten = \"127.0.0.1:0\"\nupstream = \"{upstream}\"\n{extra}\n\
         [tap.redaction]\nhmac_key = \"0123456789abcdef\"\n"
    );
    let config: TapConfig = toml::from_str(&text).unwrap();
    let mut errors = Vec::new();
    config.validate(&mut errors);
    (config, errors)
}

fn keys(errors: &[ConfigError]) -> Vec<&str> {
    errors.iter().map(|e| e.key.as_str()).collect()
}

#[test]
fn a_tls_listener_is_parsed_once_at_validation_and_kept() {
    let pki = Pki::new();
    let (config, errors) = validated("http://127.0.0.1:1", &pki.listener("cert.pem", "key.pem"));
    assert_eq!(errors, Vec::new());
    // The files are gone; the tap keeps serving with what validation read.
    std::fs::remove_dir_all(&pki.dir).unwrap();
    let tls = config.tap.tls.as_ref().unwrap();
    let server = tls.server_config().unwrap();
    assert_eq!(server.alpn_protocols, [b"h2".to_vec(), b"http/1.1".to_vec()]);
    assert!(Arc::ptr_eq(&server, &config.clone().tap.tls.unwrap().server_config().unwrap()), "clones share it");
    let debug = format!("{config:?}");
    assert!(debug.contains("loaded") && !debug.contains("PRIVATE KEY"), "{debug}");
}

#[test]
fn bad_tls_files_are_reported_by_their_keys() {
    let pki = Pki::new();
    let cases = [
        (pki.listener("missing.pem", "key.pem"), vec!["tap.tls.cert_file"]),
        (pki.listener("cert.pem", "missing.pem"), vec!["tap.tls.key_file"]),
        (pki.listener("missing.pem", "missing.pem"), vec!["tap.tls.cert_file", "tap.tls.key_file"]),
        (pki.listener("empty.pem", "key.pem"), vec!["tap.tls.cert_file"]),
        (pki.listener("key.pem", "key.pem"), vec!["tap.tls.cert_file"]),
        (pki.listener("cert.pem", "garbage.pem"), vec!["tap.tls.key_file"]),
        (pki.listener("cert.pem", "cert.pem"), vec!["tap.tls.key_file"]),
        (pki.listener("cert.pem", "other-key.pem"), vec!["tap.tls.key_file"]),
        (format!("[tap.tls]\nkey_file = \"{}\"\n", pki.path("key.pem")), vec!["tap.tls.cert_file"]),
        (format!("[tap.tls]\ncert_file = \"{}\"\n", pki.path("cert.pem")), vec!["tap.tls.key_file"]),
    ];
    for (extra, want) in cases {
        let (_, errors) = validated("http://127.0.0.1:1", &extra);
        assert_eq!(keys(&errors), want, "{extra}\n{errors:?}");
    }
    let (_, errors) = validated("http://127.0.0.1:1", &pki.listener("cert.pem", "garbage.pem"));
    assert!(!errors[0].message.contains("SECRET"), "a key file's contents are never quoted: {errors:?}");
    let (_, errors) = validated("http://127.0.0.1:1", &pki.listener("cert.pem", "other-key.pem"));
    assert!(errors[0].message.contains("does not match the certificate"), "{errors:?}");
}

#[test]
fn an_https_upstream_is_allowed_with_or_without_extra_roots() {
    let pki = Pki::new();
    let (config, errors) = validated("https://127.0.0.1:8443", "");
    assert_eq!(errors, Vec::new(), "the system's roots");
    assert!(config.tap.upstream_client_tls().is_some_and(|tls| tls.is_ok()));
    let ca = format!("upstream_ca_file = \"{}\"\n", pki.path("ca.pem"));
    let (config, errors) = validated("https://127.0.0.1:8443", &ca);
    assert_eq!(errors, Vec::new());
    std::fs::remove_dir_all(&pki.dir).unwrap();
    assert!(config.tap.upstream_client_tls().is_some_and(|tls| tls.is_ok()), "kept, not read again");
    let (config, errors) = validated("http://127.0.0.1:1", "");
    assert_eq!(errors, Vec::new());
    assert!(config.tap.upstream_client_tls().is_none(), "no TLS client for a plain upstream");
    let (_, errors) = validated("ftp://127.0.0.1:1", "");
    assert_eq!(keys(&errors), ["tap.upstream"]);
}

#[test]
fn bad_upstream_ca_files_are_reported_by_their_key() {
    let pki = Pki::new();
    let ca = |name: &str| format!("upstream_ca_file = \"{}\"\n", pki.path(name));
    // Read with the config, as the services read it: a bad file is an error at its key.
    let loaded = |extra: &str| {
        let text = format!(
            "[tap]\nlisten = \"127.0.0.1:0\"\nupstream = \"https://127.0.0.1:8443\"\n{extra}\n\
             [tap.redaction]\nhmac_key = \"0123456789abcdef\"\n"
        );
        shadowdiff_runtime::config::load_str::<TapConfig>(&text, "tap.toml", Vec::new()).err().map(|e| e.0)
    };
    for name in ["missing.pem", "empty.pem", "key.pem", "garbage.pem"] {
        let errors = loaded(&ca(name)).unwrap_or_else(|| panic!("{name} accepted"));
        assert_eq!(keys(&errors), ["tap.upstream_ca_file"], "{name}: {errors:?}");
        assert!(errors[0].message.contains(name), "the file is named: {errors:?}");
    }
    let (_, errors) = validated("http://127.0.0.1:1", &ca("ca.pem"));
    assert_eq!(keys(&errors), ["tap.upstream_ca_file"], "only for an https upstream");
}

#[test]
fn route_templates_are_matched_by_the_matcher_built_as_they_are_read() {
    let base = "[tap]\nlisten = \"127.0.0.1:0\"\nupstream = \"http://127.0.0.1:1\"\n\
                [tap.redaction]\nhmac_key = \"0123456789abcdef\"\n";
    let routes = "[[tap.routes]]\ntemplate = \"/users/{id}\"\n[[tap.routes]]\ntemplate = \"/static/{*rest}\"\n";
    let config: TapConfig = shadowdiff_runtime::config::load_str(&format!("{base}{routes}"), "tap.toml", Vec::new())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.tap.routes.len(), 2);
    assert_eq!(config.tap.routes.router.at("/users/7").map(|m| *m.value), Ok(0));

    // The second template matches what the first does: refused, with the key and the entry.
    let clash = "[[tap.routes]]\ntemplate = \"/users/{id}\"\n[[tap.routes]]\ntemplate = \"/users/{name}\"\n";
    let errors = shadowdiff_runtime::config::load_str::<TapConfig>(&format!("{base}{clash}"), "tap.toml", Vec::new())
        .unwrap_err()
        .0;
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0].key, "tap.routes");
    assert!(errors[0].message.contains("[1] \"/users/{name}\""), "{}", errors[0].message);
}

#[test]
fn a_misspelt_mode_or_stub_key_is_refused_at_load() {
    let load = |mode: &str| {
        let text = format!(
            "[tap]\nlisten = \"127.0.0.1:0\"\n[tap.mode]\nkind = \"egress\"\nrole = \"candidate\"\ndeployment = \"v2\"\n\
             {mode}\n[tap.redaction]\nhmac_key = \"0123456789abcdef\"\n"
        );
        shadowdiff_runtime::config::load_str::<TapConfig>(&text, "test", Vec::new())
    };
    let stub = load("[tap.mode.stub]\nwait_ms = 500").expect("a stub");
    assert!(matches!(stub.tap.mode, Mode::Egress { stub: Some(_), .. }));
    for bad in ["[tap.mode.stubs]\nwait_ms = 500", "[tap.mode.stub]\nwait_msec = 500", "deployments = \"v3\""] {
        let errors = load(bad).expect_err(bad).to_string();
        assert!(errors.contains("unknown field"), "{bad}: {errors}");
    }
}

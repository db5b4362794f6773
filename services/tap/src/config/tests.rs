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

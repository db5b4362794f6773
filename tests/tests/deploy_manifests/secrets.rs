//! Secrets and keys: no tree carries a Secret, the placeholder Secrets stop the services that
//! would use them, secrets.sh creates each Secret once with working values, and the mirror
//! replays only to its allowed targets with the taps' redaction and seal keys.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use base64::Engine;
use serde_json::Value;
use shadowdiff_runtime::auth::{Auth, Scope};
use shadowdiff_runtime::config::load_str;
use shadowdiff_verdict::VerdictConfig;

use crate::cd_gates::verdict_of;
use crate::compose::{compose_services, environment, volumes};
use crate::configs::{Loaded, Service};
use crate::prepared::{Secrets, catalogue, prepared};
use crate::render::{applied, kind, name, placeholder_renders, renders};
use crate::tools::{arg_after, read, repo, run, strings};

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
    let created = prepared.secrets();
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
    let [first, second] = &prepared.runs;
    for secret in catalogue().keys() {
        assert!(first.printed.contains(&format!("{secret}: created")), "first run:\n{}", first.printed);
        let skipped = format!("{secret}: exists, left as it is");
        assert!(second.printed.contains(&skipped), "second run:\n{}", second.printed);
    }
    assert_eq!(&second.secrets, created, "a second run changes no Secret");
    assert!(!second.printed.contains(&cd) && !second.printed.contains(&operator));
    // Values reach kubectl through files, never on a command line (visible in `ps`).
    for (secret, keys) in created {
        for (key, value) in keys.iter().filter(|(_, v)| v.len() >= 16) {
            assert!(!prepared.kubectl_calls.contains(value.as_str()), "{secret}/{key} was on kubectl's command line");
        }
    }
}

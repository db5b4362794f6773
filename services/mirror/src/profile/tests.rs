use super::*;
use shadowdiff_core::{CapturedBody, Header};

fn profile(toml_text: &str) -> Profile {
    toml::from_str(toml_text).unwrap()
}

fn base() -> &'static str {
    r#"
    id = "p1"
    targets = [{ name = "v2", role = "candidate", base_url = "http://127.0.0.1:1" }]
    "#
}

fn request(method: &str, route: &str) -> RequestEvent {
    RequestEvent {
        request_id: "r".into(),
        timestamp_ms: 0,
        tap_id: "t".into(),
        method: method.into(),
        scheme: "http".into(),
        authority: "a".into(),
        path: route.into(),
        query: None,
        route_template: Some(route.into()),
        headers: vec![Header::new("x-tenant", "blue")],
        body: CapturedBody::empty(),
        run: String::new(),
    }
}

/// The policy of a local test: the loopback backends on 127.0.0.1.
fn local() -> TargetPolicy {
    TargetPolicy { allowed_targets: vec!["127.0.0.1".parse().unwrap()], allow_loopback: true, allow_link_local: false }
}

fn id(s: &str) -> RequestId {
    RequestId::parse(s).unwrap()
}

#[test]
fn sampling_is_sticky_and_within_a_binomial_bound() {
    let p = profile(&format!("{}\nsample_percent = 10", base()));
    let get = request("GET", "/items/{id}");
    let decide = |i: usize| p.replays(&get, &id(&format!("req-{i}")), 0);
    let first: Vec<bool> = (0..5_000).map(decide).collect();
    let again: Vec<bool> = (0..5_000).map(decide).collect();
    assert_eq!(first, again, "the same id always gets the same decision");
    let n = first.iter().filter(|d| **d).count();
    // Binomial(5000, 0.1): mean 500, sd 21.2; 4 sd either side.
    assert!((415..=585).contains(&n), "{n} of 5000 sampled");
}

#[test]
fn unsafe_methods_need_an_opt_in_with_a_reason() {
    let post = request("POST", "/orders");
    let plain = profile(base());
    assert!(!plain.replays(&post, &id("a"), 0), "POST is not mirrored by default");
    assert!(plain.replays(&request("GET", "/orders"), &id("a"), 0));

    let opted = profile(&format!(
        "{}\nunsafe_methods = {{ methods = [\"POST\"], reason = \"orders are idempotent by key\" }}",
        base()
    ));
    assert!(opted.problems(&local()).is_empty(), "{:?}", opted.problems(&local()));
    assert!(opted.replays(&post, &id("a"), 0));

    let no_reason = profile(&format!("{}\nunsafe_methods = {{ methods = [\"POST\"], reason = \" \" }}", base()));
    assert!(!no_reason.replays(&post, &id("a"), 0));
    assert!(no_reason.problems(&local()).iter().any(|p| p.starts_with("unsafe_methods.reason")));

    let listed = profile(&format!("{}\nmatch = {{ methods = [\"DELETE\"] }}", base()));
    assert!(
        listed.problems(&local()).iter().any(|p| p.contains("DELETE is not safe")),
        "{:?}",
        listed.problems(&local())
    );
}

#[test]
fn routes_headers_enabled_and_ttl() {
    let p = profile(&format!(
        "{}\nttl_secs = 60\nmatch = {{ routes = [\"/items/{{id}}\"], headers = [{{ name = \"X-Tenant\", equals = \"blue\" }}] }}",
        base()
    ))
    .applied_at(1_000);
    assert_eq!(p.expires_at_ms, Some(61_000));
    assert!(p.replays(&request("GET", "/items/{id}"), &id("a"), 60_999));
    assert!(!p.replays(&request("GET", "/items/{id}"), &id("a"), 61_000), "expired");
    assert!(!p.replays(&request("GET", "/other"), &id("a"), 0));
    let mut other_tenant = request("GET", "/items/{id}");
    other_tenant.headers = vec![Header::new("x-tenant", "green")];
    assert!(!p.replays(&other_tenant, &id("a"), 0));
    let disabled = Profile { enabled: false, ..p };
    assert!(!disabled.replays(&request("GET", "/items/{id}"), &id("a"), 0));
}

#[test]
fn every_problem_is_named() {
    let bad = profile(
        r#"
        id = ""
        sample_percent = 120
        targets = [
          { name = "a", role = "secondary", base_url = "https://x", max_concurrency = 0 },
          { name = "a", role = "secondary", base_url = "http://x", rate_per_sec = 0 },
        ]
        faults = { error_percent = -1, error_status = 42 }
        "#,
    );
    let problems = bad.problems(&local());
    for expected in [
        "id:",
        "sample_percent:",
        "targets[0].base_url:",
        "targets[0].max_concurrency:",
        "targets[1].name:",
        "targets[1].rate_per_sec:",
        "targets: at most one secondary",
        "faults.error_percent:",
        "faults.error_status:",
    ] {
        assert!(problems.iter().any(|p| p.starts_with(expected)), "missing {expected:?} in {problems:#?}");
    }
}

#[test]
fn every_field_is_bounded() {
    let fields = |extra: &str, target: &str| {
        let p: Profile = serde_json::from_str(&format!(
            r#"{{"id":"p1","targets":[{{"name":"v2","role":"candidate","base_url":"http://127.0.0.1:1"{target}}}]{extra}}}"#
        ))
        .unwrap();
        p.problems(&local()).iter().map(|p| p.split(':').next().unwrap_or_default().to_owned()).collect::<Vec<_>>()
    };
    assert_eq!(fields("", ""), Vec::<String>::new());
    assert_eq!(fields("", r#","max_concurrency":4611686018427387904"#), ["targets[0].max_concurrency"]);
    assert_eq!(fields("", r#","max_queued":4611686018427387904"#), ["targets[0].max_queued"]);
    assert_eq!(fields("", r#","timeout_ms":3600000"#), ["targets[0].timeout_ms"]);
    assert_eq!(fields("", r#","rate_per_sec":0"#), ["targets[0].rate_per_sec"]);
    assert_eq!(fields(r#","faults":{"latency_ms":6000,"latency_percent":50}"#, ""), ["faults.latency_ms"]);
    assert_eq!(fields(r#","ttl_secs":99999999999"#, ""), ["ttl_secs"]);
    let slash = Profile { id: "a/b".into(), ..profile(base()) };
    assert!(slash.problems(&local())[0].starts_with("id: 1 to 64 characters"), "ids travel as keys and URL segments");
    let routes = format!(r#","match":{{"routes":[{}]}}"#, vec!["\"/r\""; 300].join(","));
    assert_eq!(fields(&routes, ""), ["match.routes"]);
}

#[test]
fn targets_outside_the_mirrors_policy_are_refused_with_the_target_named() {
    let p = profile(
        r#"
        id = "p1"
        targets = [{ name = "v2", role = "candidate", base_url = "http://169.254.169.254/latest/" }]
        "#,
    );
    let problems = p.problems(&local());
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].starts_with("targets[0].base_url: 169.254.169.254 is link-local or a metadata endpoint"));
}

#[test]
fn stubbed_side_effects_let_the_listed_writes_replay_without_a_reason() {
    let writes = |extra: &str| profile(&format!("{}\nmatch = {{ methods = [\"GET\", \"POST\"] }}\n{extra}", base()));
    let live = writes("");
    assert!(live.problems(&local()).iter().any(|p| p.contains("POST is not safe")), "{:?}", live.problems(&local()));
    let stubbed = writes("side_effects = \"stubbed\"");
    assert!(stubbed.problems(&local()).is_empty(), "{:?}", stubbed.problems(&local()));
    let post = request("POST", "/orders");
    assert!(stubbed.replays(&post, &id("a"), 0));
    assert!(!live.replays(&post, &id("a"), 0));
    assert!(!stubbed.replays(&request("DELETE", "/orders"), &id("a"), 0), "only the methods it lists");
}

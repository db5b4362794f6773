//! The built `shadowctl` binary against a real verdict service on its own ClickHouse
//! database, holding crafted rows for three candidates (one passes the default gate, one
//! fails it, one is inconclusive), and against a real mirror on its own Kafka topics.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::process::Output;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use shadowdiff_correlator::sink::Batch;
use shadowdiff_store::{ExchangeRow, SampleRow};
use shadowdiff_tests::infra::Infra;
use shadowdiff_tests::mirror::{MirrorTopics, MirrorUnderTest};
use shadowdiff_tests::verdict::{self as rows, VerdictService, difference, row};
use shadowdiff_tests::{eventually, unique};
use shadowdiff_verdict::{Decision, VerdictReport};

const TOKEN: &str = shadowdiff_tests::auth::READ_TOKEN;
const PASSES: &str = "ctl-pass";
const FAILS: &str = "ctl-fail";
const UNDECIDED: &str = "ctl-wait";
/// A request of the failing candidate with a real difference, a noise one and sampled bodies.
const DIVERGENT: &str = "ctl-fail-2";
const PATH: &str = "items[0].price";

/// Runs the binary with `env`, off the async runtime so the in-process verdict keeps serving.
fn shadowctl(args: &[&str], env: &[(&str, &str)]) -> impl Future<Output = Output> + use<> {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_shadowctl"));
    command
        .args(args)
        .env_remove("SHADOWCTL_TOKEN")
        .env_remove("SHADOWCTL_VERDICT")
        .env_remove("SHADOWCTL_MIRROR")
        .env_remove("SHADOWCTL_MIRROR_TOKEN");
    for (key, value) in env {
        command.env(key, value);
    }
    async move { tokio::task::spawn_blocking(move || command.output().expect("run shadowctl")).await.unwrap() }
}

fn text(output: &Output) -> (String, String) {
    (String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
}

/// Asserts the exit code, printing both streams when it differs.
fn expect_code(output: &Output, code: i32, what: &str) -> (String, String) {
    let (stdout, stderr) = text(output);
    // Shown with the failure of a later assertion, or with --nocapture.
    eprintln!("=== {what}: exit {:?}\n{stdout}{stderr}", output.status.code());
    assert_eq!(output.status.code(), Some(code), "{what}\n--- stdout\n{stdout}\n--- stderr\n{stderr}");
    (stdout, stderr)
}

fn exchange(candidate: &str, i: u32, ts: u32, diverged: bool) -> ExchangeRow {
    ExchangeRow {
        ts,
        request_id: format!("{candidate}-{i}"),
        body_differs: u8::from(diverged),
        differences: u32::from(diverged),
        ..row(candidate, i)
    }
}

fn sample(row: &ExchangeRow, role: &str, deployment: &str, body: &str) -> SampleRow {
    rows::sample(row, role, deployment, 200, body)
}

/// 500 clean comparisons over 2 minutes (a clean candidate passes a 1% bound from 473);
/// 30 of 100 diverged; 20 clean ones, too few.
fn crafted() -> Batch {
    let now = u32::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()).unwrap();
    let start = now - 600;
    let mut batch = Batch::default();
    batch.exchanges.extend((0..500).map(|i| exchange(PASSES, i, start + i * 120 / 499, false)));
    batch.exchanges.extend((0..20).map(|i| exchange(UNDECIDED, i, start + i, false)));
    for i in 0..100 {
        let mut row = exchange(FAILS, i, start + i / 2, i % 10 < 3);
        if row.differences > 0 {
            batch.differences.push(difference(&row, "changed_value", PATH, ("100", "130"), false));
        }
        if row.request_id == DIVERGENT {
            row.differences += 1;
            row.noise = 1;
            batch.differences.push(difference(&row, "changed_value", "generated_at", ("\"10:00\"", "\"10:01\""), true));
            let mut secondary = exchange("secondary", i, row.ts, true);
            (secondary.request_id, secondary.role, secondary.noise) = (row.request_id.clone(), "secondary".into(), 1);
            batch.exchanges.push(secondary);
            batch.samples.push(sample(
                &row,
                "primary",
                "primary",
                r#"{"items":[{"price":100}],"generated_at":"10:00"}"#,
            ));
            batch.samples.push(sample(&row, "candidate", FAILS, r#"{"items":[{"price":130}],"generated_at":"10:01"}"#));
        }
        batch.exchanges.push(row);
    }
    assert!(batch.exchanges.iter().any(|r| r.request_id == DIVERGENT && r.noise == 1), "the divergent request exists");
    batch
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gate_verdict_and_diff_against_a_real_verdict_service() {
    let infra = Infra::get().await;
    let service = VerdictService::start(&infra, "").await;
    let batch = crafted();
    service.insert(&batch.exchanges, &batch.differences, &batch.samples).await;
    let url = service.url.clone();
    let env = [("SHADOWCTL_VERDICT", url.as_str()), ("SHADOWCTL_TOKEN", TOKEN)];
    let gate = |candidate: &'static str, stage: &'static str, wait: &'static str| {
        let args = ["gate", "--candidate", candidate, "--stage", stage, "--wait", wait, "--interval", "500ms"];
        shadowctl(&args, &env)
    };

    let (stdout, stderr) = expect_code(&gate(PASSES, "10", "60s").await, 0, "a clean candidate passes");
    let header = stdout.lines().next().unwrap_or_default();
    assert!(header.starts_with(&format!("{PASSES} · stage 10 · since ")) && header.ends_with(": PASS"), "{stdout}");
    assert!(stderr.contains("500 samples, 500 compared"), "one progress line per poll: {stderr}");

    let (stdout, stderr) = expect_code(&gate(FAILS, "10", "60s").await, 1, "30% diverged fails");
    assert!(stdout.contains(": FAIL"), "{stdout}");
    assert!(stdout.contains("30 of 100 diverged"), "the failing criterion's reason: {stdout}");
    assert!(stdout.contains(&format!("   30  /items/{{id}}  changed_value  {PATH}")), "top path: {stdout}");
    assert!(stderr.contains("diverged 30.00%"), "{stderr}");

    let started = Instant::now();
    let (stdout, stderr) = expect_code(&gate(UNDECIDED, "10", "2s").await, 2, "20 samples stay inconclusive");
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(2) && took < Duration::from_secs(20), "waited out --wait 2s: {took:?}");
    assert!(stdout.contains(": INCONCLUSIVE"), "{stdout}");
    assert!(stderr.contains("still inconclusive after --wait 2s"), "{stderr}");
    assert!(stderr.contains("waiting on samples, duration"), "{stderr}");
    assert_eq!(stderr.matches("20 samples").count(), 1, "off a terminal, a line only when it changes: {stderr}");

    let (_, stderr) = expect_code(&gate(PASSES, "7", "60s").await, 3, "an unknown stage is refused at once");
    assert!(stderr.contains(r#"400 Bad Request: stage "7" is not one of shadow, 1, 10, 50, 100"#), "{stderr}");
    let no_token = shadowctl(&["verdict", "--candidate", PASSES], &[("SHADOWCTL_VERDICT", url.as_str())]).await;
    let (_, stderr) = expect_code(&no_token, 3, "no token is refused");
    assert!(stderr.contains("401 Unauthorized: missing or unknown credentials"), "{stderr}");

    let json = shadowctl(&["verdict", "--candidate", FAILS, "--stage", "10", "--json"], &env).await;
    let (stdout, _) = expect_code(&json, 0, "verdict --json");
    let report: VerdictReport = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!((report.verdict, report.compared, report.divergence.count), (Decision::Fail, 100, 30));
    assert_eq!(report.top_paths.first().map(|p| (p.path.as_str(), p.count)), Some((PATH, 30)), "{report:?}");
    let table = shadowctl(&["verdict", "--candidate", UNDECIDED], &env).await;
    let (stdout, _) = expect_code(&table, 0, "verdict as tables");
    for expected in ["samples", "duration", "divergence_rate", "new_errors", "latency_p95_delta", "A/A baseline", "p99"]
    {
        assert!(stdout.contains(expected), "{expected} in {stdout}");
    }

    let (stdout, _) = expect_code(&shadowctl(&["diff", DIVERGENT], &env).await, 0, "diff of a divergent request");
    assert!(stdout.contains(&format!("Differences, primary → {FAILS}: 2 (1 noise)")), "{stdout}");
    assert!(stdout.contains(&format!("changed_value  {PATH}  100 → 130")), "{stdout}");
    assert!(stdout.contains("generated_at") && stdout.contains("noise: the secondary differs here too"), "{stdout}");
    assert!(stdout.contains("-      \"price\": 100\n+      \"price\": 130\n"), "the bodies' unified diff: {stdout}");
    assert!(stdout.contains(&format!("{url}/exchanges/{DIVERGENT}?candidate={FAILS}")), "drill-down page: {stdout}");
    let (_, stderr) = expect_code(&shadowctl(&["diff", "no-such-request"], &env).await, 3, "unknown request");
    assert!(stderr.contains("no comparison stored for request no-such-request"), "{stderr}");

    // An intended change, accepted: needs the write scope, then shown apart and left out.
    let accept = [
        "accept",
        "--candidate",
        FAILS,
        "--route",
        "/items/{id}",
        "--path",
        "items[*].price",
        "--reason",
        "prices rounded up in v2",
        "--expires",
        "7d",
    ];
    let (_, stderr) = expect_code(&shadowctl(&accept, &env).await, 3, "a read token cannot accept");
    assert!(stderr.contains("403 Forbidden: this credential lacks the write scope"), "{stderr}");
    let operator = [("SHADOWCTL_VERDICT", url.as_str()), ("SHADOWCTL_TOKEN", shadowdiff_tests::auth::WRITE_TOKEN)];
    let (stdout, _) = expect_code(&shadowctl(&accept, &operator).await, 0, "accept");
    assert!(
        stdout.contains("active") && stdout.contains("test-operator") && stdout.contains("prices rounded up"),
        "{stdout}"
    );
    let json = shadowctl(&["verdict", "--candidate", FAILS, "--stage", "10", "--json"], &env).await;
    let report: VerdictReport = serde_json::from_str(&expect_code(&json, 0, "verdict after accept").0).unwrap();
    assert_eq!((report.divergence.count, report.accepted.len()), (0, 1), "{:?}", report.reasons);
    let table = shadowctl(&["verdict", "--candidate", FAILS, "--stage", "10"], &env).await;
    let (stdout, _) = expect_code(&table, 0, "verdict tables after accept");
    assert!(stdout.contains("Accepted differences") && stdout.contains("prices rounded up in v2"), "{stdout}");
    let revoke = ["revoke", "--candidate", FAILS, "--route", "/items/{id}", "--path", "items[*].price"];
    let (stdout, _) = expect_code(&shadowctl(&revoke, &operator).await, 0, "revoke");
    assert!(stdout.contains("revoked"), "{stdout}");
    let (stdout, _) = expect_code(&shadowctl(&["acceptances", "--candidate", FAILS], &env).await, 0, "acceptances");
    assert!(stdout.contains("revoked") && stdout.contains("/items/{id}"), "{stdout}");
    expect_code(&gate(FAILS, "10", "60s").await, 1, "revoked: it fails again");

    service.stop().await;
    let unreachable = [("SHADOWCTL_VERDICT", "http://127.0.0.1:1"), ("SHADOWCTL_TOKEN", TOKEN)];
    let down = shadowctl(
        &["gate", "--candidate", PASSES, "--stage", "10", "--wait", "1s", "--interval", "300ms"],
        &unreachable,
    );
    let (_, stderr) = expect_code(&down.await, 4, "no verdict service: retried, then unavailable");
    assert!(stderr.contains("retrying") && stderr.contains("no verdict within --wait 1s"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_round_trip_through_a_real_mirror() {
    let infra = Infra::get().await;
    let mirror = MirrorUnderTest::start(&infra.brokers, &MirrorTopics::new(), "").await;
    let env = [
        ("SHADOWCTL_MIRROR", mirror.admin_url.as_str()),
        ("SHADOWCTL_MIRROR_TOKEN", shadowdiff_tests::auth::WRITE_TOKEN),
    ];
    let id = unique("ctl");
    let file = std::env::temp_dir().join(format!("{id}.toml"));
    std::fs::write(
        &file,
        format!(
            "id = \"{id}\"\nstage = \"10\"\nsample_percent = 50\nttl_secs = 3600\n\
             [[targets]]\nname = \"v2\"\nrole = \"candidate\"\nbase_url = \"http://127.0.0.1:9\"\n"
        ),
    )
    .unwrap();
    let path = file.to_string_lossy().into_owned();

    let anonymous = [("SHADOWCTL_MIRROR", mirror.admin_url.as_str())];
    let (_, stderr) = expect_code(&shadowctl(&["profiles", "apply", &path], &anonymous).await, 3, "apply, no token");
    assert!(stderr.contains("401 Unauthorized"), "{stderr}");
    let reader = [
        ("SHADOWCTL_MIRROR", mirror.admin_url.as_str()),
        ("SHADOWCTL_MIRROR_TOKEN", shadowdiff_tests::auth::READ_TOKEN),
    ];
    let (_, stderr) = expect_code(&shadowctl(&["profiles", "apply", &path], &reader).await, 3, "apply, read token");
    assert!(stderr.contains("403 Forbidden"), "{stderr}");
    let (stdout, _) = expect_code(&shadowctl(&["profiles", "apply", &path], &env).await, 0, "apply");
    assert!(
        stdout.contains(&format!("accepted profile {id}: stage 10, 50% sampled, 1 target(s), expires in ")),
        "{stdout}"
    );
    let listed = |needle: String, present: bool| {
        let list = shadowctl(&["profiles", "list"], &env);
        async move {
            let output = list.await;
            let (stdout, stderr) = text(&output);
            if output.status.success() && stdout.contains(&needle) == present {
                Ok(stdout)
            } else {
                Err(format!("{stdout}{stderr}"))
            }
        }
    };
    let stdout =
        eventually("the profile listed", Duration::from_secs(20), || listed(format!("{id}  active"), true)).await;
    assert!(stdout.contains("v2 (candidate)") && stdout.contains("none"), "{stdout}");

    let fault = ["profiles", "fault", &id, "--latency-ms", "200", "--latency-percent", "5", "--error-percent", "1"];
    let (stdout, _) = expect_code(&shadowctl(&fault, &env).await, 0, "fault");
    assert!(stdout.contains(&format!("profile {id} faults: +200ms on 5%, 503 on 1%")), "{stdout}");
    eventually("the faults listed", Duration::from_secs(20), || listed("+200ms on 5%, 503 on 1%".to_owned(), true))
        .await;

    let (stdout, _) = expect_code(&shadowctl(&["profiles", "status", &id], &env).await, 0, "status");
    assert!(stdout.contains(&format!("profile {id}")) && stdout.contains("stage: 10"), "{stdout}");

    expect_code(&shadowctl(&["profiles", "delete", &id], &env).await, 0, "delete");
    eventually("the profile gone", Duration::from_secs(20), || listed(id.clone(), false)).await;
    let (_, stderr) = expect_code(&shadowctl(&["profiles", "delete", &id], &env).await, 3, "delete again");
    assert!(stderr.contains("404 Not Found: no profile"), "{stderr}");

    let _ = std::fs::remove_file(&file);
    mirror.stop().await;
}

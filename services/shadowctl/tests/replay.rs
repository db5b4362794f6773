//! The built `shadowctl replay` against the whole pipeline on the real broker and
//! ClickHouse: live traffic through the tap is recorded on the topics; a window of it is
//! replayed to builds started for the test, compared by the correlator as a run of its own
//! and judged by the verdict API, or, from a recording and with no broker at all, compared
//! and judged inside `shadowctl`; the exit code is the verdict.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::process::Output;
use std::time::Duration;

use shadowdiff_demo::backend::{self, Behavior};
use shadowdiff_replay::window::format_ms;
use shadowdiff_tests::infra::Infra;
use shadowdiff_tests::pipeline::{Backends, CANDIDATE, Pipeline, TEST_HMAC_KEY};
use shadowdiff_tests::{eventually, unique};

const ITEMS: u64 = 200;
const WRITES: u64 = 10;

async fn serve(behavior: Behavior) -> std::net::SocketAddr {
    shadowdiff_tests::serve(backend::app(behavior)).await
}

/// A mirror config for the run: the pipeline's brokers and topics, its keys, loopback
/// targets allowed, and no profile (the run brings its own).
fn mirror_toml(infra: &Infra, pipeline: &Pipeline) -> std::path::PathBuf {
    let names = &pipeline.names;
    let text = format!(
        "[mirror]\nallowed_targets = [\"127.0.0.1\"]\nallow_loopback = true\n\
         [mirror.redaction]\nhmac_key = \"{TEST_HMAC_KEY}\"\n\
         [kafka]\nbrokers = \"{}\"\nlinger_ms = 1\n\
         [topics]\nrequests = \"{}\"\nresponses = \"{}\"\ndead_letter = \"{}\"\npartitions = 3\n{}",
        infra.brokers,
        names.requests,
        names.responses,
        names.dead_letter,
        shadowdiff_tests::auth::auth_toml()
    );
    let path = std::env::temp_dir().join(format!("{}.toml", unique("replay-mirror")));
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs the binary off the async runtime, with the verdict API's URL and read token.
async fn replay(pipeline: &Pipeline, args: Vec<String>) -> Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_shadowctl"));
    command.arg("replay").args(args);
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("SHADOWDIFF_") || k.starts_with("SHADOWCTL_")) {
        command.env_remove(key);
    }
    command.env("SHADOWCTL_VERDICT", &pipeline.verdict_url).env("SHADOWCTL_TOKEN", shadowdiff_tests::auth::READ_TOKEN);
    tokio::task::spawn_blocking(move || command.output().expect("run shadowctl")).await.unwrap()
}

/// Where a replay's exchanges come from: a window off the brokers, or a recording.
fn window(from: i64, to: i64) -> Vec<String> {
    ["--from", &format_ms(from), "--to", &format_ms(to), "--grace", "1s"].map(str::to_owned).into()
}

/// `replay`'s arguments: `source`'s exchanges to the build (and the baseline, if any) as run
/// `run` at `speed`, under the pipeline's mirror config.
fn replay_args(
    source: Vec<String>,
    config: &std::path::Path,
    build: std::net::SocketAddr,
    baseline: std::net::SocketAddr,
    run: &str,
    speed: &str,
) -> Vec<String> {
    let rest = [
        "--config".to_owned(),
        config.display().to_string(),
        "--candidate".to_owned(),
        format!("build=http://{build}"),
        "--baseline".to_owned(),
        format!("base=http://{baseline}"),
        "--run".to_owned(),
        run.to_owned(),
        "--speed".to_owned(),
        speed.to_owned(),
        "--wait".to_owned(),
        "90s".to_owned(),
    ];
    source.into_iter().chain(rest).collect()
}

fn streams(output: &Output) -> (String, String) {
    (String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
}

/// Live traffic through the tap: item reads with known request ids, and cart writes.
async fn traffic(pipeline: &Pipeline, prefix: &str, pause: Duration) {
    let http = reqwest::Client::new();
    for n in 0..ITEMS {
        let answer = http
            .get(format!("{}/items/{n}", pipeline.tap_url))
            .header("x-request-id", format!("{prefix}-{n}"))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        if n < WRITES {
            let write = http
                .put(format!("{}/users/{n}/cart", pipeline.tap_url))
                .header("x-request-id", format!("{prefix}-w{n}"))
                .json(&serde_json::json!({ "items": [n] }))
                .send()
                .await
                .unwrap();
            assert!(write.status().is_success(), "{}", write.status());
        }
        tokio::time::sleep(pause).await;
    }
}

/// Waits until the live correlator has compared the live reads: their events are on the
/// topics, primary answers included.
async fn recorded(pipeline: &Pipeline, prefix: &str) {
    eventually("the live traffic compared", Duration::from_secs(60), || async {
        let n: u64 = pipeline
            .clickhouse
            .query("SELECT count() FROM exchanges FINAL WHERE run = '' AND role = 'candidate' AND startsWith(request_id, ?)")
            .bind(prefix)
            .fetch_one()
            .await
            .map_err(|e| e.to_string())?;
        if n >= ITEMS { Ok(()) } else { Err(format!("{n} compared")) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_that_changes_some_answers_fails_at_exactly_those_requests() {
    let infra = Infra::get().await;
    let honest = Behavior::default();
    let backends = Backends {
        primary: serve(honest.clone()).await,
        secondary: serve(honest.clone()).await,
        candidate: serve(honest.clone()).await,
    };
    let pipeline = Pipeline::start(&infra, backends).await;
    let prefix = unique("live");
    let from = shadowdiff_core::event::now_ms() - 1000;
    traffic(&pipeline, &prefix, Duration::ZERO).await;
    recorded(&pipeline, &prefix).await;
    let to = shadowdiff_core::event::now_ms() + 1000;

    // The build under test changes every fifth item's price; the baseline is the primary's version.
    let regressing = Behavior { regress_every: 5, ..Behavior::default() };
    let (build, baseline) = (serve(regressing.clone()).await, serve(honest).await);
    let run = unique("ci").replace('_', "-");
    let config = mirror_toml(&infra, &pipeline);
    let args = replay_args(window(from, to), &config, build, baseline, &run, "max");
    let output = replay(&pipeline, args).await;
    let (stdout, stderr) = streams(&output);
    assert_eq!(output.status.code(), Some(1), "a fail\n--- stdout\n{stdout}\n--- stderr\n{stderr}");
    assert!(stdout.contains(&format!("run {run}: replayed {ITEMS} exchanges")), "{stdout}");
    assert!(stdout.contains(&format!("not replayed: {WRITES} (not a safe method")), "writes never go: {stdout}");

    // Exactly the requests whose price the build changes differ, at `price`.
    let differing: BTreeSet<String> = pipeline
        .clickhouse
        .query("SELECT DISTINCT request_id FROM differences FINAL WHERE run = ? AND deployment = 'build' AND noise = 0")
        .bind(&run)
        .fetch_all()
        .await
        .unwrap()
        .into_iter()
        .collect();
    let injected: BTreeSet<String> =
        (0..ITEMS).filter(|n| regressing.regresses(*n)).map(|n| format!("{run}:{prefix}-{n}")).collect();
    assert_eq!(differing, injected);
    let paths: Vec<String> = pipeline
        .clickhouse
        .query("SELECT DISTINCT path FROM differences FINAL WHERE run = ? AND deployment = 'build' AND noise = 0")
        .bind(&run)
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(paths, vec!["price".to_owned()]);
    // Every replayed exchange compared for both builds; none by the live mirror, which
    // replays no run's request, and the live verdict counts none of them.
    let rows: Vec<(String, u64)> = pipeline
        .clickhouse
        .query("SELECT deployment, count() FROM exchanges FINAL WHERE run = ? GROUP BY deployment ORDER BY deployment")
        .bind(&run)
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(rows, vec![("base".to_owned(), ITEMS), ("build".to_owned(), ITEMS)]);
    let live_of_run: u64 = pipeline
        .clickhouse
        .query("SELECT count() FROM exchanges FINAL WHERE run = '' AND startsWith(request_id, ?)")
        .bind(format!("{run}:"))
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(live_of_run, 0, "the live mirror replayed a run's request");
    let live = shadowdiff_tests::verdict::report(&pipeline.verdict_url, &format!("candidate={CANDIDATE}")).await;
    assert_eq!(live.divergence.count, 0, "the live candidate is honest: {:?}", live.reasons);
    pipeline.stop().await;
}

/// A gate a few hundred honest exchanges can pass: the shadow gate's bounds, loosened. These
/// tests judge what a replay compares, not its latency: at full speed on two shared cores, the
/// p95 of 200 requests is their 10 slowest, which is contention. An honest build's p95 came out
/// +50.14% in a whole-suite run, with the secondary's A/A spread at +388%, so the tail's bound
/// is 100%.
const GATE: &str = "[verdict.gates.shadow]\nmin_samples = 100\nmax_divergence_rate = 0.05\n\
                    max_latency_p50_delta = 0.5\nmax_latency_p95_delta = 1.0\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_twice_the_speed_a_replay_takes_half_the_recorded_time_and_a_recording_replays_alike() {
    let infra = Infra::get().await;
    let honest = Behavior::default();
    let backends = Backends {
        primary: serve(honest.clone()).await,
        secondary: serve(honest.clone()).await,
        candidate: serve(honest.clone()).await,
    };
    let pipeline = Pipeline::start_with(&infra, backends, GATE).await;
    let prefix = unique("paced");
    let from = shadowdiff_core::event::now_ms() - 1000;
    // 200 reads 20 ms apart: about 4 s of recorded traffic (more, with each request's own time).
    traffic(&pipeline, &prefix, Duration::from_millis(20)).await;
    recorded(&pipeline, &prefix).await;
    let to = shadowdiff_core::event::now_ms() + 1000;
    let (build, baseline) = (serve(honest.clone()).await, serve(honest).await);
    let config = mirror_toml(&infra, &pipeline);
    let run = unique("paced").replace('_', "-");
    let args = replay_args(window(from, to), &config, build, baseline, &run, "2x");
    let output = replay(&pipeline, args).await;
    let (stdout, stderr) = streams(&output);
    assert_ne!(output.status.code(), Some(1), "an honest build does not fail\n{stdout}\n{stderr}");
    // "run …: replayed 200 exchanges in 2.1s (recorded over 4.2s)"
    let line = stdout.lines().find(|l| l.contains(": replayed ")).unwrap_or_else(|| panic!("{stdout}"));
    let seconds = |after: &str| -> f64 {
        let rest = &line[line.find(after).unwrap() + after.len()..];
        rest[..rest.find('s').unwrap()].parse().unwrap()
    };
    let (took, recorded) = (seconds(" in "), seconds("recorded over "));
    let ratio = took / recorded;
    assert!((0.45..=0.65).contains(&ratio), "took {took}s for {recorded}s recorded: {ratio:.2}, not about 0.5");

    // The same window as a file, replayed with no window read off the brokers: a pass.
    let file = std::env::temp_dir().join(format!("{}.avro", unique("window")));
    let recorded = std::process::Command::new(env!("CARGO_BIN_EXE_shadowctl"))
        .arg("record")
        .args(window(from, to))
        .arg("--config")
        .arg(&config)
        .arg("-o")
        .arg(&file)
        .output()
        .unwrap();
    assert!(recorded.status.success(), "{}", String::from_utf8_lossy(&recorded.stderr));
    let from_file = unique("file").replace('_', "-");
    let source = vec!["--file".to_owned(), file.display().to_string()];
    let args = replay_args(source, &config, build, baseline, &from_file, "max");
    let output = replay(&pipeline, args).await;
    let (stdout, stderr) = streams(&output);
    assert_eq!(output.status.code(), Some(0), "an honest build passes\n{stdout}\n{stderr}");
    assert!(stdout.contains(&format!("run {from_file}: replayed {ITEMS} exchanges")), "{stdout}");

    // The recording once more, compared and judged in this process with no broker at all:
    // every config names a port no broker listens on. An honest build passes; one that
    // changes every fifth price fails, at exactly those requests.
    let offline = offline_configs(&infra, &pipeline);
    let regressing = Behavior { regress_every: 5, ..Behavior::default() };
    for (build, code) in [(build, 0), (serve(regressing.clone()).await, 1)] {
        let here = unique("here").replace('_', "-");
        let source = vec!["--file".to_owned(), file.display().to_string()];
        let mut args = replay_args(source, &offline[0], build, baseline, &here, "max");
        let [_, correlator, verdict] = offline.each_ref().map(|p| p.display().to_string());
        args.extend(["--correlator-config".to_owned(), correlator, "--verdict-config".to_owned(), verdict]);
        let output = replay(&pipeline, args).await;
        let (stdout, stderr) = streams(&output);
        assert_eq!(output.status.code(), Some(code), "judged here\n{stdout}\n{stderr}");
        let written =
            format!("compared here: {} comparisons of {ITEMS} exchanges written, {} complete", 2 * ITEMS, 2 * ITEMS);
        assert!(stdout.contains(&written), "{stdout}");
        let differing: BTreeSet<String> = pipeline
            .clickhouse
            .query("SELECT DISTINCT request_id FROM differences FINAL WHERE run = ? AND deployment = 'build' AND noise = 0")
            .bind(&here)
            .fetch_all()
            .await
            .unwrap()
            .into_iter()
            .collect();
        let injected: BTreeSet<String> = (0..ITEMS)
            .filter(|n| code == 1 && regressing.regresses(*n))
            .map(|n| format!("{here}:{prefix}-{n}"))
            .collect();
        assert_eq!(differing, injected);
    }
    let _ = std::fs::remove_file(&file);
    pipeline.stop().await;
}

/// The configs of a run compared here, every one naming a broker that is not there: the
/// mirror's (its rules), the correlator's (the pipeline's ClickHouse, and its diff rules) and
/// the verdict's (its gates).
fn offline_configs(infra: &Infra, pipeline: &Pipeline) -> [std::path::PathBuf; 3] {
    let nowhere = "[kafka]\nbrokers = \"127.0.0.1:1\"\n";
    let clickhouse =
        format!("[clickhouse]\nurl = \"{}\"\ndatabase = \"{}\"\n", infra.clickhouse_url, pipeline.names.database);
    let auth = shadowdiff_tests::auth::auth_toml();
    let mirror = format!(
        "[mirror]\nallowed_targets = [\"127.0.0.1\"]\nallow_loopback = true\n\
         [mirror.redaction]\nhmac_key = \"{TEST_HMAC_KEY}\"\n{nowhere}{auth}"
    );
    let correlator = format!("{nowhere}{clickhouse}");
    let verdict = format!("{GATE}{clickhouse}{auth}");
    [("mirror", mirror), ("correlator", correlator), ("verdict", verdict)].map(|(name, text)| {
        let path = std::env::temp_dir().join(format!("{}.toml", unique(&format!("offline-{name}"))));
        std::fs::write(&path, text).unwrap();
        path
    })
}

//! The built `shadowctl record` against a real broker: it finds the brokers and topics where
//! the services do (a service's config file, `SHADOWDIFF_*` variables), writes the window's
//! exchanges to a file, says what it left out, and answers with the documented exit codes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Output;

use shadowdiff_core::Role;
use shadowdiff_core::event::now_ms;
use shadowdiff_replay::recording;
use shadowdiff_replay::window::format_ms;
use shadowdiff_tests::infra::Infra;
use shadowdiff_tests::ports::ClosedPort;
use shadowdiff_tests::replay::{Record, ReplayTopics, primary, publish, request, response};
use shadowdiff_tests::unique;

/// Runs the binary with only `env` of the shadowdiff variables, off the async runtime.
async fn record(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_shadowctl"));
    command.arg("record").args(args);
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("SHADOWDIFF_") || k.starts_with("SHADOWCTL_")) {
        command.env_remove(key);
    }
    for (key, value) in env {
        command.env(key, value);
    }
    tokio::task::spawn_blocking(move || command.output().expect("run shadowctl")).await.unwrap()
}

/// Asserts the exit code, printing both streams when it differs; returns them plain.
fn expect_code(output: &Output, code: i32, what: &str) -> (String, String) {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    eprintln!("=== {what}: exit {:?}\n{stdout}{stderr}", output.status.code());
    assert_eq!(output.status.code(), Some(code), "{what}\n--- stdout\n{stdout}\n--- stderr\n{stderr}");
    (stdout, stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_writes_the_window_and_says_what_it_left_out() {
    let infra = Infra::get().await;
    let topics = ReplayTopics::create(&infra.brokers, 2).await;
    let run = unique("ctl");
    // Requests every 500 ms for 30 s; the window takes the first 25 s.
    let from = now_ms() - 90_000;
    let to = from + 25_000;
    let mut records = Vec::new();
    let mut expected = Vec::new();
    for i in 0..60_i64 {
        let (route, path) =
            if i % 2 == 0 { ("/items/{id}", format!("/items/{i}")) } else { ("/search", "/search".to_owned()) };
        let event = request(&format!("{run}-{i:02}"), from + i * 500, "GET", route, &path);
        records.push(Record::request(&topics.requests, &event));
        records.push(Record::response(&topics.responses, &response(&event, Role::Candidate, "v2")));
        if i == 10 {
            continue; // its primary's answer never arrived
        }
        records.push(Record::response(&topics.responses, &primary(&event)));
        if i % 2 == 0 && i < 50 {
            expected.push(event.request_id);
        }
    }
    records.push(Record::raw(&topics.requests, Some("junk"), Some(b"not an event at all"), from + 1));
    publish(&infra.brokers, &records).await;

    let dir = std::env::temp_dir().join(unique("shadowctl-record"));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("tap.toml");
    // A tap's own file: its [tap] section is not record's business and is left alone.
    std::fs::write(
        &config,
        format!(
            "[tap]\nlisten = \"127.0.0.1:0\"\n\n[topics]\nrequests = \"{}\"\nresponses = \"{}\"\n",
            topics.requests, topics.responses
        ),
    )
    .unwrap();
    let out = dir.join("window.avro");
    let (from_text, to_text) = (format_ms(from), format_ms(to));
    let args = [
        "--config",
        config.to_str().unwrap(),
        "--from",
        &from_text,
        "--to",
        &to_text,
        "--route",
        "/items/{id}",
        "--method",
        "get",
        "-o",
        out.to_str().unwrap(),
    ];
    let output = record(&args, &[("SHADOWDIFF_KAFKA_BROKERS", &infra.brokers)]).await;
    let (stdout, _) = expect_code(&output, 0, "record");
    let stdout = anstream::adapter::strip_str(&stdout).to_string();
    let recorded = format!("recorded {} exchanges into {}", expected.len(), out.display());
    let unanswered = format!("requests without a primary response, not recorded: 1 ({run}-10)");
    for line in [
        recorded.as_str(),
        "50 requests in the window",
        "left out: 25 by --route/--method, 0 by --sample-percent",
        unanswered.as_str(),
        "records skipped as unreadable: 1",
        "requests bad_marker: 1 (first at partition",
    ] {
        assert!(stdout.contains(line), "{line:?} missing from:\n{stdout}");
    }
    let written: Vec<String> = recording::read(&out).unwrap().map(|r| r.unwrap().request_id().to_owned()).collect();
    assert_eq!(written, expected);
    assert_eq!(expected.len(), 24, "even i below 50, less i = 10");

    // The topics come from the environment too, and a missing one is a refusal.
    let missing =
        [("SHADOWDIFF_KAFKA_BROKERS", infra.brokers.as_str()), ("SHADOWDIFF_TOPICS_REQUESTS", "no.such.topic")];
    let output = record(&["--from", &from_text, "--to", &to_text, "-o", out.to_str().unwrap()], &missing).await;
    let (_, stderr) = expect_code(&output, 3, "unknown topic");
    assert!(stderr.contains("topic no.such.topic does not exist"), "{stderr}");

    let output = record(&["--from", &to_text, "--to", &from_text, "-o", out.to_str().unwrap()], &[]).await;
    let (_, stderr) = expect_code(&output, 3, "a window that ends before it starts");
    assert!(stderr.contains("the start must come first"), "{stderr}");

    let output =
        record(&["--from", "2h", "--to", "1h", "--config", "/nonexistent/tap.toml", "-o", "x.avro"], &[]).await;
    expect_code(&output, 3, "an unreadable config file");
    assert_written_once(&out, expected.len());
    let _ = std::fs::remove_dir_all(&dir);
}

/// The failed runs left the first recording as it was.
fn assert_written_once(path: &Path, exchanges: usize) {
    assert_eq!(recording::read(path).unwrap().count(), exchanges);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_without_brokers_is_unavailable() {
    let closed = ClosedPort::new();
    let brokers = closed.addr().to_string();
    let dir = std::env::temp_dir().join(unique("shadowctl-record-down"));
    let out = dir.join("window.avro");
    let output =
        record(&["--from", "2h", "--to", "1h", "-o", out.to_str().unwrap()], &[("SHADOWDIFF_KAFKA_BROKERS", &brokers)])
            .await;
    let (_, stderr) = expect_code(&output, 4, "no broker");
    assert!(stderr.contains("reading the window from the brokers"), "{stderr}");
    assert!(!out.exists());
}

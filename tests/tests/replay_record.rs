//! Recording a window of traffic from a real broker (`shadowdiff_replay::read_window`) and
//! keeping it as an Avro file: exactly the window's exchanges come out, each with the
//! primary's answer, filters and samples hold, unreadable records are counted, and a stock
//! Avro reader (Python's fastavro) opens the file, which holds no clear secret.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;

use base64::Engine;
use serde_json::Value;
use shadowdiff_core::event::now_ms;
use shadowdiff_core::redact::{Redactor, Rules, Sealer};
use shadowdiff_core::{CapturedBody, ErrorKind, EventCodec, Header, RequestEvent, RequestId, ResponseEvent, Role};
use shadowdiff_replay::{ReadOptions, Readout, Recorded, SkipReason, Topic, Window, read_window, recording};
use shadowdiff_runtime::kafka::KafkaConfig;
use shadowdiff_tests::infra::Infra;
use shadowdiff_tests::manifests::repo;
use shadowdiff_tests::replay::{Record, ReplayTopics, primary, publish, request, response};
use shadowdiff_tests::unique;

const SEAL_KEY: [u8; 32] = *b"replay-test-seal-key-0123456789a";

const ROUTES: [(&str, &str); 3] = [("/items/{id}", "/items/"), ("/search", "/search"), ("/carts/{id}", "/carts/")];

/// The request of exchange `i` of a test: its route by `i % 3`, POST when `i % 5 == 0`.
fn nth_request(run: &str, tag: &str, i: i64, timestamp_ms: i64) -> RequestEvent {
    let (route, path) = ROUTES[usize::try_from(i % 3).unwrap()];
    let path = if route.contains("{id}") { format!("{path}{i}") } else { path.to_owned() };
    let method = if i % 5 == 0 { "POST" } else { "GET" };
    request(&format!("{run}-{tag}-{i:04}"), timestamp_ms, method, route, &path)
}

/// The records of a request and its primary's answer; with `shadows`, a secondary's and
/// a candidate's answers too, which a recording must never take for the primary's.
fn exchange_records(topics: &ReplayTopics, request: &RequestEvent, shadows: bool) -> Vec<Record> {
    let mut records = vec![Record::request(&topics.requests, request)];
    if shadows {
        // Published ahead of the primary's, so a reader that took the first answer would fail.
        records.push(Record::response(&topics.responses, &response(request, Role::Secondary, "v1-baseline")));
        records.push(Record::response(&topics.responses, &response(request, Role::Candidate, "v2")));
    }
    records.push(Record::response(&topics.responses, &primary(request)));
    records
}

/// A fixed shuffle, so events reach the broker out of time order as from several taps.
fn shuffle<T>(items: &mut [T]) {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in (1..items.len()).rev() {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        items.swap(i, usize::try_from((state >> 33) % (i as u64 + 1)).unwrap());
    }
}

async fn read(brokers: &str, topics: &ReplayTopics, window: &Window) -> Readout {
    let kafka = KafkaConfig { brokers: brokers.to_owned(), ..KafkaConfig::default() };
    read_window(&kafka, &topics.config(), window, &ReadOptions::default())
        .await
        .unwrap_or_else(|e| panic!("read the window: {e}"))
}

fn ids(exchanges: &[Recorded]) -> Vec<String> {
    exchanges.iter().map(|e| e.request_id().to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_exactly_the_windows_exchanges_each_with_the_primarys_answer() {
    let infra = Infra::get().await;
    let topics = ReplayTopics::create(&infra.brokers, 3).await;
    let run = unique("win");
    // 1,000 requests 50 ms apart fill [from, to) exactly: the first at `from`, the last 50 ms
    // before `to`. 300 come before it (the last 1 ms before `from`, the earliest minutes
    // before) and 300 after (the first at `to`).
    let from = now_ms() - 120_000;
    let to = from + 50_000;
    let mut published = BTreeMap::new();
    let mut records = Vec::new();
    let mut expected = Vec::new();
    for i in 0..1_000 {
        let request = nth_request(&run, "in", i, from + i * 50);
        records.extend(exchange_records(&topics, &request, i % 3 == 0));
        expected.push(request.request_id.clone());
        published.insert(request.request_id.clone(), request);
    }
    for i in 0..300 {
        records.extend(exchange_records(&topics, &nth_request(&run, "before", i, from - 1 - i * 1_000), i % 3 == 0));
        records.extend(exchange_records(&topics, &nth_request(&run, "after", i, to + i * 100), i % 3 == 0));
    }
    // In the window, but the primary's answer never reached the broker (only a shadow's).
    let mut unanswered = Vec::new();
    for i in 0..5 {
        let request = nth_request(&run, "lost", i, from + 25 + i * 1_000);
        records.push(Record::request(&topics.requests, &request));
        records.push(Record::response(&topics.responses, &response(&request, Role::Candidate, "v2")));
        unanswered.push(request.request_id);
    }
    shuffle(&mut records);
    publish(&infra.brokers, &records).await;

    let readout = read(&infra.brokers, &topics, &Window::new(from, to).unwrap()).await;
    let report = &readout.report;
    eprintln!("{report:?}");
    assert_eq!(ids(&readout.exchanges), expected, "exactly the window's requests, in timestamp order");
    for exchange in &readout.exchanges {
        assert_eq!(exchange.request, published[exchange.request_id()], "the request as published");
        assert_eq!(exchange.primary, primary(&exchange.request), "the primary's answer, not a shadow's");
        assert_eq!(exchange.primary.role, Role::Primary);
    }
    assert!(readout.exchanges.windows(2).all(|w| w[0].timestamp_ms() < w[1].timestamp_ms()));
    let missing: Vec<&str> = readout.unanswered.iter().map(|r| r.request_id.as_str()).collect();
    assert_eq!(missing, unanswered, "a request without the primary's answer is reported, not dropped");
    assert_eq!((report.in_window, report.filtered, report.sampled_out, report.over_limit), (1_005, 0, 0, 0));
    assert_eq!(report.duplicates, 0);
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    assert!(report.requests_read >= 1_005 && report.requests_read <= 1_605, "{}", report.requests_read);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_methods_and_a_sticky_sample_select_the_same_ids_every_time() {
    let infra = Infra::get().await;
    let topics = ReplayTopics::create(&infra.brokers, 2).await;
    let run = unique("filter");
    let from = now_ms() - 60_000;
    let to = from + 30_000;
    let mut records = Vec::new();
    let mut all = Vec::new();
    for i in 0..300 {
        let request = nth_request(&run, "in", i, from + i * 100);
        records.extend(exchange_records(&topics, &request, false));
        all.push((i, request.request_id));
    }
    for i in 0..30 {
        records.extend(exchange_records(&topics, &nth_request(&run, "out", i, to + i), false));
    }
    publish(&infra.brokers, &records).await;
    let window = Window::new(from, to).unwrap();
    let expect = |keep: &dyn Fn(i64) -> bool| -> Vec<String> {
        all.iter().filter(|(i, _)| keep(*i)).map(|(_, id)| id.clone()).collect()
    };

    let items = read(&infra.brokers, &topics, &window.clone().with_routes(["/items/{id}"])).await;
    assert_eq!(ids(&items.exchanges), expect(&|i| i % 3 == 0));
    assert_eq!(items.report.filtered, 200);
    let posts = read(&infra.brokers, &topics, &window.clone().with_methods(["post"]).unwrap()).await;
    assert_eq!(ids(&posts.exchanges), expect(&|i| i % 5 == 0), "methods in any case");
    let both = window.clone().with_routes(["/items/{id}", "/search"]).with_methods(["GET"]).unwrap();
    let both = read(&infra.brokers, &topics, &both).await;
    assert_eq!(ids(&both.exchanges), expect(&|i| i % 3 != 2 && i % 5 != 0));

    let sample = window.clone().with_sample_percent(30.0).unwrap();
    let first = ids(&read(&infra.brokers, &topics, &sample).await.exchanges);
    let again = ids(&read(&infra.brokers, &topics, &sample).await.exchanges);
    let sampled: Vec<String> = all
        .iter()
        .map(|(_, id)| id.clone())
        .filter(|id| RequestId::parse(id).unwrap().sample_bucket() < 3_000)
        .collect();
    assert_eq!(first, sampled, "the ids whose bucket is in the first 30%");
    assert_eq!(again, first, "the same ids on every run");
    assert!(first.len() > 45 && first.len() < 135, "about 30% of 300: {}", first.len());

    let limited = read(&infra.brokers, &topics, &sample.clone().with_limit(20).unwrap()).await;
    assert_eq!(ids(&limited.exchanges), first[..20], "the earliest 20 of the sample");
    assert_eq!(limited.report.over_limit, u64::try_from(first.len() - 20).unwrap());
    assert_eq!(limited.report.sampled_out, u64::try_from(300 - first.len()).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_records_are_skipped_and_counted_not_fatal() {
    let infra = Infra::get().await;
    let topics = ReplayTopics::create(&infra.brokers, 2).await;
    let run = unique("bad");
    let from = now_ms() - 60_000;
    let to = from + 20_000;
    let codec = EventCodec::new().unwrap();
    // First on its partition: the read of the answers stops once every kept request has
    // one, so a bad record published after them all might never be reached; one ahead of
    // them always is, as both partitions hold answers.
    let mut records = vec![Record::raw(&topics.responses, None, Some(b"no key, no event"), from)];
    let mut expected = Vec::new();
    for i in 0..20 {
        let request = nth_request(&run, "in", i, from + i * 1_000);
        if i == 3 {
            // An unreadable record keyed to a kept request, ahead of its real answer.
            records.push(Record::raw(&topics.responses, Some(&request.request_id), Some(b"garbage, no event"), from));
        }
        records.extend(exchange_records(&topics, &request, false));
        expected.push(request.request_id);
    }
    let at = from + 500;
    let valid = codec.encode(&nth_request(&run, "cut", 0, at)).unwrap();
    let unknown_schema = [&[0xC3, 0x01][..], &[0xAB; 8], b"datum"].concat();
    let too_long = "a".repeat(shadowdiff_core::request_id::MAX_LEN + 1);
    let bad_id = codec.encode(&request(&too_long, at, "GET", "/search", "/search")).unwrap();
    records.extend([
        Record::raw(&topics.requests, Some("k1"), Some(b"not an event"), at),
        Record::raw(&topics.requests, None, Some(b"{\"json\":true}"), at),
        Record::raw(&topics.requests, Some("k2"), None, at),
        Record::raw(&topics.requests, Some("k3"), Some(&unknown_schema), at),
        Record::raw(&topics.requests, Some("k4"), Some(&valid[..valid.len() / 2]), at),
        Record::raw(&topics.requests, Some(&too_long), Some(&bad_id), at),
    ]);
    publish(&infra.brokers, &records).await;

    let readout = read(&infra.brokers, &topics, &Window::new(from, to).unwrap()).await;
    assert_eq!(ids(&readout.exchanges), expected, "every readable exchange, despite the others");
    assert!(readout.unanswered.is_empty());
    let skipped: BTreeMap<(Topic, &str), u64> =
        readout.report.skipped.iter().map(|s| ((s.topic, s.reason.as_str()), s.count)).collect();
    let want = BTreeMap::from([
        ((Topic::Requests, "bad_marker"), 2),
        ((Topic::Requests, "no_payload"), 1),
        ((Topic::Requests, "unknown_schema"), 1),
        ((Topic::Requests, "malformed"), 1),
        ((Topic::Requests, "invalid_request_id"), 1),
        ((Topic::Responses, "bad_marker"), 2),
    ]);
    assert_eq!(skipped, want, "{:#?}", readout.report.skipped);
    assert_eq!(readout.report.skipped_total(), 8);
    let marker = readout.report.skipped.iter().find(|s| s.reason == SkipReason::Undecodable("bad_marker")).unwrap();
    assert!(marker.first_error.contains("single-object marker"), "{}", marker.first_error);
}

/// Runs fastavro over `path`: its metadata line, then one JSON object per record.
fn fastavro(path: &std::path::Path) -> (Value, Vec<Value>) {
    let python = repo().join(".local/avro-tools/venv/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: run deploy/local/fastavro.sh (deploy/local/test.sh does) to install fastavro",
        python.display()
    );
    let script = repo().join("tests/tests/replay_record/read_recording.py");
    let output = Command::new(&python).arg(&script).arg(path).output().unwrap();
    assert!(output.status.success(), "fastavro failed:\n{}", String::from_utf8_lossy(&output.stderr));
    let mut lines = output.stdout.split(|b| *b == b'\n').filter(|l| !l.is_empty());
    let header = serde_json::from_slice(lines.next().expect("a metadata line")).unwrap();
    (header, lines.map(|l| serde_json::from_slice(l).unwrap()).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_round_trips_through_fastavro_and_our_own_reader() {
    let infra = Infra::get().await;
    let topics = ReplayTopics::create(&infra.brokers, 3).await;
    let run = unique("file");
    let from = now_ms() - 60_000;
    let to = from + 30_000;
    let rules = Rules {
        headers: vec!["authorization".into(), "cookie".into()],
        query_params: vec!["token".into()],
        sealed_headers: vec!["authorization".into()],
        ..Rules::default()
    };
    let redactor = Redactor::new(b"replay-test-hmac-key", rules, Some(Sealer::new(&SEAL_KEY).unwrap()));
    let mut records = Vec::new();
    for i in 0..200 {
        let mut request = nth_request(&run, "in", i, from + i * 100);
        let mut answer = primary(&request);
        match i % 4 {
            0 => {
                // Redacted as the tap does before publishing: the credential digested and
                // sealed, the cookie and the query's token digested.
                request.headers.push(Header::new("authorization", format!("Bearer SECRET-TOKEN-{i}")));
                request.headers.push(Header::new("cookie", "sid=SECRET-COOKIE"));
                request.query = Some(redactor.query("token=SECRET-QUERY&page=2"));
                redactor.headers(&mut request.headers);
                request.body = CapturedBody::capture(br#"{"qty":2}"#, 1024);
            }
            1 => {
                request.query = None;
                request.route_template = None;
                answer.body = CapturedBody::capture(&[b'x'; 5_000], 64); // truncated capture
            }
            2 => {
                answer.status = None;
                answer.error = Some(ErrorKind::Timeout);
                answer.body = CapturedBody::empty();
            }
            _ => answer.headers.push(Header::new("set-cookie", "hmac:3f2a")),
        }
        records.push(Record::request(&topics.requests, &request));
        records.push(Record::response(&topics.responses, &answer));
    }
    publish(&infra.brokers, &records).await;
    let window = Window::new(from, to).unwrap().with_methods(["GET", "POST"]).unwrap();
    let readout = read(&infra.brokers, &topics, &window).await;
    assert_eq!(readout.exchanges.len(), 200);

    let dir = std::env::temp_dir().join(unique("recording"));
    std::fs::create_dir_all(&dir).unwrap();
    let path: PathBuf = dir.join("window.avro");
    assert_eq!(recording::write(&path, &window, &readout.exchanges).unwrap(), 200);

    let (header, rows) = fastavro(&path);
    assert_eq!(header["codec"], "null");
    assert_eq!(header["schema_name"], "dev.shadowdiff.recording.RecordedExchange");
    assert_eq!(header["recording"]["format"], 1);
    assert_eq!(header["recording"]["window"]["from_ms"], from);
    assert_eq!(header["recording"]["window"]["to_ms"], to);
    assert_eq!(header["recording"]["window"]["methods"], serde_json::json!(["GET", "POST"]));
    assert_eq!(rows.len(), 200);
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let headers =
        |headers: &[Header]| -> Value { headers.iter().map(|h| serde_json::json!([h.name, b64(&h.value)])).collect() };
    for (row, exchange) in rows.iter().zip(&readout.exchanges) {
        let (request, answer): (&RequestEvent, &ResponseEvent) = (&exchange.request, &exchange.primary);
        let id = request.request_id.as_str();
        assert_eq!(row["request_id"], id);
        assert_eq!(row["timestamp_ms"], request.timestamp_ms, "{id}");
        assert_eq!(row["method"], request.method, "{id}");
        assert_eq!(row["path"], request.path, "{id}");
        assert_eq!(row["query"], serde_json::json!(request.query), "{id}");
        assert_eq!(row["route_template"], serde_json::json!(request.route_template), "{id}");
        assert_eq!(row["request_headers"], headers(&request.headers), "{id}");
        assert_eq!(row["request_body"], b64(&request.body.bytes), "{id}");
        assert_eq!(row["primary_request_id"], id);
        assert_eq!(row["primary_role"], "PRIMARY");
        assert_eq!(row["primary_status"], serde_json::json!(answer.status), "{id}");
        assert_eq!(row["primary_error"], serde_json::json!(answer.error.map(|_| "TIMEOUT")), "{id}");
        assert_eq!(row["primary_headers"], headers(&answer.headers), "{id}");
        assert_eq!(row["primary_body_sha256"], answer.body.sha256_hex(), "{id}");
        assert_eq!(row["primary_body_truncated"], answer.body.truncated, "{id}");
        assert_eq!(row["primary_latency_us"], answer.latency_us, "{id}");
    }
    // No clear secret in the file: the credential is a digest and a sealed copy, which only
    // the seal key opens, as a replay will.
    let bytes = std::fs::read(&path).unwrap();
    assert!(!bytes.windows(7).any(|w| w == b"SECRET-"), "a clear secret in the recording");
    let opener = Sealer::new(&SEAL_KEY).unwrap();
    let mut sealed = BTreeSet::new();
    for row in &rows {
        let header = |name: &str| -> Option<Vec<u8>> {
            let found = row["request_headers"].as_array().unwrap().iter().find(|h| h[0] == name)?;
            Some(base64::engine::general_purpose::STANDARD.decode(found[1].as_str().unwrap()).unwrap())
        };
        let Some(seal) = header("x-shadowdiff-sealed-authorization") else { continue };
        assert!(header("authorization").unwrap().starts_with(b"hmac-sha256:"));
        assert!(header("cookie").unwrap().starts_with(b"hmac-sha256:"));
        let id = row["request_id"].as_str().unwrap();
        let i: u32 = id.rsplit('-').next().unwrap().parse().unwrap();
        assert_eq!(opener.open("authorization", &seal).unwrap(), format!("Bearer SECRET-TOKEN-{i}").into_bytes());
        assert!(Sealer::new(&[9; 32]).unwrap().open("authorization", &seal).is_err(), "another key opens nothing");
        sealed.insert(id);
    }
    assert_eq!(sealed.len(), 50, "every sealed credential, as published");

    let mut ours = recording::read(&path).unwrap();
    assert_eq!(ours.window(), Some(&window));
    let back: Vec<Recorded> = ours.by_ref().collect::<Result<_, _>>().unwrap();
    assert_eq!(back, readout.exchanges, "our reader gives back what was written");
    let _ = std::fs::remove_dir_all(&dir);
}

//! The correlator on crafted events, against the real broker and ClickHouse: the exact rows
//! it writes to `exchanges`, `differences` and `samples` for each kind of difference, each
//! diff rule, each noise pattern, a leg that never comes, and more open exchanges than its
//! state may hold.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read as _;
use std::time::{Duration, Instant};

use clickhouse::Row;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use shadowdiff_core::event::header_value;
use shadowdiff_core::{ResponseEvent, Role};
use shadowdiff_tests::correlator::{CorrelatorUnderTest, Exchange, Reply, STAGE};
use shadowdiff_tests::infra::Infra;
use shadowdiff_tests::{eventually, unique};

const DEADLINE: Duration = Duration::from_secs(30);
const LATE: &str = r#"shadowdiff_correlator_events_ignored_total{reason="late"}"#;
const EVICTED: &str = "shadowdiff_correlator_evicted_total";

#[derive(Debug, Clone, Row, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
struct ExchangeSummary {
    request_id: String,
    deployment: String,
    route: String,
    method: String,
    role: String,
    outcome: String,
    primary_status: u16,
    shadow_status: u16,
    primary_error: String,
    shadow_error: String,
    latency_delta_us: i64,
    status_differs: u8,
    body_differs: u8,
    differences: u32,
    noise: u32,
    stage: String,
}

#[derive(Debug, Clone, Row, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
struct DifferenceSummary {
    request_id: String,
    deployment: String,
    path: String,
    kind: String,
    role: String,
    primary_value: String,
    shadow_value: String,
    noise: u8,
}

#[derive(Debug, Clone, Row, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
struct SampleSummary {
    request_id: String,
    deployment: String,
    role: String,
    status: u16,
    content_type: String,
    body: String,
    body_length: u64,
    truncated: u8,
}

/// Every row of a table, sorted as the summaries sort (not by ClickHouse's collation).
async fn rows<T>(correlator: &CorrelatorUnderTest, sql: &str) -> Result<Vec<T>, String>
where
    T: clickhouse::RowOwned + clickhouse::RowRead + Ord,
{
    let mut rows: Vec<T> = correlator
        .clickhouse
        .query(sql)
        .fetch_all()
        .await
        .map_err(|e| format!("{sql}: {e}; correlator running: {}", correlator.running()))?;
    rows.sort();
    Ok(rows)
}

async fn exchanges(correlator: &CorrelatorUnderTest) -> Result<Vec<ExchangeSummary>, String> {
    rows(
        correlator,
        "SELECT request_id, deployment, route, method, role, outcome, primary_status, shadow_status, \
         primary_error, shadow_error, latency_delta_us, status_differs, body_differs, differences, noise, stage \
         FROM exchanges FINAL",
    )
    .await
}

async fn differences(correlator: &CorrelatorUnderTest) -> Result<Vec<DifferenceSummary>, String> {
    rows(
        correlator,
        "SELECT request_id, deployment, path, kind, role, primary_value, shadow_value, noise FROM differences FINAL",
    )
    .await
}

async fn samples(correlator: &CorrelatorUnderTest) -> Result<Vec<SampleSummary>, String> {
    rows(
        correlator,
        "SELECT request_id, deployment, role, status, content_type, body, body_length, truncated FROM samples FINAL",
    )
    .await
}

/// Waits until `exchanges` holds exactly `n` rows, and returns them.
async fn wait_for_exchanges(correlator: &CorrelatorUnderTest, n: usize, what: &str) -> Vec<ExchangeSummary> {
    eventually(what, DEADLINE, || async {
        let found = exchanges(correlator).await?;
        if found.len() == n { Ok(found) } else { Err(format!("{} rows: {found:#?}", found.len())) }
    })
    .await
}

/// A difference one shadow leg must show: kind, path, both values, noise.
#[derive(Debug, Clone)]
struct Diff {
    kind: &'static str,
    path: &'static str,
    primary: String,
    shadow: String,
    noise: bool,
}

fn diff(kind: &'static str, path: &'static str, primary: &str, shadow: &str) -> Diff {
    Diff { kind, path, primary: primary.to_owned(), shadow: shadow.to_owned(), noise: false }
}

fn noise(kind: &'static str, path: &'static str, primary: &str, shadow: &str) -> Diff {
    Diff { noise: true, ..diff(kind, path, primary, shadow) }
}

/// One crafted exchange and, per shadow deployment, the differences it must show.
struct Case {
    exchange: Exchange,
    expected: Vec<(&'static str, Vec<Diff>)>,
}

/// An exchange with one candidate, `v2`, answering `candidate` 250 µs slower than the primary.
fn case(prefix: &str, name: &str, route: &str, primary: Reply, candidate: Reply, diffs: Vec<Diff>) -> Case {
    let exchange =
        Exchange::new(&format!("{prefix}-{name}"), route, primary).candidate("v2", candidate.latency_us(1250));
    Case { exchange, expected: vec![("v2", diffs)] }
}

fn leg<'a>(responses: &'a [ResponseEvent], deployment: &str) -> &'a ResponseEvent {
    responses.iter().find(|r| r.deployment == deployment).unwrap_or_else(|| panic!("no leg {deployment}"))
}

fn status(leg: &ResponseEvent) -> u16 {
    leg.status.map_or(0, |s| u16::try_from(s).unwrap())
}

/// The `exchanges` row of a complete comparison with these differences.
fn complete_row(exchange: &Exchange, deployment: &str, diffs: &[Diff]) -> ExchangeSummary {
    let responses = exchange.responses();
    let (primary, shadow) = (leg(&responses, "primary"), leg(&responses, deployment));
    ExchangeSummary {
        request_id: exchange.id().to_owned(),
        deployment: deployment.to_owned(),
        route: exchange.request.route().to_owned(),
        method: "GET".to_owned(),
        role: shadow.role.as_str().to_owned(),
        outcome: "complete".to_owned(),
        primary_status: status(primary),
        shadow_status: status(shadow),
        primary_error: String::new(),
        shadow_error: String::new(),
        latency_delta_us: shadow.latency_us - primary.latency_us,
        status_differs: u8::from(diffs.iter().any(|d| d.kind == "status")),
        body_differs: u8::from(diffs.iter().any(|d| d.kind != "status" && !d.path.starts_with("header:"))),
        differences: u32::try_from(diffs.len()).unwrap(),
        noise: u32::try_from(diffs.iter().filter(|d| d.noise).count()).unwrap(),
        stage: STAGE.to_owned(),
    }
}

/// The `exchanges` row of a candidate leg the mirror expected and that never came.
fn missing_row(exchange: &Exchange, deployment: &str) -> ExchangeSummary {
    ExchangeSummary {
        deployment: deployment.to_owned(),
        role: "candidate".to_owned(),
        outcome: "missing_shadow".to_owned(),
        shadow_status: 0,
        shadow_error: "missing".to_owned(),
        latency_delta_us: 0,
        ..complete_row(exchange, "v2", &[])
    }
}

/// The `samples` row of one leg: its body with the Content-Encoding undone.
fn sample_row(leg: &ResponseEvent) -> SampleSummary {
    let header = |name| header_value(&leg.headers, name).map(|v| String::from_utf8_lossy(v).into_owned());
    let body = if header("content-encoding").as_deref() == Some("gzip") {
        let mut plain = String::new();
        flate2::read::GzDecoder::new(leg.body.bytes.as_slice()).read_to_string(&mut plain).unwrap();
        plain
    } else {
        String::from_utf8_lossy(&leg.body.bytes).into_owned()
    };
    SampleSummary {
        request_id: leg.request_id.clone(),
        deployment: leg.deployment.clone(),
        role: leg.role.as_str().to_owned(),
        status: status(leg),
        content_type: header("content-type").unwrap_or_default(),
        body,
        body_length: u64::try_from(leg.body.length).unwrap(),
        truncated: u8::from(leg.body.truncated),
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

const RULES: &str = r#"
window_ms = 10000
flush_interval_ms = 250
samples_per_route_minute = 100

[correlator.default_rules]
ignore_headers = ["etag"]

[[correlator.routes]]
template = "/items"
rules = { keyed_arrays = [{ path = "items", key = "id" }], tolerance = { absolute = 0.01 }, ignore_paths = ["items[*].updated_at"] }

[[correlator.routes]]
template = "/list"
rules = { ignore_paths = ["items[*].updated_at"] }
"#;

/// Every kind of difference on crafted bodies (default rules, route `/kinds`).
fn kinds(p: &str) -> Vec<Case> {
    let binary = (vec![0_u8, 1, 2, 0xff], vec![0_u8, 1, 2, 0xfe]);
    let long = |n: u8| format!(r#"{{"note":"{}","n":{n}}}"#, "a".repeat(40));
    vec![
        case(
            p,
            "value",
            "/kinds",
            Reply::json(r#"{"a":1,"b":"x"}"#),
            Reply::json(r#"{"a":2,"b":"x"}"#),
            vec![diff("changed_value", "a", "1", "2")],
        ),
        case(
            p,
            "type",
            "/kinds",
            Reply::json(r#"{"a":1}"#),
            Reply::json(r#"{"a":"1"}"#),
            vec![diff("changed_type", "a", "1", r#""1""#)],
        ),
        case(
            p,
            "missing",
            "/kinds",
            Reply::json(r#"{"a":{"b":1,"c":[2]}}"#),
            Reply::json(r#"{"a":{"b":1}}"#),
            vec![diff("missing_field", "a.c", "[2]", "")],
        ),
        case(
            p,
            "extra",
            "/kinds",
            Reply::json(r#"{"a":1}"#),
            Reply::json(r#"{"a":1,"z":{"y":true}}"#),
            vec![diff("extra_field", "z", "", r#"{"y":true}"#)],
        ),
        case(
            p,
            "length",
            "/kinds",
            Reply::json(r#"{"xs":[1,2]}"#),
            Reply::json(r#"{"xs":[1,2,3]}"#),
            vec![diff("array_length", "xs", "2", "3")],
        ),
        case(
            p,
            "order",
            "/kinds",
            Reply::json(r#"{"xs":[1,2,3]}"#),
            Reply::json(r#"{"xs":[3,1,2]}"#),
            vec![diff("order_only", "xs", "[1,2,3]", "[3,1,2]")],
        ),
        case(
            p,
            "status",
            "/kinds",
            Reply::json(r#"{"a":1}"#),
            Reply::json(r#"{"a":1}"#).status(503),
            vec![diff("status", "status", "200", "503")],
        ),
        // etag is ignored by `[correlator.default_rules]`, date by the built-in list; the rest count.
        case(
            p,
            "headers",
            "/kinds",
            Reply::json(r#"{"a":1}"#)
                .header("x-version", "1")
                .header("cache-control", "max-age=60")
                .header("etag", "\"p\"")
                .header("date", "Mon, 24 Nov 2025 10:00:00 GMT"),
            Reply::json(r#"{"a":1}"#)
                .header("x-version", "2")
                .header("etag", "\"c\"")
                .header("date", "Mon, 24 Nov 2025 10:00:01 GMT"),
            vec![
                diff("missing_field", "header:cache-control", "max-age=60", ""),
                diff("changed_value", "header:x-version", "1", "2"),
            ],
        ),
        case(
            p,
            "text",
            "/kinds",
            Reply::new("text/plain; charset=utf-8", "one\ntwo\nthree\n"),
            Reply::new("text/plain; charset=utf-8", "one\n2\nthree\n"),
            vec![diff("text_lines", "body", "two\n", "2\n")],
        ),
        case(
            p,
            "binary",
            "/kinds",
            Reply::new("application/octet-stream", binary.0.clone()),
            Reply::new("application/octet-stream", binary.1.clone()),
            vec![diff("body_hash", "body", &sha256_hex(&binary.0), &sha256_hex(&binary.1))],
        ),
        // Captures cut at 16 bytes: only the full bodies' hashes can tell them apart.
        case(
            p,
            "truncated",
            "/kinds",
            Reply::json(&long(1)).capture_cap(16),
            Reply::json(&long(2)).capture_cap(16),
            vec![diff("body_hash", "body", &sha256_hex(long(1).as_bytes()), &sha256_hex(long(2).as_bytes()))],
        ),
        // Declared JSON, does not parse: flagged, then compared as text.
        case(
            p,
            "invalid",
            "/kinds",
            Reply::json(r#"{"a":1}"#),
            Reply::json(r#"{"a":1"#),
            vec![
                diff("invalid_json", "body", "valid", "invalid"),
                diff("text_lines", "body", r#"{"a":1}"#, r#"{"a":1"#),
            ],
        ),
        // Two encodings of one document are equal; a change inside the gzip is still found.
        case(
            p,
            "gzip",
            "/kinds",
            Reply::json(r#"{"a":1,"xs":[1,2]}"#).gzip(),
            Reply::json(r#"{"a":1,"xs":[1,2]}"#),
            vec![],
        ),
        case(
            p,
            "gzip-changed",
            "/kinds",
            Reply::json(r#"{"a":1}"#).gzip(),
            Reply::json(r#"{"a":2}"#),
            vec![diff("changed_value", "a", "1", "2")],
        ),
    ]
}

/// The per-route rules: keyed arrays, tolerance and a wildcard ignore.
fn rules(p: &str) -> Vec<Case> {
    let items = |a: &str, b: &str| format!(r#"{{"items":[{a},{b}]}}"#);
    let (seven, eight) = (r#"{"id":7,"price":10}"#, r#"{"id":8,"price":20}"#);
    vec![
        // Keyed by id on /items: order does not count, updated_at is ignored, totals within 0.01 are equal.
        case(
            p,
            "keyed-shuffled",
            "/items",
            Reply::json(
                r#"{"items":[{"id":7,"price":10,"updated_at":"t1"},{"id":8,"price":20,"updated_at":"t1"}],"total":30}"#,
            ),
            Reply::json(
                r#"{"items":[{"id":8,"price":20,"updated_at":"t2"},{"id":7,"price":10,"updated_at":"t2"}],"total":30.004}"#,
            ),
            vec![],
        ),
        case(
            p,
            "keyed-price",
            "/items",
            Reply::json(&items(seven, eight)),
            Reply::json(&items(eight, r#"{"id":7,"price":11}"#)),
            vec![diff("changed_value", "items[id=7].price", "10", "11")],
        ),
        case(
            p,
            "keyed-gone",
            "/items",
            Reply::json(&items(seven, eight)),
            Reply::json(&items(eight, r#"{"id":9}"#)),
            vec![
                diff("missing_field", "items[id=7]", seven, ""),
                diff("extra_field", "items[id=9]", "", r#"{"id":9}"#),
            ],
        ),
        case(
            p,
            "tolerance-beyond",
            "/items",
            Reply::json(r#"{"total":30}"#),
            Reply::json(r#"{"total":30.02}"#),
            vec![diff("changed_value", "total", "30", "30.02")],
        ),
        // The same shuffle on a route without those rules is an order-only difference.
        case(
            p,
            "unkeyed",
            "/kinds",
            Reply::json(&items(seven, eight)),
            Reply::json(&items(eight, seven)),
            vec![diff("order_only", "items", &format!("[{seven},{eight}]"), &format!("[{eight},{seven}]"))],
        ),
        // The wildcard ignore on an ordered array: updated_at never counts, id still does.
        case(
            p,
            "wildcard",
            "/list",
            Reply::json(r#"{"items":[{"id":1,"updated_at":"t1"},{"id":2,"updated_at":"t1"}]}"#),
            Reply::json(r#"{"items":[{"id":1,"updated_at":"t2"},{"id":3,"updated_at":"t2"}]}"#),
            vec![diff("changed_value", "items[1].id", "2", "3")],
        ),
    ]
}

/// Noise: the secondary shows what the candidate shows.
fn noise_cases(p: &str) -> Vec<Case> {
    let uuids = [
        "0b6b6c2e-4f64-4a0e-9d0c-1f1d2b3c4d5e",
        "5d1e7f3a-9b2c-4c8d-8e6f-0a1b2c3d4e5f",
        "c3a1d2e4-7f8b-4e9a-b1c2-d3e4f5a6b7c8",
    ];
    let body = |uuid: &str, price: u32| format!(r#"{{"price":{price},"request_uuid":"{uuid}"}}"#);
    let quoted = |uuid: &str| format!("\"{uuid}\"");
    let exchange = |name: &str, candidate_price: u32| {
        Exchange::new(&format!("{p}-{name}"), "/noise", Reply::json(&body(uuids[0], 1)))
            .secondary("secondary", Reply::json(&body(uuids[1], 1)))
            .candidate("v2", Reply::json(&body(uuids[2], candidate_price)))
    };
    let uuid_noise = |leg: usize| noise("changed_value", "request_uuid", &quoted(uuids[0]), &quoted(uuids[leg]));
    vec![
        // A random id on every leg: noise for the secondary and the candidate alike.
        Case {
            exchange: exchange("noise-only", 1),
            expected: vec![("secondary", vec![uuid_noise(1)]), ("v2", vec![uuid_noise(2)])],
        },
        // The same, and a price only the candidate changes: that one is a divergence.
        Case {
            exchange: exchange("noise-and-price", 2),
            expected: vec![
                ("secondary", vec![uuid_noise(1)]),
                ("v2", vec![diff("changed_value", "price", "1", "2"), uuid_noise(2)]),
            ],
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_difference_rule_and_noise_pattern_gives_its_exact_rows() {
    let infra = Infra::get().await;
    let correlator = CorrelatorUnderTest::start(&infra, 2, RULES).await;
    let p = unique("x");
    let cases: Vec<Case> = [kinds(&p), rules(&p), noise_cases(&p)].into_iter().flatten().collect();
    for case in &cases {
        correlator.publisher.exchange(&case.exchange).await;
    }

    let (mut want_exchanges, mut want_differences, mut want_samples) = (Vec::new(), Vec::new(), Vec::new());
    for Case { exchange, expected } in &cases {
        let responses = exchange.responses();
        let mut diverged = Vec::new();
        for (deployment, diffs) in expected {
            let row = complete_row(exchange, deployment, diffs);
            if row.role == "candidate" && row.differences > row.noise {
                diverged.push(sample_row(leg(&responses, deployment)));
            }
            want_exchanges.push(row);
            want_differences.extend(diffs.iter().map(|d| DifferenceSummary {
                request_id: exchange.id().to_owned(),
                deployment: (*deployment).to_owned(),
                path: d.path.to_owned(),
                kind: d.kind.to_owned(),
                role: leg(&responses, deployment).role.as_str().to_owned(),
                primary_value: d.primary.clone(),
                shadow_value: d.shadow.clone(),
                noise: u8::from(d.noise),
            }));
        }
        // Divergent exchanges keep the primary's and each divergent candidate's bodies.
        if !diverged.is_empty() {
            want_samples.push(sample_row(leg(&responses, "primary")));
            want_samples.extend(diverged);
        }
    }
    want_exchanges.sort();
    want_differences.sort();
    want_samples.sort();

    let found = wait_for_exchanges(&correlator, want_exchanges.len(), "a row per shadow leg").await;
    for (found, want) in found.iter().zip(&want_exchanges) {
        assert_eq!(found, want);
    }
    let found = differences(&correlator).await.unwrap();
    let by_id =
        |rows: &[DifferenceSummary], id: &str| rows.iter().filter(|r| r.request_id == id).cloned().collect::<Vec<_>>();
    for case in &cases {
        let id = case.exchange.id();
        assert_eq!(by_id(&found, id), by_id(&want_differences, id), "differences of {id}");
    }
    assert_eq!(found.len(), want_differences.len());
    assert_eq!(samples(&correlator).await.unwrap(), want_samples);

    // Spelled out, the verdicts the noise cases exist for.
    let noise_only = found.iter().filter(|d| d.request_id.ends_with("-noise-only")).collect::<Vec<_>>();
    assert!(noise_only.iter().all(|d| d.noise == 1), "{noise_only:#?}");
    let row = |id: &str, deployment: &str| {
        want_exchanges.iter().find(|r| r.request_id == format!("{p}-{id}") && r.deployment == deployment).unwrap()
    };
    assert_eq!((row("noise-only", "v2").differences, row("noise-only", "v2").noise), (1, 1), "not diverged");
    assert_eq!((row("noise-and-price", "v2").differences, row("noise-and-price", "v2").noise), (2, 1), "diverged");

    correlator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leg_that_never_comes_is_missing_after_the_window_and_a_late_one_changes_nothing() {
    let infra = Infra::get().await;
    let window = Duration::from_millis(2000);
    let correlator = CorrelatorUnderTest::start(
        &infra,
        2,
        &format!("window_ms = {}\nflush_interval_ms = 250\n", window.as_millis()),
    )
    .await;
    let exchange = Exchange::new(&unique("expire"), "/kinds", Reply::json(r#"{"a":1}"#))
        .candidate("v2", Reply::json(r#"{"a":1}"#))
        .silent_candidate("v3");
    let published = Instant::now();
    correlator.publisher.exchange(&exchange).await;

    let want = vec![complete_row(&exchange, "v2", &[]), missing_row(&exchange, "v3")];
    let found = wait_for_exchanges(&correlator, 2, "the complete leg and the missing one").await;
    assert!(published.elapsed() >= window, "written after {:?}, before the window passed", published.elapsed());
    assert_eq!(found, want);

    // v3 answers after all, once its exchange is written: counted as late, and ignored.
    let late_before = correlator.metric(LATE).await;
    let late = exchange.shadow_event(Role::Candidate, "v3", &Reply::json(r#"{"a":2}"#));
    correlator.publisher.response(&late).await;
    eventually("the late leg counted", DEADLINE, || async {
        let late = correlator.metric(LATE).await;
        if late > late_before { Ok(()) } else { Err(format!("{LATE} still {late}")) }
    })
    .await;
    let written: u64 = correlator
        .clickhouse
        .query("SELECT count() FROM exchanges WHERE request_id = ?")
        .bind(exchange.id())
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(written, 2, "no row was written again");
    assert_eq!(exchanges(&correlator).await.unwrap(), want);
    assert_eq!(differences(&correlator).await.unwrap(), vec![]);

    // Consumer lag per topic, from librdkafka's statistics: caught up, so 0.
    let lag = format!("shadowdiff_kafka_consumer_lag{{topic=\"{}\"}}", correlator.requests);
    eventually("the consumer-lag gauge", DEADLINE, || async {
        let page = reqwest::get(format!("{}/metrics", correlator.admin_url))
            .await
            .map_err(|e| e.to_string())?
            .text()
            .await
            .map_err(|e| e.to_string())?;
        let line = page.lines().find(|l| l.starts_with(&lag)).ok_or("no lag line yet")?;
        if line.ends_with(" 0") { Ok(()) } else { Err(line.to_owned()) }
    })
    .await;
    correlator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_state_bound_the_oldest_exchanges_are_written_early_and_none_is_lost() {
    let infra = Infra::get().await;
    let window = Duration::from_millis(6000);
    // One partition per topic: each topic is read in publishing order, so once a later
    // exchange is whole, every event published before it has been read.
    let correlator = CorrelatorUnderTest::start(
        &infra,
        1,
        &format!("window_ms = {}\nflush_interval_ms = 250\nmax_open_exchanges = 5\n", window.as_millis()),
    )
    .await;
    let p = unique("bound");
    let whole = |name: &str| {
        Exchange::new(&format!("{p}-{name}"), "/kinds", Reply::json(r#"{"a":1}"#))
            .candidate("v2", Reply::json(r#"{"a":1}"#))
    };
    let open = |name: String| whole(&name).silent_candidate("v3");
    let (warm_up, probe) = (whole("warm-up"), whole("probe"));
    let first: Vec<Exchange> = (0..4).map(|i| open(format!("a{i}"))).collect();
    let second: Vec<Exchange> = (0..5).map(|i| open(format!("b{i}"))).collect();
    let ids = |exchanges: &[Exchange]| exchanges.iter().map(|e| e.id().to_owned()).collect::<Vec<_>>();

    // Whole exchanges are written at once; seeing one proves the correlator is consuming.
    correlator.publisher.exchange(&warm_up).await;
    wait_for_exchanges(&correlator, 1, "the warm-up exchange").await;

    // Four open exchanges, waiting for v3; the probe behind them (five open at most) proves them read.
    let first_published = Instant::now();
    for exchange in &first {
        correlator.publisher.exchange(exchange).await;
    }
    correlator.publisher.exchange(&probe).await;
    wait_for_exchanges(&correlator, 2, "the probe exchange").await;

    // Five more open exchanges: nine open, four over the bound, so the four oldest go early.
    let evicted_before = correlator.metric(EVICTED).await;
    for exchange in &second {
        correlator.publisher.exchange(exchange).await;
    }
    let found = wait_for_exchanges(&correlator, 2 + 2 * first.len(), "the four oldest, written early").await;
    assert!(
        first_published.elapsed() < window,
        "written after {:?}: by their window, not the bound",
        first_published.elapsed()
    );
    let mut written: Vec<String> = found.iter().map(|r| r.request_id.clone()).collect();
    written.dedup();
    let mut want_ids = ids(&first);
    want_ids.extend([warm_up.id().to_owned(), probe.id().to_owned()]);
    want_ids.sort();
    assert_eq!(written, want_ids, "the oldest four and the whole ones; none of the newest five");
    assert_eq!(correlator.metric(EVICTED).await - evicted_before, 4.0);

    // The newest five wait out their window; then every request id has its rows.
    let found = wait_for_exchanges(&correlator, 2 + 2 * (first.len() + second.len()), "every exchange").await;
    let mut want = vec![complete_row(&warm_up, "v2", &[]), complete_row(&probe, "v2", &[])];
    for exchange in first.iter().chain(&second) {
        want.extend([complete_row(exchange, "v2", &[]), missing_row(exchange, "v3")]);
    }
    want.sort();
    assert_eq!(found, want);

    correlator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_evicted_before_its_shadows_came_still_gets_its_rows() {
    let infra = Infra::get().await;
    let correlator =
        CorrelatorUnderTest::start(&infra, 1, "window_ms = 2000\nflush_interval_ms = 250\nmax_open_exchanges = 2\n")
            .await;
    let p = unique("evicted");
    let reply = Reply::json(r#"{"a":1}"#);
    let exchanges_sent: Vec<Exchange> = (0..3)
        .map(|i| Exchange::new(&format!("{p}-r{i}"), "/kinds", reply.clone()).candidate("v2", reply.clone()))
        .collect();
    // Requests and primaries first, as when the requests topic is read ahead of the shadows':
    // three open exchanges, one over the bound, evicted before any shadow leg came.
    for exchange in &exchanges_sent {
        correlator.publisher.request(&exchange.request).await;
        correlator.publisher.response(&exchange.primary_event()).await;
    }
    for exchange in &exchanges_sent {
        correlator.publisher.response(&exchange.shadow_event(Role::Candidate, "v2", &reply)).await;
    }
    // Every request id gets its candidate's row, complete or saying what it lost; none is
    // dropped as a late leg.
    let found = wait_for_exchanges(&correlator, 3, "a row for every request").await;
    let ids: Vec<&str> = found.iter().map(|r| r.request_id.as_str()).collect();
    let want: Vec<String> = exchanges_sent.iter().map(|e| e.id().to_owned()).collect();
    assert_eq!(ids, want);
    for row in &found {
        assert_eq!(row.deployment, "v2");
        assert!(["complete", "missing_request", "missing_primary"].contains(&row.outcome.as_str()), "{row:?}");
    }
    // (A request or primary read after its shadow's exchange was written is still counted as
    // late: the two topics are read in no fixed order. The row is there either way.)
    assert!(correlator.metric(EVICTED).await >= 1.0);
    correlator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_batch_is_written_without_waiting_for_the_flush_interval() {
    let infra = Infra::get().await;
    let correlator =
        CorrelatorUnderTest::start(&infra, 1, "window_ms = 2000\nflush_interval_ms = 600000\nmax_batch_rows = 1\n")
            .await;
    let reply = Reply::json(r#"{"a":1}"#);
    let exchange = Exchange::new(&unique("full-batch"), "/kinds", reply.clone()).candidate("v2", reply);
    correlator.publisher.exchange(&exchange).await;
    // Ten minutes between ticks: only the batch size can have written it.
    let found = wait_for_exchanges(&correlator, 1, "the one-row batch").await;
    assert_eq!(found[0].request_id, exchange.id());
    correlator.stop().await;
}

/// The largest body the diff decodes (`services/core/src/event/body.rs`); past it a body is
/// unreadable, as a decompression bomb would be, and compared by the hash of its bytes.
const DECODE_CAP: usize = 32 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_decodes_past_32_mib_is_compared_by_hash_not_decoded() {
    use std::io::Write as _;
    let infra = Infra::get().await;
    let correlator = CorrelatorUnderTest::start(&infra, 2, "window_ms = 10000\nflush_interval_ms = 250").await;
    let p = unique("cap");
    // One text, gzip for the primary and deflate for the candidate: equal once decoded,
    // different on the wire. Each encoding is a few dozen KiB, captured whole.
    let encoded = |length: usize| {
        let plain = vec![b'a'; length];
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gzip.write_all(&plain).unwrap();
        let mut deflate = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        deflate.write_all(&plain).unwrap();
        (gzip.finish().unwrap(), deflate.finish().unwrap())
    };
    let mut hashes = Vec::new();
    for (name, length) in [("at-cap", DECODE_CAP), ("past-cap", DECODE_CAP + 1)] {
        let (gzip, deflate) = encoded(length);
        assert!(gzip.len().max(deflate.len()) < 64 * 1024, "the encodings fit the capture: {}", gzip.len());
        hashes.push((sha256_hex(&gzip), sha256_hex(&deflate)));
        let exchange = Exchange::new(
            &format!("{p}-{name}"),
            "/large",
            Reply::new("text/plain", gzip).header("content-encoding", "gzip"),
        )
        .candidate("v2", Reply::new("text/plain", deflate).header("content-encoding", "deflate"));
        correlator.publisher.exchange(&exchange).await;
    }

    let found = wait_for_exchanges(&correlator, 2, "a row per exchange").await;
    let counts: Vec<(&str, &str, u32)> =
        found.iter().map(|r| (r.request_id.as_str(), r.outcome.as_str(), r.differences)).collect();
    let (at, past) = (format!("{p}-at-cap"), format!("{p}-past-cap"));
    assert_eq!(
        counts,
        [(at.as_str(), "complete", 0), (past.as_str(), "complete", 1)],
        "32 MiB decoded compares equal; one byte more is not decoded"
    );
    let found = differences(&correlator).await.unwrap();
    let want = DifferenceSummary {
        request_id: past,
        deployment: "v2".to_owned(),
        path: "body".to_owned(),
        kind: "body_hash".to_owned(),
        role: "candidate".to_owned(),
        primary_value: hashes[1].0.clone(),
        shadow_value: hashes[1].1.clone(),
        noise: 0,
    };
    assert_eq!(found, [want], "compared by the hash of each side's bytes");
    correlator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_a_sidecar_tap_fronts_is_timed_by_the_tap_and_waited_for() {
    let infra = Infra::get().await;
    // A long window: the exchange is written when its legs are in, long before it passes.
    let window = Duration::from_secs(20);
    let correlator = CorrelatorUnderTest::start(
        &infra,
        2,
        &format!("window_ms = {}\nflush_interval_ms = 250\n", window.as_millis()),
    )
    .await;
    let reply = Reply::json(r#"{"a":1}"#);
    let exchange = Exchange::new(&unique("sidecar"), "/kinds", reply.clone()).candidate("v2", reply.clone());
    // The mirror's leg, measured through the replay path, says a tap in front of v2 times it.
    let mut mirrored = exchange.shadow_event(Role::Candidate, "v2", &reply.clone().latency_us(9_000));
    mirrored.expected_legs[0].timed_by_tap = true;
    // The sidecar tap's leg: no profile, its upstream time.
    let mut tapped = exchange.shadow_event(Role::Candidate, "v2", &reply.latency_us(4_000));
    (tapped.profile, tapped.stage, tapped.expected_legs) = (None, None, Vec::new());

    let started = Instant::now();
    correlator.publisher.request(&exchange.request).await;
    correlator.publisher.response(&exchange.primary_event()).await;
    correlator.publisher.response(&mirrored).await;
    correlator.publisher.response(&tapped).await;
    #[derive(Debug, Row, Deserialize)]
    struct Timed {
        outcome: String,
        shadow_latency_us: u64,
        stage: String,
    }
    let sql =
        format!("SELECT outcome, shadow_latency_us, stage FROM exchanges FINAL WHERE request_id = '{}'", exchange.id());
    let rows: Vec<Timed> = eventually("the sidecar-timed row", DEADLINE, || async {
        let rows: Vec<Timed> = correlator.clickhouse.query(&sql).fetch_all().await.map_err(|e| e.to_string())?;
        if rows.is_empty() { Err("no row yet".to_owned()) } else { Ok(rows) }
    })
    .await;
    assert!(started.elapsed() < window, "written once both legs were in, after {:?}", started.elapsed());
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        (rows[0].outcome.as_str(), rows[0].shadow_latency_us, rows[0].stage.as_str()),
        ("complete", 4_000, STAGE),
        "the mirror's leg (its stage), with the tap's time"
    );
    correlator.stop().await;
}

/// A replayed exchange (`shadowctl replay`): every leg carries its run, and so does every
/// row written of it, exchanges, differences and samples alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_exchanges_rows_carry_its_run() {
    let infra = Infra::get().await;
    let correlator = CorrelatorUnderTest::start(&infra, 2, "flush_interval_ms = 250\n").await;
    let run = "r-7";
    let exchange = Exchange::new(&format!("{run}:{}", unique("req")), "/kinds", Reply::json(r#"{"a":1}"#))
        .candidate("v2", Reply::json(r#"{"a":2}"#));
    correlator.publisher.request(&exchange.request).await;
    for mut response in exchange.responses() {
        response.run = run.to_owned();
        correlator.publisher.response(&response).await;
    }
    wait_for_exchanges(&correlator, 1, "the replayed exchange").await;
    for table in ["exchanges", "differences", "samples"] {
        let runs: Vec<String> =
            correlator.clickhouse.query(&format!("SELECT DISTINCT run FROM {table} FINAL")).fetch_all().await.unwrap();
        assert_eq!(runs, vec![run.to_owned()], "{table}");
    }
    correlator.stop().await;
}

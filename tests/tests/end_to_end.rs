//! The whole path on real infrastructure: client → tap → primary, Kafka → mirror →
//! candidate, Kafka → correlator → ClickHouse → verdict API.

// Scenario helpers fail the test by panicking, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use clickhouse::Row;
use rdkafka::Message;
use rdkafka::consumer::Consumer as _;
use serde::Deserialize;
use shadowdiff_demo::backend::{self, Behavior};
use shadowdiff_demo::traffic;
use shadowdiff_runtime::kafka::Consumer;
use shadowdiff_tests::infra::Infra;
use shadowdiff_tests::pipeline::{Backends, CANDIDATE, Pipeline};
use shadowdiff_tests::{eventually, unique};
use shadowdiff_verdict::{Decision, ExchangeDetail, VerdictReport};

const READS: u64 = 60;
const WRITES: u64 = 5;
const REGRESS_EVERY: u64 = 5;
const DEADLINE: Duration = Duration::from_secs(90);

async fn backend(behavior: Behavior) -> std::net::SocketAddr {
    shadowdiff_tests::serve(backend::app(behavior)).await
}

async fn start() -> (Infra, Pipeline) {
    start_on(Infra::get().await).await
}

async fn start_on(infra: Infra) -> (Infra, Pipeline) {
    let honest = Behavior { noise: true, ..Behavior::default() };
    let backends = Backends {
        primary: backend(honest.clone()).await,
        secondary: backend(honest).await,
        candidate: backend(Behavior { regress_every: REGRESS_EVERY, noise: true, ..Behavior::default() }).await,
    };
    let pipeline = Pipeline::start(&infra, backends).await;
    (infra, pipeline)
}

#[derive(Debug, Row, Deserialize, PartialEq, Eq)]
struct ExchangeSummary {
    request_id: String,
    route: String,
    method: String,
    outcome: String,
    primary_status: u16,
    shadow_status: u16,
    differences: u32,
    noise: u32,
}

#[derive(Debug, Row, Deserialize, PartialEq, Eq)]
struct DifferenceSummary {
    request_id: String,
    kind: String,
    path: String,
    primary_value: String,
    shadow_value: String,
    noise: u8,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mirrored_request_is_compared_once_and_the_regression_is_found() {
    compared_once_and_the_regression_found(Infra::get().await).await;
}

/// The same scenario on a ClickHouse cluster of two or more shards (`deploy/local/services.sh
/// up cluster`): the rows are sharded by request id behind Distributed tables, and every count
/// and the verdict come out exactly as on one server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_clickhouse_cluster_every_request_is_compared_once_and_the_regression_is_found() {
    compared_once_and_the_regression_found(Infra::cluster().await).await;
}

async fn compared_once_and_the_regression_found(infra: Infra) {
    let (infra, pipeline) = start_on(infra).await;
    let prefix = unique("req");

    // The client sees the primary's answer, with its request id echoed.
    let client = reqwest::Client::new();
    let first =
        client.get(format!("{}/items/7", pipeline.tap_url)).header("x-request-id", "probe-7").send().await.unwrap();
    assert_eq!(first.headers()["x-request-id"], "probe-7");
    let mut body: serde_json::Value = first.json().await.unwrap();
    let object = body.as_object_mut().unwrap();
    for noise in ["served_at", "trace_id"] {
        assert!(object.remove(noise).is_some(), "the primary's own noise: {noise}");
    }
    assert_eq!(body, backend::item_json(7));

    let sent = traffic::drive(&pipeline.tap_url, &prefix, READS, WRITES).await.unwrap();
    assert_eq!(sent.reads.len() as u64, READS);

    // Exactly one comparison per mirrored read (plus the probe); none for the writes.
    let expected = READS + 1;
    let rows: Vec<ExchangeSummary> = eventually("one exchanges row per mirrored read", DEADLINE, || async {
        let rows: Vec<ExchangeSummary> = pipeline
            .clickhouse
            .query(
                "SELECT request_id, route, method, outcome, primary_status, shadow_status, differences, noise \
                 FROM exchanges FINAL WHERE deployment = ? ORDER BY request_id",
            )
            .bind(CANDIDATE)
            .fetch_all()
            .await
            .map_err(|e| format!("query failed: {e}; services: {:?}", pipeline.failures()))?;
        if rows.len() as u64 == expected {
            Ok(rows)
        } else {
            Err(format!("{} rows; services: {:?}", rows.len(), pipeline.failures()))
        }
    })
    .await;

    let regressed: BTreeSet<String> = (0..READS)
        .filter(|n| Behavior { regress_every: REGRESS_EVERY, noise: true, ..Behavior::default() }.regresses(*n))
        .map(|n| format!("{prefix}-r{n}"))
        .collect();
    assert_eq!(regressed.len(), 12);
    for row in &rows {
        assert_eq!(row.outcome, "complete", "{row:?}");
        assert_eq!((row.primary_status, row.shadow_status), (200, 200), "{row:?}");
        assert_eq!(row.method, "GET");
        assert_eq!(row.route, "/items/{id}", "{row:?}");
        // `served_at` and `trace_id` differ on every leg: always differences, always noise.
        // `price` differs only on the candidate's regressed requests: the one real divergence.
        let expected_differences = 2 + u32::from(regressed.contains(&row.request_id));
        assert_eq!((row.differences, row.noise), (expected_differences, 2), "{row:?}");
    }
    let ids: BTreeSet<&str> = rows.iter().map(|r| r.request_id.as_str()).collect();
    for write in &sent.writes {
        assert!(!ids.contains(write.as_str()), "write {write} must not be mirrored");
    }

    // Exactly the regressed requests have a difference, at `price`, with both values.
    let differences: Vec<DifferenceSummary> = pipeline
        .clickhouse
        .query(
            "SELECT request_id, kind, path, primary_value, shadow_value, noise FROM differences FINAL \
             WHERE deployment = ? AND noise = 0 ORDER BY request_id",
        )
        .bind(CANDIDATE)
        .fetch_all()
        .await
        .unwrap();
    let differing: BTreeSet<String> = differences.iter().map(|d| d.request_id.clone()).collect();
    assert_eq!(differing, regressed);
    for d in &differences {
        let n: u64 = d.request_id.rsplit("-r").next().unwrap().parse().unwrap();
        assert_eq!((d.kind.as_str(), d.path.as_str()), ("changed_value", "price"), "{d:?}");
        assert_eq!(
            (d.primary_value.clone(), d.shadow_value.clone()),
            ((n * 100).to_string(), (n * 100 + 1).to_string())
        );
    }

    // The verdict API reports the same counts.
    let verdict: VerdictReport = client
        .get(format!("{}/v1/verdict?candidate={CANDIDATE}", pipeline.verdict_url))
        .bearer_auth(shadowdiff_tests::auth::READ_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(verdict.candidate, CANDIDATE);
    assert_eq!(verdict.samples, expected);
    assert_eq!(verdict.compared, expected);
    assert_eq!(verdict.divergence.count, 12);
    assert_eq!(verdict.noise_only, expected - 12, "every other exchange differed only by noise");
    assert_eq!(verdict.new_errors.count, 0);
    assert_eq!(verdict.incomplete, 0);
    assert_eq!(verdict.top_paths.len(), 1);
    assert_eq!((verdict.top_paths[0].path.as_str(), verdict.top_paths[0].count), ("price", 12));
    assert_eq!(verdict.verdict, Decision::Fail, "{:?}", verdict.reasons);
    assert!(verdict.reasons.iter().any(|r| r.contains("12 of")), "{:?}", verdict.reasons);

    // A sampled divergent exchange can be drilled into: both bodies, and the difference.
    let sampled: String = pipeline
        .clickhouse
        .query("SELECT any(request_id) FROM samples FINAL WHERE deployment = ?")
        .bind(CANDIDATE)
        .fetch_one()
        .await
        .unwrap();
    assert!(regressed.contains(&sampled), "only divergent exchanges are sampled: {sampled}");
    let detail: ExchangeDetail = client
        .get(format!("{}/v1/exchanges/{sampled}", pipeline.verdict_url))
        .bearer_auth(shadowdiff_tests::auth::READ_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let deployments: Vec<&str> = detail.samples.iter().map(|s| s.deployment.as_str()).collect();
    assert_eq!(deployments, ["primary", CANDIDATE]);
    assert!(detail.differences.iter().any(|d| d.path == "price" && d.noise == 0 && d.deployment == CANDIDATE));
    assert_eq!(detail.legs.len(), 2, "the secondary's and the candidate's comparisons");

    // On a cluster, every shard holds some of the comparisons, and the distinct request ids
    // of all legs (the secondary's too) add up to the total: were an exchange's legs split
    // across shards, its id would count twice.
    let shards = infra.shards(&pipeline.names.database, "exchanges").await;
    let mut per_shard: Vec<(u64, u64)> = Vec::new();
    for shard in &shards {
        let query = format!("SELECT countIf(deployment = ?), uniqExact(request_id) FROM {shard} FINAL");
        per_shard.push(pipeline.clickhouse.query(&query).bind(CANDIDATE).fetch_one().await.unwrap());
    }
    if infra.clickhouse_cluster.is_some() {
        assert!(per_shard.len() >= 2 && per_shard.iter().all(|(n, _)| *n > 0), "rows on every shard: {per_shard:?}");
        assert_eq!(per_shard.iter().map(|(n, _)| n).sum::<u64>(), expected, "{per_shard:?}");
        assert_eq!(per_shard.iter().map(|(_, ids)| ids).sum::<u64>(), expected, "legs together: {per_shard:?}");
        // Each shard's replicas come to hold the same rows: the tables replicate.
        for replicas in infra.replicas(&pipeline.names.database, "exchanges").await {
            eventually("every replica of a shard holding its rows", DEADLINE, || async {
                let mut counts = Vec::new();
                for replica in &replicas {
                    let sql = format!("SELECT count() FROM {replica}");
                    counts.push(pipeline.clickhouse.query(&sql).fetch_one::<u64>().await.map_err(|e| e.to_string())?);
                }
                let agree = counts.len() >= 2 && counts.windows(2).all(|w| w[0] == w[1]);
                if agree { Ok(()) } else { Err(format!("{replicas:?}: {counts:?}")) }
            })
            .await;
        }
    }
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_events_go_to_the_dead_letter_topic_with_their_reason() {
    let (infra, pipeline) = start().await;
    // Wait until the tap's topics exist and a real exchange went through, so both
    // consumers are running before the garbage arrives.
    let sent = traffic::drive(&pipeline.tap_url, &unique("warm"), 1, 0).await.unwrap();
    eventually("the warm-up comparison", DEADLINE, || async {
        let n: u64 = pipeline
            .clickhouse
            .query("SELECT count() FROM exchanges FINAL WHERE request_id = ? AND deployment = 'candidate'")
            .bind(&sent.reads[0])
            .fetch_one()
            .await
            .map_err(|e| e.to_string())?;
        if n == 1 { Ok(()) } else { Err(format!("{n} rows")) }
    })
    .await;

    let producer: shadowdiff_runtime::kafka::Producer =
        shadowdiff_runtime::kafka::KafkaConfig { brokers: infra.brokers.clone(), ..Default::default() }
            .producer()
            .unwrap();
    let garbage =
        rdkafka::producer::FutureRecord::to(&pipeline.names.requests).key("junk-1").payload("{\"not\":\"avro\"}");
    producer.send(garbage, Duration::from_secs(10)).await.map_err(|(e, _)| e).unwrap();

    // Both consumers of the request topic dead-letter it, each saying who and why.
    let consumer: Consumer =
        shadowdiff_runtime::kafka::KafkaConfig { brokers: infra.brokers.clone(), ..Default::default() }
            .consumer(&unique("dlq-reader"))
            .unwrap();
    consumer.subscribe(&[&pipeline.names.dead_letter]).unwrap();
    let mut seen = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while seen.len() < 2 {
        let message = tokio::time::timeout_at(deadline, consumer.recv())
            .await
            .unwrap_or_else(|_| {
                panic!("dead letters seen before the deadline: {seen:?}; services: {:?}", pipeline.failures())
            })
            .unwrap();
        let header = |name: &str| -> String {
            use rdkafka::message::Headers;
            let headers = message.headers().expect("dead letters carry headers");
            headers
                .iter()
                .find(|h| h.key == name)
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default()
        };
        assert_eq!(message.key(), Some(&b"junk-1"[..]));
        assert_eq!(message.payload(), Some(&b"{\"not\":\"avro\"}"[..]), "payload kept unchanged");
        assert_eq!(header("shadowdiff-reason"), "bad_marker");
        assert_eq!(header("shadowdiff-source-topic"), pipeline.names.requests);
        seen.insert(header("shadowdiff-service"));
    }
    assert_eq!(seen, BTreeSet::from(["correlator".to_owned(), "mirror".to_owned()]));
    pipeline.stop().await;
}

/// Reads sent through the tap after the abort: none of them can have a row before it.
const ROUNDS_AFTER_ABORT: usize = 5;
const READS_PER_ROUND: u64 = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_correlator_aborted_mid_stream_neither_loses_nor_duplicates_comparisons() {
    let (_infra, mut pipeline) = start().await;

    // Reads flow through the tap in small rounds for the whole scenario: before the abort,
    // across it, and for a few rounds after it.
    let (aborted_tx, aborted) = tokio::sync::watch::channel(false);
    let traffic = {
        let (tap, prefix) = (pipeline.tap_url.clone(), unique("flow"));
        tokio::spawn(async move {
            let (mut sent, mut after) = (Vec::new(), 0);
            for round in 0..600 {
                let was_aborted = *aborted.borrow();
                let reads = traffic::drive(&tap, &format!("{prefix}-{round}"), READS_PER_ROUND, 0).await.unwrap();
                sent.extend(reads.reads);
                if was_aborted {
                    after += 1;
                    if after == ROUNDS_AFTER_ABORT {
                        return sent;
                    }
                }
                // Pacing, so the stream spans the abort rather than a burst before it.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("the scenario never aborted the correlator");
        })
    };

    // Abort the correlator as soon as some, but not all, comparisons are written: exchanges
    // are open or unflushed, and some written ones have no committed offsets yet.
    let clickhouse = pipeline.clickhouse.clone();
    let count = |query: &'static str| {
        let client = clickhouse.clone();
        async move { client.query(query).fetch_one::<u64>().await.map_err(|e| e.to_string()) }
    };
    eventually("the first written comparisons", DEADLINE, || async {
        let n = count("SELECT count() FROM exchanges WHERE deployment = 'candidate'").await?;
        if n > 0 { Ok(()) } else { Err("no rows yet".to_owned()) }
    })
    .await;
    pipeline.crash_correlator().await;
    let at_abort = count("SELECT count() FROM exchanges WHERE deployment = 'candidate'").await.unwrap();
    aborted_tx.send(true).unwrap();

    pipeline.restart_correlator();
    let sent: BTreeSet<String> = traffic.await.unwrap().into_iter().collect();
    let expected = sent.len() as u64;
    assert!(
        at_abort > 0 && at_abort + ROUNDS_AFTER_ABORT as u64 * READS_PER_ROUND <= expected,
        "the abort landed mid-stream: {at_abort} rows at the abort of {expected} reads"
    );
    eventually("every comparison exactly once after the restart", DEADLINE, || async {
        let n = count("SELECT count() FROM exchanges FINAL WHERE deployment = 'candidate'").await?;
        let distinct = count("SELECT uniqExact(request_id) FROM exchanges WHERE deployment = 'candidate'").await?;
        let complete =
            count("SELECT countIf(outcome = 'complete') FROM exchanges FINAL WHERE deployment = 'candidate'").await?;
        if (n, distinct, complete) == (expected, expected, expected) {
            Ok(())
        } else {
            // Which rows are not complete, and how, for a failure to say.
            let others: Vec<(String, String)> = pipeline
                .clickhouse
                .query(
                    "SELECT request_id, outcome FROM exchanges FINAL \
                     WHERE deployment = 'candidate' AND outcome != 'complete' LIMIT 10",
                )
                .fetch_all()
                .await
                .map_err(|e| e.to_string())?;
            Err(format!(
                "{n} rows with FINAL, {distinct} distinct ids, {complete} complete (at abort: {at_abort}); \
                 not complete: {others:?}; services: {:?}",
                pipeline.failures()
            ))
        }
    })
    .await;
    let ids: BTreeSet<String> = pipeline
        .clickhouse
        .query("SELECT DISTINCT request_id FROM exchanges")
        .fetch_all::<String>()
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(ids, sent, "exactly the sent reads, none lost, none invented");
    pipeline.stop().await;
}

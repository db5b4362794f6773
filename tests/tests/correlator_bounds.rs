//! The correlator against the real broker and ClickHouse when ClickHouse refuses a row:
//! the rest of the batch is written (exact rows), the refused row goes to the dead-letter
//! topic with ClickHouse's reason, the offsets move on, and later exchanges still arrive.
//! And a dead letter too large for the producer still goes out, flagged, without payload.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::Offset;
use rdkafka::consumer::Consumer as _;
use rdkafka::message::{Headers, Message, OwnedMessage};
use rdkafka::topic_partition_list::TopicPartitionList;
use shadowdiff_runtime::kafka::dead_letter_headers::{CLICKHOUSE_CODE, TABLE, TRUNCATED};
use shadowdiff_runtime::kafka::{Consumer, KafkaConfig, dead_letter_headers};
use shadowdiff_tests::correlator::{CorrelatorUnderTest, Exchange, Reply};
use shadowdiff_tests::infra::Infra;
use shadowdiff_tests::{eventually, kafka, unique};

const DEADLINE: Duration = Duration::from_secs(30);
/// The path of the difference ClickHouse is made to refuse.
const POISON: &str = "poison";

/// Makes ClickHouse refuse every `differences` row at path [`POISON`], before anything is
/// written: its partition key throws for them (`FUNCTION_THROW_IF_VALUE_IS_NON_ZERO`), as a
/// column refuses a value it cannot hold. The table is swapped under the running correlator,
/// which inserts by name.
async fn refuse_poison(correlator: &CorrelatorUnderTest) {
    let ch = &correlator.clickhouse;
    for sql in [
        format!(
            "CREATE TABLE differences_strict AS differences ENGINE = ReplacingMergeTree() \
             PARTITION BY (toYYYYMMDD(ts), throwIf(path = '{POISON}')) ORDER BY (deployment, request_id, path, kind)"
        ),
        "RENAME TABLE differences TO differences_lenient, differences_strict TO differences".to_owned(),
    ] {
        ch.query(&sql).execute().await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

/// A whole exchange whose candidate `v2` differs at `price`, and at `extra` if given.
fn exchange(id: &str, extra: Option<&str>) -> Exchange {
    let candidate = match extra {
        Some(field) => format!(r#"{{"price":101,"{field}":"{}"}}"#, "x".repeat(2000)),
        None => r#"{"price":101}"#.to_owned(),
    };
    Exchange::new(id, "/items/{id}", Reply::json(r#"{"price":100}"#)).candidate("v2", Reply::json(&candidate))
}

async fn count(correlator: &CorrelatorUnderTest, sql: &str) -> Result<u64, String> {
    correlator
        .clickhouse
        .query(sql)
        .fetch_one::<u64>()
        .await
        .map_err(|e| format!("{sql}: {e}; correlator running: {}", correlator.running()))
}

/// Waits until `exchanges` and `differences` hold exactly these rows (by request id and path).
async fn wait_for_rows(correlator: &CorrelatorUnderTest, exchanges: u64, differences: &[(String, String)]) {
    eventually("the exact rows", DEADLINE, || async {
        let found_exchanges = count(correlator, "SELECT count() FROM exchanges FINAL").await?;
        let mut found: Vec<(String, String)> = correlator
            .clickhouse
            .query("SELECT request_id, path FROM differences FINAL")
            .fetch_all()
            .await
            .map_err(|e| e.to_string())?;
        found.sort();
        if found_exchanges == exchanges && found == differences {
            Ok(())
        } else {
            Err(format!("{found_exchanges} exchanges, differences {found:?}"))
        }
    })
    .await;
}

fn headers(message: &OwnedMessage) -> BTreeMap<String, String> {
    message.headers().map_or_else(BTreeMap::new, |headers| {
        headers
            .iter()
            .map(|h| (h.key.to_owned(), String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned()))
            .collect()
    })
}

/// The consumer group's committed offsets, summed over every partition of `topics`.
async fn committed(brokers: &str, group: &str, topics: &[&str], partitions: i32) -> i64 {
    let consumer: Consumer =
        KafkaConfig { brokers: brokers.to_owned(), ..KafkaConfig::default() }.consumer(group).unwrap();
    let mut list = TopicPartitionList::new();
    for topic in topics {
        for partition in 0..partitions {
            list.add_partition(topic, partition);
        }
    }
    let found = tokio::task::spawn_blocking(move || consumer.committed_offsets(list, Duration::from_secs(10)))
        .await
        .unwrap()
        .unwrap();
    found.elements().iter().map(|e| if let Offset::Offset(o) = e.offset() { o } else { 0 }).sum()
}

/// The series counting rejected rows dead-lettered with `delivery`.
fn dead_letters(delivery: &str) -> String {
    format!(
        r#"shadowdiff_correlator_dead_letters_total{{what="row",reason="clickhouse_rejected",delivery="{delivery}"}}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_clickhouse_refuses_is_dead_lettered_and_the_rest_written() {
    let infra = Infra::get().await;
    let correlator = CorrelatorUnderTest::start(&infra, 2, "flush_interval_ms = 1000\n").await;
    refuse_poison(&correlator).await;
    let id = correlator.requests.strip_suffix(".requests").unwrap().to_owned();
    let p = unique("bad");
    let ids: Vec<String> = (0..10).map(|i| format!("{p}-{i:02}")).collect();
    for (i, id) in ids.iter().enumerate() {
        correlator.publisher.exchange(&exchange(id, (i == 4).then_some(POISON))).await;
    }
    // Every exchange and every difference but the refused one, exactly.
    let mut expected: Vec<(String, String)> = ids.iter().map(|id| (id.clone(), "price".to_owned())).collect();
    wait_for_rows(&correlator, 10, &expected).await;

    let dead = kafka::read_until(&infra.brokers, &format!("{id}.dead-letter"), DEADLINE, |m| !m.is_empty()).await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    let letter = &dead[0];
    assert_eq!(letter.key(), Some(ids[4].as_bytes()));
    let found = headers(letter);
    assert_eq!(found.get(dead_letter_headers::REASON).map(String::as_str), Some("clickhouse_rejected"), "{found:?}");
    assert_eq!(found.get(TABLE).map(String::as_str), Some("differences"), "{found:?}");
    assert_eq!(found.get(CLICKHOUSE_CODE).map(String::as_str), Some("395"), "{found:?}");
    let error = &found[dead_letter_headers::ERROR];
    assert!(error.starts_with("FUNCTION_THROW_IF_VALUE_IS_NON_ZERO: "), "{error}");
    assert!(!found.contains_key(TRUNCATED), "{found:?}");
    let row: serde_json::Value = serde_json::from_slice(letter.payload().unwrap()).unwrap();
    assert_eq!((row["request_id"].as_str(), row["path"].as_str()), (Some(ids[4].as_str()), Some(POISON)), "{row}");
    assert_eq!(row["kind"].as_str(), Some("extra_field"));

    // The pipeline goes on: later exchanges arrive, and the offsets move past everything.
    let later: Vec<String> = (10..15).map(|i| format!("{p}-{i:02}")).collect();
    for id in &later {
        correlator.publisher.exchange(&exchange(id, None)).await;
    }
    expected.extend(later.iter().map(|id| (id.clone(), "price".to_owned())));
    expected.sort();
    wait_for_rows(&correlator, 15, &expected).await;
    // 15 requests and 30 responses (primary and candidate) were published.
    let (requests, responses) = (correlator.requests.clone(), correlator.responses.clone());
    let group = format!("{id}-correlator");
    eventually("offsets committed past every event", DEADLINE, || async {
        let offsets = committed(&infra.brokers, &group, &[&requests, &responses], 2).await;
        if offsets == 45 { Ok(()) } else { Err(format!("{offsets} committed")) }
    })
    .await;
    // Per delivery, so the other scenario in this binary (whose letter is truncated) does not count here.
    assert_eq!(correlator.metric(&dead_letters("whole")).await, 1.0);
    correlator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_too_large_for_the_producer_goes_without_its_payload() {
    let infra = Infra::get().await;
    // librdkafka's smallest message size limit: the refused row (its 1 KiB value and more)
    // does not fit, its headers do.
    let correlator = CorrelatorUnderTest::start(
        &infra,
        1,
        "flush_interval_ms = 500\n[kafka.properties]\n\"message.max.bytes\" = \"1000\"\n",
    )
    .await;
    refuse_poison(&correlator).await;
    let id = correlator.requests.strip_suffix(".requests").unwrap().to_owned();
    let p = unique("large");
    let (bad, good) = (format!("{p}-bad"), format!("{p}-good"));
    correlator.publisher.exchange(&exchange(&bad, Some(POISON))).await;
    correlator.publisher.exchange(&exchange(&good, None)).await;
    let expected = vec![(bad.clone(), "price".to_owned()), (good.clone(), "price".to_owned())];
    wait_for_rows(&correlator, 2, &expected).await;
    let dead = kafka::read_until(&infra.brokers, &format!("{id}.dead-letter"), DEADLINE, |m| !m.is_empty()).await;
    let found = headers(&dead[0]);
    assert_eq!(dead[0].key(), Some(bad.as_bytes()));
    assert_eq!(dead[0].payload().unwrap_or_default(), b"", "sent without its payload");
    let original: usize = found.get(TRUNCATED).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{found:?}"));
    assert!(original > 1000, "the row's length is flagged: {original}");
    assert_eq!(found.get(CLICKHOUSE_CODE).map(String::as_str), Some("395"));
    assert_eq!(correlator.metric(&dead_letters("truncated")).await, 1.0);
    correlator.stop().await;
}

//! Side effects on the real broker and ClickHouse: each deployment's downstream calls,
//! published on the outbound topic as egress taps publish them, joined to their exchange by
//! the correlator and compared with the primary's. The exact rows for a candidate that adds
//! a write, one that drops a call and one that changes a payload, with the secondary's own
//! differences taken as noise; and the verdict's criterion on them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use clickhouse::Row;
use serde::Deserialize;
use shadowdiff_core::{Header, OutboundCallEvent, Role};
use shadowdiff_tests::correlator::{CorrelatorUnderTest, Exchange, Reply, call};
use shadowdiff_tests::infra::Infra;
use shadowdiff_tests::verdict::VerdictService;
use shadowdiff_tests::{eventually, unique};
use shadowdiff_verdict::Decision;

#[derive(Debug, Clone, Row, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
struct CallDifference {
    request_id: String,
    deployment: String,
    call: String,
    kind: String,
    path: String,
    primary_value: String,
    shadow_value: String,
    write: u8,
    noise: u8,
}

/// `(method, host, path, body)` of one call.
type Made<'a> = (&'a str, &'a str, &'a str, &'a str);

/// An exchange's name, then the primary's, the secondary's and the candidate's calls.
type Scenario<'a> = (&'a str, Vec<Made<'a>>, Vec<Made<'a>>, Vec<Made<'a>>);

const PRICE: Made<'static> = ("GET", "pricing", "/prices/7", "");
const STOCK: Made<'static> = ("GET", "inventory", "/stock/7", "");
const AUDIT: Made<'static> = ("POST", "audit", "/events", r#"{"kind": "sale"}"#);

fn calls(id: &str, deployment: &str, role: Role, made: &[Made<'_>]) -> Vec<OutboundCallEvent> {
    (0..)
        .zip(made)
        .map(|(n, (method, host, path, body))| call(id, deployment, role, n, method, host, path, body))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn added_dropped_and_changed_downstream_calls_are_exact_rows_and_the_secondarys_are_noise() {
    let infra = Infra::get().await;
    let correlator = CorrelatorUnderTest::start(
        &infra,
        3,
        "window_ms = 10000\nflush_interval_ms = 200\n[correlator.outbound]\nsettle_ms = 1500\n",
    )
    .await;
    let prefix = unique("calls");
    let charge = |amount: u32, at: u32| format!(r#"{{"amount": {amount}, "at": {at}}}"#);
    let (p_charge, s_charge, c_charge) = (charge(10, 1), charge(10, 2), charge(12, 3));
    // Per exchange: the primary's, the secondary's and the candidate's calls.
    let scenarios: Vec<Scenario<'_>> = vec![
        ("adds", vec![PRICE], vec![PRICE], vec![PRICE, AUDIT]),
        ("drops", vec![PRICE, STOCK], vec![PRICE, STOCK], vec![PRICE]),
        (
            "changes",
            vec![("POST", "payments", "/charges", &p_charge)],
            vec![("POST", "payments", "/charges", &s_charge)],
            vec![("POST", "payments", "/charges", &c_charge)],
        ),
        ("same", vec![PRICE, STOCK], vec![PRICE, STOCK], vec![PRICE, STOCK]),
        // The candidate's stub tap could not answer the call the primary made (its record
        // came too late): the candidate answered in another world, and is not compared.
        ("stub_missed", vec![STOCK], vec![STOCK], vec![STOCK]),
    ];
    let publisher = &correlator.publisher;
    for (name, primary, secondary, candidate) in &scenarios {
        let id = format!("{prefix}-{name}");
        let exchange = Exchange::new(&id, "/orders/{id}", Reply::json(r#"{"ok": true}"#))
            .secondary("prod-b", Reply::json(r#"{"ok": true}"#))
            .candidate("v2", Reply::json(r#"{"ok": true}"#));
        // The exchange is whole before its calls arrive: it waits for them (settle_ms).
        publisher.exchange(&exchange).await;
        let mut made = [
            calls(&id, "prod", Role::Primary, primary),
            calls(&id, "prod-b", Role::Secondary, secondary),
            calls(&id, "v2", Role::Candidate, candidate),
        ];
        if *name == "stub_missed" {
            for call in &mut made[2] {
                call.response.status = Some(502);
                call.response.headers = vec![Header::new(shadowdiff_core::headers::STUB, "unmatched")];
            }
        }
        for event in made.iter().flatten() {
            publisher.call(event).await;
        }
    }

    let row = |name: &str, deployment: &str, call: &str, kind: &str, path: &str, values: (&str, &str), write, noise| {
        CallDifference {
            request_id: format!("{prefix}-{name}"),
            deployment: deployment.to_owned(),
            call: call.to_owned(),
            kind: kind.to_owned(),
            path: path.to_owned(),
            primary_value: values.0.to_owned(),
            shadow_value: values.1.to_owned(),
            write,
            noise,
        }
    };
    let mut expected = vec![
        row("adds", "v2", "POST audit /events", "extra_call", "", ("0", "1"), 1, 0),
        row("drops", "v2", "GET inventory /stock/7", "missing_call", "", ("1", "0"), 0, 0),
        row("changes", "prod-b", "POST payments /charges", "changed_value", "at", ("1", "2"), 1, 1),
        row("changes", "v2", "POST payments /charges", "changed_value", "amount", ("10", "12"), 1, 0),
        row("changes", "v2", "POST payments /charges", "changed_value", "at", ("1", "3"), 1, 1),
    ];
    expected.sort();
    // Every call kept, numbered per deployment in the order it was made.
    let mut want = Vec::new();
    for (name, primary, secondary, candidate) in &scenarios {
        for (deployment, made) in [("prod", primary), ("prod-b", secondary), ("v2", candidate)] {
            for seq in 0..made.len() as u32 {
                want.push((format!("{prefix}-{name}"), deployment.to_owned(), seq));
            }
        }
    }
    want.sort();
    eventually("every call kept", Duration::from_secs(30), || async {
        let kept: Vec<(String, String, u32)> = correlator
            .clickhouse
            .query("SELECT request_id, deployment, seq FROM outbound_calls FINAL ORDER BY request_id, deployment, seq")
            .fetch_all()
            .await
            .map_err(|e| e.to_string())?;
        if kept == want { Ok(()) } else { Err(format!("{kept:#?}")) }
    })
    .await;
    let found = eventually("the call differences written", Duration::from_secs(30), || async {
        let mut rows: Vec<CallDifference> = correlator
            .clickhouse
            .query(
                "SELECT request_id, deployment, call, kind, path, primary_value, shadow_value, write, noise \
                 FROM outbound_differences FINAL",
            )
            .fetch_all()
            .await
            .map_err(|e| e.to_string())?;
        rows.sort();
        if rows == expected { Ok(rows) } else { Err(format!("{rows:#?}")) }
    })
    .await;

    // Nothing more comes: every exchange is written whole, once; the stub's miss is the
    // candidate's only row that is not compared.
    let outcomes: Vec<(String, String)> = correlator
        .clickhouse
        .query("SELECT deployment, outcome FROM exchanges FINAL WHERE outcome != 'complete'")
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(outcomes, [("v2".to_owned(), "stub_missed".to_owned())]);
    let compared: u64 = correlator
        .clickhouse
        .query("SELECT count() FROM exchanges FINAL WHERE outcome = 'complete'")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(compared, 2 * scenarios.len() as u64 - 1);
    let again: u64 =
        correlator.clickhouse.query("SELECT count() FROM outbound_differences FINAL").fetch_one().await.unwrap();
    assert_eq!(again as usize, found.len());

    // The verdict counts the exchanges whose calls changed: a call added, one left out, and a
    // write's payload changed; the secondary's `at` is noise and counts for nothing.
    let verdict = VerdictService::start_on(&infra, &correlator.database, "").await;
    let report = shadowdiff_tests::verdict::report(&verdict.url, "candidate=v2").await;
    let criterion = report.criteria.iter().find(|c| c.name == "downstream_calls").unwrap();
    assert_eq!((criterion.status, criterion.observed), (Decision::Fail, 3.0), "{}", criterion.reason);
    assert!(criterion.reason.contains("(2 with a call added or left out, 1 with"), "{}", criterion.reason);
    assert_eq!(report.verdict, Decision::Fail);

    // The drill-down page shows the two deployments' calls side by side: the candidate's
    // extra write beside nothing of the primary's.
    let page = reqwest::Client::new()
        .get(format!("{}/exchanges/{prefix}-adds?candidate=v2", verdict.url))
        .bearer_auth(shadowdiff_tests::auth::READ_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let row = |n: usize, primary: &str, candidate: &str| {
        format!("<tr><td>{n}</td><td>{primary}</td><td>{candidate}</td></tr>")
    };
    let price = "<code>GET pricing /prices/7</code> → 200";
    assert!(page.contains(&row(0, price, price)), "{page}");
    assert!(page.contains(&row(1, "—", "<code>POST audit /events</code> → 200")), "{page}");
    assert!(page.contains("<td>extra_call</td>"), "{page}");
    verdict.stop().await;
    correlator.stop().await;
}

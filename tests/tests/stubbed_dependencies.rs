//! Shadows replayed writes against recorded dependencies, on the real broker and
//! ClickHouse: an order service pays through a payment dependency; the primary's calls go
//! through an egress tap to the real dependency, the shadows' through egress taps in stub
//! mode. The mirror replays the orders (POST) under a profile with stubbed side effects.
//! No shadow call reaches the dependency, the shadows get the primary's recorded answers,
//! and a call of the candidate's with no recorded counterpart is answered 502 and recorded
//! as unmatched.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use shadowdiff_tests::infra::Infra;
use shadowdiff_tests::pipeline::{Backends, CANDIDATE, Pipeline, TEST_HMAC_KEY, Tuning};
use shadowdiff_tests::tap::TapUnderTest;
use shadowdiff_tests::{eventually, serve, unique};
use shadowdiff_verdict::Decision;

const ORDERS: u64 = 20;
/// The candidate also refunds every fifth order: a call the primary never makes.
const REFUND_EVERY: u64 = 5;

/// The payment dependency: prices, and charges numbered as they come, so an answer tells
/// which call made it.
#[derive(Default)]
struct Dependency {
    hits: AtomicU64,
    charges: AtomicU64,
}

fn dependency(state: Arc<Dependency>) -> axum::Router {
    axum::Router::new()
        .route(
            "/prices/{id}",
            get(|State(d): State<Arc<Dependency>>, Path(id): Path<u64>| async move {
                d.hits.fetch_add(1, Ordering::SeqCst);
                Json(serde_json::json!({ "item": id, "price": 100 + id }))
            }),
        )
        .route(
            "/charges",
            post(|State(d): State<Arc<Dependency>>, Json(order): Json<serde_json::Value>| async move {
                d.hits.fetch_add(1, Ordering::SeqCst);
                let charge = d.charges.fetch_add(1, Ordering::SeqCst);
                Json(serde_json::json!({ "charge": charge, "amount": order["amount"] }))
            }),
        )
        .route(
            "/refunds",
            post(|State(d): State<Arc<Dependency>>| async move {
                d.hits.fetch_add(1, Ordering::SeqCst);
                Json(serde_json::json!({ "refunded": true }))
            }),
        )
        .with_state(state)
}

/// One deployment of the order service: `POST /orders/{id}` prices the item and charges
/// for it through its egress proxy (set once the tap is up), propagating the request id.
#[derive(Clone)]
struct OrderService {
    dependency: std::net::SocketAddr,
    proxy: Arc<OnceLock<String>>,
    refunds: bool,
}

impl OrderService {
    async fn order(self, id: u64, headers: HeaderMap) -> Json<serde_json::Value> {
        let request_id = headers.get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let proxy = self.proxy.get().expect("the egress tap is up");
        let client = reqwest::Client::builder().proxy(reqwest::Proxy::http(proxy).unwrap()).build().unwrap();
        let base = format!("http://{}", self.dependency);
        let price: serde_json::Value = client
            .get(format!("{base}/prices/{id}"))
            .header("x-request-id", &request_id)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let charge: serde_json::Value = client
            .post(format!("{base}/charges"))
            .header("x-request-id", &request_id)
            .json(&serde_json::json!({ "order": id, "amount": price["price"] }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let refunded = if self.refunds && id.is_multiple_of(REFUND_EVERY) {
            let answer = client
                .post(format!("{base}/refunds"))
                .header("x-request-id", &request_id)
                .json(&serde_json::json!({ "order": id }))
                .send()
                .await
                .unwrap();
            Some(answer.status().as_u16())
        } else {
            None
        };
        Json(serde_json::json!({ "order": id, "charge": charge["charge"], "refund_status": refunded }))
    }

    fn app(self) -> axum::Router {
        axum::Router::new()
            .route("/orders/{id}", post(move |Path(id): Path<u64>, headers: HeaderMap| self.clone().order(id, headers)))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadows_replaying_writes_reach_no_real_dependency_and_unmatched_calls_are_recorded() {
    let infra = Infra::get().await;
    let payments = Arc::new(Dependency::default());
    let dependency = serve(dependency(payments.clone())).await;
    let service = |refunds| OrderService { dependency, proxy: Arc::new(OnceLock::new()), refunds };
    let (primary, secondary, candidate) = (service(false), service(false), service(true));
    let backends = Backends {
        primary: serve(primary.clone().app()).await,
        secondary: serve(secondary.clone().app()).await,
        candidate: serve(candidate.clone().app()).await,
    };
    let tuning = Tuning {
        // The shadows' calls are stubbed: the profile may replay the orders.
        profile: "side_effects = \"stubbed\"\nmatch = { methods = [\"POST\"] }",
        correlator: "[correlator.outbound]\nsettle_ms = 1500",
        verdict: "[verdict.gates.shadow]\nmin_samples = 10\nmin_duration_secs = 0",
        ..Tuning::default()
    };
    let pipeline = Pipeline::start_tuned(&infra, backends, tuning).await;
    let egress = |role: &str, deployment: &str, stub: bool| {
        let stub = if stub { "[tap.mode.stub]\nwait_ms = 1000\n" } else { "" };
        format!(
            "[tap.redaction]\nhmac_key = \"{TEST_HMAC_KEY}\"\n\
             [tap.mode]\nkind = \"egress\"\nrole = \"{role}\"\ndeployment = \"{deployment}\"\n{stub}"
        )
    };
    let taps = [
        (TapUnderTest::beside(&infra.brokers, &pipeline.names, &egress("primary", "prod", false)).await, &primary),
        (
            TapUnderTest::beside(&infra.brokers, &pipeline.names, &egress("secondary", "secondary", true)).await,
            &secondary,
        ),
        (
            TapUnderTest::beside(&infra.brokers, &pipeline.names, &egress("candidate", CANDIDATE, true)).await,
            &candidate,
        ),
    ];
    for (tap, service) in &taps {
        service.proxy.set(tap.url.clone()).unwrap();
    }

    let prefix = unique("order");
    let http = reqwest::Client::new();
    for n in 0..ORDERS {
        let answer = http
            .post(format!("{}/orders/{n}", pipeline.tap_url))
            .header("x-request-id", format!("{prefix}-{n}"))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
    }

    // Every order compared for both shadows, whole.
    eventually("every replayed order compared", Duration::from_secs(60), || async {
        let n: u64 = pipeline
            .clickhouse
            .query("SELECT count() FROM exchanges FINAL WHERE outcome = 'complete' AND startsWith(request_id, ?)")
            .bind(&prefix)
            .fetch_one()
            .await
            .map_err(|e| e.to_string())?;
        if n == 2 * ORDERS { Ok(()) } else { Err(format!("{n} compared")) }
    })
    .await;
    // Only the primary reached the dependency: a price and a charge per order.
    assert_eq!(payments.hits.load(Ordering::SeqCst), 2 * ORDERS, "no shadow call may reach the dependency");

    // The shadows were answered with the primary's charges: their orders match it.
    let differing: u64 = pipeline
        .clickhouse
        .query("SELECT count() FROM differences FINAL WHERE startsWith(request_id, ?) AND path = 'charge'")
        .bind(&prefix)
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(differing, 0, "a shadow got another charge than the primary's");

    // The candidate's refunds had no recorded call to answer them: 502, and unmatched.
    let refunds: Vec<String> =
        (0..ORDERS).filter(|n| n.is_multiple_of(REFUND_EVERY)).map(|n| format!("{prefix}-{n}")).collect();
    let unmatched: Vec<(String, String, String)> =
        eventually("the unmatched calls", Duration::from_secs(30), || async {
            let rows: Vec<(String, String, String)> = pipeline
                .clickhouse
                .query(
                    "SELECT request_id, call, shadow_value FROM outbound_differences FINAL \
                 WHERE kind = 'unmatched' AND startsWith(request_id, ?) ORDER BY request_id",
                )
                .bind(&prefix)
                .fetch_all()
                .await
                .map_err(|e| e.to_string())?;
            if rows.len() == refunds.len() { Ok(rows) } else { Err(format!("{rows:?}")) }
        })
        .await;
    let mut want: Vec<(String, String, String)> =
        refunds.iter().map(|id| (id.clone(), format!("POST {dependency} /refunds"), "502".to_owned())).collect();
    want.sort();
    assert_eq!(unmatched, want);
    let secondary_differs: u64 = pipeline
        .clickhouse
        .query("SELECT count() FROM outbound_differences FINAL WHERE deployment = 'secondary' AND startsWith(request_id, ?)")
        .bind(&prefix)
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(secondary_differs, 0, "the secondary's stubbed calls match the primary's");

    let report = shadowdiff_tests::verdict::report(&pipeline.verdict_url, &format!("candidate={CANDIDATE}")).await;
    let criterion = report.criteria.iter().find(|c| c.name == "downstream_calls").unwrap();
    assert_eq!((criterion.status, criterion.observed), (Decision::Fail, refunds.len() as f64), "{}", criterion.reason);
    for (tap, _) in taps {
        tap.stop().await;
    }
    pipeline.stop().await;
}

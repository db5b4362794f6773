//! The verdict service on crafted evidence in the real ClickHouse: each criterion computed
//! by the SQL, stage gates, releases and time windows, the Argo Rollouts and Flagger contracts with their
//! exact request shapes, and the drill-down page as headless Chromium renders it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::Value;
use shadowdiff_store::{DifferenceRow, ExchangeRow};
use shadowdiff_tests::infra::Infra;
use shadowdiff_tests::verdict::{FROM_START, START_TS, VerdictService, difference, row, sample};
use shadowdiff_verdict::{Decision, VerdictReport};

const TOKEN: &str = shadowdiff_tests::auth::READ_TOKEN;
const WRITE_TOKEN: &str = shadowdiff_tests::auth::WRITE_TOKEN;

/// 500 comparisons over 500 s for each candidate, and the secondary's on the same requests,
/// with the differences of those that diverge.
fn evidence() -> (Vec<ExchangeRow>, Vec<DifferenceRow>) {
    let mut rows = Vec::new();
    let mut differences = Vec::new();
    for i in 0..500 {
        // Passes: equal, 2% slower at p95.
        rows.push(ExchangeRow { shadow_latency_us: 10_200, ..row("clean", i) });
        // Fails on divergence, all of it on one route and one path: a systematic path too.
        let regressed = if i % 8 == 0 {
            ExchangeRow {
                route: "/orders/{id}".into(),
                differences: 2,
                noise: 1,
                body_differs: 1,
                ..row("regressed", i)
            }
        } else {
            ExchangeRow { differences: 1, noise: 1, ..row("regressed", i) }
        };
        if regressed.differences > regressed.noise {
            differences.push(difference(&regressed, "changed_value", "total", ("10", "12"), false));
        }
        differences.push(difference(&regressed, "changed_value", "served_at", ("1", "2"), true));
        rows.push(regressed);
        // Fails on one timeout the primary did not have, alone.
        rows.push(if i == 42 {
            ExchangeRow {
                outcome: "shadow_error".into(),
                shadow_status: 0,
                shadow_error: "timeout".into(),
                ..row("erroring", i)
            }
        } else {
            row("erroring", i)
        });
        // Fails on latency alone: 30% slower, while the secondary is not.
        rows.push(ExchangeRow { shadow_latency_us: 13_000, ..row("slow", i) });
        // Answers 404 on 1% of requests the primary answered 200 (i % 100 == 7): new client
        // errors. Not on request 77, which the secondary refused too, nor on 177, which the
        // primary refused as well.
        rows.push(match i {
            _ if i % 100 == 7 || i == 77 => {
                ExchangeRow { shadow_status: 404, status_differs: 1, differences: 1, ..row("not-found", i) }
            }
            177 => ExchangeRow { primary_status: 404, shadow_status: 404, ..row("not-found", i) },
            _ => row("not-found", i),
        });
        rows.push(if i == 77 {
            ExchangeRow { shadow_status: 404, status_differs: 1, differences: 1, ..row("secondary", i) }
        } else {
            row("secondary", i)
        });
        // Just as slow against the primary, but so is the secondary on these requests: the
        // replay path, not the candidate. Judged against the secondary, it passes.
        let j = 10_000 + i;
        rows.push(ExchangeRow { shadow_latency_us: 13_000, ..row("slow-env", j) });
        rows.push(ExchangeRow { shadow_latency_us: 12_900, ..row("secondary", j) });
    }
    // Too few to conclude anything.
    rows.extend((0..20).map(|i| row("few", i)));
    (rows, differences)
}

async fn verdict(service: &VerdictService, query: &str) -> VerdictReport {
    let response = reqwest::Client::new()
        .get(format!("{}/v1/verdict?{query}", service.url))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{query}");
    response.json().await.unwrap()
}

/// The verdict and the criteria that did not pass, by name.
fn outcome(report: &VerdictReport) -> (Decision, Vec<(&str, Decision)>) {
    let open = report.criteria.iter().filter(|c| c.status != Decision::Pass).map(|c| (c.name.as_str(), c.status));
    (report.verdict, open.collect())
}

#[tokio::test]
async fn each_criterion_is_computed_from_the_stored_rows() {
    let infra = Infra::get().await;
    // Stage 50 wants more evidence than the others.
    let service = VerdictService::start(&infra, &format!("{FROM_START}\n[verdict.gates.50]\nmin_samples = 1000")).await;
    // not-found's differences: its five status changes, and a field changed more often.
    let (rows, mut differences) = evidence();
    let not_found =
        |i: u32| rows.iter().find(|r| r.deployment == "not-found" && r.request_id == format!("req-{i}")).unwrap();
    differences.extend(
        [7, 107, 207, 307, 407]
            .into_iter()
            .map(|i| difference(not_found(i), "status", "status", ("200", "404"), false)),
    );
    differences.extend((10..20).map(|i| difference(not_found(i), "changed_value", "price", ("1", "2"), false)));
    service.insert(&rows, &differences, &[]).await;

    let clean = verdict(&service, "candidate=clean&stage=10").await;
    assert_eq!(outcome(&clean), (Decision::Pass, vec![]), "{:?}", clean.reasons);
    assert_eq!((clean.samples, clean.compared, clean.span_secs), (500, 500, 499));
    assert!((clean.latency.p95_delta - 0.02).abs() < 1e-9, "{:?}", clean.latency);
    assert_eq!(clean.latency.secondary_p95_delta, Some(0.0), "the A/A baseline, on the same requests");
    assert_eq!((clean.latency.primary.p50, clean.latency.candidate.p99), (10.0, 10.2));

    let regressed = verdict(&service, "candidate=regressed&stage=10").await;
    assert_eq!(
        outcome(&regressed),
        (Decision::Fail, vec![("divergence_rate", Decision::Fail), ("divergent_paths", Decision::Fail)])
    );
    let total = &regressed.divergent_paths[0];
    assert_eq!(
        (total.route.as_str(), total.path.as_str(), total.candidate, total.secondary),
        ("/orders/{id}", "total", 63, 0)
    );
    assert_eq!((regressed.divergence.count, regressed.divergence.of, regressed.noise_only), (63, 500, 437));
    assert_eq!(regressed.routes[0].route, "/orders/{id}", "the worst route first");
    assert_eq!(regressed.routes[0].verdict, Decision::Fail);
    let other = &regressed.routes[1];
    assert_eq!((other.divergence.count, other.samples), (0, 437), "the other route only shows noise");
    assert_ne!(other.verdict, Decision::Fail);

    let erroring = verdict(&service, "candidate=erroring&stage=10").await;
    assert_eq!(outcome(&erroring), (Decision::Fail, vec![("new_errors", Decision::Fail)]));
    assert_eq!((erroring.new_errors.count, erroring.new_errors.of, erroring.incomplete), (1, 500, 1));

    let slow = verdict(&service, "candidate=slow&stage=10").await;
    assert_eq!(
        outcome(&slow),
        (Decision::Fail, vec![("latency_p50_delta", Decision::Fail), ("latency_p95_delta", Decision::Fail)])
    );
    let shift = slow.latency.p95_shift.unwrap();
    assert!((shift.observed - 0.30).abs() < 1e-9 && shift.lower > 0.05, "{shift:?}");
    assert_eq!((slow.latency.pairs, slow.latency.against_secondary), (500, true), "paired with the secondary");
    let slow_env = verdict(&service, "candidate=slow-env&stage=10").await;
    assert_eq!(outcome(&slow_env), (Decision::Pass, vec![]), "{:?}", slow_env.criteria);
    let aa = slow_env.latency.secondary_p95_delta.unwrap();
    assert!((slow_env.latency.p95_delta - 0.30).abs() < 1e-9 && (aa - 0.29).abs() < 1e-9, "{:?}", slow_env.latency);

    let not_found = verdict(&service, "candidate=not-found&stage=10").await;
    assert_eq!(not_found.verdict, Decision::Fail, "{:?}", not_found.reasons);
    assert!(outcome(&not_found).1.contains(&("new_errors", Decision::Fail)), "{:?}", not_found.criteria);
    assert_eq!((not_found.new_errors.count, not_found.new_client_errors), (5, 5), "not 77 nor 177");
    let kinds: Vec<(&str, u64)> = not_found.top_paths.iter().map(|p| (p.kind.as_str(), p.count)).collect();
    assert_eq!(kinds, [("status", 5), ("changed_value", 10)], "status changes first, however many other paths differ");

    let few = verdict(&service, "candidate=few&stage=10").await;
    assert_eq!(
        outcome(&few),
        (
            Decision::Inconclusive,
            vec![
                ("samples", Decision::Inconclusive),
                ("duration", Decision::Inconclusive),
                ("divergence_rate", Decision::Inconclusive)
            ]
        )
    );

    // The stage chooses the gate, never the rows: whatever stage the mirror recorded.
    let fifty = verdict(&service, "candidate=clean&stage=50").await;
    assert_eq!((fifty.verdict, fifty.samples, fifty.stage.as_str()), (Decision::Inconclusive, 500, "50"));
    assert_eq!(outcome(&fifty).1, vec![("samples", Decision::Inconclusive)]);
    let shadow = verdict(&service, "candidate=clean").await;
    assert_eq!((shadow.verdict, shadow.stage.as_str()), (Decision::Pass, "shadow"), "no stage: the shadow gate");
    // Rows from a point in time on.
    let late = verdict(&service, &format!("candidate=clean&stage=10&since={}", START_TS + 250)).await;
    assert_eq!((late.verdict, late.samples, late.since), (Decision::Inconclusive, 250, START_TS + 250));

    service.stop().await;
}

/// On a ClickHouse cluster the rows are sharded behind Distributed tables; every report, each
/// criterion, path and route in it, is the one the single server gives on the same rows.
#[tokio::test]
async fn on_a_clickhouse_cluster_every_report_is_the_one_server_gives() {
    let (rows, differences) = evidence();
    let single = VerdictService::start(&Infra::get().await, FROM_START).await;
    let cluster = VerdictService::start(&Infra::cluster().await, FROM_START).await;
    for service in [&single, &cluster] {
        service.insert(&rows, &differences, &[]).await;
    }
    let body = |service: &VerdictService, query: String| {
        let url = format!("{}/v1/verdict?{query}", service.url);
        async move {
            let response = reqwest::Client::new().get(url).bearer_auth(TOKEN).send().await.unwrap();
            assert_eq!(response.status(), 200);
            response.json::<Value>().await.unwrap()
        }
    };
    for candidate in ["clean", "regressed", "erroring", "slow", "slow-env", "not-found", "few"] {
        let query = format!("candidate={candidate}&stage=10&since={START_TS}");
        let (one, sharded) = (body(&single, query.clone()).await, body(&cluster, query).await);
        assert_eq!(sharded, one, "{candidate}");
    }
    single.stop().await;
    cluster.stop().await;
}

/// What Prometheus alerts on: each candidate's verdict as gauges on the admin port, kept
/// fresh without anyone asking, at the stage its CD system last asked about; the series of
/// the stage it left read zero, so an alert on them resolves.
#[tokio::test]
async fn each_candidates_verdict_is_exported_as_gauges_at_its_current_stage() {
    let infra = Infra::get().await;
    let service = VerdictService::start(&infra, &format!("{FROM_START}\ngauge_interval_secs = 1")).await;
    let (failing, passing) = (shadowdiff_tests::unique("failing"), shadowdiff_tests::unique("passing"));
    let mut rows = Vec::new();
    let mut differences = Vec::new();
    for i in 0..500 {
        rows.push(row(&passing, i));
        let changed = i % 8 == 0;
        let exchange =
            ExchangeRow { differences: u32::from(changed), body_differs: u8::from(changed), ..row(&failing, i) };
        if changed {
            differences.push(difference(&exchange, "changed_value", "total", ("10", "12"), false));
        }
        rows.push(exchange);
    }
    service.insert(&rows, &differences, &[]).await;

    let gauge = |name: &'static str, labels: String| {
        let admin = service.admin_url.clone();
        async move { shadowdiff_tests::admin::metric(&admin, name, &labels).await }
    };
    let verdict_is = |candidate: &str, stage: &str, verdict: &str| {
        format!("candidate=\"{candidate}\",stage=\"{stage}\",verdict=\"{verdict}\"")
    };
    let at = |candidate: &str, stage: &str| format!("candidate=\"{candidate}\",stage=\"{stage}\"");
    shadowdiff_tests::eventually("the failing candidate's gauge", Duration::from_secs(30), || async {
        let fail = gauge("shadowdiff_candidate_verdict", verdict_is(&failing, "shadow", "fail")).await;
        let pass = gauge("shadowdiff_candidate_verdict", verdict_is(&passing, "shadow", "pass")).await;
        if (fail, pass) == (1.0, 1.0) { Ok(()) } else { Err(format!("fail {fail}, pass {pass}")) }
    })
    .await;
    assert_eq!(gauge("shadowdiff_candidate_verdict", verdict_is(&failing, "shadow", "pass")).await, 0.0);
    assert_eq!(gauge("shadowdiff_candidate_comparisons", at(&failing, "shadow")).await, 500.0);
    assert_eq!(gauge("shadowdiff_candidate_divergence_ratio", at(&failing, "shadow")).await, 63.0 / 500.0);
    assert_eq!(gauge("shadowdiff_candidate_divergence_ratio", at(&passing, "shadow")).await, 0.0);
    assert_eq!(gauge("shadowdiff_candidate_divergence_limit_ratio", at(&failing, "shadow")).await, 0.01);

    // Its CD system moves it on to stage 10: the gauges follow, and the shadow's go to zero.
    verdict(&service, &format!("candidate={failing}&stage=10")).await;
    shadowdiff_tests::eventually("the gauges at stage 10", Duration::from_secs(30), || async {
        let at_10 = gauge("shadowdiff_candidate_verdict", verdict_is(&failing, "10", "fail")).await;
        let at_shadow = gauge("shadowdiff_candidate_verdict", verdict_is(&failing, "shadow", "fail")).await;
        if (at_10, at_shadow) == (1.0, 0.0) { Ok(()) } else { Err(format!("stage 10 {at_10}, shadow {at_shadow}")) }
    })
    .await;
    assert_eq!(gauge("shadowdiff_candidate_comparisons", at(&failing, "shadow")).await, 0.0);
    service.stop().await;
}

/// A replay run's rows are judged on their own, with `run`, and never in the live traffic's
/// verdict; a run's verdict is no rollout's, so it is recorded nowhere.
#[tokio::test]
async fn a_replay_run_is_judged_apart_from_the_live_traffic() {
    let infra = Infra::get().await;
    let service = VerdictService::start(&infra, FROM_START).await;
    let mut rows = Vec::new();
    let mut differences = Vec::new();
    for i in 0..500 {
        rows.push(row("v2", i));
        // The same requests, replayed in run r1 to a build that changes every eighth total.
        let changed = i % 8 == 0;
        let replayed = ExchangeRow {
            request_id: format!("r1:req-{i}"),
            run: "r1".into(),
            differences: u32::from(changed),
            body_differs: u8::from(changed),
            ..row("v2", i)
        };
        if changed {
            differences.push(difference(&replayed, "changed_value", "total", ("10", "12"), false));
        }
        rows.push(replayed);
    }
    service.insert(&rows, &differences, &[]).await;

    let live = verdict(&service, "candidate=v2&stage=10").await;
    assert_eq!(outcome(&live), (Decision::Pass, vec![]), "{:?}", live.reasons);
    assert_eq!((live.samples, live.run.as_deref()), (500, None), "the live rows alone");
    let run = verdict(&service, "candidate=v2&stage=10&run=r1").await;
    assert_eq!(run.verdict, Decision::Fail, "{:?}", run.reasons);
    assert_eq!((run.samples, run.divergence.count, run.run.as_deref()), (500, 63, Some("r1")));
    assert_eq!(run.divergent_paths[0].path, "total");
    let unknown = verdict(&service, "candidate=v2&stage=10&run=r2").await;
    assert_eq!((unknown.samples, unknown.verdict), (0, Decision::Inconclusive));

    for bad in ["run=a:b", "run=r1&revision=abc"] {
        let answer = reqwest::Client::new()
            .get(format!("{}/v1/verdict?candidate=v2&{bad}", service.url))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 400, "{bad}");
    }
    // Only the live asks are verdicts given.
    shadowdiff_tests::eventually("the live verdict recorded", Duration::from_secs(10), || async {
        let recorded: u64 = service
            .clickhouse
            .query("SELECT count() FROM verdicts WHERE candidate = 'v2'")
            .fetch_one()
            .await
            .map_err(|e| e.to_string())?;
        if recorded == 1 { Ok(()) } else { Err(format!("{recorded} verdicts")) }
    })
    .await;
    service.stop().await;
}

#[tokio::test]
async fn a_field_changed_on_a_few_responses_fails_while_the_shuffled_array_does_not() {
    let infra = Infra::get().await;
    let service = VerdictService::start(&infra, FROM_START).await;
    let mut rows = Vec::new();
    let mut differences = Vec::new();
    for i in 0..500 {
        // `price` changed by a cent on 8 of 500 responses (1.6%): overall too close to the 1%
        // bound to conclude, but the secondary never changes it.
        let priced = i % 70 == 3;
        let candidate = ExchangeRow { differences: u32::from(priced), ..row("price-cent", i) };
        if priced {
            differences.push(difference(
                &candidate,
                "changed_value",
                &format!("items[{}].price", i % 3),
                ("9.99", "10.00"),
                false,
            ));
        }
        // Every leg shuffles `items`: on 12 exchanges the candidate's order differed where the
        // secondary's happened to match the primary's (so not noise there), and on 15 others
        // the secondary's differed.
        let shuffled = ExchangeRow { differences: u32::from(i % 40 == 1), ..row("shuffled", i) };
        if i % 40 == 1 {
            differences.push(difference(&shuffled, "order_only", "items", ("[..]", "[..]"), false));
        }
        let secondary = row("secondary", i);
        if i % 33 == 2 {
            differences.push(difference(&secondary, "order_only", "items", ("[..]", "[..]"), false));
        }
        rows.extend([candidate, shuffled, secondary]);
    }
    service.insert(&rows, &differences, &[]).await;

    let priced = verdict(&service, "candidate=price-cent&stage=shadow").await;
    assert_eq!(priced.verdict, Decision::Fail, "{:?}", priced.reasons);
    assert_eq!(
        outcome(&priced).1,
        vec![("divergence_rate", Decision::Inconclusive), ("divergent_paths", Decision::Fail)],
        "the overall rate alone could not tell"
    );
    let path = &priced.divergent_paths[0];
    assert_eq!(
        (path.route.as_str(), path.path.as_str(), path.kind.as_str(), path.candidate, path.secondary),
        ("/items/{id}", "items[*].price", "changed_value", 8, 0),
        "indices generalised"
    );
    assert_eq!(path.examples.len(), 3);

    let shuffled = verdict(&service, "candidate=shuffled&stage=shadow").await;
    assert!(shuffled.divergent_paths.is_empty(), "{:?}", shuffled.divergent_paths);
    let criterion = shuffled.criteria.iter().find(|c| c.name == "divergent_paths").unwrap();
    assert_eq!(criterion.status, Decision::Pass, "{}", criterion.reason);
    // Nor do those 12 exchanges count in the overall rate: the secondary shows the path too.
    assert_eq!((shuffled.divergence.count, shuffled.noise_only), (0, 13), "{:?}", shuffled.divergence);
    assert!(shuffled.top_paths.is_empty(), "{:?}", shuffled.top_paths);

    service.stop().await;
}

/// POSTs a change to the acceptances API with `token`; the status and the JSON answer.
async fn change(service: &VerdictService, token: &str, action: &str, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/v1/acceptances{action}", service.url))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn an_accepted_difference_counts_nowhere_until_revoked_or_expired() {
    let infra = Infra::get().await;
    let service = VerdictService::start(&infra, FROM_START).await;
    // A new field on every response of one route: intended.
    let rows: Vec<ExchangeRow> = (0..500).map(|i| ExchangeRow { differences: 1, ..row("discounted", i) }).collect();
    let differences: Vec<DifferenceRow> =
        rows.iter().map(|r| difference(r, "added", "items[0].discount", ("", "5"), false)).collect();
    service.insert(&rows, &differences, &[]).await;
    let failing = verdict(&service, "candidate=discounted").await;
    assert_eq!(failing.verdict, Decision::Fail);
    assert_eq!(failing.divergent_paths[0].path, "items[*].discount");

    let accept = serde_json::json!({
        "candidate": "discounted", "route": "/items/{id}", "path": "items[*].discount",
        "reason": "discounts launch with v2",
    });
    let (status, _) = change(&service, TOKEN, "", accept.clone()).await;
    assert_eq!(status, 403, "accepting needs the write scope");
    let (status, answer) = change(&service, "", "", accept.clone()).await;
    assert_eq!(status, 401, "{answer}");
    let no_reason = serde_json::json!({ "candidate": "discounted", "route": "/items/{id}", "path": "x" });
    let (status, answer) = change(&service, WRITE_TOKEN, "", no_reason).await;
    assert_eq!(status, 400);
    assert!(answer["error"].as_str().unwrap().contains("reason is required"), "{answer}");
    let (status, answer) = change(&service, WRITE_TOKEN, "", accept.clone()).await;
    assert_eq!(
        (status, answer["state"].as_str(), answer["actor"].as_str()),
        (201, Some("active"), Some("test-operator"))
    );

    let accepted = verdict(&service, "candidate=discounted").await;
    assert_eq!(accepted.verdict, Decision::Pass, "{:?}", accepted.reasons);
    assert_eq!((accepted.divergence.count, accepted.divergent_paths.len()), (0, 0));
    let shown = &accepted.accepted[0];
    assert_eq!((shown.path.as_str(), shown.candidate), ("items[*].discount", 500));
    assert_eq!(
        (shown.acceptance.reason.as_str(), shown.acceptance.actor.as_str()),
        ("discounts launch with v2", "test-operator")
    );

    // Revoked, it counts again at once; the log keeps both.
    let revoke = serde_json::json!({ "candidate": "discounted", "route": "/items/{id}", "path": "items[*].discount" });
    let (status, answer) = change(&service, WRITE_TOKEN, "/revoke", revoke).await;
    assert_eq!((status, answer["state"].as_str()), (200, Some("revoked")));
    assert_eq!(verdict(&service, "candidate=discounted").await.verdict, Decision::Fail);
    let log: u64 = service
        .clickhouse
        .query("SELECT count() FROM acceptances WHERE candidate = 'discounted'")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(log, 2);

    // Accepted for a second, it lapses by itself.
    let brief = serde_json::json!({
        "candidate": "discounted", "route": "/items/{id}", "path": "items[*].discount",
        "reason": "until the flag flips", "expires": "1s",
    });
    assert_eq!(change(&service, WRITE_TOKEN, "", brief).await.0, 201);
    let listed =
        shadowdiff_tests::eventually("the acceptance to expire", std::time::Duration::from_secs(10), || async {
            let listed: Value = reqwest::Client::new()
                .get(format!("{}/v1/acceptances?candidate=discounted", service.url))
                .bearer_auth(TOKEN)
                .send()
                .await
                .map_err(|e| e.to_string())?
                .json()
                .await
                .map_err(|e| e.to_string())?;
            if listed[0]["state"] == "expired" { Ok(listed) } else { Err(listed.to_string()) }
        })
        .await;
    assert_eq!(listed[0]["reason"], "until the flag flips");
    assert_eq!(verdict(&service, "candidate=discounted").await.verdict, Decision::Fail);

    service.stop().await;
}

#[tokio::test]
async fn what_the_noise_model_keeps_absorbing_is_suggested_as_rules_the_correlator_loads() {
    let infra = Infra::get().await;
    let service = VerdictService::start(&infra, FROM_START).await;
    let mut rows = Vec::new();
    let mut differences = Vec::new();
    for i in 0..100 {
        let candidate = ExchangeRow { differences: 2, noise: 2, ..row("noisy", i) };
        differences.push(difference(&candidate, "changed_value", "served_at", ("\"10:00\"", "\"10:01\""), true));
        differences.push(difference(
            &candidate,
            "order_only",
            &format!("orders[{}].lines", i % 4),
            ("[..]", "[..]"),
            true,
        ));
        if i < 10 {
            // Too rare to suggest.
            differences.push(difference(&candidate, "changed_value", "etag", ("\"a\"", "\"b\""), true));
        }
        rows.push(candidate);
    }
    // One primary body of the route was sampled: its order lines carry a `sku`.
    let body = r#"{"orders":[{"lines":[{"sku":"a-1","qty":1},{"sku":"b-2","qty":3}]}],"served_at":"10:00"}"#;
    let sampled = [sample(&rows[5], "primary", "primary", 200, body)];
    service.insert(&rows, &differences, &sampled).await;

    let response = reqwest::Client::new()
        .get(format!("{}/v1/suggestions?candidate=noisy", service.url))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let suggestions: shadowdiff_verdict::suggest::Suggestions = response.json().await.unwrap();
    let paths: Vec<(&str, &str, u64)> =
        suggestions.paths.iter().map(|p| (p.path.as_str(), p.kind.as_str(), p.count)).collect();
    assert_eq!(paths, [("orders[*].lines", "order_only", 100), ("served_at", "changed_value", 100)]);
    // Pasted into the correlator's config, it loads with the correlator's own loader.
    let config: shadowdiff_correlator::CorrelatorConfig =
        shadowdiff_runtime::config::load_str(&suggestions.toml, "suggested.toml", Vec::new())
            .unwrap_or_else(|e| panic!("{e}\n{}", suggestions.toml));
    assert_eq!(config.correlator.routes.len(), 1);
    assert_eq!(config.correlator.routes[0].template, "/items/{id}");
    assert!(
        suggestions.toml.contains(r#"keyed_arrays = [{ path = "orders[*].lines", key = "sku" }]"#),
        "matched on the key its elements carry: {}",
        suggestions.toml
    );
    assert!(suggestions.toml.contains("ignore_paths = [\"served_at\"]"), "{}", suggestions.toml);

    let anonymous = reqwest::get(format!("{}/v1/suggestions?candidate=noisy", service.url)).await.unwrap();
    assert_eq!(anonymous.status(), 401, "read scope, as every route");
    service.stop().await;
}

#[tokio::test]
async fn each_release_is_judged_on_its_own_rows() {
    let infra = Infra::get().await;
    let service = VerdictService::start(&infra, FROM_START).await;
    // One candidate name for every release, as a Service keeps it: release a was clean, then
    // release b, first asked about 600 s later, diverges on every request.
    let mut rows: Vec<ExchangeRow> = (0..500).map(|i| row("shop-canary", i)).collect();
    rows.extend((600..1100).map(|i| ExchangeRow { differences: 1, ..row("shop-canary", i) }));
    let differences: Vec<DifferenceRow> = rows
        .iter()
        .filter(|r| r.differences > 0)
        .map(|r| difference(r, "changed_value", "price", ("1", "2"), false))
        .collect();
    service.insert(&rows, &differences, &[]).await;
    service.released("shop-canary", "a", START_TS).await;
    service.released("shop-canary", "b", START_TS + 599).await;
    // A second replica of the verdict service recorded b too, later: the earliest ask counts.
    service.released("shop-canary", "b", START_TS + 700).await;

    let b = verdict(&service, "candidate=shop-canary&stage=10&revision=b").await;
    assert_eq!(
        (b.verdict, b.samples, b.since, b.revision.as_deref()),
        (Decision::Fail, 500, START_TS + 600, Some("b")),
        "b alone, not diluted by a's clean rows: from the second after its first ask"
    );
    let narrowed =
        verdict(&service, &format!("candidate=shop-canary&stage=10&revision=b&since={}", START_TS + 1000)).await;
    assert_eq!(narrowed.samples, 100, "a later since narrows a release's window");

    // The fix, release c, is asked about for the first time now: b's failure is not its own.
    let asked_at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let c = verdict(&service, "candidate=shop-canary&stage=10&revision=c").await;
    assert_eq!((c.verdict, c.samples), (Decision::Inconclusive, 0), "{:?}", c.reasons);
    assert!(u64::from(c.since).abs_diff(asked_at + 1) <= 5, "c starts when first asked: {} vs {asked_at}", c.since);
    let again = verdict(&service, "candidate=shop-canary&stage=10&revision=c").await;
    assert_eq!(again.since, c.since, "and keeps that start");
    let recorded: Vec<(String, u32, String)> = service
        .clickhouse
        .query("SELECT revision, toUInt32(first_asked), caller FROM releases WHERE revision = 'c'")
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(
        recorded,
        [("c".to_owned(), c.since - 1, "api".to_owned())],
        "recorded once; its window starts a second later"
    );

    // Each verdict on record names its release and window.
    let on_record =
        shadowdiff_tests::eventually("b's verdict on record", std::time::Duration::from_secs(10), || async {
            let rows: Vec<(String, u32, String)> = service
                .clickhouse
                .query("SELECT revision, toUInt32(since), verdict FROM verdicts WHERE revision = 'b' ORDER BY since")
                .fetch_all()
                .await
                .map_err(|e| e.to_string())?;
            if rows.len() == 2 { Ok(rows) } else { Err(format!("{rows:?}")) }
        })
        .await;
    assert_eq!(on_record[0], ("b".to_owned(), START_TS + 600, "fail".to_owned()));

    service.stop().await;
}

#[tokio::test]
async fn argo_and_flagger_get_the_answers_their_contracts_expect() {
    let infra = Infra::get().await;
    let service = VerdictService::start(&infra, FROM_START).await;
    let (rows, differences) = evidence();
    service.insert(&rows, &differences, &[]).await;
    // Flagger names the release by its checksum: each candidate's began with the rows.
    for candidate in ["clean", "regressed", "few"] {
        service.released(candidate, "85d557f47b", START_TS).await;
    }
    let client = reqwest::Client::new();

    // Argo Rollouts web metric: GET with the bearer header, jsonPath `{$}`, then
    // successCondition `result.verdict == "pass"` and failureCondition `result.verdict == "fail"`.
    for (candidate, expected) in [("clean", "pass"), ("regressed", "fail"), ("few", "inconclusive")] {
        let result: Value = client
            .get(format!("{}/v1/verdict?candidate={candidate}&stage=10", service.url))
            .header("Authorization", format!("Bearer {TOKEN}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(result["verdict"], expected, "{candidate}");
    }
    let anonymous = client.get(format!("{}/v1/verdict?candidate=clean", service.url)).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);

    // Flagger webhooks: the payload Flagger posts, and only the status code read.
    let flagger = |hook: &'static str, candidate: &'static str| {
        let client = client.clone();
        let url = format!("{}/v1/flagger/{hook}", service.url);
        async move {
            let payload = serde_json::json!({
                "name": "podinfo",
                "namespace": "test",
                "phase": "Progressing",
                "checksum": "85d557f47b",
                "metadata": { "candidate": candidate, "stage": "10" }
            });
            client.post(url).bearer_auth(TOKEN).json(&payload).send().await.unwrap().status().as_u16()
        }
    };
    // `gate` (confirm-* hooks): 200 only on pass, so Flagger waits otherwise.
    assert_eq!(flagger("gate", "clean").await, 200);
    assert_eq!(flagger("gate", "few").await, 412);
    assert_eq!(flagger("gate", "regressed").await, 412);
    // `check` (rollout hooks): non-2xx only on fail, counted toward the rollback threshold.
    assert_eq!(flagger("check", "clean").await, 200);
    assert_eq!(flagger("check", "few").await, 200);
    assert_eq!(flagger("check", "regressed").await, 412);

    // Every verdict given is on record, with who asked for it.
    let recorded =
        shadowdiff_tests::eventually("the verdicts on record", std::time::Duration::from_secs(10), || async {
            let rows: Vec<(String, String, String)> = service
                .clickhouse
                .query("SELECT caller, candidate, verdict FROM verdicts ORDER BY caller, candidate, verdict")
                .fetch_all()
                .await
                .map_err(|e| e.to_string())?;
            if rows.len() == 9 { Ok(rows) } else { Err(format!("{} rows: {rows:?}", rows.len())) }
        })
        .await;
    let row =
        |caller: &str, candidate: &str, verdict: &str| (caller.to_owned(), candidate.to_owned(), verdict.to_owned());
    assert_eq!(
        recorded,
        [
            row("api", "clean", "pass"),
            row("api", "few", "inconclusive"),
            row("api", "regressed", "fail"),
            row("flagger-check", "clean", "pass"),
            row("flagger-check", "few", "inconclusive"),
            row("flagger-check", "regressed", "fail"),
            row("flagger-gate", "clean", "pass"),
            row("flagger-gate", "few", "inconclusive"),
            row("flagger-gate", "regressed", "fail"),
        ]
    );

    service.stop().await;
}

#[tokio::test]
async fn the_drill_down_page_highlights_the_difference_in_chromium() {
    let chromium = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|c| std::process::Command::new(c).arg("--version").output().is_ok_and(|o| o.status.success()))
        .expect("headless Chromium is needed: apt-get install -y chromium (deploy/local/test.sh installs it)");
    let infra = Infra::get().await;
    let service = VerdictService::start(&infra, "").await;
    let id = "req-7";
    let exchange = ExchangeRow { differences: 2, noise: 1, body_differs: 1, ..row("v2", 7) };
    service
        .insert(
            &[exchange.clone(), row("secondary", 7)],
            &[
                difference(&exchange, "changed_value", "total", ("100", "90"), false),
                difference(&exchange, "changed_value", "generated_at", ("\"10:00\"", "\"10:01\""), true),
            ],
            &[
                sample(
                    &exchange,
                    "primary",
                    "primary",
                    200,
                    r#"{"id":7,"total":100,"generated_at":"10:00","note":"<b>x</b>"}"#,
                ),
                sample(
                    &exchange,
                    "candidate",
                    "v2",
                    200,
                    r#"{"id":7,"total":90,"generated_at":"10:01","note":"<b>x</b>"}"#,
                ),
            ],
        )
        .await;

    // The page needs credentials: a browser gets them from the SSO proxy in front.
    let direct = reqwest::get(format!("{}/exchanges/{id}", service.url)).await.unwrap();
    assert_eq!(direct.status(), 401, "the page is closed to anonymous browsers");
    let proxy = shadowdiff_tests::auth::sso_proxy(service.url.clone(), "ann").await;

    let profile = std::env::temp_dir().join(shadowdiff_tests::unique("chromium-profile"));
    let output = tokio::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("http://{proxy}/exchanges/{id}"))
        .output()
        .await
        .unwrap();
    let _ = std::fs::remove_dir_all(&profile);
    let dom = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && dom.contains("</html>"),
        "chromium: {}",
        String::from_utf8_lossy(&output.stderr)
    );

    // The candidate's changed lines are marked, and only those.
    let marked = |pane: &str, class: &str| -> Vec<String> {
        let body = dom.split(&format!("id=\"{pane}\"")).nth(1).unwrap().split("</pre>").next().unwrap();
        body.split(&format!("<mark class=\"{class}\">"))
            .skip(1)
            .map(|m| m.split("</mark>").next().unwrap().trim().to_owned())
            .collect()
    };
    assert_eq!(marked("candidate-body", "changed"), [r#""generated_at": "10:01","#, r#""total": 90"#]);
    assert_eq!(marked("primary-body", "removed"), [r#""generated_at": "10:00","#, r#""total": 100"#]);
    // The differences table tells the divergence from the noise.
    assert!(dom.contains("<tr class=\"divergence\"><td>changed_value</td><td><code>total</code>"), "{dom}");
    assert!(dom.contains("<tr class=\"noise\"><td>changed_value</td><td><code>generated_at</code>"), "{dom}");
    // Bodies are escaped, never interpreted.
    assert!(dom.contains("&lt;b&gt;x&lt;/b&gt;") && !dom.contains("<b>x</b>"), "{dom}");

    service.stop().await;
}

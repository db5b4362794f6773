use std::time::Duration;

use super::*;

/// Evidence that meets the default policy on every criterion: 1000 clean comparisons over
/// ten minutes, the candidate 2% slower at p95.
fn healthy() -> Evidence {
    Evidence {
        samples: 1000,
        compared: 1000,
        diverged: 0,
        noise_only: 300,
        answered: 1000,
        new_errors: 0,
        new_client_errors: 0,
        divergent_paths: Vec::new(),
        downstream: Downstream::default(),
        span_secs: 600,
        latency: Latency {
            primary: Quantiles { p50: 2.0, p95: 10.0, p99: 20.0 },
            candidate: Quantiles { p50: 2.0, p95: 10.2, p99: 21.0 },
            secondary: Some(Quantiles { p50: 2.0, p95: 10.1, p99: 20.0 }),
            p95_delta: 0.02,
            secondary_p95_delta: Some(0.01),
            pairs: 1000,
            against_secondary: true,
            p50_shift: Some(shift(0.5, 0.0, -0.01, 0.01)),
            p95_shift: Some(shift(0.95, 0.02, 0.0, 0.04)),
        },
    }
}

fn shift(quantile: f64, observed: f64, lower: f64, upper: f64) -> Shift {
    Shift { quantile, observed, lower, upper }
}

fn statuses(evidence: &Evidence) -> (Decision, Vec<(String, Decision)>) {
    let (decision, criteria) = judge(evidence, &GatePolicy::default());
    (decision, criteria.into_iter().map(|c| (c.name, c.status)).collect())
}

/// The verdict, and every criterion that did not pass.
fn verdict(evidence: &Evidence) -> (Decision, Vec<String>) {
    let (decision, criteria) = statuses(evidence);
    (decision, criteria.into_iter().filter(|(_, s)| *s != Decision::Pass).map(|(n, _)| n).collect())
}

#[test]
fn a_rate_carries_its_confidence_sequence() {
    let r = Rate::new(10, 2000);
    assert!((r.rate - 0.005).abs() < 1e-12);
    assert_eq!((r.lower, r.upper), sequential::rate_interval(10, 2000));
    assert_eq!(Rate::new(0, 0).upper, 1.0, "nothing observed: anything is possible");
}

#[test]
fn healthy_evidence_passes() {
    assert_eq!(verdict(&healthy()), (Decision::Pass, vec![]));
}

#[test]
fn divergence_alone_fails() {
    let evidence = Evidence { diverged: 50, ..healthy() };
    assert_eq!(verdict(&evidence), (Decision::Fail, vec!["divergence_rate".to_owned()]));
}

#[test]
fn a_single_new_error_alone_fails() {
    let evidence = Evidence { new_errors: 1, ..healthy() };
    assert_eq!(verdict(&evidence), (Decision::Fail, vec!["new_errors".to_owned()]));
    // A client error counts as one: a 404 where the primary answered 200 is a failure.
    let client = Evidence { new_errors: 2, new_client_errors: 2, ..healthy() };
    let (verdict_, criteria) = judge(&client, &GatePolicy::default());
    assert_eq!(verdict_, Decision::Fail);
    let reason = &criteria.iter().find(|c| c.name == "new_errors").unwrap().reason;
    assert!(reason.contains("0 server errors or timeouts, 2 client errors"), "{reason}");
}

#[test]
fn latency_alone_fails() {
    let mut evidence = healthy();
    evidence.latency.p95_shift = Some(shift(0.95, 0.30, 0.25, 0.35));
    assert_eq!(verdict(&evidence), (Decision::Fail, vec!["latency_p95_delta".to_owned()]));
    let mut evidence = healthy();
    evidence.latency.p50_shift = Some(shift(0.5, 0.08, 0.06, 0.10));
    assert_eq!(verdict(&evidence), (Decision::Fail, vec!["latency_p50_delta".to_owned()]));
}

#[test]
fn a_median_interval_across_the_bound_is_inconclusive_a_tail_one_passes_on_its_estimate() {
    // +4% at p50, but the interval reaches +9%: not yet shown to be within 5%, nor above it.
    let mut evidence = healthy();
    evidence.latency.p50_shift = Some(shift(0.5, 0.04, -0.01, 0.09));
    assert_eq!(verdict(&evidence), (Decision::Inconclusive, vec!["latency_p50_delta".to_owned()]));
    let (_, criteria) = judge(&evidence, &GatePolicy::default());
    let reason = &criteria.iter().find(|c| c.name == "latency_p50_delta").unwrap().reason;
    assert!(
        reason
            .contains("at p50 the candidate adds +4.00% of the primary's p50, against the secondary on the same 1000"),
        "{reason}"
    );
    assert!(reason.contains("straddles 5.00%") && reason.contains("A/A spread"), "{reason}");
    // The tail's interval is wide: within 10% by its estimate, and not shown above, it passes.
    let mut evidence = healthy();
    evidence.latency.p95_shift = Some(shift(0.95, 0.06, -0.05, 0.17));
    assert_eq!(verdict(&evidence), (Decision::Pass, vec![]));
    evidence.latency.p95_shift = Some(shift(0.95, 0.12, -0.01, 0.25));
    assert_eq!(verdict(&evidence), (Decision::Inconclusive, vec!["latency_p95_delta".to_owned()]));
}

#[test]
fn few_samples_are_inconclusive() {
    let evidence = Evidence { samples: 50, compared: 50, answered: 50, noise_only: 10, ..healthy() };
    // 0 of 50 diverged is still compatible with up to 7% divergence.
    assert_eq!(verdict(&evidence), (Decision::Inconclusive, vec!["samples".to_owned(), "divergence_rate".to_owned()]));
}

#[test]
fn a_short_window_is_inconclusive() {
    let evidence = Evidence { span_secs: 30, ..healthy() };
    assert_eq!(verdict(&evidence), (Decision::Inconclusive, vec!["duration".to_owned()]));
}

#[test]
fn an_interval_straddling_the_bound_is_inconclusive() {
    // 1% observed with 1000 samples: 0.54%–1.83%, around the 1% bound.
    let evidence = Evidence { diverged: 10, ..healthy() };
    let (_, criteria) = judge(&evidence, &GatePolicy::default());
    let divergence = criteria.iter().find(|c| c.name == "divergence_rate").unwrap();
    assert!(divergence.lower.unwrap() < 0.01 && divergence.upper.unwrap() > 0.01, "{divergence:?}");
    assert!(divergence.reason.contains("straddles"), "{}", divergence.reason);
    assert_eq!(verdict(&evidence), (Decision::Inconclusive, vec!["divergence_rate".to_owned()]));
}

#[test]
fn failure_needs_no_minimum_sample() {
    // 20 of 40 diverged: too few samples to pass, but plainly a regression.
    let evidence = Evidence { samples: 40, compared: 40, answered: 40, diverged: 20, span_secs: 5, ..healthy() };
    let (decision, _) = verdict(&evidence);
    assert_eq!(decision, Decision::Fail);
}

#[test]
fn nothing_observed_is_inconclusive_everywhere_it_matters() {
    let (decision, criteria) = statuses(&Evidence::default());
    assert_eq!(decision, Decision::Inconclusive);
    assert_eq!(
        criteria,
        vec![
            ("samples".to_owned(), Decision::Inconclusive),
            ("duration".to_owned(), Decision::Inconclusive),
            ("divergence_rate".to_owned(), Decision::Inconclusive),
            ("new_errors".to_owned(), Decision::Pass),
            ("downstream_calls".to_owned(), Decision::Pass),
            ("divergent_paths".to_owned(), Decision::Pass),
            ("latency_p50_delta".to_owned(), Decision::Inconclusive),
            ("latency_p95_delta".to_owned(), Decision::Inconclusive),
        ]
    );
}

#[test]
fn policy_thresholds_are_honoured() {
    let lenient = GatePolicy {
        max_divergence_rate: 0.2,
        max_new_errors: 3,
        min_samples: 10,
        min_duration: Duration::from_secs(1),
        ..GatePolicy::default()
    };
    let evidence = Evidence { diverged: 50, new_errors: 3, ..healthy() };
    assert_eq!(judge(&evidence, &lenient).0, Decision::Pass);
    assert_eq!(judge_route(&evidence, &lenient), Decision::Pass);
    assert_eq!(judge_route(&evidence, &GatePolicy::default()), Decision::Fail);
}

#[test]
fn a_slow_p95_over_too_few_comparisons_is_inconclusive_not_a_failure() {
    let mut evidence = Evidence { samples: 7, compared: 7, answered: 7, ..healthy() };
    evidence.latency.p95_shift = Some(shift(0.95, 0.4, 0.2, 0.6));
    let (_, criteria) = judge(&evidence, &GatePolicy::default());
    let latency = criteria.iter().find(|c| c.name == "latency_p95_delta").unwrap();
    assert_eq!(latency.status, Decision::Inconclusive, "{}", latency.reason);
    evidence.compared = 1000;
    let (_, criteria) = judge(&evidence, &GatePolicy::default());
    assert_eq!(criteria.iter().find(|c| c.name == "latency_p95_delta").unwrap().status, Decision::Fail);
}

#[test]
fn a_systematic_path_fails_whatever_the_overall_rate() {
    let price = DivergentPath {
        route: "/items/{id}".into(),
        path: "price".into(),
        kind: "changed_value".into(),
        candidate: 7,
        secondary: 0,
        p_value: 1.0 / 128.0,
        examples: vec!["req-3".into()],
    };
    // 7 of 3000 diverged overall: well within the 1% bound, interval and all.
    let evidence = Evidence {
        samples: 3000,
        compared: 3000,
        answered: 3000,
        diverged: 7,
        divergent_paths: vec![price],
        ..healthy()
    };
    let (decision, criteria) = judge(&evidence, &GatePolicy::default());
    assert_eq!(decision, Decision::Fail);
    let paths = criteria.iter().find(|c| c.name == "divergent_paths").unwrap();
    assert_eq!(paths.status, Decision::Fail);
    assert!(
        paths.reason.contains("changed_value price at /items/{id} on 7 requests, the secondary on 0"),
        "{}",
        paths.reason
    );
    assert!(paths.reason.contains("e.g. req-3"), "{}", paths.reason);
    let allowed = GatePolicy { max_new_divergent_paths: 1, ..GatePolicy::default() };
    assert_eq!(judge(&evidence, &allowed).0, Decision::Pass);
}

#[test]
fn one_changed_downstream_write_fails_the_default_gate() {
    let policy = GatePolicy::default();
    let changed = Evidence { downstream: Downstream { changed: 1, calls: 0, writes: 1 }, ..healthy() };
    let (decision, criteria) = judge(&changed, &policy);
    assert_eq!(decision, Decision::Fail);
    let criterion = criteria.iter().find(|c| c.name == "downstream_calls").unwrap();
    assert!(criterion.reason.contains("1 with a write's payload or status changed"), "{}", criterion.reason);
    let allowed = GatePolicy { max_downstream_changes: 1, ..policy };
    assert_eq!(judge(&changed, &allowed).0, judge(&healthy(), &allowed).0);
}

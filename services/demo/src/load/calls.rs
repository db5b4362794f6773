//! The downstream calls of an exchange, for the load's `--calls-per-leg`: what each
//! deployment's egress tap publishes on the outbound topic while it answers the request.
//!
//! As a demo backend does for an item read (`crate::backend`), a deployment asks the
//! inventory whether the item is in stock and records that it was viewed: its calls
//! alternate `GET /stock/{item}` and `POST /events`. Every deployment makes the same calls
//! with the same bodies, so the correlator compares each shadow's calls with the primary's
//! and finds them equal, as it would for a release whose side effects did not change.

use serde_json::json;
use shadowdiff_core::event::now_ms;
use shadowdiff_core::{CapturedBody, Header, OutboundCallEvent, RequestEvent, RequestId, ResponseEvent, Role};

/// The dependency every call goes to, as the tap records the call's authority.
const INVENTORY: &str = "inventory.internal:8080";

/// The `count` calls `deployment` (in `role`) made while answering request `id` for `item`,
/// in the order they were made.
pub(super) fn made(
    id: &str,
    item: u64,
    role: Role,
    deployment: &str,
    count: usize,
    rng: &mut fastrand::Rng,
) -> Vec<OutboundCallEvent> {
    let started = now_ms();
    (0..count)
        .map(|n| {
            // n is a call's place among a few: the cast cannot wrap.
            let at = started + n as i64;
            let (request, status, answer) = if n % 2 == 0 {
                let answer = json!({ "item": item, "in_stock": !item.is_multiple_of(7) });
                (call(id, at, "GET", &format!("/stock/{item}"), Some("/stock/{n}"), None), 200, answer)
            } else {
                let event = json!({ "kind": "viewed", "item": item, "seq": n });
                let body = serde_json::to_vec(&event).unwrap_or_default();
                (call(id, at, "POST", "/events", None, Some(&body)), 202, json!({ "recorded": event }))
            };
            // Serializing a `Value` to memory cannot fail (its keys are strings).
            let answer = serde_json::to_vec(&answer).unwrap_or_default();
            OutboundCallEvent {
                request_id: id.to_owned(),
                call_id: RequestId::mint().to_string(),
                linked: true,
                deployment: deployment.to_owned(),
                role,
                response: ResponseEvent {
                    request_id: id.to_owned(),
                    timestamp_ms: at,
                    role,
                    deployment: deployment.to_owned(),
                    status: Some(status),
                    headers: vec![
                        Header::new("content-type", "application/json"),
                        Header::new("content-length", answer.len().to_string()),
                        Header::new("date", "Mon, 01 Jul 2024 12:00:00 GMT"),
                    ],
                    body: CapturedBody::capture(&answer, 64 * 1024),
                    latency_us: i64::from(rng.u32(300..3_000)),
                    error: None,
                    profile: None,
                    stage: None,
                    expected_legs: Vec::new(),
                    run: String::new(),
                },
                request,
            }
        })
        .collect()
}

/// A call's request as the egress tap captures it: an HTTP client's headers, the request id
/// passed on.
fn call(id: &str, at: i64, method: &str, path: &str, template: Option<&str>, body: Option<&[u8]>) -> RequestEvent {
    let mut headers = vec![
        Header::new("host", INVENTORY),
        Header::new("accept", "*/*"),
        Header::new(shadowdiff_core::headers::REQUEST_ID, id),
    ];
    if let Some(body) = body {
        headers.push(Header::new("content-type", "application/json"));
        headers.push(Header::new("content-length", body.len().to_string()));
    }
    RequestEvent {
        request_id: id.to_owned(),
        timestamp_ms: at,
        tap_id: "bench-egress".to_owned(),
        method: method.to_owned(),
        scheme: "http".to_owned(),
        authority: INVENTORY.to_owned(),
        path: path.to_owned(),
        query: None,
        route_template: template.map(str::to_owned),
        headers,
        body: body.map_or_else(CapturedBody::empty, |b| CapturedBody::capture(b, 64 * 1024)),
        run: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_alternate_a_read_and_a_write_and_every_deployment_makes_the_same() {
        let mut rng = fastrand::Rng::with_seed(4);
        let primary = made("req-1", 14, Role::Primary, "primary", 3, &mut rng);
        let candidate = made("req-1", 14, Role::Candidate, "candidate", 3, &mut rng);
        let calls: Vec<(&str, &str, Option<i32>)> =
            primary.iter().map(|c| (c.request.method.as_str(), c.request.path.as_str(), c.response.status)).collect();
        assert_eq!(
            calls,
            [("GET", "/stock/14", Some(200)), ("POST", "/events", Some(202)), ("GET", "/stock/14", Some(200))]
        );
        assert!(primary.iter().chain(&candidate).all(|c| c.request_id == "req-1" && c.linked));
        assert!(candidate.iter().all(|c| c.role == Role::Candidate && c.deployment == "candidate"));
        for (p, c) in primary.iter().zip(&candidate) {
            assert_eq!(p.request.body, c.request.body, "the same payload from every deployment");
            assert_ne!(p.call_id, c.call_id, "each call its own id");
        }
        assert_eq!(primary[1].request.body.bytes, br#"{"item":14,"kind":"viewed","seq":1}"#);
        assert!(primary.windows(2).all(|w| w[0].request.timestamp_ms < w[1].request.timestamp_ms), "in order");
    }
}

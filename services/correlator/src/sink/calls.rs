//! Side effects: how a shadow's downstream calls differ from the primary's, in one exchange.
//!
//! Each deployment's egress tap publishes the calls it made while answering the request
//! (`OutboundCallEvent`), keyed by the request id. Calls are matched by their *call*,
//! `METHOD host route` (the route template, or the path), in the order they were made:
//! the n-th call of a kind by the shadow is compared with the n-th of that kind by the
//! primary. What is left over is a `missing_call` (the primary made it, the shadow did not)
//! or an `extra_call`. A matched pair differs by `status`, or by its request body, diffed
//! by the same JSON, text and hash rules as a response body (`payload` rows take that diff's
//! kinds, at paths below `body`). For destinations configured as ordered, calls made in
//! another order are an `order` difference.
//!
//! A call an egress tap in stub mode answered with no recorded call of the primary's
//! (`x-shadowdiff-stub: unmatched` on its answer) is also an `unmatched` difference.
//!
//! Noise, as for responses: a difference the secondary's calls show too, in this exchange,
//! is noise for every shadow of it.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use shadowdiff_core::OutboundCallEvent;
use shadowdiff_core::diff::{self, DiffOptions, Message};
use shadowdiff_core::event::header_value;
use shadowdiff_core::headers::STUB;

/// Methods whose calls change nothing downstream; any other call is a write.
const SAFE_METHODS: [&str; 4] = ["GET", "HEAD", "OPTIONS", "TRACE"];

/// One way a shadow's calls differ from the primary's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CallDifference {
    /// `METHOD host route`.
    pub(crate) call: String,
    pub(crate) kind: String,
    pub(crate) path: String,
    pub(crate) primary: String,
    pub(crate) shadow: String,
    pub(crate) write: bool,
}

impl CallDifference {
    /// What makes two differences the same one, for noise.
    fn key(&self) -> (&str, &str, &str) {
        (&self.call, &self.kind, &self.path)
    }
}

/// The call a call event is: `METHOD host route`.
pub(crate) fn call_of(event: &OutboundCallEvent) -> String {
    let request = &event.request;
    format!("{} {} {}", request.method, request.authority, request.route())
}

fn is_write(event: &OutboundCallEvent) -> bool {
    !SAFE_METHODS.iter().any(|m| event.request.method.eq_ignore_ascii_case(m))
}

/// Every difference of `shadow`'s calls from `primary`'s (each in the order they were
/// made), with payloads diffed under `options` and the calls to `ordered` hosts compared in
/// order too.
pub(crate) fn compare(
    primary: &[&OutboundCallEvent],
    shadow: &[&OutboundCallEvent],
    options: &DiffOptions,
    ordered: &HashSet<String>,
) -> Vec<CallDifference> {
    let mut by_call: BTreeMap<String, (Vec<&OutboundCallEvent>, Vec<&OutboundCallEvent>)> = BTreeMap::new();
    for call in primary {
        by_call.entry(call_of(call)).or_default().0.push(call);
    }
    for call in shadow {
        by_call.entry(call_of(call)).or_default().1.push(call);
    }
    let mut found = Vec::new();
    for (call, (p, s)) in &by_call {
        let difference = |kind: &str, path: &str, primary: String, shadow: String, write: bool| CallDifference {
            call: call.clone(),
            kind: kind.to_owned(),
            path: path.to_owned(),
            primary,
            shadow,
            write,
        };
        for (pc, sc) in p.iter().zip(s.iter()) {
            let write = is_write(pc);
            if pc.response.status != sc.response.status {
                let status = |c: &OutboundCallEvent| c.response.status.map(|s| s.to_string()).unwrap_or_default();
                found.push(difference("status", "status", status(pc), status(sc), write));
            }
            let payload = diff::compare_bodies(Message::from(&pc.request), Message::from(&sc.request), options);
            for d in payload {
                let (primary, shadow) = (d.primary.unwrap_or_default(), d.shadow.unwrap_or_default());
                found.push(difference(d.kind.as_str(), &d.path, primary, shadow, write));
            }
        }
        let count = |n: usize| n.to_string();
        if p.len() > s.len() {
            found.push(difference("missing_call", "", count(p.len()), count(s.len()), is_write(p[s.len()])));
        } else if s.len() > p.len() {
            found.push(difference("extra_call", "", count(p.len()), count(s.len()), is_write(s[p.len()])));
        }
    }
    for call in shadow.iter().filter(|c| is_unmatched(c)) {
        let status = call.response.status.map(|s| s.to_string()).unwrap_or_default();
        found.push(CallDifference {
            call: call_of(call),
            kind: "unmatched".to_owned(),
            path: String::new(),
            primary: String::new(),
            shadow: status,
            write: is_write(call),
        });
    }
    for host in ordered {
        let sequence = |calls: &[&OutboundCallEvent]| -> Vec<String> {
            calls.iter().filter(|c| c.request.authority == *host).map(|c| call_of(c)).collect()
        };
        let (p, s) = (sequence(primary), sequence(shadow));
        let same_calls = p.iter().collect::<BTreeMultiset>() == s.iter().collect::<BTreeMultiset>();
        if p != s && same_calls {
            let write = primary.iter().any(|c| c.request.authority == *host && is_write(c));
            found.push(CallDifference {
                call: format!("* {host} *"),
                kind: "order".to_owned(),
                path: String::new(),
                primary: p.join(", "),
                shadow: s.join(", "),
                write,
            });
        }
    }
    found
}

/// Calls counted by kind: two sequences of the same calls in another order are equal.
#[derive(PartialEq, Eq, Default)]
struct BTreeMultiset(BTreeMap<String, usize>);

impl<'a> FromIterator<&'a String> for BTreeMultiset {
    fn from_iter<I: IntoIterator<Item = &'a String>>(iter: I) -> Self {
        let mut counts = BTreeMap::new();
        for call in iter {
            *counts.entry(call.clone()).or_insert(0) += 1;
        }
        Self(counts)
    }
}

/// Whether a stub tap failed `shadow` on a call `primary` made: one of its calls is recorded
/// `unmatched`, and the primary made at least as many calls of that kind. A call the primary
/// never made, or made fewer times, is the shadow's own, and stays a difference.
pub(crate) fn stub_missed(primary: &[&OutboundCallEvent], shadow: &[&OutboundCallEvent]) -> bool {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    shadow.iter().any(|call| {
        let key = call_of(call);
        let nth = seen.entry(key.clone()).or_default();
        *nth += 1;
        is_unmatched(call) && primary.iter().filter(|p| call_of(p) == key).count() >= *nth
    })
}

fn is_unmatched(call: &OutboundCallEvent) -> bool {
    header_value(&call.response.headers, STUB) == Some(b"unmatched".as_slice())
}

/// The calls among `calls` that `made` says are one deployment's, in the order they were made
/// (by the tap's time of the call, then its id).
pub(crate) fn made_by(
    calls: &[OutboundCallEvent],
    made: impl Fn(&OutboundCallEvent) -> bool,
) -> Vec<&OutboundCallEvent> {
    let mut list: Vec<&OutboundCallEvent> = calls.iter().filter(|c| made(c)).collect();
    list.sort_by(|a, b| a.request.timestamp_ms.cmp(&b.request.timestamp_ms).then(a.call_id.cmp(&b.call_id)));
    list
}

/// Marks which of a shadow's differences are noise: the secondary's calls differ from the
/// primary's the same way in this exchange.
pub(crate) fn noise(found: &[CallDifference], secondary: Option<&[CallDifference]>) -> Vec<bool> {
    let seen: BTreeSet<(&str, &str, &str)> = secondary.unwrap_or_default().iter().map(CallDifference::key).collect();
    found.iter().map(|d| seen.contains(&d.key())).collect()
}

#[cfg(test)]
mod tests {
    use shadowdiff_core::{CapturedBody, Header, RequestEvent, ResponseEvent, Role};

    use super::*;

    /// A call of `deployment`'s, the `n`-th it made, with a JSON `body`.
    fn call(deployment: &str, n: i64, method: &str, host: &str, path: &str, body: &str) -> OutboundCallEvent {
        let request = RequestEvent {
            request_id: "r".into(),
            timestamp_ms: n,
            tap_id: "egress".into(),
            method: method.into(),
            scheme: "http".into(),
            authority: host.into(),
            path: path.into(),
            query: None,
            route_template: None,
            headers: vec![Header { name: "content-type".into(), value: b"application/json".to_vec() }],
            body: CapturedBody::capture(body.as_bytes(), 1 << 20),
            run: String::new(),
        };
        let response = ResponseEvent {
            request_id: "r".into(),
            timestamp_ms: n,
            role: Role::Primary,
            deployment: deployment.into(),
            status: Some(200),
            headers: vec![],
            body: CapturedBody::empty(),
            latency_us: 1,
            error: None,
            profile: None,
            stage: None,
            expected_legs: vec![],
            run: String::new(),
        };
        OutboundCallEvent {
            request_id: "r".into(),
            call_id: format!("{deployment}-{n}"),
            linked: true,
            deployment: deployment.into(),
            request,
            response,
            role: if deployment == "prod" { Role::Primary } else { Role::Candidate },
        }
    }

    fn kinds(found: &[CallDifference]) -> Vec<(String, String, String)> {
        found.iter().map(|d| (d.call.clone(), d.kind.clone(), d.path.clone())).collect()
    }

    #[test]
    fn an_added_a_dropped_and_a_changed_call_are_each_named() {
        let primary = [
            call("prod", 1, "GET", "pricing", "/prices/1", ""),
            call("prod", 2, "POST", "payments", "/charges", r#"{"amount": 10, "currency": "EUR"}"#),
            call("prod", 3, "GET", "inventory", "/stock/1", ""),
        ];
        let candidate = [
            call("v2", 1, "GET", "pricing", "/prices/1", ""),
            call("v2", 2, "POST", "payments", "/charges", r#"{"amount": 12, "currency": "EUR"}"#),
            call("v2", 3, "POST", "audit", "/events", r#"{"kind": "sale"}"#),
        ];
        let (p, c): (Vec<_>, Vec<_>) = (primary.iter().collect(), candidate.iter().collect());
        let found = compare(&p, &c, &DiffOptions::default(), &HashSet::new());
        assert_eq!(
            kinds(&found),
            [
                ("GET inventory /stock/1".into(), "missing_call".into(), String::new()),
                ("POST audit /events".into(), "extra_call".into(), String::new()),
                ("POST payments /charges".into(), "changed_value".into(), "amount".into()),
            ]
        );
        let writes: Vec<bool> = found.iter().map(|d| d.write).collect();
        assert_eq!(writes, [false, true, true]);
        assert_eq!((found[2].primary.as_str(), found[2].shadow.as_str()), ("10", "12"));
        assert!(compare(&p, &p, &DiffOptions::default(), &HashSet::new()).is_empty(), "the same calls");
    }

    #[test]
    fn a_second_call_of_a_kind_is_matched_by_its_place_and_order_counts_only_where_configured() {
        let primary = [
            call("prod", 1, "POST", "ledger", "/entries", r#"{"n": 1}"#),
            call("prod", 2, "GET", "ledger", "/balance", ""),
            call("prod", 3, "POST", "ledger", "/entries", r#"{"n": 2}"#),
        ];
        let swapped = [
            call("v2", 1, "GET", "ledger", "/balance", ""),
            call("v2", 2, "POST", "ledger", "/entries", r#"{"n": 1}"#),
            call("v2", 3, "POST", "ledger", "/entries", r#"{"n": 2}"#),
        ];
        let (p, s): (Vec<_>, Vec<_>) = (primary.iter().collect(), swapped.iter().collect());
        assert!(compare(&p, &s, &DiffOptions::default(), &HashSet::new()).is_empty(), "the same calls, unordered");
        let ordered = HashSet::from(["ledger".to_owned()]);
        let found = compare(&p, &s, &DiffOptions::default(), &ordered);
        assert_eq!(kinds(&found), [("* ledger *".into(), "order".into(), String::new())]);
        assert!(found[0].write);
    }

    #[test]
    fn what_the_secondary_shows_too_is_noise() {
        let primary = [call("prod", 1, "POST", "audit", "/events", r#"{"at": 1, "kind": "sale"}"#)];
        let secondary = [call("prod-b", 1, "POST", "audit", "/events", r#"{"at": 2, "kind": "sale"}"#)];
        let candidate = [call("v2", 1, "POST", "audit", "/events", r#"{"at": 3, "kind": "refund"}"#)];
        let p: Vec<_> = primary.iter().collect();
        let options = DiffOptions::default();
        let of_secondary = compare(&p, &secondary.iter().collect::<Vec<_>>(), &options, &HashSet::new());
        let of_candidate = compare(&p, &candidate.iter().collect::<Vec<_>>(), &options, &HashSet::new());
        assert_eq!(kinds(&of_candidate).iter().map(|k| k.2.as_str()).collect::<Vec<_>>(), ["at", "kind"]);
        assert_eq!(noise(&of_candidate, Some(&of_secondary)), [true, false], "`at` is noise, `kind` is not");
        assert_eq!(noise(&of_candidate, None), [false, false]);
    }

    #[test]
    fn a_call_the_stub_could_not_answer_is_unmatched() {
        let primary = [call("prod", 1, "GET", "pricing", "/prices/1", "")];
        let mut refund = call("v2", 2, "POST", "payments", "/refunds", "{}");
        refund.response.status = Some(502);
        refund.response.headers = vec![Header { name: STUB.into(), value: b"unmatched".to_vec() }];
        let candidate = [call("v2", 1, "GET", "pricing", "/prices/1", ""), refund];
        let (p, c): (Vec<_>, Vec<_>) = (primary.iter().collect(), candidate.iter().collect());
        let found = compare(&p, &c, &DiffOptions::default(), &HashSet::new());
        assert_eq!(
            kinds(&found),
            [
                ("POST payments /refunds".into(), "extra_call".into(), String::new()),
                ("POST payments /refunds".into(), "unmatched".into(), String::new()),
            ]
        );
        assert_eq!(found[1].shadow, "502");
        assert!(!stub_missed(&p, &c), "the primary never made it: the candidate's own call");
    }

    #[test]
    fn a_call_the_primary_made_that_the_stub_could_not_answer_is_the_stubs_miss() {
        let unmatched = |mut call: OutboundCallEvent| {
            call.response.status = Some(502);
            call.response.headers = vec![Header { name: STUB.into(), value: b"unmatched".to_vec() }];
            call
        };
        let primary = [call("prod", 1, "GET", "inventory", "/stock/1", "")];
        let late = [unmatched(call("v2", 1, "GET", "inventory", "/stock/1", ""))];
        let twice = [
            call("v2", 1, "GET", "inventory", "/stock/1", ""),
            unmatched(call("v2", 2, "GET", "inventory", "/stock/1", "")),
        ];
        let p: Vec<_> = primary.iter().collect();
        assert!(stub_missed(&p, &late.iter().collect::<Vec<_>>()), "the primary's record did not come in time");
        assert!(
            !stub_missed(&p, &twice.iter().collect::<Vec<_>>()),
            "a second call the primary never made is the shadow's"
        );
        let matched = [call("v2", 1, "GET", "inventory", "/stock/1", "")];
        assert!(!stub_missed(&p, &matched.iter().collect::<Vec<_>>()));
    }

    #[test]
    fn calls_are_taken_in_the_order_they_were_made() {
        let calls = [
            call("v2", 3, "GET", "a", "/3", ""),
            call("prod", 2, "GET", "a", "/2", ""),
            call("v2", 1, "GET", "a", "/1", ""),
        ];
        let made: Vec<&str> =
            made_by(&calls, |c| c.deployment == "v2").iter().map(|c| c.request.path.as_str()).collect();
        assert_eq!(made, ["/1", "/3"]);
    }
}

//! Per-request join state: every event with the same request id lands in one [`Exchange`],
//! which becomes final when its window has passed since its first event, or once it is whole
//! and its downstream calls have settled.

use std::collections::{HashMap, VecDeque};

use std::time::{Duration, Instant};

use shadowdiff_core::{OutboundCallEvent, RequestEvent, ResponseEvent, Role};

use shadowdiff_runtime::kafka::Hold;

use crate::bounded::RouteMap;

/// Shadow deployments remembered as having an egress tap, at most.
const MAX_TAPPED_DEPLOYMENTS: usize = 1000;

/// One decoded event.
#[derive(Debug)]
pub(crate) enum Leg {
    Request(RequestEvent),
    Response(ResponseEvent),
    /// A call a deployment made downstream while answering the request.
    Call(Box<OutboundCallEvent>),
}

impl Leg {
    /// Roughly what holding this leg costs in memory.
    fn size(&self) -> usize {
        let held = |headers: &[shadowdiff_core::Header], body: &shadowdiff_core::CapturedBody| {
            body.bytes.len() + headers.iter().map(|h| h.name.len() + h.value.len()).sum::<usize>()
        };
        256 + match self {
            Self::Request(r) => held(&r.headers, &r.body),
            Self::Response(r) => held(&r.headers, &r.body),
            Self::Call(c) => {
                256 + held(&c.request.headers, &c.request.body) + held(&c.response.headers, &c.response.body)
            }
        }
    }

    pub(crate) fn request_id(&self) -> &str {
        match self {
            Self::Request(r) => &r.request_id,
            Self::Response(r) => &r.request_id,
            Self::Call(c) => &c.request_id,
        }
    }
}

/// Everything known about one request.
#[derive(Debug, Default)]
pub(crate) struct Exchange {
    pub(crate) request: Option<RequestEvent>,
    pub(crate) primary: Option<ResponseEvent>,
    /// One per shadow deployment, first arrival wins.
    pub(crate) shadows: Vec<ResponseEvent>,
    /// The upstream time a sidecar tap in front of a shadow measured, per deployment: it
    /// replaces the mirror's measurement where the mirror's leg says it is timed by a tap.
    pub(crate) tap_timings: Vec<(String, i64)>,
    /// The calls every deployment made downstream for this request, as their egress taps
    /// published them, each once.
    pub(crate) calls: Vec<OutboundCallEvent>,
    /// The shadow deployments whose calls are compared with the primary's: both are known
    /// to have egress taps ([`EgressTaps`]). Set when the exchange is taken out.
    pub(crate) tapped: Vec<String>,
    /// The offset of every event read into this exchange, held until its rows are written.
    pub(crate) holds: Vec<Hold>,
    /// Memory held by its legs.
    pub(crate) bytes: usize,
    /// When its latest event arrived.
    pub(crate) last: Option<Instant>,
}

impl Exchange {
    /// The shadow legs the mirror said it replays this request to.
    pub(crate) fn expected(&self) -> std::collections::BTreeSet<&shadowdiff_core::ExpectedLeg> {
        self.shadows.iter().flat_map(|s| &s.expected_legs).collect()
    }

    /// Whole: the request, the primary, and every expected shadow leg have arrived, with
    /// the tap's timing of those a sidecar tap fronts.
    fn complete(&self) -> bool {
        let expected = self.expected();
        self.request.is_some()
            && self.primary.is_some()
            && !expected.is_empty()
            && expected.iter().all(|leg| {
                self.shadows.iter().any(|s| s.deployment == leg.deployment)
                    && (!leg.timed_by_tap || self.tap_timings.iter().any(|(d, _)| *d == leg.deployment))
            })
    }

    /// Every tapped shadow that answered made as many calls as the primary: nothing says a
    /// call is still on its way. A shadow that really dropped or added a call differs too, and
    /// is then written when its window has passed.
    fn calls_agree(&self, taps: &EgressTaps) -> bool {
        let made = |shadow: Option<&str>| {
            self.calls
                .iter()
                .filter(|c| match shadow {
                    None => c.role == Role::Primary,
                    Some(deployment) => c.role != Role::Primary && c.deployment == deployment,
                })
                .count()
        };
        let primary = made(None);
        self.shadows
            .iter()
            .filter(|s| s.error.is_none() && taps.both(&s.deployment))
            .all(|s| made(Some(&s.deployment)) == primary)
    }

    fn add(&mut self, leg: Leg) -> bool {
        match leg {
            Leg::Call(call) if !self.calls.iter().any(|c| c.call_id == call.call_id) => self.calls.push(*call),
            Leg::Request(r) if self.request.is_none() => self.request = Some(r),
            Leg::Response(r) if r.role == Role::Primary && self.primary.is_none() => self.primary = Some(r),
            Leg::Response(r) if r.role != Role::Primary => {
                match self.shadows.iter().position(|s| s.deployment == r.deployment) {
                    None => self.shadows.push(r),
                    // A sidecar tap in front of the shadow publishes a leg without a profile.
                    // The mirror's leg is the comparison; the tap's gives only its time.
                    Some(i) => {
                        let timed = self.tap_timings.iter().any(|(d, _)| *d == r.deployment);
                        let held = &mut self.shadows[i];
                        match (held.profile.is_some(), r.profile.is_some()) {
                            (true, false) if !timed => self.tap_timings.push((r.deployment, r.latency_us)),
                            (false, true) if !timed => {
                                self.tap_timings.push((held.deployment.clone(), held.latency_us));
                                *held = r;
                            }
                            _ => return false,
                        }
                    }
                }
                self.time_by_taps();
            }
            _ => return false,
        }
        true
    }

    /// Gives each shadow leg timed by a tap (its own expected leg says so) the tap's time.
    fn time_by_taps(&mut self) {
        for shadow in &mut self.shadows {
            let timed = shadow.expected_legs.iter().any(|l| l.deployment == shadow.deployment && l.timed_by_tap);
            if let Some((_, latency)) = self.tap_timings.iter().find(|(d, _)| *d == shadow.deployment)
                && timed
            {
                shadow.latency_us = *latency;
            }
        }
    }
}

/// What happened to an added event.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Added {
    Joined,
    /// A second copy of a leg already held (a producer retry or a replay); ignored.
    Duplicate,
    /// Its exchange was already final; counted and ignored, so a straggler never
    /// overwrites a complete comparison with an incomplete one.
    Late,
    /// A call beyond the exchange's bound on calls; counted and ignored.
    OverBound,
}

/// Which deployments have an egress tap: those whose calls have been seen. A shadow's calls
/// are compared with the primary's only when both are known to be tapped, so a deployment
/// without a tap is never taken for one that stopped calling.
#[derive(Debug)]
struct EgressTaps {
    primary: bool,
    shadows: RouteMap<String, ()>,
}

impl EgressTaps {
    fn saw(&mut self, call: &OutboundCallEvent) {
        if call.role == Role::Primary {
            self.primary = true;
        } else {
            self.shadows.entry(call.deployment.clone(), || ());
        }
    }

    fn both(&self, shadow: &str) -> bool {
        self.primary && self.shadows.peek(&shadow.to_owned()).is_some()
    }
}

/// How much join state may be held before the oldest exchanges are emitted early.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    pub(crate) exchanges: usize,
    pub(crate) bytes: usize,
    /// Downstream calls per exchange.
    pub(crate) calls: usize,
}

#[derive(Debug)]
pub(crate) struct Joiner {
    window: Duration,
    /// How long a whole exchange waits after its last event for downstream calls still on
    /// their way; zero: none. One whose deployments made different numbers of calls waits
    /// on, up to its window.
    settle: Duration,
    taps: EgressTaps,
    /// Whole exchanges waiting out `settle`, by the time of the event that made or found them
    /// whole; an id is listed again with each later event, and only its latest listing counts.
    settling: VecDeque<(Instant, String)>,
    bounds: Bounds,
    /// Memory held by all open exchanges.
    bytes: usize,
    open: HashMap<String, Exchange>,
    /// Open request ids by first arrival; ids already taken out are skipped.
    opened: VecDeque<(Instant, String)>,
    /// Recently final request ids, remembered for one more window to recognise late events.
    finished: HashMap<String, Instant>,
    finished_order: VecDeque<(Instant, String)>,
}

impl Joiner {
    pub(crate) fn new(window: Duration, settle: Duration, bounds: Bounds) -> Self {
        Self {
            window,
            settle,
            taps: EgressTaps { primary: false, shadows: RouteMap::new(MAX_TAPPED_DEPLOYMENTS, "egress_taps") },
            settling: VecDeque::new(),
            bounds,
            bytes: 0,
            open: HashMap::new(),
            opened: VecDeque::new(),
            finished: HashMap::new(),
            finished_order: VecDeque::new(),
        }
    }

    /// Joins `leg` to its exchange. A late or duplicate leg is dropped, and its hold with it.
    pub(crate) fn add(&mut self, leg: Leg, hold: Hold, now: Instant) -> Added {
        let id = leg.request_id();
        if self.finished.contains_key(id) {
            return Added::Late;
        }
        if let Leg::Call(call) = &leg {
            self.taps.saw(call);
        }
        if !self.open.contains_key(id) {
            self.opened.push_back((now, id.to_owned()));
        }
        let exchange = self.open.entry(id.to_owned()).or_default();
        if let Leg::Call(call) = &leg {
            let known = exchange.calls.iter().any(|c| c.call_id == call.call_id);
            if !known && exchange.calls.len() >= self.bounds.calls {
                return Added::OverBound;
            }
        }
        let size = leg.size();
        exchange.last = Some(now);
        if exchange.add(leg) {
            exchange.holds.push(hold);
            exchange.bytes += size;
            self.bytes += size;
            Added::Joined
        } else {
            Added::Duplicate
        }
    }

    /// Takes out every exchange whose window has passed, and every whole one settled.
    pub(crate) fn expire(&mut self, now: Instant) -> Vec<Exchange> {
        let mut done = self.settled(now);
        while let Some((opened, _)) = self.opened.front() {
            if now.duration_since(*opened) < self.window {
                break;
            }
            let Some((_, id)) = self.opened.pop_front() else { break };
            done.extend(self.finish(id, now));
        }
        while let Some((finished, _)) = self.finished_order.front() {
            if now.duration_since(*finished) < self.window {
                break;
            }
            if let Some((_, id)) = self.finished_order.pop_front() {
                self.finished.remove(&id);
            }
        }
        done
    }

    /// Takes out the exchange for `id` if it is whole, so it is written without waiting for
    /// its window. With a settle time, or calls that do not agree yet, a whole exchange first
    /// waits for downstream calls still on their way, and is taken by [`Joiner::expire`].
    pub(crate) fn take_complete(&mut self, id: &str, now: Instant) -> Option<Exchange> {
        let exchange = self.open.get(id).filter(|e| e.complete())?;
        if !self.settle.is_zero() || !exchange.calls_agree(&self.taps) {
            self.settling.push_back((now, id.to_owned()));
            return None;
        }
        self.finish(id.to_owned(), now)
    }

    /// Takes out the whole exchanges that have had no event for the settle time and whose
    /// deployments' calls agree. The others stay until a later event lists them again, or
    /// until their window has passed.
    fn settled(&mut self, now: Instant) -> Vec<Exchange> {
        let mut done = Vec::new();
        while let Some((listed, _)) = self.settling.front() {
            if now.duration_since(*listed) < self.settle {
                break;
            }
            let Some((listed, id)) = self.settling.pop_front() else { break };
            // Only the latest listing of an exchange counts: it was listed with its last event.
            if self.open.get(&id).is_some_and(|e| e.last == Some(listed) && e.calls_agree(&self.taps)) {
                done.extend(self.finish(id, now));
            }
        }
        done
    }

    /// Takes out the oldest exchanges while the state is over its bounds, so memory stays
    /// bounded whatever the traffic; they are emitted with what they have.
    pub(crate) fn evict_over_bounds(&mut self, now: Instant) -> Vec<Exchange> {
        let mut evicted = Vec::new();
        while self.open.len() > self.bounds.exchanges || self.bytes > self.bounds.bytes {
            let Some((_, id)) = self.opened.pop_front() else { break };
            evicted.extend(self.finish(id, now));
        }
        evicted
    }

    /// Takes `id` out. An exchange with shadow legs is remembered for a window, so its late
    /// legs are recognised and not written twice. One without any (a request the mirror did
    /// not replay, or one evicted before its shadows came) writes no rows, so it is not
    /// remembered: a shadow leg that comes after all opens a new exchange, written with what
    /// is missing, rather than being dropped as late.
    fn finish(&mut self, id: String, now: Instant) -> Option<Exchange> {
        let mut exchange = self.open.remove(&id)?;
        exchange.tapped =
            exchange.shadows.iter().map(|s| &s.deployment).filter(|d| self.taps.both(d)).cloned().collect();
        self.bytes -= exchange.bytes;
        if !exchange.shadows.is_empty() {
            self.finished.insert(id.clone(), now);
            self.finished_order.push_back((now, id));
        }
        Some(exchange)
    }

    pub(crate) fn open_exchanges(&self) -> usize {
        self.open.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shadowdiff_core::CapturedBody;

    fn shadow(id: &str, deployment: &str, expected: &[&str]) -> Leg {
        let Leg::Response(mut event) = response(id, Role::Candidate, deployment) else { unreachable!() };
        event.expected_legs = expected.iter().map(|d| shadowdiff_core::ExpectedLeg::new(Role::Candidate, *d)).collect();
        Leg::Response(event)
    }

    fn request(id: &str) -> Leg {
        Leg::Request(shadowdiff_core::RequestEvent {
            request_id: id.into(),
            timestamp_ms: 0,
            tap_id: "t".into(),
            method: "GET".into(),
            scheme: "http".into(),
            authority: "a".into(),
            path: "/".into(),
            query: None,
            route_template: None,
            headers: vec![],
            body: CapturedBody::empty(),
            run: String::new(),
        })
    }

    #[test]
    fn an_exchange_is_taken_as_soon_as_every_expected_leg_is_in() {
        let t0 = Instant::now();
        let mut joiner =
            Joiner::new(Duration::from_secs(30), Duration::ZERO, Bounds { exchanges: 100, bytes: 1 << 20, calls: 256 });
        joiner.add(request("x"), pos(1), t0);
        joiner.add(response("x", Role::Primary, "prod"), pos(2), t0);
        joiner.add(shadow("x", "v2", &["v2", "v3"]), pos(3), t0);
        assert!(joiner.take_complete("x", t0).is_none(), "v3 is still expected");
        joiner.add(shadow("x", "v3", &["v2", "v3"]), pos(4), t0);
        let whole = joiner.take_complete("x", t0).expect("all legs are in");
        assert_eq!(whole.shadows.len(), 2);
        assert_eq!(joiner.open_exchanges(), 0);
        assert!(joiner.expire(t0 + Duration::from_secs(31)).is_empty(), "nothing left to expire");
    }

    fn response(id: &str, role: Role, deployment: &str) -> Leg {
        Leg::Response(ResponseEvent {
            request_id: id.into(),
            timestamp_ms: 0,
            role,
            deployment: deployment.into(),
            status: Some(200),
            headers: vec![],
            body: CapturedBody::empty(),
            latency_us: 1,
            error: None,
            profile: None,
            stage: None,
            expected_legs: Vec::new(),
            run: String::new(),
        })
    }

    fn pos(offset: i64) -> Hold {
        shadowdiff_runtime::kafka::Offsets::default().hold((std::sync::Arc::from("responses"), 0, offset))
    }

    #[test]
    fn joins_by_id_expires_after_window_and_flags_late_and_duplicate_legs() {
        let t0 = Instant::now();
        let window = Duration::from_secs(2);
        let mut joiner = Joiner::new(window, Duration::ZERO, Bounds { exchanges: 100, bytes: 1 << 20, calls: 256 });
        assert_eq!(joiner.add(response("a", Role::Primary, "prod"), pos(1), t0), Added::Joined);
        assert_eq!(joiner.add(response("a", Role::Candidate, "v2"), pos(2), t0), Added::Joined);
        assert_eq!(joiner.add(response("a", Role::Candidate, "v2"), pos(3), t0), Added::Duplicate);
        assert_eq!(
            joiner.add(response("b", Role::Primary, "prod"), pos(4), t0 + Duration::from_secs(1)),
            Added::Joined
        );

        assert!(joiner.expire(t0 + Duration::from_millis(1999)).is_empty());
        let done = joiner.expire(t0 + window);
        assert_eq!(done.len(), 1);
        let offsets: Vec<i64> = done[0].holds.iter().map(|h| h.position().2).collect();
        assert_eq!(offsets, vec![1, 2], "the duplicate's hold was not kept");
        assert_eq!(done[0].shadows.len(), 1);
        assert_eq!(joiner.open_exchanges(), 1);

        assert_eq!(joiner.add(response("a", Role::Secondary, "prod-b"), pos(5), t0 + window), Added::Late);
        // Forgotten after another window: an id reused much later starts a new exchange.
        joiner.expire(t0 + window * 2);
        assert_eq!(joiner.add(response("a", Role::Secondary, "prod-b"), pos(6), t0 + window * 2), Added::Joined);
    }

    fn downstream(id: &str, call_id: &str) -> Leg {
        let (Leg::Request(request), Leg::Response(response)) = (request(id), response(id, Role::Primary, "prod"))
        else {
            unreachable!()
        };
        Leg::Call(Box::new(OutboundCallEvent {
            request_id: id.into(),
            call_id: call_id.into(),
            linked: true,
            deployment: "prod".into(),
            request,
            response,
            role: Role::Primary,
        }))
    }

    #[test]
    fn with_a_settle_time_a_whole_exchange_waits_it_out_for_more_calls() {
        let t0 = Instant::now();
        let settle = Duration::from_millis(500);
        let mut joiner =
            Joiner::new(Duration::from_secs(30), settle, Bounds { exchanges: 100, bytes: 1 << 20, calls: 2 });
        let whole = |joiner: &mut Joiner, id: &str, at: Instant| {
            joiner.add(request(id), pos(1), at);
            joiner.add(response(id, Role::Primary, "prod"), pos(2), at);
            joiner.add(shadow(id, "v2", &["v2"]), pos(3), at);
            joiner.take_complete(id, at)
        };
        let mut at_once =
            Joiner::new(Duration::from_secs(30), Duration::ZERO, Bounds { exchanges: 100, bytes: 1 << 20, calls: 2 });
        assert!(whole(&mut at_once, "x", t0).is_some(), "no settle time: taken at once");

        assert_eq!(joiner.add(downstream("a", "c1"), pos(4), t0), Added::Joined);
        assert!(whole(&mut joiner, "a", t0).is_none(), "whole, but calls may still come");
        let later = t0 + Duration::from_millis(300);
        assert_eq!(joiner.add(downstream("a", "c2"), pos(5), later), Added::Joined);
        assert_eq!(joiner.add(downstream("a", "c2"), pos(6), later), Added::Duplicate, "one call once");
        assert_eq!(joiner.add(downstream("a", "c3"), pos(7), later), Added::OverBound);
        assert!(joiner.take_complete("a", later).is_none());
        assert!(joiner.expire(t0 + settle).is_empty(), "its last event came 300 ms later");
        let done = joiner.expire(later + settle);
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].calls.len(), 2);
    }

    /// A call `deployment`, a shadow, made for `id`.
    fn shadow_call(id: &str, call_id: &str, deployment: &str) -> Leg {
        let Leg::Call(mut call) = downstream(id, call_id) else { unreachable!() };
        call.deployment = deployment.into();
        call.role = Role::Candidate;
        Leg::Call(call)
    }

    #[test]
    fn a_whole_exchange_whose_deployments_made_different_calls_waits_for_them_up_to_its_window() {
        let t0 = Instant::now();
        let window = Duration::from_secs(3);
        let mut joiner = Joiner::new(window, Duration::ZERO, Bounds { exchanges: 100, bytes: 1 << 20, calls: 256 });
        let whole = |joiner: &mut Joiner, id: &str, at: Instant| {
            joiner.add(request(id), pos(1), at);
            joiner.add(response(id, Role::Primary, "prod"), pos(2), at);
            joiner.add(shadow(id, "v2", &["v2"]), pos(3), at);
            joiner.take_complete(id, at)
        };
        // Before any call is seen, nobody is known to be tapped: nothing to wait for.
        assert!(whole(&mut joiner, "untapped", t0).is_some());

        // Both tapped, the same calls: taken at once, as with no calls at all.
        joiner.add(downstream("same", "p1"), pos(4), t0);
        joiner.add(shadow_call("same", "s1", "v2"), pos(5), t0);
        let same = whole(&mut joiner, "same", t0).expect("calls agree");
        assert_eq!(same.tapped, ["v2"], "v2's calls are compared");

        // The primary called, v2's call is still on its way: it waits, and is taken with it.
        joiner.add(downstream("late", "p1"), pos(6), t0);
        assert!(whole(&mut joiner, "late", t0).is_none(), "v2 made fewer calls so far");
        assert!(joiner.expire(t0 + Duration::from_secs(1)).is_empty());
        let at = t0 + Duration::from_secs(2);
        assert_eq!(joiner.add(shadow_call("late", "s1", "v2"), pos(7), at), Added::Joined, "not late");
        let late = joiner.take_complete("late", at).expect("now they agree");
        assert_eq!(late.calls.len(), 2);

        // v2 really dropped the call: written, without it, once the window has passed.
        joiner.add(downstream("dropped", "p1"), pos(8), t0);
        assert!(whole(&mut joiner, "dropped", t0).is_none());
        assert!(joiner.expire(t0 + window - Duration::from_millis(1)).is_empty());
        let done = joiner.expire(t0 + window);
        assert_eq!(done.len(), 1);
        assert_eq!((done[0].calls.len(), done[0].tapped.as_slice()), (1, ["v2".to_owned()].as_slice()));
    }

    /// The mirror's leg of `v2`, which a sidecar tap fronts, measured at `latency_us`.
    fn mirrored(id: &str, latency_us: i64) -> Leg {
        let Leg::Response(mut leg) = response(id, Role::Candidate, "v2") else { unreachable!() };
        leg.profile = Some("p".into());
        leg.latency_us = latency_us;
        leg.expected_legs = vec![shadowdiff_core::ExpectedLeg::new(Role::Candidate, "v2").timed_by_tap(true)];
        Leg::Response(leg)
    }

    /// The sidecar tap's leg of `v2`: no profile, its upstream time.
    fn sidecar(id: &str, latency_us: i64) -> Leg {
        let Leg::Response(mut leg) = response(id, Role::Candidate, "v2") else { unreachable!() };
        leg.latency_us = latency_us;
        Leg::Response(leg)
    }

    #[test]
    fn a_shadow_a_sidecar_tap_fronts_takes_the_taps_time_and_waits_for_it() {
        let t0 = Instant::now();
        for sidecar_first in [false, true] {
            let mut joiner = Joiner::new(
                Duration::from_secs(30),
                Duration::ZERO,
                Bounds { exchanges: 100, bytes: 1 << 20, calls: 256 },
            );
            joiner.add(request("a"), pos(1), t0);
            joiner.add(response("a", Role::Primary, "prod"), pos(2), t0);
            let legs = if sidecar_first {
                [sidecar("a", 4_000), mirrored("a", 9_000)]
            } else {
                [mirrored("a", 9_000), sidecar("a", 4_000)]
            };
            let [first, second] = legs;
            assert_eq!(joiner.add(first, pos(3), t0), Added::Joined);
            assert!(joiner.take_complete("a", t0).is_none(), "waits for the other leg of v2");
            assert_eq!(joiner.add(second, pos(4), t0), Added::Joined);
            let exchange = joiner.take_complete("a", t0).expect("whole with both");
            assert_eq!(exchange.shadows.len(), 1);
            let shadow = &exchange.shadows[0];
            assert_eq!(
                (shadow.profile.as_deref(), shadow.latency_us),
                (Some("p"), 4_000),
                "the mirror's leg, the tap's time"
            );
        }
        // Without the flag the mirror's leg is whole alone, and keeps its own time.
        let mut joiner =
            Joiner::new(Duration::from_secs(30), Duration::ZERO, Bounds { exchanges: 100, bytes: 1 << 20, calls: 256 });
        joiner.add(request("b"), pos(1), t0);
        joiner.add(response("b", Role::Primary, "prod"), pos(2), t0);
        let Leg::Response(mut plain) = mirrored("b", 9_000) else { unreachable!() };
        plain.expected_legs[0].timed_by_tap = false;
        joiner.add(Leg::Response(plain), pos(3), t0);
        assert_eq!(joiner.take_complete("b", t0).map(|e| e.shadows[0].latency_us), Some(9_000));
    }

    #[test]
    fn over_its_bounds_the_oldest_exchanges_go_first() {
        let t0 = Instant::now();
        let mut joiner =
            Joiner::new(Duration::from_secs(30), Duration::ZERO, Bounds { exchanges: 2, bytes: 1 << 20, calls: 256 });
        for (i, id) in ["a", "b", "c"].iter().enumerate() {
            joiner.add(response(id, Role::Primary, "prod"), pos(i as i64), t0);
        }
        let evicted = joiner.evict_over_bounds(t0);
        assert_eq!(evicted.len(), 1);
        assert_eq!(evicted[0].primary.as_ref().unwrap().request_id, "a");
        assert_eq!(joiner.open_exchanges(), 2);

        let mut by_bytes =
            Joiner::new(Duration::from_secs(30), Duration::ZERO, Bounds { exchanges: 100, bytes: 600, calls: 256 });
        for (i, id) in ["a", "b", "c"].iter().enumerate() {
            by_bytes.add(response(id, Role::Primary, "prod"), pos(i as i64), t0);
        }
        assert_eq!(by_bytes.evict_over_bounds(t0).len(), 1, "three legs of ~256 bytes exceed 600");
        // `a` was evicted before its shadow came, so it wrote no rows: the shadow opens a new
        // exchange, written as missing its primary, instead of vanishing as late.
        assert_eq!(by_bytes.add(response("a", Role::Candidate, "v2"), pos(9), t0), Added::Joined);
        let late = by_bytes.expire(t0 + Duration::from_secs(31));
        let a = late.iter().find(|e| e.shadows.first().is_some_and(|s| s.request_id == "a")).unwrap();
        assert!(a.primary.is_none() && a.shadows.len() == 1);
    }
}

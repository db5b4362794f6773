//! The requests a window keeps while the topics are read, bounded by its limit, and the
//! primary responses joined to them.

use std::collections::{BinaryHeap, HashMap};

use shadowdiff_core::{RequestEvent, RequestId, ResponseEvent, Role};

use crate::recorded::Recorded;
use crate::report::ReadReport;
use crate::window::{Selection, Window};

/// A kept request and, once read, its primary's response.
#[derive(Debug)]
struct Kept {
    request: RequestEvent,
    primary: Option<ResponseEvent>,
}

/// The kept requests: never more than the window's limit, the latest dropped first, so the
/// result is the earliest `limit` of the window whatever order the partitions are read in.
#[derive(Debug)]
pub(super) struct Selected<'w> {
    window: &'w Window,
    kept: HashMap<String, Kept>,
    /// The kept requests' (timestamp, id), latest on top.
    latest: BinaryHeap<(i64, String)>,
    answered: usize,
}

impl<'w> Selected<'w> {
    pub(super) fn new(window: &'w Window) -> Self {
        Self { window, kept: HashMap::new(), latest: BinaryHeap::new(), answered: 0 }
    }

    /// Offers one decoded request event, counting in `report` where it went.
    pub(super) fn offer(&mut self, request: RequestEvent, id: &RequestId, report: &mut ReadReport) {
        match self.window.select(&request, id) {
            Selection::OutsideTime => return,
            Selection::Filtered => report.filtered += 1,
            Selection::SampledOut => report.sampled_out += 1,
            Selection::Kept if self.kept.contains_key(id.as_str()) => report.duplicates += 1,
            Selection::Kept => {
                self.latest.push((request.timestamp_ms, request.request_id.clone()));
                self.kept.insert(request.request_id.clone(), Kept { request, primary: None });
                if self.latest.len() > self.window.limit() {
                    if let Some((_, dropped)) = self.latest.pop() {
                        self.kept.remove(&dropped);
                    }
                    report.over_limit += 1;
                }
            }
        }
        report.in_window += 1;
    }

    /// Whether a response keyed `request_id` could be one this selection still waits for.
    pub(super) fn waits_for(&self, request_id: &str) -> bool {
        self.kept.get(request_id).is_some_and(|k| k.primary.is_none())
    }

    /// Joins a primary's response to its kept request. Other roles, unknown requests and
    /// second answers are ignored.
    pub(super) fn answer(&mut self, response: ResponseEvent) {
        if response.role != Role::Primary {
            return;
        }
        if let Some(kept) = self.kept.get_mut(&response.request_id).filter(|k| k.primary.is_none()) {
            kept.primary = Some(response);
            self.answered += 1;
        }
    }

    /// Whether every kept request has its primary's response.
    pub(super) fn complete(&self) -> bool {
        self.answered == self.kept.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.kept.is_empty()
    }

    /// The exchanges and the requests left without a primary's response, each in
    /// (timestamp, request id) order.
    pub(super) fn finish(self) -> (Vec<Recorded>, Vec<RequestEvent>) {
        let mut exchanges = Vec::with_capacity(self.answered);
        let mut unanswered = Vec::new();
        for Kept { request, primary } in self.kept.into_values() {
            match primary {
                Some(primary) => exchanges.push(Recorded { request, primary }),
                None => unanswered.push(request),
            }
        }
        exchanges.sort_by(|a, b| (a.timestamp_ms(), a.request_id()).cmp(&(b.timestamp_ms(), b.request_id())));
        unanswered.sort_by(|a, b| (a.timestamp_ms, &a.request_id).cmp(&(b.timestamp_ms, &b.request_id)));
        (exchanges, unanswered)
    }
}

#[cfg(test)]
mod tests {
    use crate::recorded::tests::exchange;

    use super::*;

    fn offer(selected: &mut Selected<'_>, report: &mut ReadReport, id: &str, ts: i64) {
        let request = exchange(id, ts).request;
        selected.offer(request, &RequestId::parse(id).unwrap(), report);
    }

    #[test]
    fn keeps_the_earliest_up_to_the_limit_in_any_order() {
        let window = Window::new(0, 1_000).unwrap().with_limit(3).unwrap();
        let mut selected = Selected::new(&window);
        let mut report = ReadReport::default();
        for (id, ts) in [("e", 50), ("a", 10), ("x", 5_000), ("d", 40), ("b", 20), ("c", 30), ("a", 10)] {
            offer(&mut selected, &mut report, id, ts);
        }
        assert_eq!((report.in_window, report.over_limit, report.duplicates), (6, 2, 1));
        for id in ["a", "c"] {
            selected.answer(exchange(id, 0).primary);
        }
        let mut candidate = exchange("b", 0).primary;
        candidate.role = Role::Candidate;
        selected.answer(candidate);
        assert!(
            !selected.complete() && selected.waits_for("b") && !selected.waits_for("a") && !selected.waits_for("e")
        );
        let (exchanges, unanswered) = selected.finish();
        let ids: Vec<&str> = exchanges.iter().map(Recorded::request_id).collect();
        assert_eq!(ids, ["a", "c"]);
        assert_eq!(unanswered.iter().map(|r| r.request_id.as_str()).collect::<Vec<_>>(), ["b"]);
    }
}

//! Paths: Diffy's per-field decision, made a gate criterion, and the one place that says which
//! of the candidate's differences count.
//!
//! A field the candidate changes on a small share of one route's responses can hide under
//! the overall divergence bound, and still be a regression every user of that route may
//! meet. So each route's generalised path (`items[*].price`) is judged on its own: the
//! candidate's differences there that are not noise, against the secondary's differences
//! there on the same requests. The secondary runs the primary's version, so whatever it
//! shows at a path is what the primary's own nondeterminism produces there.
//!
//! Each path comes out as one of:
//! - **accepted**: a person approved the change (`accept`); it counts nowhere;
//! - **systematic**: the candidate differs there clearly more often than the secondary, by
//!   an anytime-valid test ([`sequential::path_wealth`] reaching 1/[`SIGNIFICANCE`]); it
//!   fails the `divergent_paths` criterion, and its exchanges diverge;
//! - **explained**: the secondary differs there too, on other exchanges of the window,
//!   and no more rarely: a shuffled array, a timestamp, a random id whose value happened
//!   to match the primary's on this one exchange. It counts nowhere, even when the
//!   correlator, which saw only the exchanges before it, did not call it noise;
//! - otherwise the candidate alone differs there, too rarely yet to be systematic: its
//!   exchanges diverge.

use serde::{Deserialize, Serialize};

use super::sequential;
use crate::accept::Acceptance;

/// The level of the path test: a path is systematic once the wealth bet on it reaches
/// 1 / this.
pub const SIGNIFICANCE: f64 = 0.01;

/// What the store holds about one route's path: how often each shadow differed there.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PathEvidence {
    pub route: String,
    pub path: String,
    pub kind: String,
    /// The candidate's differences there that are not noise.
    pub candidate: u64,
    /// The secondary's differences there, on the same requests.
    pub secondary: u64,
    /// A few requests where the candidate differed there.
    pub examples: Vec<String>,
    /// The store's key for (route, path, kind), to leave the path out of a count.
    pub key: u64,
}

/// A path whose differences the candidate brings, not the primary's own nondeterminism.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DivergentPath {
    pub route: String,
    pub path: String,
    pub kind: String,
    pub candidate: u64,
    pub secondary: u64,
    /// An anytime-valid p-value: 1 / the wealth bet against "both shadows differ here
    /// equally often". It stays valid however often the verdict is read.
    pub p_value: f64,
    pub examples: Vec<String>,
}

/// A path whose differences a person accepted, with what the candidate showed there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AcceptedPath {
    pub route: String,
    pub path: String,
    pub kind: String,
    pub candidate: u64,
    pub acceptance: Acceptance,
}

/// Every path judged.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Judged {
    /// Systematic paths, most certain first.
    pub divergent: Vec<DivergentPath>,
    /// Accepted paths the candidate differed at, most frequent first.
    pub accepted: Vec<AcceptedPath>,
    /// Keys of the paths whose differences count nowhere: accepted or explained.
    pub excluded: Vec<u64>,
}

/// Judges each path of `paths` (see the module's description), with `acceptances` the
/// candidate's active acceptances.
pub fn judge(paths: Vec<PathEvidence>, acceptances: &[Acceptance]) -> Judged {
    let mut judged = Judged::default();
    for p in paths {
        if let Some(acceptance) = acceptances.iter().find(|a| a.covers(&p.route, &p.path)) {
            judged.excluded.push(p.key);
            judged.accepted.push(AcceptedPath {
                route: p.route,
                path: p.path,
                kind: p.kind,
                candidate: p.candidate,
                acceptance: acceptance.clone(),
            });
            continue;
        }
        let wealth = sequential::path_wealth(p.candidate, p.secondary);
        if wealth >= 1.0 / SIGNIFICANCE {
            judged.divergent.push(DivergentPath {
                route: p.route,
                path: p.path,
                kind: p.kind,
                candidate: p.candidate,
                secondary: p.secondary,
                p_value: (1.0 / wealth).min(1.0),
                examples: p.examples,
            });
        } else if p.secondary > 0 {
            judged.excluded.push(p.key);
        }
    }
    judged.divergent.sort_by(|a, b| a.p_value.total_cmp(&b.p_value).then(b.candidate.cmp(&a.candidate)));
    judged.accepted.sort_by_key(|a| std::cmp::Reverse(a.candidate));
    judged
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(candidate: u64, secondary: u64) -> PathEvidence {
        PathEvidence {
            route: "/items/{id}".into(),
            path: "price".into(),
            kind: "changed_value".into(),
            candidate,
            secondary,
            examples: vec!["req-1".into()],
            key: 7,
        }
    }

    #[test]
    fn a_change_the_secondary_never_shows_is_systematic_from_eight() {
        let seven = judge(vec![at(7, 0)], &[]);
        assert!(seven.divergent.is_empty() && seven.excluded.is_empty(), "7 alone: not yet, but it still counts");
        let found = judge(vec![at(8, 0)], &[]).divergent;
        assert_eq!(found.len(), 1);
        assert!(found[0].p_value <= SIGNIFICANCE, "{}", found[0].p_value);
    }

    #[test]
    fn what_the_secondary_shows_as_often_is_explained() {
        // A shuffled array: the candidate's order differed on 12 exchanges where the
        // secondary's happened to match, and the secondary's on 15 others.
        let judged = judge(vec![at(12, 15)], &[]);
        assert!(judged.divergent.is_empty());
        assert_eq!(judged.excluded, vec![7], "left out of the divergence count");
        // One exchange in 1,500 where the secondary's order happened to match the primary's.
        assert_eq!(judge(vec![at(1, 1400)], &[]).excluded, vec![7]);
        assert_eq!(judge(vec![at(40, 10)], &[]).divergent.len(), 1, "four times as often is systematic");
    }

    #[test]
    fn an_accepted_path_counts_nowhere() {
        let acceptance = Acceptance {
            route: "/items/{id}".into(),
            path: "price".into(),
            reason: "new pricing".into(),
            ..Acceptance::default()
        };
        let judged = judge(vec![at(400, 0)], std::slice::from_ref(&acceptance));
        assert!(judged.divergent.is_empty());
        assert_eq!(judged.excluded, vec![7]);
        assert_eq!(judged.accepted.len(), 1);
        assert_eq!(judged.accepted[0].acceptance, acceptance);
        let other_route = Acceptance { route: "/search".into(), ..acceptance };
        assert_eq!(judge(vec![at(400, 0)], &[other_route]).divergent.len(), 1);
    }
}

//! Bounds on one comparison, so that no pair of responses can make the diff run or grow
//! without end: how many differences are kept, how many steps the JSON diff may take, and
//! how long the text diff may run. Past a bound the comparison still answers, with a
//! marker difference saying what was cut: `overflow` (how many differences were dropped)
//! or `diff_timeout` (which budget ran out).

use std::time::Duration;

use super::{DiffKind, Difference};

/// How much one comparison may keep and spend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiffLimits {
    /// Differences kept per comparison; past it they are only counted, and one `overflow`
    /// difference says how many were dropped.
    pub max_differences: usize,
    /// Steps the JSON diff may take (values visited, hashed or compared); past it the diff
    /// stops where it is and adds a `diff_timeout` difference. Counted, not timed, so the same
    /// pair always stops at the same place.
    pub max_operations: u64,
    /// Time the text diff may take; past it `similar` settles for a coarser line diff and a
    /// `diff_timeout` difference is added.
    pub text_timeout: Duration,
}

impl Default for DiffLimits {
    /// A hundred differences are more than anyone reads for one request; a million steps
    /// take well under a second, and a typical JSON response needs a few hundred.
    fn default() -> Self {
        Self { max_differences: 100, max_operations: 1_000_000, text_timeout: Duration::from_millis(100) }
    }
}

/// Which budget ran out, as the `diff_timeout` difference names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Budget {
    /// The JSON diff's steps.
    Operations,
    /// The text diff's time.
    Time,
}

impl Budget {
    const fn as_str(self) -> &'static str {
        match self {
            Self::Operations => "operations",
            Self::Time => "time",
        }
    }
}

/// The differences of one comparison: at most `max` kept, the rest counted.
#[derive(Debug)]
pub(super) struct Found {
    kept: Vec<Difference>,
    max: usize,
    dropped: usize,
    /// The first budget that ran out.
    timed_out: Option<Budget>,
}

impl Found {
    pub(super) fn new(limits: &DiffLimits) -> Self {
        Self { kept: Vec::new(), max: limits.max_differences, dropped: 0, timed_out: None }
    }

    pub(super) fn push(&mut self, difference: Difference) {
        if self.kept.len() < self.max {
            self.kept.push(difference);
        } else {
            self.dropped += 1;
        }
    }

    /// Like [`push`](Self::push), building the difference only when it is kept: rendering
    /// the values of differences past the cap would be work thrown away.
    pub(super) fn push_with(&mut self, make: impl FnOnce() -> Difference) {
        if self.has_room() {
            self.kept.push(make());
        } else {
            self.dropped += 1;
        }
    }

    pub(super) fn extend(&mut self, differences: impl IntoIterator<Item = Difference>) {
        differences.into_iter().for_each(|d| self.push(d));
    }

    /// Whether another difference would be kept (rather than only counted).
    pub(super) fn has_room(&self) -> bool {
        self.kept.len() < self.max
    }

    /// Records that `budget` ran out; the first one is reported.
    pub(super) fn timed_out(&mut self, budget: Budget) {
        self.timed_out.get_or_insert(budget);
    }

    /// The kept differences, then the markers for what was cut: they come last and are
    /// never dropped themselves.
    pub(super) fn finish(mut self) -> Vec<Difference> {
        // At `body` (not the path where it ran out), so that the secondary running out on the
        // same body makes the candidate's marker noise, as for any other shared path.
        if let Some(budget) = self.timed_out {
            self.kept.push(Difference {
                kind: DiffKind::DiffTimeout,
                path: "body".to_owned(),
                primary: Some(budget.as_str().to_owned()),
                shadow: None,
            });
        }
        if self.dropped > 0 {
            self.kept.push(Difference {
                kind: DiffKind::Overflow,
                path: "differences".to_owned(),
                primary: Some(self.max.to_string()),
                shadow: Some(self.dropped.to_string()),
            });
        }
        self.kept
    }
}

//! Latency judged on paired evidence, with an interval.
//!
//! The mirror replays each request to the candidate and the secondary together, so each
//! request gives a pair: the candidate's time and the secondary's (or, without a secondary,
//! the primary's). Both shadows go through the same replay path at the same moment, so what
//! the path and the machine add falls on both sides alike, and only the version differs.
//!
//! The shift at a quantile is the time the candidate adds there, as a share of the
//! primary's quantile (+0.08: 8% of the latency the primary's users see). At p50 the time
//! added is the median of each request's own difference, candidate minus baseline; at p95,
//! the candidate's p95 minus the baseline's. A difference, not a ratio of the shadows' times: whatever the
//! replay path adds to both shadows (the mirror's scheduling, its connection, a busy
//! machine) cancels out of it, where in a ratio it would dilute the change. The primary's
//! time, which the tap measures in front of it, is the scale users feel. Without a secondary
//! the baseline is the primary itself, and the replay path's cost then counts against the
//! candidate: run a secondary.
//!
//! The interval is a paired percentile bootstrap: requests are resampled with replacement,
//! each with all of its times, so the correlation between the sides (a slow moment slows
//! both) narrows the interval as it should. They are resampled in runs of [`BLOCK`]
//! consecutive requests (in the order they were made), since a busy moment slows several in
//! a row and one-by-one resampling would count that as independent evidence. The resampling is seeded by the evidence, so
//! the same rows always give the same verdict.
//!
//! Unlike the rates' confidence sequences, this is an interval for one look. The gate reads
//! it at [`LEVEL`] (99%) rather than 95%, and fails only from `min_samples` comparisons, to
//! keep the chance that a CD system polling it fails a clean candidate small.

use serde::{Deserialize, Serialize};

/// The coverage of each shift's interval.
pub const LEVEL: f64 = 0.99;

/// Bootstrap resamples per shift.
const RESAMPLES: usize = 400;

/// Consecutive requests resampled together (a moving-block bootstrap).
const BLOCK: usize = 50;

/// One request's times, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timed {
    pub candidate: f64,
    /// The secondary's time for the same request, or the primary's without a secondary.
    pub baseline: f64,
    /// The primary's, as the tap measured it.
    pub primary: f64,
}

/// One quantile's shift, with its interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Shift {
    /// 0.5 or 0.95.
    pub quantile: f64,
    /// (Candidate's quantile − baseline's) / primary's, on all requests.
    pub observed: f64,
    pub lower: f64,
    pub upper: f64,
}

/// The shifts at p50 and p95 of `pairs` (in the order the requests were made), in that
/// order; `None` with fewer than two requests or a primary quantile of zero.
pub fn shifts(pairs: &[Timed]) -> Option<[Shift; 2]> {
    if pairs.len() < 2 {
        return None;
    }
    let quantiles = [0.5, 0.95];
    let mut observed = [0.0; 2];
    for (shift, q) in observed.iter_mut().zip(quantiles) {
        *shift = shift_at(pairs.iter().copied(), q, pairs.len())?;
    }
    let mut rng = fastrand::Rng::with_seed(pairs.len() as u64);
    let mut resampled: [Vec<f64>; 2] = [Vec::with_capacity(RESAMPLES), Vec::with_capacity(RESAMPLES)];
    let mut drawn = Vec::with_capacity(pairs.len());
    for _ in 0..RESAMPLES {
        drawn.clear();
        // Whole runs of consecutive requests: a busy moment slows several in a row, and
        // resampling them one by one would take that for independent evidence.
        while drawn.len() < pairs.len() {
            let start = rng.usize(..pairs.len());
            drawn.extend(pairs[start..].iter().take(BLOCK.min(pairs.len() - drawn.len())));
        }
        for (into, q) in resampled.iter_mut().zip(quantiles) {
            if let Some(shift) = shift_at(drawn.iter().copied(), q, drawn.len()) {
                into.push(shift);
            }
        }
    }
    let tail = (1.0 - LEVEL) / 2.0;
    let mut out = [Shift { quantile: 0.0, observed: 0.0, lower: 0.0, upper: 0.0 }; 2];
    for (i, q) in quantiles.into_iter().enumerate() {
        let values = &mut resampled[i];
        values.sort_by(f64::total_cmp);
        let lower = quantile_of_sorted(values, tail)?;
        let upper = quantile_of_sorted(values, 1.0 - tail)?;
        out[i] =
            Shift { quantile: q, observed: observed[i], lower: lower.min(observed[i]), upper: upper.max(observed[i]) };
    }
    Some(out)
}

/// The time the candidate adds at quantile `q`, over the primary's `q` quantile. At the
/// median it is the median of each request's own difference (the candidate's time minus the
/// baseline's for that request): pairing cancels what a moment does to both sides, which
/// makes it far more precise than a difference of two medians. In the tail it is the
/// difference of the two quantiles: a tail belongs to a distribution, not to a request.
fn shift_at(pairs: impl Iterator<Item = Timed>, q: f64, n: usize) -> Option<f64> {
    let (mut added, mut candidate, mut baseline, mut primary) =
        (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    for t in pairs {
        added.push(t.candidate - t.baseline);
        candidate.push(t.candidate);
        baseline.push(t.baseline);
        primary.push(t.primary);
    }
    let scale = select(&mut primary, q);
    let added = if q == 0.5 { select(&mut added, q) } else { select(&mut candidate, q) - select(&mut baseline, q) };
    (scale > 0.0).then(|| added / scale)
}

/// The `q` quantile of `values` (the lower of the two middle ones: the same rule for both
/// sides), found in linear time.
fn select(values: &mut [f64], q: f64) -> f64 {
    let index = rank(values.len(), q);
    *values.select_nth_unstable_by(index, f64::total_cmp).1
}

fn quantile_of_sorted(values: &[f64], q: f64) -> Option<f64> {
    values.get(rank(values.len(), q)).copied()
}

#[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation, clippy::cast_sign_loss)] // small counts
fn rank(len: usize, q: f64) -> usize {
    (((len as f64) * q).ceil() as usize).clamp(1, len.max(1)) - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A service of about 4 ms whose requests vary by up to ±25% (the same draw for every
    /// deployment of one request), and the candidate's service time `factor` times longer.
    /// Each shadow's replay path adds about 4 ms more, varying by request and side; the
    /// primary, timed by the tap in front of it, about 0.5 ms.
    fn replayed(n: usize, factor: f64, seed: u64) -> Vec<Timed> {
        let mut rng = fastrand::Rng::with_seed(seed);
        (0..n)
            .map(|_| {
                let work = 4.0 * (0.75 + 0.5 * rng.f64()) + if rng.f64() < 0.05 { 6.0 * rng.f64() } else { 0.0 };
                let moment = 3.0 + 2.0 * rng.f64();
                let mut path = || moment + 0.3 * rng.f64();
                Timed { candidate: work * factor + path(), baseline: work + path(), primary: work + 0.5 }
            })
            .collect()
    }

    #[test]
    fn eight_percent_slower_shows_with_its_interval_above_five() {
        let [p50, p95] = shifts(&replayed(2000, 1.08, 1)).unwrap();
        assert!(p50.lower > 0.05, "the replay path's 4 ms do not dilute it: {p50:?}");
        assert!(p95.lower > 0.0 && p95.upper > 0.08, "{p95:?}");
        assert!((p50.observed - 0.08 * 4.0 / 4.5).abs() < 0.02, "8% of the service, of the primary's 4.5 ms: {p50:?}");
    }

    #[test]
    fn the_same_version_stays_within_five() {
        let [p50, p95] = shifts(&replayed(2000, 1.0, 2)).unwrap();
        assert!(p50.lower < 0.0 && p50.upper > 0.0 && p50.upper < 0.05, "{p50:?}");
        assert!(p95.lower < 0.0 && p95.upper > 0.0, "{p95:?}");
    }

    #[test]
    fn the_interval_holds_the_observed_shift_and_is_reproducible() {
        let pairs = replayed(500, 1.02, 3);
        let [p50, p95] = shifts(&pairs).unwrap();
        for s in [p50, p95] {
            assert!(s.lower <= s.observed && s.observed <= s.upper, "{s:?}");
        }
        assert_eq!(shifts(&pairs), shifts(&pairs), "the same rows, the same answer");
        let t = |primary| Timed { candidate: 1.0, baseline: 1.0, primary };
        assert_eq!(shifts(&[t(1.0)]), None);
        assert_eq!(shifts(&[t(0.0), t(0.0)]), None, "nothing to divide by");
    }
}

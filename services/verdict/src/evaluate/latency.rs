//! Latency judged on paired evidence, with an interval.
//!
//! The mirror replays each request to the candidate and the secondary together, so each
//! request gives a pair: the candidate's time and the secondary's (or, without a secondary,
//! the primary's). Both shadows go through the same replay path at the same moment, so what
//! the path and the machine add falls on both sides alike, and only the version differs.
//!
//! The shift at a quantile is the candidate's quantile over the baseline's, minus one
//! (+0.08: the candidate's p95 is 8% higher). Its interval is a paired percentile bootstrap:
//! requests are resampled with replacement, each with both of its times, so the correlation
//! between the two sides (a slow moment slows both) narrows the interval as it should.
//! The resampling is seeded by the evidence, so the same rows always give the same verdict.
//!
//! Unlike the rates' confidence sequences, this is an interval for one look. The gate reads
//! it at [`LEVEL`] (99%) rather than 95%, and fails only from `min_samples` comparisons, to
//! keep the chance that a CD system polling it fails a clean candidate small.

use serde::{Deserialize, Serialize};

/// The coverage of each shift's interval.
pub const LEVEL: f64 = 0.99;

/// Bootstrap resamples per shift.
const RESAMPLES: usize = 400;

/// One quantile's shift, with its interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Shift {
    /// 0.5 or 0.95.
    pub quantile: f64,
    /// Candidate's quantile / baseline's − 1, on all pairs.
    pub observed: f64,
    pub lower: f64,
    pub upper: f64,
}

/// The shifts at p50 and p95 of `pairs` (candidate, baseline), in that order; `None` with
/// fewer than two pairs or a baseline quantile of zero.
pub fn shifts(pairs: &[(f64, f64)]) -> Option<[Shift; 2]> {
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
        drawn.extend((0..pairs.len()).map(|_| pairs[rng.usize(..pairs.len())]));
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

/// Candidate's `q` quantile over the baseline's, minus one.
fn shift_at(pairs: impl Iterator<Item = (f64, f64)>, q: f64, n: usize) -> Option<f64> {
    let (mut candidate, mut baseline): (Vec<f64>, Vec<f64>) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for (c, b) in pairs {
        candidate.push(c);
        baseline.push(b);
    }
    let base = select(&mut baseline, q);
    (base > 0.0).then(|| select(&mut candidate, q) / base - 1.0)
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

    /// A service around 4 ms whose every request varies by up to ±25%, and the same with
    /// its service time `factor` times longer, on the same requests (one random draw each,
    /// as two shadows replayed together share a moment's conditions), plus each side's own
    /// independent jitter.
    fn replayed(n: usize, factor: f64, seed: u64) -> Vec<(f64, f64)> {
        let mut rng = fastrand::Rng::with_seed(seed);
        (0..n)
            .map(|_| {
                let moment = 4.0 * (0.75 + 0.5 * rng.f64()) + if rng.f64() < 0.05 { 6.0 * rng.f64() } else { 0.0 };
                let (own_c, own_b) = (0.3 * rng.f64(), 0.3 * rng.f64());
                (moment * factor + own_c, moment + own_b)
            })
            .collect()
    }

    #[test]
    fn eight_percent_slower_shows_with_its_interval_above_five() {
        let [p50, p95] = shifts(&replayed(2000, 1.08, 1)).unwrap();
        assert!(p50.lower > 0.05, "{p50:?}");
        assert!(p95.lower > 0.0 && p95.upper > 0.08, "{p95:?}");
        assert!((p50.observed - 0.08).abs() < 0.02, "{p50:?}");
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
        assert_eq!(shifts(&[(1.0, 1.0)]), None);
        assert_eq!(shifts(&[(1.0, 0.0), (2.0, 0.0)]), None, "nothing to divide by");
    }
}

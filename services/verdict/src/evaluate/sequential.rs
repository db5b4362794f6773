//! Anytime-valid statistics: answers that stay right however often they are read.
//!
//! CD systems read the verdict every few seconds and act on the first pass or fail. An
//! interval computed for one sample size (Wilson's) holds its 95% for one look only: read
//! after every batch, it wanders across a bound by chance far more often than 5% of the time.
//! So every judgement here is sequential. Each one is a bet against a hypothesis, whose
//! wealth is a nonnegative martingale of mean 1 while the hypothesis is true: by Ville's
//! inequality it ever reaches 1/α with probability at most α, at whatever moments it is read.
//!
//! - **Rates** (divergence, new errors) are confidence sequences after Robbins' beta-binomial
//!   mixture (Howard, Ramdas, McAuliffe and Sekhon, 2021). For each possible rate p, the
//!   wealth of a bettor against p after k events in n trials is the likelihood of what was
//!   seen averaged over a Beta prior of other rates, divided by its likelihood under p. The
//!   interval is every p whose wealth is still below 1/α, α = 5%: with 95% probability it
//!   holds the true rate at every n at once. The prior is centred on p with the weight of
//!   [`PRIOR_WEIGHT`] observations, which keeps the interval tight for the rates gates use.
//! - **Paths** (`paths`) bet that the candidate brings a path's differences, against the
//!   hypothesis that each difference seen there is as likely the secondary's as the
//!   candidate's (they answer the same requests).

use statrs::function::beta::{beta_reg, ln_beta};

/// The error level of every rate's confidence sequence: 95% coverage at all times.
pub const ALPHA: f64 = 0.05;

/// How many observations the prior of a rate's confidence sequence weighs.
const PRIOR_WEIGHT: f64 = 100.0;

/// Where a rate stands against `bound`, after `count` events in `of` trials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The whole confidence sequence is at or below the bound.
    Below,
    /// The whole confidence sequence is above the bound.
    Above,
}

/// Whether the bound is outside the confidence sequence, and on which side: the wealth
/// against the bound has reached 1/α. `None` while the bound is still inside.
#[allow(clippy::cast_precision_loss)] // counts far below 2^52
pub fn side_of(count: u64, of: u64, bound: f64) -> Option<Side> {
    let (k, n) = (count.min(of) as f64, of as f64);
    if bound <= 0.0 {
        // No evidence proves a rate is at most 0; one event proves it is above.
        return (count > 0).then_some(Side::Above);
    }
    if of == 0 || bound >= 1.0 || ln_wealth(k, n, bound) < threshold() {
        return None;
    }
    Some(if k / n < bound { Side::Below } else { Side::Above })
}

/// The confidence sequence for a rate after `count` events in `of` trials, at [`ALPHA`]:
/// `(lower, upper)`. With nothing observed it is the whole of [0, 1].
#[allow(clippy::cast_precision_loss)] // counts far below 2^52
pub fn rate_interval(count: u64, of: u64) -> (f64, f64) {
    if of == 0 {
        return (0.0, 1.0);
    }
    let (k, n) = (count.min(of) as f64, of as f64);
    let inside = |p: f64| ln_wealth(k, n, p) < threshold();
    // The observed rate is always inside (its wealth is at most 1), and the wealth grows
    // away from it on both sides: each end is found by bisection, in log-odds, which is
    // fine in both tails.
    let observed = (k / n).clamp(EDGE, 1.0 - EDGE);
    let lower = if inside(EDGE) { 0.0 } else { boundary(EDGE, observed, &inside) };
    let upper = if inside(1.0 - EDGE) { 1.0 } else { boundary(1.0 - EDGE, observed, &inside) };
    (lower, upper)
}

/// The rates closest to 0 and 1 the interval resolves.
const EDGE: f64 = 1e-12;

fn threshold() -> f64 {
    (1.0 / ALPHA).ln()
}

/// ln of the wealth against rate `p` after `k` events in `n` trials: the beta-binomial
/// mixture likelihood over the likelihood under `p`.
fn ln_wealth(k: f64, n: f64, p: f64) -> f64 {
    let (a, b) = (PRIOR_WEIGHT * p, PRIOR_WEIGHT * (1.0 - p));
    ln_beta(a + k, b + n - k) - ln_beta(a, b) - k * p.ln() - (n - k) * (1.0 - p).ln()
}

/// The point between `outside` and `inside` where the wealth crosses the threshold.
fn boundary(outside: f64, inside: f64, is_inside: &impl Fn(f64) -> bool) -> f64 {
    let logit = |p: f64| (p / (1.0 - p)).ln();
    let (mut out, mut inn) = (logit(outside), logit(inside));
    for _ in 0..60 {
        let mid = f64::midpoint(out, inn);
        if is_inside(1.0 / (1.0 + (-mid).exp())) { inn = mid } else { out = mid }
    }
    1.0 / (1.0 + (-inn).exp())
}

/// The wealth of a bet that the candidate brings a path's differences, after the candidate
/// differed there `candidate` times and the secondary `secondary` times on the same requests.
///
/// Under the hypothesis, each of those differences is the candidate's with probability ½.
/// Half the stake bets that they are all the candidate's (the secondary never differs there:
/// the common case, a field only the new version changes), doubling with each one and lost at
/// the secondary's first. The other half is spread evenly over every share from ½ to 1,
/// which still wins when the secondary differs there now and then. Reaching 1/α is evidence
/// at level α; with a secondary that never differs there, 8 differences reach 100.
#[allow(clippy::cast_precision_loss)] // counts far below 2^52
pub fn path_wealth(candidate: u64, secondary: u64) -> f64 {
    let (c, s) = (candidate as f64, secondary as f64);
    let ln2 = std::f64::consts::LN_2;
    let all_candidate = if secondary == 0 { (c * ln2).exp() } else { 0.0 };
    // 2^n · 2 ∫_{1/2}^{1} q^c (1 − q)^s dq = 2^(n+1) · B(c+1, s+1) · P(Beta(c+1, s+1) > ½).
    let above_half = 1.0 - beta_reg(c + 1.0, s + 1.0, 0.5);
    let spread =
        if above_half > 0.0 { ((c + s + 1.0) * ln2 + ln_beta(c + 1.0, s + 1.0) + above_half.ln()).exp() } else { 0.0 };
    0.5 * all_candidate + 0.5 * spread
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interval_holds_the_observed_rate_and_narrows_with_evidence() {
        assert_eq!(rate_interval(0, 0), (0.0, 1.0));
        for (k, n) in [(0, 400), (2, 400), (10, 2000), (20, 2000), (100, 10_000), (400, 400)] {
            let (lower, upper) = rate_interval(k, n);
            #[allow(clippy::cast_precision_loss)]
            let p = k as f64 / n as f64;
            assert!(lower <= p && p <= upper, "{k}/{n}: {lower}..{upper}");
        }
        let (_, wide) = rate_interval(5, 1000);
        let (_, narrow) = rate_interval(50, 10_000);
        assert!(narrow < wide, "{narrow} < {wide}");
        // Nothing seen in 400: under 1.3%; in 1,000: under 1%.
        assert!(rate_interval(0, 400).1 < 0.013);
        assert!(rate_interval(0, 1000).1 < 0.01);
        assert_eq!(rate_interval(0, 1000).0, 0.0);
        assert_eq!(rate_interval(400, 400).1, 1.0);
    }

    #[test]
    fn it_is_wider_than_a_one_look_interval() {
        // Wilson's 95% for 10 of 2,000 is about 0.27%–0.92%.
        let (lower, upper) = rate_interval(10, 2000);
        assert!(lower < 0.0027 && upper > 0.0092, "{lower}..{upper}");
        assert!(lower > 0.001 && upper < 0.0125, "{lower}..{upper}");
    }

    #[test]
    fn a_path_only_the_candidate_shows_is_evidence_from_eight() {
        assert!(path_wealth(7, 0) < 100.0, "{}", path_wealth(7, 0));
        assert!(path_wealth(8, 0) >= 100.0, "{}", path_wealth(8, 0));
        assert!(path_wealth(0, 0) <= 1.0);
        // As often as the secondary: no evidence at all.
        assert!(path_wealth(12, 15) < 1.0);
        assert!(path_wealth(300, 280) < 100.0);
        // Four times as often, on enough differences.
        assert!(path_wealth(40, 10) >= 100.0, "{}", path_wealth(40, 10));
        // Far out, without overflow.
        assert!(path_wealth(2000, 0).is_infinite() || path_wealth(2000, 0) > 1e100);
        assert!(path_wealth(1500, 500) > 1e50);
    }

    /// Synthetic runs of a candidate whose comparisons diverge at `rate`, each read after
    /// every 100 comparisons from 400 to 20,000, as `shadowctl gate --wait` and Argo read the
    /// verdict, against a 1% bound: the shares of runs that ended in a pass and in a fail.
    fn polled(rate: f64, runs: u32, seed: u64) -> (f64, f64) {
        let bound = 0.01;
        let mut rng = fastrand::Rng::with_seed(seed);
        let (mut passed, mut failed) = (0u32, 0u32);
        for _ in 0..runs {
            let mut k = 0u64;
            for n in 1..=20_000u64 {
                k += u64::from(rng.f64() < rate);
                if n >= 400 && n % 100 == 0 {
                    match side_of(k, n, bound) {
                        Some(Side::Below) => passed += 1,
                        Some(Side::Above) => failed += 1,
                        None => continue,
                    }
                    break;
                }
            }
        }
        (f64::from(passed) / f64::from(runs), f64::from(failed) / f64::from(runs))
    }

    /// The promise to CD systems: read as often as they like, a candidate on the bound is
    /// passed or failed by chance at most 5% of the time, one clearly below it is failed
    /// at most 5% of the time, and one clearly above it is passed at most 5% of the time.
    /// (A one-look Wilson interval read this way passed 15% and failed 28% at the bound.)
    #[test]
    fn polled_after_every_batch_the_error_rates_stay_at_the_stated_level() {
        let runs = 2000;
        let (pass, fail) = polled(0.01, runs, 7);
        eprintln!("true rate 1.0% (the bound): pass {pass:.3}, fail {fail:.3}");
        assert!(pass + fail <= ALPHA, "at the bound: pass {pass} + fail {fail} > {ALPHA}");
        let (pass, fail) = polled(0.005, runs, 8);
        eprintln!("true rate 0.5%: pass {pass:.3}, fail {fail:.3}");
        assert!(fail <= ALPHA, "half the bound failed {fail}");
        assert!(pass > 0.9, "half the bound should pass within 20,000: {pass}");
        let (pass, fail) = polled(0.015, runs, 9);
        eprintln!("true rate 1.5%: pass {pass:.3}, fail {fail:.3}");
        assert!(pass <= ALPHA, "1.5 times the bound passed {pass}");
        assert!(fail > 0.9, "1.5 times the bound should fail within 20,000: {fail}");
    }
}

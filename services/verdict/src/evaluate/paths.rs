//! Systematic paths: Diffy's per-field decision, made a gate criterion.
//!
//! A field the candidate changes on a small share of one route's responses can hide under
//! the overall divergence bound, and still be a regression every user of that route may
//! meet. So each route's generalised path (`items[*].price`) is judged on its own: the
//! candidate's differences there that are not noise, against the secondary's differences
//! there on the same requests. The secondary runs the primary's version, so whatever it
//! shows at a path is what the primary's own nondeterminism produces there.
//!
//! The test is exact and conditional: of the `c + s` differences seen at the path (the
//! candidate's `c`, the secondary's `s`, on the same requests, so the same number of
//! chances each), how likely are `c` or more to be the candidate's if both differed there
//! equally often? That is the upper tail of Binomial(c + s, 1/2). A path is systematic when
//! that probability is below [`SIGNIFICANCE`] and the candidate showed it at least
//! [`MIN_COUNT`] times. With a secondary that never differs there, that is 7 differences.
//! Fields the secondary varies on (timestamps, random ids, shuffled arrays) stay out, even
//! when one exchange's secondary happened to match the primary.

use serde::{Deserialize, Serialize};

/// The tail probability under which a path is systematic.
pub const SIGNIFICANCE: f64 = 0.01;

/// The fewest candidate differences at one path that can make it systematic.
pub const MIN_COUNT: u64 = 5;

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
}

/// A path whose differences the candidate brings, not the primary's own nondeterminism.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DivergentPath {
    pub route: String,
    pub path: String,
    pub kind: String,
    pub candidate: u64,
    pub secondary: u64,
    /// How likely this many or more of the differences would be the candidate's if both
    /// shadows differed there equally often.
    pub p_value: f64,
    pub examples: Vec<String>,
}

/// The systematic paths of `paths`, most certain first.
pub fn systematic(paths: Vec<PathEvidence>) -> Vec<DivergentPath> {
    let mut found: Vec<DivergentPath> = paths
        .into_iter()
        .filter(|p| p.candidate >= MIN_COUNT && p.candidate > p.secondary)
        .map(|p| {
            let p_value = upper_tail_half(p.candidate, p.candidate + p.secondary);
            DivergentPath {
                route: p.route,
                path: p.path,
                kind: p.kind,
                candidate: p.candidate,
                secondary: p.secondary,
                p_value,
                examples: p.examples,
            }
        })
        .filter(|p| p.p_value < SIGNIFICANCE)
        .collect();
    found.sort_by(|a, b| a.p_value.total_cmp(&b.p_value).then(b.candidate.cmp(&a.candidate)));
    found
}

/// P(X ≥ k) for X ~ Binomial(n, 1/2), summed in log space so that no term underflows.
#[allow(clippy::cast_precision_loss)] // counts far below 2^52
fn upper_tail_half(k: u64, n: u64) -> f64 {
    if k == 0 {
        return 1.0;
    }
    if k > n {
        return 0.0;
    }
    // ln P(X = n) = -n ln 2; P(X = j) = P(X = j + 1) · (j + 1) / (n − j).
    let mut ln_term = -(n as f64) * std::f64::consts::LN_2;
    let mut ln_sum = ln_term;
    for j in (k..n).rev() {
        ln_term += ((j + 1) as f64).ln() - ((n - j) as f64).ln();
        let (high, low) = if ln_sum > ln_term { (ln_sum, ln_term) } else { (ln_term, ln_sum) };
        ln_sum = high + (low - high).exp().ln_1p();
    }
    ln_sum.exp().min(1.0)
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
        }
    }

    #[test]
    fn the_binomial_tail_is_exact() {
        assert!((upper_tail_half(7, 7) - 1.0 / 128.0).abs() < 1e-12);
        assert!((upper_tail_half(2, 3) - 0.5).abs() < 1e-12);
        assert!((upper_tail_half(1, 1) - 0.5).abs() < 1e-12);
        assert!((upper_tail_half(0, 5) - 1.0).abs() < 1e-12);
        // Far out in a long tail, without underflow: P(X ≥ 1500 | n = 2000) is about 1e-117.
        let tiny = upper_tail_half(1500, 2000);
        assert!(tiny > 0.0 && tiny < 1e-100, "{tiny}");
        assert!((upper_tail_half(1000, 2000) - 0.5089).abs() < 1e-3);
    }

    #[test]
    fn a_change_the_secondary_never_shows_is_systematic_from_seven() {
        assert!(systematic(vec![at(6, 0)]).is_empty(), "6 alone: 1/64 is not below 1%");
        let found = systematic(vec![at(7, 0)]);
        assert_eq!(found.len(), 1);
        assert!((found[0].p_value - 1.0 / 128.0).abs() < 1e-12);
    }

    #[test]
    fn what_the_secondary_shows_as_often_is_not() {
        // A shuffled array: the candidate's order differed on 12 exchanges where the
        // secondary's happened to match, and the secondary's on 15 others.
        assert!(systematic(vec![at(12, 15)]).is_empty());
        assert!(systematic(vec![at(4, 0)]).is_empty(), "under the minimum count");
        assert_eq!(systematic(vec![at(40, 10)]).len(), 1, "four times as often is systematic");
    }
}

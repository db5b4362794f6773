//! Noise across exchanges, after Twitter's Diffy.
//!
//! Per route, candidate and path (array indices generalised to `[*]`), and apart for the live
//! traffic and each replay run ([`Subject`]), count how often the
//! candidate differs from the primary (*raw*) and how often the secondary does (*noise*), on
//! the same exchanges. A path is a real divergence only when the candidate differs there
//! clearly more often than the secondary does; otherwise its differences are noise:
//!
//! - absolute difference `|raw − noise| / exchanges × 100` above `absolute_threshold_pct`, and
//! - relative difference `|raw − noise| / (raw + noise) × 100` above `relative_threshold_pct`,
//! - and `raw > noise`.
//!
//! This complements the per-exchange rule in `sink::rows` (a path the secondary differs on
//! in this very exchange is noise there): the per-exchange rule catches values that change on
//! every response, the statistics catch values that differ on some responses only.

use std::collections::HashMap;

use serde::Deserialize;
use shadowdiff_runtime::config::ConfigError;

use crate::bounded::RouteMap;

/// `[correlator.noise]`: Diffy's thresholds; the defaults are Diffy's.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct NoiseConfig {
    /// Minimum `|raw − noise| / (raw + noise)`, in percent, for a path to diverge.
    #[serde(default = "default_relative")]
    pub relative_threshold_pct: f64,
    /// Minimum `|raw − noise| / exchanges`, in percent, for a path to diverge.
    #[serde(default = "default_absolute")]
    pub absolute_threshold_pct: f64,
    /// Paths tracked per route and candidate; a path beyond it is never called noise by
    /// the statistics (only by the per-exchange rule).
    #[serde(default = "default_max_paths")]
    pub max_paths: usize,
    /// (Route, candidate) pairs tracked at most; beyond it the least recently seen pair is
    /// forgotten (`shadowdiff_correlator_route_state_evicted_total{state="noise"}`), so
    /// auto-templated paths cannot grow the model without end.
    #[serde(default = "default_max_routes")]
    pub max_routes: usize,
}

impl Default for NoiseConfig {
    fn default() -> Self {
        Self {
            relative_threshold_pct: default_relative(),
            absolute_threshold_pct: default_absolute(),
            max_paths: default_max_paths(),
            max_routes: default_max_routes(),
        }
    }
}

const fn default_relative() -> f64 {
    20.0
}
const fn default_absolute() -> f64 {
    0.03
}
const fn default_max_paths() -> usize {
    1000
}
/// At `max_paths` paths of ~100 bytes each, about 100 MiB at worst.
const fn default_max_routes() -> usize {
    1000
}

impl NoiseConfig {
    pub(crate) fn validate(&self, errors: &mut Vec<ConfigError>) {
        for (key, value) in [
            ("correlator.noise.relative_threshold_pct", self.relative_threshold_pct),
            ("correlator.noise.absolute_threshold_pct", self.absolute_threshold_pct),
        ] {
            if !(0.0..=100.0).contains(&value) {
                errors.push(ConfigError::rule(key, "must be a percentage in [0, 100]"));
            }
        }
        if self.max_routes == 0 {
            errors.push(ConfigError::rule("correlator.noise.max_routes", "must be at least 1"));
        }
    }
}

/// Counts are halved once a route and candidate has seen this many exchanges, so the model
/// follows the services as they change instead of remembering forever.
const HALVE_AT: u64 = 100_000;

#[derive(Debug, Default)]
struct Counts {
    /// Exchanges where the secondary and this candidate were both compared.
    exchanges: u64,
    /// Path → (raw, noise).
    paths: HashMap<String, (u64, u64)>,
}

/// Whose differences are counted together: one candidate on one route, in the live traffic
/// (`run` empty) or in one replay run. A run replays other traffic at another time, often
/// against another build under the same name, so what one run learns never explains
/// another's differences, nor the live traffic's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Subject<'a> {
    pub(crate) run: &'a str,
    pub(crate) route: &'a str,
    pub(crate) candidate: &'a str,
}

impl Subject<'_> {
    fn key(self) -> (String, String, String) {
        (self.run.to_owned(), self.route.to_owned(), self.candidate.to_owned())
    }
}

/// The running counts, per [`Subject`].
#[derive(Debug)]
pub(crate) struct NoiseModel {
    config: NoiseConfig,
    counts: RouteMap<(String, String, String), Counts>,
}

impl NoiseModel {
    pub(crate) fn new(config: NoiseConfig) -> Self {
        Self { config, counts: RouteMap::new(config.max_routes, "noise") }
    }

    /// Counts one exchange where both the secondary and the subject's candidate were
    /// compared with the primary: the paths where each differed.
    pub(crate) fn observe<'a>(
        &mut self,
        subject: Subject<'_>,
        secondary_paths: impl IntoIterator<Item = &'a str>,
        candidate_paths: impl IntoIterator<Item = &'a str>,
    ) {
        let max_paths = self.config.max_paths;
        let counts = self.counts.entry(subject.key(), Counts::default);
        counts.exchanges += 1;
        let mut bump = |path: &str, raw: bool| {
            let key = generalise(path);
            let tracked = counts.paths.len();
            if let Some(entry) = counts.paths.get_mut(&key) {
                if raw { entry.0 += 1 } else { entry.1 += 1 }
            } else if tracked < max_paths {
                counts.paths.insert(key, if raw { (1, 0) } else { (0, 1) });
            }
        };
        // Each path once per exchange and side, however many array elements it matched.
        let mut seen: Vec<String> = candidate_paths.into_iter().map(generalise).collect();
        seen.sort_unstable();
        seen.dedup();
        seen.iter().for_each(|p| bump(p, true));
        let mut seen: Vec<String> = secondary_paths.into_iter().map(generalise).collect();
        seen.sort_unstable();
        seen.dedup();
        seen.iter().for_each(|p| bump(p, false));
        if counts.exchanges >= HALVE_AT {
            counts.exchanges /= 2;
            counts.paths.values_mut().for_each(|(raw, noise)| (*raw, *noise) = (*raw / 2, *noise / 2));
        }
    }

    /// Whether the secondary's record explains the subject's differences at `path`.
    pub(crate) fn explains(&self, subject: Subject<'_>, path: &str) -> bool {
        let Some(counts) = self.counts.peek(&subject.key()) else {
            return false;
        };
        let Some(&(raw, noise)) = counts.paths.get(&generalise(path)) else {
            return false;
        };
        if counts.exchanges == 0 || raw + noise == 0 {
            return false;
        }
        #[allow(clippy::cast_precision_loss)] // counts far below 2^52
        let (raw, noise, exchanges) = (raw as f64, noise as f64, counts.exchanges as f64);
        let absolute = (raw - noise).abs() / exchanges * 100.0;
        let relative = (raw - noise).abs() / (raw + noise) * 100.0;
        let diverges = raw > noise
            && relative > self.config.relative_threshold_pct
            && absolute > self.config.absolute_threshold_pct;
        !diverges
    }
}

/// `items[3].price` and `items[id=7].price` → `items[*].price`: one statistic per field.
fn generalise(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut depth = 0usize;
    for c in path.chars() {
        match c {
            '[' => {
                if depth == 0 {
                    out.push_str("[*]");
                }
                depth += 1;
            }
            ']' => depth = depth.saturating_sub(1),
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `candidate` on `route` in the live traffic.
    fn live<'a>(route: &'a str, candidate: &'a str) -> Subject<'a> {
        Subject { run: "", route, candidate }
    }

    #[test]
    fn array_positions_and_keys_generalise() {
        assert_eq!(generalise("items[3].price"), "items[*].price");
        assert_eq!(generalise("items[id=7].tags[0]"), "items[*].tags[*]");
        assert_eq!(generalise("header:x-cache"), "header:x-cache");
    }

    #[test]
    fn a_path_the_secondary_differs_on_as_often_is_noise() {
        let mut model = NoiseModel::new(NoiseConfig::default());
        // `served_by` differs on about half of the responses, for both shadows, but not
        // always in the same exchanges.
        for i in 0..100 {
            let secondary: &[&str] = if i % 2 == 0 { &["served_by"] } else { &[] };
            let candidate: &[&str] = if i % 3 != 0 { &["served_by"] } else { &[] };
            model.observe(live("/items/{id}", "v2"), secondary.iter().copied(), candidate.iter().copied());
        }
        // 66 raw vs 50 noise: relative 13.8% < 20%.
        assert!(model.explains(live("/items/{id}", "v2"), "served_by"));
    }

    #[test]
    fn a_path_only_the_candidate_differs_on_diverges() {
        let mut model = NoiseModel::new(NoiseConfig::default());
        for i in 0..100 {
            let candidate: &[&str] = if i % 10 == 0 { &["items[2].price"] } else { &[] };
            model.observe(live("/items/{id}", "v2"), ["generated_at"], candidate.iter().copied());
        }
        assert!(!model.explains(live("/items/{id}", "v2"), "items[5].price"), "10% raw against no noise");
        assert!(model.explains(live("/items/{id}", "v2"), "generated_at"), "only ever noise");
        assert!(!model.explains(live("/other", "v2"), "generated_at"), "per route");
        assert!(!model.explains(live("/items/{id}", "v3"), "generated_at"), "per candidate");
    }

    #[test]
    fn a_replay_run_learns_apart_from_the_live_traffic_and_other_runs() {
        let mut model = NoiseModel::new(NoiseConfig::default());
        let run = |run| Subject { run, route: "/items/{id}", candidate: "v2" };
        // In run a, the baseline differs at `price` as often as the build: noise there.
        for _ in 0..100 {
            model.observe(run("a"), ["price"], ["price"]);
        }
        assert!(model.explains(run("a"), "price"));
        assert!(!model.explains(run("b"), "price"), "run b has its own record");
        assert!(!model.explains(live("/items/{id}", "v2"), "price"), "so has the live traffic");
    }

    #[test]
    fn the_absolute_threshold_lets_very_rare_excess_through_as_noise() {
        let config = NoiseConfig { absolute_threshold_pct: 5.0, ..NoiseConfig::default() };
        let mut model = NoiseModel::new(config);
        for i in 0..100 {
            let candidate: &[&str] = if i < 3 { &["etag"] } else { &[] };
            model.observe(live("/r", "v2"), [], candidate.iter().copied());
        }
        assert!(model.explains(live("/r", "v2"), "etag"), "3% excess is under a 5% absolute threshold");
    }

    #[test]
    fn tracked_routes_are_bounded() {
        let mut model = NoiseModel::new(NoiseConfig { max_routes: 100, ..NoiseConfig::default() });
        for id in 0..10_000 {
            model.observe(live(&format!("/items/{id}"), "v2"), ["served_by"], []);
        }
        assert_eq!(model.counts.len(), 100);
        assert!(model.explains(live("/items/9999", "v2"), "served_by"), "the latest routes are kept");
        assert!(!model.explains(live("/items/0", "v2"), "served_by"), "the oldest was forgotten");
    }

    #[test]
    fn tracked_paths_are_bounded() {
        let mut model = NoiseModel::new(NoiseConfig { max_paths: 2, ..NoiseConfig::default() });
        model.observe(live("/r", "v2"), ["a", "b", "c"], []);
        assert!(model.explains(live("/r", "v2"), "a") && model.explains(live("/r", "v2"), "b"));
        assert!(!model.explains(live("/r", "v2"), "c"), "untracked: never called noise");
    }

    /// The README's promise: the counts halve every 100,000 exchanges of a route and
    /// candidate, so the model follows the services as they change.
    const HALVING_EVERY: u64 = 100_000;

    fn counts(model: &NoiseModel) -> (u64, (u64, u64), (u64, u64)) {
        let counts = model.counts.peek(&live("/r", "v2").key()).unwrap();
        (counts.exchanges, counts.paths["x"], counts.paths["y"])
    }

    #[test]
    fn counts_halve_at_the_100_000th_exchange() {
        let mut model = NoiseModel::new(NoiseConfig::default());
        // Both shadows differ at `x`, only the candidate at `y`.
        for _ in 0..HALVING_EVERY - 1 {
            model.observe(live("/r", "v2"), ["x"], ["x", "y"]);
        }
        let n = HALVING_EVERY - 1;
        assert_eq!(counts(&model), (n, (n, n), (n, 0)), "whole counts up to the 99,999th");
        model.observe(live("/r", "v2"), ["x"], ["x", "y"]);
        let half = HALVING_EVERY / 2;
        assert_eq!(counts(&model), (half, (half, half), (half, 0)), "halved with the 100,000th");
        model.observe(live("/r", "v2"), ["x"], ["x", "y"]);
        assert_eq!(counts(&model), (half + 1, (half + 1, half + 1), (half + 1, 0)), "and counting on");
    }

    #[test]
    fn halving_lets_the_model_follow_a_change() {
        let mut model = NoiseModel::new(NoiseConfig::default());
        // For 99,999 exchanges the secondary differs at `shard` as often as the candidate.
        for _ in 0..HALVING_EVERY - 1 {
            model.observe(live("/r", "v2"), ["shard"], ["shard"]);
        }
        assert!(model.explains(live("/r", "v2"), "shard"), "noise while both differ");
        // Then only the candidate does. Halved at the 100,000th exchange, the old record
        // weighs half: after 30,000 more, raw 79,999 against noise 49,999 is 23% apart,
        // over the 20% threshold. Kept whole it would be 129,999 against 99,999, 13% apart,
        // and the change would still pass for noise.
        for _ in 0..30_000 {
            model.observe(live("/r", "v2"), [], ["shard"]);
        }
        assert!(!model.explains(live("/r", "v2"), "shard"), "the candidate's new divergence is seen");
    }
}

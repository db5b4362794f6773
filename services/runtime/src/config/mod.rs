//! Config loading: a TOML file, then `SHADOWDIFF_*` environment overrides, then validation.
//! Every problem is collected and reported at once, each with its key and where it came
//! from, before anything starts.
//!
//! Environment overrides: `SHADOWDIFF_<SECTION>_<KEY>` sets `key` in `[section]`, and `__`
//! separates deeper levels (`SHADOWDIFF_TAP_CAPTURE__MAX_BODY_BYTES` sets
//! `tap.capture.max_body_bytes`). Section names have no underscore, so the first `_` after
//! the prefix is unambiguous. Values are read as TOML (`5000`, `true`, `["a"]`) and fall back
//! to a plain string. A variable for a section a service does not have is ignored, so one
//! environment can serve every service; an unknown key inside a known section is an error.
//!
//! Unknown keys are found with `serde_ignored` rather than `#[serde(deny_unknown_fields)]`:
//! the attribute stops at the first unknown key, while the whole point here is to report
//! them all in one pass.

mod header;
mod load;
mod secret;
pub mod serde_duration;

pub use header::HeaderName;
pub use load::{load, load_from_env, load_str};
pub use secret::Secret;

use std::fmt;

/// Cross-field rules, checked after every key parsed. Push one [`ConfigError`] per problem.
pub trait Validate {
    fn validate(&self, errors: &mut Vec<ConfigError>);
}

/// Where a config value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    File(String),
    Env(String),
    Default,
}

/// One bad key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub message: String,
    pub origin: Origin,
}

impl ConfigError {
    /// A cross-field rule broken at `key`.
    pub fn rule(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self { key: key.into(), message: message.into(), origin: Origin::Default }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.origin {
            Origin::File(path) => write!(f, "{}: {} (in {path})", self.key, self.message),
            Origin::Env(var) => write!(f, "{}: {} (from ${var})", self.key, self.message),
            Origin::Default => write!(f, "{}: {}", self.key, self.message),
        }
    }
}

/// Every problem found in a config, reported together.
#[derive(Debug, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid configuration, {} problem(s):", self.0.len())?;
        for error in &self.0 {
            writeln!(f, "  - {error}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;

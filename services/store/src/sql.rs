//! Conditions on the words stored in `exchanges` and `differences`, built from their types,
//! so the queries that read the rows say what the correlator wrote: renaming an [`Outcome`]
//! or a [`Role`] fails to compile, and changing its word changes writer and readers alike.
//!
//! The words are the types' own constants, never input, so quoting them is safe.

use shadowdiff_core::Role;

use crate::Outcome;

/// `outcome = 'complete'`
pub fn outcome_is(outcome: Outcome) -> String {
    format!("outcome = '{}'", outcome.as_str())
}

/// `outcome IN ('complete', 'shadow_error')`
pub fn outcome_in(outcomes: &[Outcome]) -> String {
    let words: Vec<String> = outcomes.iter().map(|o| format!("'{}'", o.as_str())).collect();
    format!("outcome IN ({})", words.join(", "))
}

/// `role = 'candidate'`
pub fn role_is(role: Role) -> String {
    format!("role = '{}'", role.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_name_the_stored_words() {
        assert_eq!(outcome_is(Outcome::Complete), "outcome = 'complete'");
        assert_eq!(outcome_in(&[Outcome::Complete, Outcome::ShadowError]), "outcome IN ('complete', 'shadow_error')");
        assert_eq!(role_is(Role::Candidate), "role = 'candidate'");
        assert_eq!(role_is(Role::Secondary), "role = 'secondary'");
    }
}

//! Accepted differences: an intended change is approved once, by a person, not configured
//! away.
//!
//! A candidate that adds a field on purpose differs from the primary at that field on every
//! response, and would fail every gate. Someone with the write scope accepts it: candidate,
//! route, generalised path (`items[*].discount`, `header:x-api-version`), a reason, and
//! optionally an expiry. From then on the candidate's differences there, at that path or
//! beneath it, are shown as accepted and left out of every criterion. A revoked or expired
//! acceptance counts again at once.
//!
//! Acceptances are kept in `acceptances`, an append-only log: the latest row of a path is its
//! state, and every earlier one stays, so who accepted what, when and why is never lost.

use clickhouse::{Client, Row};
use serde::{Deserialize, Serialize};
use shadowdiff_store::{AcceptanceRow, StoreError};

/// Longest reason kept.
pub const MAX_REASON: usize = 1000;
/// Longest route or path accepted.
pub const MAX_PATH: usize = 512;
/// Longest expiry: a year. An intended change that needs longer belongs in the primary.
pub const MAX_EXPIRY_SECS: u64 = 365 * 86_400;
/// Most paths one candidate's acceptances are read for.
const MAX_LISTED: u32 = 1000;

/// One accepted path of a candidate.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acceptance {
    pub route: String,
    /// A generalised path: the acceptance covers it and every path beneath it.
    pub path: String,
    pub reason: String,
    /// Who accepted it: the token's name, or `sso:<user>`.
    pub actor: String,
    /// Unix seconds.
    pub at: u32,
    /// Unix seconds when it lapses; 0 for never.
    pub expires: u32,
}

impl Acceptance {
    /// Whether this acceptance covers a difference at `path` of `route`: the same path, or
    /// one beneath it (`meta` covers `meta.version` and `meta[*]`).
    pub fn covers(&self, route: &str, path: &str) -> bool {
        route == self.route
            && path
                .strip_prefix(self.path.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('.') || rest.starts_with('['))
    }
}

/// Where an acceptance stands now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Active,
    Expired,
    Revoked,
}

/// A path's latest acceptance or revocation, and where it stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listed {
    pub state: State,
    #[serde(flatten)]
    pub acceptance: Acceptance,
}

/// A path's latest row (RowBinary has no flattening, so the fields are spelled out).
#[derive(Debug, Row, Deserialize)]
struct Latest {
    action: String,
    route: String,
    path: String,
    reason: String,
    actor: String,
    at: u32,
    expires: u32,
}

/// The latest row of each of `candidate`'s paths, with its state as of `now`.
pub(crate) async fn list(client: &Client, candidate: &str, now: u32) -> Result<Vec<Listed>, StoreError> {
    let rows: Vec<Latest> = client
        .query(
            "SELECT argMax(action, version) AS action, route, path, argMax(reason, version) AS reason, \
             argMax(actor, version) AS actor, toUInt32(argMax(at, version)) AS at, \
             toUInt32(argMax(expires, version)) AS expires \
             FROM acceptances WHERE candidate = ? GROUP BY route, path ORDER BY route, path LIMIT ?",
        )
        .bind(candidate)
        .bind(MAX_LISTED)
        .fetch_all()
        .await
        .map_err(|e| StoreError::new("read acceptances", e))?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let a = Acceptance {
                route: row.route,
                path: row.path,
                reason: row.reason,
                actor: row.actor,
                at: row.at,
                expires: row.expires,
            };
            let state = if row.action != ACCEPT {
                State::Revoked
            } else if a.expires != 0 && a.expires <= now {
                State::Expired
            } else {
                State::Active
            };
            Listed { state, acceptance: a }
        })
        .collect())
}

/// `candidate`'s acceptances in force at `now`.
pub(crate) async fn active(client: &Client, candidate: &str, now: u32) -> Result<Vec<Acceptance>, StoreError> {
    Ok(list(client, candidate, now)
        .await?
        .into_iter()
        .filter(|l| l.state == State::Active)
        .map(|l| l.acceptance)
        .collect())
}

const ACCEPT: &str = "accept";
const REVOKE: &str = "revoke";

/// The body of `POST /v1/acceptances` and `POST /v1/acceptances/revoke`: one path of one
/// candidate.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeRequest {
    pub candidate: String,
    pub route: String,
    /// A generalised path, as the verdict reports it (`items[*].discount`).
    pub path: String,
    /// Why the difference is intended: required to accept, optional to revoke.
    #[serde(default)]
    pub reason: String,
    /// How long an acceptance lasts (`7d`, `12h`); none for good. Not for a revocation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
}

/// `candidate` if it is a deployment name the API takes.
pub(crate) fn checked_candidate(candidate: String) -> Result<String, String> {
    if candidate.is_empty() || candidate.len() > 128 {
        return Err("candidate is required: 1 to 128 characters".into());
    }
    Ok(candidate)
}

impl ChangeRequest {
    /// The change asked for, checked; `accepting` false for a revocation.
    pub(crate) fn into_change(self, accepting: bool) -> Result<Change, String> {
        let candidate = checked_candidate(self.candidate)?;
        for (field, value) in [("route", &self.route), ("path", &self.path)] {
            if value.is_empty() || value.len() > MAX_PATH || value.chars().any(char::is_control) {
                return Err(format!("{field} must be 1 to {MAX_PATH} printable characters"));
            }
        }
        let reason = self.reason.trim().to_owned();
        if reason.len() > MAX_REASON || reason.chars().any(|c| c.is_control() && c != '\n') {
            return Err(format!("reason must be at most {MAX_REASON} printable characters"));
        }
        if accepting && reason.is_empty() {
            return Err("reason is required: say why this difference is intended".into());
        }
        let accept_for = match (accepting, self.expires.as_deref().filter(|e| !e.is_empty())) {
            (false, None) => None,
            (false, Some(_)) => return Err("a revocation has no expiry".into()),
            (true, None) => Some(0),
            (true, Some(text)) => match humantime::parse_duration(text) {
                Ok(d) if d.as_secs() >= 1 && d.as_secs() <= MAX_EXPIRY_SECS => Some(d.as_secs()),
                _ => return Err(format!("expires {text:?} must be a duration from 1s to 365d, such as 7d")),
            },
        };
        let reason = if reason.is_empty() { "revoked".to_owned() } else { reason };
        Ok(Change { candidate, route: self.route, path: self.path, reason, accept_for })
    }
}

/// What a person asks, checked: accept (with an expiry, or none) or revoke one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Change {
    pub candidate: String,
    pub route: String,
    pub path: String,
    pub reason: String,
    /// `None` revokes; `Some(0)` accepts for good; `Some(secs)` accepts until `now + secs`.
    pub accept_for: Option<u64>,
}

/// Records `change`, made by `actor` at `now` (Unix seconds), and returns the path's new state.
pub(crate) async fn record(client: &Client, change: Change, actor: &str, now: u32) -> Result<Listed, StoreError> {
    let expires = match change.accept_for {
        Some(secs) if secs > 0 => now.saturating_add(u32::try_from(secs).unwrap_or(u32::MAX)),
        _ => 0,
    };
    let version = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    let row = AcceptanceRow {
        candidate: change.candidate,
        route: change.route,
        path: change.path,
        action: if change.accept_for.is_some() { ACCEPT } else { REVOKE }.to_owned(),
        reason: change.reason,
        actor: actor.to_owned(),
        at: now,
        expires,
        version,
    };
    shadowdiff_store::insert::<AcceptanceRow, _>(client, "acceptances", std::slice::from_ref(&row)).await?;
    tracing::info!(
        candidate = row.candidate,
        route = row.route,
        path = row.path,
        action = row.action,
        actor,
        "acceptance recorded"
    );
    let state = if change.accept_for.is_some() { State::Active } else { State::Revoked };
    Ok(Listed {
        state,
        acceptance: Acceptance {
            route: row.route,
            path: row.path,
            reason: row.reason,
            actor: row.actor,
            at: now,
            expires,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asked(reason: &str, expires: Option<&str>) -> ChangeRequest {
        ChangeRequest {
            candidate: "v2".into(),
            route: "/items/{n}".into(),
            path: "discount".into(),
            reason: reason.into(),
            expires: expires.map(str::to_owned),
        }
    }

    #[test]
    fn changes_are_checked_field_by_field() {
        assert_eq!(asked("launch", None).into_change(true).map(|c| c.accept_for), Ok(Some(0)));
        assert_eq!(asked("launch", Some("7d")).into_change(true).map(|c| c.accept_for), Ok(Some(7 * 86_400)));
        assert!(asked("", None).into_change(true).unwrap_err().contains("reason is required"));
        assert!(asked("launch", Some("400d")).into_change(true).unwrap_err().contains("365d"));
        assert!(asked("launch", Some("soon")).into_change(true).is_err());
        assert_eq!(asked("", None).into_change(false).map(|c| (c.accept_for, c.reason)), Ok((None, "revoked".into())));
        assert!(asked("", Some("1d")).into_change(false).is_err(), "a revocation has no expiry");
        let long = ChangeRequest { path: "p".repeat(MAX_PATH + 1), ..asked("x", None) };
        assert!(long.into_change(true).unwrap_err().starts_with("path"));
        let control = ChangeRequest { route: "/a\u{7}".into(), ..asked("x", None) };
        assert!(control.into_change(true).unwrap_err().starts_with("route"));
    }

    #[test]
    fn an_acceptance_covers_its_path_and_what_lies_beneath_on_its_route() {
        let a = Acceptance { route: "/items/{n}".into(), path: "meta".into(), ..Acceptance::default() };
        assert!(a.covers("/items/{n}", "meta"));
        assert!(a.covers("/items/{n}", "meta.version"));
        assert!(a.covers("/items/{n}", "meta[*]"));
        assert!(!a.covers("/items/{n}", "metadata"), "a longer name is another field");
        assert!(!a.covers("/search", "meta"), "another route");
    }
}

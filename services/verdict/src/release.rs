//! Releases: one rollout of a candidate, named by the CD system that runs it (Argo Rollouts'
//! pod-template hash of the new ReplicaSet, Flagger's checksum of the canary's spec).
//!
//! A release is judged only on the comparisons made since the verdict service was first asked
//! about it. The candidate's name stays the same from release to release (its Service), so
//! without this a release would inherit every earlier release's rows: a past failure would
//! block the fix, and old passing rows would dilute a new regression. The first ask is the
//! start because it is the one moment every CD system gives us: Argo's analysis and Flagger's
//! hooks begin once the new pods are ready, so rows before it may still come from the
//! previous release.
//!
//! The first ask is kept in `releases`, so a restarted or second replica of this service
//! starts the window at the same moment: the earliest recorded ask counts.

use clickhouse::{Client, Row};
use serde::Deserialize;
use shadowdiff_store::ReleaseRow;

#[derive(Debug, Row, Deserialize)]
struct Asked {
    n: u64,
    first: u32,
}

/// Unix seconds of the first ask about `revision` of `candidate`: an earlier one recorded by
/// any replica, or `now`, recorded here.
pub(crate) async fn first_asked(
    client: &Client,
    candidate: &str,
    revision: &str,
    caller: &str,
    now: u32,
) -> Result<u32, shadowdiff_store::StoreError> {
    let lookup = || async {
        client
            .query(
                "SELECT count() AS n, toUInt32(min(first_asked)) AS first FROM releases \
                 WHERE candidate = ? AND revision = ?",
            )
            .bind(candidate)
            .bind(revision)
            .fetch_one::<Asked>()
            .await
            .map_err(|e| shadowdiff_store::StoreError::new("read releases", e))
    };
    let asked = lookup().await?;
    if asked.n > 0 {
        return Ok(asked.first);
    }
    let row = ReleaseRow {
        candidate: candidate.to_owned(),
        revision: revision.to_owned(),
        first_asked: now,
        caller: caller.to_owned(),
    };
    shadowdiff_store::insert::<ReleaseRow, _>(client, "releases", &[row]).await?;
    tracing::info!(candidate, revision, caller, "new release: its window starts now");
    // Another replica may have recorded the same release a moment earlier.
    let asked = lookup().await?;
    Ok(if asked.n > 0 { asked.first.min(now) } else { now })
}

//! The SQL behind the API. Every query reads with `FINAL`, so rows rewritten after a
//! correlator restart count once. All of it runs on ClickHouse 18.16 and current releases.

use clickhouse::{Client, Row};
use serde::{Deserialize, Serialize};

/// Comparison counts for one candidate.
#[derive(Debug, Clone, PartialEq, Eq, Row, Serialize, Deserialize)]
pub struct Counts {
    pub samples: u64,
    pub complete: u64,
    /// Exchanges with a difference that is not noise.
    pub diverged: u64,
    /// Exchanges with differences that were all noise.
    pub noise_only: u64,
    pub status_mismatches: u64,
    pub incomplete: u64,
}

/// How often one path differed.
#[derive(Debug, Clone, PartialEq, Eq, Row, Serialize, Deserialize)]
pub struct PathCount {
    pub path: String,
    pub kind: String,
    pub count: u64,
}

pub(crate) async fn counts(client: &Client, candidate: &str) -> clickhouse::error::Result<Counts> {
    client
        .query(
            "SELECT count() AS samples, \
                    countIf(outcome = 'complete') AS complete, \
                    countIf(differences > noise) AS diverged, \
                    countIf(differences > 0 AND differences = noise) AS noise_only, \
                    countIf(status_differs = 1) AS status_mismatches, \
                    countIf(outcome != 'complete') AS incomplete \
             FROM exchanges FINAL \
             WHERE role = 'candidate' AND deployment = ?",
        )
        .bind(candidate)
        .fetch_one()
        .await
}

pub(crate) async fn top_paths(
    client: &Client,
    candidate: &str,
    limit: u32,
) -> clickhouse::error::Result<Vec<PathCount>> {
    client
        .query(
            "SELECT path, kind, count() AS count \
             FROM differences FINAL \
             WHERE role = 'candidate' AND deployment = ? AND noise = 0 \
             GROUP BY path, kind \
             ORDER BY count DESC, path \
             LIMIT ?",
        )
        .bind(candidate)
        .bind(limit)
        .fetch_all()
        .await
}

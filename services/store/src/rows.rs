//! One struct per table, fields in column order: what the correlator writes and the verdict
//! reads. Timestamps are Unix seconds (`DateTime`).

use clickhouse::Row;
use serde::{Deserialize, Serialize};

/// How one comparison came out: the `outcome` column of `exchanges`. The correlator writes
/// these words and the verdict counts them (through [`crate::sql`]), so both take them from here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Request, primary and this shadow all arrived, and both answered.
    Complete,
    MissingRequest,
    MissingPrimary,
    PrimaryError,
    ShadowError,
    /// The mirror expected this leg, and it did not arrive within the window.
    MissingShadow,
    /// A stub tap could not answer one of this shadow's calls with the primary's recorded
    /// answer, though the primary made that call (its record came too late, or cut): the
    /// shadow answered in another world than the primary's, so neither its answer nor its
    /// calls are compared.
    StubMissed,
}

impl Outcome {
    /// The word stored in `exchanges.outcome`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Complete => "complete",
            Self::MissingRequest => "missing_request",
            Self::MissingPrimary => "missing_primary",
            Self::PrimaryError => "primary_error",
            Self::ShadowError => "shadow_error",
            Self::MissingShadow => "missing_shadow",
            Self::StubMissed => "stub_missed",
        }
    }
}

/// A row of `exchanges` (schemas/clickhouse/0001_exchanges.sql, 0002, 0003); fields in column order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Row, Serialize, Deserialize)]
pub struct ExchangeRow {
    pub ts: u32,
    pub request_id: String,
    pub route: String,
    pub method: String,
    pub deployment: String,
    /// A [`shadowdiff_core::Role`]'s word: `secondary` or `candidate`.
    pub role: String,
    /// An [`Outcome`]'s word.
    pub outcome: String,
    pub primary_status: u16,
    pub shadow_status: u16,
    pub primary_error: String,
    pub shadow_error: String,
    pub primary_latency_us: u64,
    pub shadow_latency_us: u64,
    pub latency_delta_us: i64,
    pub status_differs: u8,
    pub body_differs: u8,
    pub differences: u32,
    /// Of `differences`, those the secondary shows too in this exchange: noise.
    pub noise: u32,
    /// The mirror profile's rollout stage when this leg was replayed; empty if unknown.
    pub stage: String,
    /// The replay run (`shadowctl replay`) of this exchange; empty for live traffic.
    pub run: String,
}

/// A row of `differences`; fields in column order.
#[derive(Debug, Clone, PartialEq, Eq, Row, Serialize, Deserialize)]
pub struct DifferenceRow {
    pub ts: u32,
    pub request_id: String,
    pub route: String,
    pub deployment: String,
    pub role: String,
    pub kind: String,
    pub path: String,
    pub primary_value: String,
    pub shadow_value: String,
    /// 1 when the secondary differs from the primary at this path too (noise).
    pub noise: u8,
    /// The replay run of this exchange; empty for live traffic.
    pub run: String,
}

/// A row of `outbound_calls`: one call a deployment made downstream; fields in column order.
#[derive(Debug, Clone, PartialEq, Eq, Row, Serialize, Deserialize)]
pub struct OutboundCallRow {
    pub ts: u32,
    pub request_id: String,
    pub run: String,
    /// The inbound request's route.
    pub route: String,
    pub deployment: String,
    pub role: String,
    /// The call's place among its deployment's calls for this request, from 0.
    pub seq: u32,
    pub method: String,
    /// The host called.
    pub destination: String,
    /// The call's route template (or path).
    pub call_route: String,
    /// 0 when the call got no answer.
    pub status: u16,
    pub error: String,
    pub latency_us: u64,
    pub body_bytes: u64,
    pub body_sha256: String,
}

/// A row of `outbound_differences`: one way a shadow's downstream calls differ from the
/// primary's; fields in column order.
#[derive(Debug, Clone, PartialEq, Eq, Row, Serialize, Deserialize)]
pub struct OutboundDifferenceRow {
    pub ts: u32,
    pub request_id: String,
    pub run: String,
    pub route: String,
    pub deployment: String,
    pub role: String,
    /// `METHOD host route`.
    pub call: String,
    /// `missing_call`, `extra_call`, `status`, `order`, `unmatched`, or a body diff kind.
    pub kind: String,
    /// Below `body` for a payload difference; empty otherwise.
    pub path: String,
    pub primary_value: String,
    pub shadow_value: String,
    /// 1 for a call with an unsafe method (a write).
    pub write: u8,
    /// 1 when the secondary's calls differ from the primary's the same way (noise).
    pub noise: u8,
}

/// A row of `samples`: one leg's full captured response, kept for a capped share of the
/// divergent exchanges so the drill-down page can show the bodies side by side.
#[derive(Debug, Clone, PartialEq, Eq, Row, Serialize, Deserialize)]
pub struct SampleRow {
    pub ts: u32,
    pub request_id: String,
    pub route: String,
    pub method: String,
    pub deployment: String,
    pub role: String,
    pub status: u16,
    pub content_type: String,
    /// `name: value` lines, as published (secrets are already digests).
    pub headers: String,
    /// The body with its Content-Encoding undone, as text (lossy for binary).
    pub body: String,
    /// The full body's length, even when the capture was cut.
    pub body_length: u64,
    pub truncated: u8,
    /// The replay run of this exchange; empty for live traffic.
    pub run: String,
}

/// A row of `verdicts`: one verdict given, and by whom it was asked for.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct VerdictRow {
    pub ts: u32,
    pub candidate: String,
    /// Empty when the verdict covered every stage.
    pub stage: String,
    /// `pass`, `fail` or `inconclusive`.
    pub verdict: String,
    /// `api`, `flagger-gate` or `flagger-check`.
    pub caller: String,
    pub samples: u64,
    pub compared: u64,
    pub divergence_rate: f64,
    pub new_errors: u64,
    pub p95_delta: f64,
    /// The reasons of the criteria that did not pass, one per line.
    pub reasons: String,
    /// The release judged, as the CD system named it; empty when none was named.
    pub revision: String,
    /// Unix seconds: the start of the window of comparisons judged.
    pub since: u32,
}

/// A row of `releases`: when the verdict service was first asked about one release of a
/// candidate, which starts that release's window of comparisons.
#[derive(Debug, Clone, PartialEq, Eq, Row, Serialize, Deserialize)]
pub struct ReleaseRow {
    pub candidate: String,
    pub revision: String,
    /// Unix seconds.
    pub first_asked: u32,
    /// Who asked first: `api`, `flagger-gate` or `flagger-check`.
    pub caller: String,
}

/// A row of `acceptances`: a person accepting a candidate's differences at one route's path
/// as intended, or revoking that.
#[derive(Debug, Clone, PartialEq, Eq, Row, Serialize, Deserialize)]
pub struct AcceptanceRow {
    pub candidate: String,
    pub route: String,
    pub path: String,
    /// `accept` or `revoke`.
    pub action: String,
    pub reason: String,
    /// Who did it: the token's name, or `sso:<user>`.
    pub actor: String,
    /// Unix seconds.
    pub at: u32,
    /// Unix seconds when the acceptance lapses; 0 for never.
    pub expires: u32,
    /// Nanoseconds since the epoch: orders the rows of one path.
    pub version: u64,
}

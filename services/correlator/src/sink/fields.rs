//! The rows of one exchange, field by field: what each takes from the request, the primary
//! and the shadow leg it is about, and the one conversion from an event's time to a row's.

use shadowdiff_core::diff::{self, DiffKind, Difference};
use shadowdiff_core::event::header_value;
use shadowdiff_core::{ErrorKind, ExpectedLeg, OutboundCallEvent, RequestEvent, ResponseEvent};
use shadowdiff_store::{DifferenceRow, ExchangeRow, OutboundCallRow, OutboundDifferenceRow, Outcome, SampleRow};

use super::calls::CallDifference;

/// What every row of one exchange takes from its request and its primary.
pub(super) struct Fields<'a> {
    request: Option<&'a RequestEvent>,
    primary: Option<&'a ResponseEvent>,
    pub(super) route: String,
    method: String,
}

impl<'a> Fields<'a> {
    pub(super) fn new(request: Option<&'a RequestEvent>, primary: Option<&'a ResponseEvent>) -> Self {
        let route = request.map(|r| r.route().to_owned()).unwrap_or_default();
        let method = request.map(|r| r.method.clone()).unwrap_or_default();
        Self { request, primary, route, method }
    }

    /// The row of `shadow`'s comparison: `found` its differences, `noise` how many of them
    /// are noise.
    pub(super) fn compared(
        &self,
        shadow: &ResponseEvent,
        outcome: Outcome,
        found: &[Difference],
        noise: usize,
    ) -> ExchangeRow {
        ExchangeRow {
            shadow_status: status(shadow),
            shadow_error: error(shadow).to_owned(),
            shadow_latency_us: u64::try_from(shadow.latency_us).unwrap_or(0),
            latency_delta_us: self.primary.map_or(0, |p| shadow.latency_us - p.latency_us),
            status_differs: u8::from(found.iter().any(|d| d.kind == DiffKind::Status)),
            body_differs: u8::from(found.iter().any(|d| d.kind != DiffKind::Status && !d.path.starts_with("header:"))),
            differences: u32::try_from(found.len()).unwrap_or(u32::MAX),
            noise: u32::try_from(noise).unwrap_or(u32::MAX),
            ..self.row(shadow, shadow.deployment.clone(), shadow.role.as_str().to_owned(), outcome)
        }
    }

    /// The row of `call`, its deployment's `seq`-th downstream call for this request.
    pub(super) fn call(&self, call: &OutboundCallEvent, seq: usize) -> OutboundCallRow {
        OutboundCallRow {
            ts: row_time(self.request.map_or(call.request.timestamp_ms, |r| r.timestamp_ms)),
            request_id: call.request_id.clone(),
            run: self.request.map(|r| r.run.clone()).unwrap_or_default(),
            route: self.route.clone(),
            deployment: call.deployment.clone(),
            role: call.role.as_str().to_owned(),
            seq: u32::try_from(seq).unwrap_or(u32::MAX),
            method: call.request.method.clone(),
            destination: call.request.authority.clone(),
            call_route: call.request.route().to_owned(),
            status: status(&call.response),
            error: error(&call.response).to_owned(),
            latency_us: u64::try_from(call.response.latency_us).unwrap_or(0),
            body_bytes: u64::try_from(call.request.body.length).unwrap_or(0),
            body_sha256: call.request.body.sha256_hex(),
        }
    }

    /// The row of a leg the mirror expected that never came; `first` is the first that did.
    pub(super) fn missing(&self, first: &ResponseEvent, leg: ExpectedLeg) -> ExchangeRow {
        ExchangeRow {
            shadow_error: "missing".to_owned(),
            ..self.row(first, leg.deployment, leg.role, Outcome::MissingShadow)
        }
    }

    /// A row of `deployment` with what the exchange knows filled in, and no answer from the
    /// shadow. `leg` is the shadow leg the row is about, or the one standing in for a leg
    /// that never came: the row takes its request id, its stage and, without a request, its time.
    fn row(&self, leg: &ResponseEvent, deployment: String, role: String, outcome: Outcome) -> ExchangeRow {
        ExchangeRow {
            ts: row_time(self.request.map_or(leg.timestamp_ms, |r| r.timestamp_ms)),
            request_id: leg.request_id.clone(),
            route: self.route.clone(),
            method: self.method.clone(),
            deployment,
            role,
            outcome: outcome.as_str().to_owned(),
            primary_status: self.primary.map_or(0, status),
            primary_error: self.primary.map_or("", error).to_owned(),
            primary_latency_us: self.primary.map_or(0, |p| u64::try_from(p.latency_us).unwrap_or(0)),
            stage: leg.stage.clone().unwrap_or_default(),
            run: leg.run.clone(),
            ..ExchangeRow::default()
        }
    }
}

/// The rows of `row`'s differences `found`, each marked noise or not by `is_noise`.
pub(super) fn difference_rows(
    row: &ExchangeRow,
    found: Vec<Difference>,
    is_noise: Vec<bool>,
    max_value_bytes: usize,
) -> impl Iterator<Item = DifferenceRow> + '_ {
    found.into_iter().zip(is_noise).map(move |(d, noise)| DifferenceRow {
        ts: row.ts,
        request_id: row.request_id.clone(),
        route: row.route.clone(),
        deployment: row.deployment.clone(),
        role: row.role.clone(),
        kind: d.kind.as_str().to_owned(),
        noise: u8::from(noise),
        path: d.path,
        primary_value: truncate(d.primary.unwrap_or_default(), max_value_bytes),
        shadow_value: truncate(d.shadow.unwrap_or_default(), max_value_bytes),
        run: row.run.clone(),
    })
}

/// The rows of `row`'s shadow's downstream-call differences `found`, each marked noise or
/// not by `is_noise`.
pub(super) fn call_difference_rows(
    row: &ExchangeRow,
    found: Vec<CallDifference>,
    is_noise: Vec<bool>,
    max_value_bytes: usize,
) -> impl Iterator<Item = OutboundDifferenceRow> + '_ {
    found.into_iter().zip(is_noise).map(move |(d, noise)| OutboundDifferenceRow {
        ts: row.ts,
        request_id: row.request_id.clone(),
        run: row.run.clone(),
        route: row.route.clone(),
        deployment: row.deployment.clone(),
        role: row.role.clone(),
        call: d.call,
        kind: d.kind,
        path: d.path,
        primary_value: truncate(d.primary, max_value_bytes),
        shadow_value: truncate(d.shadow, max_value_bytes),
        write: u8::from(d.write),
        noise: u8::from(noise),
    })
}

/// A row's time: the Unix seconds (`DateTime`) of an event's milliseconds, within the
/// column's range.
fn row_time(timestamp_ms: i64) -> u32 {
    u32::try_from(timestamp_ms.max(0) / 1000).unwrap_or(u32::MAX)
}

pub(super) fn sample_row(request: &RequestEvent, leg: &ResponseEvent) -> SampleRow {
    let body = diff::decoded_body(leg).unwrap_or(std::borrow::Cow::Borrowed(leg.body.bytes.as_slice()));
    SampleRow {
        ts: row_time(request.timestamp_ms),
        request_id: leg.request_id.clone(),
        route: request.route().to_owned(),
        method: request.method.clone(),
        deployment: leg.deployment.clone(),
        role: leg.role.as_str().to_owned(),
        status: status(leg),
        content_type: header_value(&leg.headers, "content-type")
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default(),
        headers: leg.headers.iter().map(|h| format!("{}: {}\n", h.name, String::from_utf8_lossy(&h.value))).collect(),
        body: String::from_utf8_lossy(&body).into_owned(),
        body_length: u64::try_from(leg.body.length).unwrap_or(0),
        truncated: u8::from(leg.body.truncated),
        run: leg.run.clone(),
    }
}

fn status(response: &ResponseEvent) -> u16 {
    response.status.and_then(|s| u16::try_from(s).ok()).unwrap_or(0)
}

fn error(response: &ResponseEvent) -> &'static str {
    response.error.map_or("", ErrorKind::as_str)
}

/// Cuts `value` to at most `max` bytes on a character boundary, marking the cut with `…`.
fn truncate(mut value: String, max: usize) -> String {
    if value.len() <= max {
        return value;
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    value.truncate(end);
    value.push('…');
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncates_on_char_boundaries() {
        assert_eq!(truncate("short".into(), 16), "short");
        let cut = truncate("ééééééééééé".into(), 8);
        assert!(cut.len() <= 8 && cut.ends_with('…'), "{cut}");
    }
}

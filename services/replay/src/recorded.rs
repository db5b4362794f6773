//! One recorded exchange: the request as the tap saw it and the primary's answer to it.

use serde::{Deserialize, Serialize};
use shadowdiff_core::{DecodeError, Header, InvalidRequestId, RequestEvent, RequestId, ResponseEvent, Role};

/// The most bytes one exchange may carry (bodies, headers, strings; see
/// [`Recorded::carried_bytes`]): half of the 64 MiB cap the event codec puts on any
/// allocation while decoding, so that one exchange always fits a single allocation, in
/// Kafka or in a file, with room for the rest of its block.
pub const MAX_EXCHANGE_BYTES: usize = 32 * 1024 * 1024;

/// A request event and the primary's response event with the same request id, both as the
/// tap published them (already redacted).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recorded {
    pub request: RequestEvent,
    /// The response of role [`Role::Primary`]: the answer the client got.
    pub primary: ResponseEvent,
}

/// Why a pair of events is not a usable recorded exchange.
#[derive(Debug, thiserror::Error)]
pub enum InvalidRecord {
    #[error("request id {id:?}: {source}")]
    RequestId {
        id: String,
        #[source]
        source: InvalidRequestId,
    },
    #[error("request {id}: {source}")]
    Request {
        id: String,
        #[source]
        source: DecodeError,
    },
    #[error("request {id}: the response is the {}'s, not the primary's", .role.as_str())]
    NotPrimary { id: String, role: Role },
    #[error("request {request}: the response answers request {response}")]
    OtherRequest { request: String, response: String },
    #[error("request {id}: carries {bytes} bytes, more than the {MAX_EXCHANGE_BYTES} an exchange may")]
    TooLarge { id: String, bytes: usize },
}

impl Recorded {
    /// Pairs a request with its primary's response, checked as [`Recorded::check`] does.
    pub fn new(request: RequestEvent, primary: ResponseEvent) -> Result<Self, InvalidRecord> {
        let recorded = Self { request, primary };
        recorded.check()?;
        Ok(recorded)
    }

    pub fn request_id(&self) -> &str {
        &self.request.request_id
    }

    /// When the tap received the request (Unix milliseconds): the recording's order.
    pub const fn timestamp_ms(&self) -> i64 {
        self.request.timestamp_ms
    }

    /// What a replay relies on beyond the schema: a valid request id, an origin-form target
    /// ([`RequestEvent::check`]), the primary's response to this very request, and a size
    /// within [`MAX_EXCHANGE_BYTES`].
    pub fn check(&self) -> Result<(), InvalidRecord> {
        let id = &self.request.request_id;
        RequestId::parse(id).map_err(|source| InvalidRecord::RequestId { id: id.clone(), source })?;
        self.request.check().map_err(|source| InvalidRecord::Request { id: id.clone(), source })?;
        if self.primary.role != Role::Primary {
            return Err(InvalidRecord::NotPrimary { id: id.clone(), role: self.primary.role });
        }
        if self.primary.request_id != *id {
            return Err(InvalidRecord::OtherRequest { request: id.clone(), response: self.primary.request_id.clone() });
        }
        let bytes = self.carried_bytes();
        if bytes > MAX_EXCHANGE_BYTES {
            return Err(InvalidRecord::TooLarge { id: id.clone(), bytes });
        }
        Ok(())
    }

    /// The bytes the exchange carries: every string, header and body, plus a fixed
    /// allowance per header for its framing. Within a few bytes per field of its Avro size.
    pub fn carried_bytes(&self) -> usize {
        const PER_HEADER: usize = 16;
        let headers =
            |headers: &[Header]| -> usize { headers.iter().map(|h| h.name.len() + h.value.len() + PER_HEADER).sum() };
        let r = &self.request;
        let p = &self.primary;
        let strings =
            [&r.request_id, &r.tap_id, &r.method, &r.scheme, &r.authority, &r.path, &p.request_id, &p.deployment]
                .iter()
                .map(|s| s.len())
                .sum::<usize>()
                + r.query.as_ref().map_or(0, String::len)
                + r.route_template.as_ref().map_or(0, String::len)
                + p.profile.as_ref().map_or(0, String::len)
                + p.stage.as_ref().map_or(0, String::len)
                + p.expected_legs.iter().map(|l| l.role.len() + l.deployment.len() + PER_HEADER).sum::<usize>();
        let bodies = r.body.bytes.len() + r.body.sha256.len() + p.body.bytes.len() + p.body.sha256.len();
        strings + headers(&r.headers) + headers(&p.headers) + bodies
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use shadowdiff_core::CapturedBody;

    use super::*;

    pub(crate) fn exchange(id: &str, ts: i64) -> Recorded {
        let request = RequestEvent {
            request_id: id.into(),
            timestamp_ms: ts,
            tap_id: "tap-1".into(),
            method: "GET".into(),
            scheme: "http".into(),
            authority: "shop.example".into(),
            path: "/items/7".into(),
            query: Some("view=full".into()),
            route_template: Some("/items/{id}".into()),
            headers: vec![Header::new("accept", "application/json")],
            body: CapturedBody::empty(),
            run: String::new(),
        };
        let primary = ResponseEvent {
            request_id: id.into(),
            timestamp_ms: ts + 3,
            role: Role::Primary,
            deployment: "primary".into(),
            status: Some(200),
            headers: vec![Header::new("content-type", "application/json")],
            body: CapturedBody::capture(br#"{"id":7,"price":12.5}"#, 1024),
            latency_us: 2_500,
            error: None,
            profile: None,
            stage: None,
            expected_legs: Vec::new(),
            run: String::new(),
        };
        Recorded { request, primary }
    }

    #[test]
    fn only_the_primarys_answer_to_the_same_request_pairs() {
        assert!(exchange("r-1", 5).check().is_ok());
        let mut candidate = exchange("r-1", 5);
        candidate.primary.role = Role::Candidate;
        assert!(matches!(candidate.check(), Err(InvalidRecord::NotPrimary { role: Role::Candidate, .. })));
        let mut other = exchange("r-1", 5);
        other.primary.request_id = "r-2".into();
        assert!(matches!(other.check(), Err(InvalidRecord::OtherRequest { .. })));
        let mut bad_id = exchange("r 1", 5);
        bad_id.primary.request_id = "r 1".into();
        assert!(matches!(bad_id.check(), Err(InvalidRecord::RequestId { .. })));
        let mut bad_path = exchange("r-1", 5);
        bad_path.request.path = "http://elsewhere/".into();
        assert!(matches!(bad_path.check(), Err(InvalidRecord::Request { .. })));
    }

    #[test]
    fn an_exchange_fits_half_the_codecs_allocation_cap() {
        shadowdiff_core::EventCodec::new().unwrap();
        // Set once per process, by the codec: asking again reads the cap in force.
        let cap = apache_avro::util::max_allocation_bytes(usize::MAX);
        assert_eq!(MAX_EXCHANGE_BYTES, cap / 2);
    }

    #[test]
    fn an_exchange_beyond_the_bound_is_refused() {
        let mut big = exchange("r-1", 5);
        big.primary.body.bytes = vec![b'x'; MAX_EXCHANGE_BYTES];
        assert!(matches!(big.check(), Err(InvalidRecord::TooLarge { .. })));
        let small = exchange("r-1", 5);
        assert!(small.carried_bytes() > 100 && small.carried_bytes() < 400, "{}", small.carried_bytes());
    }
}

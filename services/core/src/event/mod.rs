//! The events the tap and the mirror publish, mirroring `schemas/avro/*.avsc` field by field.
//!
//! Both are keyed in Kafka by the request id, so a request and all of its responses land in
//! the same partition of their co-partitioned topics.

pub mod body;

pub use body::{BodyCapture, CapturedBody};
use serde::{Deserialize, Serialize};

/// One header line. Values are bytes: HTTP allows non-UTF-8 octets, and a tap must not
/// rewrite what it cannot represent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub name: String,
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
}

impl Header {
    pub fn new(name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        Self { name: name.into(), value: value.into() }
    }
}

/// Case-insensitive lookup of the first header with this name.
pub fn header_value<'a>(headers: &'a [Header], name: &str) -> Option<&'a [u8]> {
    headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value.as_slice())
}

/// One HTTP request as the tap saw it (`schemas/avro/request_event.avsc`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestEvent {
    pub request_id: String,
    pub timestamp_ms: i64,
    pub tap_id: String,
    pub method: String,
    pub scheme: String,
    pub authority: String,
    pub path: String,
    pub query: Option<String>,
    pub route_template: Option<String>,
    pub headers: Vec<Header>,
    pub body: CapturedBody,
    /// The replay run (`shadowctl replay`) that sent this request again; empty for live
    /// traffic. A mirror replays only live requests.
    #[serde(default)]
    pub run: String,
}

impl RequestEvent {
    /// Path and query as they go on a request line.
    pub fn path_and_query(&self) -> String {
        match &self.query {
            Some(q) if !q.is_empty() => format!("{}?{q}", self.path),
            _ => self.path.clone(),
        }
    }

    /// Checks what a consumer acts on beyond the schema: the target must be origin-form
    /// (`/path` and a query of visible ASCII), since anything else appended to a replay
    /// target's base URL could name another host.
    pub fn check(&self) -> Result<(), crate::DecodeError> {
        let visible = |s: &str| s.bytes().all(|b| b.is_ascii_graphic() && b != b'#');
        if !self.path.starts_with('/') || !visible(&self.path) || self.path.contains('?') || self.path.len() > 8192 {
            return Err(crate::DecodeError::Invalid { field: "path", reason: "not an origin-form path" });
        }
        if self.query.as_deref().is_some_and(|q| !visible(q) || q.len() > 8192) {
            return Err(crate::DecodeError::Invalid { field: "query", reason: "not a URL query" });
        }
        if self.method.is_empty()
            || self.method.len() > 32
            || !self.method.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        {
            return Err(crate::DecodeError::Invalid { field: "method", reason: "not an HTTP method token" });
        }
        Ok(())
    }

    /// The route template when the tap had one, else the raw path.
    pub fn route(&self) -> &str {
        self.route_template.as_deref().unwrap_or(&self.path)
    }
}

/// Which side of the comparison a response comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Role {
    /// Production: its answer went to the client.
    Primary,
    /// Same version as the primary, replayed; differences it shows are noise.
    Secondary,
    /// The new version under test.
    Candidate,
}

impl Role {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Primary => "primary",
            Self::Secondary => "secondary",
            Self::Candidate => "candidate",
        }
    }
}

/// Why a leg has no response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorKind {
    Timeout,
    Connect,
    Reset,
    CircuitOpen,
    Shed,
    Other,
}

impl ErrorKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Connect => "connect",
            Self::Reset => "reset",
            Self::CircuitOpen => "circuit_open",
            Self::Shed => "shed",
            Self::Other => "other",
        }
    }
}

/// One leg's response (`schemas/avro/response_event.avsc`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResponseEvent {
    pub request_id: String,
    pub timestamp_ms: i64,
    pub role: Role,
    pub deployment: String,
    pub status: Option<i32>,
    pub headers: Vec<Header>,
    pub body: CapturedBody,
    pub latency_us: i64,
    pub error: Option<ErrorKind>,
    /// The mirror profile that replayed the request; `None` for the primary.
    pub profile: Option<String>,
    /// That profile's rollout stage (`shadow`, `1`, `10`, `50`, `100`).
    pub stage: Option<String>,
    /// Every shadow leg the mirror replays this request to, this one included; empty on
    /// the primary's event. The correlator completes an exchange once all have arrived.
    #[serde(default)]
    pub expected_legs: Vec<ExpectedLeg>,
    /// The replay run (`shadowctl replay`) this leg belongs to, on every leg of a replayed
    /// exchange; empty for live traffic. Rows carry it, and verdicts judge one run or the
    /// live traffic, never both.
    #[serde(default)]
    pub run: String,
}

/// A shadow leg the mirror replays a request to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ExpectedLeg {
    /// A [`Role`]'s word, `secondary` or `candidate`: a string on the wire, so it is what
    /// the mirror sent, and rows carry it as it came.
    pub role: String,
    pub deployment: String,
    /// A sidecar tap in front of this deployment publishes its own leg (`Mode::Sidecar`):
    /// its upstream time, with nothing of the replay path in it, is the leg's latency, and
    /// the exchange waits for it.
    #[serde(default)]
    pub timed_by_tap: bool,
}

impl ExpectedLeg {
    pub fn new(role: Role, deployment: impl Into<String>) -> Self {
        Self { role: role.as_str().to_owned(), deployment: deployment.into(), timed_by_tap: false }
    }

    /// This leg, timed by a sidecar tap in front of its deployment when `timed` is true.
    #[must_use]
    pub fn timed_by_tap(self, timed: bool) -> Self {
        Self { timed_by_tap: timed, ..self }
    }
}

/// One outbound HTTP call a deployment made while serving a request
/// (`schemas/avro/outbound_call_event.avsc`), captured by a tap in egress mode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboundCallEvent {
    /// The originating request's id: the Kafka key, shared with `request.request_id`.
    pub request_id: String,
    pub call_id: String,
    /// False when the call carried no request id and `request_id` was minted.
    pub linked: bool,
    pub deployment: String,
    pub request: RequestEvent,
    pub response: ResponseEvent,
    pub role: Role,
}

/// Milliseconds since the Unix epoch, the unit of every event timestamp.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, path: &str, query: Option<&str>) -> RequestEvent {
        RequestEvent {
            request_id: "r".into(),
            timestamp_ms: 0,
            tap_id: "t".into(),
            method: method.into(),
            scheme: "http".into(),
            authority: "a".into(),
            path: path.into(),
            query: query.map(str::to_owned),
            route_template: None,
            headers: Vec::new(),
            body: CapturedBody::empty(),
            run: String::new(),
        }
    }

    #[test]
    fn only_origin_form_targets_pass() {
        for (method, path, query) in
            [("GET", "/items/1", Some("a=1&b=%20")), ("M-SEARCH", "/", None), ("GET", "//x", None)]
        {
            assert!(request(method, path, query).check().is_ok(), "{path}");
        }
        for (method, path, query) in [
            ("GET", "@evil.example/x", None),
            ("GET", "http://evil.example/x", None),
            ("GET", "", None),
            ("GET", "/a b", None),
            ("GET", "/a#frag", None),
            ("GET", "/a?b", None),
            ("GET", "/a", Some("x=1#f")),
            ("GET /", "/", None),
        ] {
            let error = request(method, path, query).check().unwrap_err();
            assert_eq!(error.reason(), "invalid_field", "{method} {path} {query:?}");
        }
    }
}

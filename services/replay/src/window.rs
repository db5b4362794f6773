//! Which recorded exchanges a recording holds: a time range of the requests' own
//! timestamps, optional routes and methods, a sticky sample, and a bound on the count.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use shadowdiff_core::{RequestEvent, RequestId};

/// How many exchanges a window holds at most unless told otherwise, so that no recording,
/// and no replay of one, is unbounded.
pub const DEFAULT_LIMIT: usize = 1_000_000;

/// A window of recorded traffic. Built with [`Window::new`] (or [`Window::parse`]) and the
/// `with_*` methods, each of which checks its value, so a `Window` is always valid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Spec", into = "Spec")]
pub struct Window {
    from_ms: i64,
    to_ms: i64,
    routes: Vec<String>,
    methods: Vec<String>,
    sample_percent: f64,
    limit: usize,
}

/// Why a window cannot be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WindowError {
    #[error("{text:?} is neither an RFC 3339 time (2025-01-31T12:00:00Z), a duration ago (90m, 2h) nor `now`")]
    Time { text: String },
    #[error("the window is empty: it starts at {from} and ends at {to}; the start must come first")]
    Empty { from: String, to: String },
    #[error("sample percent {0} is not between 0 and 100")]
    SamplePercent(f64),
    #[error("the limit must be at least 1 exchange")]
    Limit,
    #[error("{0:?} is not an HTTP method")]
    Method(String),
}

/// What a window says about one request event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// In the window and its filters, and sampled in.
    Kept,
    /// Its timestamp is outside `[from, to)`.
    OutsideTime,
    /// In the time range, but not one of the routes or methods asked for.
    Filtered,
    /// In the time range and the filters, but not in the sample.
    SampledOut,
}

impl Window {
    /// Every exchange whose request arrived in `[from_ms, to_ms)` (Unix milliseconds), up to
    /// [`DEFAULT_LIMIT`] of them.
    pub fn new(from_ms: i64, to_ms: i64) -> Result<Self, WindowError> {
        if from_ms >= to_ms {
            return Err(WindowError::Empty { from: format_ms(from_ms), to: format_ms(to_ms) });
        }
        Ok(Self {
            from_ms,
            to_ms,
            routes: Vec::new(),
            methods: Vec::new(),
            sample_percent: 100.0,
            limit: DEFAULT_LIMIT,
        })
    }

    /// [`Window::new`] from the command line's words (see [`parse_time`]), both read
    /// against the same `now`.
    pub fn parse(from: &str, to: &str, now: SystemTime) -> Result<Self, WindowError> {
        Self::new(parse_time(from, now)?, parse_time(to, now)?)
    }

    /// Keeps only requests whose route template (or path, where the tap had no template) is
    /// one of `routes`; none keeps every route.
    #[must_use]
    pub fn with_routes<S: Into<String>>(mut self, routes: impl IntoIterator<Item = S>) -> Self {
        self.routes = routes.into_iter().map(Into::into).collect();
        self
    }

    /// Keeps only requests with one of `methods` (any case); none keeps every method.
    pub fn with_methods<S: AsRef<str>>(mut self, methods: impl IntoIterator<Item = S>) -> Result<Self, WindowError> {
        let mut kept = Vec::new();
        for method in methods {
            let method = method.as_ref();
            let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
            if method.is_empty() || method.len() > 32 || !method.bytes().all(token) {
                return Err(WindowError::Method(method.to_owned()));
            }
            kept.push(method.to_ascii_uppercase());
        }
        self.methods = kept;
        Ok(self)
    }

    /// Keeps `percent` (0 to 100) of the requests, chosen by request id with the mirror's
    /// sticky rule ([`RequestId::sampled`]): the same ids on every run, and the same ids a
    /// mirror profile sampling the same share replays.
    pub fn with_sample_percent(mut self, percent: f64) -> Result<Self, WindowError> {
        if !(0.0..=100.0).contains(&percent) {
            return Err(WindowError::SamplePercent(percent));
        }
        self.sample_percent = percent;
        Ok(self)
    }

    /// Holds at most `limit` exchanges: the earliest ones, by request timestamp.
    pub fn with_limit(mut self, limit: usize) -> Result<Self, WindowError> {
        if limit == 0 {
            return Err(WindowError::Limit);
        }
        self.limit = limit;
        Ok(self)
    }

    /// The first millisecond in the window (Unix milliseconds).
    pub const fn from_ms(&self) -> i64 {
        self.from_ms
    }

    /// The first millisecond after the window: the window is `[from, to)`.
    pub const fn to_ms(&self) -> i64 {
        self.to_ms
    }

    /// The routes kept; empty keeps all.
    pub fn routes(&self) -> &[String] {
        &self.routes
    }

    /// The methods kept, upper case; empty keeps all.
    pub fn methods(&self) -> &[String] {
        &self.methods
    }

    pub const fn sample_percent(&self) -> f64 {
        self.sample_percent
    }

    /// The most exchanges the window holds.
    pub const fn limit(&self) -> usize {
        self.limit
    }

    /// Whether `timestamp_ms` lies in `[from, to)`.
    pub const fn contains(&self, timestamp_ms: i64) -> bool {
        self.from_ms <= timestamp_ms && timestamp_ms < self.to_ms
    }

    /// What the window says about `request`, whose id is `id`.
    pub fn select(&self, request: &RequestEvent, id: &RequestId) -> Selection {
        if !self.contains(request.timestamp_ms) {
            Selection::OutsideTime
        } else if !(self.routes.is_empty() || self.routes.iter().any(|r| r == request.route()))
            || !(self.methods.is_empty() || self.methods.iter().any(|m| m.eq_ignore_ascii_case(&request.method)))
        {
            Selection::Filtered
        } else if !id.sampled(self.sample_percent) {
            Selection::SampledOut
        } else {
            Selection::Kept
        }
    }
}

/// A point in time from the command line, as Unix milliseconds: an RFC 3339 time
/// (`2025-01-31T12:00:00Z`, with or without fractions), a duration before `now` (`90m`,
/// `2h`, `1h 30m`, as `humantime` reads them) or `now`.
pub fn parse_time(text: &str, now: SystemTime) -> Result<i64, WindowError> {
    let text = text.trim();
    let at = if text == "now" {
        Some(now)
    } else if let Ok(at) = humantime::parse_rfc3339_weak(text) {
        Some(at)
    } else {
        humantime::parse_duration(text).ok().and_then(|ago| now.checked_sub(ago))
    };
    at.and_then(|at| i64::try_from(at.duration_since(UNIX_EPOCH).ok()?.as_millis()).ok())
        .ok_or_else(|| WindowError::Time { text: text.to_owned() })
}

/// `ms` as an RFC 3339 time with milliseconds, for messages and reports.
pub fn format_ms(ms: i64) -> String {
    match u64::try_from(ms) {
        Ok(ms) => humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string(),
        Err(_) => format!("{ms} ms before 1970"),
    }
}

/// The window as it is written into a recording's metadata, checked on the way back in.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Spec {
    from_ms: i64,
    to_ms: i64,
    #[serde(default)]
    routes: Vec<String>,
    #[serde(default)]
    methods: Vec<String>,
    sample_percent: f64,
    limit: usize,
}

impl TryFrom<Spec> for Window {
    type Error = WindowError;

    fn try_from(spec: Spec) -> Result<Self, WindowError> {
        Self::new(spec.from_ms, spec.to_ms)?
            .with_routes(spec.routes)
            .with_methods(spec.methods)?
            .with_sample_percent(spec.sample_percent)?
            .with_limit(spec.limit)
    }
}

impl From<Window> for Spec {
    fn from(w: Window) -> Self {
        Self {
            from_ms: w.from_ms,
            to_ms: w.to_ms,
            routes: w.routes,
            methods: w.methods,
            sample_percent: w.sample_percent,
            limit: w.limit,
        }
    }
}

#[cfg(test)]
mod tests {
    use shadowdiff_core::CapturedBody;

    use super::*;

    fn request(id: &str, ts: i64, method: &str, route: Option<&str>, path: &str) -> RequestEvent {
        RequestEvent {
            request_id: id.into(),
            timestamp_ms: ts,
            tap_id: "t".into(),
            method: method.into(),
            scheme: "http".into(),
            authority: "a".into(),
            path: path.into(),
            query: None,
            route_template: route.map(str::to_owned),
            headers: Vec::new(),
            body: CapturedBody::empty(),
            run: String::new(),
        }
    }

    #[test]
    fn times_read_as_rfc3339_durations_ago_or_now() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_time("now", now), Ok(1_700_000_000_000));
        assert_eq!(parse_time("90m", now), Ok(1_700_000_000_000 - 90 * 60_000));
        assert_eq!(parse_time("1h 30m", now), Ok(1_700_000_000_000 - 90 * 60_000));
        assert_eq!(parse_time("2023-11-14T22:13:20Z", now), Ok(1_700_000_000_000));
        assert_eq!(parse_time("2023-11-14T22:13:20.250Z", now), Ok(1_700_000_000_250));
        for bad in ["", "yesterday", "-5m", "2023-13-01T00:00:00Z"] {
            assert!(matches!(parse_time(bad, now), Err(WindowError::Time { .. })), "{bad:?}");
        }
    }

    #[test]
    fn a_window_is_checked_as_it_is_built() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert!(matches!(Window::parse("1h", "2h", now), Err(WindowError::Empty { .. })));
        assert!(matches!(Window::new(5, 5), Err(WindowError::Empty { .. })));
        let w = Window::new(0, 10).unwrap();
        assert_eq!(w.clone().with_sample_percent(100.5), Err(WindowError::SamplePercent(100.5)));
        assert!(w.clone().with_sample_percent(f64::NAN).is_err());
        assert_eq!(w.clone().with_limit(0), Err(WindowError::Limit));
        assert_eq!(w.clone().with_methods(["GE T"]), Err(WindowError::Method("GE T".into())));
        assert_eq!(w.with_methods(["get"]).unwrap().methods(), ["GET"]);
    }

    #[test]
    fn selects_by_time_then_filters_then_sample() {
        let w = Window::new(100, 200).unwrap().with_routes(["/items/{id}", "/health"]).with_methods(["get"]).unwrap();
        let id = RequestId::parse("abc").unwrap(); // bucket 3931
        let at = |ts, method, route: Option<&str>, path| w.select(&request("abc", ts, method, route, path), &id);
        assert_eq!(at(100, "GET", Some("/items/{id}"), "/items/1"), Selection::Kept);
        assert_eq!(at(199, "get", None, "/health"), Selection::Kept, "the path stands in for a missing template");
        assert_eq!(at(99, "GET", Some("/items/{id}"), "/items/1"), Selection::OutsideTime);
        assert_eq!(at(200, "GET", Some("/items/{id}"), "/items/1"), Selection::OutsideTime, "to is exclusive");
        assert_eq!(at(150, "POST", Some("/items/{id}"), "/items/1"), Selection::Filtered);
        assert_eq!(at(150, "GET", Some("/carts/{id}"), "/carts/1"), Selection::Filtered);
        let sampled = w.with_sample_percent(39.31).unwrap();
        assert_eq!(
            sampled.select(&request("abc", 150, "GET", None, "/health"), &id),
            Selection::SampledOut,
            "bucket 3931 is outside the first 39.31%"
        );
    }

    #[test]
    fn round_trips_through_json_and_refuses_a_bad_one() {
        let w =
            Window::new(1, 2).unwrap().with_routes(["/a"]).with_sample_percent(12.5).unwrap().with_limit(7).unwrap();
        let json = serde_json::to_string(&w).unwrap();
        assert_eq!(serde_json::from_str::<Window>(&json).unwrap(), w);
        let bad = r#"{"from_ms":2,"to_ms":1,"sample_percent":100,"limit":1}"#;
        assert!(serde_json::from_str::<Window>(bad).is_err());
    }
}

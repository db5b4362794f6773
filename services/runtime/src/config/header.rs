//! A header name from config, checked as the config is read: a bad one is reported with its
//! key alongside every other problem, and the services use it as the `http` type it is.

use std::fmt;
use std::ops::Deref;

use serde::{Deserialize, Deserializer};

/// An HTTP header name (lower-cased, as `http` keeps them).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct HeaderName(axum::http::HeaderName);

impl HeaderName {
    /// A name known when the program is written, such as a default.
    pub const fn from_static(name: &'static str) -> Self {
        Self(axum::http::HeaderName::from_static(name))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl Deref for HeaderName {
    type Target = axum::http::HeaderName;

    fn deref(&self) -> &axum::http::HeaderName {
        &self.0
    }
}

impl From<HeaderName> for axum::http::HeaderName {
    fn from(name: HeaderName) -> Self {
        name.0
    }
}

impl fmt::Debug for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.0.as_str(), f)
    }
}

impl fmt::Display for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

impl<'de> Deserialize<'de> for HeaderName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        axum::http::HeaderName::from_bytes(text.as_bytes())
            .map(Self)
            .map_err(|_| serde::de::Error::custom(format!("{text:?} is not a valid HTTP header name")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Section {
        header: HeaderName,
    }

    #[test]
    fn a_header_name_is_checked_and_lower_cased_as_it_is_read() {
        let section: Section = toml::from_str("header = \"X-Request-Id\"").unwrap();
        assert_eq!(section.header.as_str(), "x-request-id");
        let error = toml::from_str::<Section>("header = \"bad header\"").unwrap_err();
        assert!(error.to_string().contains("\"bad header\" is not a valid HTTP header name"), "{error}");
    }
}

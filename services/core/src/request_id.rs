//! The request id: the one key that joins a request with every response to it.

use std::fmt;

/// Longest request id accepted from a client. Longer ids are replaced, not truncated,
/// so two distinct client ids can never collapse into one.
pub const MAX_LEN: usize = 128;

/// A validated request id, as carried in `X-Request-Id` and used as the Kafka key.
///
/// Valid ids are 1 to [`MAX_LEN`] characters of `A-Z a-z 0-9 - _ . : + / =`, which covers
/// UUIDs, ULIDs, base64 ids and the `trace:span` styles that load balancers emit, while
/// keeping ids safe to put in logs, headers and URLs.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(String);

/// Why a string is not a usable request id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidRequestId {
    #[error("request id is empty")]
    Empty,
    #[error("request id is {0} bytes long, more than {MAX_LEN}")]
    TooLong(usize),
    #[error("request id contains {0:?}, outside A-Z a-z 0-9 - _ . : + / =")]
    BadChar(char),
}

impl RequestId {
    /// Mints a new id: a UUIDv7, so ids sort by time and spread evenly over partitions.
    pub fn mint() -> Self {
        Self(uuid::Uuid::now_v7().to_string())
    }

    /// Validates an id received from a client or read from an event.
    pub fn parse(raw: &str) -> Result<Self, InvalidRequestId> {
        if raw.is_empty() {
            return Err(InvalidRequestId::Empty);
        }
        if raw.len() > MAX_LEN {
            return Err(InvalidRequestId::TooLong(raw.len()));
        }
        if let Some(c) = raw.chars().find(|c| !is_id_char(*c)) {
            return Err(InvalidRequestId::BadChar(c));
        }
        Ok(Self(raw.to_owned()))
    }

    /// Keeps a valid incoming id, or mints a fresh one.
    pub fn keep_or_mint(incoming: Option<&str>) -> Self {
        incoming.and_then(|raw| Self::parse(raw).ok()).unwrap_or_else(Self::mint)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A stable position of this id in `[0, 10_000)`, for sticky sampling: the same id gets
    /// the same decision in every tap and mirror replica, in every process, on every run.
    pub fn sample_bucket(&self) -> u32 {
        self.bucket("")
    }

    /// Whether this id falls in a sticky sample of `percent` (0 to 100) of all ids: the
    /// mirror's profiles and `shadowctl record` pick the same requests for the same share.
    pub fn sampled(&self, percent: f64) -> bool {
        in_sample(self.sample_bucket(), percent)
    }

    /// Like [`sample_bucket`](Self::sample_bucket), but independent for each `salt`, so
    /// separate decisions about one request (a fault per target, say) are not correlated.
    pub fn bucket(&self, salt: &str) -> u32 {
        // FNV-1a: fixed, documented, and independent of Rust's randomised hasher.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in salt.as_bytes().iter().chain(self.0.as_bytes()) {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        u32::try_from(hash % 10_000).unwrap_or(0) // provably < 10_000
    }
}

/// Whether a [`RequestId::bucket`] lies in the first `percent` (0 to 100) of the 10 000
/// buckets: the one sampling rule, so every component that samples by id agrees.
pub fn in_sample(bucket: u32, percent: f64) -> bool {
    f64::from(bucket) < (percent * 100.0)
}

fn is_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '+' | '/' | '=')
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RequestId({})", self.0)
    }
}

impl AsRef<str> for RequestId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_valid_ids_and_replaces_invalid_ones() {
        assert_eq!(RequestId::keep_or_mint(Some("abc-123")).as_str(), "abc-123");
        let minted = RequestId::keep_or_mint(Some("bad id\n"));
        assert_ne!(minted.as_str(), "bad id\n");
        assert_eq!(uuid::Uuid::parse_str(minted.as_str()).map(|u| u.get_version_num()), Ok(7));
        assert!(RequestId::keep_or_mint(None).as_str().len() == 36);
    }

    #[test]
    fn rejects_with_reason() {
        assert_eq!(RequestId::parse(""), Err(InvalidRequestId::Empty));
        assert_eq!(RequestId::parse(&"a".repeat(129)), Err(InvalidRequestId::TooLong(129)));
        assert_eq!(RequestId::parse("a b"), Err(InvalidRequestId::BadChar(' ')));
    }

    #[test]
    fn sample_bucket_is_stable() {
        let id = RequestId::parse("0192f5a0-7c1e-7000-8000-000000000001").unwrap();
        assert_eq!(id.sample_bucket(), id.clone().sample_bucket());
        assert!(id.sample_bucket() < 10_000);
        // Pinned: a change of hash function would re-shuffle every sticky sampling
        // decision across a rolling deploy, so it must not slip in unnoticed.
        // FNV-1a("abc") = 0xe71fa2190541574b.
        assert_eq!(RequestId::parse("abc").unwrap().sample_bucket(), 3931);
    }

    #[test]
    fn samples_by_bucket() {
        let abc = RequestId::parse("abc").unwrap();
        assert!(!abc.sampled(0.0));
        assert!(!abc.sampled(39.31));
        assert!(abc.sampled(39.32));
        assert!(abc.sampled(100.0));
    }
}

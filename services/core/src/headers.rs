//! Header names that cross services: the tap reads them, the mirror sets them on replays, a
//! sidecar tap and the shadows themselves look for them, and the diff ignores them.

/// Where a request's id travels unless `request_id_header` names another header: the tap
/// reads a client's id from it (or mints one), and the mirror sends the id on every replay.
pub const REQUEST_ID: &str = "x-request-id";

/// Set on every replay to the shadow's role (`secondary`, `candidate`), so a shadow can tell
/// it is one; a sidecar tap captures only requests that carry it.
pub const SHADOW_ROLE: &str = "x-shadow-role";

/// Set on every replay to the name of the target it was sent to.
pub const SHADOW_DEPLOYMENT: &str = "x-shadow-deployment";

/// Set by an egress tap in stub mode on each answer it gives a shadow's downstream call:
/// `matched` (a recorded call of the primary's answered it) or `unmatched` (none did, and the
/// configured status answered). It reaches the call's published event, where the correlator
/// reads it.
pub const STUB: &str = "x-shadowdiff-stub";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::DEFAULT_IGNORED_HEADERS;

    /// Replays carry these headers and primaries do not: a diff must never count them.
    #[test]
    fn the_headers_a_replay_adds_are_ignored_by_default() {
        let ignored = |name: &str| {
            DEFAULT_IGNORED_HEADERS
                .iter()
                .any(|rule| rule.strip_suffix('*').map_or(*rule == name, |prefix| name.starts_with(prefix)))
        };
        for name in [REQUEST_ID, SHADOW_ROLE, SHADOW_DEPLOYMENT] {
            assert!(ignored(name), "{name}");
        }
    }
}

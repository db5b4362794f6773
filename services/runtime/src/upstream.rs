//! Outbound HTTP, built one way for the tap's forwarding and the mirror's replays: a pooled
//! client with a whole-response deadline and no redirect following (a proxy passes
//! redirects through), and one mapping from client errors to the event model's error kinds.

use std::time::Duration;

use shadowdiff_core::ErrorKind;

/// A pooled client whose requests fail with [`ErrorKind::Timeout`] after `timeout`.
pub fn client(timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    builder(timeout).build()
}

/// The builder of [`client`], for a caller that adds to it (the mirror's vetted resolver).
pub fn builder(timeout: Duration) -> reqwest::ClientBuilder {
    crate::tls::install_provider();
    reqwest::Client::builder().timeout(timeout).redirect(reqwest::redirect::Policy::none())
}

/// Why a request got no response, by the client error's type.
pub fn classify(error: &reqwest::Error) -> ErrorKind {
    if error.is_timeout() {
        ErrorKind::Timeout
    } else if error.is_connect() {
        ErrorKind::Connect
    } else if error.is_body() || error.is_request() {
        ErrorKind::Reset
    } else {
        ErrorKind::Other
    }
}

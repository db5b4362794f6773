//! Credentials of the test services: a reader and an operator token (configured as their
//! digests, as in production), and an SSO proxy that vouches for a user, for the pages a
//! browser opens.

use std::net::SocketAddr;

use sha2::{Digest, Sha256};

/// Holds the `read` scope.
pub const READ_TOKEN: &str = "test-reader-token-3f9a61c2";
/// Holds `read` and `write`.
pub const WRITE_TOKEN: &str = "test-operator-token-8b47d0e5";

/// The `[auth]` section every test service runs with: the two tokens above, and a proxy
/// trusted from loopback whose users may read and write (the console's pages change
/// profiles).
pub fn auth_toml() -> String {
    let digest = |token: &str| hex::encode(Sha256::digest(token.as_bytes()));
    format!(
        "[auth]\n\
         [[auth.tokens]]\nname = \"test-reader\"\nsha256 = \"{}\"\nscopes = [\"read\"]\n\
         [[auth.tokens]]\nname = \"test-operator\"\nsha256 = \"{}\"\nscopes = [\"read\", \"write\"]\n\
         [auth.proxy]\ntrusted = [\"127.0.0.1/32\"]\nscopes = [\"read\", \"write\"]\n",
        digest(READ_TOKEN),
        digest(WRITE_TOKEN)
    )
}

/// An SSO proxy in front of `upstream` (as oauth2-proxy would be): every request is
/// forwarded with `X-Forwarded-User: user`. Returns its address; it serves until the test
/// ends.
pub async fn sso_proxy(upstream: String, user: &'static str) -> SocketAddr {
    let app = crate::proxy::forwarder(upstream, Some(("x-forwarded-user", user)));
    crate::serve(app).await
}

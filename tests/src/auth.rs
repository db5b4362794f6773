//! Credentials of the test services: a reader and an operator token (configured as their
//! digests, as in production), and an SSO proxy that vouches for a user, for the pages a
//! browser opens.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

/// Holds the `read` scope.
pub const READ_TOKEN: &str = "test-reader-token-3f9a61c2";
/// Holds `read` and `write`.
pub const WRITE_TOKEN: &str = "test-operator-token-8b47d0e5";

/// The `[auth]` section every test service runs with: the two tokens above, and a proxy
/// trusted from loopback.
pub fn auth_toml() -> String {
    let digest = |token: &str| hex::encode(Sha256::digest(token.as_bytes()));
    format!(
        "[auth]\n\
         [[auth.tokens]]\nname = \"test-reader\"\nsha256 = \"{}\"\nscopes = [\"read\"]\n\
         [[auth.tokens]]\nname = \"test-operator\"\nsha256 = \"{}\"\nscopes = [\"read\", \"write\"]\n\
         [auth.proxy]\ntrusted = [\"127.0.0.1/32\"]\n",
        digest(READ_TOKEN),
        digest(WRITE_TOKEN)
    )
}

/// An SSO proxy in front of `upstream` (as oauth2-proxy would be): every GET is forwarded
/// with `X-Forwarded-User: user`. Returns its address; it serves until the test ends.
pub async fn sso_proxy(upstream: String, user: &'static str) -> SocketAddr {
    async fn forward(State((upstream, user)): State<(String, &'static str)>, request: Request) -> Response {
        let path = request.uri().path_and_query().map_or("/", |p| p.as_str()).to_owned();
        let answer = reqwest::Client::new().get(format!("{upstream}{path}")).header("x-forwarded-user", user).send();
        match answer.await {
            Ok(answer) => {
                let status = answer.status();
                let content_type = answer.headers().get("content-type").cloned();
                let body = answer.bytes().await.unwrap_or_default();
                let mut response = (status, body).into_response();
                if let Some(content_type) = content_type {
                    response.headers_mut().insert("content-type", content_type);
                }
                response
            }
            Err(error) => (http::StatusCode::BAD_GATEWAY, error.to_string()).into_response(),
        }
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("bind: {e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let app = Router::new().fallback(forward).with_state((upstream, user));
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

//! Who may call a service's API, and what for. Every route but `/healthz` and `/metrics`
//! is behind [`protect`]: a bearer token with the route's [`Scope`], or a user vouched for
//! by an SSO proxy (oauth2-proxy's `X-Forwarded-User`) connecting from a trusted address.
//!
//! Tokens are configured as SHA-256 digests, never in clear, and a presented token is
//! hashed and compared with every configured digest in constant time. A service whose API
//! would be open refuses to start unless `[auth] open = true` says so, which is logged
//! loudly at start-up.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Deserializer, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::ConfigError;

/// What a caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Verdicts, comparisons, profiles' state, pages.
    Read,
    /// Profile and fault changes.
    Write,
}

impl Scope {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
        }
    }
}

/// `[auth]`
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AuthConfig {
    /// Serve the API to anyone who can reach it, without a token. For local demos only:
    /// the service logs a warning at start-up.
    #[serde(default)]
    pub open: bool,
    /// Bearer tokens, each as its SHA-256 digest (`printf %s "$TOKEN" | sha256sum`).
    #[serde(default)]
    pub tokens: Vec<TokenConfig>,
    /// An SSO proxy in front of the service (oauth2-proxy), trusted for its user header.
    #[serde(default)]
    pub proxy: Option<ProxyConfig>,
}

/// `[[auth.tokens]]`
#[derive(Debug, Clone, Deserialize)]
pub struct TokenConfig {
    /// Who holds the token: logged and recorded with every change made with it.
    pub name: String,
    /// SHA-256 of the token, 64 hex digits.
    pub sha256: TokenDigest,
    /// What the token allows.
    pub scopes: Vec<Scope>,
}

/// `[auth.proxy]`
#[derive(Debug, Clone, Deserialize)]
pub struct ProxyConfig {
    /// The header carrying the signed-in user's name.
    #[serde(default = "default_user_header")]
    pub user_header: crate::config::HeaderName,
    /// Addresses (CIDRs) the proxy connects from; the header from anywhere else is ignored.
    pub trusted: Vec<ipnet::IpNet>,
    /// What users the proxy vouches for may do.
    #[serde(default = "read_only")]
    pub scopes: Vec<Scope>,
}

fn default_user_header() -> crate::config::HeaderName {
    crate::config::HeaderName::from_static("x-forwarded-user")
}
fn read_only() -> Vec<Scope> {
    vec![Scope::Read]
}

/// A token's SHA-256, parsed from hex once when the config is read.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenDigest([u8; 32]);

impl std::fmt::Debug for TokenDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("sha256:[..]")
    }
}

impl TokenDigest {
    pub fn of(token: &str) -> Self {
        Self(Sha256::digest(token.as_bytes()).into())
    }
}

impl<'de> Deserialize<'de> for TokenDigest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let mut digest = [0; 32];
        hex::decode_to_slice(text.trim(), &mut digest).map_err(|_| {
            serde::de::Error::custom("must be a SHA-256 digest: 64 hex digits (sha256sum of the token)")
        })?;
        Ok(Self(digest))
    }
}

impl AuthConfig {
    /// Checks the section; a service with an API calls it, so an unprotected API is a
    /// config error unless `open` says otherwise.
    pub fn validate(&self, errors: &mut Vec<ConfigError>) {
        if !self.open && self.tokens.is_empty() && self.proxy.is_none() {
            errors.push(ConfigError::rule(
                "auth",
                "the API would be open to anyone who can reach it: add [[auth.tokens]] (name, sha256, scopes) \
                 or [auth.proxy], or set auth.open = true to serve it without authentication (demo only)",
            ));
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, token) in self.tokens.iter().enumerate() {
            if token.name.is_empty() || token.name.len() > 64 {
                errors.push(ConfigError::rule(format!("auth.tokens[{i}].name"), "1 to 64 characters"));
            } else if !names.insert(token.name.as_str()) {
                errors.push(ConfigError::rule(format!("auth.tokens[{i}].name"), format!("duplicate {:?}", token.name)));
            }
            if token.scopes.is_empty() {
                errors.push(ConfigError::rule(format!("auth.tokens[{i}].scopes"), "at least one of read, write"));
            }
        }
        if let Some(proxy) = &self.proxy
            && proxy.trusted.is_empty()
        {
            errors.push(ConfigError::rule("auth.proxy.trusted", "name the proxy's addresses (CIDRs)"));
        }
    }
}

/// Who made a call. Its name is recorded with the changes it makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
}

/// Why a call was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("missing or unknown credentials")]
    Unauthenticated,
    #[error("this credential lacks the {} scope", .0.as_str())]
    Forbidden(Scope),
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        let status = match self {
            Self::Unauthenticated => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
        };
        let reason = if self == Self::Unauthenticated { "unauthenticated" } else { "forbidden" };
        metrics::counter!("shadowdiff_api_denied_total", "reason" => reason).increment(1);
        if DENIED_LOG.allow() {
            tracing::warn!(reason, "API call refused");
        }
        let mut response = (status, axum::Json(serde_json::json!({ "error": self.to_string() }))).into_response();
        if self == Self::Unauthenticated {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        }
        response
    }
}

static DENIED_LOG: crate::telemetry::LogLimiter = crate::telemetry::LogLimiter::new();

/// Longest bearer token read; anything longer is no token of ours.
const MAX_TOKEN_BYTES: usize = 4096;

/// The checks one service applies, built once from [`AuthConfig`].
#[derive(Debug)]
pub struct Auth {
    open: bool,
    tokens: Vec<(String, [u8; 32], Vec<Scope>)>,
    proxy: Option<(HeaderName, Vec<ipnet::IpNet>, Vec<Scope>)>,
}

impl Auth {
    /// The checks `config` describes; call after validation. `service` names the API in the
    /// warning an open API logs.
    pub fn new(config: &AuthConfig, service: &str) -> Arc<Self> {
        if config.open {
            tracing::warn!(
                service,
                "AUTHENTICATION IS OFF: [auth] open = true serves this API to anyone who can reach it; for local demos only"
            );
        }
        let proxy = config.proxy.as_ref().map(|p| (p.user_header.clone().into(), p.trusted.clone(), p.scopes.clone()));
        let tokens = config.tokens.iter().map(|t| (t.name.clone(), t.sha256.0, t.scopes.clone())).collect();
        Arc::new(Self { open: config.open, tokens, proxy })
    }

    /// Checks a presented bearer token (from a header, or a Flagger webhook's metadata).
    pub fn token(&self, token: &str, scope: Scope) -> Result<Principal, Denied> {
        if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
            return Err(Denied::Unauthenticated);
        }
        let presented = TokenDigest::of(token).0;
        // Compare with every digest, without stopping at a match, so the time taken says
        // nothing about which token matched or how much of one did.
        let mut found = None;
        for (i, (_, digest, _)) in self.tokens.iter().enumerate() {
            if bool::from(digest.ct_eq(&presented)) {
                found = Some(i);
            }
        }
        let (name, _, scopes) = found.and_then(|i| self.tokens.get(i)).ok_or(Denied::Unauthenticated)?;
        if scopes.contains(&scope) { Ok(Principal { name: name.clone() }) } else { Err(Denied::Forbidden(scope)) }
    }

    /// Checks a request's credentials: a bearer token, else the token a browser signed in
    /// with ([`SIGN_IN_COOKIE`]), else a trusted proxy's user header.
    pub fn check(&self, headers: &HeaderMap, peer: Option<IpAddr>, scope: Scope) -> Result<Principal, Denied> {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim().to_owned());
        if let Some(token) = bearer.or_else(|| signed_in(headers)) {
            return self.token(&token, scope);
        }
        if let Some((user_header, trusted, scopes)) = &self.proxy {
            let user =
                headers.get(user_header).and_then(|v| v.to_str().ok()).filter(|u| !u.is_empty() && u.len() <= 256);
            let from_proxy = peer.is_some_and(|ip| trusted.iter().any(|net| net.contains(&ip)));
            if let (Some(user), true) = (user, from_proxy) {
                return if scopes.contains(&scope) {
                    Ok(Principal { name: format!("sso:{user}") })
                } else {
                    Err(Denied::Forbidden(scope))
                };
            }
        }
        if self.open { Ok(Principal { name: "anonymous".to_owned() }) } else { Err(Denied::Unauthenticated) }
    }
}

/// The cookie a browser keeps its token in once signed in to a console: `HttpOnly`, so no
/// script reads it, and `SameSite=Strict`, so no other site's page sends it.
pub const SIGN_IN_COOKIE: &str = "shadowdiff_token";

/// The token in the request's [`SIGN_IN_COOKIE`], if any.
fn signed_in(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == SIGN_IN_COOKIE)
        .map(|c| c.value().to_owned())
}

/// `router`'s routes, each requiring `scope`. The caller's [`Principal`] is in the
/// request's extensions for the handler. Serve with
/// `into_make_service_with_connect_info::<SocketAddr>()` so the proxy's address is known.
pub fn protect<S: Clone + Send + Sync + 'static>(router: Router<S>, auth: &Arc<Auth>, scope: Scope) -> Router<S> {
    router.route_layer(middleware::from_fn_with_state((auth.clone(), scope), guard))
}

/// One method route requiring `scope`, for paths whose methods need different scopes.
pub fn require<S: Clone + Send + Sync + 'static>(
    route: axum::routing::MethodRouter<S>,
    auth: &Arc<Auth>,
    scope: Scope,
) -> axum::routing::MethodRouter<S> {
    route.route_layer(middleware::from_fn_with_state((auth.clone(), scope), guard))
}

async fn guard(State((auth, scope)): State<(Arc<Auth>, Scope)>, mut request: Request, next: Next) -> Response {
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    match auth.check(request.headers(), peer, scope) {
        Ok(principal) => {
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Err(denied) => denied.into_response(),
    }
}

#[cfg(test)]
mod tests;

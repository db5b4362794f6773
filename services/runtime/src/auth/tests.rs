use super::*;
use axum::body::Body;
use axum::routing::get;
use tower::ServiceExt;

const READER: &str = "reader-token-0123456789";
const WRITER: &str = "writer-token-0123456789";

fn config(toml_text: &str) -> AuthConfig {
    toml::from_str(toml_text).unwrap()
}

fn tokens() -> AuthConfig {
    let digest = |t: &str| hex::encode(Sha256::digest(t.as_bytes()));
    config(&format!(
        "[[tokens]]\nname = \"ci\"\nsha256 = \"{}\"\nscopes = [\"read\"]\n\
         [[tokens]]\nname = \"ops\"\nsha256 = \"{}\"\nscopes = [\"read\", \"write\"]\n\
         [proxy]\ntrusted = [\"10.0.0.0/8\"]\n",
        digest(READER),
        digest(WRITER)
    ))
}

async fn call(app: Router, token: Option<&str>, peer: Option<[u8; 4]>, user: Option<&str>) -> (StatusCode, String) {
    let mut request = http::Request::get("/x");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    if let Some(user) = user {
        request = request.header("x-forwarded-user", user);
    }
    let mut request = request.body(Body::empty()).unwrap();
    if let Some(ip) = peer {
        request.extensions_mut().insert(ConnectInfo(SocketAddr::from((ip, 4000))));
    }
    let response = app.oneshot(request).await.unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn app(config: &AuthConfig, scope: Scope) -> Router {
    let routes =
        Router::new().route("/x", get(|axum::Extension(who): axum::Extension<Principal>| async move { who.name }));
    protect(routes, &Auth::new(config, "test"), scope)
}

#[tokio::test]
async fn tokens_carry_scopes() {
    let auth = tokens();
    assert_eq!(call(app(&auth, Scope::Read), Some(READER), None, None).await, (StatusCode::OK, "ci".into()));
    assert_eq!(call(app(&auth, Scope::Write), Some(WRITER), None, None).await, (StatusCode::OK, "ops".into()));
    assert_eq!(call(app(&auth, Scope::Write), Some(READER), None, None).await.0, StatusCode::FORBIDDEN);
    for wrong in [None, Some("reader-token-012345678"), Some(""), Some(&*"x".repeat(10_000))] {
        assert_eq!(call(app(&auth, Scope::Read), wrong, None, None).await.0, StatusCode::UNAUTHORIZED, "{wrong:?}");
    }
}

#[tokio::test]
async fn a_browser_signed_in_presents_its_token_in_the_cookie() {
    let auth = Auth::new(&tokens(), "test");
    let with_cookie = |cookie: &str| {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, header::HeaderValue::from_str(cookie).unwrap());
        headers
    };
    let signed_in = with_cookie(&format!("theme=dark; {SIGN_IN_COOKIE}={WRITER}"));
    assert_eq!(auth.check(&signed_in, None, Scope::Write).map(|p| p.name), Ok("ops".into()));
    let reader = with_cookie(&format!("{SIGN_IN_COOKIE}={READER}"));
    assert_eq!(auth.check(&reader, None, Scope::Write), Err(Denied::Forbidden(Scope::Write)));
    for other in ["shadowdiff_tokenx=abc", "theme=dark", &format!("{SIGN_IN_COOKIE}=wrong")] {
        assert_eq!(auth.check(&with_cookie(other), None, Scope::Read), Err(Denied::Unauthenticated), "{other}");
    }
}

#[tokio::test]
async fn the_proxy_user_header_counts_only_from_the_proxy() {
    let auth = tokens();
    let from_proxy = call(app(&auth, Scope::Read), None, Some([10, 1, 2, 3]), Some("ann")).await;
    assert_eq!(from_proxy, (StatusCode::OK, "sso:ann".into()));
    let elsewhere = call(app(&auth, Scope::Read), None, Some([192, 168, 1, 9]), Some("ann")).await;
    assert_eq!(elsewhere.0, StatusCode::UNAUTHORIZED, "a user header from anyone else is ignored");
    let unknown_peer = call(app(&auth, Scope::Read), None, None, Some("ann")).await;
    assert_eq!(unknown_peer.0, StatusCode::UNAUTHORIZED);
    let write = call(app(&auth, Scope::Write), None, Some([10, 1, 2, 3]), Some("ann")).await;
    assert_eq!(write.0, StatusCode::FORBIDDEN, "proxy users read unless the config grants more");
}

#[tokio::test]
async fn open_only_when_the_config_says_so() {
    let open = config("open = true");
    assert_eq!(call(app(&open, Scope::Write), None, None, None).await, (StatusCode::OK, "anonymous".into()));

    let mut errors = Vec::new();
    AuthConfig::default().validate(&mut errors);
    assert_eq!(errors.len(), 1);
    assert!(errors[0].to_string().starts_with("auth: the API would be open"), "{}", errors[0]);
    let mut errors = Vec::new();
    open.validate(&mut errors);
    tokens().validate(&mut errors);
    assert!(errors.is_empty(), "{errors:?}");
}

#[test]
fn digests_are_parsed_once_and_never_printed() {
    let bad: Result<AuthConfig, _> =
        toml::from_str("[[tokens]]\nname = \"x\"\nsha256 = \"not-hex\"\nscopes = [\"read\"]");
    assert!(bad.unwrap_err().to_string().contains("64 hex digits"));
    let printed = format!("{:?}", tokens());
    assert!(!printed.contains(&hex::encode(Sha256::digest(READER.as_bytes()))), "{printed}");
}

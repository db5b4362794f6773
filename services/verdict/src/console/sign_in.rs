//! Signing a browser in with a token, for clusters without an SSO proxy and for the local
//! demo: the token is checked like a bearer token and kept in an `HttpOnly`,
//! `SameSite=Strict` cookie (`auth::SIGN_IN_COOKIE`) that every request then presents.
//!
//! - `GET /sign-in?next=`: the form. A page asked for without credentials by a browser
//!   comes here ([`to_sign_in`]), and goes back to `next` once signed in.
//! - `POST /sign-in`: checks the token (the `read` scope at least) and sets the cookie.
//! - `POST /sign-out`: clears it.

use std::time::Duration;

use axum::Form;
use axum::extract::{Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use cookie::{Cookie, SameSite};
use serde::Deserialize;
use shadowdiff_runtime::auth::{SIGN_IN_COOKIE, Scope};

use super::render;
use crate::api::AppState;

/// How long a sign-in lasts.
const SIGNED_IN_FOR: Duration = Duration::from_secs(8 * 3600);

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Return {
    #[serde(default)]
    next: String,
}

#[derive(Deserialize)]
pub(crate) struct SignIn {
    token: String,
    #[serde(default)]
    next: String,
}

/// A local path to return to: one of this console's pages, never another site.
fn local(next: &str) -> &str {
    let safe = next.starts_with('/') && !next.starts_with("//") && !next.contains('\\') && next.len() <= 2048;
    if safe { next } else { "/" }
}

pub(crate) async fn form(Query(next): Query<Return>) -> Html<String> {
    Html(render::sign_in(local(&next.next), None))
}

pub(crate) async fn sign_in(State(state): State<AppState>, Form(form): Form<SignIn>) -> Response {
    let next = local(&form.next);
    if let Err(denied) = state.auth().token(form.token.trim(), Scope::Read) {
        let page = render::sign_in(next, Some(&denied.to_string()));
        return (StatusCode::UNAUTHORIZED, Html(page)).into_response();
    }
    let cookie = Cookie::build((SIGN_IN_COOKIE, form.token.trim().to_owned()))
        .http_only(true)
        .secure(true)
        .same_site(SameSite::Strict)
        .path("/")
        .max_age(cookie::time::Duration::seconds(i64::try_from(SIGNED_IN_FOR.as_secs()).unwrap_or(i64::MAX)));
    ([(header::SET_COOKIE, cookie.to_string())], Redirect::to(next)).into_response()
}

pub(crate) async fn sign_out() -> Response {
    let cleared = Cookie::build((SIGN_IN_COOKIE, "")).path("/").max_age(cookie::time::Duration::ZERO);
    ([(header::SET_COOKIE, cleared.to_string())], Redirect::to("/sign-in")).into_response()
}

/// A browser's page request refused for want of credentials goes to the sign-in form and
/// back; an API client still gets its 401.
pub(crate) async fn to_sign_in(request: Request, next: Next) -> Response {
    let browser = super::wants_page(request.headers());
    let back: String = request.uri().path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let response = next.run(request).await;
    if browser && response.status() == StatusCode::UNAUTHORIZED {
        let back: String = form_urlencoded::byte_serialize(back.as_bytes()).collect();
        return Redirect::to(&format!("/sign-in?next={back}")).into_response();
    }
    response
}

#[cfg(test)]
mod tests {
    use super::local;

    #[test]
    fn goes_back_only_to_a_page_of_its_own() {
        assert_eq!(local("/candidates/v2?stage=10"), "/candidates/v2?stage=10");
        for elsewhere in ["https://evil.example/", "//evil.example/", "/\\evil.example", "", "candidates"] {
            assert_eq!(local(elsewhere), "/", "{elsewhere}");
        }
    }
}

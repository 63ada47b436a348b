//! Signing in with a token, signing out, the session and language cookies, and the CSRF
//! checks of forms. Signing in through the identity provider is [`super::oidc`].
//!
//! The sign-in form has no session yet: its CSRF token is a random value set at once as an
//! HttpOnly, SameSite=Strict cookie and in the form (another site can neither read the cookie
//! nor send it). Every form of a session carries the session's own CSRF secret.

use axum::extract::Form;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::json;

use super::Page;
use crate::error::{ApiError, ErrorCode};
use crate::service::sessions;

/// The session cookie: an opaque random id.
pub(super) const COOKIE: &str = "vre_session";
/// The sign-in form's CSRF cookie.
const SIGN_IN_COOKIE: &str = "vre_sign_in";

/// The value of the cookie `name` the request carries.
pub(super) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

pub(super) fn set_cookie(resp: &mut Response, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// Whether two secrets are equal, in a time that does not depend on where they differ.
pub(super) fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Whether a form's CSRF token is the session's.
pub(super) fn csrf_ok(page: &Page, sent: &str) -> bool {
    page.session
        .as_ref()
        .is_some_and(|s| same_secret(&s.csrf, sent))
}

pub(super) fn csrf_refused() -> ApiError {
    ApiError::ForbiddenCode {
        code: ErrorCode::Forbidden,
        message: "the form's CSRF token is missing or not this session's: open the page again"
            .into(),
    }
}

fn random_hex() -> String {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).expect("the OS has randomness");
    hex::encode(b)
}

/// The sign-in page, with a fresh CSRF token in its form and cookie.
pub(super) async fn sign_in_page(page: Page) -> Response {
    sign_in_form(&page, StatusCode::OK, None)
}

fn sign_in_form(page: &Page, status: StatusCode, problem: Option<String>) -> Response {
    let token = random_hex();
    let mut resp = page.render(
        status,
        "sign_in.html",
        json!({
            "sign_in_csrf": token,
            "problem": problem,
            "provider": page.state.oidc.as_ref().map(|p| p.name()),
        }),
    );
    set_cookie(
        &mut resp,
        &format!("{SIGN_IN_COOKIE}={token}; Path=/ui; HttpOnly; Secure; SameSite=Strict"),
    );
    resp
}

#[derive(Deserialize)]
pub(super) struct SignIn {
    token: String,
    #[serde(default)]
    csrf: String,
}

/// Signs in with a pasted token, verified as the API verifies a bearer token; opens a session
/// and sets its cookie.
pub(super) async fn sign_in(page: Page, headers: HeaderMap, Form(form): Form<SignIn>) -> Response {
    let expected = cookie(&headers, SIGN_IN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !same_secret(&expected, &form.csrf) {
        return page.error(csrf_refused());
    }
    let token = form.token.trim();
    let caller = match page.state.verifier.verify(token) {
        Ok(c) => c,
        Err(e) => {
            let message = ApiError::from(e).to_string();
            return sign_in_form(&page, StatusCode::UNAUTHORIZED, Some(message));
        }
    };
    let Some(exp) = expiry_of(token) else {
        return sign_in_form(
            &page,
            StatusCode::UNAUTHORIZED,
            Some("the token has no expiry".into()),
        );
    };
    let opened = match sessions::open(&page.state, &caller, exp).await {
        Ok(o) => o,
        Err(e) => return page.error(e.into()),
    };
    let mut resp = Redirect::to("/ui/queue").into_response();
    *resp.status_mut() = StatusCode::SEE_OTHER;
    set_session_cookie(&mut resp, &opened);
    set_cookie(
        &mut resp,
        &format!("{SIGN_IN_COOKIE}=; Path=/ui; Max-Age=0; HttpOnly; Secure; SameSite=Strict"),
    );
    resp
}

/// Gives the browser the session just opened.
pub(super) fn set_session_cookie(resp: &mut Response, opened: &sessions::Opened) {
    set_cookie(
        resp,
        &format!(
            "{COOKIE}={}; Path=/ui; Max-Age={}; HttpOnly; Secure; SameSite=Strict",
            opened.id, opened.max_age
        ),
    );
}

/// The `exp` claim of a token already verified.
fn expiry_of(token: &str) -> Option<u64> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()?
        .get("exp")?
        .as_u64()
}

#[derive(Deserialize)]
pub(super) struct SignOut {
    #[serde(default)]
    csrf: String,
}

/// Ends the session and clears its cookie.
pub(super) async fn sign_out(page: Page, Form(form): Form<SignOut>) -> Response {
    if !csrf_ok(&page, &form.csrf) {
        return page.error(csrf_refused());
    }
    if let Some(s) = &page.session {
        if let Err(e) = sessions::close(&page.state, s).await {
            return page.error(e.into());
        }
    }
    let mut resp = Redirect::to("/ui/sign-in").into_response();
    *resp.status_mut() = StatusCode::SEE_OTHER;
    set_cookie(
        &mut resp,
        &format!("{COOKIE}=; Path=/ui; Max-Age=0; HttpOnly; Secure; SameSite=Strict"),
    );
    resp
}

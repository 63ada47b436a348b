//! Signing in through the identity provider (`[auth.oidc]`): the authorization code flow with
//! PKCE, the gateway as a confidential client ([`crate::oidc`]).
//!
//! **Start** (`GET /ui/sign-in/provider`, the sign-in page's link): fresh `state`, `nonce` and
//! PKCE verifier, with an expiry [`SIGN_IN_WITHIN`] ahead, go to the browser in the `vre_oidc`
//! cookie, authenticated by the gateway (HMAC-SHA256 under a secret derived from its token
//! key, [`crate::oidc::pending`]), and the browser is sent to the provider. Nothing is written
//! anywhere: an anonymous caller, however many times it starts, costs the gateway a random
//! value and a MAC and takes nothing from anyone else's sign-in. Since the key is the data
//! dir's, a sign-in started before a restart, or at another gateway sharing the keys, finishes
//! here. It is a link and not a form: a form posting to the gateway would be redirected to the
//! provider's origin, which the pages' `form-action 'self'` refuses; and another site that
//! makes a browser follow the link can at most sign that browser in as its own provider
//! account (the cookie keeps anyone else's return out), which is what the provider asks it
//! about.
//!
//! **Return** (`GET /ui/sign-in/callback`): the `vre_oidc` cookie is `SameSite=Lax`, so it
//! comes back on the provider's top-level redirect. It must be there, be the gateway's own and
//! unchanged (its MAC, checked in constant time), not be expired, and carry the state the
//! return carries; a sign-in recorded as used is refused (a read, before the provider is
//! asked): all else is 400 `bad_sign_in`. A provider's `error=`, a return naming another issuer
//! (`iss`, RFC 9207), a code the token endpoint refuses, or an ID token that does not verify
//! (its key, issuer, audience, nonce, expiry) is refused too (401 `sign_in_refused`). Nothing is
//! opened then, and nothing is written. Otherwise the state's hash is recorded as used
//! (`web_sign_ins`, kept until the cookie would have expired; its uniqueness is the final word
//! between two returns at once) and a session opens as with a token, in the same transaction
//! ([`sessions::open_signed_in`], audited `web.sign_in` naming the provider), ending no later
//! than the ID token.
//!
//! The session cookie is `SameSite=Strict`, and a browser does not send such cookies along a
//! chain of navigations that began on another site (the provider's redirect back): a redirect
//! from the return to the queue would arrive without the session. So the return answers a
//! small page of its own that sets the cookie and moves on to the queue (a `Refresh` header,
//! and a link): that navigation starts on the gateway's page, same-site, and carries it.

use axum::extract::RawQuery;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::json;

use super::Page;
use super::session::{cookie, set_cookie, set_session_cookie};
use crate::error::{ApiError, ErrorCode};
use crate::oidc::{Pending, SIGN_IN_WITHIN, Unsealed};
use crate::service::sessions;

/// The cookie keeping a sign-in under way in the browser that started it.
const SIGN_IN_COOKIE: &str = "vre_oidc";
/// Where the provider sends browsers back, and the sign-in cookie's path.
const CALLBACK: &str = "/ui/sign-in/callback";

fn refused(message: String) -> ApiError {
    ApiError::Refused {
        status: StatusCode::UNAUTHORIZED,
        code: ErrorCode::SignInRefused,
        message,
    }
}

fn provider_error(e: crate::oidc::Error) -> ApiError {
    match e {
        crate::oidc::Error::Unavailable(m) => {
            tracing::warn!(error = %m, "the identity provider is not available");
            ApiError::Unavailable(format!("the identity provider is not available: {m}"))
        }
        crate::oidc::Error::Refused(m) => refused(m),
    }
}

/// Starts a sign-in through the identity provider: sends the browser there.
pub(super) async fn start(page: Page) -> Response {
    let Some(provider) = page.state.oidc.clone() else {
        return page.error(ApiError::NotFound("page"));
    };
    let pending = Pending::fresh(jsonwebtoken::get_current_timestamp());
    let url = match provider
        .authorization_url(&pending.state, &pending.nonce, &pending.verifier)
        .await
    {
        Ok(u) => u,
        Err(e) => return page.error(provider_error(e)),
    };
    let mut resp = Redirect::to(&url).into_response();
    *resp.status_mut() = StatusCode::SEE_OTHER;
    set_cookie(
        &mut resp,
        &format!(
            "{SIGN_IN_COOKIE}={}; Path={CALLBACK}; Max-Age={SIGN_IN_WITHIN}; HttpOnly; Secure; \
             SameSite=Lax",
            provider.seal(&pending)
        ),
    );
    resp
}

/// What the provider sends back.
#[derive(Deserialize, Default)]
pub(super) struct Return {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
    /// The provider's name for itself (RFC 9207), when it sends it.
    iss: Option<String>,
}

/// The provider's return: finishes the sign-in, or refuses it.
pub(super) async fn callback(
    page: Page,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    if page.state.oidc.is_none() {
        return page.error(ApiError::NotFound("page"));
    }
    let kept = cookie(&headers, SIGN_IN_COOKIE);
    let answer = match serde_urlencoded::from_str::<Return>(query.as_deref().unwrap_or("")) {
        Ok(back) => finish(&page, kept, back).await,
        Err(e) => Err(ApiError::bad_request(
            ErrorCode::BadSignIn,
            format!("the identity provider's return does not parse: {e}"),
        )),
    };
    let mut resp = match answer {
        Ok(r) => r,
        Err(e) => {
            tracing::info!(code = e.code().as_str(), reason = %e, "a sign-in through the identity provider was refused");
            page.error(e)
        }
    };
    // Used or refused, the sign-in is done with.
    set_cookie(
        &mut resp,
        &format!("{SIGN_IN_COOKIE}=; Path={CALLBACK}; Max-Age=0; HttpOnly; Secure; SameSite=Lax"),
    );
    resp
}

async fn finish(page: &Page, kept: Option<String>, back: Return) -> Result<Response, ApiError> {
    let bad = |m: &str| ApiError::bad_request(ErrorCode::BadSignIn, m);
    let Some(kept) = kept.filter(|k| !k.is_empty()) else {
        return Err(bad(
            "no sign-in through the identity provider was started in this browser (its cookie is missing): sign in again",
        ));
    };
    let Some(state) = back.state.filter(|s| !s.is_empty()) else {
        return Err(bad("the identity provider's return carries no state"));
    };
    let provider = page.state.oidc.clone().ok_or(ApiError::NotFound("page"))?;
    let pending = match provider.unseal(&kept, jsonwebtoken::get_current_timestamp()) {
        Ok(p) => p,
        Err(Unsealed::Forged) => {
            return Err(bad(
                "this browser's sign-in cookie was not made by this gateway, or was changed: sign in again",
            ));
        }
        Err(Unsealed::Expired) => {
            return Err(bad("this sign-in took too long: sign in again"));
        }
    };
    // Public values both (the state went through the browser's address bar).
    if pending.state != state {
        return Err(bad(
            "this return from the identity provider belongs to no sign-in started in this browser: sign in again",
        ));
    }
    sessions::check_unused(&page.state, &state).await?;
    if back.iss.as_ref().is_some_and(|i| *i != provider.issuer()) {
        return Err(refused(
            "the return names another identity provider than this sign-in's".into(),
        ));
    }
    if let Some(error) = back.error {
        // The provider's words, shortened: they come through the browser, from anyone.
        let short = |s: String| s.chars().take(200).collect::<String>();
        let error = short(error);
        let detail = back
            .error_description
            .map(|d| format!(" ({})", short(d)))
            .unwrap_or_default();
        return Err(refused(format!(
            "the identity provider did not sign you in: {error}{detail}"
        )));
    }
    let Some(code) = back.code.filter(|c| !c.is_empty()) else {
        return Err(bad("the identity provider's return carries no code"));
    };
    let signed = provider
        .exchange(&code, &pending.verifier, &pending.nonce)
        .await
        .map_err(provider_error)?;
    let opened = sessions::open_signed_in(
        &page.state,
        &signed.caller,
        signed.exp,
        &sessions::Used {
            provider: provider.issuer(),
            state: &pending.state,
            expires_at: pending.expires_at,
        },
    )
    .await?;
    let mut resp = page.render(
        StatusCode::OK,
        "signed_in.html",
        json!({ "who": signed.caller.sub.as_str(), "next": "/ui/queue" }),
    );
    resp.headers_mut()
        .insert("refresh", HeaderValue::from_static("0; url=/ui/queue"));
    set_session_cookie(&mut resp, &opened);
    Ok(resp)
}

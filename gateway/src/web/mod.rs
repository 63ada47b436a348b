//! The reviewers' web pages, served by the gateway itself under `/ui/`: server-rendered HTML
//! from templates compiled into the binary, in Japanese and English, over the same workflows
//! of [`crate::service`] as the JSON API. A page handler is as thin as a JSON one: it parses
//! the request, calls one service, and renders the answer (or the service's refusal) with a
//! template.
//!
//! Every page carries a strict Content-Security-Policy (no script at all, styles from the
//! gateway only), refuses framing and is never cached. A signed-in browser holds an opaque
//! session id in an HttpOnly, Secure, SameSite=Strict cookie ([`session`]); every form carries
//! the session's CSRF token, checked on every POST.

mod audit;
mod catalog;
mod dataset_apps;
mod datasets;
mod images;
mod lang;
mod mine;
mod oidc;
mod pages;
mod session;
mod templates;

use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::state::AppState;

pub use lang::Lang;

/// Where the pages live.
pub const PREFIX: &str = "/ui";

/// The Content-Security-Policy of every page: nothing but the gateway's own stylesheet and
/// inline images (`data:`), no script, forms posted only to the gateway, never framed.
pub const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; \
                       form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const STYLE: &str = include_str!("static/style.css");

/// The pages' routes, with their security headers.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ui", get(|| async { Redirect::to("/ui/queue") }))
        .route("/ui/", get(|| async { Redirect::to("/ui/queue") }))
        .route("/ui/static/style.css", get(style))
        .route(
            "/ui/sign-in",
            get(session::sign_in_page).post(session::sign_in),
        )
        .route("/ui/sign-out", post(session::sign_out))
        .route("/ui/queue", get(pages::queue))
        .route("/ui/applications/{id}", get(pages::application))
        .route("/ui/applications/{id}/decide", post(pages::decide))
        .route("/ui/applications/{id}/preview", get(pages::preview))
        .route("/ui/catalog", get(catalog::catalog))
        .route("/ui/mine", get(mine::mine))
        .route("/ui/applications/{id}/release", get(mine::release))
        .route(
            "/ui/applications/{id}/attachments/{attachment}/file",
            get(mine::attachment_file),
        )
        .route("/ui/applications/{id}/image", get(images::image))
        .route("/ui/datasets", get(datasets::datasets))
        .route("/ui/datasets/{id}", get(datasets::dataset))
        .route("/ui/audit", get(audit::audit))
        .route("/ui/sign-in/provider", get(oidc::start))
        .route("/ui/sign-in/callback", get(oidc::callback))
        .route("/ui/{*rest}", axum::routing::any(no_such_page))
        .layer(axum::middleware::map_response(secure))
}

/// Any other address under `/ui/`: a page saying so, with the pages' headers.
async fn no_such_page(page: Page) -> Response {
    page.error(ApiError::NotFound("page"))
}

/// The headers every page and file under `/ui/` carries (a file with a policy of its own,
/// such as an image's, keeps it).
async fn secure(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
    }
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

async fn style() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        STYLE,
    )
        .into_response()
}

/// What every page handler starts from: the language chosen, the signed-in session if there
/// is one, and the path and query the page was asked with (for the language switch).
pub struct Page {
    pub state: AppState,
    pub lang: Lang,
    /// Set the language cookie: the language was chosen with `?lang=`.
    chosen: bool,
    pub session: Option<crate::service::sessions::Session>,
    path: String,
    query: Vec<(String, String)>,
}

impl FromRequestParts<AppState> for Page {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let query: Vec<(String, String)> = parts
            .uri
            .query()
            .and_then(|q| serde_urlencoded::from_str(q).ok())
            .unwrap_or_default();
        let asked = query
            .iter()
            .find(|(k, _)| k == "lang")
            .and_then(|(_, v)| Lang::from_code(v));
        let lang = asked.unwrap_or_else(|| {
            lang::from_headers(
                session::cookie(&parts.headers, lang::COOKIE).as_deref(),
                parts
                    .headers
                    .get(header::ACCEPT_LANGUAGE)
                    .and_then(|v| v.to_str().ok()),
            )
        });
        let session = match session::cookie(&parts.headers, session::COOKIE) {
            Some(id) => crate::service::sessions::find(state, &id)
                .await
                .map_err(|e| failure(state, lang, e.into()))?,
            None => None,
        };
        Ok(Page {
            state: state.clone(),
            lang,
            chosen: asked.is_some(),
            session,
            path: parts.uri.path().to_owned(),
            query: query.into_iter().filter(|(k, _)| k != "lang").collect(),
        })
    }
}

impl Page {
    /// The verified caller of a signed-in page.
    pub fn caller(&self) -> Option<crate::auth::Caller> {
        self.session.as_ref().map(|s| s.caller.clone())
    }

    /// The page `name` rendered with `data`, in the chosen language, with what every page
    /// shows (the language switch, who is signed in, the session's CSRF token).
    pub fn render(&self, status: StatusCode, name: &str, data: Value) -> Response {
        let other = self.lang.other();
        let mut switch = self.query.clone();
        switch.push(("lang".into(), other.code().into()));
        let switch_url = format!(
            "{}?{}",
            self.path,
            serde_urlencoded::to_string(&switch).unwrap_or_default()
        );
        let mut ctx = json!({
            "lang": self.lang.code(),
            "t": templates::messages(self.lang),
            "switch_url": switch_url,
            "switch_label": other.name(),
            "switch_lang": other.code(),
            "user": self.session.as_ref().map(|s| json!({
                "sub": s.caller.sub.as_str(),
                "roles": s.caller.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
            })),
            "csrf": self.session.as_ref().map(|s| s.csrf.clone()),
        });
        if let (Value::Object(c), Value::Object(d)) = (&mut ctx, data) {
            c.extend(d);
        }
        let mut resp = match templates::render(name, &ctx) {
            Ok(html) => (
                status,
                [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                html,
            )
                .into_response(),
            Err(e) => {
                tracing::error!(template = name, error = %e, "rendering a page");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
            }
        };
        if self.chosen {
            if let Ok(v) = HeaderValue::from_str(&lang::cookie_header(self.lang)) {
                resp.headers_mut().append(header::SET_COOKIE, v);
            }
        }
        resp
    }

    /// A refusal or failure as a page: its status, its code and its message.
    pub fn error(&self, e: ApiError) -> Response {
        if matches!(e, ApiError::Internal(_)) {
            tracing::error!(error = ?e, "a page failed");
        }
        self.render(
            e.status(),
            "error.html",
            json!({ "code": e.code().as_str(), "message": e.to_string() }),
        )
    }
}

/// Where a page that needs a session sends a browser without one.
pub fn to_sign_in() -> Response {
    Redirect::to("/ui/sign-in").into_response()
}

/// A failure before a [`Page`] exists (reading the session).
fn failure(_state: &AppState, lang: Lang, e: ApiError) -> Response {
    tracing::error!(error = ?e, lang = lang.code(), "reading a web session");
    (e.status(), "the gateway could not read the session").into_response()
}

//! The HTTP API: routes under `/api/v1`, `/healthz`, `/metrics` and `/openapi.json`.
//!
//! Every handler takes a [`Caller`] (a verified token) unless the route is public, parses the
//! request, calls one workflow of [`crate::service`] (which asks `policy` before it touches
//! anything), and shapes the answer; errors are [`ApiError`](crate::error::ApiError). The OpenAPI document is built from the handlers'
//! annotations by `utoipa`, so it cannot drift from the routes.

pub mod applications;
pub mod drain;
pub mod images;
pub mod ingress;
pub mod projects;
pub mod runs;
pub mod sandboxes;
pub mod system;

use std::time::Instant;

use axum::extract::{FromRequest, FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{AuthError, Caller};
use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "VRE Gateway",
        description = "Visiting-type research environment: ingress, sandboxes, committee review and egress of results."
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "projects", description = "Research projects and their members"),
        (name = "applications", description = "Applications to the data-use committee"),
        (name = "ingress", description = "Program and reference-data archives brought into the environment"),
        (name = "sandboxes", description = "Images, sandboxes and runs"),
        (name = "system", description = "Health, metrics, identity and the audit log"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The whole application: routes, the OpenAPI document, and the metrics layer.
pub fn router(state: AppState) -> Router {
    let (api, doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(system::healthz))
        .routes(routes!(system::metrics))
        .routes(routes!(system::whoami))
        .routes(routes!(system::audit_events))
        .routes(routes!(projects::list, projects::create))
        .routes(routes!(projects::show))
        .routes(routes!(projects::add_member))
        .routes(routes!(projects::remove_member))
        .routes(routes!(applications::list, applications::create))
        .routes(routes!(applications::show))
        .routes(routes!(applications::decide))
        .routes(routes!(applications::withdraw))
        .routes(routes!(applications::resubmit))
        .routes(routes!(applications::attach))
        .routes(routes!(applications::attachment_file))
        .routes(routes!(ingress::submit))
        .routes(routes!(ingress::manifest))
        .routes(routes!(ingress::file))
        .routes(routes!(images::images, images::allow_image))
        .routes(routes!(sandboxes::list, sandboxes::create))
        .routes(routes!(sandboxes::show, sandboxes::remove))
        .routes(routes!(sandboxes::stage_ingress))
        .routes(routes!(runs::create_run, runs::runs))
        .routes(routes!(runs::show_run))
        .routes(routes!(runs::cancel_run))
        .routes(routes!(runs::logs))
        .split_for_parts();
    let doc_json = document(&doc);
    api.route(
        "/openapi.json",
        axum::routing::get(
            move || async move { ([("content-type", "application/json")], doc_json) },
        ),
    )
    .route("/.well-known/jwks.json", axum::routing::get(system::jwks))
    .fallback(|| async { ApiError::NotFound("route") })
    // A refused request's body is read (within bounds), so the client gets to read the answer.
    .layer(axum::middleware::from_fn(drain::drain_refused))
    .layer(axum::middleware::from_fn_with_state(state.clone(), observe))
    .with_state(state)
}

/// The OpenAPI document as served, with what utoipa cannot say: an attachment comes with a file
/// (its name and its content, both) or without one (neither).
fn document(doc: &utoipa::openapi::OpenApi) -> String {
    use serde_json::{Value, json};
    let mut v = serde_json::to_value(doc).expect("the OpenAPI document serialises");
    if let Some(s) = v.pointer_mut("/components/schemas/NewAttachment") {
        let description = s.get("description").cloned().unwrap_or(Value::Null);
        let mut without = s.clone();
        let mut with = s.clone();
        if let Some(p) = without["properties"].as_object_mut() {
            p.remove("file_name");
            p.remove("file_base64");
        }
        with["properties"]["file_name"] = json!({
            "type": "string", "minLength": 1, "maxLength": 255,
            "pattern": r"^(?!\.\.?$)[^/\\\x00-\x1f\x7f-\x9f]+$",
            "description": "The file's name: 1 to 255 bytes, no slashes or control characters."
        });
        with["properties"]["file_base64"] = json!({
            "type": "string", "format": "byte",
            // Canonical base64: padded, and no bits set past the last byte.
            "pattern": r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/][AQgw]==|[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]=)?$",
            "description": "The file, base64."
        });
        if let Some(r) = with["required"].as_array_mut() {
            r.extend([json!("file_name"), json!("file_base64")]);
        }
        for variant in [&mut without, &mut with] {
            variant["additionalProperties"] = json!(false);
            if let Some(o) = variant.as_object_mut() {
                o.remove("description");
            }
        }
        *s = json!({"description": description, "oneOf": [without, with]});
    }
    serde_json::to_string_pretty(&v).expect("the OpenAPI document serialises")
}

/// Counts and times every request by its route template (never by its raw path, which would
/// put identifiers into metric labels).
async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().as_str().to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let resp = next.run(req).await;
    let status = resp.status().as_u16();
    if status == 401 {
        state
            .metrics
            .auth_failures
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    state
        .metrics
        .observe(&method, &route, status, start.elapsed());
    resp
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or(AuthError::Missing)?;
        let value = header.to_str().map_err(|_| AuthError::Malformed)?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or(AuthError::Missing)?;
        Ok(state.verifier.verify(token.trim())?)
    }
}

/// What an authenticated handler starts from: the gateway's state and the verified caller, the
/// two things every workflow of [`crate::service`] takes.
pub struct Cx {
    pub state: AppState,
    pub caller: Caller,
}

impl FromRequestParts<AppState> for Cx {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(Cx {
            caller: Caller::from_request_parts(parts, state).await?,
            state: state.clone(),
        })
    }
}

/// `axum::Json`, with rejections answered in our error format.
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(ApiJson(v)),
            Err(r) => Err(rejected(r.status(), r.body_text())),
        }
    }
}

/// What axum refused to parse (a body, a query string), answered in our error format: a body
/// over the limit is too large, anything else a bad request saying what did not parse.
fn rejected(status: axum::http::StatusCode, why: String) -> ApiError {
    if status == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::TooLarge("the request body is too large".into())
    } else {
        ApiError::bad_request(ErrorCode::BadRequest, why)
    }
}

/// `axum::extract::Query`, with rejections answered in our error format.
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(ApiQuery(v)),
            Err(r) => Err(rejected(r.status(), r.body_text())),
        }
    }
}

impl<T: serde::Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        Json(self.0).into_response()
    }
}

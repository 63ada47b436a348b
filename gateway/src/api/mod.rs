//! The HTTP API: routes under `/api/v1`, `/healthz`, `/metrics` and `/openapi.json`.
//!
//! Every handler takes a [`Caller`] (a verified token) unless the route is public, parses the
//! request, calls one workflow of [`crate::service`] (which asks `policy` before it touches
//! anything), and shapes the answer; errors are [`ApiError`](crate::error::ApiError). The OpenAPI document is built from the handlers'
//! annotations by `utoipa`, so it cannot drift from the routes.

pub mod applications;
pub mod catalog;
pub mod datasets;
pub mod drain;
pub mod egress;
pub mod extension;
pub mod images;
pub mod ingress;
pub mod projects;
pub mod runs;
pub mod sandboxes;
pub mod system;

use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, BodyDataStream};
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use futures_util::StreamExt;
use tokio::sync::Semaphore;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use policy::access::{Access, Action, Denial};
use policy::roles::RoleSet;

use crate::auth::{AuthError, Caller};
use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;
use crate::workers::Workers;

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
        (name = "datasets", description = "Datasets with their DMPs, and their listing"),
        (name = "ingress", description = "Program and reference-data archives brought into the environment"),
        (name = "sandboxes", description = "Images, sandboxes and runs"),
        (name = "egress", description = "Results taken out: requests, previews, releases and the keys they are encrypted to"),
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
        .routes(routes!(system::audit_verify))
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
        .routes(routes!(applications::revoke_access))
        .routes(routes!(datasets::list, datasets::register))
        .routes(routes!(datasets::show))
        .routes(routes!(datasets::dmp))
        .routes(routes!(datasets::upload))
        .routes(routes!(catalog::search))
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
        .routes(routes!(egress::request))
        .routes(routes!(egress::show, egress::resubmit))
        .routes(routes!(egress::preview))
        .routes(routes!(egress::download))
        .routes(routes!(egress::revoke))
        .routes(routes!(egress::register_key, egress::my_key))
        .routes(routes!(extension::extend))
        .routes(routes!(extension::history))
        .split_for_parts();
    let doc_json = document(&doc, &state.settings.sandbox);
    let limits = Limits {
        uploads: Arc::new(Semaphore::new(state.settings.server.max_concurrent_uploads)),
        state: state.clone(),
    };
    // `ApiJson` reads no more than its route's limit; this one holds for any other extractor
    // that buffers a body.
    let backstop = (state.settings.limits.json_body_max_bytes)
        .max(state.settings.limits.attachment_body_max_bytes());
    api.route(
        "/openapi.json",
        axum::routing::get(
            move || async move { ([("content-type", "application/json")], doc_json) },
        ),
    )
    .route("/.well-known/jwks.json", axum::routing::get(system::jwks))
    .merge(crate::web::routes())
    .fallback(|| async { ApiError::NotFound("route") })
    // A refused request's body is read (within bounds), so the client gets to read the answer.
    .layer(axum::middleware::from_fn(drain::drain_refused))
    .layer(axum::middleware::from_fn_with_state(limits, limit_bodies))
    .layer(DefaultBodyLimit::max(
        usize::try_from(backstop).unwrap_or(usize::MAX),
    ))
    .layer(axum::middleware::from_fn(no_head))
    .layer(axum::middleware::from_fn_with_state(state.clone(), observe))
    .with_state(state)
}

/// Refuses `HEAD` (405 `method_not_allowed`) everywhere but the health check. A `HEAD` runs
/// its `GET`'s handler, and many `GET`s are audited reads (a file, a preview, a release,
/// which also counts its downloads): a link checker or a proxy asking only for the headers
/// would be recorded as having read what it never received.
async fn no_head(req: Request, next: Next) -> Response {
    if req.method() == Method::HEAD && req.uri().path() != "/healthz" {
        let mut resp = ApiError::Refused {
            status: StatusCode::METHOD_NOT_ALLOWED,
            code: ErrorCode::MethodNotAllowed,
            message: "HEAD is not served: ask with GET".into(),
        }
        .into_response();
        resp.headers_mut()
            .insert(header::ALLOW, axum::http::HeaderValue::from_static("GET"));
        return resp;
    }
    next.run(req).await
}

/// The OpenAPI document as served: what `utoipa` derives, plus what its attributes cannot say
/// (an attachment comes with a file, its name and content both, or without one; a command's
/// first argument is not empty; "not blank" in every regex dialect) and what this gateway's
/// configuration fixes (its resource classes, the longest run they allow), so that a request
/// the schema allows is one the gateway takes.
fn document(
    doc: &utoipa::openapi::OpenApi,
    sandbox: &crate::config::sandbox::SandboxSettings,
) -> String {
    use serde_json::{Value, json};
    let mut v = serde_json::to_value(doc).expect("the OpenAPI document serialises");
    spell_out_not_blank(&mut v);
    if let Some(cmd) = v.pointer_mut("/components/schemas/NewRun/properties/cmd") {
        cmd["prefixItems"] =
            json!([{"type": "string", "minLength": 1, "pattern": "^[^\\u0000]*$"}]);
        cmd["items"]["pattern"] = json!("^[^\\u0000]*$");
    }
    // The longest any class allows; a sandbox's own class may allow less (400 `bad_timeout`).
    if let Some(t) = v.pointer_mut("/components/schemas/NewRun/properties/timeout_secs") {
        if let Some(max) = sandbox.classes.values().map(|c| c.max_run_secs).max() {
            t["maximum"] = json!(max);
        }
    }
    if let Some(p) = v.pointer_mut("/components/schemas/NewSandbox/properties") {
        let classes: Vec<&String> = sandbox.classes.keys().collect();
        p["class"]["enum"] = json!(
            classes
                .into_iter()
                .map(Some)
                .chain([None])
                .collect::<Vec<_>>()
        );
    }
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

/// `\S` means one thing to ECMA's regexes and another to Python's and to `str::trim` (U+0085,
/// for one): every such pattern becomes [`crate::wire::NOT_BLANK`].
fn spell_out_not_blank(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(o) => {
            for (k, x) in o.iter_mut() {
                if k == "pattern" && x.as_str() == Some(r"\S") {
                    *x = crate::wire::NOT_BLANK.into();
                } else {
                    spell_out_not_blank(x);
                }
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(spell_out_not_blank),
        _ => {}
    }
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

/// The routes that take more than a JSON body: they stream an archive or carry a file.
const INGRESS_ROUTE: &str = "/api/v1/ingress";
const ATTACHMENT_ROUTE: &str = "/api/v1/applications/{id}/attachments";
const DATASET_CONTENT_ROUTE: &str = "/api/v1/datasets/{id}/content";

/// How much of a refused body is read and thrown away, in the background, after the refusal
/// is sent. A client that sends its whole body before it reads the answer (most do) would
/// otherwise have the connection reset under it, and with it the answer it had not read yet:
/// the kernel resets a connection closed with unread data. A body declared larger than this
/// is not read at all (its client gets the reset).
const DRAIN_MAX: u64 = 64 << 20;

#[derive(Clone)]
struct Limits {
    state: AppState,
    /// One permit per upload in progress; none left is a 503 `busy`.
    uploads: Arc<Semaphore>,
}

/// The most a route reads of a body, for [`ApiJson`] (set by [`limit_bodies`]), and where a
/// refused body's rest is drained.
#[derive(Clone)]
struct BodyLimit {
    max: u64,
    workers: Workers,
}

/// Gives every request its route's body limit: attachments their file in base64, every other
/// JSON route `limits.json_body_max_bytes`. A body declared larger is refused before any of it
/// is read; a chunked one is cut off by [`ApiJson`] at the limit. Ingress uploads stream, and
/// the upload itself enforces `ingress.max_upload_bytes` (after authorization, with its
/// refusal audited). Uploads also take one of `server.max_concurrent_uploads` permits for as
/// long as they are handled.
async fn limit_bodies(State(limits): State<Limits>, mut req: Request, next: Next) -> Response {
    let settings = &limits.state.settings;
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str);
    let writes = req.method() == Method::POST || req.method() == Method::PUT;
    let (max, upload) = match route {
        Some(INGRESS_ROUTE) if writes => (None, true),
        Some(DATASET_CONTENT_ROUTE) if writes => (None, true),
        Some(ATTACHMENT_ROUTE) if writes => {
            (Some(settings.limits.attachment_body_max_bytes()), true)
        }
        _ => (Some(settings.limits.json_body_max_bytes), false),
    };
    let workers = &limits.state.workers;
    let declared = declared_length(req.headers());
    if let Some(max) = max.filter(|max| declared.is_some_and(|n| n > *max)) {
        return refuse(workers, req, too_large(max));
    }
    // Authorization before the body is read, as far as it can go without it: a caller whose
    // roles allow the route's action on no object at all is refused here. Who is not
    // authenticated is answered 401 by the handler's extractor, which also runs before the body.
    let actions = route.filter(|_| writes).map_or_else(Vec::new, actions_of);
    if !actions.is_empty() {
        if let Ok(caller) = caller_of(req.headers(), &limits.state) {
            let denials: Vec<_> = actions
                .iter()
                .filter_map(|a| match policy::access::could(caller.roles, *a) {
                    Access::Allow => None,
                    Access::Deny(d) => Some(d),
                })
                .collect();
            if denials.len() == actions.len() {
                // Roles missing for each of the route's actions: any one of them would do.
                let roles = denials.iter().try_fold(RoleSet::EMPTY, |all, d| match d {
                    Denial::MissingRole(r) => Some(r.iter().fold(all, RoleSet::with)),
                    _ => None,
                });
                let why = match roles {
                    Some(r) => Denial::MissingRole(r).to_string(),
                    None => denials[0].to_string(),
                };
                return refuse(workers, req, ApiError::Forbidden(why));
            }
            req.extensions_mut().insert(caller);
        }
    }
    let _upload = if upload {
        match limits.uploads.clone().try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) => {
                let busy = ApiError::Refused {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    code: ErrorCode::Busy,
                    message: format!(
                        "the gateway takes {} uploads at once; try again shortly",
                        settings.server.max_concurrent_uploads
                    ),
                };
                return refuse(workers, req, busy);
            }
        }
    } else {
        None
    };
    if let Some(max) = max {
        req.extensions_mut().insert(BodyLimit {
            max,
            workers: workers.clone(),
        });
    }
    next.run(req).await
}

fn too_large(max: u64) -> ApiError {
    ApiError::TooLarge(format!("the request body is larger than {max} bytes"))
}

/// The body's length as its Content-Length header declares it.
fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Answers `error` at once, without reading the body first; the body is drained behind the
/// answer (see [`DRAIN_MAX`]), unless its client waits for `100 Continue` and so sends none.
fn refuse(workers: &Workers, req: Request, error: ApiError) -> Response {
    let waits = req
        .headers()
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if !waits && declared_length(req.headers()).is_none_or(|n| n <= DRAIN_MAX) {
        drain(workers, req.into_body().into_data_stream(), DRAIN_MAX);
    }
    error.into_response()
}

/// Reads up to `left` more bytes of a refused body and throws them away, in the background. A
/// client that stops sending is cut off by the connection's idle timeout.
fn drain(workers: &Workers, mut data: BodyDataStream, mut left: u64) {
    workers.spawn("drain", |stop| async move {
        let read = async {
            while let Some(Ok(chunk)) = data.next().await {
                left = left.saturating_sub(chunk.len() as u64);
                if left == 0 {
                    break;
                }
            }
        };
        tokio::select! {
            () = read => {}
            () = stop.requested() => {}
        }
    });
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        // Verified already by `limit_bodies` on routes it pre-authorizes.
        if let Some(caller) = parts.extensions.get::<Caller>() {
            return Ok(caller.clone());
        }
        caller_of(&parts.headers, state)
    }
}

/// The caller whose bearer token the request carries, verified.
fn caller_of(headers: &HeaderMap, state: &AppState) -> Result<Caller, ApiError> {
    let header = headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or(AuthError::Missing)?;
    let value = header.to_str().map_err(|_| AuthError::Malformed)?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .ok_or(AuthError::Missing)?;
    Ok(state.verifier.verify(token.trim())?)
}

/// What a JSON route with a body may do, for [`limit_bodies`] to ask before the body is read:
/// a caller whose roles allow none of these actions on any object is refused at once.
fn actions_of(route: &str) -> Vec<Action> {
    use policy::review::Kind;
    match route {
        "/api/v1/projects" => vec![Action::ProjectCreate],
        "/api/v1/projects/{id}/members" => vec![Action::ProjectManageMembers],
        // The kind is in the body: any kind the caller could apply for (and so withdraw, or
        // resubmit) will do.
        "/api/v1/applications" => Kind::ALL.map(Action::AppCreate).to_vec(),
        "/api/v1/applications/{id}/decisions" => vec![Action::AppDecide],
        "/api/v1/applications/{id}/withdraw" => Kind::ALL.map(Action::AppWithdraw).to_vec(),
        "/api/v1/applications/{id}/resubmit" => Kind::ALL.map(Action::AppResubmit).to_vec(),
        ATTACHMENT_ROUTE => vec![
            Action::AttachInstitutionReview,
            Action::AttachCommitteeOpinion,
        ],
        "/api/v1/images" => vec![Action::ImageAllow],
        "/api/v1/sandboxes" => vec![Action::SandboxCreate],
        "/api/v1/sandboxes/{id}/ingress" => vec![Action::SandboxManage],
        "/api/v1/sandboxes/{id}/runs" => vec![Action::RunCreate],
        "/api/v1/egress" => vec![Action::AppCreate(Kind::Egress)],
        "/api/v1/applications/{id}/egress" => vec![Action::AppResubmit(Kind::Egress)],
        "/api/v1/applications/{id}/release/revoke" => vec![Action::ReleaseRevoke],
        "/api/v1/applications/{id}/access/revoke" => vec![Action::AccessRevoke],
        "/api/v1/keys/me" => vec![Action::KeyRegister],
        "/api/v1/datasets" => vec![Action::DatasetRegister],
        DATASET_CONTENT_ROUTE => vec![Action::DatasetRegister],
        "/api/v1/datasets/{id}/extension" => vec![Action::AppCreate(Kind::Extension)],
        _ => Vec::new(),
    }
}

/// A list's answer: the page's items, and the cursor of the next page in its header.
pub(crate) type Paged<T> = (axum::http::HeaderMap, ApiJson<Vec<T>>);

/// The answer of a page of a list, each item as `dto` shows it.
pub(crate) fn paged<T, U>(
    page: crate::service::page::Page<T>,
    dto: impl FnMut(T) -> U,
) -> Paged<U> {
    let page = page.map(dto);
    (next_cursor(page.next), ApiJson(page.items))
}

/// The page a list's query asks for.
pub(crate) fn page_ask(q: crate::wire::PageQuery) -> crate::service::page::PageAsk {
    crate::service::page::PageAsk {
        limit: q.limit,
        cursor: q.cursor,
    }
}

/// The header that carries a list's next cursor (absent on its last page).
pub(crate) fn next_cursor(next: Option<String>) -> axum::http::HeaderMap {
    let mut h = axum::http::HeaderMap::new();
    if let Some(v) = next.and_then(|n| axum::http::HeaderValue::from_str(&n).ok()) {
        h.insert(axum::http::HeaderName::from_static("x-next-cursor"), v);
    }
    h
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

/// `axum::Json`, with rejections answered in our error format, reading no more of the body
/// than its route's limit ([`limit_bodies`]): memory does not grow with what a client sends.
pub struct ApiJson<T>(pub T);

/// The body limit of a request that went around [`limit_bodies`].
const JSON_BODY_MAX: u64 = 1 << 20;

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let limit = req.extensions().get::<BodyLimit>().cloned();
        let max = limit.as_ref().map_or(JSON_BODY_MAX, |l| l.max);
        if declared_length(req.headers()).is_some_and(|n| n > max) {
            return Err(too_large(max));
        }
        let (parts, body) = req.into_parts();
        let mut data = body.into_data_stream();
        let mut read = Vec::new();
        while let Some(chunk) = data.next().await {
            let chunk = chunk.map_err(|e| {
                ApiError::bad_request(
                    ErrorCode::BadRequest,
                    format!("reading the request body: {e}"),
                )
            })?;
            let len = read.len() + chunk.len();
            if len as u64 > max {
                if let Some(l) = limit {
                    drain(&l.workers, data, DRAIN_MAX);
                }
                return Err(too_large(max));
            }
            // Grown by doubling as usual, but never past the limit.
            let room = len.max(read.capacity() * 2).min(max as usize);
            read.reserve_exact(room - read.len());
            read.extend_from_slice(&chunk);
        }
        let req = Request::from_parts(parts, Body::from(read));
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

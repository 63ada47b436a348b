//! Sandboxes: made, staged into, listed, removed. The workflows are in
//! [`crate::service::sandboxes`]; runs have their own routes in `runs`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{ApiJson, ApiQuery};
use crate::auth::Caller;
use crate::error::{ApiResult, ErrorBody};
use crate::service::sandboxes as svc;
use crate::state::AppState;

#[derive(Serialize, Deserialize, ToSchema, Debug)]
pub struct Staged {
    pub application: String,
    /// SHA-256 of the tar as staged (owned by root, read-only).
    pub staged_sha256: String,
    pub staged_at: String,
}

#[derive(Serialize, Deserialize, ToSchema, Debug)]
pub struct Sandbox {
    pub id: String,
    pub project: String,
    pub image: String,
    pub image_id: String,
    pub resource_class: String,
    pub state: String,
    pub created_by: String,
    pub created_at: String,
    pub ingress: Vec<Staged>,
    pub datasets: Vec<String>,
}

fn sandbox_dto(v: svc::View) -> Sandbox {
    let s = v.row;
    Sandbox {
        ingress: v
            .staged
            .into_iter()
            .map(|(application, staged_sha256, staged_at)| Staged {
                application,
                staged_sha256,
                staged_at,
            })
            .collect(),
        datasets: v.datasets,
        id: s.id,
        project: s.project_id,
        image: s.image_name,
        image_id: s.image_id,
        resource_class: s.resource_class,
        state: s.state,
        created_by: s.created_by,
        created_at: s.created_at,
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSandbox {
    pub project: String,
    /// An allowed image's name.
    pub image: String,
    /// A resource class from the configuration (default: the configured default).
    #[serde(default)]
    pub class: Option<String>,
    /// Approved ingress applications of the project to stage.
    #[serde(default)]
    pub ingress: Vec<String>,
    /// Datasets to mount read-only.
    #[serde(default)]
    pub datasets: Vec<String>,
}

/// Creates a sandbox (its volumes), and stages the approved ingress asked for.
#[utoipa::path(post, path = "/api/v1/sandboxes", tag = "sandboxes", security(("bearer" = [])), request_body = NewSandbox,
    responses((status = 201, body = Sandbox), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 503, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<NewSandbox>,
) -> ApiResult<(StatusCode, ApiJson<Sandbox>)> {
    let new = svc::NewSandbox {
        project: body.project,
        image: body.image,
        class: body.class,
        ingress: body.ingress,
        datasets: body.datasets,
    };
    let v = svc::create(&state, &caller, new).await?;
    Ok((StatusCode::CREATED, ApiJson(sandbox_dto(v))))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StageRequest {
    pub application: String,
}

/// Stages one more approved ingress application into a sandbox.
#[utoipa::path(post, path = "/api/v1/sandboxes/{id}/ingress", tag = "sandboxes", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = StageRequest,
    responses((status = 200, body = Sandbox), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn stage_ingress(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<StageRequest>,
) -> ApiResult<ApiJson<Sandbox>> {
    let v = svc::stage_ingress(&state, &caller, &id, &body.application).await?;
    Ok(ApiJson(sandbox_dto(v)))
}

#[derive(Deserialize, IntoParams)]
pub struct SandboxQuery {
    pub project: Option<String>,
}

/// Sandboxes the caller may see.
#[utoipa::path(get, path = "/api/v1/sandboxes", tag = "sandboxes", security(("bearer" = [])), params(SandboxQuery),
    responses((status = 200, body = Vec<Sandbox>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<SandboxQuery>,
) -> ApiResult<ApiJson<Vec<Sandbox>>> {
    let views = svc::list(&state, &caller, q.project.as_deref()).await?;
    Ok(ApiJson(views.into_iter().map(sandbox_dto).collect()))
}

/// One sandbox.
#[utoipa::path(get, path = "/api/v1/sandboxes/{id}", tag = "sandboxes", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = Sandbox), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<ApiJson<Sandbox>> {
    Ok(ApiJson(sandbox_dto(svc::show(&state, &caller, &id).await?)))
}

/// Removes a sandbox and its volumes (its work area and outputs are gone after this).
#[utoipa::path(delete, path = "/api/v1/sandboxes/{id}", tag = "sandboxes", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = Sandbox), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<ApiJson<Sandbox>> {
    Ok(ApiJson(sandbox_dto(
        svc::remove(&state, &caller, &id).await?,
    )))
}

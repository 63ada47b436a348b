//! Sandboxes: made, staged into, listed, removed. The workflows are in
//! [`crate::service::sandboxes`]; runs have their own routes in `runs`.

use axum::extract::Path;
use axum::http::StatusCode;

use super::{ApiJson, ApiQuery, Cx, Paged};
use crate::error::{ApiResult, ErrorBody};
use crate::service::sandboxes as svc;
use crate::wire::PageQuery;
use crate::wire::sandboxes::{
    LogVisibility, NewSandbox, Sandbox, SandboxQuery, SandboxState, StageRequest, Staged,
};

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
        // The gateway stores only the values it accepted.
        logs: s.logs.parse().unwrap_or(LogVisibility::Hidden),
        id: s.id,
        project: s.project_id,
        image: s.image_name,
        image_id: s.image_id,
        resource_class: s.resource_class,
        state: s.state.parse().unwrap_or(SandboxState::Ready),
        created_by: s.created_by,
        created_at: s.created_at,
    }
}

/// Creates a sandbox (its volumes), and stages the approved ingress asked for.
#[utoipa::path(post, path = "/api/v1/sandboxes", operation_id = "create_sandbox", tag = "sandboxes", security(("bearer" = [])), request_body = NewSandbox,
    responses((status = 201, body = Sandbox), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 503, body = ErrorBody)))]
pub async fn create(
    cx: Cx,
    ApiJson(body): ApiJson<NewSandbox>,
) -> ApiResult<(StatusCode, ApiJson<Sandbox>)> {
    let new = svc::NewSandbox {
        project: body.project,
        image: body.image,
        class: body.class,
        ingress: body.ingress,
        datasets: body.datasets,
        logs: body.logs,
    };
    let v = svc::create(&cx.state, &cx.caller, new).await?;
    Ok((StatusCode::CREATED, ApiJson(sandbox_dto(v))))
}

/// Stages one more approved ingress application into a sandbox.
#[utoipa::path(post, path = "/api/v1/sandboxes/{id}/ingress", operation_id = "stage_ingress", tag = "sandboxes", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = StageRequest,
    responses((status = 400, body = ErrorBody, description = "the request does not parse or breaks a rule"), (status = 200, body = Sandbox), (status = 401, body = ErrorBody), (status = 413, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn stage_ingress(
    cx: Cx,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<StageRequest>,
) -> ApiResult<ApiJson<Sandbox>> {
    let v = svc::stage_ingress(&cx.state, &cx.caller, &id, &body.application).await?;
    Ok(ApiJson(sandbox_dto(v)))
}

/// Sandboxes the caller may see.
#[utoipa::path(get, path = "/api/v1/sandboxes", operation_id = "list_sandboxes", tag = "sandboxes", security(("bearer" = [])), params(SandboxQuery, PageQuery),
    responses((status = 400, body = ErrorBody, description = "the request does not parse or breaks a rule"), (status = 200, body = Vec<Sandbox>, headers(("x-next-cursor" = String, description = "the cursor of the next page, when there is one"))), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list(
    cx: Cx,
    ApiQuery(q): ApiQuery<SandboxQuery>,
    ApiQuery(p): ApiQuery<PageQuery>,
) -> ApiResult<Paged<Sandbox>> {
    let page = svc::list(
        &cx.state,
        &cx.caller,
        q.project.as_deref(),
        &super::page_ask(p),
    )
    .await?;
    Ok(super::paged(page, sandbox_dto))
}

/// One sandbox.
#[utoipa::path(get, path = "/api/v1/sandboxes/{id}", operation_id = "get_sandbox", tag = "sandboxes", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = Sandbox), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn show(cx: Cx, Path(id): Path<String>) -> ApiResult<ApiJson<Sandbox>> {
    Ok(ApiJson(sandbox_dto(
        svc::show(&cx.state, &cx.caller, &id).await?,
    )))
}

/// Removes a sandbox and its volumes (its work area and outputs are gone after this).
#[utoipa::path(delete, path = "/api/v1/sandboxes/{id}", operation_id = "remove_sandbox", tag = "sandboxes", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = Sandbox), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn remove(cx: Cx, Path(id): Path<String>) -> ApiResult<ApiJson<Sandbox>> {
    Ok(ApiJson(sandbox_dto(
        svc::remove(&cx.state, &cx.caller, &id).await?,
    )))
}

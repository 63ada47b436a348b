//! Projects and their members.

use axum::extract::Path;
use axum::http::StatusCode;

use super::{ApiJson, ApiQuery, Cx, Paged};
use crate::error::{ApiResult, ErrorBody};
use crate::service::projects::{self as svc};
use crate::wire::PageQuery;
use crate::wire::projects::{CommandPolicy, Member, NewMember, NewProject, Project, RemoveQuery};

fn project_dto(p: svc::Project) -> Project {
    let svc::Project { row: p, members } = p;
    Project {
        id: p.id,
        title: p.title,
        grant_number: p.grant_number,
        created_at: p.created_at,
        created_by: p.created_by,
        // Stored by the gateway from this same enum; a value it does not know is the strict one.
        commands: p.commands.parse().unwrap_or(CommandPolicy::Approved),
        members: members
            .into_iter()
            .map(|m| Member {
                subject: m.subject,
                role: m.role.into(),
            })
            .collect(),
    }
}

/// Projects the caller belongs to (everyone's, for roles that act across projects), in the
/// order of their ids; a page at a time.
#[utoipa::path(get, path = "/api/v1/projects", operation_id = "list_projects", tag = "projects", security(("bearer" = [])), params(PageQuery),
    responses((status = 200, body = Vec<Project>, headers(("x-next-cursor" = String, description = "the cursor of the next page, when there is one"))),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list(cx: Cx, ApiQuery(p): ApiQuery<PageQuery>) -> ApiResult<Paged<Project>> {
    let page = svc::list(&cx.state, &cx.caller, &super::page_ask(p)).await?;
    Ok(super::paged(page, project_dto))
}

/// Creates a project; admins.
#[utoipa::path(post, path = "/api/v1/projects", operation_id = "create_project", tag = "projects", security(("bearer" = [])), request_body = NewProject,
    responses((status = 201, body = Project), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create(
    cx: Cx,
    ApiJson(body): ApiJson<NewProject>,
) -> ApiResult<(StatusCode, ApiJson<Project>)> {
    let new = svc::NewProject {
        id: body.id,
        title: body.title,
        grant_number: body.grant_number,
        members: body
            .members
            .into_iter()
            .map(|m| (m.subject, m.role))
            .collect(),
        commands: body.commands,
    };
    let p = svc::create(&cx.state, &cx.caller, new).await?;
    Ok((StatusCode::CREATED, ApiJson(project_dto(p))))
}

/// One project and its members.
#[utoipa::path(get, path = "/api/v1/projects/{id}", operation_id = "get_project", tag = "projects", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = Project), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn show(cx: Cx, Path(id): Path<String>) -> ApiResult<ApiJson<Project>> {
    Ok(ApiJson(project_dto(
        svc::show(&cx.state, &cx.caller, &id).await?,
    )))
}

/// Adds a member with a role; admins.
#[utoipa::path(post, path = "/api/v1/projects/{id}/members", operation_id = "add_project_member", tag = "projects", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = NewMember,
    responses((status = 200, body = Project), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn add_member(
    cx: Cx,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<NewMember>,
) -> ApiResult<ApiJson<Project>> {
    let p = svc::add_member(&cx.state, &cx.caller, &id, &body.subject, &body.role).await?;
    Ok(ApiJson(project_dto(p)))
}

/// Removes a member (or one of their roles); admins.
#[utoipa::path(delete, path = "/api/v1/projects/{id}/members/{subject}", operation_id = "remove_project_member", tag = "projects", security(("bearer" = [])),
    params(("id" = String, Path), ("subject" = String, Path), RemoveQuery),
    responses((status = 400, body = ErrorBody, description = "the request does not parse or breaks a rule"), (status = 200, body = Project), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn remove_member(
    cx: Cx,
    Path((id, subject)): Path<(String, String)>,
    ApiQuery(q): ApiQuery<RemoveQuery>,
) -> ApiResult<ApiJson<Project>> {
    let p = svc::remove_member(&cx.state, &cx.caller, &id, &subject, q.role.as_deref()).await?;
    Ok(ApiJson(project_dto(p)))
}

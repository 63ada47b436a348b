//! Projects and their members.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use policy::access::{Action, Standing, sees_every_project};
use policy::ids::{ProjectId, Subject};
use policy::roles::Role;
use serde_json::json;

use super::{ApiJson, ApiQuery, require, require_visible};
use crate::audit::NewEvent;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody, ErrorCode};
use crate::state::AppState;
use crate::store::{self, MemberRow, ProjectRow};
use crate::wire::projects::{Member, NewMember, NewProject, Project, RemoveQuery};

pub(crate) fn parse_member(m: &NewMember) -> ApiResult<(Subject, Role)> {
    let subject = Subject::parse(&m.subject)
        .map_err(|e| ApiError::bad_request(ErrorCode::BadMember, e.to_string()))?;
    let role: Role = m.role.parse().map_err(|e: policy::roles::UnknownRole| {
        ApiError::bad_request(ErrorCode::BadMember, e.to_string())
    })?;
    if !role.is_project_role() {
        return Err(ApiError::bad_request(
            ErrorCode::BadMember,
            format!("{role} is not a project role: members are analysts or stewards"),
        ));
    }
    Ok((subject, role))
}

fn project_dto(p: ProjectRow, members: Vec<MemberRow>) -> Project {
    Project {
        id: p.id,
        title: p.title,
        grant_number: p.grant_number,
        created_at: p.created_at,
        created_by: p.created_by,
        members: members
            .into_iter()
            .map(|m| Member {
                subject: m.subject,
                role: m.role.into(),
            })
            .collect(),
    }
}

/// Projects the caller belongs to (everyone's, for roles that act across projects).
#[utoipa::path(get, path = "/api/v1/projects", operation_id = "list_projects", tag = "projects", security(("bearer" = [])),
    responses((status = 200, body = Vec<Project>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<ApiJson<Vec<Project>>> {
    require(&caller, Action::ProjectList, Standing::default())?;
    let mut conn = state.db.pool().acquire().await?;
    let narrow = (!sees_every_project(caller.roles)).then(|| caller.sub.as_str());
    let rows = store::projects(&mut conn, narrow).await?;
    let mut out = Vec::with_capacity(rows.len());
    for p in rows {
        let members = store::members(&mut conn, &p.id).await?;
        out.push(project_dto(p, members));
    }
    Ok(ApiJson(out))
}

/// Creates a project; admins.
#[utoipa::path(post, path = "/api/v1/projects", operation_id = "create_project", tag = "projects", security(("bearer" = [])), request_body = NewProject,
    responses((status = 201, body = Project), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<NewProject>,
) -> ApiResult<(StatusCode, ApiJson<Project>)> {
    require(&caller, Action::ProjectCreate, Standing::default())?;
    let id = ProjectId::parse(&body.id)
        .map_err(|e| ApiError::bad_request(ErrorCode::BadProjectId, e.to_string()))?;
    let title = body.title.trim();
    if title.is_empty() || title.len() > 500 {
        return Err(ApiError::bad_request(
            ErrorCode::BadTitle,
            "a project needs a title of 1 to 500 characters",
        ));
    }
    let members = body
        .members
        .iter()
        .map(parse_member)
        .collect::<ApiResult<Vec<_>>>()?;
    let now = crate::time::now();
    let row = ProjectRow {
        id: id.to_string(),
        title: title.to_owned(),
        grant_number: body
            .grant_number
            .map(|g| g.trim().to_owned())
            .filter(|g| !g.is_empty()),
        created_at: now.clone(),
        created_by: caller.sub.to_string(),
    };
    let mut tx = state.db.begin_write().await?;
    if !store::insert_project(tx.conn(), &row).await? {
        return Err(ApiError::conflict(
            ErrorCode::ProjectExists,
            format!("project {id} already exists"),
        ));
    }
    for (subject, role) in &members {
        let m = MemberRow {
            subject: subject.to_string(),
            role: *role,
            added_at: now.clone(),
            added_by: caller.sub.to_string(),
        };
        store::add_member(tx.conn(), id.as_str(), &m).await?;
    }
    tx.audit(NewEvent {
        actor: caller.sub.as_str(),
        action: "project.create",
        subject: id.as_str(),
        detail: json!({
            "title": row.title,
            "grant_number": row.grant_number,
            "members": body.members,
        }),
    })
    .await?;
    let members = store::members(tx.conn(), id.as_str()).await?;
    state.commit(tx).await?;
    Ok((StatusCode::CREATED, ApiJson(project_dto(row, members))))
}

/// One project and its members.
#[utoipa::path(get, path = "/api/v1/projects/{id}", operation_id = "get_project", tag = "projects", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = Project), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<ApiJson<Project>> {
    let mut conn = state.db.pool().acquire().await?;
    let standing = Standing {
        member_roles: store::member_roles(&mut conn, &id, caller.sub.as_str()).await?,
        is_requester: false,
    };
    require_visible(&caller, Action::ProjectRead, standing, "project")?;
    let p = store::project(&mut conn, &id)
        .await?
        .ok_or(ApiError::NotFound("project"))?;
    let members = store::members(&mut conn, &id).await?;
    Ok(ApiJson(project_dto(p, members)))
}

/// Adds a member with a role; admins.
#[utoipa::path(post, path = "/api/v1/projects/{id}/members", operation_id = "add_project_member", tag = "projects", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = NewMember,
    responses((status = 200, body = Project), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn add_member(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<NewMember>,
) -> ApiResult<ApiJson<Project>> {
    require(&caller, Action::ProjectManageMembers, Standing::default())?;
    let (subject, role) = parse_member(&body)?;
    let mut tx = state.db.begin_write().await?;
    let p = store::project(tx.conn(), &id)
        .await?
        .ok_or(ApiError::NotFound("project"))?;
    let m = MemberRow {
        subject: subject.to_string(),
        role,
        added_at: crate::time::now(),
        added_by: caller.sub.to_string(),
    };
    if store::add_member(tx.conn(), &id, &m).await? {
        tx.audit(NewEvent {
            actor: caller.sub.as_str(),
            action: "project.member_add",
            subject: &id,
            detail: json!({"member": subject.as_str(), "role": role.as_str()}),
        })
        .await?;
    }
    let members = store::members(tx.conn(), &id).await?;
    state.commit(tx).await?;
    Ok(ApiJson(project_dto(p, members)))
}

/// Removes a member (or one of their roles); admins.
#[utoipa::path(delete, path = "/api/v1/projects/{id}/members/{subject}", operation_id = "remove_project_member", tag = "projects", security(("bearer" = [])),
    params(("id" = String, Path), ("subject" = String, Path), RemoveQuery),
    responses((status = 400, body = ErrorBody, description = "the request does not parse or breaks a rule"), (status = 200, body = Project), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn remove_member(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, subject)): Path<(String, String)>,
    ApiQuery(q): ApiQuery<RemoveQuery>,
) -> ApiResult<ApiJson<Project>> {
    require(&caller, Action::ProjectManageMembers, Standing::default())?;
    let role = match q.role.as_deref() {
        Some(r) => Some(
            r.parse::<Role>()
                .map_err(|e| ApiError::bad_request(ErrorCode::BadMember, e.to_string()))?,
        ),
        None => None,
    };
    let mut tx = state.db.begin_write().await?;
    let p = store::project(tx.conn(), &id)
        .await?
        .ok_or(ApiError::NotFound("project"))?;
    let removed = store::remove_member(tx.conn(), &id, &subject, role).await?;
    if removed == 0 {
        return Err(ApiError::NotFound("member"));
    }
    tx.audit(NewEvent {
        actor: caller.sub.as_str(),
        action: "project.member_remove",
        subject: &id,
        detail: json!({"member": subject, "role": role.map(|r| r.as_str())}),
    })
    .await?;
    let members = store::members(tx.conn(), &id).await?;
    state.commit(tx).await?;
    Ok(ApiJson(project_dto(p, members)))
}

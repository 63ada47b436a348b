//! Projects and their members: admins make them; members' roles in them are what the access
//! rules read as a caller's standing.

use policy::access::{Action, Resource, Standing};
use policy::ids::{ProjectId, Subject};
use policy::roles::Role;
use serde_json::json;

use super::page::{Page, PageAsk, Window};
use super::{Error, Narrow, Result, allow, narrow, see};
use crate::audit::NewEvent;
use crate::auth::Caller;
use crate::db::WriteTx;
use crate::error::ErrorCode;
use crate::state::AppState;
use crate::store::{self, MemberRow, ProjectRow};
use crate::wire::projects::CommandPolicy;

/// A project with its members.
#[derive(Debug)]
pub struct Project {
    pub row: ProjectRow,
    pub members: Vec<MemberRow>,
}

/// A member as asked for: a subject and one of the project roles.
pub fn parse_member(subject: &str, role: &str) -> Result<(Subject, Role)> {
    let subject =
        Subject::parse(subject).map_err(|e| Error::invalid(ErrorCode::BadMember, e.to_string()))?;
    let role: Role = role.parse().map_err(|e: policy::roles::UnknownRole| {
        Error::invalid(ErrorCode::BadMember, e.to_string())
    })?;
    if !role.is_project_role() {
        return Err(Error::invalid(
            ErrorCode::BadMember,
            format!("{role} is not a project role: members are analysts or stewards"),
        ));
    }
    Ok((subject, role))
}

/// Projects the caller may see, in the order of their ids: exactly those [`show`] opens for
/// them. Two queries a page, whatever its size: the projects, then their members.
pub async fn list(state: &AppState, caller: &Caller, ask: &PageAsk) -> Result<Page<Project>> {
    allow(caller, Action::ProjectList, Standing::default())?;
    let window = Window::<String>::of("projects", ask)?;
    let member = match narrow(caller, Resource::Project) {
        Narrow::Everything => None,
        Narrow::MemberOf(sub) => Some(sub),
        Narrow::Nothing => return Ok(Page::empty()),
    };
    let mut conn = state.db.pool().acquire().await?;
    let rows = store::projects(&mut conn, member, window.after.as_ref(), window.fetch()).await?;
    let page = window.page(rows, |r| r.id.clone());
    let ids: Vec<&str> = page.items.iter().map(|r| r.id.as_str()).collect();
    let mut members = store::members_of(&mut conn, &ids).await?;
    Ok(page.map(|row| Project {
        members: members.remove(&row.id).unwrap_or_default(),
        row,
    }))
}

/// A new project as asked for.
#[derive(Debug)]
pub struct NewProject {
    pub id: String,
    pub title: String,
    pub grant_number: Option<String>,
    /// Subjects and role names, as given.
    pub members: Vec<(String, String)>,
    /// The command policy; `[sandbox] commands` when not given.
    pub commands: Option<CommandPolicy>,
}

/// Creates a project with its first members; admins.
pub async fn create(state: &AppState, caller: &Caller, new: NewProject) -> Result<Project> {
    allow(caller, Action::ProjectCreate, Standing::default())?;
    let id = ProjectId::parse(&new.id)
        .map_err(|e| Error::invalid(ErrorCode::BadProjectId, e.to_string()))?;
    let title = new.title.trim();
    if title.is_empty() || title.len() > 500 {
        return Err(Error::invalid(
            ErrorCode::BadTitle,
            "a project needs a title of 1 to 500 characters",
        ));
    }
    let members = new
        .members
        .iter()
        .map(|(s, r)| parse_member(s, r))
        .collect::<Result<Vec<_>>>()?;
    let now = crate::time::now();
    let row = ProjectRow {
        id: id.to_string(),
        title: title.to_owned(),
        grant_number: new
            .grant_number
            .map(|g| g.trim().to_owned())
            .filter(|g| !g.is_empty()),
        created_at: now.clone(),
        created_by: caller.sub.to_string(),
        commands: new
            .commands
            .unwrap_or(state.sandboxes.settings().commands)
            .as_str()
            .to_owned(),
    };
    let mut tx = state.db.begin_write().await?;
    if !store::insert_project(tx.conn(), &row).await? {
        return Err(Error::conflict(
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
            "commands": row.commands,
            "members": new.members.iter().map(|(s, r)| json!({"subject": s, "role": r})).collect::<Vec<_>>(),
        }),
    })
    .await?;
    finish(state, tx, row).await
}

/// One project and its members.
pub async fn show(state: &AppState, caller: &Caller, id: &str) -> Result<Project> {
    let mut conn = state.db.pool().acquire().await?;
    let standing = super::standing_in(&mut conn, id, caller).await?;
    let row = store::project(&mut conn, id).await?;
    let row = see(caller, Action::ProjectRead, standing, row, "project")?.object;
    let members = store::members(&mut conn, id).await?;
    Ok(Project { row, members })
}

/// Adds a member with a role; admins.
pub async fn add_member(
    state: &AppState,
    caller: &Caller,
    id: &str,
    subject: &str,
    role: &str,
) -> Result<Project> {
    allow(caller, Action::ProjectManageMembers, Standing::default())?;
    let (subject, role) = parse_member(subject, role)?;
    let mut tx = state.db.begin_write().await?;
    let row = store::project(tx.conn(), id)
        .await?
        .ok_or(Error::NotFound("project"))?;
    let m = MemberRow {
        subject: subject.to_string(),
        role,
        added_at: crate::time::now(),
        added_by: caller.sub.to_string(),
    };
    if store::add_member(tx.conn(), id, &m).await? {
        tx.audit(NewEvent {
            actor: caller.sub.as_str(),
            action: "project.member_add",
            subject: id,
            detail: json!({"member": subject.as_str(), "role": role.as_str()}),
        })
        .await?;
    }
    finish(state, tx, row).await
}

/// Removes a member, or only one of their roles; admins.
pub async fn remove_member(
    state: &AppState,
    caller: &Caller,
    id: &str,
    subject: &str,
    role: Option<&str>,
) -> Result<Project> {
    allow(caller, Action::ProjectManageMembers, Standing::default())?;
    let role = role
        .map(|r| {
            r.parse::<Role>()
                .map_err(|e| Error::invalid(ErrorCode::BadMember, e.to_string()))
        })
        .transpose()?;
    let mut tx = state.db.begin_write().await?;
    let row = store::project(tx.conn(), id)
        .await?
        .ok_or(Error::NotFound("project"))?;
    if store::remove_member(tx.conn(), id, subject, role).await? == 0 {
        return Err(Error::NotFound("member"));
    }
    tx.audit(NewEvent {
        actor: caller.sub.as_str(),
        action: "project.member_remove",
        subject: id,
        detail: json!({"member": subject, "role": role.map(|r| r.as_str())}),
    })
    .await?;
    finish(state, tx, row).await
}

/// Reads the members as the transaction leaves them, and commits.
async fn finish(state: &AppState, mut tx: WriteTx, row: ProjectRow) -> Result<Project> {
    let members = store::members(tx.conn(), &row.id).await?;
    state.commit(tx).await?;
    Ok(Project { row, members })
}

//! SQL for projects and applications, portable across SQLite and PostgreSQL (`datasets`: the
//! datasets and their DMPs; `ingress`: the archives of ingress applications; `sandboxes`:
//! images, sandboxes and runs).
//!
//! Functions take a connection so the same query serves a plain read and a write transaction.
//! Rows come back as plain structs; turning them into wire types is the API's business.

pub mod access;
pub mod datasets;
pub mod egress;
pub mod ingress;
pub mod list;
pub mod owners;
pub mod sandboxes;
pub mod web;

use std::collections::HashMap;

use policy::review::{Choice, Kind, State};
use policy::roles::{Role, RoleSet};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use list::{ListSql, Order, of_each};

#[derive(Clone, Debug)]
pub struct ProjectRow {
    pub id: String,
    pub title: String,
    pub grant_number: Option<String>,
    pub created_at: String,
    pub created_by: String,
    /// The command policy (`approved` or `any`).
    pub commands: String,
}

const PROJECT_COLUMNS: &str = "id, title, grant_number, created_at, created_by, commands";

fn project_from(r: &AnyRow) -> Result<ProjectRow, sqlx::Error> {
    Ok(ProjectRow {
        id: r.try_get("id")?,
        title: r.try_get("title")?,
        grant_number: r.try_get("grant_number")?,
        created_at: r.try_get("created_at")?,
        created_by: r.try_get("created_by")?,
        commands: r.try_get("commands")?,
    })
}

pub async fn project(
    conn: &mut AnyConnection,
    id: &str,
) -> Result<Option<ProjectRow>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {PROJECT_COLUMNS} FROM projects WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await?
    .as_ref()
    .map(project_from)
    .transpose()
}

/// Projects in the order of their ids, after `after`, at most `limit`; all, or only those
/// `member` belongs to.
pub async fn projects(
    conn: &mut AnyConnection,
    member: Option<&str>,
    after: Option<&String>,
    limit: i64,
) -> Result<Vec<ProjectRow>, sqlx::Error> {
    let mut q = ListSql::new(PROJECT_COLUMNS, "projects", "1 = 1");
    q.and_some(
        "id IN (SELECT project_id FROM project_members WHERE subject = ?)",
        member,
    )
    .after_key("id", after, Order::Oldest);
    q.fetch(conn, (&["id"], Order::Oldest), limit, project_from)
        .await
}

pub async fn insert_project(conn: &mut AnyConnection, p: &ProjectRow) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO projects (id, title, grant_number, created_at, created_by, commands) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(&p.id)
    .bind(&p.title)
    .bind(&p.grant_number)
    .bind(&p.created_at)
    .bind(&p.created_by)
    .bind(&p.commands)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberRow {
    pub subject: String,
    pub role: Role,
    pub added_at: String,
    pub added_by: String,
}

pub async fn members(
    conn: &mut AnyConnection,
    project: &str,
) -> Result<Vec<MemberRow>, sqlx::Error> {
    Ok(members_of(conn, &[project])
        .await?
        .remove(project)
        .unwrap_or_default())
}

/// The members of several projects in one query, by project.
pub async fn members_of(
    conn: &mut AnyConnection,
    projects: &[&str],
) -> Result<HashMap<String, Vec<MemberRow>>, sqlx::Error> {
    let select = "SELECT project_id, subject, role, added_at, added_by FROM project_members";
    of_each(conn, select, "project_id", projects, "subject, role", |r| {
        let role: String = r.try_get("role")?;
        Ok(MemberRow {
            subject: r.try_get("subject")?,
            role: role.parse().map_err(decode_err)?,
            added_at: r.try_get("added_at")?,
            added_by: r.try_get("added_by")?,
        })
    })
    .await
}

/// The roles `subject` holds in `project` (empty when not a member).
pub async fn member_roles(
    conn: &mut AnyConnection,
    project: &str,
    subject: &str,
) -> Result<RoleSet, sqlx::Error> {
    let rows =
        sqlx::query("SELECT role FROM project_members WHERE project_id = $1 AND subject = $2")
            .bind(project)
            .bind(subject)
            .fetch_all(conn)
            .await?;
    Ok(rows
        .iter()
        .filter_map(|r| r.try_get::<String, _>("role").ok()?.parse::<Role>().ok())
        .collect())
}

pub async fn add_member(
    conn: &mut AnyConnection,
    project: &str,
    m: &MemberRow,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO project_members (project_id, subject, role, added_at, added_by) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (project_id, subject, role) DO NOTHING",
    )
    .bind(project)
    .bind(&m.subject)
    .bind(m.role.as_str())
    .bind(&m.added_at)
    .bind(&m.added_by)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Removes one role of a member, or all of them with `role = None`; returns how many went.
pub async fn remove_member(
    conn: &mut AnyConnection,
    project: &str,
    subject: &str,
    role: Option<Role>,
) -> Result<u64, sqlx::Error> {
    let done =
        match role {
            Some(r) => sqlx::query(
                "DELETE FROM project_members WHERE project_id = $1 AND subject = $2 AND role = $3",
            )
            .bind(project)
            .bind(subject)
            .bind(r.as_str())
            .execute(conn)
            .await?,
            None => {
                sqlx::query("DELETE FROM project_members WHERE project_id = $1 AND subject = $2")
                    .bind(project)
                    .bind(subject)
                    .execute(conn)
                    .await?
            }
        };
    Ok(done.rows_affected())
}

#[derive(Clone, Debug)]
pub struct AppRow {
    pub id: String,
    pub kind: Kind,
    /// The project it belongs to, or `None` for a dataset's (listing, extension).
    pub project_id: Option<String>,
    /// The dataset it belongs to, for a dataset's listing or extension.
    pub dataset_id: Option<String>,
    pub requester: String,
    pub title: String,
    pub description: String,
    /// Kind-specific JSON.
    pub payload: String,
    pub state: State,
    pub round: i64,
    pub created_at: String,
    pub updated_at: String,
}

impl AppRow {
    /// Its project, or "" for a dataset's application (which has no members).
    pub fn project(&self) -> &str {
        self.project_id.as_deref().unwrap_or("")
    }
}

const APP_COLUMNS: &str = "id, kind, project_id, requester, title, description, payload, state, round, created_at, updated_at, dataset_id";

fn decode_err<E: std::error::Error + Send + Sync + 'static>(e: E) -> sqlx::Error {
    sqlx::Error::Decode(Box::new(e))
}

fn app_from(r: &AnyRow) -> Result<AppRow, sqlx::Error> {
    let kind: String = r.try_get("kind")?;
    let state: String = r.try_get("state")?;
    Ok(AppRow {
        id: r.try_get("id")?,
        kind: kind.parse().map_err(decode_err)?,
        project_id: r.try_get("project_id")?,
        dataset_id: r.try_get("dataset_id")?,
        requester: r.try_get("requester")?,
        title: r.try_get("title")?,
        description: r.try_get("description")?,
        payload: r.try_get("payload")?,
        state: state.parse().map_err(decode_err)?,
        round: r.try_get("round")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

pub async fn application(
    conn: &mut AnyConnection,
    id: &str,
) -> Result<Option<AppRow>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {APP_COLUMNS} FROM applications WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await?
    .as_ref()
    .map(app_from)
    .transpose()
}

/// Filters for listing applications; `visible_to` narrows to the projects a person belongs to.
#[derive(Clone, Debug, Default)]
pub struct AppFilter {
    pub kind: Option<Kind>,
    pub state: Option<State>,
    pub project: Option<String>,
    pub requester: Option<String>,
    pub visible_to: Option<String>,
    /// Only those after this one in the list's order (newest first): the last of the page
    /// before, as `(created_at, id)`.
    pub after: Option<(String, String)>,
    pub limit: i64,
}

pub async fn applications(
    conn: &mut AnyConnection,
    f: &AppFilter,
) -> Result<Vec<AppRow>, sqlx::Error> {
    let mut q = ListSql::new(APP_COLUMNS, "applications", "1 = 1");
    q.and_some("kind = ?", f.kind.map(|k| k.as_str()))
        .and_some("state = ?", f.state.map(|s| s.as_str()))
        .and_some("project_id = ?", f.project.as_deref())
        .and_some("requester = ?", f.requester.as_deref())
        .after_created(f.after.as_ref(), Order::Newest);
    // The order of the indexes of migration 0008: each filter reads its page off one; a
    // member's, off their projects' (one page of each).
    let order = (&["created_at", "id"][..], Order::Newest);
    match &f.visible_to {
        None => q.fetch(conn, order, f.limit, app_from).await,
        Some(sub) => {
            let projects = list::projects_of(conn, sub).await?;
            q.fetch_each(conn, ("project_id", &projects), order, f.limit, app_from)
                .await
        }
    }
}

/// The applications that belong to a dataset (listing, extension), oldest first.
pub async fn applications_of_dataset(
    conn: &mut AnyConnection,
    dataset: &str,
) -> Result<Vec<AppRow>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {APP_COLUMNS} FROM applications WHERE dataset_id = $1 ORDER BY created_at, id LIMIT 1000"
    ))
    .bind(dataset)
    .fetch_all(conn)
    .await?
    .iter()
    .map(app_from)
    .collect()
}

pub async fn insert_application(conn: &mut AnyConnection, a: &AppRow) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "INSERT INTO applications ({APP_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
    ))
    .bind(&a.id)
    .bind(a.kind.as_str())
    .bind(&a.project_id)
    .bind(&a.requester)
    .bind(&a.title)
    .bind(&a.description)
    .bind(&a.payload)
    .bind(a.state.as_str())
    .bind(a.round)
    .bind(&a.created_at)
    .bind(&a.updated_at)
    .bind(&a.dataset_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Moves an application to `to` (and `round`), only if it is still in `from`: a lost race
/// updates nothing and the caller reports it.
pub async fn set_state(
    conn: &mut AnyConnection,
    id: &str,
    from: State,
    to: State,
    round: i64,
    description: Option<&str>,
    at: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE applications SET state = $1, round = $2, updated_at = $3, description = COALESCE($4, description) \
         WHERE id = $5 AND state = $6",
    )
    .bind(to.as_str())
    .bind(round)
    .bind(at)
    .bind(description)
    .bind(id)
    .bind(from.as_str())
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

#[derive(Clone, Debug)]
pub struct DecisionRow {
    pub round: i64,
    pub reviewer: String,
    pub choice: Choice,
    pub comment: String,
    pub decided_at: String,
}

pub async fn decisions(
    conn: &mut AnyConnection,
    app: &str,
) -> Result<Vec<DecisionRow>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT round, reviewer, choice, comment, decided_at FROM decisions WHERE application_id = $1 \
         ORDER BY round, decided_at, reviewer",
    )
    .bind(app)
    .fetch_all(conn)
    .await?;
    rows.iter().map(decision_from).collect()
}

fn decision_from(r: &AnyRow) -> Result<DecisionRow, sqlx::Error> {
    let choice: String = r.try_get("choice")?;
    Ok(DecisionRow {
        round: r.try_get("round")?,
        reviewer: r.try_get("reviewer")?,
        choice: choice.parse().map_err(decode_err)?,
        comment: r.try_get("comment")?,
        decided_at: r.try_get("decided_at")?,
    })
}

/// The decisions of several applications in one query, by application.
pub async fn decisions_of(
    conn: &mut AnyConnection,
    apps: &[&str],
) -> Result<HashMap<String, Vec<DecisionRow>>, sqlx::Error> {
    let select =
        "SELECT application_id, round, reviewer, choice, comment, decided_at FROM decisions";
    let order = "round, decided_at, reviewer";
    of_each(conn, select, "application_id", apps, order, decision_from).await
}

pub async fn insert_decision(
    conn: &mut AnyConnection,
    app: &str,
    d: &DecisionRow,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO decisions (application_id, round, reviewer, choice, comment, decided_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(app)
    .bind(d.round)
    .bind(&d.reviewer)
    .bind(d.choice.as_str())
    .bind(&d.comment)
    .bind(&d.decided_at)
    .execute(conn)
    .await?;
    Ok(())
}

#[derive(Clone, Debug)]
pub struct AttachmentRow {
    pub id: String,
    pub application_id: String,
    pub kind: String,
    pub author: String,
    pub body: String,
    pub file_name: Option<String>,
    pub file_sha256: Option<String>,
    pub file_size: Option<i64>,
    pub created_at: String,
}

fn attachment_from(r: &AnyRow) -> Result<AttachmentRow, sqlx::Error> {
    Ok(AttachmentRow {
        id: r.try_get("id")?,
        application_id: r.try_get("application_id")?,
        kind: r.try_get("kind")?,
        author: r.try_get("author")?,
        body: r.try_get("body")?,
        file_name: r.try_get("file_name")?,
        file_sha256: r.try_get("file_sha256")?,
        file_size: r.try_get("file_size")?,
        created_at: r.try_get("created_at")?,
    })
}

const ATTACHMENT_COLUMNS: &str =
    "id, application_id, kind, author, body, file_name, file_sha256, file_size, created_at";

pub async fn attachments(
    conn: &mut AnyConnection,
    app: &str,
) -> Result<Vec<AttachmentRow>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {ATTACHMENT_COLUMNS} FROM attachments WHERE application_id = $1 ORDER BY created_at, id"
    ))
    .bind(app)
    .fetch_all(conn)
    .await?
    .iter()
    .map(attachment_from)
    .collect()
}

pub async fn attachment(
    conn: &mut AnyConnection,
    app: &str,
    id: &str,
) -> Result<Option<AttachmentRow>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {ATTACHMENT_COLUMNS} FROM attachments WHERE application_id = $1 AND id = $2"
    ))
    .bind(app)
    .bind(id)
    .fetch_optional(conn)
    .await?
    .as_ref()
    .map(attachment_from)
    .transpose()
}

pub async fn insert_attachment(
    conn: &mut AnyConnection,
    a: &AttachmentRow,
) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "INSERT INTO attachments ({ATTACHMENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
    ))
    .bind(&a.id)
    .bind(&a.application_id)
    .bind(&a.kind)
    .bind(&a.author)
    .bind(&a.body)
    .bind(&a.file_name)
    .bind(&a.file_sha256)
    .bind(a.file_size)
    .bind(&a.created_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Records a blob (idempotent: identical content is one blob).
pub async fn record_blob(
    conn: &mut AnyConnection,
    sha256: &str,
    size: u64,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO blobs (sha256, size, created_at) VALUES ($1, $2, $3) ON CONFLICT (sha256) DO NOTHING")
        .bind(sha256)
        .bind(size as i64)
        .bind(crate::time::now())
        .execute(conn)
        .await?;
    Ok(())
}

/// Rows one multi-row `INSERT` takes at most (far within both backends' limits on bound
/// values).
pub(crate) const ROWS_AT_ONCE: usize = 100;

/// `($1, $2, …), (…)`: the `VALUES` of `rows` rows of `columns` each.
pub(crate) fn values_list(rows: usize, columns: usize) -> String {
    let mut sql = String::new();
    for r in 0..rows {
        sql.push_str(if r == 0 { "(" } else { ", (" });
        for c in 0..columns {
            if c > 0 {
                sql.push_str(", ");
            }
            sql.push('$');
            sql.push_str(&(r * columns + c + 1).to_string());
        }
        sql.push(')');
    }
    sql
}

pub async fn blob_known(conn: &mut AnyConnection, sha256: &str) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query("SELECT 1 AS one FROM blobs WHERE sha256 = $1")
        .bind(sha256)
        .fetch_optional(conn)
        .await?
        .is_some())
}

/// A new random identifier such as `app-7k2m9x4q1c3v`: 60 bits in Crockford base32.
pub fn new_id(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"0123456789abcdefghjkmnpqrstvwxyz";
    let mut r = [0u8; 8];
    getrandom::fill(&mut r).expect("the OS has randomness");
    let mut n = u64::from_le_bytes(r);
    let mut s = String::with_capacity(prefix.len() + 13);
    s.push_str(prefix);
    s.push('-');
    for _ in 0..12 {
        s.push(ALPHABET[(n & 31) as usize] as char);
        n >>= 5;
    }
    s
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckRow {
    pub check: String,
    pub outcome: String,
    pub reasons: Vec<String>,
}

pub async fn insert_checks(
    conn: &mut AnyConnection,
    app: &str,
    checks: &[policy::archive::checks::CheckResult],
) -> Result<(), sqlx::Error> {
    for c in checks {
        sqlx::query(
            "INSERT INTO application_checks (application_id, check_name, outcome, reasons) VALUES ($1, $2, $3, $4)",
        )
        .bind(app)
        .bind(c.check)
        .bind(c.outcome.as_str())
        .bind(serde_json::to_string(&c.reasons).unwrap_or_else(|_| "[]".into()))
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

pub async fn checks(conn: &mut AnyConnection, app: &str) -> Result<Vec<CheckRow>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT check_name, outcome, reasons FROM application_checks WHERE application_id = $1",
    )
    .bind(app)
    .fetch_all(conn)
    .await?;
    let mut out: Vec<CheckRow> = rows
        .iter()
        .map(|r| {
            let reasons: String = r.try_get("reasons")?;
            Ok(CheckRow {
                check: r.try_get("check_name")?,
                outcome: r.try_get("outcome")?,
                reasons: serde_json::from_str(&reasons).unwrap_or_default(),
            })
        })
        .collect::<Result<_, sqlx::Error>>()?;
    // In the order the checks are defined, so reviewers always see them the same way.
    let order = |c: &str| {
        policy::archive::checks::CHECKS
            .iter()
            .position(|x| *x == c)
            .unwrap_or(usize::MAX)
    };
    out.sort_by_key(|c| order(&c.check));
    Ok(out)
}

/// Every blob the database knows.
pub async fn known_blobs(
    conn: &mut AnyConnection,
) -> Result<std::collections::HashSet<String>, sqlx::Error> {
    let rows = sqlx::query("SELECT sha256 FROM blobs")
        .fetch_all(conn)
        .await?;
    rows.iter()
        .map(|r| r.try_get::<String, _>("sha256"))
        .collect()
}

#[cfg(test)]
mod values_tests {
    /// The placeholders run on from row to row, as both backends number them.
    #[test]
    fn values_list_numbers_every_column_of_every_row() {
        assert_eq!(super::values_list(1, 3), "($1, $2, $3)");
        assert_eq!(super::values_list(2, 2), "($1, $2), ($3, $4)");
        let many = super::values_list(super::ROWS_AT_ONCE, 9);
        assert!(many.ends_with(&format!("${})", super::ROWS_AT_ONCE * 9)));
        assert_eq!(many.matches('$').count(), super::ROWS_AT_ONCE * 9);
    }
}

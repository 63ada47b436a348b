//! SQL for images, sandboxes, staged ingress and runs.

use std::collections::HashMap;

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::list::{ListSql, Order, of_each};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRow {
    pub name: String,
    pub image_id: String,
    pub size: i64,
    pub allowed_by: String,
    pub allowed_at: String,
    /// Commands the operator allowed for the image (bare names).
    pub commands: Vec<String>,
    /// Interpreters the operator allowed for the image (bare names).
    pub interpreters: Vec<String>,
}

fn names_from(r: &AnyRow, column: &str) -> Result<Vec<String>, sqlx::Error> {
    let text: String = r.try_get(column)?;
    serde_json::from_str(&text).map_err(|e| sqlx::Error::ColumnDecode {
        index: column.to_owned(),
        source: Box::new(e),
    })
}

fn names_to(names: &[String]) -> String {
    serde_json::to_string(names).expect("a list of strings serializes")
}

const IMAGE_COLUMNS: &str = "name, image_id, size, allowed_by, allowed_at, commands, interpreters";

fn image_from(r: &AnyRow) -> Result<ImageRow, sqlx::Error> {
    Ok(ImageRow {
        name: r.try_get("name")?,
        image_id: r.try_get("image_id")?,
        size: r.try_get("size")?,
        allowed_by: r.try_get("allowed_by")?,
        allowed_at: r.try_get("allowed_at")?,
        commands: names_from(r, "commands")?,
        interpreters: names_from(r, "interpreters")?,
    })
}

/// Allows (or re-pins) an image by name; allowing it again replaces its lists.
pub async fn upsert_image(conn: &mut AnyConnection, i: &ImageRow) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO images (name, image_id, size, allowed_by, allowed_at, commands, interpreters) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (name) DO UPDATE SET image_id = excluded.image_id, size = excluded.size, \
         allowed_by = excluded.allowed_by, allowed_at = excluded.allowed_at, \
         commands = excluded.commands, interpreters = excluded.interpreters",
    )
    .bind(&i.name)
    .bind(&i.image_id)
    .bind(i.size)
    .bind(&i.allowed_by)
    .bind(&i.allowed_at)
    .bind(names_to(&i.commands))
    .bind(names_to(&i.interpreters))
    .execute(conn)
    .await?;
    Ok(())
}

/// Images in the order of their names, after `after`, at most `limit`.
pub async fn images(
    conn: &mut AnyConnection,
    after: Option<&String>,
    limit: i64,
) -> Result<Vec<ImageRow>, sqlx::Error> {
    let mut q = ListSql::new(IMAGE_COLUMNS, "images", "1 = 1");
    q.after_key("name", after, Order::Oldest);
    q.fetch(conn, (&["name"], Order::Oldest), limit, image_from)
        .await
}

pub async fn image(conn: &mut AnyConnection, name: &str) -> Result<Option<ImageRow>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {IMAGE_COLUMNS} FROM images WHERE name = $1"
    ))
    .bind(name)
    .fetch_optional(conn)
    .await?
    .as_ref()
    .map(image_from)
    .transpose()
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SandboxRow {
    pub id: String,
    pub project_id: String,
    pub image_name: String,
    pub image_id: String,
    pub resource_class: String,
    pub state: String,
    pub created_by: String,
    pub created_at: String,
    pub removed_at: Option<String>,
    /// `visible` or `hidden`: whether analysts read their runs' output.
    pub logs: String,
}

const SANDBOX_COLUMNS: &str = "id, project_id, image_name, image_id, resource_class, state, created_by, created_at, removed_at, logs";

fn sandbox_from(r: &AnyRow) -> Result<SandboxRow, sqlx::Error> {
    Ok(SandboxRow {
        id: r.try_get("id")?,
        project_id: r.try_get("project_id")?,
        image_name: r.try_get("image_name")?,
        image_id: r.try_get("image_id")?,
        resource_class: r.try_get("resource_class")?,
        state: r.try_get("state")?,
        created_by: r.try_get("created_by")?,
        created_at: r.try_get("created_at")?,
        removed_at: r.try_get("removed_at")?,
        logs: r.try_get("logs")?,
    })
}

pub async fn insert_sandbox(conn: &mut AnyConnection, s: &SandboxRow) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "INSERT INTO sandboxes ({SANDBOX_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
    ))
    .bind(&s.id)
    .bind(&s.project_id)
    .bind(&s.image_name)
    .bind(&s.image_id)
    .bind(&s.resource_class)
    .bind(&s.state)
    .bind(&s.created_by)
    .bind(&s.created_at)
    .bind(&s.removed_at)
    .bind(&s.logs)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn sandbox(
    conn: &mut AnyConnection,
    id: &str,
) -> Result<Option<SandboxRow>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {SANDBOX_COLUMNS} FROM sandboxes WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await?
    .as_ref()
    .map(sandbox_from)
    .transpose()
}

/// Sandboxes not removed, oldest first, after `after` (`created_at`, `id`), at most `limit`;
/// of one project, or those of projects `member` belongs to, or all.
pub async fn sandboxes(
    conn: &mut AnyConnection,
    project: Option<&str>,
    member: Option<&str>,
    after: Option<&(String, String)>,
    limit: i64,
) -> Result<Vec<SandboxRow>, sqlx::Error> {
    let mut q = ListSql::new(SANDBOX_COLUMNS, "sandboxes", "state <> 'removed'");
    q.and_some("project_id = ?", project)
        .after_created(after, Order::Oldest);
    let order = (&["created_at", "id"][..], Order::Oldest);
    match member {
        None => q.fetch(conn, order, limit, sandbox_from).await,
        Some(sub) => {
            let projects = super::list::projects_of(conn, sub).await?;
            q.fetch_each(conn, ("project_id", &projects), order, limit, sandbox_from)
                .await
        }
    }
}

pub async fn all_sandbox_ids(
    conn: &mut AnyConnection,
) -> Result<Vec<(String, String)>, sqlx::Error> {
    let rows = sqlx::query("SELECT id, state FROM sandboxes")
        .fetch_all(conn)
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("id")?, r.try_get("state")?)))
        .collect()
}

pub async fn set_sandbox_state(
    conn: &mut AnyConnection,
    id: &str,
    state: &str,
    at: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE sandboxes SET state = $1, removed_at = $2 WHERE id = $3")
        .bind(state)
        .bind(if state == "removed" { Some(at) } else { None })
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn insert_staged(
    conn: &mut AnyConnection,
    sandbox: &str,
    app: &str,
    sha: &str,
    by: &str,
    at: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO sandbox_ingress (sandbox_id, application_id, staged_sha256, staged_by, staged_at) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (sandbox_id, application_id) DO NOTHING",
    )
    .bind(sandbox)
    .bind(app)
    .bind(sha)
    .bind(by)
    .bind(at)
    .execute(conn)
    .await?;
    Ok(())
}

/// (application, staged SHA-256, staged at) for a sandbox.
pub async fn staged(
    conn: &mut AnyConnection,
    sandbox: &str,
) -> Result<Vec<(String, String, String)>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT application_id, staged_sha256, staged_at FROM sandbox_ingress WHERE sandbox_id = $1 ORDER BY staged_at",
    )
    .bind(sandbox)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get("application_id")?,
                r.try_get("staged_sha256")?,
                r.try_get("staged_at")?,
            ))
        })
        .collect()
}

/// What is staged in several sandboxes, in one query, by sandbox: as [`staged`] reads it.
pub async fn staged_of(
    conn: &mut AnyConnection,
    sandboxes: &[&str],
) -> Result<HashMap<String, Vec<(String, String, String)>>, sqlx::Error> {
    let select = "SELECT sandbox_id, application_id, staged_sha256, staged_at FROM sandbox_ingress";
    of_each(conn, select, "sandbox_id", sandboxes, "staged_at", |r| {
        Ok((
            r.try_get("application_id")?,
            r.try_get("staged_sha256")?,
            r.try_get("staged_at")?,
        ))
    })
    .await
}

/// The datasets mounted in several sandboxes, in one query, by sandbox: their ids.
pub async fn datasets_of(
    conn: &mut AnyConnection,
    sandboxes: &[&str],
) -> Result<HashMap<String, Vec<String>>, sqlx::Error> {
    let select = "SELECT sandbox_id, dataset_id FROM sandbox_datasets";
    of_each(conn, select, "sandbox_id", sandboxes, "dataset_id", |r| {
        r.try_get("dataset_id")
    })
    .await
}

pub async fn insert_dataset(
    conn: &mut AnyConnection,
    sandbox: &str,
    id: &str,
    path: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO sandbox_datasets (sandbox_id, dataset_id, host_path) VALUES ($1, $2, $3)",
    )
    .bind(sandbox)
    .bind(id)
    .bind(path)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn datasets(
    conn: &mut AnyConnection,
    sandbox: &str,
) -> Result<Vec<(String, String)>, sqlx::Error> {
    let rows = sqlx::query("SELECT dataset_id, host_path FROM sandbox_datasets WHERE sandbox_id = $1 ORDER BY dataset_id")
        .bind(sandbox)
        .fetch_all(conn)
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("dataset_id")?, r.try_get("host_path")?)))
        .collect()
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunRow {
    pub id: String,
    pub sandbox_id: String,
    pub project_id: String,
    pub requester: String,
    pub cmd: Vec<String>,
    pub timeout_secs: i64,
    pub state: String,
    pub outcome: Option<String>,
    pub exit_code: Option<i64>,
    pub detail: Option<String>,
    pub container_id: Option<String>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub log_bytes: Option<i64>,
    pub log_sha256: Option<String>,
    pub log_truncated: Option<i64>,
    /// Who asked for it to be cancelled, once someone did.
    pub cancelled_by: Option<String>,
}

const RUN_COLUMNS: &str = "id, sandbox_id, project_id, requester, cmd, timeout_secs, state, outcome, exit_code, detail, \
     container_id, created_at, started_at, finished_at, log_bytes, log_sha256, log_truncated, cancelled_by";

fn run_from(r: &AnyRow) -> Result<RunRow, sqlx::Error> {
    let cmd: String = r.try_get("cmd")?;
    Ok(RunRow {
        id: r.try_get("id")?,
        sandbox_id: r.try_get("sandbox_id")?,
        project_id: r.try_get("project_id")?,
        requester: r.try_get("requester")?,
        cmd: serde_json::from_str(&cmd).unwrap_or_default(),
        timeout_secs: r.try_get("timeout_secs")?,
        state: r.try_get("state")?,
        outcome: r.try_get("outcome")?,
        exit_code: r.try_get("exit_code")?,
        detail: r.try_get("detail")?,
        container_id: r.try_get("container_id")?,
        created_at: r.try_get("created_at")?,
        started_at: r.try_get("started_at")?,
        finished_at: r.try_get("finished_at")?,
        log_bytes: r.try_get("log_bytes")?,
        log_sha256: r.try_get("log_sha256")?,
        log_truncated: r.try_get("log_truncated")?,
        cancelled_by: r.try_get("cancelled_by")?,
    })
}

pub async fn insert_run(conn: &mut AnyConnection, r: &RunRow) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO runs (id, sandbox_id, project_id, requester, cmd, timeout_secs, state, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&r.id)
    .bind(&r.sandbox_id)
    .bind(&r.project_id)
    .bind(&r.requester)
    .bind(serde_json::to_string(&r.cmd).unwrap_or_else(|_| "[]".into()))
    .bind(r.timeout_secs)
    .bind(&r.state)
    .bind(&r.created_at)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn run(conn: &mut AnyConnection, id: &str) -> Result<Option<RunRow>, sqlx::Error> {
    sqlx::query(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await?
        .as_ref()
        .map(run_from)
        .transpose()
}

/// Runs of a sandbox, oldest first, after `after` (`created_at`, `id`), at most `limit`.
pub async fn runs_page(
    conn: &mut AnyConnection,
    sandbox: &str,
    after: Option<&(String, String)>,
    limit: i64,
) -> Result<Vec<RunRow>, sqlx::Error> {
    let mut q = ListSql::new(RUN_COLUMNS, "runs", "1 = 1");
    q.and("sandbox_id = ?", sandbox)
        .after_created(after, Order::Oldest);
    q.fetch(
        conn,
        (&["created_at", "id"], Order::Oldest),
        limit,
        run_from,
    )
    .await
}

pub async fn runs_of(conn: &mut AnyConnection, sandbox: &str) -> Result<Vec<RunRow>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {RUN_COLUMNS} FROM runs WHERE sandbox_id = $1 ORDER BY created_at, id"
    ))
    .bind(sandbox)
    .fetch_all(conn)
    .await?
    .iter()
    .map(run_from)
    .collect()
}

/// Runs of a project waiting for a slot (not yet started, nor asked to be cancelled).
pub async fn queued_runs_of_project(
    conn: &mut AnyConnection,
    project: &str,
) -> Result<i64, sqlx::Error> {
    let row = sqlx::query(
        "SELECT COUNT(*) AS n FROM runs WHERE state = 'queued' AND project_id = $1 AND cancelled_by IS NULL",
    )
    .bind(project)
    .fetch_one(conn)
    .await?;
    row.try_get("n")
}

pub async fn unfinished_runs(conn: &mut AnyConnection) -> Result<Vec<RunRow>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {RUN_COLUMNS} FROM runs WHERE state <> 'finished' ORDER BY created_at, id"
    ))
    .fetch_all(conn)
    .await?
    .iter()
    .map(run_from)
    .collect()
}

/// Records that `owner` started the run: false when it is no longer queued or no longer
/// theirs (taken over), which is then left as it is.
pub async fn mark_started(
    conn: &mut AnyConnection,
    id: &str,
    owner: &str,
    container: &str,
    at: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE runs SET state = 'running', container_id = $1, started_at = $2 \
         WHERE id = $3 AND state = 'queued' AND owner = $4",
    )
    .bind(container)
    .bind(at)
    .bind(id)
    .bind(owner)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Records that `by` asked for the run to be cancelled: true when it had not finished and
/// nobody had asked before.
pub async fn request_cancel(
    conn: &mut AnyConnection,
    id: &str,
    by: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE runs SET cancelled_by = $1 WHERE id = $2 AND state <> 'finished' AND cancelled_by IS NULL",
    )
    .bind(by)
    .bind(id)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Who asked for the run to be cancelled, if anyone has.
pub async fn cancelled_by(
    conn: &mut AnyConnection,
    id: &str,
) -> Result<Option<String>, sqlx::Error> {
    let row = sqlx::query("SELECT cancelled_by FROM runs WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await?;
    Ok(match row {
        Some(r) => r.try_get("cancelled_by")?,
        None => None,
    })
}

/// What a finished run is recorded with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finish {
    pub outcome: String,
    pub exit_code: i64,
    pub detail: Option<String>,
    pub log_bytes: i64,
    pub log_sha256: String,
    pub log_truncated: bool,
    pub at: String,
}

/// Records the end of a run `owner` supervises, once: a run already finished, or no longer
/// theirs (taken over), is left as it is.
pub async fn mark_finished(
    conn: &mut AnyConnection,
    id: &str,
    owner: &str,
    f: &Finish,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE runs SET state = 'finished', outcome = $1, exit_code = $2, detail = $3, log_bytes = $4, \
         log_sha256 = $5, log_truncated = $6, finished_at = $7 WHERE id = $8 AND state <> 'finished' \
         AND owner = $9",
    )
    .bind(&f.outcome)
    .bind(f.exit_code)
    .bind(&f.detail)
    .bind(f.log_bytes)
    .bind(&f.log_sha256)
    .bind(i64::from(f.log_truncated))
    .bind(&f.at)
    .bind(id)
    .bind(owner)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The runs of `project` not finished whose sandbox mounts `dataset`.
pub async fn live_runs_mounting(
    conn: &mut AnyConnection,
    project: &str,
    dataset: &str,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query(
        "SELECT r.id FROM runs r JOIN sandbox_datasets d ON d.sandbox_id = r.sandbox_id \
         WHERE r.project_id = $1 AND d.dataset_id = $2 AND r.state <> 'finished' ORDER BY r.id",
    )
    .bind(project)
    .bind(dataset)
    .fetch_all(conn)
    .await?
    .iter()
    .map(|r| r.try_get("id"))
    .collect()
}

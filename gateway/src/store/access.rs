//! SQL for access to datasets (`access_grants`, migration 0012).

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

/// One (project, dataset) an approved access application grants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantRow {
    pub application_id: String,
    pub project_id: String,
    pub dataset_id: String,
    /// The last day in force, `YYYY-MM-DD` (UTC); none: no end.
    pub until: Option<String>,
    pub commercial: bool,
    pub granted_at: String,
    pub revoked_at: Option<String>,
}

const COLUMNS: &str =
    "application_id, project_id, dataset_id, until_date, commercial, granted_at, revoked_at";

fn grant_from(r: &AnyRow) -> Result<GrantRow, sqlx::Error> {
    Ok(GrantRow {
        application_id: r.try_get("application_id")?,
        project_id: r.try_get("project_id")?,
        dataset_id: r.try_get("dataset_id")?,
        until: r.try_get("until_date")?,
        commercial: r.try_get::<i64, _>("commercial")? != 0,
        granted_at: r.try_get("granted_at")?,
        revoked_at: r.try_get("revoked_at")?,
    })
}

pub async fn insert_grant(conn: &mut AnyConnection, g: &GrantRow) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "INSERT INTO access_grants ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
    ))
    .bind(&g.application_id)
    .bind(&g.project_id)
    .bind(&g.dataset_id)
    .bind(&g.until)
    .bind(i64::from(g.commercial))
    .bind(&g.granted_at)
    .bind(&g.revoked_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Every grant of `dataset` to `project`, revoked or not, in force or not.
pub async fn grants(
    conn: &mut AnyConnection,
    project: &str,
    dataset: &str,
) -> Result<Vec<GrantRow>, sqlx::Error> {
    // Off `access_grants_by_project`.
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM access_grants WHERE project_id = $1 AND dataset_id = $2"
    ))
    .bind(project)
    .bind(dataset)
    .fetch_all(conn)
    .await?
    .iter()
    .map(grant_from)
    .collect()
}

/// Revokes, at `now`, an application's grants not yet revoked; the datasets they were for.
pub async fn revoke(
    conn: &mut AnyConnection,
    application: &str,
    now: &str,
) -> Result<Vec<String>, sqlx::Error> {
    let datasets: Vec<String> = sqlx::query(
        "SELECT dataset_id FROM access_grants \
         WHERE application_id = $1 AND revoked_at IS NULL ORDER BY dataset_id",
    )
    .bind(application)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|r| r.try_get("dataset_id"))
    .collect::<Result<_, _>>()?;
    sqlx::query(
        "UPDATE access_grants SET revoked_at = $1 WHERE application_id = $2 AND revoked_at IS NULL",
    )
    .bind(now)
    .bind(application)
    .execute(conn)
    .await?;
    Ok(datasets)
}

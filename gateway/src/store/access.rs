//! SQL for access to datasets (`access_grants`, migration 0012) and the conditions approving
//! reviewers set on it (`access_conditions`, migration 0014).

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
    /// Runs of sandboxes mounting the dataset hide their output from the analysts.
    pub logs_hidden: bool,
    pub granted_at: String,
    pub revoked_at: Option<String>,
}

const COLUMNS: &str = "application_id, project_id, dataset_id, until_date, commercial, \
                       logs_hidden, granted_at, revoked_at";

fn grant_from(r: &AnyRow) -> Result<GrantRow, sqlx::Error> {
    Ok(GrantRow {
        application_id: r.try_get("application_id")?,
        project_id: r.try_get("project_id")?,
        dataset_id: r.try_get("dataset_id")?,
        until: r.try_get("until_date")?,
        commercial: r.try_get::<i64, _>("commercial")? != 0,
        logs_hidden: r.try_get::<i64, _>("logs_hidden")? != 0,
        granted_at: r.try_get("granted_at")?,
        revoked_at: r.try_get("revoked_at")?,
    })
}

pub async fn insert_grant(conn: &mut AnyConnection, g: &GrantRow) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "INSERT INTO access_grants ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
    ))
    .bind(&g.application_id)
    .bind(&g.project_id)
    .bind(&g.dataset_id)
    .bind(&g.until)
    .bind(i64::from(g.commercial))
    .bind(i64::from(g.logs_hidden))
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

/// Every grant an application made, by dataset.
pub async fn grants_of(
    conn: &mut AnyConnection,
    application: &str,
) -> Result<Vec<GrantRow>, sqlx::Error> {
    // Off the primary key.
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM access_grants WHERE application_id = $1 ORDER BY dataset_id"
    ))
    .bind(application)
    .fetch_all(conn)
    .await?
    .iter()
    .map(grant_from)
    .collect()
}

/// Every grant of a dataset, to any project, oldest first.
pub async fn grants_of_dataset(
    conn: &mut AnyConnection,
    dataset: &str,
) -> Result<Vec<GrantRow>, sqlx::Error> {
    // Off `access_grants_of_dataset` (migration 0014).
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM access_grants WHERE dataset_id = $1 \
         ORDER BY granted_at, application_id"
    ))
    .bind(dataset)
    .fetch_all(conn)
    .await?
    .iter()
    .map(grant_from)
    .collect()
}

/// The conditions one approving reviewer set on an access application in one round.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConditionRow {
    pub application_id: String,
    pub round: i64,
    pub reviewer: String,
    /// The last day of access this reviewer allows; none: as asked.
    pub until: Option<String>,
    pub no_commercial: bool,
    pub logs_hidden: bool,
}

fn condition_from(r: &AnyRow) -> Result<ConditionRow, sqlx::Error> {
    Ok(ConditionRow {
        application_id: r.try_get("application_id")?,
        round: r.try_get("round")?,
        reviewer: r.try_get("reviewer")?,
        until: r.try_get("until_date")?,
        no_commercial: r.try_get::<i64, _>("no_commercial")? != 0,
        logs_hidden: r.try_get::<i64, _>("logs_hidden")? != 0,
    })
}

pub async fn insert_conditions(
    conn: &mut AnyConnection,
    c: &ConditionRow,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO access_conditions \
         (application_id, round, reviewer, until_date, no_commercial, logs_hidden) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&c.application_id)
    .bind(c.round)
    .bind(&c.reviewer)
    .bind(&c.until)
    .bind(i64::from(c.no_commercial))
    .bind(i64::from(c.logs_hidden))
    .execute(conn)
    .await?;
    Ok(())
}

/// The conditions set on an application, every round, oldest round first.
pub async fn conditions(
    conn: &mut AnyConnection,
    application: &str,
) -> Result<Vec<ConditionRow>, sqlx::Error> {
    // Off the primary key.
    sqlx::query(
        "SELECT application_id, round, reviewer, until_date, no_commercial, logs_hidden \
         FROM access_conditions WHERE application_id = $1 ORDER BY round, reviewer",
    )
    .bind(application)
    .fetch_all(conn)
    .await?
    .iter()
    .map(condition_from)
    .collect()
}

//! SQL for the web pages' sessions (`web_sessions`, migration 0015) and the sign-ins through the
//! identity provider that were used (`web_sign_ins`, migration 0016).

use sqlx::{AnyConnection, Row};

/// A signed-in browser's session as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRow {
    /// SHA-256 (hex) of the cookie's id.
    pub id_sha256: String,
    pub subject: String,
    /// The token's roles, separated by spaces.
    pub roles: String,
    pub institution: Option<String>,
    /// The session's CSRF secret (hex).
    pub csrf: String,
    pub created_at: String,
    /// Unix seconds.
    pub expires_at: i64,
}

pub async fn insert_session(conn: &mut AnyConnection, s: &SessionRow) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO web_sessions (id_sha256, subject, roles, institution, csrf, created_at, \
         expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&s.id_sha256)
    .bind(&s.subject)
    .bind(&s.roles)
    .bind(&s.institution)
    .bind(&s.csrf)
    .bind(&s.created_at)
    .bind(s.expires_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// The session of this id's hash, unless it has expired by `now` (Unix seconds).
pub async fn session(
    conn: &mut AnyConnection,
    id_sha256: &str,
    now: i64,
) -> Result<Option<SessionRow>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT id_sha256, subject, roles, institution, csrf, created_at, expires_at \
         FROM web_sessions WHERE id_sha256 = $1 AND expires_at > $2",
    )
    .bind(id_sha256)
    .bind(now)
    .fetch_optional(conn)
    .await?;
    row.map(|r| {
        Ok(SessionRow {
            id_sha256: r.try_get("id_sha256")?,
            subject: r.try_get("subject")?,
            roles: r.try_get("roles")?,
            institution: r.try_get("institution")?,
            csrf: r.try_get("csrf")?,
            created_at: r.try_get("created_at")?,
            expires_at: r.try_get("expires_at")?,
        })
    })
    .transpose()
}

/// Ends a session; whether there was one.
pub async fn delete_session(
    conn: &mut AnyConnection,
    id_sha256: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("DELETE FROM web_sessions WHERE id_sha256 = $1")
        .bind(id_sha256)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Removes the sessions that expired by `now`; how many.
pub async fn delete_expired(conn: &mut AnyConnection, now: i64) -> Result<u64, sqlx::Error> {
    let done = sqlx::query("DELETE FROM web_sessions WHERE expires_at <= $1")
        .bind(now)
        .execute(conn)
        .await?;
    Ok(done.rows_affected())
}

/// Whether the sign-in of this state's hash was used already (`web_sign_ins`, migration 0016).
pub async fn sign_in_used(
    conn: &mut AnyConnection,
    state_sha256: &str,
) -> Result<bool, sqlx::Error> {
    let found: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM web_sign_ins WHERE state_sha256 = $1")
            .bind(state_sha256)
            .fetch_one(conn)
            .await?;
    Ok(found > 0)
}

/// Records the sign-in of this state's hash as used, until `expires_at` (Unix seconds);
/// `false` when it was recorded already (by another request, perhaps at the same moment).
pub async fn insert_used_sign_in(
    conn: &mut AnyConnection,
    state_sha256: &str,
    used_at: &str,
    expires_at: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO web_sign_ins (state_sha256, used_at, expires_at) VALUES ($1, $2, $3) \
         ON CONFLICT (state_sha256) DO NOTHING",
    )
    .bind(state_sha256)
    .bind(used_at)
    .bind(expires_at)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Removes the used sign-ins that expired by `now`; how many.
pub async fn delete_expired_sign_ins(
    conn: &mut AnyConnection,
    now: i64,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query("DELETE FROM web_sign_ins WHERE expires_at <= $1")
        .bind(now)
        .execute(conn)
        .await?;
    Ok(done.rows_affected())
}

/// How many used sign-ins are recorded (tests).
pub async fn count_sign_ins(conn: &mut AnyConnection) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COUNT(*) FROM web_sign_ins")
        .fetch_one(conn)
        .await
}

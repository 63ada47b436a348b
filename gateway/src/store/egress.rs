//! SQL for egress: requests and their rounds, quarantined files, holds on sandboxes, the
//! recipients people register and the releases built for them.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

/// One quarantined file of one round.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileRow {
    pub application_id: String,
    pub round: i64,
    pub path: String,
    pub size: i64,
    pub sha256: String,
    pub content_type: String,
    pub outcome: String,
    /// JSON array of findings.
    pub findings: String,
    pub exception: Option<String>,
    /// Where its bytes are in its round's payload ([`Payload`]); None for a file quarantined
    /// as a blob of its own (before payloads).
    pub location: Option<Location>,
}

/// Where a file is in its round's payload: the offset (in the payload's plaintext, the zstd
/// stream) of the frame its tar entry begins in, and the bytes of tar before its data from
/// there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    pub frame_offset: i64,
    pub data_skip: i64,
}

/// A round's payload: the file its files were quarantined into, already the body of its
/// release (see `egress::payload`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payload {
    /// Its name in the quarantine folder.
    pub name: String,
    /// Its keys, sealed under the gateway's quarantine key.
    pub sealed_keys: String,
    /// The whole chunks the file holds.
    pub full_chunks: i64,
    /// The chunk after them, sealed and not final (base64).
    pub seed: String,
    /// The release's header and digest prepared at the request, if any.
    pub prepared: Option<Prepared>,
}

/// A payload's release prepared for the recipient the requester had at the request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prepared {
    pub recipient: String,
    /// The age header for it, sealed under the quarantine key.
    pub sealed_header: String,
    /// The package's SHA-256 begun over the header, nonce and whole chunks (base64 state).
    pub package_hash: String,
}

/// One round of an egress application: what was asked for and the request-wide checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoundRow {
    pub application_id: String,
    pub round: i64,
    pub paths: Vec<String>,
    pub total_bytes: i64,
    pub outcome: String,
    /// JSON array of request-wide findings.
    pub findings: String,
    pub rules_version: String,
    pub requested_at: String,
}

/// A release: pending until its builder has made the package.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReleaseRow {
    pub application_id: String,
    pub round: i64,
    pub requester: String,
    pub recipient: String,
    pub state: String,
    pub approved_at: String,
    pub claimed_by: Option<String>,
    pub claimed_until: Option<String>,
    pub attempts: i64,
    pub package_sha256: Option<String>,
    pub package_size: Option<i64>,
    pub detail: Option<String>,
    pub built_at: Option<String>,
    pub expires_at: Option<String>,
    pub downloads: i64,
    pub revoked_by: Option<String>,
    pub revoked_at: Option<String>,
}

pub async fn insert_request(
    conn: &mut AnyConnection,
    app: &str,
    sandbox: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO egress_requests (application_id, sandbox_id) VALUES ($1, $2)")
        .bind(app)
        .bind(sandbox)
        .execute(conn)
        .await?;
    Ok(())
}

/// The sandbox an egress application's files come from.
pub async fn sandbox_of(
    conn: &mut AnyConnection,
    app: &str,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query("SELECT sandbox_id FROM egress_requests WHERE application_id = $1")
        .bind(app)
        .fetch_optional(conn)
        .await?
        .map(|r| r.try_get("sandbox_id"))
        .transpose()
}

pub async fn insert_round(conn: &mut AnyConnection, r: &RoundRow) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO egress_rounds (application_id, round, paths, total_bytes, outcome, findings, \
         rules_version, requested_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&r.application_id)
    .bind(r.round)
    .bind(serde_json::to_string(&r.paths).expect("strings serialize"))
    .bind(r.total_bytes)
    .bind(&r.outcome)
    .bind(&r.findings)
    .bind(&r.rules_version)
    .bind(&r.requested_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Records the payload of a round just inserted.
pub async fn set_payload(
    conn: &mut AnyConnection,
    app: &str,
    round: i64,
    p: &Payload,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE egress_rounds SET payload = $1, sealed_keys = $2, full_chunks = $3, seed = $4, \
         header_recipient = $5, sealed_header = $6, package_hash = $7 \
         WHERE application_id = $8 AND round = $9",
    )
    .bind(&p.name)
    .bind(&p.sealed_keys)
    .bind(p.full_chunks)
    .bind(&p.seed)
    .bind(p.prepared.as_ref().map(|x| x.recipient.clone()))
    .bind(p.prepared.as_ref().map(|x| x.sealed_header.clone()))
    .bind(p.prepared.as_ref().map(|x| x.package_hash.clone()))
    .bind(app)
    .bind(round)
    .execute(conn)
    .await?;
    Ok(())
}

/// The payload of a round; None for a round quarantined as blobs, or no such round.
pub async fn payload(
    conn: &mut AnyConnection,
    app: &str,
    round: i64,
) -> Result<Option<Payload>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT payload, sealed_keys, full_chunks, seed, header_recipient, sealed_header, \
         package_hash FROM egress_rounds \
         WHERE application_id = $1 AND round = $2 AND payload IS NOT NULL",
    )
    .bind(app)
    .bind(round)
    .fetch_optional(conn)
    .await?;
    row.map(|r| {
        Ok(Payload {
            name: r.try_get("payload")?,
            sealed_keys: r.try_get("sealed_keys")?,
            full_chunks: r.try_get("full_chunks")?,
            seed: r.try_get("seed")?,
            prepared: match (
                r.try_get::<Option<String>, _>("header_recipient")?,
                r.try_get::<Option<String>, _>("sealed_header")?,
                r.try_get::<Option<String>, _>("package_hash")?,
            ) {
                (Some(recipient), Some(sealed_header), Some(package_hash)) => Some(Prepared {
                    recipient,
                    sealed_header,
                    package_hash,
                }),
                _ => None,
            },
        })
    })
    .transpose()
}

/// The names of every round's payload, to tell the quarantine folder's leftovers.
pub async fn payload_names(conn: &mut AnyConnection) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT payload FROM egress_rounds WHERE payload IS NOT NULL")
        .fetch_all(conn)
        .await
}

fn round_from(r: &AnyRow) -> Result<RoundRow, sqlx::Error> {
    let paths: String = r.try_get("paths")?;
    Ok(RoundRow {
        application_id: r.try_get("application_id")?,
        round: r.try_get("round")?,
        paths: serde_json::from_str(&paths).map_err(|e| sqlx::Error::ColumnDecode {
            index: "paths".into(),
            source: Box::new(e),
        })?,
        total_bytes: r.try_get("total_bytes")?,
        outcome: r.try_get("outcome")?,
        findings: r.try_get("findings")?,
        rules_version: r.try_get("rules_version")?,
        requested_at: r.try_get("requested_at")?,
    })
}

/// Every round of an application, oldest first.
pub async fn rounds(conn: &mut AnyConnection, app: &str) -> Result<Vec<RoundRow>, sqlx::Error> {
    sqlx::query(
        "SELECT application_id, round, paths, total_bytes, outcome, findings, rules_version, \
         requested_at FROM egress_rounds WHERE application_id = $1 ORDER BY round",
    )
    .bind(app)
    .fetch_all(conn)
    .await?
    .iter()
    .map(round_from)
    .collect()
}

pub async fn insert_files(conn: &mut AnyConnection, files: &[FileRow]) -> Result<(), sqlx::Error> {
    for part in files.chunks(super::ROWS_AT_ONCE) {
        let sql = format!(
            "INSERT INTO egress_files ({FILE_COLUMNS}) VALUES {}",
            super::values_list(part.len(), 11)
        );
        let mut q = sqlx::query(&sql);
        for f in part {
            q = q
                .bind(&f.application_id)
                .bind(f.round)
                .bind(&f.path)
                .bind(f.size)
                .bind(&f.sha256)
                .bind(&f.content_type)
                .bind(&f.outcome)
                .bind(&f.findings)
                .bind(&f.exception)
                .bind(f.location.map(|l| l.frame_offset))
                .bind(f.location.map(|l| l.data_skip));
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

const FILE_COLUMNS: &str = "application_id, round, path, size, sha256, content_type, outcome, \
     findings, exception, frame_offset, data_skip";

fn file_from(r: &AnyRow) -> Result<FileRow, sqlx::Error> {
    Ok(FileRow {
        application_id: r.try_get("application_id")?,
        round: r.try_get("round")?,
        path: r.try_get("path")?,
        size: r.try_get("size")?,
        sha256: r.try_get("sha256")?,
        content_type: r.try_get("content_type")?,
        outcome: r.try_get("outcome")?,
        findings: r.try_get("findings")?,
        exception: r.try_get("exception")?,
        location: match (
            r.try_get::<Option<i64>, _>("frame_offset")?,
            r.try_get::<Option<i64>, _>("data_skip")?,
        ) {
            (Some(frame_offset), Some(data_skip)) => Some(Location {
                frame_offset,
                data_skip,
            }),
            _ => None,
        },
    })
}

/// The files of one application, every round (`round` None) or one, by round then path.
pub async fn files(
    conn: &mut AnyConnection,
    app: &str,
    round: Option<i64>,
) -> Result<Vec<FileRow>, sqlx::Error> {
    let rows = match round {
        Some(n) => {
            sqlx::query(&format!(
                "SELECT {FILE_COLUMNS} FROM egress_files WHERE application_id = $1 AND round = $2 \
                 ORDER BY round, path"
            ))
            .bind(app)
            .bind(n)
            .fetch_all(conn)
            .await?
        }
        None => sqlx::query(&format!(
            "SELECT {FILE_COLUMNS} FROM egress_files WHERE application_id = $1 ORDER BY round, path"
        ))
        .bind(app)
        .fetch_all(conn)
        .await?,
    };
    rows.iter().map(file_from).collect()
}

/// A project's earlier egress applications that ended (released or rejected) before `before`,
/// with the files of their last round: what reviewers difference a request against.
pub async fn history(
    conn: &mut AnyConnection,
    project: &str,
    except: &str,
) -> Result<Vec<(String, String, String, Vec<FileRow>)>, sqlx::Error> {
    let apps = sqlx::query(
        "SELECT id, state, updated_at, round FROM applications WHERE project_id = $1 AND kind = 'egress' \
         AND state IN ('released', 'rejected') AND id <> $2 ORDER BY updated_at DESC, id LIMIT 50",
    )
    .bind(project)
    .bind(except)
    .fetch_all(&mut *conn)
    .await?;
    let mut out = Vec::with_capacity(apps.len());
    for a in &apps {
        let id: String = a.try_get("id")?;
        let round: i64 = a.try_get("round")?;
        let files = files(conn, &id, Some(round)).await?;
        out.push((id, a.try_get("state")?, a.try_get("updated_at")?, files));
    }
    Ok(out)
}

// --- Holds -------------------------------------------------------------------------------------

/// The sandbox's unexpired holds: (id, purpose).
pub async fn holds(
    conn: &mut AnyConnection,
    sandbox: &str,
    now: &str,
) -> Result<Vec<(String, String)>, sqlx::Error> {
    sqlx::query(
        "SELECT id, purpose FROM sandbox_holds WHERE sandbox_id = $1 AND expires_at > $2 ORDER BY id",
    )
    .bind(sandbox)
    .bind(now)
    .fetch_all(conn)
    .await?
    .iter()
    .map(|r| Ok((r.try_get("id")?, r.try_get("purpose")?)))
    .collect()
}

pub async fn insert_hold(
    conn: &mut AnyConnection,
    id: &str,
    sandbox: &str,
    purpose: &str,
    holder: &str,
    expires_at: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO sandbox_holds (id, sandbox_id, purpose, holder, expires_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(sandbox)
    .bind(purpose)
    .bind(holder)
    .bind(expires_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Extends a hold's lease; false when it is gone.
pub async fn renew_hold(
    conn: &mut AnyConnection,
    id: &str,
    expires_at: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("UPDATE sandbox_holds SET expires_at = $1 WHERE id = $2")
        .bind(expires_at)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn release_hold(conn: &mut AnyConnection, id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM sandbox_holds WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Removes holds whose lease lapsed (their gateway died); returns how many.
pub async fn sweep_holds(conn: &mut AnyConnection, now: &str) -> Result<u64, sqlx::Error> {
    Ok(
        sqlx::query("DELETE FROM sandbox_holds WHERE expires_at <= $1")
            .bind(now)
            .execute(conn)
            .await?
            .rows_affected(),
    )
}

/// Runs of the sandbox that may be writing its output folder: running, or claimed for a start.
pub async fn active_runs(
    conn: &mut AnyConnection,
    sandbox: &str,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query(
        "SELECT id FROM runs WHERE sandbox_id = $1 AND (state = 'running' \
         OR (state = 'queued' AND started_at IS NOT NULL)) ORDER BY id",
    )
    .bind(sandbox)
    .fetch_all(conn)
    .await?
    .iter()
    .map(|r| r.try_get("id"))
    .collect()
}

// --- Recipients --------------------------------------------------------------------------------

pub async fn recipient(
    conn: &mut AnyConnection,
    subject: &str,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query("SELECT recipient FROM recipients WHERE subject = $1")
        .bind(subject)
        .fetch_optional(conn)
        .await?
        .map(|r| r.try_get("recipient"))
        .transpose()
}

/// Registers (or replaces) a person's recipient; returns the one it replaced.
pub async fn set_recipient(
    conn: &mut AnyConnection,
    subject: &str,
    recipient: &str,
    now: &str,
) -> Result<Option<String>, sqlx::Error> {
    let before = self::recipient(&mut *conn, subject).await?;
    sqlx::query(
        "INSERT INTO recipients (subject, recipient, registered_at) VALUES ($1, $2, $3) \
         ON CONFLICT (subject) DO UPDATE SET recipient = excluded.recipient, \
         registered_at = excluded.registered_at",
    )
    .bind(subject)
    .bind(recipient)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(before)
}

// --- Releases ----------------------------------------------------------------------------------

const RELEASE_COLUMNS: &str = "application_id, round, requester, recipient, state, approved_at, \
    claimed_by, claimed_until, attempts, package_sha256, package_size, detail, built_at, \
    expires_at, downloads, revoked_by, revoked_at";

fn release_from(r: &AnyRow) -> Result<ReleaseRow, sqlx::Error> {
    Ok(ReleaseRow {
        application_id: r.try_get("application_id")?,
        round: r.try_get("round")?,
        requester: r.try_get("requester")?,
        recipient: r.try_get("recipient")?,
        state: r.try_get("state")?,
        approved_at: r.try_get("approved_at")?,
        claimed_by: r.try_get("claimed_by")?,
        claimed_until: r.try_get("claimed_until")?,
        attempts: r.try_get("attempts")?,
        package_sha256: r.try_get("package_sha256")?,
        package_size: r.try_get("package_size")?,
        detail: r.try_get("detail")?,
        built_at: r.try_get("built_at")?,
        expires_at: r.try_get("expires_at")?,
        downloads: r.try_get("downloads")?,
        revoked_by: r.try_get("revoked_by")?,
        revoked_at: r.try_get("revoked_at")?,
    })
}

/// Records a pending release (in the transaction that records the quorum).
pub async fn insert_release(
    conn: &mut AnyConnection,
    app: &str,
    round: i64,
    requester: &str,
    recipient: &str,
    now: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO releases (application_id, round, requester, recipient, state, approved_at, \
         attempts, downloads) VALUES ($1, $2, $3, $4, 'pending', $5, 0, 0)",
    )
    .bind(app)
    .bind(round)
    .bind(requester)
    .bind(recipient)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn release(
    conn: &mut AnyConnection,
    app: &str,
) -> Result<Option<ReleaseRow>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {RELEASE_COLUMNS} FROM releases WHERE application_id = $1"
    ))
    .bind(app)
    .fetch_optional(conn)
    .await?
    .as_ref()
    .map(release_from)
    .transpose()
}

/// Pending releases nobody holds a live claim on, oldest first; with `mine`, those claimed by
/// that builder too (at its start: the claims of an earlier process of the same instance).
pub async fn claimable_releases(
    conn: &mut AnyConnection,
    mine: Option<&str>,
    now: &str,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query(
        "SELECT application_id FROM releases WHERE state = 'pending' \
         AND (claimed_until IS NULL OR claimed_until <= $1 OR claimed_by = $2) \
         ORDER BY approved_at, application_id",
    )
    .bind(now)
    .bind(mine)
    .fetch_all(conn)
    .await?
    .iter()
    .map(|r| r.try_get("application_id"))
    .collect()
}

/// Claims a pending release for a builder until `until`; false when another holds it.
pub async fn claim_release(
    conn: &mut AnyConnection,
    app: &str,
    by: &str,
    now: &str,
    until: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE releases SET claimed_by = $1, claimed_until = $2, attempts = attempts + 1 \
         WHERE application_id = $3 AND state = 'pending' \
         AND (claimed_until IS NULL OR claimed_until <= $4 OR claimed_by = $1)",
    )
    .bind(by)
    .bind(until)
    .bind(app)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Extends a builder's claim; false when it lost it.
pub async fn renew_release_claim(
    conn: &mut AnyConnection,
    app: &str,
    by: &str,
    until: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE releases SET claimed_until = $1 WHERE application_id = $2 AND claimed_by = $3 \
         AND state = 'pending'",
    )
    .bind(until)
    .bind(app)
    .bind(by)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Records the built package; false when the release was not pending under this claim.
pub async fn mark_built(
    conn: &mut AnyConnection,
    app: &str,
    by: &str,
    sha256: &str,
    size: u64,
    now: &str,
    expires_at: Option<&str>,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE releases SET state = 'built', package_sha256 = $1, package_size = $2, \
         built_at = $3, expires_at = $4, claimed_until = NULL \
         WHERE application_id = $5 AND state = 'pending' AND claimed_by = $6",
    )
    .bind(sha256)
    .bind(size as i64)
    .bind(now)
    .bind(expires_at)
    .bind(app)
    .bind(by)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Records that the release cannot be built (a quarantined file changed); final.
pub async fn mark_refused(
    conn: &mut AnyConnection,
    app: &str,
    by: &str,
    detail: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE releases SET state = 'refused', detail = $1, claimed_until = NULL \
         WHERE application_id = $2 AND state = 'pending' AND claimed_by = $3",
    )
    .bind(detail)
    .bind(app)
    .bind(by)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Counts one download of a built release.
pub async fn count_download(conn: &mut AnyConnection, app: &str) -> Result<i64, sqlx::Error> {
    sqlx::query("UPDATE releases SET downloads = downloads + 1 WHERE application_id = $1")
        .bind(app)
        .execute(&mut *conn)
        .await?;
    sqlx::query("SELECT downloads FROM releases WHERE application_id = $1")
        .bind(app)
        .fetch_one(conn)
        .await?
        .try_get("downloads")
}

/// Revokes a release; false when it was already revoked.
pub async fn revoke(
    conn: &mut AnyConnection,
    app: &str,
    by: &str,
    now: &str,
    reason: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE releases SET state = 'revoked', revoked_by = $1, revoked_at = $2, detail = $3 \
         WHERE application_id = $4 AND state <> 'revoked'",
    )
    .bind(by)
    .bind(now)
    .bind(reason)
    .bind(app)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// A release with the title and project of its application.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProjectReleaseRow {
    pub release: ReleaseRow,
    pub title: String,
    pub project_id: String,
}

/// The releases of the applications of `projects`, newest approval first, after `after` (the
/// `(approved_at, application_id)` of the last one of the page before); at most `limit`.
pub async fn releases_of_projects(
    conn: &mut AnyConnection,
    projects: &[String],
    after: Option<&(String, String)>,
    limit: i64,
) -> Result<Vec<ProjectReleaseRow>, sqlx::Error> {
    if projects.is_empty() {
        return Ok(Vec::new());
    }
    let mut n = 0;
    let mut next = || {
        n += 1;
        format!("${n}")
    };
    let listed: Vec<String> = projects.iter().map(|_| next()).collect();
    // The release's columns named by its table: the application has a round and a state too.
    let columns: Vec<String> = RELEASE_COLUMNS
        .split(',')
        .map(|c| format!("r.{}", c.trim()))
        .collect();
    let mut sql = format!(
        "SELECT {}, a.title AS app_title, a.project_id AS app_project \
         FROM releases r JOIN applications a ON a.id = r.application_id \
         WHERE a.project_id IN ({})",
        columns.join(", "),
        listed.join(", ")
    );
    if after.is_some() {
        let (a, b, c) = (next(), next(), next());
        sql.push_str(&format!(
            " AND r.approved_at <= {a} AND (r.approved_at < {b} OR r.application_id < {c})"
        ));
    }
    sql.push_str(&format!(
        " ORDER BY r.approved_at DESC, r.application_id DESC LIMIT {}",
        limit.max(1)
    ));
    let mut q = sqlx::query(&sql);
    for p in projects {
        q = q.bind(p);
    }
    if let Some((at, id)) = after {
        q = q.bind(at).bind(at).bind(id);
    }
    q.fetch_all(conn)
        .await?
        .iter()
        .map(|r| {
            Ok(ProjectReleaseRow {
                release: release_from(r)?,
                title: r.try_get("app_title")?,
                project_id: r.try_get("app_project")?,
            })
        })
        .collect()
}

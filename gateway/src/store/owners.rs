//! SQL for who supervises a run: its owner (a gateway's instance id) and the lease it renews,
//! the gateways sharing the database with theirs, and the claim of a run's start under the
//! concurrency limits. Every change is a compare-and-set: its `rows_affected` says whether
//! this gateway won.

use sqlx::{AnyConnection, Row};

/// Records (or renews) this gateway's own lease.
pub async fn renew_gateway(
    conn: &mut AnyConnection,
    instance: &str,
    now: &str,
    until: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO gateways (instance, started_at, lease_expires) VALUES ($1, $2, $3) \
         ON CONFLICT (instance) DO UPDATE SET lease_expires = excluded.lease_expires",
    )
    .bind(instance)
    .bind(now)
    .bind(until)
    .execute(conn)
    .await?;
    Ok(())
}

/// Whether a gateway holds an unexpired lease of its own (it lives).
pub async fn gateway_lives(
    conn: &mut AnyConnection,
    instance: &str,
    now: &str,
) -> Result<bool, sqlx::Error> {
    let row = sqlx::query(
        "SELECT COUNT(*) AS n FROM gateways WHERE instance = $1 AND lease_expires > $2",
    )
    .bind(instance)
    .bind(now)
    .fetch_one(conn)
    .await?;
    Ok(row.try_get::<i64, _>("n")? > 0)
}

/// Gives a new run its owner and first lease (in the transaction that records it).
pub async fn own_new(
    conn: &mut AnyConnection,
    run: &str,
    owner: &str,
    until: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE runs SET owner = $1, lease_expires = $2 WHERE id = $3")
        .bind(owner)
        .bind(until)
        .bind(run)
        .execute(conn)
        .await?;
    Ok(())
}

/// Extends the lease of a run `owner` supervises; false when it is no longer theirs (taken
/// over) or has finished.
pub async fn renew(
    conn: &mut AnyConnection,
    run: &str,
    owner: &str,
    until: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE runs SET lease_expires = $1 WHERE id = $2 AND owner = $3 AND state <> 'finished'",
    )
    .bind(until)
    .bind(run)
    .bind(owner)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// An unfinished run whose owner's lease has lapsed, as read: the takeover compares against
/// these.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lapsed {
    pub run: String,
    pub owner: Option<String>,
    pub lease_expires: Option<String>,
}

/// Unfinished runs whose lease has lapsed (or that never had one), oldest first; with
/// `mine_too`, also those `me` owns whatever their lease (at start: the process before this
/// one, on the same data dir, is gone).
pub async fn lapsed(
    conn: &mut AnyConnection,
    now: &str,
    me: &str,
    mine_too: bool,
) -> Result<Vec<Lapsed>, sqlx::Error> {
    sqlx::query(
        "SELECT id, owner, lease_expires FROM runs WHERE state <> 'finished' \
         AND (lease_expires IS NULL OR lease_expires <= $1 OR ($2 = 1 AND owner = $3)) \
         ORDER BY created_at, id",
    )
    .bind(now)
    .bind(i64::from(mine_too))
    .bind(me)
    .fetch_all(conn)
    .await?
    .iter()
    .map(|r| {
        Ok(Lapsed {
            run: r.try_get("id")?,
            owner: r.try_get("owner")?,
            lease_expires: r.try_get("lease_expires")?,
        })
    })
    .collect()
}

/// Takes a run over from the owner and lease read in `l`: exactly one gateway wins, since the
/// first to write changes both.
pub async fn take_over(
    conn: &mut AnyConnection,
    l: &Lapsed,
    me: &str,
    until: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE runs SET owner = $1, lease_expires = $2 WHERE id = $3 AND state <> 'finished' \
         AND COALESCE(owner, '') = $4 AND COALESCE(lease_expires, '') = $5",
    )
    .bind(me)
    .bind(until)
    .bind(&l.run)
    .bind(l.owner.as_deref().unwrap_or(""))
    .bind(l.lease_expires.as_deref().unwrap_or(""))
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Runs holding a slot (running, or claimed for a start) besides `except`: over all projects,
/// and of `project`.
pub async fn slots_taken(
    conn: &mut AnyConnection,
    project: &str,
    except: &str,
) -> Result<(i64, i64), sqlx::Error> {
    let row = sqlx::query(
        "SELECT COUNT(*) AS n, COALESCE(SUM(CASE WHEN project_id = $1 THEN 1 ELSE 0 END), 0) AS p \
         FROM runs WHERE id <> $2 \
         AND (state = 'running' OR (state = 'queued' AND started_at IS NOT NULL))",
    )
    .bind(project)
    .bind(except)
    .fetch_one(conn)
    .await?;
    Ok((row.try_get("n")?, row.try_get("p")?))
}

/// Runs of the project asked for before this one that still wait for a slot (not claimed, not
/// asked to be cancelled): a project's runs start in the order they were asked for.
pub async fn queued_ahead(
    conn: &mut AnyConnection,
    project: &str,
    created_at: &str,
    run: &str,
) -> Result<i64, sqlx::Error> {
    let row = sqlx::query(
        "SELECT COUNT(*) AS n FROM runs WHERE project_id = $1 AND state = 'queued' \
         AND started_at IS NULL AND cancelled_by IS NULL \
         AND (created_at < $2 OR (created_at = $2 AND id < $3))",
    )
    .bind(project)
    .bind(created_at)
    .bind(run)
    .fetch_one(conn)
    .await?;
    row.try_get("n")
}

/// Claims a queued run of `owner`'s for its start (inside the write transaction that counted
/// the slots and saw no hold on its sandbox); false when it is no longer queued or theirs, or
/// someone asked for it to be cancelled.
pub async fn claim_start(
    conn: &mut AnyConnection,
    run: &str,
    owner: &str,
    now: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE runs SET started_at = $1 WHERE id = $2 AND state = 'queued' AND owner = $3 \
         AND cancelled_by IS NULL",
    )
    .bind(now)
    .bind(run)
    .bind(owner)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

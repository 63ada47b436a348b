//! Access to datasets: what an access application asks for (its payload), the grants its
//! approval records, and whether a project's access to a dataset is in force.
//!
//! An access application's payload names registered datasets:
//! `{"datasets": [ID...], "purpose": TEXT, "until": "YYYY-MM-DD"?, "commercial": BOOL?}`.
//! When the committee approves it, one grant per dataset is written in the same transaction
//! (`access_grants`); a sandbox mounts a dataset only while its project holds a grant in force
//! (not revoked, `until` not passed: the access ends at the end of that day, UTC).

use policy::dmp::Date;
use serde::Deserialize;
use serde_json::json;

use super::{Error, Result};
use crate::audit::NewEvent;
use crate::db::WriteTx;
use crate::error::ErrorCode;
use crate::store::access::{self as astore, GrantRow};
use crate::store::{AppRow, datasets as dstore};

/// What an access application asks for.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Terms {
    pub datasets: Vec<String>,
    pub purpose: String,
    #[serde(default)]
    pub until: Option<String>,
    #[serde(default)]
    pub commercial: bool,
}

fn bad(message: impl Into<String>) -> Error {
    Error::invalid(ErrorCode::BadPayload, message)
}

/// The terms of an access application's payload, checked against the datasets on record.
/// A payload that names no datasets at all (no `datasets` key) asks for nothing and grants
/// nothing: `None`.
pub(crate) async fn terms(
    conn: &mut sqlx::AnyConnection,
    payload: &serde_json::Value,
    today: &Date,
) -> Result<Option<Terms>> {
    if payload.get("datasets").is_none() {
        return Ok(None);
    }
    let t: Terms = serde_json::from_value(payload.clone()).map_err(|e| {
        bad(format!(
            "an access application's payload is {{\"datasets\": [ID...], \"purpose\": TEXT, \"until\": \"YYYY-MM-DD\", \"commercial\": true|false}}: {e}"
        ))
    })?;
    if t.datasets.is_empty() || t.datasets.len() > 100 {
        return Err(bad("an access application names 1 to 100 datasets"));
    }
    if t.purpose.trim().is_empty() || t.purpose.len() > 64 * 1024 {
        return Err(bad("the purpose must not be blank; at most 64 KiB"));
    }
    if let Some(u) = &t.until {
        let d = Date::parse(u)
            .ok_or_else(|| bad(format!("`until` must be a date, YYYY-MM-DD, not `{u}`")))?;
        if d < *today {
            return Err(bad(format!("`until` ({u}) has passed")));
        }
    }
    let mut unknown = Vec::new();
    for d in &t.datasets {
        if dstore::dataset(conn, d).await?.is_none() && !unknown.contains(d) {
            unknown.push(d.clone());
        }
    }
    if !unknown.is_empty() {
        return Err(Error::invalid(
            ErrorCode::BadDataset,
            format!("no dataset {} is registered", unknown.join(", ")),
        ));
    }
    Ok(Some(t))
}

/// Records the grants of an access application the committee has just approved, in the
/// transaction that approves it, audited (`access.grant`).
pub(crate) async fn granted(tx: &mut WriteTx, app: &AppRow, now: &str) -> Result<()> {
    let payload: serde_json::Value = serde_json::from_str(&app.payload).unwrap_or_default();
    if payload.get("datasets").is_none() {
        return Ok(());
    }
    let t: Terms = serde_json::from_value(payload)
        .map_err(|e| Error::internal(format!("an approved access payload: {e}")))?;
    let project = app.project().to_owned();
    let mut seen = Vec::new();
    for d in &t.datasets {
        if seen.contains(&d) {
            continue;
        }
        seen.push(d);
        let g = GrantRow {
            application_id: app.id.clone(),
            project_id: project.clone(),
            dataset_id: d.clone(),
            until: t.until.clone(),
            commercial: t.commercial,
            granted_at: now.to_owned(),
            revoked_at: None,
        };
        astore::insert_grant(tx.conn(), &g).await?;
    }
    tx.audit(NewEvent {
        actor: "gateway",
        action: "access.grant",
        subject: &app.id,
        detail: json!({
            "project": project,
            "datasets": seen,
            "until": t.until,
            "commercial": t.commercial,
        }),
    })
    .await?;
    Ok(())
}

/// How a project's access to a dataset stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// In force; until the end of this day (UTC), or without end.
    InForce { until: Option<String> },
    /// Granted once, but expired or revoked.
    Ended,
    /// Never granted.
    None,
}

/// Whether `project` may use `dataset` on `today`: the longest grant in force wins.
pub(crate) async fn standing(
    conn: &mut sqlx::AnyConnection,
    project: &str,
    dataset: &str,
    today: &Date,
) -> Result<Standing> {
    let grants = astore::grants(conn, project, dataset).await?;
    if grants.is_empty() {
        return Ok(Standing::None);
    }
    let mut best: Option<Option<String>> = None;
    for g in grants.into_iter().filter(|g| g.revoked_at.is_none()) {
        let in_force = g.until.as_deref().is_none_or(|u| u >= today.as_str());
        if !in_force {
            continue;
        }
        best = Some(match (best, g.until) {
            (Some(None), _) | (_, None) => None,
            (Some(Some(a)), Some(b)) => Some(a.max(b)),
            (None, Some(b)) => Some(b),
        });
    }
    Ok(match best {
        Some(until) => Standing::InForce { until },
        None => Standing::Ended,
    })
}

/// Today's date on the gateway's clock (UTC).
pub(crate) fn today() -> Result<Date> {
    policy::dmp::date_of(&crate::time::now()).ok_or_else(|| Error::internal("the clock's date"))
}

/// Why a project may not use a dataset now, as an error naming it: `no_access` when never
/// granted, `access_expired` when granted once and expired or revoked.
pub(crate) fn refusal(dataset: &str, standing: &Standing) -> Error {
    match standing {
        Standing::Ended => Error::Forbidden {
            code: ErrorCode::AccessExpired,
            message: format!(
                "the project's access to dataset `{dataset}` has expired or was revoked"
            ),
        },
        _ => Error::Forbidden {
            code: ErrorCode::NoAccess,
            message: format!("the project has no approved access to dataset `{dataset}`"),
        },
    }
}

/// The datasets a sandbox of `project` asks to mount, each registered and in force for it,
/// with where its content lives: a listed dataset's folder in the STORE, or for one whose
/// listing is approved the directory `[sandbox.datasets]` names by its id. Not registered: not
/// found; not in force: [`refusal`]; not listed (nor declared once approved):
/// `dataset_unavailable`, saying why.
pub(crate) async fn mountable(
    state: &crate::state::AppState,
    conn: &mut sqlx::AnyConnection,
    project: &str,
    datasets: &[String],
) -> Result<Vec<(String, String)>> {
    let today = today()?;
    let mut out: Vec<(String, String)> = Vec::new();
    for d in datasets {
        if out.iter().any(|(id, _)| id == d) {
            continue;
        }
        let Some(row) = dstore::dataset(conn, d).await? else {
            return Err(Error::NotFound("dataset"));
        };
        let s = standing(conn, project, d, &today).await?;
        if !matches!(s, Standing::InForce { .. }) {
            return Err(refusal(d, &s));
        }
        let path = super::dataset_upload::content_of(state, &row)?;
        out.push((d.clone(), path.display().to_string()));
    }
    Ok(out)
}

/// Whether a run of a sandbox of `project` mounting `datasets` may start now: every one still
/// in force for the project (`access_expired` otherwise). The seconds left until the first of
/// them ends (none: no end), which a run's deadline may not pass.
pub(crate) async fn runnable(
    conn: &mut sqlx::AnyConnection,
    project: &str,
    datasets: &[String],
) -> Result<Option<u64>> {
    let now = time::OffsetDateTime::now_utc();
    let today = today()?;
    let mut left: Option<u64> = None;
    for d in datasets {
        let until = match standing(conn, project, d, &today).await? {
            Standing::InForce { until } => until,
            _ => return Err(refusal(d, &Standing::Ended)),
        };
        if let Some(u) = until {
            let secs = seconds_until_end_of(&u, now)?;
            left = Some(left.map_or(secs, |l| l.min(secs)));
        }
    }
    Ok(left)
}

/// Seconds from `now` to the end of day `until` (`YYYY-MM-DD`, UTC); at least one.
fn seconds_until_end_of(until: &str, now: time::OffsetDateTime) -> Result<u64> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let day = time::Date::parse(until, &format)
        .map_err(|e| Error::internal(format!("an access's last day `{until}`: {e}")))?;
    let end = day
        .next_day()
        .unwrap_or(day)
        .midnight()
        .assume_offset(time::UtcOffset::UTC);
    Ok(u64::try_from((end - now).whole_seconds())
        .unwrap_or(0)
        .max(1))
}

/// What a revocation ended.
#[derive(Debug)]
pub struct Revoked {
    pub application: String,
    /// The datasets whose grants it ended.
    pub datasets: Vec<String>,
    /// Live runs asked to stop: their sandbox mounts a dataset the project no longer has
    /// access to.
    pub cancelled_runs: Vec<String>,
}

/// Revokes an approved access application (admins): its grants end at once, audited
/// (`access.revoke`), and every live run of the project whose sandbox mounts a dataset the
/// project no longer has access to is asked to stop (`run.cancel`), in the same transaction.
pub async fn revoke(
    state: &crate::state::AppState,
    caller: &crate::auth::Caller,
    id: &str,
    reason: &str,
) -> Result<Revoked> {
    super::check_text("the reason", reason, 16 * 1024, true)?;
    let mut tx = state.db.begin_write().await?;
    let app = super::applications::seen(tx.conn(), caller, id).await?;
    super::allow(caller, policy::access::Action::AccessRevoke, app.standing)?;
    let app = app.object;
    if app.kind != policy::review::Kind::Access || app.state != policy::review::State::Approved {
        return Err(Error::conflict(
            ErrorCode::WrongState,
            format!(
                "only an approved access application is revoked; this is a {} application, {}",
                app.kind, app.state
            ),
        ));
    }
    let now = crate::time::now();
    let datasets = astore::revoke(tx.conn(), id, &now).await?;
    if datasets.is_empty() {
        return Err(Error::conflict(
            ErrorCode::WrongState,
            "the access is revoked already (or granted nothing)",
        ));
    }
    let project = app.project().to_owned();
    let today = today()?;
    let mut cancelled = Vec::new();
    for d in &datasets {
        if matches!(
            standing(tx.conn(), &project, d, &today).await?,
            Standing::InForce { .. }
        ) {
            continue; // Another approved access still covers it.
        }
        for run in crate::store::sandboxes::live_runs_mounting(tx.conn(), &project, d).await? {
            if cancelled.contains(&run) {
                continue;
            }
            if crate::store::sandboxes::request_cancel(tx.conn(), &run, caller.sub.as_str()).await?
            {
                tx.audit(NewEvent {
                    actor: caller.sub.as_str(),
                    action: "run.cancel",
                    subject: &run,
                    detail: json!({"project": project, "reason": "access revoked", "application": id}),
                })
                .await?;
                cancelled.push(run);
            }
        }
    }
    tx.audit(NewEvent {
        actor: caller.sub.as_str(),
        action: "access.revoke",
        subject: id,
        detail: json!({
            "project": project,
            "datasets": datasets,
            "reason": reason,
            "cancelled_runs": cancelled,
        }),
    })
    .await?;
    state.commit(tx).await?;
    for run in &cancelled {
        state.sandboxes.wake_to_cancel(run);
    }
    Ok(Revoked {
        application: id.to_owned(),
        datasets,
        cancelled_runs: cancelled,
    })
}

#[cfg(test)]
mod tests {
    use super::seconds_until_end_of;
    use time::macros::datetime;

    #[test]
    fn an_access_ends_at_the_end_of_its_last_day() {
        let now = datetime!(2030-05-01 23:00 UTC);
        assert_eq!(seconds_until_end_of("2030-05-01", now).unwrap(), 3600);
        assert_eq!(
            seconds_until_end_of("2030-05-02", now).unwrap(),
            3600 + 86400
        );
        assert_eq!(seconds_until_end_of("2030-04-30", now).unwrap(), 1);
    }
}

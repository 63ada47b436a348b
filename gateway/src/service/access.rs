//! Access to datasets: what an access application asks for (its payload), the grants its
//! approval records, and whether a project's access to a dataset is in force.
//!
//! An access application's payload names registered datasets:
//! `{"datasets": [ID...], "purpose": TEXT, "until": "YYYY-MM-DD"?, "commercial": BOOL?}`.
//! When the committee approves it, one grant per dataset is written in the same transaction
//! (`access_grants`); a sandbox mounts a dataset only while its project holds a grant in force
//! (not revoked, `until` not passed: the access ends at the end of that day, UTC).
//!
//! An approving reviewer may tighten what is asked ([`Conditions`]: an earlier last day, no
//! commercial use, run output hidden from the analysts); the strictest of the approving votes
//! of the round that approves it is what the grants record.

use policy::dmp::Date;
use serde::Deserialize;
use serde_json::json;

use super::{Error, Result};
use crate::audit::NewEvent;
use crate::db::WriteTx;
use crate::error::ErrorCode;
use crate::store::access::{self as astore, ConditionRow, GrantRow};
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
/// Every access application names its datasets: a payload without them is refused.
pub(crate) async fn terms(
    conn: &mut sqlx::AnyConnection,
    payload: &serde_json::Value,
    today: &Date,
) -> Result<Terms> {
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
    Ok(t)
}

/// Conditions an approving reviewer sets on an access application: each may only tighten
/// what it asks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conditions {
    /// An earlier last day of access (`YYYY-MM-DD`, UTC).
    pub until: Option<String>,
    /// `Some(false)`: no commercial use. `Some(true)` only where the application asks for it.
    pub commercial: Option<bool>,
    /// `Some(true)`: runs of sandboxes mounting the datasets hide their output from the
    /// analysts.
    pub logs_hidden: Option<bool>,
}

impl Conditions {
    pub fn is_empty(&self) -> bool {
        *self == Conditions::default()
    }
}

fn bad_conditions(message: impl Into<String>) -> Error {
    Error::invalid(ErrorCode::BadConditions, message)
}

/// Checks and records the conditions `reviewer` sets with their approving vote on `app`, in
/// the transaction that records the vote: only on access applications, only with an approval,
/// and only tightening what is asked (a last day not past, and not after the one asked for;
/// commercial use only where it is asked for).
pub(crate) async fn condition(
    tx: &mut WriteTx,
    app: &AppRow,
    reviewer: &str,
    choice: policy::review::Choice,
    c: &Conditions,
) -> Result<()> {
    if app.kind != policy::review::Kind::Access {
        return Err(bad_conditions(format!(
            "conditions are set on access applications only; this is a {} application",
            app.kind
        )));
    }
    if choice != policy::review::Choice::Approve {
        return Err(bad_conditions("conditions come with an approval only"));
    }
    let asked: Terms = serde_json::from_str(&app.payload)
        .map_err(|_| bad_conditions("the application names no datasets: nothing to condition"))?;
    if let Some(u) = &c.until {
        let d = Date::parse(u).ok_or_else(|| {
            bad_conditions(format!("`until` must be a date, YYYY-MM-DD, not `{u}`"))
        })?;
        if d < today()? {
            return Err(bad_conditions(format!("`until` ({u}) has passed")));
        }
        if let Some(a) = &asked.until
            && u.as_str() > a.as_str()
        {
            return Err(bad_conditions(format!(
                "`until` ({u}) is after the last day asked for ({a}): conditions only tighten"
            )));
        }
    }
    if c.commercial == Some(true) && !asked.commercial {
        return Err(bad_conditions(
            "the application asks for no commercial use: conditions only tighten",
        ));
    }
    let row = ConditionRow {
        application_id: app.id.clone(),
        round: app.round,
        reviewer: reviewer.to_owned(),
        until: c.until.clone(),
        no_commercial: c.commercial == Some(false),
        logs_hidden: c.logs_hidden == Some(true),
    };
    astore::insert_conditions(tx.conn(), &row).await?;
    Ok(())
}

/// What an approval grants: the terms asked for, tightened by the strictest of the conditions
/// of `round` (the earliest last day, no commercial use if any says so, output hidden if any
/// says so).
fn strictest(
    asked: &Terms,
    conditions: &[ConditionRow],
    round: i64,
) -> (Option<String>, bool, bool) {
    let mut until = asked.until.clone();
    let mut commercial = asked.commercial;
    let mut hidden = false;
    for c in conditions.iter().filter(|c| c.round == round) {
        if let Some(u) = &c.until {
            until = Some(match until {
                Some(a) if a.as_str() <= u.as_str() => a,
                _ => u.clone(),
            });
        }
        commercial &= !c.no_commercial;
        hidden |= c.logs_hidden;
    }
    (until, commercial, hidden)
}

/// Records the grants of an access application the committee has just approved, in the
/// transaction that approves it, audited (`access.grant`): what was asked, tightened by the
/// strictest conditions of the approving votes.
pub(crate) async fn granted(tx: &mut WriteTx, app: &AppRow, now: &str) -> Result<()> {
    let payload: serde_json::Value = serde_json::from_str(&app.payload).unwrap_or_default();
    if payload.get("datasets").is_none() {
        return Ok(()); // Made before every access application named its datasets.
    }
    let t: Terms = serde_json::from_value(payload)
        .map_err(|e| Error::internal(format!("an approved access payload: {e}")))?;
    let conditions = astore::conditions(tx.conn(), &app.id).await?;
    let (until, commercial, logs_hidden) = strictest(&t, &conditions, app.round);
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
            until: until.clone(),
            commercial,
            logs_hidden,
            granted_at: now.to_owned(),
            revoked_at: None,
        };
        astore::insert_grant(tx.conn(), &g).await?;
    }
    let by: Vec<&str> = conditions
        .iter()
        .filter(|c| c.round == app.round)
        .map(|c| c.reviewer.as_str())
        .collect();
    tx.audit(NewEvent {
        actor: "gateway",
        action: "access.grant",
        subject: &app.id,
        detail: json!({
            "project": project,
            "datasets": seen,
            "until": until,
            "commercial": commercial,
            "logs": if logs_hidden { "hidden" } else { "visible" },
            "asked": {"until": t.until, "commercial": t.commercial},
            "conditions_by": by,
        }),
    })
    .await?;
    Ok(())
}

/// The first of `datasets` whose access in force for `project` hides run output from the
/// analysts, if any: a sandbox mounting it shows its runs' size and digest only.
pub(crate) async fn output_hidden_by(
    conn: &mut sqlx::AnyConnection,
    project: &str,
    datasets: &[String],
) -> Result<Option<String>> {
    let today = today()?;
    for d in datasets {
        let hidden = astore::grants(conn, project, d).await?.iter().any(|g| {
            g.logs_hidden
                && g.revoked_at.is_none()
                && g.until.as_deref().is_none_or(|u| u >= today.as_str())
        });
        if hidden {
            return Ok(Some(d.clone()));
        }
    }
    Ok(None)
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
    use super::{ConditionRow, Terms, seconds_until_end_of, strictest};
    use time::macros::datetime;

    fn vote(round: i64, until: Option<&str>, no_commercial: bool, hidden: bool) -> ConditionRow {
        ConditionRow {
            application_id: "app-1".into(),
            round,
            reviewer: format!("rev-{round}-{until:?}-{no_commercial}-{hidden}"),
            until: until.map(str::to_owned),
            no_commercial,
            logs_hidden: hidden,
        }
    }

    #[test]
    fn the_strictest_of_a_rounds_conditions_applies() {
        let asked = Terms {
            datasets: vec!["ds-1".into()],
            purpose: "study".into(),
            until: Some("2099-12-31".into()),
            commercial: true,
        };
        let as_asked = (Some("2099-12-31".to_owned()), true, false);
        assert_eq!(strictest(&asked, &[], 1), as_asked);
        let votes = [
            vote(1, Some("2099-06-30"), false, true),
            vote(2, Some("2099-03-31"), false, false),
            vote(2, Some("2099-09-30"), true, false),
            vote(2, None, false, false),
        ];
        // Round 1's conditions do not carry into round 2.
        assert_eq!(
            strictest(&asked, &votes, 2),
            (Some("2099-03-31".to_owned()), false, false)
        );
        assert_eq!(
            strictest(&asked, &votes, 1),
            (Some("2099-06-30".to_owned()), true, true)
        );
        let open = Terms {
            until: None,
            ..asked
        };
        assert_eq!(
            strictest(&open, &votes[3..], 2),
            (None, true, false),
            "no last day asked, none set"
        );
    }

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

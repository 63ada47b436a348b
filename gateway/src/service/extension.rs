//! A dataset's restricted sharing over time: extension applications, which move its end;
//! the category job, which moves a dataset whose restricted sharing has ended to the
//! category its DMP names after it; and the dataset's history.
//!
//! An extension application belongs to the dataset (as its listing does), its applicant a
//! steward of the dataset's institution; its payload is `{"until": DATE}`, a day after the
//! current end, for a dataset in a restricted category. Its approval moves the end in the same
//! transaction (audited `dataset.extend`) and carries it out (`extended`). The job moves every
//! dataset whose end has passed, audited `dataset.category`, by a compare-and-set on the row,
//! so with several gateways on one database each dataset moves once.

use policy::access::{Action, Standing};
use policy::dmp::{Category, Date};
use policy::review::{Event, Kind, State};
use serde_json::json;

use super::datasets::standing_of;
use super::{Error, Result, allow, check_text, see};
use crate::audit::{NewEvent, StoredEvent};
use crate::auth::Caller;
use crate::db::WriteTx;
use crate::error::ErrorCode;
use crate::state::AppState;
use crate::store::access::{self as astore, GrantRow};
use crate::store::datasets::{self as dstore, DatasetRow};
use crate::store::{self, AppRow};

fn bad(message: impl Into<String>) -> Error {
    Error::invalid(ErrorCode::BadExtension, message)
}

/// The end of a dataset's restricted sharing, when it is in a restricted category with one.
fn restricted_end(d: &DatasetRow) -> Option<&str> {
    let restricted = d
        .category
        .parse::<Category>()
        .is_ok_and(Category::is_restricted);
    d.restricted_until.as_deref().filter(|_| restricted)
}

/// A dataset the caller may see, with their standing towards it; not found otherwise.
async fn seen(
    conn: &mut sqlx::AnyConnection,
    caller: &Caller,
    id: &str,
) -> Result<(DatasetRow, Standing)> {
    let row = dstore::dataset(conn, id).await?;
    let standing = row
        .as_ref()
        .map(|d| standing_of(caller, &d.institution))
        .unwrap_or_default();
    let s = see(caller, Action::DatasetRead, standing, row, "dataset")?;
    Ok((s.object, s.standing))
}

/// Applies for an extension of a dataset's restricted sharing until `until`: a steward of its
/// institution, for a dataset in a restricted category, to a day after the current end.
pub async fn apply(
    state: &AppState,
    caller: &Caller,
    dataset: &str,
    until: &str,
    justification: &str,
) -> Result<AppRow> {
    check_text("the justification", justification, 64 * 1024, true)?;
    let mut tx = state.db.begin_write().await?;
    let (d, standing) = seen(tx.conn(), caller, dataset).await?;
    let allowed = allow(caller, Action::AppCreate(Kind::Extension), standing)?;
    let asked = Date::parse(until)
        .ok_or_else(|| bad(format!("`until` must be a date, YYYY-MM-DD, not `{until}`")))?;
    let Some(end) = restricted_end(&d) else {
        return Err(bad(format!(
            "dataset `{dataset}` is {}, not in restricted sharing with an end: nothing to extend",
            d.category
        )));
    };
    if asked.as_str() <= end {
        return Err(bad(format!(
            "`until` ({until}) must be after the current end of restricted sharing ({end})"
        )));
    }
    let now = crate::time::now();
    let row = AppRow {
        id: store::new_id("app"),
        kind: Kind::Extension,
        project_id: None,
        dataset_id: Some(d.id.clone()),
        requester: caller.sub.to_string(),
        title: format!("Restricted sharing of {} until {until}", d.title),
        description: justification.to_owned(),
        payload: json!({"dataset": d.id, "from": end, "until": until}).to_string(),
        state: State::Submitted,
        round: 1,
        created_at: now.clone(),
        updated_at: now,
    };
    super::applications::submit(&mut tx, &allowed, &row).await?;
    state.commit(tx).await?;
    Ok(row)
}

/// Carries out an extension the committee has just approved, in the transaction that
/// approves it: the dataset's end moves (audited `dataset.extend`) and the application is
/// `extended`. A dataset no longer in restricted sharing, or already extended past the day
/// asked, refuses the approval (`wrong_state`).
pub(crate) async fn approved(
    state: &AppState,
    tx: &mut WriteTx,
    app: &AppRow,
    now: &str,
) -> Result<()> {
    let dataset = app
        .dataset_id
        .as_deref()
        .ok_or_else(|| Error::internal("an extension without its dataset"))?;
    let payload: serde_json::Value = serde_json::from_str(&app.payload).unwrap_or_default();
    let until = payload["until"]
        .as_str()
        .ok_or_else(|| Error::internal("an extension without its day"))?;
    let d = dstore::dataset(tx.conn(), dataset)
        .await?
        .ok_or(Error::NotFound("dataset"))?;
    let end = restricted_end(&d).map(str::to_owned);
    let moved = match &end {
        Some(end) if end.as_str() < until => {
            dstore::extend_restriction(tx.conn(), dataset, end, until, now).await?
        }
        _ => false,
    };
    if !moved {
        return Err(Error::conflict(
            ErrorCode::WrongState,
            format!(
                "dataset `{dataset}` is {} (restricted until {}): this extension to {until} no longer applies",
                d.category,
                end.as_deref().unwrap_or("no end")
            ),
        ));
    }
    tx.audit(NewEvent {
        actor: "gateway",
        action: "dataset.extend",
        subject: dataset,
        detail: json!({"application": app.id, "from": end, "to": until}),
    })
    .await?;
    let t = super::applications::step(state, app, Event::Complete)?;
    if !store::set_state(tx.conn(), &app.id, t.from, t.to, app.round, None, now).await? {
        return Err(Error::conflict(
            ErrorCode::ConcurrentChange,
            "the application changed meanwhile; try again",
        ));
    }
    tx.audit(NewEvent {
        actor: "gateway",
        action: "application.state",
        subject: &app.id,
        detail: json!({"from": t.from.as_str(), "to": t.to.as_str(), "round": app.round}),
    })
    .await?;
    Ok(())
}

/// Moves every dataset whose restricted sharing ended before `today` to the category after
/// it, each in a transaction of its own, audited (`dataset.category`, with before and after).
/// Each move is a compare-and-set on the row, so one of several gateways running this at once
/// makes it. The datasets this call moved.
pub async fn move_categories(state: &AppState, today: &Date) -> Result<Vec<String>> {
    let due = {
        let mut conn = state.db.pool().acquire().await?;
        dstore::restriction_passed(&mut conn, today.as_str(), 1000).await?
    };
    let mut moved = Vec::new();
    for d in due {
        let (Some(until), Some(after)) = (&d.restricted_until, &d.category_after) else {
            continue;
        };
        let mut tx = state.db.begin_write().await?;
        let now = crate::time::now();
        if !dstore::move_category(tx.conn(), &d.id, &d.category, until, after, &now).await? {
            continue; // Moved, or extended, meanwhile.
        }
        tx.audit(NewEvent {
            actor: "gateway",
            action: "dataset.category",
            subject: &d.id,
            detail: json!({
                "from": d.category,
                "to": after,
                "restricted_until": until,
            }),
        })
        .await?;
        state.commit(tx).await?;
        moved.push(d.id);
    }
    Ok(moved)
}

/// The category job: [`move_categories`] at start and then every `interval`, until the gateway
/// stops. A failed pass is logged and tried again at the next.
pub async fn run(state: AppState, interval: std::time::Duration, stop: crate::workers::Stop) {
    loop {
        let pass = async {
            let today = super::access::today()?;
            move_categories(&state, &today).await
        };
        match pass.await {
            Ok(moved) if !moved.is_empty() => {
                tracing::info!(datasets = ?moved, "restricted sharing ended: categories moved");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "moving the categories of datasets"),
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = stop.requested() => return,
        }
    }
}

/// A dataset's history: what was done to it and to its applications (registration, every
/// application, vote and change of state with who made it, extensions, category moves), oldest
/// first, from the audit log; and the access granted to it.
#[derive(Debug)]
pub struct History {
    pub dataset: String,
    pub events: Vec<StoredEvent>,
    pub grants: Vec<GrantRow>,
}

/// The events of one subject the history reads at most.
const EVENTS_PER_SUBJECT: i64 = 1000;

/// A dataset's history, for those who may read the dataset.
pub async fn history(state: &AppState, caller: &Caller, id: &str) -> Result<History> {
    let mut conn = state.db.pool().acquire().await?;
    let (d, _) = seen(&mut conn, caller, id).await?;
    let mut events = crate::audit::events(&mut conn, 0, Some(&d.id), EVENTS_PER_SUBJECT).await?;
    for app in store::applications_of_dataset(&mut conn, &d.id).await? {
        events.extend(crate::audit::events(&mut conn, 0, Some(&app.id), EVENTS_PER_SUBJECT).await?);
    }
    events.sort_by_key(|e| e.seq);
    Ok(History {
        grants: astore::grants_of_dataset(&mut conn, &d.id).await?,
        dataset: d.id,
        events,
    })
}

//! Datasets: registering one with its DMP, which opens its listing application in the same
//! transaction, and reading them and their DMPs. Its listing's decision and its content's
//! upload are `dataset_upload`'s.
//!
//! A dataset belongs to its data-providing institution as an application belongs to its
//! project: a steward whose token names that institution (`Caller::institution`) stands
//! towards it as a steward member ([`standing_of`]), and that standing is what `policy` asks
//! about for registering, reading, and the dataset's own applications.

use policy::access::{Action, Resource, Scope, Standing, scope};
use policy::dmp::{self, Dmp};
use policy::review::{Kind, State};
use policy::roles::{Role, RoleSet};
use serde_json::json;

use super::page::{Page, PageAsk, Window};
use super::{Error, Result, allow, see};
use crate::audit::NewEvent;
use crate::auth::Caller;
use crate::error::ErrorCode;
use crate::state::AppState;
use crate::store::datasets::{self as dstore, DatasetRow};
use crate::store::{self, AppRow};
use crate::wire::errors::FieldProblem;

/// A dataset's state: its listing applied for.
pub const REGISTERED: &str = "registered";
/// A dataset's state: its listing approved, its content awaited (`vre dataset upload`).
pub const APPROVED: &str = "approved";
/// A dataset's state: its content in the STORE, mountable under an access in force.
pub const LISTED: &str = "listed";
/// A dataset's state: its listing was rejected or withdrawn; it is never listed.
pub const UNLISTED: &str = "unlisted";

/// A registered dataset and its listing application.
#[derive(Debug)]
pub struct Registration {
    pub dataset: DatasetRow,
    pub application: AppRow,
}

/// A dataset with its applications, oldest first, and once listed what its content is.
#[derive(Debug)]
pub struct Detail {
    pub dataset: DatasetRow,
    pub applications: Vec<AppRow>,
    pub content: Option<dstore::ContentRow>,
}

/// The caller's standing towards what belongs to `institution`: a steward member when their
/// token names it.
pub fn standing_of(caller: &Caller, institution: &str) -> Standing {
    let ours = caller.institution.as_deref() == Some(institution);
    Standing {
        member_roles: if ours {
            RoleSet::EMPTY.with(Role::Steward)
        } else {
            RoleSet::EMPTY
        },
        is_requester: false,
    }
}

/// The caller's standing towards a dataset (none when there is no such dataset).
pub(crate) async fn standing_towards(
    conn: &mut sqlx::AnyConnection,
    caller: &Caller,
    dataset: &str,
) -> Result<Standing> {
    Ok(dstore::dataset(conn, dataset)
        .await?
        .map(|d| standing_of(caller, &d.institution))
        .unwrap_or_default())
}

/// Checks a DMP (every bad field named in one answer), registers the dataset and opens its
/// listing application, the caller its applicant: a steward of the DMP's institution.
pub async fn register(
    state: &AppState,
    caller: &Caller,
    dmp: &serde_json::Value,
) -> Result<Registration> {
    let now = crate::time::now();
    let today = dmp::date_of(&now).ok_or_else(|| Error::internal("the clock's date"))?;
    let dmp = dmp::from_value(dmp, &today).map_err(refused)?;
    let institution = dmp.providing_institution.id.clone();
    let standing = standing_of(caller, &institution);
    if caller.roles.contains(Role::Steward) && standing.member_roles.is_empty() {
        return Err(Error::Forbidden {
            code: ErrorCode::Forbidden,
            message: match &caller.institution {
                Some(mine) => format!(
                    "the DMP's data-providing institution is `{institution}`; your token speaks for `{mine}`"
                ),
                None => format!(
                    "the DMP's data-providing institution is `{institution}`; your token names no institution"
                ),
            },
        });
    }
    allow(caller, Action::DatasetRegister, standing)?;
    let listing = allow(caller, Action::AppCreate(Kind::Listing), standing)?;

    let dmp_json = serde_json::to_string(&dmp).map_err(Error::internal)?;
    let dataset = DatasetRow {
        id: store::new_id("ds"),
        title: dmp.title.clone(),
        institution,
        category: dmp.management_category.as_str().to_owned(),
        restricted_until: dmp.restricted_sharing_ends.as_ref().map(|d| d.to_string()),
        category_after: dmp.category_after.map(|c| c.as_str().to_owned()),
        dmp: dmp_json,
        state: REGISTERED.to_owned(),
        created_by: caller.sub.to_string(),
        created_at: now.clone(),
        updated_at: now.clone(),
    };
    let application = AppRow {
        id: store::new_id("app"),
        kind: Kind::Listing,
        project_id: None,
        dataset_id: Some(dataset.id.clone()),
        requester: caller.sub.to_string(),
        title: dataset.title.clone(),
        description: dmp.description.clone(),
        payload: json!({
            "dataset": dataset.id,
            "institution": dataset.institution,
            "category": dataset.category,
        })
        .to_string(),
        state: State::Submitted,
        round: 1,
        created_at: now.clone(),
        updated_at: now,
    };

    let mut tx = state.db.begin_write().await?;
    dstore::insert(tx.conn(), &dataset).await?;
    tx.audit(NewEvent {
        actor: caller.sub.as_str(),
        action: "dataset.register",
        subject: &dataset.id,
        detail: json!({
            "title": dataset.title,
            "institution": dataset.institution,
            "category": dataset.category,
            "restricted_until": dataset.restricted_until,
            "category_after": dataset.category_after,
            "dmp_sha256": crate::sha256_hex(dataset.dmp.as_bytes()),
        }),
    })
    .await?;
    super::catalog::index(&mut tx, &dataset.id, &dmp).await?;
    super::applications::submit(&mut tx, &listing, &application).await?;
    state.commit(tx).await?;
    Ok(Registration {
        dataset,
        application,
    })
}

/// A DMP's refusal, every bad field named and labelled.
fn refused(e: dmp::DmpError) -> Error {
    let fields = match &e {
        dmp::DmpError::Fields(fields) => fields
            .iter()
            .map(|f| FieldProblem {
                field: f.field.clone(),
                label_ja: f.label().ja.to_owned(),
                label_en: f.label().en.to_owned(),
                problem: f.message(),
            })
            .collect(),
        dmp::DmpError::Syntax { .. } => Vec::new(),
    };
    Error::InvalidFields {
        code: ErrorCode::BadDmp,
        message: e.to_string(),
        fields,
    }
}

/// The datasets the caller may open, newest first: exactly those [`show`] opens for them.
pub async fn list(state: &AppState, caller: &Caller, ask: &PageAsk) -> Result<Page<DatasetRow>> {
    allow(caller, Action::DatasetList, Standing::default())?;
    let window = Window::of("datasets", ask)?;
    let institution = match scope(caller.roles, Resource::Dataset) {
        Scope::Every => None,
        Scope::OwnProjects => match &caller.institution {
            Some(i) => Some(i.as_str()),
            None => return Ok(Page::empty()),
        },
        Scope::Nothing => return Ok(Page::empty()),
    };
    let mut conn = state.db.pool().acquire().await?;
    let rows = dstore::datasets(
        &mut conn,
        institution,
        window.after.as_ref(),
        window.fetch(),
    )
    .await?;
    Ok(window.page(rows, |r| (r.created_at.clone(), r.id.clone())))
}

pub(crate) async fn seen(
    conn: &mut sqlx::AnyConnection,
    caller: &Caller,
    id: &str,
) -> Result<DatasetRow> {
    let row = dstore::dataset(conn, id).await?;
    let standing = row
        .as_ref()
        .map(|d| standing_of(caller, &d.institution))
        .unwrap_or_default();
    Ok(see(caller, Action::DatasetRead, standing, row, "dataset")?.object)
}

/// One dataset and its applications.
pub async fn show(state: &AppState, caller: &Caller, id: &str) -> Result<Detail> {
    let mut conn = state.db.pool().acquire().await?;
    let dataset = seen(&mut conn, caller, id).await?;
    let applications = store::applications_of_dataset(&mut conn, id).await?;
    let content = dstore::content(&mut conn, id).await?;
    Ok(Detail {
        dataset,
        applications,
        content,
    })
}

/// A dataset's DMP as registered.
pub async fn dmp(state: &AppState, caller: &Caller, id: &str) -> Result<Dmp> {
    let mut conn = state.db.pool().acquire().await?;
    let dataset = seen(&mut conn, caller, id).await?;
    serde_json::from_str(&dataset.dmp)
        .map_err(|e| Error::internal(format!("dataset {id}'s stored DMP: {e}")))
}

//! What an analyst follows of their own work: the applications they made, of every kind, and
//! the releases of the projects they belong to.

use policy::access::{Action, Standing};

use super::applications::{self, ListFilter, Summary};
use super::page::{Page, PageAsk, Window};
use super::{Result, allow};
use crate::auth::Caller;
use crate::state::AppState;
use crate::store::egress::{self as estore, ProjectReleaseRow};

/// The caller's applications and their projects' releases, a page of each.
#[derive(Debug)]
pub struct Mine {
    pub applications: Page<Summary>,
    pub releases: Page<ProjectReleaseRow>,
}

/// The applications the caller requested (those they may still see: a project's once they
/// left it are not), newest first, and the releases of the projects they are a member of,
/// newest approval first. Members read their projects' egress (`Action::EgressRead`), so
/// every release listed is one whose application they may open.
pub async fn overview(
    state: &AppState,
    caller: &Caller,
    applications_page: PageAsk,
    releases_page: &PageAsk,
) -> Result<Mine> {
    allow(caller, Action::AppList, Standing::default())?;
    let window = Window::<(String, String)>::of("releases", releases_page)?;
    let applications = applications::list(
        state,
        caller,
        ListFilter {
            requester: Some(caller.sub.as_str().to_owned()),
            page: applications_page,
            ..ListFilter::default()
        },
    )
    .await?;
    let mut conn = state.db.pool().acquire().await?;
    let projects = crate::store::list::projects_of(&mut conn, caller.sub.as_str()).await?;
    let rows =
        estore::releases_of_projects(&mut conn, &projects, window.after.as_ref(), window.fetch())
            .await?;
    let releases = window.page(rows, |r| {
        (
            r.release.approved_at.clone(),
            r.release.application_id.clone(),
        )
    });
    Ok(Mine {
        applications,
        releases,
    })
}

//! Sandboxes: a project's volumes on the engine, made from an allowed image, with its datasets
//! mounted and approved ingress staged read-only; removed with everything in them.

use policy::access::{Action, Resource, Standing};
use policy::review::{Event, Kind, State};
use serde_json::json;

use super::page::{Page, PageAsk, Window};
use super::{Allowed, Error, Narrow, Result, Seen, allow, narrow, see};
use crate::audit::NewEvent;
use crate::auth::Caller;
use crate::error::ErrorCode;
use crate::ingress::restage::Tampered;
use crate::state::AppState;
use crate::store::sandboxes::{self as sstore, SandboxRow};
use crate::store::{self, AppRow};
use crate::wire::sandboxes::LogVisibility;

/// A sandbox with what is staged in it and mounted.
#[derive(Debug)]
pub struct View {
    pub row: SandboxRow,
    /// Staged ingress: application, SHA-256 of the tar as staged, when.
    pub staged: Vec<(String, String, String)>,
    /// Mounted datasets by id.
    pub datasets: Vec<String>,
}

async fn view(conn: &mut sqlx::AnyConnection, row: SandboxRow) -> Result<View> {
    Ok(View {
        staged: sstore::staged(conn, &row.id).await?,
        datasets: sstore::datasets(conn, &row.id)
            .await?
            .into_iter()
            .map(|(d, _)| d)
            .collect(),
        row,
    })
}

/// A sandbox the caller may see (not removed), with their standing in its project.
pub(crate) async fn seen(
    conn: &mut sqlx::AnyConnection,
    caller: &Caller,
    id: &str,
) -> Result<Seen<SandboxRow>> {
    let sb = sstore::sandbox(conn, id)
        .await?
        .filter(|s| s.state != "removed");
    let standing = match &sb {
        Some(s) => super::standing_in(conn, &s.project_id, caller).await?,
        None => Standing::default(),
    };
    see(caller, Action::SandboxRead, standing, sb, "sandbox")
}

/// Sandboxes the caller may see, of one project or all, oldest first: exactly those [`show`]
/// opens. Three queries a page, whatever its size: the sandboxes, what is staged in them and
/// what is mounted (and, for a member, their projects first).
pub async fn list(
    state: &AppState,
    caller: &Caller,
    project: Option<&str>,
    ask: &PageAsk,
) -> Result<Page<View>> {
    allow(caller, Action::ImageList, Standing::default())?;
    let window = Window::of("sandboxes", ask)?;
    let member = match narrow(caller, Resource::Sandbox) {
        Narrow::Everything => None,
        Narrow::MemberOf(sub) => Some(sub),
        Narrow::Nothing => return Ok(Page::empty()),
    };
    let mut conn = state.db.pool().acquire().await?;
    let rows = sstore::sandboxes(
        &mut conn,
        project,
        member,
        window.after.as_ref(),
        window.fetch(),
    )
    .await?;
    let page = window.page(rows, |r| (r.created_at.clone(), r.id.clone()));
    let ids: Vec<&str> = page.items.iter().map(|r| r.id.as_str()).collect();
    let mut staged = sstore::staged_of(&mut conn, &ids).await?;
    let mut datasets = sstore::datasets_of(&mut conn, &ids).await?;
    Ok(page.map(|row| View {
        staged: staged.remove(&row.id).unwrap_or_default(),
        datasets: datasets.remove(&row.id).unwrap_or_default(),
        row,
    }))
}

/// One sandbox.
pub async fn show(state: &AppState, caller: &Caller, id: &str) -> Result<View> {
    let mut conn = state.db.pool().acquire().await?;
    let sb = seen(&mut conn, caller, id).await?.object;
    view(&mut conn, sb).await
}

/// A sandbox as asked for.
#[derive(Debug)]
pub struct NewSandbox {
    pub project: String,
    /// An allowed image's name.
    pub image: String,
    /// A resource class (default: the configured default).
    pub class: Option<String>,
    /// Approved ingress applications of the project to stage.
    pub ingress: Vec<String>,
    /// Datasets to mount read-only.
    pub datasets: Vec<String>,
    /// Whether runs' output is shown (default: `[sandbox] logs`).
    pub logs: Option<LogVisibility>,
}

/// Creates a sandbox (its volumes on the engine), then stages the approved ingress asked for.
/// Everything asked for is checked before anything is made.
pub async fn create(state: &AppState, caller: &Caller, new: NewSandbox) -> Result<View> {
    let standing = {
        let mut conn = state.db.pool().acquire().await?;
        super::standing_in(&mut conn, &new.project, caller).await?
    };
    allow(caller, Action::SandboxCreate, standing)?;
    // Staging what was asked for is managing the sandbox: asked now, before anything is made.
    let manage = allow(caller, Action::SandboxManage, standing)?;
    {
        let mut conn = state.db.pool().acquire().await?;
        if store::project(&mut conn, &new.project).await?.is_none() {
            return Err(Error::NotFound("project"));
        }
    }
    let class = new
        .class
        .clone()
        .unwrap_or_else(|| state.sandboxes.settings().default_class.clone());
    if state.sandboxes.class(&class).is_none() {
        return Err(Error::invalid(
            ErrorCode::BadClass,
            format!("no resource class `{class}`"),
        ));
    }
    // Every dataset is registered and in force for the project; refusals are audited.
    let datasets = {
        let mut conn = state.db.pool().acquire().await?;
        super::access::mountable(state, &mut conn, &new.project, &new.datasets).await
    };
    let datasets = match datasets {
        Ok(d) => d,
        Err(e @ Error::Forbidden { .. }) => {
            let mut tx = state.db.begin_write().await?;
            tx.audit(NewEvent {
                actor: caller.sub.as_str(),
                action: "sandbox.refused",
                subject: &new.project,
                detail: json!({"datasets": new.datasets, "reason": e.to_string()}),
            })
            .await?;
            state.commit(tx).await?;
            return Err(e);
        }
        Err(e) => return Err(e),
    };
    // An access whose conditions hide run output hides this sandbox's.
    let hidden_by = {
        let mut conn = state.db.pool().acquire().await?;
        let ids: Vec<String> = datasets.iter().map(|(id, _)| id.clone()).collect();
        super::access::output_hidden_by(&mut conn, &new.project, &ids).await?
    };
    if let Some(d) = &hidden_by
        && new.logs == Some(LogVisibility::Visible)
    {
        return Err(Error::Forbidden {
            code: ErrorCode::LogsHidden,
            message: format!(
                "the project's access to dataset `{d}` hides run output: a sandbox mounting it has hidden logs"
            ),
        });
    }
    let image = {
        let mut conn = state.db.pool().acquire().await?;
        sstore::image(&mut conn, &new.image).await?.ok_or_else(|| {
            Error::conflict(
                ErrorCode::ImageNotAllowed,
                format!("`{}` is not an allowed image", new.image),
            )
        })?
    };
    let row = SandboxRow {
        id: store::new_id("sbx"),
        project_id: new.project.clone(),
        image_name: image.name.clone(),
        image_id: image.image_id.clone(),
        resource_class: class,
        state: "ready".into(),
        created_by: caller.sub.to_string(),
        created_at: crate::time::now(),
        removed_at: None,
        logs: match hidden_by {
            Some(_) => LogVisibility::Hidden,
            None => new.logs.unwrap_or(state.sandboxes.settings().logs),
        }
        .as_str()
        .to_owned(),
    };
    for app in &new.ingress {
        stageable(state, &row, app).await?;
    }
    let spec = {
        let mut conn = state.db.pool().acquire().await?;
        let mut spec = crate::sandboxes::spec_of(state, &mut conn, &row).await?;
        spec.datasets = datasets
            .iter()
            .map(|(id, p)| sandbox_runner::DatasetMount {
                id: id.clone(),
                host_path: p.clone(),
            })
            .collect();
        spec
    };
    state.sandboxes.backend.prepare(&spec).await?;
    let mut tx = state.db.begin_write().await?;
    sstore::insert_sandbox(tx.conn(), &row).await?;
    for (id, path) in &datasets {
        sstore::insert_dataset(tx.conn(), &row.id, id, path).await?;
    }
    tx.audit(NewEvent {
        actor: caller.sub.as_str(),
        action: "sandbox.create",
        subject: &row.id,
        detail: json!({
            "project": row.project_id,
            "image": row.image_name,
            "image_id": row.image_id,
            "class": row.resource_class,
            "datasets": new.datasets,
            "logs": row.logs,
        }),
    })
    .await?;
    state.commit(tx).await?;
    for app in &new.ingress {
        stage(state, caller, &manage, &row, app).await?;
    }
    crate::sandboxes::ready_next(state, &row.id).await;
    let mut conn = state.db.pool().acquire().await?;
    view(&mut conn, row).await
}

/// Stages one more approved ingress application into a sandbox.
pub async fn stage_ingress(
    state: &AppState,
    caller: &Caller,
    id: &str,
    application: &str,
) -> Result<View> {
    let sb = {
        let mut conn = state.db.pool().acquire().await?;
        seen(&mut conn, caller, id).await?
    };
    let allowed = allow(caller, Action::SandboxManage, sb.standing)?;
    stage(state, caller, &allowed, &sb.object, application).await?;
    crate::sandboxes::ready_next(state, &sb.object.id).await;
    let mut conn = state.db.pool().acquire().await?;
    view(&mut conn, sb.object).await
}

/// Removes a sandbox and its volumes (its work area and outputs are gone after this).
pub async fn remove(state: &AppState, caller: &Caller, id: &str) -> Result<View> {
    let sb = {
        let mut conn = state.db.pool().acquire().await?;
        seen(&mut conn, caller, id).await?
    };
    allow(caller, Action::SandboxManage, sb.standing)?;
    {
        let mut conn = state.db.pool().acquire().await?;
        if sstore::runs_of(&mut conn, id)
            .await?
            .iter()
            .any(|r| r.state != "finished")
        {
            return Err(Error::conflict(
                ErrorCode::RunsActive,
                "the sandbox has runs that have not finished",
            ));
        }
    }
    // Marked as going in a write transaction that sees no hold, so that no copy for egress
    // starts on volumes about to go (a hold is taken only on a ready sandbox).
    {
        let mut tx = state.db.begin_write().await?;
        let holds = super::egress::holds_on(tx.conn(), id).await?;
        if !holds.is_empty() {
            return Err(Error::conflict(
                ErrorCode::SandboxHeld,
                "files are being copied out of the sandbox for egress; try again when that is done",
            ));
        }
        sstore::set_sandbox_state(tx.conn(), id, "removing", &crate::time::now()).await?;
        state.commit(tx).await?;
    }
    if let Err(e) = state.sandboxes.backend.remove_sandbox(id).await {
        let mut conn = state.db.pool().acquire().await?;
        sstore::set_sandbox_state(&mut conn, id, "ready", &crate::time::now()).await?;
        return Err(e.into());
    }
    let mut tx = state.db.begin_write().await?;
    sstore::set_sandbox_state(tx.conn(), id, "removed", &crate::time::now()).await?;
    tx.audit(NewEvent {
        actor: caller.sub.as_str(),
        action: "sandbox.remove",
        subject: id,
        detail: json!({"project": sb.object.project_id}),
    })
    .await?;
    state.commit(tx).await?;
    let mut conn = state.db.pool().acquire().await?;
    let mut v = view(&mut conn, sb.object).await?;
    v.row.state = "removed".into();
    Ok(v)
}

/// The ingress application, if it may be staged into this sandbox: an approved (or already
/// staged) ingress of the sandbox's project. Other projects' applications are not found.
async fn stageable(state: &AppState, sb: &SandboxRow, app_id: &str) -> Result<AppRow> {
    let mut conn = state.db.pool().acquire().await?;
    // Another project's application answers as one that does not exist, before anything else
    // is said of it: its identifier tells the caller nothing.
    let app = store::application(&mut conn, app_id)
        .await?
        .filter(|a| a.project() == sb.project_id)
        .ok_or(Error::NotFound("application"))?;
    if app.kind != Kind::Ingress {
        return Err(Error::conflict(
            ErrorCode::NotIngress,
            format!("{app_id} is a {} application, not ingress", app.kind),
        ));
    }
    if !matches!(app.state, State::Approved | State::Staged) {
        return Err(Error::conflict(
            ErrorCode::NotApproved,
            format!("{app_id} is {}; only approved ingress is staged", app.state),
        ));
    }
    Ok(app)
}

/// A stored archive that is no longer what the committee approved: nothing of it is staged (the
/// caller removed it), the refusal is audited, and the caller is told (409 `archive_tampered`).
async fn refuse_tampered(
    state: &AppState,
    caller: &Caller,
    sb: &SandboxRow,
    app_id: &str,
    approved_sha256: &str,
    what: String,
) -> Error {
    tracing::error!(application = app_id, sandbox = %sb.id, what = %what, "a stored ingress archive was tampered with");
    let audited = async {
        let mut tx = state.db.begin_write().await?;
        tx.audit(NewEvent {
            actor: caller.sub.as_str(),
            action: "ingress.stage_refused",
            subject: app_id,
            detail: json!({
                "sandbox": sb.id,
                "reason": ErrorCode::ArchiveTampered,
                "archive_sha256": approved_sha256,
                "what": what,
            }),
        })
        .await?;
        state.commit(tx).await?;
        Ok::<(), Error>(())
    };
    if let Err(e) = audited.await {
        return e;
    }
    Error::conflict(
        ErrorCode::ArchiveTampered,
        format!(
            "the stored archive of {app_id} is no longer what the committee approved ({what}); nothing was staged, the refusal is in the audit log, and an operator should look at the gateway's data directory"
        ),
    )
}

/// Streams an approved archive into the sandbox, checks it on the way, records it; the
/// application becomes `staged` on its first staging.
async fn stage(
    state: &AppState,
    caller: &Caller,
    allowed: &Allowed,
    sb: &SandboxRow,
    app_id: &str,
) -> Result<()> {
    allowed.expect(Action::SandboxManage)?;
    let app = stageable(state, sb, app_id).await?;
    let (archive, manifest) = {
        let mut conn = state.db.pool().acquire().await?;
        let a = store::ingress::archive(&mut conn, app_id)
            .await?
            .ok_or(Error::NotFound("archive"))?;
        (a, store::ingress::entries(&mut conn, app_id).await?)
    };
    let blob = state.blobs.path_of(&archive.blob_sha256)?;
    let (rx, worker) = crate::ingress::restage::restage(blob, manifest);
    let stream =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|v| (v, rx)) });
    let spec = {
        let mut conn = state.db.pool().acquire().await?;
        crate::sandboxes::spec_of(state, &mut conn, sb).await?
    };
    let uploaded = state
        .sandboxes
        .backend
        .stage(&spec, app_id, Box::pin(stream))
        .await;
    let restaged = worker.await.map_err(|e| anyhow::anyhow!("staging: {e}"))?;
    // The archive was read once: its files checked against the manifest on the way, the whole
    // stored archive hashed as it was read. Anything short of a full match leaves nothing staged.
    let restaged = match (uploaded, restaged) {
        (Ok(()), Ok(r)) if r.source_sha256 == archive.blob_sha256 => r,
        (uploaded, restaged) => {
            let _ = state.sandboxes.backend.unstage(&sb.id, app_id).await;
            let tampered = match (uploaded, restaged) {
                (_, Err(e)) if e.is::<Tampered>() => e.to_string(),
                (Err(e), _) => return Err(Error::Engine(e)),
                (Ok(()), Err(e)) => {
                    return Err(Error::Internal(e.context(format!("staging {app_id}"))));
                }
                (Ok(()), Ok(r)) => format!(
                    "the stored archive's SHA-256 is {}, not the approved {}",
                    r.source_sha256, archive.blob_sha256
                ),
            };
            return Err(
                refuse_tampered(state, caller, sb, app_id, &archive.blob_sha256, tampered).await,
            );
        }
    };
    let now = crate::time::now();
    let mut tx = state.db.begin_write().await?;
    sstore::insert_staged(
        tx.conn(),
        &sb.id,
        app_id,
        &restaged.sha256,
        caller.sub.as_str(),
        &now,
    )
    .await?;
    tx.audit(NewEvent {
        actor: caller.sub.as_str(),
        action: "ingress.stage",
        subject: app_id,
        detail: json!({
            "sandbox": sb.id,
            "archive_sha256": archive.blob_sha256,
            "verified_sha256": restaged.source_sha256,
            "staged_sha256": restaged.sha256,
            "files": restaged.files,
            "bytes": restaged.bytes,
        }),
    })
    .await?;
    if app.state == State::Approved {
        let t = super::applications::step(state, &app, Event::Complete)?;
        if store::set_state(tx.conn(), app_id, t.from, t.to, app.round, None, &now).await? {
            tx.audit(NewEvent {
                actor: caller.sub.as_str(),
                action: "application.state",
                subject: app_id,
                detail: json!({"from": t.from.as_str(), "to": t.to.as_str(), "round": app.round, "sandbox": sb.id}),
            })
            .await?;
        }
    }
    state.commit(tx).await?;
    Ok(())
}

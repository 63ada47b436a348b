//! Images, sandboxes, staging and runs.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use policy::access::{Action, Standing};
use policy::review::{Event, Facts, Kind, State as AppStateName};
use serde_json::json;

use super::{ApiJson, ApiQuery, require, require_visible};
use crate::audit::NewEvent;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody, ErrorCode};
use crate::state::AppState;
use crate::store::sandboxes::{self as sstore, ImageRow, RunRow, SandboxRow};
use crate::store::{self};
use crate::wire::sandboxes::{
    AllowImage, Image, LogQuery, NewRun, NewSandbox, Run, RunOutcome, RunQuery, RunState, Sandbox,
    SandboxQuery, SandboxState, StageRequest, Staged,
};

fn engine(e: sandbox_runner::Error) -> ApiError {
    match e {
        sandbox_runner::Error::Unavailable(_) | sandbox_runner::Error::Timeout(_) => {
            ApiError::Refused {
                status: StatusCode::SERVICE_UNAVAILABLE,
                code: ErrorCode::EngineUnavailable,
                message: format!("{e}; the rest of the gateway keeps serving"),
            }
        }
        sandbox_runner::Error::Misconfigured(_) => ApiError::Refused {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: ErrorCode::EngineMisconfigured,
            message: e.to_string(),
        },
        other => ApiError::Internal(anyhow::anyhow!("container engine: {other}")),
    }
}

fn image_dto(i: ImageRow) -> Image {
    Image {
        name: i.name,
        image_id: i.image_id,
        size: i.size,
        allowed_by: i.allowed_by,
        allowed_at: i.allowed_at,
    }
}

/// Images sandboxes may use.
#[utoipa::path(get, path = "/api/v1/images", operation_id = "list_images", tag = "sandboxes", security(("bearer" = [])),
    responses((status = 200, body = Vec<Image>), (status = 401, body = ErrorBody)))]
pub async fn images(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<ApiJson<Vec<Image>>> {
    require(&caller, Action::ImageList, Standing::default())?;
    let mut conn = state.db.pool().acquire().await?;
    Ok(ApiJson(
        sstore::images(&mut conn)
            .await?
            .into_iter()
            .map(image_dto)
            .collect(),
    ))
}

/// Allows an image, pinned by its current ID; operators.
#[utoipa::path(post, path = "/api/v1/images", operation_id = "allow_image", tag = "sandboxes", security(("bearer" = [])), request_body = AllowImage,
    responses((status = 400, body = ErrorBody, description = "the request does not parse or breaks a rule"), (status = 200, body = Image), (status = 401, body = ErrorBody), (status = 413, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn allow_image(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<AllowImage>,
) -> ApiResult<ApiJson<Image>> {
    require(&caller, Action::ImageAllow, Standing::default())?;
    let name = body.name.trim();
    if name.is_empty()
        || name.len() > 255
        || name.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(ApiError::bad_request(
            ErrorCode::BadImage,
            "an image name has no spaces and at most 255 characters",
        ));
    }
    let info = state
        .sandboxes
        .backend
        .image(name)
        .await
        .map_err(engine)?
        .ok_or(ApiError::NotFound("image on the container engine"))?;
    let row = ImageRow {
        name: name.to_owned(),
        image_id: info.id.clone(),
        size: info.size,
        allowed_by: caller.sub.to_string(),
        allowed_at: crate::time::now(),
    };
    let mut tx = state.db.begin_write().await?;
    sstore::upsert_image(tx.conn(), &row).await?;
    tx.audit(NewEvent {
        actor: caller.sub.as_str(),
        action: "image.allow",
        subject: name,
        detail: json!({"image_id": info.id, "size": info.size, "tags": info.tags}),
    })
    .await?;
    state.commit(tx).await?;
    Ok(ApiJson(image_dto(row)))
}

async fn sandbox_dto(conn: &mut sqlx::AnyConnection, s: SandboxRow) -> ApiResult<Sandbox> {
    let staged = sstore::staged(conn, &s.id).await?;
    let datasets = sstore::datasets(conn, &s.id).await?;
    Ok(Sandbox {
        ingress: staged
            .into_iter()
            .map(|(application, staged_sha256, staged_at)| Staged {
                application,
                staged_sha256,
                staged_at,
            })
            .collect(),
        datasets: datasets.into_iter().map(|(d, _)| d).collect(),
        id: s.id,
        project: s.project_id,
        image: s.image_name,
        image_id: s.image_id,
        resource_class: s.resource_class,
        // The gateway stores only the states it knows.
        state: s.state.parse().unwrap_or(SandboxState::Ready),
        created_by: s.created_by,
        created_at: s.created_at,
    })
}

async fn standing_in(state: &AppState, project: &str, caller: &Caller) -> ApiResult<Standing> {
    let mut conn = state.db.pool().acquire().await?;
    Ok(Standing {
        member_roles: store::member_roles(&mut conn, project, caller.sub.as_str()).await?,
        is_requester: false,
    })
}

/// Creates a sandbox (its volumes), and stages the approved ingress asked for.
#[utoipa::path(post, path = "/api/v1/sandboxes", operation_id = "create_sandbox", tag = "sandboxes", security(("bearer" = [])), request_body = NewSandbox,
    responses((status = 201, body = Sandbox), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 503, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<NewSandbox>,
) -> ApiResult<(StatusCode, ApiJson<Sandbox>)> {
    let standing = standing_in(&state, &body.project, &caller).await?;
    require(&caller, Action::SandboxCreate, standing)?;
    let class = body
        .class
        .clone()
        .unwrap_or_else(|| state.sandboxes.settings().default_class.clone());
    if state.sandboxes.class(&class).is_none() {
        return Err(ApiError::bad_request(
            ErrorCode::BadClass,
            format!("no resource class `{class}`"),
        ));
    }
    let mut datasets = Vec::new();
    for d in &body.datasets {
        let path = state.sandboxes.settings().datasets.get(d).ok_or_else(|| {
            ApiError::bad_request(
                ErrorCode::BadDataset,
                format!("no dataset `{d}` is configured"),
            )
        })?;
        datasets.push((d.clone(), path.display().to_string()));
    }
    let image = {
        let mut conn = state.db.pool().acquire().await?;
        if store::project(&mut conn, &body.project).await?.is_none() {
            return Err(ApiError::NotFound("project"));
        }
        sstore::image(&mut conn, &body.image)
            .await?
            .ok_or_else(|| {
                ApiError::bad_request(
                    ErrorCode::ImageNotAllowed,
                    format!("`{}` is not an allowed image", body.image),
                )
            })?
    };
    let row = SandboxRow {
        id: store::new_id("sbx"),
        project_id: body.project.clone(),
        image_name: image.name.clone(),
        image_id: image.image_id.clone(),
        resource_class: class,
        state: "ready".into(),
        created_by: caller.sub.to_string(),
        created_at: crate::time::now(),
        removed_at: None,
    };
    // Check what is asked to be staged before creating anything.
    for app in &body.ingress {
        stageable(&state, &row, app).await?;
    }
    let spec = {
        let mut conn = state.db.pool().acquire().await?;
        let mut spec = crate::sandboxes::spec_of(&state, &mut conn, &row).await?;
        spec.datasets = datasets
            .iter()
            .map(|(id, p)| sandbox_runner::DatasetMount {
                id: id.clone(),
                host_path: p.clone(),
            })
            .collect();
        spec
    };
    state
        .sandboxes
        .backend
        .prepare(&spec)
        .await
        .map_err(engine)?;
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
            "datasets": body.datasets,
        }),
    })
    .await?;
    state.commit(tx).await?;
    for app in &body.ingress {
        stage(&state, &caller, &row, app).await?;
    }
    crate::sandboxes::ready_next(&state, &row.id).await;
    let mut conn = state.db.pool().acquire().await?;
    Ok((
        StatusCode::CREATED,
        ApiJson(sandbox_dto(&mut conn, row).await?),
    ))
}

/// The ingress application, if it may be staged into this sandbox.
async fn stageable(state: &AppState, sb: &SandboxRow, app_id: &str) -> ApiResult<store::AppRow> {
    let mut conn = state.db.pool().acquire().await?;
    let app = store::application(&mut conn, app_id)
        .await?
        .ok_or(ApiError::NotFound("application"))?;
    if app.kind != Kind::Ingress {
        return Err(ApiError::conflict(
            ErrorCode::NotIngress,
            format!("{app_id} is a {} application, not ingress", app.kind),
        ));
    }
    if app.project_id != sb.project_id {
        return Err(ApiError::ForbiddenCode {
            code: ErrorCode::OtherProject,
            message: format!("{app_id} belongs to another project than the sandbox"),
        });
    }
    if !matches!(app.state, AppStateName::Approved | AppStateName::Staged) {
        return Err(ApiError::conflict(
            ErrorCode::NotApproved,
            format!("{app_id} is {}; only approved ingress is staged", app.state),
        ));
    }
    Ok(app)
}

/// Streams an approved archive into the sandbox, checks it, records it.
async fn stage(state: &AppState, caller: &Caller, sb: &SandboxRow, app_id: &str) -> ApiResult<()> {
    let app = stageable(state, sb, app_id).await?;
    let (archive, manifest) = {
        let mut conn = state.db.pool().acquire().await?;
        let a = store::ingress(&mut conn, app_id)
            .await?
            .ok_or(ApiError::NotFound("archive"))?;
        (a, store::entries(&mut conn, app_id).await?)
    };
    let blob = state.blobs.path_of(&archive.blob_sha256)?;
    let (rx, worker) = crate::ingress::restage(blob, manifest);
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
            return Err(match (uploaded, restaged) {
                (_, Err(e)) => ApiError::Internal(e.context(format!("staging {app_id}"))),
                (Err(e), Ok(_)) => engine(e),
                (Ok(()), Ok(_)) => ApiError::Internal(anyhow::anyhow!(
                    "the stored archive of {app_id} no longer has its approved SHA-256"
                )),
            });
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
    if app.state == AppStateName::Approved {
        let facts = Facts {
            kind: app.kind,
            state: app.state,
            requester: &app.requester,
            votes: &[],
            conflicted: &[],
        };
        let t = policy::review::next_state(&facts, &state.quorum, Event::Complete)?;
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

/// Stages one more approved ingress application into a sandbox.
#[utoipa::path(post, path = "/api/v1/sandboxes/{id}/ingress", operation_id = "stage_ingress", tag = "sandboxes", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = StageRequest,
    responses((status = 400, body = ErrorBody, description = "the request does not parse or breaks a rule"), (status = 200, body = Sandbox), (status = 401, body = ErrorBody), (status = 413, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn stage_ingress(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<StageRequest>,
) -> ApiResult<ApiJson<Sandbox>> {
    let sb = visible_sandbox(&state, &caller, &id).await?;
    let standing = standing_in(&state, &sb.project_id, &caller).await?;
    require(&caller, Action::SandboxManage, standing)?;
    stage(&state, &caller, &sb, &body.application).await?;
    crate::sandboxes::ready_next(&state, &sb.id).await;
    let mut conn = state.db.pool().acquire().await?;
    Ok(ApiJson(sandbox_dto(&mut conn, sb).await?))
}

async fn visible_sandbox(state: &AppState, caller: &Caller, id: &str) -> ApiResult<SandboxRow> {
    let mut conn = state.db.pool().acquire().await?;
    let sb = sstore::sandbox(&mut conn, id).await?;
    let member_roles = match &sb {
        Some(s) => store::member_roles(&mut conn, &s.project_id, caller.sub.as_str()).await?,
        None => Default::default(),
    };
    require_visible(
        caller,
        Action::SandboxRead,
        Standing {
            member_roles,
            is_requester: false,
        },
        "sandbox",
    )?;
    match sb {
        Some(s) if s.state != "removed" => Ok(s),
        _ => Err(ApiError::NotFound("sandbox")),
    }
}

/// Sandboxes the caller may see.
#[utoipa::path(get, path = "/api/v1/sandboxes", operation_id = "list_sandboxes", tag = "sandboxes", security(("bearer" = [])), params(SandboxQuery),
    responses((status = 400, body = ErrorBody, description = "the request does not parse or breaks a rule"), (status = 200, body = Vec<Sandbox>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<SandboxQuery>,
) -> ApiResult<ApiJson<Vec<Sandbox>>> {
    require(&caller, Action::ImageList, Standing::default())?;
    let mut conn = state.db.pool().acquire().await?;
    use policy::roles::Role;
    let everyone = [Role::Operator, Role::Auditor, Role::Admin]
        .iter()
        .any(|r| caller.roles.contains(*r));
    let narrow = (!everyone).then(|| caller.sub.as_str());
    let rows = sstore::sandboxes(&mut conn, q.project.as_deref(), narrow).await?;
    let mut out = Vec::new();
    for r in rows {
        out.push(sandbox_dto(&mut conn, r).await?);
    }
    Ok(ApiJson(out))
}

/// One sandbox.
#[utoipa::path(get, path = "/api/v1/sandboxes/{id}", operation_id = "get_sandbox", tag = "sandboxes", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = Sandbox), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<ApiJson<Sandbox>> {
    let sb = visible_sandbox(&state, &caller, &id).await?;
    let mut conn = state.db.pool().acquire().await?;
    Ok(ApiJson(sandbox_dto(&mut conn, sb).await?))
}

/// Removes a sandbox and its volumes (its work area and outputs are gone after this).
#[utoipa::path(delete, path = "/api/v1/sandboxes/{id}", operation_id = "remove_sandbox", tag = "sandboxes", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = Sandbox), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<ApiJson<Sandbox>> {
    let sb = visible_sandbox(&state, &caller, &id).await?;
    let standing = standing_in(&state, &sb.project_id, &caller).await?;
    require(&caller, Action::SandboxManage, standing)?;
    {
        let mut conn = state.db.pool().acquire().await?;
        if sstore::runs_of(&mut conn, &id)
            .await?
            .iter()
            .any(|r| r.state != "finished")
        {
            return Err(ApiError::conflict(
                ErrorCode::RunsActive,
                "the sandbox has runs that have not finished",
            ));
        }
    }
    state
        .sandboxes
        .backend
        .remove_sandbox(&id)
        .await
        .map_err(engine)?;
    let mut tx = state.db.begin_write().await?;
    sstore::set_sandbox_state(tx.conn(), &id, "removed", &crate::time::now()).await?;
    tx.audit(NewEvent {
        actor: caller.sub.as_str(),
        action: "sandbox.remove",
        subject: &id,
        detail: json!({"project": sb.project_id}),
    })
    .await?;
    state.commit(tx).await?;
    let mut conn = state.db.pool().acquire().await?;
    let mut dto = sandbox_dto(&mut conn, sb).await?;
    dto.state = SandboxState::Removed;
    Ok(ApiJson(dto))
}

fn run_dto(r: RunRow) -> Run {
    Run {
        id: r.id,
        sandbox: r.sandbox_id,
        project: r.project_id,
        requester: r.requester,
        cmd: r.cmd,
        timeout_secs: r.timeout_secs,
        // The gateway stores only the states and outcomes it knows.
        state: r.state.parse().unwrap_or(RunState::Finished),
        outcome: r.outcome.map(|o| o.parse().unwrap_or(RunOutcome::Failed)),
        exit_code: r.exit_code,
        detail: r.detail,
        created_at: r.created_at,
        started_at: r.started_at,
        finished_at: r.finished_at,
        log_bytes: r.log_bytes,
        log_sha256: r.log_sha256,
        log_truncated: r.log_truncated.map(|t| t != 0),
        cancelled_by: r.cancelled_by,
    }
}

/// Runs a command in a fresh hardened container of the sandbox; queued when slots are full.
#[utoipa::path(post, path = "/api/v1/sandboxes/{id}/runs", operation_id = "create_run", tag = "sandboxes", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = NewRun,
    responses((status = 202, body = Run), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn create_run(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<NewRun>,
) -> ApiResult<(StatusCode, ApiJson<Run>)> {
    let sb = visible_sandbox(&state, &caller, &id).await?;
    let standing = standing_in(&state, &sb.project_id, &caller).await?;
    require(&caller, Action::RunCreate, standing)?;
    if body.cmd.is_empty() || body.cmd[0].is_empty() {
        return Err(ApiError::bad_request(
            ErrorCode::BadCommand,
            "a run needs a command",
        ));
    }
    let total: usize = body.cmd.iter().map(|a| a.len() + 1).sum();
    if body.cmd.len() > 1024 || total > 128 * 1024 || body.cmd.iter().any(|a| a.contains('\0')) {
        return Err(ApiError::bad_request(
            ErrorCode::BadCommand,
            "at most 1024 arguments, 128 KiB in all, no NUL bytes",
        ));
    }
    let class = state
        .sandboxes
        .class(&sb.resource_class)
        .cloned()
        .ok_or_else(|| {
            ApiError::Internal(anyhow::anyhow!(
                "the sandbox's class {} is not configured",
                sb.resource_class
            ))
        })?;
    let timeout = body.timeout_secs.unwrap_or(class.max_run_secs);
    if timeout == 0 || timeout > class.max_run_secs {
        return Err(ApiError::bad_request(
            ErrorCode::BadTimeout,
            format!(
                "the timeout must be between 1 and {} seconds for class {}",
                class.max_run_secs, sb.resource_class
            ),
        ));
    }
    let row = RunRow {
        id: store::new_id("run"),
        sandbox_id: sb.id.clone(),
        project_id: sb.project_id.clone(),
        requester: caller.sub.to_string(),
        cmd: body.cmd.clone(),
        timeout_secs: timeout as i64,
        state: "queued".into(),
        outcome: None,
        exit_code: None,
        detail: None,
        container_id: None,
        created_at: crate::time::now(),
        started_at: None,
        finished_at: None,
        log_bytes: None,
        log_sha256: None,
        log_truncated: None,
        cancelled_by: None,
    };
    let mut tx = state.db.begin_write().await?;
    sstore::insert_run(tx.conn(), &row).await?;
    tx.audit(NewEvent {
        actor: caller.sub.as_str(),
        action: "run.create",
        subject: &row.id,
        detail: json!({"sandbox": sb.id, "cmd": row.cmd, "timeout_secs": timeout, "image_id": sb.image_id}),
    })
    .await?;
    state.commit(tx).await?;
    tokio::spawn(crate::sandboxes::supervise(
        state.clone(),
        row.clone(),
        false,
    ));
    Ok((StatusCode::ACCEPTED, ApiJson(run_dto(row))))
}

/// The runs of a sandbox.
#[utoipa::path(get, path = "/api/v1/sandboxes/{id}/runs", operation_id = "list_runs", tag = "sandboxes", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = Vec<Run>), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn runs(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<ApiJson<Vec<Run>>> {
    visible_sandbox(&state, &caller, &id).await?;
    let mut conn = state.db.pool().acquire().await?;
    Ok(ApiJson(
        sstore::runs_of(&mut conn, &id)
            .await?
            .into_iter()
            .map(run_dto)
            .collect(),
    ))
}

async fn visible_run(state: &AppState, caller: &Caller, id: &str) -> ApiResult<(RunRow, Standing)> {
    let mut conn = state.db.pool().acquire().await?;
    let run = sstore::run(&mut conn, id).await?;
    let member_roles = match &run {
        Some(r) => store::member_roles(&mut conn, &r.project_id, caller.sub.as_str()).await?,
        None => Default::default(),
    };
    let standing = Standing {
        member_roles,
        is_requester: false,
    };
    require_visible(caller, Action::SandboxRead, standing, "run")?;
    Ok((run.ok_or(ApiError::NotFound("run"))?, standing))
}

/// The longest a client may hold a status request open.
const MAX_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// One run: its state, outcome and times; with `wait`, once it has ended.
#[utoipa::path(get, path = "/api/v1/runs/{id}", operation_id = "get_run", tag = "sandboxes", security(("bearer" = [])),
    params(("id" = String, Path), RunQuery),
    responses((status = 400, body = ErrorBody, description = "the request does not parse or breaks a rule"), (status = 200, body = Run), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn show_run(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<RunQuery>,
) -> ApiResult<ApiJson<Run>> {
    let run = visible_run(&state, &caller, &id).await?.0;
    let wait = std::time::Duration::from_secs(q.wait.unwrap_or(0)).min(MAX_WAIT);
    if wait.is_zero() || run.state == "finished" {
        return Ok(ApiJson(run_dto(run)));
    }
    state.sandboxes.wait_done(&run.id, wait).await;
    Ok(ApiJson(run_dto(visible_run(&state, &caller, &id).await?.0)))
}

/// Cancels a run: a queued one ends before it starts, a running one is killed; it is recorded
/// as `cancelled`, with who asked. The project's analysts and operators may; asking again
/// while it stops changes nothing.
#[utoipa::path(post, path = "/api/v1/runs/{id}/cancel", operation_id = "cancel_run", tag = "sandboxes", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 202, body = Run, description = "the cancellation is recorded; the run stops"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "the run has already finished")))]
pub async fn cancel_run(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, ApiJson<Run>)> {
    let (run, standing) = visible_run(&state, &caller, &id).await?;
    require(&caller, Action::RunCancel, standing)?;
    let mut tx = state.db.begin_write().await?;
    if sstore::request_cancel(tx.conn(), &run.id, caller.sub.as_str()).await? {
        tx.audit(NewEvent {
            actor: caller.sub.as_str(),
            action: "run.cancel",
            subject: &run.id,
            detail: json!({"sandbox": run.sandbox_id, "project": run.project_id, "state": run.state}),
        })
        .await?;
        state.commit(tx).await?;
        state.sandboxes.wake_to_cancel(&run.id);
    } else {
        drop(tx);
    }
    let mut conn = state.db.pool().acquire().await?;
    let now = sstore::run(&mut conn, &run.id)
        .await?
        .ok_or(ApiError::NotFound("run"))?;
    if now.state == "finished" && now.cancelled_by.is_none() {
        return Err(ApiError::conflict(
            ErrorCode::RunFinished,
            format!(
                "the run has already finished ({})",
                now.outcome.as_deref().unwrap_or("")
            ),
        ));
    }
    Ok((StatusCode::ACCEPTED, ApiJson(run_dto(now))))
}

/// Waits for the next change of a live run's progress; a run whose supervisor is gone counts
/// as ended.
async fn next_progress(
    live: &mut Option<tokio::sync::watch::Receiver<crate::sandboxes::Progress>>,
) {
    if let Some(l) = live {
        if l.changed().await.is_err() {
            *live = None;
        }
    }
}

/// A run's output (stdout and stderr), capped; the project's analysts only.
#[utoipa::path(get, path = "/api/v1/runs/{id}/logs", operation_id = "get_run_logs", tag = "sandboxes", security(("bearer" = [])),
    params(("id" = String, Path), LogQuery),
    responses((status = 400, body = ErrorBody, description = "the request does not parse or breaks a rule"), (status = 200, description = "the run's output", content_type = "application/octet-stream"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn logs(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<LogQuery>,
) -> ApiResult<(
    StatusCode,
    [(axum::http::HeaderName, &'static str); 1],
    Body,
)> {
    let (run, standing) = visible_run(&state, &caller, &id).await?;
    require(&caller, Action::RunLogs, standing)?;
    let path = state.sandboxes.log_path(&run.id);
    let live = state.sandboxes.live(&run.id);
    let follow = q.follow;
    struct Tail {
        file: Option<tokio::fs::File>,
        path: std::path::PathBuf,
        /// Followed while the run is live: each change of its progress wakes the follower.
        live: Option<tokio::sync::watch::Receiver<crate::sandboxes::Progress>>,
        done: bool,
    }
    let tail = Tail {
        file: None,
        path,
        live: live.filter(|_| follow),
        done: false,
    };
    let stream = futures_util::stream::unfold(tail, |mut t| async move {
        use tokio::io::AsyncReadExt;
        if t.done {
            return None;
        }
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            // Seen before reading: a change after this wakes the wait below.
            let ended = t.live.as_mut().is_none_or(|l| l.borrow_and_update().done);
            if t.file.is_none() {
                match tokio::fs::File::open(&t.path).await {
                    Ok(f) => t.file = Some(f),
                    Err(_) if !ended => {
                        next_progress(&mut t.live).await;
                        continue;
                    }
                    Err(_) => return None,
                }
            }
            let f = t.file.as_mut().expect("opened above");
            match f.read(&mut buf).await {
                Ok(0) if !ended => next_progress(&mut t.live).await,
                Ok(0) if t.live.is_some() => {
                    // The run just ended: read what was written last, then stop.
                    t.live = None;
                }
                Ok(0) => return None,
                Ok(n) => {
                    buf.truncate(n);
                    return Some((Ok::<_, std::io::Error>(axum::body::Bytes::from(buf)), t));
                }
                Err(e) => {
                    t.done = true;
                    return Some((Err(e), t));
                }
            }
        }
    });
    Ok((
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, "application/octet-stream")],
        Body::from_stream(stream),
    ))
}

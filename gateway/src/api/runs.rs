//! Runs: started in a sandbox, read, awaited, followed, cancelled. The workflows are in
//! [`crate::service::runs`].

use axum::body::Body;
use axum::extract::Path;
use axum::http::StatusCode;

use super::{ApiJson, ApiQuery, Cx, Paged};
use crate::error::{ApiResult, ErrorBody};
use crate::service::runs as svc;
use crate::store::sandboxes::RunRow;
use crate::wire::PageQuery;
use crate::wire::sandboxes::{LogQuery, NewRun, Run, RunOutcome, RunQuery, RunState};

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
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 429, body = ErrorBody, description = "the project's queue of runs is full (queue_full)")))]
pub async fn create_run(
    cx: Cx,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<NewRun>,
) -> ApiResult<(StatusCode, ApiJson<Run>)> {
    let new = svc::NewRun {
        cmd: body.cmd,
        timeout_secs: body.timeout_secs,
    };
    let run = svc::create(&cx.state, &cx.caller, &id, new).await?;
    Ok((StatusCode::ACCEPTED, ApiJson(run_dto(run))))
}

/// The runs of a sandbox.
#[utoipa::path(get, path = "/api/v1/sandboxes/{id}/runs", operation_id = "list_runs", tag = "sandboxes", security(("bearer" = [])),
    params(("id" = String, Path), PageQuery),
    responses((status = 200, body = Vec<Run>, headers(("x-next-cursor" = String, description = "the cursor of the next page, when there is one"))), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn runs(
    cx: Cx,
    Path(id): Path<String>,
    ApiQuery(p): ApiQuery<PageQuery>,
) -> ApiResult<Paged<Run>> {
    let page = svc::of_sandbox(&cx.state, &cx.caller, &id, &super::page_ask(p)).await?;
    Ok(super::paged(page, run_dto))
}

/// One run: its state, outcome and times; with `wait`, once it has ended.
#[utoipa::path(get, path = "/api/v1/runs/{id}", operation_id = "get_run", tag = "sandboxes", security(("bearer" = [])),
    params(("id" = String, Path), RunQuery),
    responses((status = 400, body = ErrorBody, description = "the request does not parse or breaks a rule"), (status = 200, body = Run), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn show_run(
    cx: Cx,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<RunQuery>,
) -> ApiResult<ApiJson<Run>> {
    let wait = std::time::Duration::from_secs(q.wait.unwrap_or(0));
    Ok(ApiJson(run_dto(
        svc::show(&cx.state, &cx.caller, &id, wait).await?,
    )))
}

/// Cancels a run: a queued one ends before it starts, a running one is killed; it is recorded
/// as `cancelled`, with who asked. The project's analysts and operators may; asking again
/// while it stops changes nothing.
#[utoipa::path(post, path = "/api/v1/runs/{id}/cancel", operation_id = "cancel_run", tag = "sandboxes", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 202, body = Run, description = "the cancellation is recorded; the run stops"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "the run has already finished")))]
pub async fn cancel_run(cx: Cx, Path(id): Path<String>) -> ApiResult<(StatusCode, ApiJson<Run>)> {
    let run = svc::cancel(&cx.state, &cx.caller, &id).await?;
    Ok((StatusCode::ACCEPTED, ApiJson(run_dto(run))))
}

/// A run's output (stdout and stderr), capped; the project's analysts only.
#[utoipa::path(get, path = "/api/v1/runs/{id}/logs", operation_id = "get_run_logs", tag = "sandboxes", security(("bearer" = [])),
    params(("id" = String, Path), LogQuery),
    responses((status = 400, body = ErrorBody, description = "the request does not parse or breaks a rule"), (status = 200, description = "the run's output", content_type = "application/octet-stream"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn logs(
    cx: Cx,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<LogQuery>,
) -> ApiResult<(
    StatusCode,
    [(axum::http::HeaderName, &'static str); 1],
    Body,
)> {
    let stream = svc::logs(&cx.state, &cx.caller, &id, q.follow).await?;
    Ok((
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, "application/octet-stream")],
        Body::from_stream(stream),
    ))
}

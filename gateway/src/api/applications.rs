//! Applications to the committee: the routes every kind shares. The workflows are in
//! [`crate::service::applications`]; these parse, call one, and shape the answer.

use axum::body::Body;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use base64::Engine as _;
use policy::review::{Choice, Kind};

use super::{ApiJson, ApiQuery, Cx, Paged};
use crate::error::{ApiError, ApiResult, ErrorBody, ErrorCode};
use crate::service::applications::{self as svc, AttachmentKind, Summary};
use crate::state::AppState;
use crate::store::access::{ConditionRow, GrantRow};
use crate::store::{AttachmentRow, DecisionRow};
use crate::wire::PageQuery;
use crate::wire::applications::{
    Application, ApplicationDetail, Attachment, Conditions, Decision, Grant, ListQuery,
    NewApplication, NewAttachment, NewDecision, Resubmission, Withdrawal,
};
use crate::wire::sandboxes::LogVisibility;

pub(crate) fn app_summary(state: &AppState, s: Summary) -> Application {
    let approvals = svc::approvals(&s);
    let a = s.row;
    Application {
        quorum: state.quorum.get(a.kind),
        approvals,
        payload: serde_json::from_str(&a.payload).unwrap_or(serde_json::Value::Null),
        id: a.id,
        kind: a.kind.into(),
        project: a.project_id,
        dataset: a.dataset_id,
        requester: a.requester,
        title: a.title,
        description: a.description,
        state: a.state.into(),
        round: a.round,
        created_at: a.created_at,
        updated_at: a.updated_at,
    }
}

/// A new application has no votes yet.
pub(crate) fn new_app_summary(state: &AppState, row: crate::store::AppRow) -> Application {
    app_summary(
        state,
        Summary {
            row,
            decisions: Vec::new(),
        },
    )
}

fn decision_dto(d: DecisionRow, conditions: &[ConditionRow]) -> Decision {
    let conditions = conditions
        .iter()
        .find(|c| c.round == d.round && c.reviewer == d.reviewer)
        .map(|c| Conditions {
            until: c.until.clone(),
            commercial: c.no_commercial.then_some(false),
            logs: c.logs_hidden.then_some(LogVisibility::Hidden),
        });
    Decision {
        round: d.round,
        reviewer: d.reviewer,
        decision: d.choice.into(),
        comment: d.comment,
        decided_at: d.decided_at,
        conditions,
    }
}

pub(crate) fn grant_dto(g: GrantRow) -> Grant {
    Grant {
        application: g.application_id,
        project: g.project_id,
        dataset: g.dataset_id,
        until: g.until,
        commercial: g.commercial,
        logs: if g.logs_hidden {
            LogVisibility::Hidden
        } else {
            LogVisibility::Visible
        },
        granted_at: g.granted_at,
        revoked_at: g.revoked_at,
    }
}

/// The conditions of a decision body, as the service takes them.
fn conditions_of(c: Option<Conditions>) -> Option<crate::service::access::Conditions> {
    c.map(|c| crate::service::access::Conditions {
        until: c.until,
        commercial: c.commercial,
        logs_hidden: c.logs.map(|l| l == LogVisibility::Hidden),
    })
}

fn attachment_dto(a: AttachmentRow) -> Attachment {
    Attachment {
        id: a.id,
        // The gateway stores only the kinds it accepted.
        kind: a
            .kind
            .parse()
            .unwrap_or(crate::wire::applications::AttachmentKind::CommitteeOpinion),
        author: a.author,
        text: a.body,
        file_name: a.file_name,
        file_sha256: a.file_sha256,
        file_size: a.file_size,
        created_at: a.created_at,
    }
}

/// Applications the caller may see, newest first, with filters; a page at a time.
#[utoipa::path(get, path = "/api/v1/applications", operation_id = "list_applications", tag = "applications", security(("bearer" = [])), params(ListQuery, PageQuery),
    responses((status = 200, body = Vec<Application>, headers(("x-next-cursor" = String, description = "the cursor of the next page, when there is one"))),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn list(
    cx: Cx,
    ApiQuery(q): ApiQuery<ListQuery>,
    ApiQuery(p): ApiQuery<PageQuery>,
) -> ApiResult<Paged<Application>> {
    let filter = svc::ListFilter {
        kind: q.kind.as_deref().map(str::parse).transpose().map_err(
            |e: policy::review::UnknownKind| {
                ApiError::bad_request(ErrorCode::BadFilter, e.to_string())
            },
        )?,
        state: q.state.as_deref().map(str::parse).transpose().map_err(
            |e: policy::review::UnknownState| {
                ApiError::bad_request(ErrorCode::BadFilter, e.to_string())
            },
        )?,
        project: q.project,
        requester: q.requester,
        page: super::page_ask(p),
    };
    let page = svc::list(&cx.state, &cx.caller, filter).await?;
    Ok(super::paged(page, |a| app_summary(&cx.state, a)))
}

/// Applies to the committee.
#[utoipa::path(post, path = "/api/v1/applications", operation_id = "create_application", tag = "applications", security(("bearer" = [])),
    request_body = NewApplication,
    responses((status = 201, body = Application), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn create(
    cx: Cx,
    ApiJson(body): ApiJson<NewApplication>,
) -> ApiResult<(StatusCode, ApiJson<Application>)> {
    let kind: Kind = body
        .kind
        .parse()
        .map_err(|e: policy::review::UnknownKind| {
            ApiError::bad_request(ErrorCode::BadKind, e.to_string())
        })?;
    let new = svc::NewApplication {
        kind,
        project: body.project,
        title: body.title,
        description: body.description,
        payload: body.payload,
    };
    let row = svc::create(&cx.state, &cx.caller, new).await?;
    Ok((
        StatusCode::CREATED,
        ApiJson(new_app_summary(&cx.state, row)),
    ))
}

/// One application with its votes and attachments.
#[utoipa::path(get, path = "/api/v1/applications/{id}", operation_id = "get_application", tag = "applications", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = ApplicationDetail), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn show(cx: Cx, Path(id): Path<String>) -> ApiResult<ApiJson<ApplicationDetail>> {
    let d = svc::show(&cx.state, &cx.caller, &id).await?;
    let summary = Summary {
        row: d.row,
        decisions: d.decisions,
    };
    Ok(ApiJson(ApplicationDetail {
        decisions: summary
            .decisions
            .iter()
            .cloned()
            .map(|x| decision_dto(x, &d.conditions))
            .collect(),
        application: app_summary(&cx.state, summary),
        attachments: d.attachments.into_iter().map(attachment_dto).collect(),
        checks: d
            .checks
            .into_iter()
            .map(super::ingress::check_dto)
            .collect(),
        grants: d.grants.into_iter().map(grant_dto).collect(),
    }))
}

/// Votes on an application: approve, reject or request changes; reviewers, never on their own
/// project's applications, once per round. An approval of an access application may carry
/// conditions that tighten what it asks (400 `bad_conditions` otherwise).
#[utoipa::path(post, path = "/api/v1/applications/{id}/decisions", operation_id = "decide_application", tag = "applications", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = NewDecision,
    responses((status = 200, body = Application), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn decide(
    cx: Cx,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<NewDecision>,
) -> ApiResult<ApiJson<Application>> {
    let choice: Choice = body
        .decision
        .parse()
        .map_err(|e: policy::review::UnknownChoice| {
            ApiError::bad_request(ErrorCode::BadDecision, e.to_string())
        })?;
    let conditions = conditions_of(body.conditions);
    let s = svc::decide(
        &cx.state,
        &cx.caller,
        &id,
        choice,
        &body.comment,
        conditions,
    )
    .await?;
    Ok(ApiJson(app_summary(&cx.state, s)))
}

/// Takes one's own application back.
#[utoipa::path(post, path = "/api/v1/applications/{id}/withdraw", operation_id = "withdraw_application", tag = "applications", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = Withdrawal,
    responses((status = 400, body = ErrorBody, description = "the request does not parse or breaks a rule"), (status = 200, body = Application), (status = 401, body = ErrorBody), (status = 413, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn withdraw(
    cx: Cx,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<Withdrawal>,
) -> ApiResult<ApiJson<Application>> {
    let s = svc::withdraw(&cx.state, &cx.caller, &id, &body.comment).await?;
    Ok(ApiJson(app_summary(&cx.state, s)))
}

/// Answers a request for changes; opens a new round of votes.
#[utoipa::path(post, path = "/api/v1/applications/{id}/resubmit", operation_id = "resubmit_application", tag = "applications", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = Resubmission,
    responses((status = 200, body = Application), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn resubmit(
    cx: Cx,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<Resubmission>,
) -> ApiResult<ApiJson<Application>> {
    let s = svc::resubmit(
        &cx.state,
        &cx.caller,
        &id,
        &body.comment,
        body.description.as_deref(),
    )
    .await?;
    Ok(ApiJson(app_summary(&cx.state, s)))
}

/// Attaches an institution's review result or a committee opinion, with an optional file.
#[utoipa::path(post, path = "/api/v1/applications/{id}/attachments", operation_id = "attach_to_application", tag = "applications", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = NewAttachment,
    responses((status = 201, body = Attachment), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 503, body = ErrorBody, description = "too many uploads at once (busy)")))]
pub async fn attach(
    cx: Cx,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<NewAttachment>,
) -> ApiResult<(StatusCode, ApiJson<Attachment>)> {
    let kind: AttachmentKind = body.kind.parse()?;
    let file = match (body.file_name, body.file_base64) {
        (Some(name), Some(b64)) => {
            let max = cx.state.settings.limits.attachment_max_bytes;
            // Refused before decoding: base64 is 4 characters for every 3 bytes.
            if (b64.len() as u64) / 4 * 3 > max + 3 {
                return Err(ApiError::TooLarge(format!(
                    "attachments are limited to {max} bytes"
                )));
            }
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|_| {
                    ApiError::bad_request(ErrorCode::BadFile, "file_base64 is not valid base64")
                })?;
            Some((name, bytes))
        }
        (None, None) => None,
        _ => {
            return Err(ApiError::bad_request(
                ErrorCode::BadFile,
                "file_name and file_base64 come together",
            ));
        }
    };
    let new = svc::NewAttachment {
        kind,
        text: body.text,
        file,
    };
    let row = svc::attach(&cx.state, &cx.caller, &id, new).await?;
    Ok((StatusCode::CREATED, ApiJson(attachment_dto(row))))
}

/// Downloads an attachment's file. Every read is audited.
#[utoipa::path(get, path = "/api/v1/applications/{id}/attachments/{attachment}/file", operation_id = "get_attachment_file", tag = "applications",
    security(("bearer" = [])), params(("id" = String, Path), ("attachment" = String, Path)),
    responses((status = 200, description = "the file", content_type = "application/octet-stream"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn attachment_file(
    cx: Cx,
    Path((id, attachment)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    let f = svc::attachment_file(&cx.state, &cx.caller, &id, &attachment).await?;
    let disposition = format!(
        "attachment; filename=\"{}\"",
        f.name.replace(['"', '\\'], "_")
    );
    Ok((
        [
            (
                axum::http::header::CONTENT_TYPE,
                "application/octet-stream".to_owned(),
            ),
            (axum::http::header::CONTENT_DISPOSITION, disposition),
            (
                axum::http::HeaderName::from_static("x-content-sha256"),
                f.sha256,
            ),
        ],
        Body::from_stream(file_stream(f.file)),
    ))
}

/// A file as a stream of chunks, so large files are never held in memory.
/// Ends after the first error.
pub(crate) fn file_stream(
    file: tokio::fs::File,
) -> impl futures_util::Stream<Item = std::io::Result<axum::body::Bytes>> + Send + 'static {
    futures_util::stream::unfold(Some(file), |f| async move {
        use tokio::io::AsyncReadExt;
        let mut f = f?;
        let mut buf = vec![0u8; 64 * 1024];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(axum::body::Bytes::from(buf)), Some(f)))
            }
            Err(e) => Some((Err(e), None)),
        }
    })
}

/// Revokes an approved access application: its access ends at once and live runs that mount
/// its datasets are stopped. Admins.
#[utoipa::path(post, path = "/api/v1/applications/{id}/access/revoke", operation_id = "revoke_access", tag = "applications", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = crate::wire::egress::Revocation,
    responses((status = 200, body = crate::wire::applications::AccessRevoked), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn revoke_access(
    cx: Cx,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<crate::wire::egress::Revocation>,
) -> ApiResult<ApiJson<crate::wire::applications::AccessRevoked>> {
    let r = crate::service::access::revoke(&cx.state, &cx.caller, &id, &body.reason).await?;
    Ok(ApiJson(crate::wire::applications::AccessRevoked {
        application: r.application,
        datasets: r.datasets,
        cancelled_runs: r.cancelled_runs,
    }))
}

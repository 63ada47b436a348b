//! Applications to the committee: the routes every kind shares. The workflows are in
//! [`crate::service::applications`]; these parse, call one, and shape the answer.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use base64::Engine as _;
use policy::review::{Choice, Kind};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{ApiJson, ApiQuery};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::service::applications::{self as svc, AttachmentKind, Summary};
use crate::state::AppState;
use crate::store::{AttachmentRow, DecisionRow};

#[derive(Serialize, Deserialize, ToSchema, Debug, Clone)]
pub struct Application {
    pub id: String,
    /// listing, extension, access, ingress or egress.
    pub kind: String,
    pub project: String,
    pub requester: String,
    pub title: String,
    pub description: String,
    /// Kind-specific details.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    /// submitted, in_review, approved, rejected, changes_requested, withdrawn, or the kind's
    /// final state (staged, released, listed, extended).
    pub state: String,
    /// Starts at 1; each resubmission opens a new round of votes.
    pub round: i64,
    /// Approvals this kind needs.
    pub quorum: u32,
    /// Approvals counted in the current round.
    pub approvals: u32,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Serialize, Deserialize, ToSchema, Debug, Clone)]
pub struct Decision {
    pub round: i64,
    pub reviewer: String,
    /// approve, reject or request_changes.
    pub decision: String,
    pub comment: String,
    pub decided_at: String,
}

#[derive(Serialize, Deserialize, ToSchema, Debug, Clone)]
pub struct Attachment {
    pub id: String,
    /// institution_review or committee_opinion.
    pub kind: String,
    pub author: String,
    pub text: String,
    pub file_name: Option<String>,
    pub file_sha256: Option<String>,
    pub file_size: Option<i64>,
    pub created_at: String,
}

#[derive(Serialize, Deserialize, ToSchema, Debug)]
pub struct ApplicationDetail {
    #[serde(flatten)]
    pub application: Application,
    pub decisions: Vec<Decision>,
    pub attachments: Vec<Attachment>,
    /// Automatic checks attached to the application (ingress archives, egress files).
    pub checks: Vec<super::ingress::Check>,
}

pub(crate) fn app_summary(state: &AppState, s: Summary) -> Application {
    let approvals = svc::approvals(&s);
    let a = s.row;
    Application {
        quorum: state.quorum.get(a.kind),
        approvals,
        payload: serde_json::from_str(&a.payload).unwrap_or(serde_json::Value::Null),
        id: a.id,
        kind: a.kind.as_str().to_owned(),
        project: a.project_id,
        requester: a.requester,
        title: a.title,
        description: a.description,
        state: a.state.as_str().to_owned(),
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

fn decision_dto(d: DecisionRow) -> Decision {
    Decision {
        round: d.round,
        reviewer: d.reviewer,
        decision: d.choice.as_str().to_owned(),
        comment: d.comment,
        decided_at: d.decided_at,
    }
}

fn attachment_dto(a: AttachmentRow) -> Attachment {
    Attachment {
        id: a.id,
        kind: a.kind,
        author: a.author,
        text: a.body,
        file_name: a.file_name,
        file_sha256: a.file_sha256,
        file_size: a.file_size,
        created_at: a.created_at,
    }
}

#[derive(Deserialize, IntoParams)]
pub struct ListQuery {
    pub kind: Option<String>,
    pub state: Option<String>,
    pub project: Option<String>,
    pub requester: Option<String>,
    /// At most this many (default 100, at most 1000), newest first.
    pub limit: Option<i64>,
}

/// Applications the caller may see, newest first, with filters.
#[utoipa::path(get, path = "/api/v1/applications", tag = "applications", security(("bearer" = [])), params(ListQuery),
    responses((status = 200, body = Vec<Application>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<ApiJson<Vec<Application>>> {
    let filter = svc::ListFilter {
        kind: q.kind.as_deref().map(str::parse).transpose().map_err(
            |e: policy::review::UnknownKind| ApiError::bad_request("bad_filter", e.to_string()),
        )?,
        state: q.state.as_deref().map(str::parse).transpose().map_err(
            |e: policy::review::UnknownState| ApiError::bad_request("bad_filter", e.to_string()),
        )?,
        project: q.project,
        requester: q.requester,
        limit: q.limit,
    };
    let apps = svc::list(&state, &caller, filter).await?;
    Ok(ApiJson(
        apps.into_iter().map(|a| app_summary(&state, a)).collect(),
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewApplication {
    /// listing, extension or access. Ingress and egress applications are made by uploading
    /// their content to their own routes.
    pub kind: String,
    pub project: String,
    pub title: String,
    #[serde(default)]
    pub description: String,
    /// Kind-specific details (datasets, purpose, conditions…), a JSON object.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub payload: Option<serde_json::Value>,
}

/// Applies to the committee.
#[utoipa::path(post, path = "/api/v1/applications", tag = "applications", security(("bearer" = [])),
    request_body = NewApplication,
    responses((status = 201, body = Application), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<NewApplication>,
) -> ApiResult<(StatusCode, ApiJson<Application>)> {
    let kind: Kind = body
        .kind
        .parse()
        .map_err(|e: policy::review::UnknownKind| {
            ApiError::bad_request("bad_kind", e.to_string())
        })?;
    let new = svc::NewApplication {
        kind,
        project: body.project,
        title: body.title,
        description: body.description,
        payload: body.payload,
    };
    let row = svc::create(&state, &caller, new).await?;
    Ok((StatusCode::CREATED, ApiJson(new_app_summary(&state, row))))
}

/// One application with its votes and attachments.
#[utoipa::path(get, path = "/api/v1/applications/{id}", tag = "applications", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = ApplicationDetail), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<ApiJson<ApplicationDetail>> {
    let d = svc::show(&state, &caller, &id).await?;
    let summary = Summary {
        row: d.row,
        decisions: d.decisions,
    };
    Ok(ApiJson(ApplicationDetail {
        decisions: summary
            .decisions
            .iter()
            .cloned()
            .map(decision_dto)
            .collect(),
        application: app_summary(&state, summary),
        attachments: d.attachments.into_iter().map(attachment_dto).collect(),
        checks: d
            .checks
            .into_iter()
            .map(super::ingress::check_dto)
            .collect(),
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDecision {
    /// approve, reject or request_changes.
    pub decision: String,
    /// Why; kept with the decision and in the audit log.
    pub comment: String,
}

/// Votes on an application: approve, reject or request changes; reviewers, never on their own
/// project's applications, once per round.
#[utoipa::path(post, path = "/api/v1/applications/{id}/decisions", tag = "applications", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = NewDecision,
    responses((status = 200, body = Application), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn decide(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<NewDecision>,
) -> ApiResult<ApiJson<Application>> {
    let choice: Choice = body
        .decision
        .parse()
        .map_err(|e: policy::review::UnknownChoice| {
            ApiError::bad_request("bad_decision", e.to_string())
        })?;
    let s = svc::decide(&state, &caller, &id, choice, &body.comment).await?;
    Ok(ApiJson(app_summary(&state, s)))
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct Withdrawal {
    #[serde(default)]
    pub comment: String,
}

/// Takes one's own application back.
#[utoipa::path(post, path = "/api/v1/applications/{id}/withdraw", tag = "applications", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = Withdrawal,
    responses((status = 200, body = Application), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn withdraw(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<Withdrawal>,
) -> ApiResult<ApiJson<Application>> {
    let s = svc::withdraw(&state, &caller, &id, &body.comment).await?;
    Ok(ApiJson(app_summary(&state, s)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Resubmission {
    /// What changed.
    pub comment: String,
    /// A new description, replacing the old one.
    #[serde(default)]
    pub description: Option<String>,
}

/// Answers a request for changes; opens a new round of votes.
#[utoipa::path(post, path = "/api/v1/applications/{id}/resubmit", tag = "applications", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = Resubmission,
    responses((status = 200, body = Application), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn resubmit(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<Resubmission>,
) -> ApiResult<ApiJson<Application>> {
    let s = svc::resubmit(
        &state,
        &caller,
        &id,
        &body.comment,
        body.description.as_deref(),
    )
    .await?;
    Ok(ApiJson(app_summary(&state, s)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAttachment {
    /// institution_review (stewards) or committee_opinion (reviewers).
    pub kind: String,
    pub text: String,
    /// The file's name, when a file comes with the text.
    #[serde(default)]
    pub file_name: Option<String>,
    /// The file, base64.
    #[serde(default)]
    pub file_base64: Option<String>,
}

/// Attaches an institution's review result or a committee opinion, with an optional file.
#[utoipa::path(post, path = "/api/v1/applications/{id}/attachments", tag = "applications", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = NewAttachment,
    responses((status = 201, body = Attachment), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn attach(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<NewAttachment>,
) -> ApiResult<(StatusCode, ApiJson<Attachment>)> {
    let kind: AttachmentKind = body.kind.parse()?;
    let file = match (body.file_name, body.file_base64) {
        (Some(name), Some(b64)) => {
            let max = state.settings.limits.attachment_max_bytes;
            // Refused before decoding: base64 is 4 characters for every 3 bytes.
            if (b64.len() as u64) / 4 * 3 > max + 3 {
                return Err(ApiError::TooLarge(format!(
                    "attachments are limited to {max} bytes"
                )));
            }
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|_| {
                    ApiError::bad_request("bad_file", "file_base64 is not valid base64")
                })?;
            Some((name, bytes))
        }
        (None, None) => None,
        _ => {
            return Err(ApiError::bad_request(
                "bad_file",
                "file_name and file_base64 come together",
            ));
        }
    };
    let new = svc::NewAttachment {
        kind,
        text: body.text,
        file,
    };
    let row = svc::attach(&state, &caller, &id, new).await?;
    Ok((StatusCode::CREATED, ApiJson(attachment_dto(row))))
}

/// Downloads an attachment's file. Every read is audited.
#[utoipa::path(get, path = "/api/v1/applications/{id}/attachments/{attachment}/file", tag = "applications",
    security(("bearer" = [])), params(("id" = String, Path), ("attachment" = String, Path)),
    responses((status = 200, description = "the file", content_type = "application/octet-stream"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn attachment_file(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, attachment)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    let f = svc::attachment_file(&state, &caller, &id, &attachment).await?;
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
fn file_stream(
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

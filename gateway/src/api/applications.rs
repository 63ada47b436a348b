//! Applications to the committee: the generic machinery every kind uses.
//!
//! Votes, withdrawals and resubmissions all run the same way: in one write transaction, load the
//! facts, ask `policy::review::next_state`, store the answer with its audit events, commit. The
//! write transaction holds the chain lock, so two reviewers voting at once are counted one after
//! the other and a quorum is reached exactly once.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use base64::Engine as _;
use policy::access::{Action, Standing, sees_every_project};
use policy::review::{CastVote, Choice, Event, Facts, Kind, State as AppStateName};
use serde_json::json;

use super::{ApiJson, ApiQuery, require, require_visible};
use crate::audit::NewEvent;
use crate::auth::Caller;
use crate::db::WriteTx;
use crate::error::{ApiError, ApiResult, ErrorBody, ErrorCode};
use crate::state::AppState;
use crate::store::{self, AppFilter, AppRow, AttachmentRow, DecisionRow};
use crate::wire::applications::{
    Application, ApplicationDetail, Attachment, AttachmentKind, Decision, ListQuery,
    NewApplication, NewAttachment, NewDecision, Resubmission, Withdrawal,
};

pub(crate) fn app_summary(state: &AppState, a: AppRow, decisions: &[DecisionRow]) -> Application {
    let approvals = decisions
        .iter()
        .filter(|d| d.round == a.round && d.choice == Choice::Approve)
        .count() as u32;
    Application {
        quorum: state.quorum.get(a.kind),
        approvals,
        payload: serde_json::from_str(&a.payload).unwrap_or(serde_json::Value::Null),
        id: a.id,
        kind: a.kind.into(),
        project: a.project_id,
        requester: a.requester,
        title: a.title,
        description: a.description,
        state: a.state.into(),
        round: a.round,
        created_at: a.created_at,
        updated_at: a.updated_at,
    }
}

fn decision_dto(d: DecisionRow) -> Decision {
    Decision {
        round: d.round,
        reviewer: d.reviewer,
        decision: d.choice.into(),
        comment: d.comment,
        decided_at: d.decided_at,
    }
}

fn attachment_dto(a: AttachmentRow) -> Attachment {
    Attachment {
        id: a.id,
        // The gateway stores only the kinds it accepted.
        kind: a.kind.parse().unwrap_or(AttachmentKind::CommitteeOpinion),
        author: a.author,
        text: a.body,
        file_name: a.file_name,
        file_sha256: a.file_sha256,
        file_size: a.file_size,
        created_at: a.created_at,
    }
}

/// Applications the caller may see, newest first, with filters.
#[utoipa::path(get, path = "/api/v1/applications", operation_id = "list_applications", tag = "applications", security(("bearer" = [])), params(ListQuery),
    responses((status = 200, body = Vec<Application>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<ApiJson<Vec<Application>>> {
    require(&caller, Action::AppList, Standing::default())?;
    let filter = AppFilter {
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
        visible_to: (!sees_every_project(caller.roles)).then(|| caller.sub.to_string()),
        limit: q.limit.unwrap_or(100),
    };
    let mut conn = state.db.pool().acquire().await?;
    let rows = store::applications(&mut conn, &filter).await?;
    let mut out = Vec::with_capacity(rows.len());
    for a in rows {
        let d = store::decisions(&mut conn, &a.id).await?;
        out.push(app_summary(&state, a, &d));
    }
    Ok(ApiJson(out))
}

fn check_text(what: &'static str, s: &str, max: usize, required: bool) -> ApiResult<()> {
    if required && s.trim().is_empty() {
        return Err(ApiError::bad_request(
            ErrorCode::MissingText,
            format!("{what} must not be empty"),
        ));
    }
    if s.len() > max {
        return Err(ApiError::bad_request(
            ErrorCode::TooLong,
            format!("{what} is longer than {max} bytes"),
        ));
    }
    Ok(())
}

/// Applies to the committee.
#[utoipa::path(post, path = "/api/v1/applications", operation_id = "create_application", tag = "applications", security(("bearer" = [])),
    request_body = NewApplication,
    responses((status = 201, body = Application), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 413, body = ErrorBody),
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
            ApiError::bad_request(ErrorCode::BadKind, e.to_string())
        })?;
    check_text("the title", &body.title, 500, true)?;
    check_text("the description", &body.description, 64 * 1024, false)?;
    let payload = body.payload.unwrap_or_else(|| json!({}));
    if !payload.is_object() {
        return Err(ApiError::bad_request(
            ErrorCode::BadPayload,
            "the payload must be a JSON object",
        ));
    }
    let payload_text = payload.to_string();
    check_text("the payload", &payload_text, 256 * 1024, false)?;

    let mut tx = state.db.begin_write().await?;
    let standing = Standing {
        member_roles: store::member_roles(tx.conn(), &body.project, caller.sub.as_str()).await?,
        is_requester: false,
    };
    require(&caller, Action::AppCreate(kind), standing)?;
    if matches!(kind, Kind::Ingress | Kind::Egress) {
        return Err(ApiError::bad_request(
            ErrorCode::WrongRoute,
            format!(
                "{kind} applications are made by uploading their content, not through this route"
            ),
        ));
    }
    let now = crate::time::now();
    let row = AppRow {
        id: store::new_id("app"),
        kind,
        project_id: body.project.clone(),
        requester: caller.sub.to_string(),
        title: body.title.trim().to_owned(),
        description: body.description,
        payload: payload_text,
        state: AppStateName::Submitted,
        round: 1,
        created_at: now.clone(),
        updated_at: now,
    };
    submit_application(&mut tx, &row).await?;
    state.commit(tx).await?;
    Ok((StatusCode::CREATED, ApiJson(app_summary(&state, row, &[]))))
}

/// Records a new application and its audit event inside `tx`. Kind-specific routes (ingress,
/// egress) call this after they have stored their content.
pub async fn submit_application(tx: &mut WriteTx, row: &AppRow) -> ApiResult<()> {
    store::insert_application(tx.conn(), row).await?;
    tx.audit(NewEvent {
        actor: &row.requester,
        action: "application.submit",
        subject: &row.id,
        detail: json!({
            "kind": row.kind.as_str(),
            "project": row.project_id,
            "title": row.title,
            "description_sha256": crate::sha256_hex(row.description.as_bytes()),
            "payload": serde_json::from_str::<serde_json::Value>(&row.payload).unwrap_or_default(),
        }),
    })
    .await?;
    Ok(())
}

/// The caller's standing towards an application, or 404 when they may not see it.
pub(crate) async fn visible_app(
    conn: &mut sqlx::AnyConnection,
    caller: &Caller,
    id: &str,
) -> ApiResult<(AppRow, Standing)> {
    let app = store::application(conn, id).await?;
    let member_roles = match &app {
        Some(a) => store::member_roles(conn, &a.project_id, caller.sub.as_str()).await?,
        None => Default::default(),
    };
    let standing = Standing {
        member_roles,
        is_requester: app
            .as_ref()
            .is_some_and(|a| a.requester == caller.sub.as_str()),
    };
    require_visible(caller, Action::AppRead, standing, "application")?;
    Ok((app.ok_or(ApiError::NotFound("application"))?, standing))
}

/// One application with its votes and attachments.
#[utoipa::path(get, path = "/api/v1/applications/{id}", operation_id = "get_application", tag = "applications", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = ApplicationDetail), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<ApiJson<ApplicationDetail>> {
    let mut conn = state.db.pool().acquire().await?;
    let (app, _) = visible_app(&mut conn, &caller, &id).await?;
    let decisions = store::decisions(&mut conn, &id).await?;
    let attachments = store::attachments(&mut conn, &id).await?;
    let checks = store::checks(&mut conn, &id).await?;
    Ok(ApiJson(ApplicationDetail {
        application: app_summary(&state, app, &decisions),
        decisions: decisions.into_iter().map(decision_dto).collect(),
        attachments: attachments.into_iter().map(attachment_dto).collect(),
        checks: checks.into_iter().map(super::ingress::check_dto).collect(),
    }))
}

/// Applies one event to an application in a write transaction: the policy decides, the store
/// records, the audit log remembers. Refusals on separation of duties are audited as well.
async fn apply_event(
    state: &AppState,
    caller: &Caller,
    id: &str,
    action: Action,
    make_event: impl for<'a> FnOnce(&'a str) -> Event<'a>,
    comment: &str,
    new_description: Option<&str>,
) -> ApiResult<ApiJson<Application>> {
    let mut tx = state.db.begin_write().await?;
    let (app, standing) = visible_app(tx.conn(), caller, id).await?;
    require(caller, action, standing)?;
    let decisions = store::decisions(tx.conn(), id).await?;
    let members = store::members(tx.conn(), &app.project_id).await?;
    let conflicted: Vec<&str> = members.iter().map(|m| m.subject.as_str()).collect();
    let votes: Vec<CastVote<'_>> = decisions
        .iter()
        .filter(|d| d.round == app.round)
        .map(|d| CastVote {
            voter: &d.reviewer,
            choice: d.choice,
        })
        .collect();
    let facts = Facts {
        kind: app.kind,
        state: app.state,
        requester: &app.requester,
        votes: &votes,
        conflicted: &conflicted,
    };
    let event = make_event(caller.sub.as_str());
    let transition = match policy::review::next_state(&facts, &state.quorum, event) {
        Ok(t) => t,
        Err(refusal) => {
            drop(tx);
            if matches!(
                refusal,
                policy::review::Refusal::OwnApplication
                    | policy::review::Refusal::ConflictOfInterest
            ) {
                let mut tx = state.db.begin_write().await?;
                tx.audit(NewEvent {
                    actor: caller.sub.as_str(),
                    action: "application.decision_refused",
                    subject: id,
                    detail: json!({"reason": refusal.to_string()}),
                })
                .await?;
                state.commit(tx).await?;
            }
            return Err(refusal.into());
        }
    };
    let now = crate::time::now();
    let round = app.round + i64::from(transition.new_round);
    let mut all_decisions = decisions.clone();
    if let Event::Vote { choice, .. } = event {
        let d = DecisionRow {
            round: app.round,
            reviewer: caller.sub.to_string(),
            choice,
            comment: comment.to_owned(),
            decided_at: now.clone(),
        };
        store::insert_decision(tx.conn(), id, &d).await?;
        tx.audit(NewEvent {
            actor: caller.sub.as_str(),
            action: "application.decision",
            subject: id,
            detail: json!({"decision": choice.as_str(), "round": app.round, "comment": comment}),
        })
        .await?;
        all_decisions.push(d);
    }
    if transition.to != transition.from || transition.new_round {
        if !store::set_state(
            tx.conn(),
            id,
            transition.from,
            transition.to,
            round,
            new_description,
            &now,
        )
        .await?
        {
            return Err(ApiError::conflict(
                ErrorCode::ConcurrentChange,
                "the application changed meanwhile; try again",
            ));
        }
        let action_name = match event {
            Event::Withdraw { .. } => "application.withdraw",
            Event::Resubmit { .. } => "application.resubmit",
            _ => "application.state",
        };
        tx.audit(NewEvent {
            actor: caller.sub.as_str(),
            action: action_name,
            subject: id,
            detail: json!({
                "from": transition.from.as_str(),
                "to": transition.to.as_str(),
                "round": round,
                "comment": comment,
            }),
        })
        .await?;
    }
    let updated = store::application(tx.conn(), id)
        .await?
        .ok_or(ApiError::NotFound("application"))?;
    state.commit(tx).await?;
    Ok(ApiJson(app_summary(state, updated, &all_decisions)))
}

/// Votes on an application: approve, reject or request changes; reviewers, never on their own
/// project's applications, once per round.
#[utoipa::path(post, path = "/api/v1/applications/{id}/decisions", operation_id = "decide_application", tag = "applications", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = NewDecision,
    responses((status = 200, body = Application), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 413, body = ErrorBody),
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
            ApiError::bad_request(ErrorCode::BadDecision, e.to_string())
        })?;
    check_text("the comment", &body.comment, 64 * 1024, true)?;
    apply_event(
        &state,
        &caller,
        &id,
        Action::AppDecide,
        move |voter| Event::Vote { voter, choice },
        &body.comment,
        None,
    )
    .await
}

/// Takes one's own application back.
#[utoipa::path(post, path = "/api/v1/applications/{id}/withdraw", operation_id = "withdraw_application", tag = "applications", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = Withdrawal,
    responses((status = 400, body = ErrorBody, description = "the request does not parse or breaks a rule"), (status = 200, body = Application), (status = 401, body = ErrorBody), (status = 413, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn withdraw(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<Withdrawal>,
) -> ApiResult<ApiJson<Application>> {
    check_text("the comment", &body.comment, 64 * 1024, false)?;
    apply_event(
        &state,
        &caller,
        &id,
        Action::AppWithdraw,
        |by| Event::Withdraw { by },
        &body.comment,
        None,
    )
    .await
}

/// Answers a request for changes; opens a new round of votes.
#[utoipa::path(post, path = "/api/v1/applications/{id}/resubmit", operation_id = "resubmit_application", tag = "applications", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = Resubmission,
    responses((status = 200, body = Application), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn resubmit(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<Resubmission>,
) -> ApiResult<ApiJson<Application>> {
    check_text("the comment", &body.comment, 64 * 1024, true)?;
    if let Some(d) = &body.description {
        check_text("the description", d, 64 * 1024, false)?;
    }
    apply_event(
        &state,
        &caller,
        &id,
        Action::AppResubmit,
        |by| Event::Resubmit { by },
        &body.comment,
        body.description.as_deref(),
    )
    .await
}

/// Attaches an institution's review result or a committee opinion, with an optional file.
#[utoipa::path(post, path = "/api/v1/applications/{id}/attachments", operation_id = "attach_to_application", tag = "applications", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = NewAttachment,
    responses((status = 201, body = Attachment), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn attach(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<NewAttachment>,
) -> ApiResult<(StatusCode, ApiJson<Attachment>)> {
    let action = match body.kind.as_str() {
        "institution_review" => Action::AttachInstitutionReview,
        "committee_opinion" => Action::AttachCommitteeOpinion,
        other => {
            return Err(ApiError::bad_request(
                ErrorCode::BadAttachmentKind,
                format!(
                    "unknown attachment kind `{other}` (expected institution_review or committee_opinion)"
                ),
            ));
        }
    };
    check_text("the text", &body.text, 256 * 1024, true)?;
    let file = match (&body.file_name, &body.file_base64) {
        (Some(name), Some(b64)) => {
            let name = safe_file_name(name)?;
            let max = state.settings.limits.attachment_max_bytes;
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
            if bytes.len() as u64 > max {
                return Err(ApiError::TooLarge(format!(
                    "attachments are limited to {max} bytes"
                )));
            }
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
    let blob = match &file {
        Some((_, bytes)) => Some(state.blobs.put(bytes.clone()).await?),
        None => None,
    };
    let mut tx = state.db.begin_write().await?;
    let (app, standing) = visible_app(tx.conn(), &caller, &id).await?;
    require(&caller, action, standing)?;
    if app.state.is_final() {
        return Err(ApiError::conflict(
            ErrorCode::WrongState,
            format!("the application is {}", app.state),
        ));
    }
    let row = AttachmentRow {
        id: store::new_id("att"),
        application_id: id.clone(),
        kind: body.kind.clone(),
        author: caller.sub.to_string(),
        body: body.text,
        file_name: file.as_ref().map(|(n, _)| n.clone()),
        file_sha256: blob.as_ref().map(|b| b.sha256().to_owned()),
        file_size: blob.as_ref().map(|b| b.size() as i64),
        created_at: crate::time::now(),
    };
    store::insert_attachment(tx.conn(), &row).await?;
    if let Some(b) = &blob {
        store::record_blob(tx.conn(), b.sha256(), b.size()).await?;
    }
    tx.audit(NewEvent {
        actor: caller.sub.as_str(),
        action: "application.attach",
        subject: &id,
        detail: json!({
            "attachment": row.id,
            "kind": row.kind,
            "text_sha256": crate::sha256_hex(row.body.as_bytes()),
            "file_name": row.file_name,
            "file_sha256": row.file_sha256,
            "file_size": row.file_size,
        }),
    })
    .await?;
    // The blob becomes visible only once its record is in the same transaction as the audit
    // event; a crash before the commit leaves a temp file that the next start sweeps.
    if let Some(b) = blob {
        b.commit().await?;
    }
    state.commit(tx).await?;
    Ok((StatusCode::CREATED, ApiJson(attachment_dto(row))))
}

fn safe_file_name(name: &str) -> ApiResult<String> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && !name.contains(['/', '\\', '\0'])
        && name != "."
        && name != ".."
        && !name.chars().any(char::is_control);
    if ok {
        Ok(name.to_owned())
    } else {
        Err(ApiError::bad_request(
            ErrorCode::BadFileName,
            "a file name must be 1 to 255 characters, without slashes or control characters",
        ))
    }
}

/// Downloads an attachment's file. Every read is audited.
#[utoipa::path(get, path = "/api/v1/applications/{id}/attachments/{attachment}/file", operation_id = "get_attachment_file", tag = "applications",
    security(("bearer" = [])), params(("id" = String, Path), ("attachment" = String, Path)),
    responses((status = 200, description = "the file", content_type = "application/octet-stream"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn attachment_file(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, attachment)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    let mut tx = state.db.begin_write().await?;
    let (_, standing) = visible_app(tx.conn(), &caller, &id).await?;
    require(&caller, Action::ReadContent, standing)?;
    let a = store::attachment(tx.conn(), &id, &attachment)
        .await?
        .ok_or(ApiError::NotFound("attachment"))?;
    let (Some(sha), Some(name)) = (a.file_sha256.clone(), a.file_name.clone()) else {
        return Err(ApiError::NotFound("attachment file"));
    };
    let file = state.blobs.open(&sha).await?;
    tx.audit(NewEvent {
        actor: caller.sub.as_str(),
        action: "content.read",
        subject: &id,
        detail: json!({"attachment": a.id, "file_name": name, "file_sha256": sha}),
    })
    .await?;
    state.commit(tx).await?;
    let stream = file_stream(file);
    let disposition = format!(
        "attachment; filename=\"{}\"",
        name.replace(['"', '\\'], "_")
    );
    Ok((
        [
            (
                axum::http::header::CONTENT_TYPE,
                "application/octet-stream".to_owned(),
            ),
            (axum::http::header::CONTENT_DISPOSITION, disposition),
            (axum::http::HeaderName::from_static("x-content-sha256"), sha),
        ],
        Body::from_stream(stream),
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

//! Egress: requests to take files out of a sandbox, their rounds, previews for reviewers, the
//! release for its requester, and the age recipient releases are encrypted to. The workflows
//! are in [`crate::service::egress`]; these parse, call one, and shape the answer.

use axum::body::Body;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::IntoResponse;

use super::applications::{file_stream, new_app_summary};
use super::{ApiJson, ApiQuery, Cx};
use crate::error::{ApiResult, ErrorBody};
use crate::service::egress::{self as svc, PreviewBody};
use crate::store::egress::{FileRow, ReleaseRow, RoundRow};
use crate::wire::egress::{
    CheckOutcome, EarlierEgress, EgressDetail, EgressFile, EgressFinding, EgressReceipt,
    EgressResubmission, EgressRound, ImageMeta, Key, KeyRegistered, NewEgress, Preview,
    PreviewCell, PreviewQuery, Release, ReleaseState, Revocation,
};

fn outcome(s: &str) -> CheckOutcome {
    // The gateway stores only outcomes it computed.
    s.parse().unwrap_or(CheckOutcome::Review)
}

fn findings(json: &str) -> Vec<EgressFinding> {
    let values: Vec<serde_json::Value> = serde_json::from_str(json).unwrap_or_default();
    values
        .into_iter()
        .map(|v| EgressFinding {
            rule: v["rule"].as_str().unwrap_or_default().to_owned(),
            outcome: outcome(v["outcome"].as_str().unwrap_or("review")),
            message: v["message"].as_str().unwrap_or_default().to_owned(),
            row: v["row"].as_u64(),
            column: v["column"].as_u64(),
        })
        .collect()
}

fn file_dto(f: FileRow) -> EgressFile {
    EgressFile {
        round: f.round,
        findings: findings(&f.findings),
        outcome: outcome(&f.outcome),
        path: f.path,
        size: f.size,
        sha256: f.sha256,
        content_type: f.content_type,
        exception: f.exception,
    }
}

fn round_dto(r: RoundRow) -> EgressRound {
    EgressRound {
        round: r.round,
        findings: findings(&r.findings),
        outcome: outcome(&r.outcome),
        paths: r.paths,
        total_bytes: r.total_bytes,
        rules_version: r.rules_version,
        requested_at: r.requested_at,
    }
}

fn release_dto(r: ReleaseRow) -> Release {
    Release {
        state: r.state.parse().unwrap_or(ReleaseState::Pending),
        round: r.round,
        recipient: r.recipient,
        approved_at: r.approved_at,
        package_sha256: r.package_sha256,
        package_size: r.package_size,
        built_at: r.built_at,
        expires_at: r.expires_at,
        downloads: r.downloads,
        detail: r.detail,
        revoked_by: r.revoked_by,
        revoked_at: r.revoked_at,
    }
}

fn receipt(cx: &Cx, r: svc::Receipt) -> EgressReceipt {
    EgressReceipt {
        id: r.application.id.clone(),
        application: new_app_summary(&cx.state, r.application),
        round: round_dto(r.round),
        files: r.files.into_iter().map(file_dto).collect(),
    }
}

/// Asks for files of a sandbox's output folder to leave: they are copied into quarantine,
/// hashed and checked, and an egress application is queued for the committee. A file that
/// fails a check needs an exception; links, devices and other non-files are refused.
#[utoipa::path(post, path = "/api/v1/egress", operation_id = "request_egress", tag = "egress", security(("bearer" = [])),
    request_body = NewEgress,
    responses((status = 201, body = EgressReceipt), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "a run is writing the output folder, or no recipient is registered"),
        (status = 413, body = ErrorBody), (status = 422, body = ErrorBody, description = "files that may not leave, or checks that failed"),
        (status = 503, body = ErrorBody)))]
pub async fn request(
    cx: Cx,
    ApiJson(body): ApiJson<NewEgress>,
) -> ApiResult<(StatusCode, ApiJson<EgressReceipt>)> {
    let req = svc::Request {
        sandbox: body.sandbox,
        paths: body.paths,
        justification: body.justification,
        exceptions: body.exceptions.into_iter().collect(),
    };
    let r = svc::request(&cx.state, &cx.caller, req).await?;
    Ok((StatusCode::CREATED, ApiJson(receipt(&cx, r))))
}

/// Answers a request for changes with new files: a new round.
#[utoipa::path(post, path = "/api/v1/applications/{id}/egress", operation_id = "resubmit_egress", tag = "egress", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = EgressResubmission,
    responses((status = 200, body = EgressReceipt), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn resubmit(
    cx: Cx,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<EgressResubmission>,
) -> ApiResult<ApiJson<EgressReceipt>> {
    let re = svc::Resubmission {
        paths: body.paths,
        comment: body.comment,
        justification: body.justification,
        exceptions: body.exceptions.into_iter().collect(),
    };
    let r = svc::resubmit(&cx.state, &cx.caller, &id, re).await?;
    Ok(ApiJson(receipt(&cx, r)))
}

/// An egress application's rounds with their files and checks, the project's earlier releases
/// and rejections, and its release.
#[utoipa::path(get, path = "/api/v1/applications/{id}/egress", operation_id = "get_egress", tag = "egress", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = EgressDetail), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn show(cx: Cx, Path(id): Path<String>) -> ApiResult<ApiJson<EgressDetail>> {
    // The application first: it is released in the transaction that records the release
    // built, so an answer that says `released` also shows the package. (Read the other way
    // round, a build committed between the two reads gave `released` beside `pending`.)
    let app = crate::service::applications::show(&cx.state, &cx.caller, &id).await?;
    let d = svc::detail(&cx.state, &cx.caller, &id).await?;
    let summary = crate::service::applications::Summary {
        row: app.row,
        decisions: app.decisions,
    };
    Ok(ApiJson(EgressDetail {
        application: super::applications::app_summary(&cx.state, summary),
        sandbox: d.sandbox,
        rounds: d.rounds.into_iter().map(round_dto).collect(),
        files: d.files.into_iter().map(file_dto).collect(),
        history: d
            .history
            .into_iter()
            .map(|e| EarlierEgress {
                application: e.application,
                state: e.state,
                at: e.at,
                files: e.files.into_iter().map(file_dto).collect(),
            })
            .collect(),
        release: d.release.map(release_dto),
    }))
}

/// A preview of one quarantined file, for reviewers from outside the project (never its
/// requester); every preview is an audited read.
#[utoipa::path(get, path = "/api/v1/applications/{id}/egress/preview", operation_id = "preview_egress_file", tag = "egress", security(("bearer" = [])),
    params(("id" = String, Path), PreviewQuery),
    responses((status = 200, body = Preview), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn preview(
    cx: Cx,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<PreviewQuery>,
) -> ApiResult<ApiJson<Preview>> {
    let p = svc::preview(&cx.state, &cx.caller, &id, &q.path, q.round).await?;
    let mut out = Preview {
        file: file_dto(p.file),
        kind: String::new(),
        rows: None,
        truncated: None,
        text: None,
        image: None,
        note: None,
    };
    match p.body {
        PreviewBody::Table(t) => {
            out.kind = "table".into();
            out.truncated = Some(t.truncated);
            out.rows = Some(
                t.rows
                    .into_iter()
                    .map(|r| {
                        r.into_iter()
                            .map(|c| PreviewCell {
                                text: c.text,
                                flagged: c.flagged.map(|o| outcome(o.as_str())),
                            })
                            .collect()
                    })
                    .collect(),
            );
        }
        PreviewBody::Text(t) => {
            out.kind = "text".into();
            out.text = Some(t);
        }
        PreviewBody::Image(i) => {
            out.kind = "image".into();
            out.image = Some(ImageMeta {
                format: i.format.as_str().into(),
                width: i.width,
                height: i.height,
                detail: i.detail,
            });
        }
        PreviewBody::None(why) => {
            out.kind = "none".into();
            out.note = Some(why);
        }
    }
    Ok(ApiJson(out))
}

/// The release package as it is: an age file (encrypted to the recipient registered when the
/// application was approved) of a zstd-compressed tar. Its requester only; every download is
/// counted and audited.
#[utoipa::path(get, path = "/api/v1/applications/{id}/release", operation_id = "download_release", tag = "egress", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, description = "the age-encrypted package", content_type = "application/octet-stream"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "not built yet, refused, revoked or expired")))]
pub async fn download(cx: Cx, Path(id): Path<String>) -> ApiResult<impl IntoResponse> {
    let d = svc::download(&cx.state, &cx.caller, &id).await?;
    let sha = d.release.package_sha256.clone().unwrap_or_default();
    let size = d.release.package_size.unwrap_or_default();
    Ok((
        [
            (
                axum::http::header::CONTENT_TYPE,
                "application/octet-stream".to_owned(),
            ),
            (axum::http::header::CONTENT_LENGTH, size.to_string()),
            (
                axum::http::header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{id}.tar.zst.age\""),
            ),
            (axum::http::HeaderName::from_static("x-content-sha256"), sha),
        ],
        Body::from_stream(file_stream(d.file)),
    ))
}

/// Revokes a release: it can no longer be downloaded. Operators and admins.
#[utoipa::path(post, path = "/api/v1/applications/{id}/release/revoke", operation_id = "revoke_release", tag = "egress", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = Revocation,
    responses((status = 200, body = Release), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn revoke(
    cx: Cx,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<Revocation>,
) -> ApiResult<ApiJson<Release>> {
    let r = svc::revoke(&cx.state, &cx.caller, &id, &body.reason).await?;
    Ok(ApiJson(release_dto(r)))
}

/// Registers the caller's age recipient: releases approved from now on are encrypted to it.
#[utoipa::path(put, path = "/api/v1/keys/me", operation_id = "register_key", tag = "egress", security(("bearer" = [])),
    request_body = Key,
    responses((status = 200, body = KeyRegistered), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn register_key(
    cx: Cx,
    ApiJson(body): ApiJson<Key>,
) -> ApiResult<ApiJson<KeyRegistered>> {
    let (recipient, replaced) = svc::register_key(&cx.state, &cx.caller, &body.recipient).await?;
    Ok(ApiJson(KeyRegistered {
        recipient,
        replaced,
    }))
}

/// The caller's registered age recipient.
#[utoipa::path(get, path = "/api/v1/keys/me", operation_id = "get_key", tag = "egress", security(("bearer" = [])),
    responses((status = 200, body = Key), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn my_key(cx: Cx) -> ApiResult<ApiJson<Key>> {
    match svc::my_key(&cx.state, &cx.caller).await? {
        Some(recipient) => Ok(ApiJson(Key { recipient })),
        None => Err(crate::error::ApiError::NotFound("key")),
    }
}

//! Ingress: analysts upload program (and reference-data) archives as raw request bodies; the
//! gateway validates them while they stream, stores them by hash, and queues an application of
//! kind `ingress` with the manifest and the automatic checks. Reviewers list the manifest and
//! read text files inside the archive; every read is audited.

use axum::body::Body;
use axum::extract::Path;
use axum::http::StatusCode;

use super::applications::new_app_summary;
use super::{ApiJson, ApiQuery, Cx};
use crate::error::{ApiResult, ErrorBody};
use crate::service::ingress as svc;
use crate::store::ingress::IngressRow;
use crate::store::{self};
use crate::wire::ingress::{
    ArchiveInfo, ArchiveUpload, Check, FileQuery, IngressQuery, IngressReceipt, Manifest,
};

pub(crate) fn check_dto(c: store::CheckRow) -> Check {
    Check {
        check: c.check,
        // The gateway stores only outcomes it computed.
        outcome: c
            .outcome
            .parse()
            .unwrap_or(crate::wire::ingress::CheckOutcome::Review),
        reasons: c.reasons,
    }
}

fn archive_dto(r: &IngressRow, files: u64) -> ArchiveInfo {
    ArchiveInfo {
        name: r.name.clone(),
        sha256: r.blob_sha256.clone(),
        format: r.format.clone(),
        upload_bytes: r.upload_bytes as u64,
        tar_sha256: r.tar_sha256.clone(),
        unpacked_bytes: r.unpacked_bytes as u64,
        entries: r.entry_count as u64,
        files,
    }
}

/// Uploads an archive (tar, or tar compressed with zstd) as the raw request body and applies for
/// its ingress. Refusals name the entry and the rule; nothing of a refused upload is kept.
#[utoipa::path(post, path = "/api/v1/ingress", operation_id = "submit_ingress", tag = "ingress", security(("bearer" = [])), params(IngressQuery),
    request_body(content = ArchiveUpload, content_type = "application/octet-stream", description = "a tar or tar.zst archive"),
    responses((status = 201, body = IngressReceipt), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 413, body = ErrorBody), (status = 414, description = "the query string is too long"),
        (status = 422, body = ErrorBody), (status = 503, body = ErrorBody, description = "too many uploads at once (busy)")))]
pub async fn submit(
    cx: Cx,
    ApiQuery(q): ApiQuery<IngressQuery>,
    body: Body,
) -> ApiResult<(StatusCode, ApiJson<IngressReceipt>)> {
    let up = svc::Upload {
        project: q.project,
        name: q.name,
        description: q.description,
    };
    let r = svc::submit(&cx.state, &cx.caller, up, body.into_data_stream()).await?;
    let checks = r
        .checks
        .iter()
        .map(|c| Check {
            check: c.check.to_owned(),
            outcome: c.outcome.into(),
            reasons: c.reasons.clone(),
        })
        .collect();
    Ok((
        StatusCode::CREATED,
        ApiJson(IngressReceipt {
            archive: archive_dto(&r.archive, r.files),
            application: new_app_summary(&cx.state, r.application),
            checks_outcome: r.outcome.into(),
            checks,
        }),
    ))
}

/// The manifest of an ingress application: every entry with its size, mode and SHA-256, and the
/// automatic checks.
#[utoipa::path(get, path = "/api/v1/applications/{id}/manifest", operation_id = "get_ingress_manifest", tag = "ingress", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = Manifest), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn manifest(cx: Cx, Path(id): Path<String>) -> ApiResult<ApiJson<Manifest>> {
    let m = svc::manifest(&cx.state, &cx.caller, &id).await?;
    Ok(ApiJson(Manifest {
        archive: archive_dto(&m.archive, m.files()),
        checks: m.checks.into_iter().map(check_dto).collect(),
        entries: m.entries,
    }))
}

/// Reads one text file inside an ingress archive. Every read is audited.
#[utoipa::path(get, path = "/api/v1/applications/{id}/file", operation_id = "get_ingress_file", tag = "ingress", security(("bearer" = [])),
    params(("id" = String, Path), FileQuery),
    responses((status = 400, body = ErrorBody, description = "the request does not parse or breaks a rule"), (status = 200, description = "the file's text", content_type = "text/plain"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody)))]
pub async fn file(
    cx: Cx,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<FileQuery>,
) -> ApiResult<([(axum::http::HeaderName, String); 2], Vec<u8>)> {
    let f = svc::read_file(&cx.state, &cx.caller, &id, &q.path).await?;
    Ok((
        [
            (
                axum::http::header::CONTENT_TYPE,
                "text/plain; charset=utf-8".to_owned(),
            ),
            (
                axum::http::HeaderName::from_static("x-content-sha256"),
                f.sha256,
            ),
        ],
        f.text,
    ))
}

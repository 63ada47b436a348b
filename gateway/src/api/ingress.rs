//! Ingress: analysts upload program (and reference-data) archives as raw request bodies; the
//! gateway validates them while they stream, stores them by hash, and queues an application of
//! kind `ingress` with the manifest and the automatic checks. Reviewers list the manifest and
//! read text files inside the archive; every read is audited.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::applications::{Application, new_app_summary};
use super::{ApiJson, ApiQuery};
use crate::auth::Caller;
use crate::error::{ApiResult, ErrorBody};
use crate::service::ingress as svc;
use crate::state::AppState;
use crate::store::ingress::{IngressRow, ManifestEntry};
use crate::store::{self};

#[derive(Deserialize, IntoParams)]
pub struct IngressQuery {
    /// The project the archive is for; the caller must be one of its analysts.
    pub project: String,
    /// A name for the archive (the application's title).
    pub name: String,
    /// Why it is needed, for the committee.
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Serialize, Deserialize, ToSchema, Debug, Clone)]
pub struct Check {
    pub check: String,
    /// pass, review or fail
    pub outcome: String,
    pub reasons: Vec<String>,
}

#[derive(Serialize, Deserialize, ToSchema, Debug, Clone)]
pub struct ArchiveInfo {
    pub name: String,
    /// SHA-256 of the upload as sent.
    pub sha256: String,
    /// tar or tar.zst
    pub format: String,
    pub upload_bytes: u64,
    /// SHA-256 of the uncompressed tar stream.
    pub tar_sha256: String,
    pub unpacked_bytes: u64,
    pub entries: u64,
    pub files: u64,
}

#[derive(Serialize, Deserialize, ToSchema, Debug)]
pub struct IngressReceipt {
    pub application: Application,
    pub archive: ArchiveInfo,
    /// The worst outcome of the checks.
    pub checks_outcome: String,
    pub checks: Vec<Check>,
}

#[derive(Serialize, Deserialize, ToSchema, Debug)]
pub struct Manifest {
    pub archive: ArchiveInfo,
    pub checks: Vec<Check>,
    pub entries: Vec<ManifestEntry>,
}

pub(crate) fn check_dto(c: store::CheckRow) -> Check {
    Check {
        check: c.check,
        outcome: c.outcome,
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
#[utoipa::path(post, path = "/api/v1/ingress", tag = "ingress", security(("bearer" = [])), params(IngressQuery),
    request_body(content = Vec<u8>, content_type = "application/x-tar", description = "a tar or tar.zst archive"),
    responses((status = 201, body = IngressReceipt), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn submit(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<IngressQuery>,
    body: Body,
) -> ApiResult<(StatusCode, ApiJson<IngressReceipt>)> {
    let up = svc::Upload {
        project: q.project,
        name: q.name,
        description: q.description,
    };
    let r = svc::submit(&state, &caller, up, body.into_data_stream()).await?;
    let checks = r
        .checks
        .iter()
        .map(|c| Check {
            check: c.check.to_owned(),
            outcome: c.outcome.as_str().to_owned(),
            reasons: c.reasons.clone(),
        })
        .collect();
    Ok((
        StatusCode::CREATED,
        ApiJson(IngressReceipt {
            archive: archive_dto(&r.archive, r.files),
            application: new_app_summary(&state, r.application),
            checks_outcome: r.outcome.as_str().to_owned(),
            checks,
        }),
    ))
}

/// The manifest of an ingress application: every entry with its size, mode and SHA-256, and the
/// automatic checks.
#[utoipa::path(get, path = "/api/v1/applications/{id}/manifest", tag = "ingress", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = Manifest), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn manifest(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<ApiJson<Manifest>> {
    let m = svc::manifest(&state, &caller, &id).await?;
    Ok(ApiJson(Manifest {
        archive: archive_dto(&m.archive, m.files()),
        checks: m.checks.into_iter().map(check_dto).collect(),
        entries: m.entries,
    }))
}

#[derive(Deserialize, IntoParams)]
pub struct FileQuery {
    /// The file's path in the manifest.
    pub path: String,
}

/// Reads one text file inside an ingress archive. Every read is audited.
#[utoipa::path(get, path = "/api/v1/applications/{id}/file", tag = "ingress", security(("bearer" = [])),
    params(("id" = String, Path), FileQuery),
    responses((status = 200, description = "the file's text", content_type = "text/plain"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody)))]
pub async fn file(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<FileQuery>,
) -> ApiResult<([(axum::http::HeaderName, String); 2], Vec<u8>)> {
    let f = svc::read_file(&state, &caller, &id, &q.path).await?;
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

//! Ingress: analysts upload program (and reference-data) archives as raw request bodies; the
//! gateway validates them while they stream, stores them by hash, and queues an application of
//! kind `ingress` with the manifest and the automatic checks. Reviewers list the manifest and
//! read text files inside the archive; every read is audited.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use policy::access::{Action, Standing};
use policy::review::{Kind, State as AppStateName};
use serde_json::json;

use super::applications::{app_summary, submit_application, visible_app};
use super::{ApiJson, ApiQuery, require};
use crate::audit::NewEvent;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody, ErrorCode};
use crate::ingress::IngestError;
use crate::state::AppState;
use crate::store::{self, AppRow, IngressRow};
use crate::wire::ingress::{
    ArchiveInfo, ArchiveUpload, Check, CheckOutcome, FileQuery, IngressQuery, IngressReceipt,
    Manifest,
};

pub(crate) fn check_dto(c: store::CheckRow) -> Check {
    Check {
        check: c.check,
        // The gateway stores only outcomes it computed.
        outcome: c.outcome.parse().unwrap_or(CheckOutcome::Review),
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

fn check_name(name: &str) -> ApiResult<String> {
    let n = name.trim();
    if n.is_empty() || n.len() > 200 || n.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            ErrorCode::BadName,
            "an archive needs a name of 1 to 200 printable characters",
        ));
    }
    Ok(n.to_owned())
}

/// Uploads an archive (tar, or tar compressed with zstd) as the raw request body and applies for
/// its ingress. Refusals name the entry and the rule; nothing of a refused upload is kept.
#[utoipa::path(post, path = "/api/v1/ingress", operation_id = "submit_ingress", tag = "ingress", security(("bearer" = [])), params(IngressQuery),
    request_body(content = ArchiveUpload, content_type = "application/octet-stream", description = "a tar or tar.zst archive"),
    responses((status = 201, body = IngressReceipt), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 413, body = ErrorBody), (status = 414, description = "the query string is too long"),
        (status = 422, body = ErrorBody)))]
pub async fn submit(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<IngressQuery>,
    body: Body,
) -> ApiResult<(StatusCode, ApiJson<IngressReceipt>)> {
    let standing = {
        let mut conn = state.db.pool().acquire().await?;
        Standing {
            member_roles: store::member_roles(&mut conn, &q.project, caller.sub.as_str()).await?,
            is_requester: false,
        }
    };
    require(&caller, Action::AppCreate(Kind::Ingress), standing)?;
    let name = check_name(&q.name)?;
    let description = q.description.unwrap_or_default();
    if description.len() > 64 * 1024 {
        return Err(ApiError::bad_request(
            ErrorCode::TooLong,
            "the description is longer than 65536 bytes",
        ));
    }

    let settings = &state.settings.ingress;
    let result = crate::ingress::ingest(
        body.into_data_stream(),
        &state.blobs,
        settings.limits(),
        settings.checks(),
        settings.direct_io,
    )
    .await;
    let ingested = match result {
        Ok(i) => i,
        Err(IngestError::Internal(e)) => return Err(ApiError::Internal(e)),
        Err(refusal) => {
            let (status, code, message, entry) = match &refusal {
                IngestError::Refused(v) => (
                    if v.rule.is_size_limit() {
                        StatusCode::PAYLOAD_TOO_LARGE
                    } else {
                        StatusCode::UNPROCESSABLE_ENTITY
                    },
                    ErrorCode::from(v.rule),
                    v.to_string(),
                    v.entry.clone(),
                ),
                IngestError::Interrupted(why) => (
                    StatusCode::BAD_REQUEST,
                    ErrorCode::from(policy::archive::rules::Rule::Truncated),
                    format!("the upload was interrupted: {why}"),
                    None,
                ),
                IngestError::Internal(_) => unreachable!("handled above"),
            };
            let mut tx = state.db.begin_write().await?;
            tx.audit(NewEvent {
                actor: caller.sub.as_str(),
                action: "ingress.refused",
                subject: &q.project,
                detail: json!({"name": name, "rule": code, "entry": entry, "message": message}),
            })
            .await?;
            state.commit(tx).await?;
            return Err(ApiError::Refused {
                status,
                code,
                message,
            });
        }
    };

    let now = crate::time::now();
    let files = ingested.entries.iter().filter(|e| e.kind == "file").count() as u64;
    let outcome = policy::archive::checks::overall(&ingested.checks);
    let sha = ingested.blob.sha256().to_owned();
    let row = AppRow {
        id: store::new_id("app"),
        kind: Kind::Ingress,
        project_id: q.project.clone(),
        requester: caller.sub.to_string(),
        title: name.clone(),
        description,
        payload: json!({
            "archive_sha256": sha,
            "format": ingested.format.as_str(),
            "upload_bytes": ingested.upload_bytes,
            "entries": ingested.entries.len(),
            "files": files,
            "unpacked_bytes": ingested.unpacked_bytes,
            "checks": outcome.as_str(),
        })
        .to_string(),
        state: AppStateName::Submitted,
        round: 1,
        created_at: now.clone(),
        updated_at: now,
    };
    let archive = IngressRow {
        application_id: row.id.clone(),
        name,
        blob_sha256: sha.clone(),
        format: ingested.format.as_str().into(),
        upload_bytes: ingested.upload_bytes as i64,
        tar_sha256: ingested.tar_sha256.clone(),
        unpacked_bytes: ingested.unpacked_bytes as i64,
        entry_count: ingested.entries.len() as i64,
    };
    let mut tx = state.db.begin_write().await?;
    store::record_blob(tx.conn(), &sha, ingested.blob.size()).await?;
    submit_application(&mut tx, &row).await?;
    store::insert_ingress(tx.conn(), &archive).await?;
    store::insert_entries(tx.conn(), &row.id, &ingested.entries).await?;
    store::insert_checks(tx.conn(), &row.id, &ingested.checks).await?;
    tx.audit(NewEvent {
        actor: caller.sub.as_str(),
        action: "ingress.upload",
        subject: &row.id,
        detail: json!({
            "archive_sha256": sha,
            "tar_sha256": archive.tar_sha256,
            "format": archive.format,
            "upload_bytes": archive.upload_bytes,
            "entries": archive.entry_count,
            "checks": ingested.checks.iter().map(|c| json!({"check": c.check, "outcome": c.outcome.as_str()})).collect::<Vec<_>>(),
        }),
    })
    .await?;
    // Renamed into the store only now that its checksum and manifest are recorded; the commit
    // follows. A crash in between leaves a blob the database does not know, removed at start.
    ingested.blob.commit().await?;
    state.commit(tx).await?;
    let checks = ingested
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
            application: app_summary(&state, row, &[]),
            archive: archive_dto(&archive, files),
            checks_outcome: outcome.into(),
            checks,
        }),
    ))
}

/// The manifest of an ingress application: every entry with its size, mode and SHA-256, and the
/// automatic checks.
#[utoipa::path(get, path = "/api/v1/applications/{id}/manifest", operation_id = "get_ingress_manifest", tag = "ingress", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = Manifest), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn manifest(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<ApiJson<Manifest>> {
    let mut conn = state.db.pool().acquire().await?;
    visible_app(&mut conn, &caller, &id).await?;
    let archive = store::ingress(&mut conn, &id)
        .await?
        .ok_or(ApiError::NotFound("archive"))?;
    let entries = store::entries(&mut conn, &id).await?;
    let checks = store::checks(&mut conn, &id).await?;
    let files = entries.iter().filter(|e| e.kind == "file").count() as u64;
    Ok(ApiJson(Manifest {
        archive: archive_dto(&archive, files),
        checks: checks.into_iter().map(check_dto).collect(),
        entries,
    }))
}

/// Reads one text file inside an ingress archive. Every read is audited.
#[utoipa::path(get, path = "/api/v1/applications/{id}/file", operation_id = "get_ingress_file", tag = "ingress", security(("bearer" = [])),
    params(("id" = String, Path), FileQuery),
    responses((status = 400, body = ErrorBody, description = "the request does not parse or breaks a rule"), (status = 200, description = "the file's text", content_type = "text/plain"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody)))]
pub async fn file(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<FileQuery>,
) -> ApiResult<([(axum::http::HeaderName, String); 2], Vec<u8>)> {
    let (archive, entry) = {
        let mut conn = state.db.pool().acquire().await?;
        let (_, standing) = visible_app(&mut conn, &caller, &id).await?;
        require(&caller, Action::ReadContent, standing)?;
        let archive = store::ingress(&mut conn, &id)
            .await?
            .ok_or(ApiError::NotFound("archive"))?;
        let entry = store::entries(&mut conn, &id)
            .await?
            .into_iter()
            .find(|e| e.path == q.path && e.kind == "file")
            .ok_or(ApiError::NotFound("file"))?;
        (archive, entry)
    };
    let max = state.settings.ingress.max_view_bytes;
    if entry.size > max {
        return Err(ApiError::TooLarge(format!(
            "{} is {} bytes; files up to {max} bytes can be read here",
            entry.path, entry.size
        )));
    }
    let blob = state.blobs.path_of(&archive.blob_sha256)?;
    let wanted = entry.path.clone();
    let found = tokio::task::spawn_blocking(move || crate::ingress::read_file(blob, wanted, max))
        .await
        .map_err(|e| anyhow::anyhow!("reading the archive: {e}"))??;
    let bytes = match found {
        Some(Ok(b)) => b,
        Some(Err(size)) => return Err(ApiError::TooLarge(format!("the file is {size} bytes"))),
        None => {
            return Err(ApiError::Internal(anyhow::anyhow!(
                "{} is in the manifest but not in the stored archive",
                entry.path
            )));
        }
    };
    let sha = crate::sha256_hex(&bytes);
    if Some(&sha) != entry.sha256.as_ref() {
        return Err(ApiError::Internal(anyhow::anyhow!(
            "{} does not match its recorded SHA-256",
            entry.path
        )));
    }
    if bytes.contains(&0) || std::str::from_utf8(&bytes).is_err() {
        return Err(ApiError::Refused {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            code: ErrorCode::NotText,
            message: format!("{} is not UTF-8 text; its SHA-256 is {sha}", entry.path),
        });
    }
    let mut tx = state.db.begin_write().await?;
    tx.audit(NewEvent {
        actor: caller.sub.as_str(),
        action: "content.read",
        subject: &id,
        detail: json!({"path": entry.path, "sha256": sha, "size": entry.size}),
    })
    .await?;
    state.commit(tx).await?;
    Ok((
        [
            (
                axum::http::header::CONTENT_TYPE,
                "text/plain; charset=utf-8".to_owned(),
            ),
            (axum::http::HeaderName::from_static("x-content-sha256"), sha),
        ],
        bytes,
    ))
}

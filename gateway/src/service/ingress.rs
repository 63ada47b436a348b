//! Ingress: an analyst's archive streamed in, validated, stored by hash, and queued as an
//! application of kind `ingress` with its manifest and automatic checks; reviewers read its
//! manifest and the text files inside it, every read audited.

use policy::access::Action;
use policy::archive::checks::{CheckResult, Outcome};
use policy::review::{Kind, State};
use serde_json::json;

use super::{Error, Result, allow, check_text};
use crate::audit::NewEvent;
use crate::auth::Caller;
use crate::error::ErrorCode;
use crate::ingress::IngestError;
use crate::state::AppState;
use crate::store::ingress::{self as archives, IngressRow, ManifestEntry};
use crate::store::{self, AppRow, CheckRow};

/// What the analyst says of the archive.
#[derive(Debug)]
pub struct Upload {
    pub project: String,
    /// The application's title.
    pub name: String,
    pub description: Option<String>,
}

/// A new ingress application and what the gateway found in its archive.
#[derive(Debug)]
pub struct Receipt {
    pub application: AppRow,
    pub archive: IngressRow,
    pub files: u64,
    pub checks: Vec<CheckResult>,
    /// The worst outcome of the checks.
    pub outcome: Outcome,
}

fn check_name(name: &str) -> Result<String> {
    let n = name.trim();
    if n.is_empty() || n.len() > 200 || n.chars().any(char::is_control) {
        return Err(Error::invalid(
            ErrorCode::BadName,
            "an archive needs a name of 1 to 200 printable characters",
        ));
    }
    Ok(n.to_owned())
}

/// Streams an archive (tar, or tar compressed with zstd) into the store and applies for its
/// ingress. Refusals name the entry and the rule and are audited; nothing of a refused upload
/// is kept.
pub async fn submit<S, E>(state: &AppState, caller: &Caller, up: Upload, body: S) -> Result<Receipt>
where
    S: futures_util::Stream<Item = std::result::Result<axum::body::Bytes, E>> + Send + Unpin,
    E: std::fmt::Display + Send,
{
    let standing = {
        let mut conn = state.db.pool().acquire().await?;
        super::standing_in(&mut conn, &up.project, caller).await?
    };
    let allowed = allow(caller, Action::AppCreate(Kind::Ingress), standing)?;
    let name = check_name(&up.name)?;
    let description = up.description.unwrap_or_default();
    check_text("the description", &description, 64 * 1024, false)?;

    let settings = &state.settings.ingress;
    let result = crate::ingress::ingest(
        body,
        &state.blobs,
        settings.limits(),
        settings.checks(),
        settings.direct_io,
    )
    .await;
    let ingested = match result {
        Ok(i) => i,
        Err(IngestError::Internal(e)) => return Err(Error::Internal(e)),
        Err(refusal) => {
            let (error, code, entry) = refusal_of(refusal);
            let mut tx = state.db.begin_write().await?;
            tx.audit(NewEvent {
                actor: caller.sub.as_str(),
                action: "ingress.refused",
                subject: &up.project,
                detail: json!({"name": name, "rule": code, "entry": entry, "message": error.to_string()}),
            })
            .await?;
            state.commit(tx).await?;
            return Err(error);
        }
    };

    let now = crate::time::now();
    let files = ingested.entries.iter().filter(|e| e.kind == "file").count() as u64;
    let outcome = policy::archive::checks::overall(&ingested.checks);
    let sha = ingested.blob.sha256().to_owned();
    let row = AppRow {
        id: store::new_id("app"),
        kind: Kind::Ingress,
        project_id: Some(up.project.clone()),
        dataset_id: None,
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
        state: State::Submitted,
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
    super::applications::submit(&mut tx, &allowed, &row).await?;
    archives::insert_archive(tx.conn(), &archive).await?;
    archives::insert_entries(tx.conn(), &row.id, &ingested.entries).await?;
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
    Ok(Receipt {
        application: row,
        archive,
        files,
        checks: ingested.checks,
        outcome,
    })
}

/// An upload's refusal (not an internal failure): the error answered, the rule's code and the
/// entry it names, for the audit event.
pub(crate) fn refusal_of(refusal: IngestError) -> (Error, &'static str, Option<String>) {
    match refusal {
        IngestError::Refused(v) => (
            Error::Archive {
                code: v.rule.into(),
                message: v.to_string(),
                size_limit: v.rule.is_size_limit(),
            },
            v.rule.code(),
            v.entry.clone(),
        ),
        IngestError::Interrupted(why) => {
            let rule = policy::archive::rules::Rule::Truncated;
            (
                Error::invalid(rule.into(), format!("the upload was interrupted: {why}")),
                rule.code(),
                None,
            )
        }
        IngestError::Internal(e) => (Error::Internal(e), "internal", None),
    }
}

/// An ingress application's archive, every entry and the automatic checks.
#[derive(Debug)]
pub struct Manifest {
    pub archive: IngressRow,
    pub entries: Vec<ManifestEntry>,
    pub checks: Vec<CheckRow>,
}

impl Manifest {
    pub fn files(&self) -> u64 {
        self.entries.iter().filter(|e| e.kind == "file").count() as u64
    }
}

/// The manifest of an ingress application the caller may see.
pub async fn manifest(state: &AppState, caller: &Caller, id: &str) -> Result<Manifest> {
    let mut conn = state.db.pool().acquire().await?;
    super::applications::seen(&mut conn, caller, id).await?;
    let archive = archives::archive(&mut conn, id)
        .await?
        .ok_or(Error::NotFound("archive"))?;
    Ok(Manifest {
        archive,
        entries: archives::entries(&mut conn, id).await?,
        checks: store::checks(&mut conn, id).await?,
    })
}

/// One text file read out of an archive, its read audited.
#[derive(Debug)]
pub struct TextFile {
    pub sha256: String,
    pub text: Vec<u8>,
}

/// Reads one text file inside an ingress archive, checked against its recorded SHA-256.
/// Every read is audited.
pub async fn read_file(
    state: &AppState,
    caller: &Caller,
    id: &str,
    path: &str,
) -> Result<TextFile> {
    let (archive, entry) = {
        let mut conn = state.db.pool().acquire().await?;
        let app = super::applications::seen(&mut conn, caller, id).await?;
        allow(caller, Action::ReadContent, app.standing)?;
        let archive = archives::archive(&mut conn, id)
            .await?
            .ok_or(Error::NotFound("archive"))?;
        let entry = archives::entries(&mut conn, id)
            .await?
            .into_iter()
            .find(|e| e.path == path && e.kind == "file")
            .ok_or(Error::NotFound("file"))?;
        (archive, entry)
    };
    let max = state.settings.ingress.max_view_bytes;
    if entry.size > max {
        return Err(Error::TooLarge(format!(
            "{} is {} bytes; files up to {max} bytes can be read here",
            entry.path, entry.size
        )));
    }
    let blob = state.blobs.path_of(&archive.blob_sha256)?;
    let wanted = entry.path.clone();
    let found =
        tokio::task::spawn_blocking(move || crate::ingress::read::read_file(blob, wanted, max))
            .await
            .map_err(|e| anyhow::anyhow!("reading the archive: {e}"))??;
    let bytes = match found {
        Some(Ok(b)) => b,
        Some(Err(size)) => return Err(Error::TooLarge(format!("the file is {size} bytes"))),
        None => {
            return Err(Error::internal(format!(
                "{} is in the manifest but not in the stored archive",
                entry.path
            )));
        }
    };
    let sha = crate::sha256_hex(&bytes);
    if Some(&sha) != entry.sha256.as_ref() {
        return Err(Error::internal(format!(
            "{} does not match its recorded SHA-256",
            entry.path
        )));
    }
    if bytes.contains(&0) || std::str::from_utf8(&bytes).is_err() {
        return Err(Error::Unsupported {
            code: ErrorCode::NotText,
            message: format!("{} is not UTF-8 text; its SHA-256 is {sha}", entry.path),
        });
    }
    let mut tx = state.db.begin_write().await?;
    tx.audit(NewEvent {
        actor: caller.sub.as_str(),
        action: "content.read",
        subject: id,
        detail: json!({"path": entry.path, "sha256": sha, "size": entry.size}),
    })
    .await?;
    state.commit(tx).await?;
    Ok(TextFile {
        sha256: sha,
        text: bytes,
    })
}

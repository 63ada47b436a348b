//! What reviewers read of an egress application: its rounds, files and history, and
//! previews of its files (each an audited read).

use policy::access::Action;
use policy::egress::{Finding, Outcome};
use serde_json::json;

use super::super::{Error, Result, allow};
use crate::audit::NewEvent;
use crate::auth::Caller;
use crate::egress::payload::open_file;
use crate::error::ErrorCode;
use crate::state::AppState;
use crate::store;
use crate::store::egress::{self as estore, FileRow, ReleaseRow, RoundRow};

/// Everything reviewers read about an egress application (besides its votes).
#[derive(Debug)]
pub struct Detail {
    pub sandbox: String,
    pub rounds: Vec<RoundRow>,
    /// Every round's files.
    pub files: Vec<FileRow>,
    /// The project's earlier released and rejected egress applications, with their files.
    pub history: Vec<Earlier>,
    pub release: Option<ReleaseRow>,
}

#[derive(Debug)]
pub struct Earlier {
    pub application: String,
    pub state: String,
    pub at: String,
    pub files: Vec<FileRow>,
}

/// An egress application's rounds, files, the project's history and its release.
pub async fn detail(state: &AppState, caller: &Caller, id: &str) -> Result<Detail> {
    let mut conn = state.db.pool().acquire().await?;
    let app = crate::service::applications::seen(&mut conn, caller, id).await?;
    // Stewards see every application, not what other projects take out.
    let app = crate::service::see(
        caller,
        Action::EgressRead,
        app.standing,
        Some(app.object),
        "application",
    )?
    .object;
    let sandbox = estore::sandbox_of(&mut conn, id)
        .await?
        .ok_or(Error::NotFound("egress request"))?;
    let history = estore::history(&mut conn, app.project(), id)
        .await?
        .into_iter()
        .map(|(application, state, at, files)| Earlier {
            application,
            state,
            at,
            files,
        })
        .collect();
    Ok(Detail {
        sandbox,
        rounds: estore::rounds(&mut conn, id).await?,
        files: estore::files(&mut conn, id, None).await?,
        history,
        release: estore::release(&mut conn, id).await?,
    })
}

/// What a reviewer sees of one quarantined file.
#[derive(Debug)]
pub enum PreviewBody {
    Table(policy::egress::preview::TablePreview),
    Text(String),
    Image(policy::egress::preview::ImageInfo),
    /// No preview for this type; the reason.
    None(String),
}

#[derive(Debug)]
pub struct Preview {
    pub file: FileRow,
    pub body: PreviewBody,
}

/// How much of a file a preview reads.
const PREVIEW_BYTES: usize = 256 * 1024;

/// A preview of one quarantined file, for reviewers from outside the project; every preview
/// is an audited read.
pub async fn preview(
    state: &AppState,
    caller: &Caller,
    id: &str,
    path: &str,
    round: Option<i64>,
) -> Result<Preview> {
    let (round, file, payload) = quarantined(state, caller, id, path, round).await?;
    let prefix = {
        let (state, file) = (state.clone(), file.clone());
        tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<u8>> {
            use std::io::Read;
            let mut buf = Vec::with_capacity(PREVIEW_BYTES);
            open_file(&state.blobs, &state.quarantine_key, payload.as_ref(), &file)?
                .take(PREVIEW_BYTES as u64)
                .read_to_end(&mut buf)?;
            Ok(buf)
        })
        .await
        .map_err(|e| Error::internal(format!("reading a quarantined file: {e}")))?
        .map_err(|e| Error::internal(format!("reading a quarantined file: {e:#}")))?
    };
    let findings = stored_findings(&file.findings);
    use policy::egress::ContentType as C;
    use policy::egress::preview as p;
    let content_type: C = file.content_type.parse().unwrap_or(C::Binary);
    let body = match content_type {
        C::Csv => PreviewBody::Table(p::table_preview(&prefix, b',', 50, 30, &findings)),
        C::Tsv => PreviewBody::Table(p::table_preview(&prefix, b'\t', 50, 30, &findings)),
        C::Text | C::Json | C::Vcf | C::Fastq | C::PlinkBim | C::PlinkFam => {
            PreviewBody::Text(p::text_preview(&prefix, 200, 64 * 1024))
        }
        C::Png | C::Jpeg | C::Pdf => match p::image_info(&prefix) {
            Some(info) => PreviewBody::Image(info),
            None => PreviewBody::None(format!("no preview of this {}", file.content_type)),
        },
        _ => PreviewBody::None(format!("no preview of {} content", file.content_type)),
    };
    audit_read(
        state,
        caller,
        id,
        json!({"egress_file": file.path, "round": round, "sha256": file.sha256}),
    )
    .await?;
    Ok(Preview { file, body })
}

/// The quarantined file `path` of round `round` (the current one when none) of egress
/// application `id`, for a caller who may read quarantined files: a reviewer from outside the
/// project. Checked on a connection of the pool, as ingress reads are: only the audit event
/// takes the write lock every writer waits for, not a refused caller nor the file's read.
async fn quarantined(
    state: &AppState,
    caller: &Caller,
    id: &str,
    path: &str,
    round: Option<i64>,
) -> Result<(i64, FileRow, Option<estore::Payload>)> {
    let mut conn = state.db.pool().acquire().await?;
    let app = crate::service::applications::seen(&mut conn, caller, id).await?;
    allow(caller, Action::QuarantineRead, app.standing)?;
    let members = store::members(&mut conn, app.object.project()).await?;
    let conflicted: Vec<&str> = members.iter().map(|m| m.subject.as_str()).collect();
    if let Err(refusal) =
        policy::review::may_give_opinion(&app.object.requester, &conflicted, caller.sub.as_str())
    {
        return Err(Error::Forbidden {
            code: ErrorCode::SeparationOfDuties,
            message: match refusal {
                policy::review::Refusal::OwnOpinion => {
                    "quarantined files are read by reviewers, never by their requester".into()
                }
                _ => "quarantined files are read by reviewers from outside the project".into(),
            },
        });
    }
    let round = round.unwrap_or(app.object.round);
    let file = estore::files(&mut conn, id, Some(round))
        .await?
        .into_iter()
        .find(|f| f.path == path)
        .ok_or(Error::NotFound("file"))?;
    let payload = estore::payload(&mut conn, id, round).await?;
    Ok((round, file, payload))
}

/// Records that `caller` read quarantined content of application `id`.
async fn audit_read(
    state: &AppState,
    caller: &Caller,
    id: &str,
    detail: serde_json::Value,
) -> Result<()> {
    let mut tx = state.db.begin_write().await?;
    tx.audit(NewEvent {
        actor: caller.sub.as_str(),
        action: "content.read",
        subject: id,
        detail,
    })
    .await?;
    state.commit(tx).await?;
    Ok(())
}

/// The media type of a file the egress checks typed (by its content) as `content_type`,
/// when that is an image a browser may show: PNG or JPEG, nothing else.
pub fn image_media_type(content_type: &str) -> Option<&'static str> {
    use policy::egress::ContentType as C;
    match content_type.parse::<C>().ok()? {
        C::Png => Some("image/png"),
        C::Jpeg => Some("image/jpeg"),
        _ => None,
    }
}

/// A quarantined image opened whole for a reviewer to see.
pub struct Image {
    pub file: FileRow,
    /// `image/png` or `image/jpeg`, as the egress checks typed the file by its content.
    pub media_type: &'static str,
    /// Its bytes, read (and decrypted) on a blocking thread as they are sent.
    pub content: ByteStream,
}

/// Bytes read on a blocking thread, a piece at a time, as a stream.
pub(crate) type ByteStream =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = std::io::Result<axum::body::Bytes>> + Send>>;

/// Streams what `open` gives, read on a blocking thread, in pieces of 64 KiB (a few ahead).
fn stream_blocking(
    open: impl FnOnce() -> anyhow::Result<Box<dyn std::io::Read + Send>> + Send + 'static,
) -> ByteStream {
    use std::io::Read;
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<axum::body::Bytes>>(4);
    tokio::task::spawn_blocking(move || {
        let mut reader = match open() {
            Ok(r) => r,
            Err(e) => {
                let _ = tx.blocking_send(Err(std::io::Error::other(format!("{e:#}"))));
                return;
            }
        };
        loop {
            let mut buf = vec![0u8; 64 * 1024];
            match reader.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    buf.truncate(n);
                    if tx.blocking_send(Ok(buf.into())).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

/// One quarantined file whole, for the reviewers who may preview it, as an audited read;
/// only a file the egress checks typed as PNG or JPEG, any other refused (`not_image`).
pub async fn image(
    state: &AppState,
    caller: &Caller,
    id: &str,
    path: &str,
    round: Option<i64>,
) -> Result<Image> {
    let (round, file, payload) = quarantined(state, caller, id, path, round).await?;
    let Some(media_type) = image_media_type(&file.content_type) else {
        return Err(Error::Unsupported {
            code: ErrorCode::NotImage,
            message: format!(
                "{} is {} content, not an image (PNG or JPEG)",
                file.path, file.content_type
            ),
        });
    };
    let content = {
        let (state, file) = (state.clone(), file.clone());
        stream_blocking(move || {
            open_file(&state.blobs, &state.quarantine_key, payload.as_ref(), &file)
        })
    };
    audit_read(
        state,
        caller,
        id,
        json!({"egress_file": file.path, "round": round, "sha256": file.sha256, "whole": true}),
    )
    .await?;
    Ok(Image {
        file,
        media_type,
        content,
    })
}

/// The findings of a stored file, back as `policy` values (for marking cells).
fn stored_findings(text: &str) -> Vec<Finding> {
    let values: Vec<serde_json::Value> = serde_json::from_str(text).unwrap_or_default();
    values
        .iter()
        .filter_map(|v| {
            let outcome: Outcome = v.get("outcome")?.as_str()?.parse().ok()?;
            let location = match (v.get("row")?.as_u64(), v.get("column")?.as_u64()) {
                (Some(row), Some(column)) => Some(policy::egress::Location { row, column }),
                _ => None,
            };
            Some(Finding {
                rule: v.get("rule")?.as_str()?.parse().ok()?,
                outcome,
                message: v.get("message")?.as_str()?.to_owned(),
                location,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::image_media_type;

    #[test]
    fn only_pngs_and_jpegs_are_images_a_page_shows() {
        assert_eq!(image_media_type("png"), Some("image/png"));
        assert_eq!(image_media_type("jpeg"), Some("image/jpeg"));
        for other in ["pdf", "csv", "text", "binary", "zip", "", "image/png"] {
            assert_eq!(image_media_type(other), None, "{other}");
        }
    }
}

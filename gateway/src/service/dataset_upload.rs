//! A dataset's listing: what the committee's decision on its listing application does to it,
//! and the upload of its content into the STORE once the listing is approved.
//!
//! A dataset is `registered` (its listing applied for), then `approved` when the listing is
//! approved (in the transaction that approves it), or `unlisted` when the listing is rejected
//! or withdrawn. A steward of its institution then uploads its content once
//! (`POST /api/v1/datasets/{id}/content`): the archive is read through the ingress rules with
//! `[datasets]` limits and unpacked read-only into a temporary folder of the STORE
//! (`<store>/.tmp/<instance>/`), each file hashed; the transaction that records the manifest,
//! marks the dataset `listed` and the listing application `listed` renames the folder to
//! `<store>/<dataset>` before it commits. A refused or interrupted upload removes its folder and
//! leaves the dataset `approved`; a folder renamed in by a transaction that did not commit is
//! not the dataset's content (only a `listed` dataset's folder is ever mounted) and is removed
//! by the next upload, and temporary folders by the next start.

use std::path::{Path, PathBuf};

use policy::access::Action;
use policy::review::{Kind, State};
use serde_json::json;

use super::datasets::{APPROVED, LISTED, REGISTERED, UNLISTED, seen, standing_of};
use super::{Error, Result, allow};
use crate::audit::NewEvent;
use crate::auth::Caller;
use crate::db::WriteTx;
use crate::error::ErrorCode;
use crate::ingress::content::{self, Unpacked};
use crate::state::AppState;
use crate::store::datasets::{self as dstore, ContentRow, DatasetRow};
use crate::store::{self, AppRow};

/// Records what the decision on a dataset's listing application does to the dataset, in the
/// transaction that decides it, audited (`dataset.state`): approved, the dataset awaits its
/// content; rejected or withdrawn, it is `unlisted`.
pub(crate) async fn listing_decided(tx: &mut WriteTx, app: &AppRow, now: &str) -> Result<()> {
    let Some(dataset) = app.dataset_id.as_deref() else {
        return Ok(());
    };
    let to = match app.state {
        State::Approved => APPROVED,
        State::Rejected | State::Withdrawn => UNLISTED,
        _ => return Ok(()),
    };
    if !dstore::set_state(tx.conn(), dataset, REGISTERED, to, now).await? {
        return Err(Error::conflict(
            ErrorCode::ConcurrentChange,
            "the dataset changed meanwhile; try again",
        ));
    }
    tx.audit(NewEvent {
        actor: "gateway",
        action: "dataset.state",
        subject: dataset,
        detail: json!({"from": REGISTERED, "to": to, "application": app.id}),
    })
    .await?;
    Ok(())
}

/// Where a listed dataset's content lives.
pub fn content_dir(state: &AppState, dataset: &str) -> PathBuf {
    state.settings.store_dir().join(dataset)
}

/// Where a dataset's content is to be mounted from: a listed dataset's folder in the STORE, or
/// for one whose listing is approved the directory `[sandbox.datasets]` names by its id; any
/// other is `dataset_unavailable`, saying why.
pub(crate) fn content_of(state: &AppState, d: &DatasetRow) -> Result<PathBuf> {
    let why = match d.state.as_str() {
        LISTED => return Ok(content_dir(state, &d.id)),
        APPROVED => match state.sandboxes.settings().datasets.get(&d.id) {
            Some(declared) => return Ok(declared.clone()),
            None => "it is not listed yet (its content is not uploaded)",
        },
        REGISTERED => "it is not listed yet (its listing is not approved)",
        _ => "it is not listed (its listing was rejected or withdrawn)",
    };
    Err(Error::conflict(
        ErrorCode::DatasetUnavailable,
        format!("dataset `{}` cannot be mounted: {why}", d.id),
    ))
}

/// Where this gateway unpacks uploads before they are listed.
fn tmp_dir(store: &Path, instance: &str) -> PathBuf {
    store.join(".tmp").join(instance)
}

/// Removes the temporary folders an earlier run of this gateway left in the STORE (uploads a
/// crash or a stop cut short); how many.
pub fn sweep_tmp(settings: &crate::config::Settings, instance: &str) -> anyhow::Result<usize> {
    let dir = tmp_dir(&settings.store_dir(), instance);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e.into()),
    };
    let mut n = 0;
    for e in entries {
        content::remove_tree(&e?.path())?;
        n += 1;
    }
    Ok(n)
}

/// Why a dataset in `state` takes no upload, if it does not.
fn not_ready(d: &DatasetRow) -> Option<Error> {
    let id = &d.id;
    Some(match d.state.as_str() {
        APPROVED => return None,
        REGISTERED => Error::conflict(
            ErrorCode::NotApproved,
            format!("dataset `{id}` is not listed yet: its listing application is not approved"),
        ),
        LISTED => Error::conflict(
            ErrorCode::DatasetListed,
            format!("dataset `{id}` is listed: its content was uploaded already"),
        ),
        UNLISTED => Error::conflict(
            ErrorCode::WrongState,
            format!("dataset `{id}` is not listed: its listing was rejected or withdrawn"),
        ),
        other => return Some(Error::internal(format!("dataset {id}: state `{other}`"))),
    })
}

/// A listed dataset and what its content is.
#[derive(Debug)]
pub struct Listed {
    pub dataset: DatasetRow,
    pub content: ContentRow,
}

/// Removes a tree off the runtime's threads.
async fn remove(path: PathBuf) -> Result<()> {
    tokio::task::spawn_blocking(move || content::remove_tree(&path))
        .await
        .map_err(|e| anyhow::anyhow!("removing a dataset folder: {e}"))??;
    Ok(())
}

/// The temporary folder of an upload: removed unless it was renamed into place, also when the
/// request is dropped halfway.
struct Unfinished(Option<PathBuf>);

impl Unfinished {
    async fn discard(mut self) {
        if let Some(p) = self.0.take() {
            if let Err(e) = remove(p.clone()).await {
                tracing::warn!(path = %p.display(), error = %e, "removing a refused dataset upload");
            }
        }
    }
}

impl Drop for Unfinished {
    fn drop(&mut self) {
        let Some(p) = self.0.take() else {
            return;
        };
        // The request was dropped halfway: its unpack worker sees the body end and stops
        // shortly; until then it may still be writing the folder.
        let remove = move || {
            for _ in 0..50 {
                if content::remove_tree(&p).is_ok() {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            tracing::warn!(path = %p.display(), "a dropped dataset upload's folder is left to the next start");
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn_blocking(remove)),
            Err(_) => remove(),
        }
    }
}

/// Streams a dataset's content (a tar or tar.zst) into the STORE and lists the dataset: a
/// steward of its institution, once its listing is approved, once. Refusals name the entry and
/// the rule and are audited (`dataset.upload_refused`); nothing of a refused upload is kept.
pub async fn upload<S, E>(state: &AppState, caller: &Caller, id: &str, body: S) -> Result<Listed>
where
    S: futures_util::Stream<Item = std::result::Result<axum::body::Bytes, E>> + Send + Unpin,
    E: std::fmt::Display + Send,
{
    {
        let mut conn = state.db.pool().acquire().await?;
        let dataset = seen(&mut conn, caller, id).await?;
        allow(
            caller,
            Action::DatasetRegister,
            standing_of(caller, &dataset.institution),
        )?;
        if let Some(e) = not_ready(&dataset) {
            return Err(e);
        }
    }
    let store_dir = state.settings.store_dir();
    let tmp = tmp_dir(&store_dir, state.sandboxes.instance())
        .join(format!("{id}-{}", store::new_id("up")));
    std::fs::create_dir_all(tmp.parent().expect("a folder inside the STORE"))?;
    std::fs::create_dir(&tmp)?;
    let mut unfinished = Unfinished(Some(tmp.clone()));
    let limits = state.settings.datasets.limits();
    let unpacked = match content::unpack_into(body, tmp.clone(), limits).await {
        Ok(u) => u,
        Err(refusal) => {
            unfinished.discard().await;
            let (error, code, entry) = super::ingress::refusal_of(refusal);
            if matches!(error, Error::Internal(_)) {
                return Err(error);
            }
            let mut tx = state.db.begin_write().await?;
            tx.audit(NewEvent {
                actor: caller.sub.as_str(),
                action: "dataset.upload_refused",
                subject: id,
                detail: json!({"rule": code, "entry": entry, "message": error.to_string()}),
            })
            .await?;
            state.commit(tx).await?;
            return Err(error);
        }
    };
    match list(state, caller, id, &tmp, &store_dir, &unpacked).await {
        Ok(listed) => {
            // Renamed into place: the STORE's now.
            unfinished.0 = None;
            Ok(listed)
        }
        Err(e) => {
            unfinished.discard().await;
            Err(e)
        }
    }
}

/// Records the content of an upload, lists the dataset and its listing application, and renames
/// the unpacked folder into place, in one write transaction.
async fn list(
    state: &AppState,
    caller: &Caller,
    id: &str,
    tmp: &Path,
    store_dir: &Path,
    unpacked: &Unpacked,
) -> Result<Listed> {
    let now = crate::time::now();
    let manifest_sha256 = crate::sha256_hex(unpacked.manifest().as_bytes());
    let content = ContentRow {
        dataset_id: id.to_owned(),
        files: unpacked.files() as i64,
        bytes: unpacked.bytes as i64,
        manifest_sha256,
        upload_sha256: unpacked.upload_sha256.clone(),
        upload_bytes: unpacked.upload_bytes as i64,
        tar_sha256: unpacked.tar_sha256.clone(),
        format: unpacked.format.as_str().to_owned(),
        uploaded_by: caller.sub.to_string(),
        uploaded_at: now.clone(),
    };
    let mut tx = state.db.begin_write().await?;
    let dataset = dstore::dataset(tx.conn(), id)
        .await?
        .ok_or(Error::NotFound("dataset"))?;
    if let Some(e) = not_ready(&dataset) {
        return Err(e);
    }
    let listing = store::applications_of_dataset(tx.conn(), id)
        .await?
        .into_iter()
        .find(|a| a.kind == Kind::Listing && a.state == State::Approved)
        .ok_or_else(|| Error::internal(format!("dataset {id} is approved without a listing")))?;
    if !dstore::set_state(tx.conn(), id, APPROVED, LISTED, &now).await?
        || !store::set_state(
            tx.conn(),
            &listing.id,
            State::Approved,
            State::Listed,
            listing.round,
            None,
            &now,
        )
        .await?
    {
        return Err(Error::conflict(
            ErrorCode::ConcurrentChange,
            "the dataset changed meanwhile",
        ));
    }
    dstore::insert_content(tx.conn(), &content).await?;
    dstore::insert_files(tx.conn(), id, &unpacked.entries).await?;
    tx.audit(NewEvent {
        actor: caller.sub.as_str(),
        action: "dataset.upload",
        subject: id,
        detail: json!({
            "application": listing.id,
            "files": content.files,
            "bytes": content.bytes,
            "manifest_sha256": content.manifest_sha256,
            "upload_sha256": content.upload_sha256,
            "upload_bytes": content.upload_bytes,
            "tar_sha256": content.tar_sha256,
            "format": content.format,
        }),
    })
    .await?;
    tx.audit(NewEvent {
        actor: caller.sub.as_str(),
        action: "application.state",
        subject: &listing.id,
        detail: json!({
            "from": State::Approved.as_str(),
            "to": State::Listed.as_str(),
            "round": listing.round,
            "comment": null,
        }),
    })
    .await?;
    // The dataset was not listed, so a folder in its place is one a transaction that did not
    // commit renamed there: not its content.
    let target = store_dir.join(id);
    remove(target.clone()).await?;
    std::fs::rename(tmp, &target)?;
    std::fs::File::open(store_dir)?.sync_all()?;
    if let Err(e) = state.commit(tx).await {
        let _ = remove(target).await;
        return Err(e.into());
    }
    let dataset = DatasetRow {
        state: LISTED.to_owned(),
        updated_at: now,
        ..dataset
    };
    Ok(Listed { dataset, content })
}

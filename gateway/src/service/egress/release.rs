//! The release: made pending with the quorum, downloaded by its requester, revoked by an
//! operator; and the recipients releases are encrypted to.

use policy::access::Action;
use serde_json::json;

use super::super::{Error, Result, allow, check_text};
use crate::audit::NewEvent;
use crate::auth::Caller;
use crate::db::WriteTx;
use crate::error::ErrorCode;
use crate::state::AppState;
use crate::store::AppRow;
use crate::store::egress::{self as estore, ReleaseRow};

/// In the transaction that records an egress application's quorum: its release, pending, to
/// the recipient the requester has registered now.
pub(crate) async fn approved(tx: &mut WriteTx, app: &AppRow, now: &str) -> Result<()> {
    let recipient = estore::recipient(tx.conn(), &app.requester)
        .await?
        .ok_or_else(|| {
            Error::conflict(
                ErrorCode::NoRecipient,
                format!("{} has no registered age recipient", app.requester),
            )
        })?;
    estore::insert_release(
        tx.conn(),
        &app.id,
        app.round,
        &app.requester,
        &recipient,
        now,
    )
    .await?;
    tx.audit(NewEvent {
        actor: "gateway",
        action: "release.queued",
        subject: &app.id,
        detail: json!({"round": app.round, "recipient": recipient}),
    })
    .await?;
    Ok(())
}

/// A built release, opened for its requester; the download is counted and audited.
#[derive(Debug)]
pub struct Download {
    pub release: ReleaseRow,
    pub file: tokio::fs::File,
}

pub async fn download(state: &AppState, caller: &Caller, id: &str) -> Result<Download> {
    // A caller refused here never waits for, nor holds, the write lock; asked again inside.
    {
        let mut conn = state.db.pool().acquire().await?;
        let app = crate::service::applications::seen(&mut conn, caller, id).await?;
        allow(caller, Action::ReleaseDownload, app.standing)?;
    }
    let mut tx = state.db.begin_write().await?;
    let app = crate::service::applications::seen(tx.conn(), caller, id).await?;
    allow(caller, Action::ReleaseDownload, app.standing)?;
    let release = estore::release(tx.conn(), id)
        .await?
        .ok_or(Error::NotFound("release"))?;
    let sha = match release.state.as_str() {
        "built" => release.package_sha256.clone().unwrap_or_default(),
        "pending" => {
            return Err(Error::conflict(
                ErrorCode::ReleaseNotReady,
                "the release is being built; try again shortly",
            ));
        }
        "revoked" => {
            return Err(Error::conflict(
                ErrorCode::ReleaseRevoked,
                format!(
                    "the release was revoked by {}",
                    release.revoked_by.as_deref().unwrap_or("an operator")
                ),
            ));
        }
        _ => {
            return Err(Error::conflict(
                ErrorCode::ReleaseRefused,
                format!(
                    "the release could not be built: {}",
                    release.detail.as_deref().unwrap_or("see the audit log")
                ),
            ));
        }
    };
    let now = crate::time::now();
    if release
        .expires_at
        .as_deref()
        .is_some_and(|e| e <= now.as_str())
    {
        return Err(Error::conflict(
            ErrorCode::ReleaseExpired,
            format!(
                "the release expired at {}",
                release.expires_at.as_deref().unwrap_or_default()
            ),
        ));
    }
    let file = state.blobs.open(&sha).await?;
    let downloads = estore::count_download(tx.conn(), id).await?;
    tx.audit(NewEvent {
        actor: caller.sub.as_str(),
        action: "release.download",
        subject: id,
        detail: json!({"package_sha256": sha, "downloads": downloads}),
    })
    .await?;
    state.commit(tx).await?;
    Ok(Download {
        release: ReleaseRow {
            downloads,
            ..release
        },
        file,
    })
}

/// Revokes a release: it can no longer be downloaded.
pub async fn revoke(
    state: &AppState,
    caller: &Caller,
    id: &str,
    reason: &str,
) -> Result<ReleaseRow> {
    check_text("the reason", reason, 16 * 1024, true)?;
    let mut tx = state.db.begin_write().await?;
    let app = crate::service::applications::seen(tx.conn(), caller, id).await;
    // Operators do not see applications; the release is what they act on. A failure to look
    // is an error, not a standing.
    let standing = match app {
        Ok(a) => a.standing,
        Err(Error::NotFound(_)) => Default::default(),
        Err(e) => return Err(e),
    };
    allow(caller, Action::ReleaseRevoke, standing)?;
    let now = crate::time::now();
    if !estore::revoke(tx.conn(), id, caller.sub.as_str(), &now, reason).await? {
        return Err(match estore::release(tx.conn(), id).await? {
            None => Error::NotFound("release"),
            Some(_) => Error::conflict(ErrorCode::ReleaseRevoked, "the release is already revoked"),
        });
    }
    tx.audit(NewEvent {
        actor: caller.sub.as_str(),
        action: "release.revoke",
        subject: id,
        detail: json!({"reason": reason}),
    })
    .await?;
    let row = estore::release(tx.conn(), id)
        .await?
        .ok_or(Error::NotFound("release"))?;
    state.commit(tx).await?;
    Ok(row)
}

/// Registers the caller's age recipient (`age1…`): releases approved from now on are
/// encrypted to it. Returns it, normalised, and the one it replaced.
pub async fn register_key(
    state: &AppState,
    caller: &Caller,
    recipient: &str,
) -> Result<(String, Option<String>)> {
    allow(caller, Action::KeyRegister, Default::default())?;
    let recipient = crate::release::parse_recipient(recipient)
        .map_err(|why| Error::invalid(ErrorCode::BadRecipient, why))?;
    let mut tx = state.db.begin_write().await?;
    let replaced = estore::set_recipient(
        tx.conn(),
        caller.sub.as_str(),
        &recipient,
        &crate::time::now(),
    )
    .await?
    // Registering the same recipient again (`vre keys init` run twice) replaces nothing.
    .filter(|old| *old != recipient);
    tx.audit(NewEvent {
        actor: caller.sub.as_str(),
        action: "key.register",
        subject: caller.sub.as_str(),
        detail: json!({"recipient": recipient, "replaced": replaced}),
    })
    .await?;
    state.commit(tx).await?;
    Ok((recipient, replaced))
}

/// The caller's registered recipient.
pub async fn my_key(state: &AppState, caller: &Caller) -> Result<Option<String>> {
    allow(caller, Action::KeyRegister, Default::default())?;
    let mut conn = state.db.pool().acquire().await?;
    Ok(estore::recipient(&mut conn, caller.sub.as_str()).await?)
}

/// Needed before a request: a release is encrypted to the requester's registered recipient.
pub(super) async fn needs_recipient(state: &AppState, caller: &Caller) -> Result<()> {
    let mut conn = state.db.pool().acquire().await?;
    if estore::recipient(&mut conn, caller.sub.as_str())
        .await?
        .is_none()
    {
        return Err(Error::conflict(
            ErrorCode::NoRecipient,
            "register the age recipient releases are encrypted to first (`vre keys init`)",
        ));
    }
    Ok(())
}

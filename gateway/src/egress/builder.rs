//! The release builder: a background worker that turns each approved egress application into
//! its package. A round quarantined as a payload (`egress::payload`) is finished in place
//! (`release::finish`: every chunk authenticated and every file re-hashed, then the header for
//! the recipient and the tail with `SHA256SUMS` and the RO-Crate metadata) and linked into the
//! store as the package; a round quarantined as blobs (before payloads) is built from them in
//! one streaming pass (`release::build`: tar, zstd, age, every file re-hashed).
//!
//! A release row is made, pending, in the transaction that records the quorum
//! (`service::egress::approved`), so no release exists without one. A builder claims a pending
//! release for a lease it renews while it works; a gateway that dies mid-build lets the lease
//! lapse (or takes its own claim back at its next start, the instance being the same) and the
//! build is done again from the start: a payload's whole chunks are never rewritten, its
//! header and tail are; a package is recorded only with the commit that marks the release
//! built (a link or temporary file left before it is removed at the next start). A quarantined
//! file whose bytes no longer match their hash, or a payload chunk that fails authentication,
//! refuses the release, audited.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use policy::review::{Event, State};
use serde_json::json;
use tokio::sync::Notify;

use crate::audit::NewEvent;
use crate::release::{self, BuildError, CrateInput, PackageFile};
use crate::state::AppState;
use crate::store::egress as estore;
use crate::store::sandboxes as sstore;
use crate::store::{self};
use crate::workers::Stop;

/// How long a claim lasts unless renewed.
const CLAIM_LEASE: Duration = Duration::from_secs(30);
/// How often the builder looks for work nobody woke it for (another gateway's approvals,
/// lapsed claims).
const POLL: Duration = Duration::from_secs(5);

/// The builder's handle: approvals wake it.
pub struct Releases {
    wake: Notify,
    /// Who claims releases: this gateway instance.
    instance: String,
}

impl Releases {
    pub fn new(instance: String) -> Arc<Self> {
        Arc::new(Releases {
            wake: Notify::new(),
            instance,
        })
    }

    /// Tells the builder there is work.
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

/// The worker: builds pending releases until told to stop. A build under way when the stop
/// comes is cut short; its claim is taken up again at the next start.
pub async fn run(state: AppState, stop: Stop) {
    // Until the first look succeeds, releases this instance claimed are taken back at once:
    // their builder was an earlier process, which died. Later, a claim of ours that failed is
    // tried again once its lease lapses, as another gateway's would be.
    let mut at_start = true;
    loop {
        tokio::select! {
            looked = build_pending(&state, at_start) => at_start &= !looked,
            () = stop.requested() => return,
        }
        tokio::select! {
            () = state.releases.wake.notified() => {}
            () = tokio::time::sleep(POLL) => {}
            () = stop.requested() => return,
        }
    }
}

/// Builds the releases that may be claimed (with `ours`, those this instance claimed too);
/// false when they could not be listed.
async fn build_pending(state: &AppState, ours: bool) -> bool {
    let pending = async {
        let mut conn = state.db.pool().acquire().await?;
        let me = ours.then_some(state.releases.instance.as_str());
        estore::claimable_releases(&mut conn, me, &crate::time::now()).await
    };
    let ids = match pending.await {
        Ok(ids) => ids,
        Err(e) => {
            tracing::warn!(error = %e, "looking for releases to build failed");
            return false;
        }
    };
    for id in ids {
        if let Err(e) = build_one(state, &id).await {
            tracing::error!(application = %id, error = %format!("{e:#}"), "building a release failed; it is tried again");
        }
    }
    true
}

/// Claims and builds one release; false when another builder holds it.
pub(crate) async fn build_one(state: &AppState, id: &str) -> anyhow::Result<bool> {
    let me = state.releases.instance.clone();
    {
        let mut tx = state.db.begin_write().await?;
        let now = crate::time::now();
        if !estore::claim_release(tx.conn(), id, &me, &now, &crate::time::in_(CLAIM_LEASE)).await? {
            return Ok(false);
        }
        state.commit(tx).await?;
    }
    // Renews the claim while the build goes on; aborted when this function returns or is
    // cut short by a stop (its future dropped), so no claim outlives its build.
    let _renew = AbortOnDrop(tokio::spawn({
        let (state, id, me) = (state.clone(), id.to_owned(), me.clone());
        async move {
            loop {
                tokio::time::sleep(CLAIM_LEASE / 3).await;
                let renewed = async {
                    let mut conn = state.db.pool().acquire().await?;
                    estore::renew_release_claim(&mut conn, &id, &me, &crate::time::in_(CLAIM_LEASE))
                        .await
                };
                match renewed.await {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(e) => {
                        tracing::warn!(application = %id, error = %e, "renewing a release claim failed")
                    }
                }
            }
        }
    }));
    build_claimed(state, id, &me).await.map(|()| true)
}

/// Sets its flag when dropped.
struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// A file whose writes fail once `cancel` is set.
struct Cancellable {
    inner: crate::blobs::Writeback,
    cancel: Arc<AtomicBool>,
}

impl std::io::Write for Cancellable {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(std::io::Error::other("the release build was cut short"));
        }
        self.inner.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A task aborted when this handle is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn build_claimed(state: &AppState, id: &str, me: &str) -> anyhow::Result<()> {
    let (input, files, release, payload) = {
        let mut conn = state.db.pool().acquire().await?;
        let (input, files, release) = gather(&mut conn, id).await?;
        let payload = estore::payload(&mut conn, id, release.round).await?;
        (input, files, release, payload)
    };
    let metadata = release::ro_crate(&input);
    let mtime = time::OffsetDateTime::now_utc().unix_timestamp().max(0) as u64;
    // A blocking task is not cancelled with the future that waits for it, and the runtime
    // waits for it at exit: a stop would wait for the whole package. So this function's end,
    // however it comes, tells the build to stop.
    let cancel = Arc::new(AtomicBool::new(false));
    let _cut_short = SetOnDrop(cancel.clone());
    let built = match payload {
        Some(p) => {
            finish_payload(
                state,
                id,
                &p,
                &files,
                metadata,
                &release.recipient,
                mtime,
                cancel,
            )
            .await?
        }
        None => {
            build_from_blobs(
                state,
                id,
                &files,
                metadata,
                &release.recipient,
                mtime,
                cancel,
            )
            .await?
        }
    };
    record(state, id, me, &files, &release, built).await
}

/// Makes the release of a round quarantined as a payload: the payload checked through, then
/// finished in place for the recipient and linked into the store as the package.
#[allow(clippy::too_many_arguments)]
async fn finish_payload(
    state: &AppState,
    id: &str,
    payload: &estore::Payload,
    files: &[estore::FileRow],
    metadata: serde_json::Value,
    recipient: &str,
    mtime: u64,
    cancel: Arc<AtomicBool>,
) -> anyhow::Result<Result<FinishedBlob, BuildError>> {
    let u = crate::egress::payload::unseal(&state.blobs, &state.quarantine_key, payload)?;
    let approved: Vec<release::Approved> = files
        .iter()
        .map(|f| release::Approved {
            name: f.path.clone(),
            sha256: f.sha256.clone(),
            size: f.size as u64,
        })
        .collect();
    let (blobs, recipient, building) = (state.blobs.clone(), recipient.to_owned(), id.to_owned());
    tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        match release::finish(&u.at(), &approved, &metadata, &recipient, mtime, &cancel) {
            Ok(b) => {
                blobs.link_in(&u.path, &b.sha256)?;
                Ok(Ok(FinishedBlob::Linked {
                    sha256: b.sha256,
                    size: b.size,
                }))
            }
            Err(e) => {
                if cancel.load(Ordering::Relaxed) {
                    tracing::info!(application = %building, "a release build was cut short; it is built again from the start");
                }
                Ok(Err(e))
            }
        }
    })
    .await
    .context("the release build panicked")?
}

/// A package made: linked into the store already (from a payload), or a temporary blob.
enum FinishedBlob {
    Linked { sha256: String, size: u64 },
    Temporary(crate::blobs::FinishedBlob),
}

impl FinishedBlob {
    fn sha256(&self) -> &str {
        match self {
            FinishedBlob::Linked { sha256, .. } => sha256,
            FinishedBlob::Temporary(b) => b.sha256(),
        }
    }
    fn size(&self) -> u64 {
        match self {
            FinishedBlob::Linked { size, .. } => *size,
            FinishedBlob::Temporary(b) => b.size(),
        }
    }
    async fn commit(self) -> anyhow::Result<()> {
        if let FinishedBlob::Temporary(b) = self {
            b.commit().await?;
        }
        Ok(())
    }
}

/// Builds the package of a round quarantined as blobs (before payloads), in one pass from the
/// blobs into a temporary blob.
async fn build_from_blobs(
    state: &AppState,
    id: &str,
    files: &[estore::FileRow],
    metadata: serde_json::Value,
    recipient: &str,
    mtime: u64,
    cancel: Arc<AtomicBool>,
) -> anyhow::Result<Result<FinishedBlob, BuildError>> {
    let package_files: Vec<PackageFile> = files
        .iter()
        .map(|f| {
            Ok(PackageFile {
                name: f.path.clone(),
                source: state.blobs.path_of(&f.sha256)?,
                sha256: f.sha256.clone(),
                size: f.size as u64,
            })
        })
        .collect::<anyhow::Result<_>>()?;
    let recipient = recipient.to_owned();
    let blobs = state.blobs.clone();
    let building = id.to_owned();
    tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let (path, file) = blobs.temp_file()?;
        let file = Cancellable {
            inner: crate::blobs::Writeback::new(file),
            cancel: cancel.clone(),
        };
        let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
        let result = release::build(&package_files, &metadata, &recipient, mtime, &mut out);
        match result {
            Ok(b) => {
                let file = out.into_inner().map_err(|e| e.into_error())?.inner.file;
                file.sync_all()?;
                Ok(Ok(FinishedBlob::Temporary(blobs.finished(
                    path, b.sha256, b.size,
                ))))
            }
            Err(e) => {
                drop(out);
                let _ = std::fs::remove_file(&path);
                if cancel.load(Ordering::Relaxed) {
                    tracing::info!(application = %building, "a release build was cut short; it is built again from the start");
                }
                Ok(Err(e))
            }
        }
    })
    .await
    .context("the release build panicked")?
}

/// Records what a build came to: the release built (and its package's blob), or refused when
/// its files are not what was approved.
async fn record(
    state: &AppState,
    id: &str,
    me: &str,
    files: &[estore::FileRow],
    release: &estore::ReleaseRow,
    built: Result<FinishedBlob, BuildError>,
) -> anyhow::Result<()> {
    let now = crate::time::now();
    let mut tx = state.db.begin_write().await?;
    match built {
        Ok(blob) => {
            let expiry = state.settings.egress.release_expiry_days;
            let expires =
                (expiry > 0).then(|| crate::time::in_(Duration::from_secs(expiry * 86400)));
            store::record_blob(tx.conn(), blob.sha256(), blob.size()).await?;
            if !estore::mark_built(
                tx.conn(),
                id,
                me,
                blob.sha256(),
                blob.size(),
                &now,
                expires.as_deref(),
            )
            .await?
            {
                // Revoked meanwhile, or another builder took over: this package is not kept.
                tracing::info!(application = %id, "a release built was no longer wanted");
                return Ok(());
            }
            let app = store::application(tx.conn(), id)
                .await?
                .context("the application of a release is gone")?;
            let t = crate::service::applications::step(state, &app, Event::Complete)?;
            anyhow::ensure!(
                store::set_state(tx.conn(), id, t.from, t.to, app.round, None, &now).await?,
                "the application changed while its release was built"
            );
            tx.audit(NewEvent {
                actor: "gateway",
                action: "release.built",
                subject: id,
                detail: json!({
                    "package_sha256": blob.sha256(),
                    "package_size": blob.size(),
                    "recipient": release.recipient,
                    "round": release.round,
                    "files": files.iter().map(|f| json!({"path": f.path, "sha256": f.sha256, "size": f.size})).collect::<Vec<_>>(),
                    "expires_at": expires,
                    "state": State::Released.as_str(),
                }),
            })
            .await?;
            blob.commit().await?;
            state.commit(tx).await?;
            tracing::info!(application = %id, "release built");
        }
        Err(BuildError::Mismatch {
            name,
            expected,
            found,
        }) => {
            let detail = format!(
                "{name} changed in quarantine: its SHA-256 is {found}, {expected} was approved"
            );
            if estore::mark_refused(tx.conn(), id, me, &detail).await? {
                tx.audit(NewEvent {
                    actor: "gateway",
                    action: "release.refused",
                    subject: id,
                    detail: json!({"file": name, "expected_sha256": expected, "found_sha256": found}),
                })
                .await?;
                state.commit(tx).await?;
            }
            tracing::error!(application = %id, %detail, "a release was refused");
        }
        Err(BuildError::Altered(why)) => {
            let detail = format!("the quarantined files were altered: {why}");
            if estore::mark_refused(tx.conn(), id, me, &detail).await? {
                tx.audit(NewEvent {
                    actor: "gateway",
                    action: "release.refused",
                    subject: id,
                    detail: json!({"altered": why}),
                })
                .await?;
                state.commit(tx).await?;
            }
            tracing::error!(application = %id, %detail, "a release was refused");
        }
        Err(e) => return Err(anyhow::Error::new(e).context("building the package")),
    }
    Ok(())
}

/// What the package describes: the approved round's files, the runs of the sandbox up to the
/// request with what they ran on, the checks and the decisions.
async fn gather(
    conn: &mut sqlx::AnyConnection,
    id: &str,
) -> anyhow::Result<(CrateInput, Vec<estore::FileRow>, estore::ReleaseRow)> {
    let release = estore::release(conn, id)
        .await?
        .context("no such release")?;
    let app = store::application(conn, id)
        .await?
        .context("no such application")?;
    let sandbox_id = estore::sandbox_of(conn, id)
        .await?
        .context("no egress request")?;
    let sb = sstore::sandbox(conn, &sandbox_id)
        .await?
        .context("no such sandbox")?;
    let files = estore::files(conn, id, Some(release.round)).await?;
    let round = estore::rounds(conn, id)
        .await?
        .into_iter()
        .find(|r| r.round == release.round)
        .context("no such round")?;
    let staged = sstore::staged(conn, &sandbox_id).await?;
    let datasets: Vec<String> = sstore::datasets(conn, &sandbox_id)
        .await?
        .into_iter()
        .map(|(d, _)| d)
        .collect();
    let runs = sstore::runs_of(conn, &sandbox_id)
        .await?
        .into_iter()
        .filter(|r| r.created_at <= round.requested_at)
        .map(|r| release::CrateRun {
            ingress: staged
                .iter()
                .filter(|(_, _, at)| *at <= r.created_at)
                .map(|(a, sha, _)| (a.clone(), sha.clone()))
                .collect(),
            datasets: datasets.clone(),
            id: r.id,
            image_id: sb.image_id.clone(),
            command: r.cmd,
            started_at: r.started_at,
            finished_at: r.finished_at,
            outcome: r.outcome,
            exit_code: r.exit_code,
        })
        .collect();
    let decisions = store::decisions(conn, id)
        .await?
        .into_iter()
        .map(|d| release::CrateDecision {
            round: d.round,
            reviewer: d.reviewer,
            choice: d.choice.as_str().into(),
            comment: d.comment,
            decided_at: d.decided_at,
        })
        .collect();
    let input = CrateInput {
        application: release::AppInfo {
            id: app.id.clone(),
            title: app.title.clone(),
            project: app.project().to_owned(),
            requester: app.requester.clone(),
            justification: app.description.clone(),
            sandbox: sandbox_id,
            submitted_at: round.requested_at.clone(),
        },
        files: files
            .iter()
            .map(|f| release::CrateFile {
                name: f.path.clone(),
                sha256: f.sha256.clone(),
                size: f.size as u64,
                content_type: f.content_type.clone(),
                outcome: f.outcome.clone(),
                findings: serde_json::from_str(&f.findings).unwrap_or_default(),
                exception: f.exception.clone(),
            })
            .collect(),
        runs,
        decisions,
        rules_version: round.rules_version.clone(),
        released_at: crate::time::now(),
        recipient: release.recipient.clone(),
    };
    Ok((input, files, release))
}

//! A run's supervisor, from the queue to its recorded end: it waits for a slot, starts the
//! run (or re-attaches to it after a restart), captures its log up to the cap, enforces its
//! deadline, the quotas of its work area and output folder, and cancellation with a kill, records how it ended with an audit
//! event, and removes its container. Told that the gateway stops, it detaches instead.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sandbox_runner::{Outcome, RunSpec, RunState, SandboxBackend, Volume};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::audit::NewEvent;
use crate::sandboxes::outcome::{Facts, recorded_outcome};
use crate::sandboxes::quota::VolumeQuota;
use crate::sandboxes::{Progress, Sandboxes, spec_of};
use crate::state::AppState;
use crate::store::owners as ostore;
use crate::store::sandboxes::{self as sstore, Finish, RunRow};
use crate::workers::Stop;

/// How often a supervisor looks in the database for a cancellation asked of another gateway.
pub(crate) const CANCEL_POLL: Duration = Duration::from_secs(1);

/// How often a run waiting for a slot (or for a hold on its sandbox to go) looks again: a run
/// of this gateway ending wakes it at once, one of another gateway within this.
pub(crate) const SLOT_POLL: Duration = Duration::from_millis(250);

/// Makes the run live, then returns its supervision.
pub(crate) fn supervise(
    state: AppState,
    run: RunRow,
    attach: bool,
    stop: Stop,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let (progress, rx) = watch::channel(Progress::default());
    crate::lock(&state.sandboxes.live).insert(run.id.clone(), rx);
    crate::lock(&state.sandboxes.cancels).insert(run.id.clone(), Default::default());
    crate::lock(&state.sandboxes.lost).insert(run.id.clone(), Default::default());
    let live = Live {
        sandboxes: state.sandboxes.clone(),
        run: run.id.clone(),
        progress: Arc::new(progress),
    };
    supervise_live(state, run, attach, stop, live)
}

/// A run's place among the live ones, for as long as its supervisor runs: gone with it, even
/// when it panics, so that followers stop waiting (the next start recovers the run).
struct Live {
    sandboxes: Arc<Sandboxes>,
    run: String,
    progress: Arc<watch::Sender<Progress>>,
}

impl Drop for Live {
    fn drop(&mut self) {
        crate::lock(&self.sandboxes.live).remove(&self.run);
        crate::lock(&self.sandboxes.cancels).remove(&self.run);
        crate::lock(&self.sandboxes.lost).remove(&self.run);
        // Its slot, if it had one, is free: this gateway's runs waiting for one look again.
        self.sandboxes.slot_freed.notify_waiters();
    }
}

/// Resolves once the run's lease could not be renewed because another gateway took it over.
async fn taken_over(state: &AppState, run: &str) {
    let lost = crate::lock(&state.sandboxes.lost)
        .get(run)
        .cloned()
        .unwrap_or_default();
    lost.notified().await;
}

/// Resolves, with who asked, once the run's cancellation is recorded: woken by this process's
/// API at once, and looking in the database every `CANCEL_POLL` for one asked of another
/// gateway. Pending for ever when the database cannot say.
async fn cancel_requested(state: &AppState, run: &str) -> String {
    let wake = crate::lock(&state.sandboxes.cancels)
        .get(run)
        .cloned()
        .unwrap_or_default();
    loop {
        let asked = async {
            let mut conn = state.db.pool().acquire().await?;
            sstore::cancelled_by(&mut conn, run).await
        };
        if let Ok(Some(by)) = asked.await {
            return by;
        }
        tokio::select! {
            () = wake.notified() => {}
            () = tokio::time::sleep(CANCEL_POLL) => {}
        }
    }
}

/// How a supervisor's watch over a run ended.
enum Watched {
    /// The run ended, or could not start: its end is to be recorded, and its container, when
    /// it had one, removed.
    Ended(Finish, Option<String>),
    /// The gateway stops: the run is left as it is, on the engine and in the records, for
    /// the next start to take up again (a queued run is queued again, a live one re-attached).
    Detached,
    /// Another gateway took the run over (this one's lease lapsed): it is left to that one,
    /// on the engine and in the records.
    Lost,
}

async fn supervise_live(state: AppState, run: RunRow, attach: bool, stop: Stop, live: Live) {
    let sbx = state.sandboxes.clone();
    let watched = supervise_inner(&state, &run, attach, &stop, &live.progress).await;
    let (finish, container) = match watched {
        Ok(Watched::Ended(finish, container)) => (finish, container),
        Ok(Watched::Detached) => {
            tracing::info!(run = %run.id, "the gateway stops: leaving the run to the next start");
            // Followers stop waiting, as when a supervisor fails.
            drop(live);
            return;
        }
        Ok(Watched::Lost) => {
            tracing::warn!(run = %run.id, "another gateway took the run over: leaving it to that one");
            drop(live);
            return;
        }
        Err(e) => {
            tracing::error!(run = %run.id, error = %format!("{e:#}"), "supervising a run failed");
            // Recorded as failed: whatever is left of its container goes too.
            (
                failed(&sbx, &run.id, format!("{e:#}")).await,
                Some(container_of(&run)),
            )
        }
    };
    let recorded = match record_finish(&state, &run, &finish).await {
        Ok(recorded) => recorded,
        Err(e) => {
            tracing::error!(run = %run.id, error = %format!("{e:#}"), "recording the end of a run failed");
            true
        }
    };
    if recorded {
        state.metrics.run_finished(&finish.outcome);
    }
    live.progress.send_modify(|p| p.done = true);
    sbx.follow.changed(&run.id);
    drop(live);
    if !recorded {
        // Finished or taken over by another gateway meanwhile: its container is theirs.
        tracing::warn!(run = %run.id, "the run is no longer this gateway's: its end is not recorded here");
        return;
    }
    // The container goes after the end is recorded, which the analyst need not wait for. One
    // left by a crash in between is an orphan the next start removes.
    if let Some(c) = container {
        if let Err(e) = patiently(&run.id, || sbx.backend.remove_container(&c)).await {
            tracing::warn!(run = %run.id, error = %e, "removing a run's container failed");
        }
    }
}

/// Waits until the run may start, then claims its start (`runs.started_at`) in one write
/// transaction: the sandbox has no hold (a hold taken after this sees the run and is refused),
/// the gateways sharing the database run fewer than the global limit and the project's, and
/// no earlier run of the project waits. The count is taken in the write transaction, which
/// serialises writers on both engines (SQLite's write lock, the `audit_head` row lock on
/// PostgreSQL), so two gateways cannot both take the last slot. A run someone asked to cancel
/// is not claimed (the ask may come through another gateway, seen here only at the next
/// poll).
async fn claim_start(state: &AppState, run: &RunRow) -> anyhow::Result<Claim> {
    let sbx = &state.sandboxes;
    let mut logged = false;
    loop {
        // Registered before looking, so a run ending meanwhile is not missed.
        let freed = sbx.slot_freed.notified();
        tokio::pin!(freed);
        freed.as_mut().enable();
        // Looked at first without the write lock, which a queue of waiting runs would take
        // every few milliseconds for nothing.
        let why = {
            let mut conn = state.db.pool().acquire().await?;
            waits_for(state, &mut conn, run).await?
        };
        if why.is_none() {
            let mut tx = state.db.begin_write().await?;
            match waits_for(state, tx.conn(), run).await? {
                None => {
                    let now = crate::time::now();
                    let me = sbx.instance();
                    if ostore::claim_start(tx.conn(), &run.id, me, &now).await? {
                        state.commit(tx).await?;
                        return Ok(Claim::Claimed);
                    }
                    let by = sstore::cancelled_by(tx.conn(), &run.id).await?;
                    drop(tx);
                    return Ok(by.map_or(Claim::Lost, Claim::Cancelled));
                }
                Some(_) => drop(tx),
            }
        }
        if why == Some(Wait::Hold) && !logged {
            tracing::info!(run = %run.id, sandbox = %run.sandbox_id, "the run waits: files are being copied out of its sandbox");
            logged = true;
        }
        tokio::select! {
            () = &mut freed => {}
            () = tokio::time::sleep(SLOT_POLL) => {}
        }
    }
}

/// How a run's wait for its start ended.
enum Claim {
    /// It may start: its slot is taken.
    Claimed,
    /// Someone asked for it to be cancelled.
    Cancelled(String),
    /// It is no longer queued for this gateway (taken over).
    Lost,
}

/// Why a run cannot start yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wait {
    /// Files are being copied out of its sandbox.
    Hold,
    /// The gateways run as many runs as they may, or as many of its project's, or an earlier
    /// run of its project waits.
    Slot,
}

async fn waits_for(
    state: &AppState,
    conn: &mut sqlx::AnyConnection,
    run: &RunRow,
) -> anyhow::Result<Option<Wait>> {
    let settings = state.sandboxes.settings();
    let holds = crate::store::egress::holds(conn, &run.sandbox_id, &crate::time::now()).await?;
    if !holds.is_empty() {
        return Ok(Some(Wait::Hold));
    }
    let (all, project) = ostore::slots_taken(conn, &run.project_id, &run.id).await?;
    let full = usize::try_from(all).unwrap_or(usize::MAX) >= settings.max_concurrent_runs
        || usize::try_from(project).unwrap_or(usize::MAX)
            >= settings.max_concurrent_runs_per_project;
    if full || ostore::queued_ahead(conn, &run.project_id, &run.created_at, &run.id).await? > 0 {
        return Ok(Some(Wait::Slot));
    }
    Ok(None)
}

/// Waits while a container of the run's name exists that another gateway made and that
/// gateway lives: it is that one's (it lost the run before recording its start, and removes
/// it), never adopted. One made by a gateway that is gone is taken up by the start.
async fn made_elsewhere(state: &AppState, run: &str) -> anyhow::Result<()> {
    let name = sandbox_runner::hardening::run_container_name(run);
    let me = state.sandboxes.instance();
    let mut logged = false;
    loop {
        let maker = patiently(run, || state.sandboxes.backend.maker(&name)).await?;
        let Some(maker) = maker.filter(|m| m != me) else {
            return Ok(());
        };
        let lives = {
            let mut conn = state.db.pool().acquire().await?;
            ostore::gateway_lives(&mut conn, &maker, &crate::time::now()).await?
        };
        if !lives {
            return Ok(());
        }
        if !logged {
            tracing::warn!(%run, gateway = %maker, "a container of this run made by another live gateway exists: waiting for it to go");
            logged = true;
        }
        tokio::time::sleep(SLOT_POLL).await;
    }
}

/// The run's container: the ID recorded when it started, else the name it is created under.
pub(crate) fn container_of(run: &RunRow) -> String {
    run.container_id
        .clone()
        .unwrap_or_else(|| sandbox_runner::hardening::run_container_name(&run.id))
}

/// The end of a run that failed for `reason`, recorded (and shown to its analyst) without the
/// paths of the gateway's host that an engine's error holds; the log has them.
async fn failed(sbx: &Sandboxes, run: &str, reason: String) -> Finish {
    let reason = sandbox_runner::without_paths(&reason);
    ended_without_outcome_of_its_own(
        sbx,
        run,
        Outcome::Failed {
            reason: reason.clone(),
        },
        reason,
    )
    .await
}

/// The end of a run cancelled before it started.
async fn cancelled(sbx: &Sandboxes, run: &str, by: &str) -> Finish {
    let detail = format!("cancelled by {by} before it started");
    ended_without_outcome_of_its_own(sbx, run, Outcome::Cancelled, detail).await
}

/// The end of a run the gateway ended before its container could say how it went: whatever
/// log it has, and `detail` saying why.
async fn ended_without_outcome_of_its_own(
    sbx: &Sandboxes,
    run: &str,
    outcome: Outcome,
    detail: String,
) -> Finish {
    let (log_bytes, log_sha256) = log_digest(&sbx.log_path(run)).await;
    Finish {
        outcome: outcome.as_str().into(),
        exit_code: outcome.exit_code(),
        detail: Some(detail),
        log_bytes,
        log_sha256,
        log_truncated: false,
        at: crate::time::now(),
    }
}

pub(crate) async fn log_digest(path: &std::path::Path) -> (i64, String) {
    let p = path.to_path_buf();
    let size = tokio::fs::metadata(&p)
        .await
        .map(|m| m.len() as i64)
        .unwrap_or(0);
    let sha = tokio::task::spawn_blocking(move || sha256_file(&p))
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_else(|| crate::sha256_hex(b""));
    (size, sha)
}

/// Runs the run to its end; returns how it ended and its container, when it had one, for the
/// caller to remove once the end is recorded. Returns early, detached, when the gateway stops
/// while the run waits in the queue or runs; what it is doing then (starting the run, killing
/// it, reading its end) is finished first, so the records and the engine agree.
async fn supervise_inner(
    state: &AppState,
    run: &RunRow,
    attach: bool,
    shutdown: &Stop,
    progress: &Arc<watch::Sender<Progress>>,
) -> anyhow::Result<Watched> {
    let sbx = state.sandboxes.clone();
    let backend = sbx.backend.clone();
    let spec = {
        let mut conn = state.db.pool().acquire().await?;
        let sb = sstore::sandbox(&mut conn, &run.sandbox_id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("the sandbox {} is gone", run.sandbox_id))?;
        spec_of(state, &mut conn, &sb).await?
    };
    let cancel = cancel_requested(state, &run.id);
    tokio::pin!(cancel);
    let lost = taken_over(state, &run.id);
    tokio::pin!(lost);
    let container = if attach {
        container_of(run)
    } else {
        // Queued until the project and the gateways have room, and not while files are copied
        // out of the output folder: the run claims its start in the transaction that saw
        // both. A cancellation meanwhile ends it there, before it starts.
        tokio::select! {
            claimed = claim_start(state, run) => match claimed? {
                Claim::Claimed => {}
                Claim::Cancelled(by) => return Ok(Watched::Ended(cancelled(&sbx, &run.id, &by).await, None)),
                Claim::Lost => return Ok(Watched::Lost),
            },
            by = &mut cancel => return Ok(Watched::Ended(cancelled(&sbx, &run.id, &by).await, None)),
            () = &mut lost => return Ok(Watched::Lost),
            () = shutdown.requested() => return Ok(Watched::Detached),
        }
        tokio::select! {
            made = made_elsewhere(state, &run.id) => made?,
            by = &mut cancel => return Ok(Watched::Ended(cancelled(&sbx, &run.id, &by).await, None)),
            () = &mut lost => return Ok(Watched::Lost),
            () = shutdown.requested() => return Ok(Watched::Detached),
        }
        let spec = RunSpec {
            id: run.id.clone(),
            sandbox: spec.clone(),
            cmd: run.cmd.clone(),
            env: Vec::new(),
        };
        match backend.start(&spec).await {
            Ok(started) => {
                let id = started.container;
                let mut tx = state.db.begin_write().await?;
                let me = sbx.instance();
                if !sstore::mark_started(tx.conn(), &run.id, me, &id, &crate::time::now()).await? {
                    // Taken over while it started: the run is the other gateway's to start,
                    // and this container goes before that one looks.
                    drop(tx);
                    if let Err(e) = patiently(&run.id, || backend.remove_container(&id)).await {
                        tracing::warn!(run = %run.id, error = %e, "removing the container of a run taken over failed");
                    }
                    return Ok(Watched::Lost);
                }
                tx.audit(NewEvent {
                    actor: "gateway",
                    action: "run.start",
                    subject: &run.id,
                    detail: json!({"sandbox": run.sandbox_id, "container": id, "started_ahead": started.ahead, "gateway": me}),
                })
                .await?;
                state.commit(tx).await?;
                state.metrics.run_started(started.ahead);
                id
            }
            Err(e) => {
                let _ = backend
                    .remove_container(&sandbox_runner::hardening::run_container_name(&run.id))
                    .await;
                tracing::warn!(run = %run.id, error = %e, "a run could not start");
                let f = failed(&sbx, &run.id, format!("the run could not start: {e}")).await;
                return Ok(Watched::Ended(f, None));
            }
        }
    };

    // Logs: captured from the start of the container's output, up to the cap.
    let log_path = sbx.log_path(&run.id);
    let cap = spec.resources.log_max_bytes;
    let over_log = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let log_task = {
        let backend = backend.clone();
        let container = container.clone();
        let over = over_log.clone();
        let path = log_path.clone();
        // Followers here through its progress, those of other gateways through a notification.
        let tell = {
            let (progress, sbx, run) = (progress.clone(), sbx.clone(), run.id.clone());
            move || {
                progress.send_modify(|_| {});
                sbx.follow.changed(&run);
            }
        };
        // A child of this supervisor rather than a worker of its own: it ends with the run's
        // output, is awaited below, and is cut short here when the supervisor detaches.
        tokio::spawn(async move { capture_logs(backend, container, path, cap, over, tell).await })
    };

    // The deadline counts from the start, across restarts.
    let started = match &run.started_at {
        Some(s) if attach => {
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
        }
        _ => None,
    };
    let total = Duration::from_secs(run.timeout_secs.max(1) as u64);
    let elapsed = started
        .map(|s| {
            (time::OffsetDateTime::now_utc() - s)
                .try_into()
                .unwrap_or(Duration::ZERO)
        })
        .unwrap_or(Duration::ZERO);
    let remaining = total.saturating_sub(elapsed);
    // The deadline never passes the end of an access to what the sandbox mounts, however long
    // the run waited to start: one whose access ended meanwhile is stopped at once.
    let mounted: Vec<String> = spec.datasets.iter().map(|d| d.id.clone()).collect();
    let access_left = if mounted.is_empty() {
        Ok(None)
    } else {
        let mut conn = state.db.pool().acquire().await?;
        crate::service::access::runnable(&mut conn, &run.project_id, &mounted).await
    };
    let remaining = match access_left {
        Ok(Some(left)) => remaining.min(Duration::from_secs(left)),
        Ok(None) => remaining,
        Err(_) => Duration::ZERO,
    };

    let mut quotas = [
        VolumeQuota::new(Volume::Output, spec.resources.output_quota_bytes),
        VolumeQuota::new(Volume::Work, spec.resources.work_quota_bytes),
    ];
    // Why each volume is past its quota, when it is: [output, work].
    let mut over_quota: [Option<String>; 2] = [None, None];
    let mut timed_out = false;
    let mut cancelled_by = None;
    let deadline = tokio::time::Instant::now() + remaining;
    let end_state = loop {
        let now = tokio::time::Instant::now();
        if now >= deadline {
            timed_out = true;
            break stop(&run.id, &*backend, &container).await?;
        }
        let step = quotas
            .iter()
            .map(VolumeQuota::next)
            .fold(deadline - now, Duration::min);
        let waited = tokio::select! {
            w = patiently(&run.id, || backend.wait(&container, step)) => w?,
            by = &mut cancel => {
                cancelled_by = Some(by);
                break stop(&run.id, &*backend, &container).await?;
            }
            () = shutdown.requested() => {
                // The next start captures the log again, from the start of the run's output.
                log_task.abort();
                let _ = log_task.await;
                return Ok(Watched::Detached);
            }
            () = &mut lost => {
                // The gateway that took it over follows it from now on.
                log_task.abort();
                let _ = log_task.await;
                return Ok(Watched::Lost);
            }
        };
        if let Some(s) = waited {
            break Some(s);
        }
        if over_log.load(std::sync::atomic::Ordering::Relaxed) {
            break stop(&run.id, &*backend, &container).await?;
        }
        // Both volumes, when due, at once.
        let [output, work] = &mut quotas;
        over_quota = tokio::join!(
            output.exceeded(&run.id, &*backend, &spec),
            work.exceeded(&run.id, &*backend, &spec)
        )
        .into();
        if over_quota.iter().any(Option::is_some) {
            break stop(&run.id, &*backend, &container).await?;
        }
    };
    // A quick writer can fill a volume between two measurements and exit: measure once more,
    // while the end of the output is written.
    let last_usage = async {
        if !timed_out && over_quota.iter().all(Option::is_none) && cancelled_by.is_none() {
            let [output, work] = &quotas;
            tokio::join!(
                output.exceeded_at_end(&*backend, &spec),
                work.exceeded_at_end(&*backend, &spec)
            )
            .into()
        } else {
            over_quota.clone()
        }
    };
    let (used, logs) = tokio::join!(
        last_usage,
        tokio::time::timeout(Duration::from_secs(10), log_task)
    );
    let [over_output, over_work] = used;
    let truncated = match logs {
        Ok(Ok(Ok(t))) => t,
        _ => over_log.load(std::sync::atomic::Ordering::Relaxed),
    };
    let outcome = recorded_outcome(&Facts {
        end: end_state,
        cancelled: cancelled_by.is_some(),
        timed_out,
        over_output_quota: over_output.is_some(),
        over_work_quota: over_work.is_some(),
        over_log: over_log.load(std::sync::atomic::Ordering::Relaxed),
    });
    let (log_bytes, log_sha256) = log_digest(&log_path).await;
    let finish = Finish {
        exit_code: outcome.exit_code(),
        detail: match (&outcome, &cancelled_by) {
            (Outcome::Failed { reason }, _) => Some(reason.clone()),
            (Outcome::Cancelled, Some(by)) => Some(format!("cancelled by {by}")),
            (Outcome::OutputQuotaExceeded, _) => over_output,
            (Outcome::WorkQuotaExceeded, _) => over_work,
            _ => None,
        },
        outcome: outcome.as_str().into(),
        log_bytes,
        log_sha256,
        log_truncated: truncated,
        at: crate::time::now(),
    };
    Ok(Watched::Ended(finish, Some(container)))
}

/// Kills a run's container and waits for its end.
async fn stop(
    run: &str,
    backend: &dyn SandboxBackend,
    container: &str,
) -> sandbox_runner::Result<Option<RunState>> {
    patiently(run, || backend.kill(container)).await?;
    patiently(run, || backend.wait(container, Duration::from_secs(30))).await
}

/// Calls the engine again, with a growing pause, for as long as it is away (restarting,
/// unreachable): under live restore a run goes on without it, and its supervisor takes it up
/// again once it is back. Other errors are returned.
async fn patiently<T, F, Fut>(run: &str, mut call: F) -> sandbox_runner::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = sandbox_runner::Result<T>>,
{
    let mut pause = Duration::from_millis(100);
    let mut told = false;
    loop {
        match call().await {
            Err(
                e @ (sandbox_runner::Error::Unavailable(_) | sandbox_runner::Error::Timeout(_)),
            ) => {
                if !told {
                    tracing::warn!(run, error = %e, "the container engine is away; the run is supervised again once it is back");
                    told = true;
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
            other => {
                if told {
                    tracing::info!(run, "the container engine is back");
                }
                return other;
            }
        }
    }
}

/// Copies the container's output into the log file until it ends or passes `cap`; returns
/// whether it was cut.
async fn capture_logs(
    backend: Arc<dyn SandboxBackend>,
    container: String,
    path: PathBuf,
    cap: u64,
    over: Arc<std::sync::atomic::AtomicBool>,
    tell: impl Fn() + Send,
) -> anyhow::Result<bool> {
    use futures_util::StreamExt;
    use tokio::io::AsyncWriteExt;
    let mut f = tokio::fs::File::create(&path).await?;
    let mut written = 0u64;
    // Followers waiting for the file to exist.
    tell();
    let mut stream = backend.logs(&container);
    while let Some(chunk) = stream.next().await {
        let Ok(chunk) = chunk else { break };
        let room = cap.saturating_sub(written) as usize;
        if chunk.len() > room {
            f.write_all(&chunk[..room]).await?;
            over.store(true, std::sync::atomic::Ordering::Relaxed);
            f.write_all(
                format!("\n[vre: the run's output passed the {cap}-byte limit and was stopped]\n")
                    .as_bytes(),
            )
            .await?;
            f.flush().await?;
            f.sync_all().await?;
            tell();
            return Ok(true);
        }
        f.write_all(&chunk).await?;
        // Written through before followers are told: tokio's file hands writes to a thread.
        f.flush().await?;
        written += chunk.len() as u64;
        tell();
    }
    f.sync_all().await?;
    Ok(false)
}

/// Records the end of a run this gateway owns, with its audit event; false when it is not
/// recorded here (finished already, or taken over by another gateway).
pub(crate) async fn record_finish(
    state: &AppState,
    run: &RunRow,
    f: &Finish,
) -> anyhow::Result<bool> {
    let mut tx = state.db.begin_write().await?;
    let recorded = sstore::mark_finished(tx.conn(), &run.id, state.sandboxes.instance(), f).await?;
    if recorded {
        tx.audit(NewEvent {
            actor: "gateway",
            action: "run.finish",
            subject: &run.id,
            detail: json!({
                "sandbox": run.sandbox_id,
                "outcome": f.outcome,
                "exit_code": f.exit_code,
                "detail": f.detail,
                "log_bytes": f.log_bytes,
                "log_sha256": f.log_sha256,
                "log_truncated": f.log_truncated,
            }),
        })
        .await?;
    }
    state.commit(tx).await?;
    Ok(recorded)
}

/// Streams the SHA-256 of a file (for logs too large to read at once).
pub fn sha256_file(path: &std::path::Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

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
use crate::store::sandboxes::{self as sstore, Finish, RunRow};
use crate::workers::Stop;

/// How often a supervisor looks in the database for a cancellation asked of another gateway.
pub(crate) const CANCEL_POLL: Duration = Duration::from_secs(1);

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
    }
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
        Err(e) => {
            tracing::error!(run = %run.id, error = %format!("{e:#}"), "supervising a run failed");
            // Recorded as failed: whatever is left of its container goes too.
            (
                failed(&sbx, &run.id, format!("{e:#}")).await,
                Some(container_of(&run)),
            )
        }
    };
    if let Err(e) = record_finish(&state, &run, &finish).await {
        tracing::error!(run = %run.id, error = %format!("{e:#}"), "recording the end of a run failed");
    }
    state.metrics.run_finished(&finish.outcome);
    live.progress.send_modify(|p| p.done = true);
    drop(live);
    // The container goes after the end is recorded, which the analyst need not wait for. One
    // left by a crash in between is an orphan the next start removes.
    if let Some(c) = container {
        if let Err(e) = patiently(&run.id, || sbx.backend.remove_container(&c)).await {
            tracing::warn!(run = %run.id, error = %e, "removing a run's container failed");
        }
    }
}

/// Waits until the sandbox has no hold, then marks the run as starting, in one write
/// transaction: a hold taken after this sees the run and is refused.
async fn claim_start(state: &AppState, run: &str, sandbox: &str) -> anyhow::Result<()> {
    let mut logged = false;
    loop {
        let mut tx = state.db.begin_write().await?;
        let holds = crate::store::egress::holds(tx.conn(), sandbox, &crate::time::now()).await?;
        if holds.is_empty() {
            crate::store::egress::claim_start(tx.conn(), run, &crate::time::now()).await?;
            state.commit(tx).await?;
            return Ok(());
        }
        drop(tx);
        if !logged {
            tracing::info!(%run, %sandbox, "the run waits: files are being copied out of its sandbox");
            logged = true;
        }
        tokio::time::sleep(HOLD_POLL).await;
    }
}

/// How often a run waiting for a hold on its sandbox looks again.
const HOLD_POLL: Duration = Duration::from_millis(250);

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
    let (sb, spec) = {
        let mut conn = state.db.pool().acquire().await?;
        let sb = sstore::sandbox(&mut conn, &run.sandbox_id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("the sandbox {} is gone", run.sandbox_id))?;
        let spec = spec_of(state, &mut conn, &sb).await?;
        (sb, spec)
    };
    let cancel = cancel_requested(state, &run.id);
    tokio::pin!(cancel);
    // Queued until the project and the gateway have room; a cancellation meanwhile ends it
    // there, before it starts.
    let _slots = if attach {
        tokio::select! {
            slots = sbx.slots(&sb.project_id) => slots,
            () = shutdown.requested() => return Ok(Watched::Detached),
        }
    } else {
        tokio::select! {
            slots = sbx.slots(&sb.project_id) => slots,
            by = &mut cancel => return Ok(Watched::Ended(cancelled(&sbx, &run.id, &by).await, None)),
            () = shutdown.requested() => return Ok(Watched::Detached),
        }
    };
    let container = if attach {
        container_of(run)
    } else {
        // Not while files are copied out of the output folder: the run waits for the hold
        // to go, and claims its start in the transaction that saw none.
        tokio::select! {
            claimed = claim_start(state, &run.id, &run.sandbox_id) => claimed?,
            by = &mut cancel => return Ok(Watched::Ended(cancelled(&sbx, &run.id, &by).await, None)),
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
                sstore::mark_started(tx.conn(), &run.id, &id, &crate::time::now()).await?;
                tx.audit(NewEvent {
                    actor: "gateway",
                    action: "run.start",
                    subject: &run.id,
                    detail: json!({"sandbox": run.sandbox_id, "container": id, "started_ahead": started.ahead}),
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
        let progress = progress.clone();
        // A child of this supervisor rather than a worker of its own: it ends with the run's
        // output, is awaited below, and is cut short here when the supervisor detaches.
        tokio::spawn(
            async move { capture_logs(backend, container, path, cap, over, progress).await },
        )
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
    progress: Arc<watch::Sender<Progress>>,
) -> anyhow::Result<bool> {
    use futures_util::StreamExt;
    use tokio::io::AsyncWriteExt;
    let mut f = tokio::fs::File::create(&path).await?;
    let mut written = 0u64;
    // Followers waiting for the file to exist.
    progress.send_modify(|_| {});
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
            return Ok(true);
        }
        f.write_all(&chunk).await?;
        // Written through before followers are told: tokio's file hands writes to a thread.
        f.flush().await?;
        written += chunk.len() as u64;
        progress.send_modify(|_| {});
    }
    f.sync_all().await?;
    Ok(false)
}

pub(crate) async fn record_finish(
    state: &AppState,
    run: &RunRow,
    f: &Finish,
) -> anyhow::Result<()> {
    let mut tx = state.db.begin_write().await?;
    if sstore::mark_finished(tx.conn(), &run.id, f).await? {
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
    Ok(())
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

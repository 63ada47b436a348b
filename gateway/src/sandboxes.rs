//! Sandboxes and runs: the gateway's side of `sandbox-runner`.
//!
//! A run is recorded `queued`, waits for a slot (a global limit and one per project, so extra
//! runs queue instead of failing), starts in a fresh hardened container, and is supervised to
//! its end: its logs go to a capped file in the data dir, its output folder is measured against
//! the quota, its deadline is enforced with a kill. The outcome, the log's SHA-256 and the times
//! are recorded with an audit event, and the container is removed. At start, [`recover`]
//! re-attaches to runs that were live, records those that ended or vanished meanwhile, and
//! removes what the gateway created but no longer knows. A supervisor told that the gateway
//! stops leaves its run going and records nothing: the next start takes it up again.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sandbox_runner::{Outcome, RunSpec, RunState, SandboxBackend, SandboxSpec};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::audit::NewEvent;
use crate::config::{ResourceClass, SandboxSettings};
use crate::state::AppState;
use crate::store::sandboxes::{self as sstore, Finish, RunRow, SandboxRow};
use crate::workers::{Name, Stop};

/// The engine and the run queue.
pub struct Sandboxes {
    pub backend: Arc<dyn SandboxBackend>,
    settings: SandboxSettings,
    /// Slots for runs over all projects.
    global: Arc<Semaphore>,
    /// Slots per project, made on first use. The map is touched only to get a project's
    /// semaphore; never held across an await.
    per_project: Mutex<HashMap<String, Arc<Semaphore>>>,
    logs_dir: PathBuf,
    /// Runs supervised by this process: followers of their logs and of their end watch them.
    live: Mutex<HashMap<String, watch::Receiver<Progress>>>,
    /// Wakes a live run's supervisor when it is asked to cancel it (which is recorded first;
    /// supervisors in other gateways on the same database see it within `CANCEL_POLL`).
    cancels: Mutex<HashMap<String, Arc<tokio::sync::Notify>>>,
}

/// How often a supervisor looks in the database for a cancellation asked of another gateway.
const CANCEL_POLL: Duration = Duration::from_secs(1);

/// How far a live run is, for those who follow it. Every write to its log file (once a
/// reader sees it) and its recorded end wake them, so a follower of the logs or of the end
/// learns of it at once instead of polling.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// The end is recorded.
    pub done: bool,
}

impl Sandboxes {
    pub fn new(
        backend: Arc<dyn SandboxBackend>,
        settings: SandboxSettings,
        logs_dir: PathBuf,
    ) -> Self {
        Sandboxes {
            backend,
            global: Arc::new(Semaphore::new(settings.max_concurrent_runs)),
            per_project: Mutex::new(HashMap::new()),
            settings,
            logs_dir,
            live: Mutex::new(HashMap::new()),
            cancels: Default::default(),
        }
    }

    pub fn settings(&self) -> &SandboxSettings {
        &self.settings
    }

    pub fn class(&self, name: &str) -> Option<&ResourceClass> {
        self.settings.classes.get(name)
    }

    pub fn log_path(&self, run: &str) -> PathBuf {
        self.logs_dir.join(format!("{run}.log"))
    }

    /// Whether this process is still supervising the run; a follower waits on the receiver.
    pub fn live(&self, run: &str) -> Option<watch::Receiver<Progress>> {
        crate::lock(&self.live).get(run).cloned()
    }

    /// Waits until the run's end is recorded, or `limit` passes; returns at once for a run
    /// this process does not supervise (ended, or never started here).
    pub async fn wait_done(&self, run: &str, limit: Duration) {
        let Some(mut rx) = self.live(run) else {
            return;
        };
        let _ = tokio::time::timeout(limit, rx.wait_for(|p| p.done)).await;
    }

    /// Wakes the supervisor of a run this process supervises, after its cancellation is
    /// recorded.
    pub fn wake_to_cancel(&self, run: &str) {
        if let Some(n) = crate::lock(&self.cancels).get(run) {
            // A stored permit: a supervisor not waiting this instant sees it at its next wait.
            n.notify_one();
        }
    }

    async fn slots(&self, project: &str) -> (OwnedSemaphorePermit, OwnedSemaphorePermit) {
        let project_sem = {
            let mut map = crate::lock(&self.per_project);
            map.entry(project.to_owned())
                .or_insert_with(|| {
                    Arc::new(Semaphore::new(
                        self.settings.max_concurrent_runs_per_project,
                    ))
                })
                .clone()
        };
        // The project's slot first: a project at its limit does not hold global slots others
        // could use.
        let p = project_sem
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let g = self
            .global
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        (p, g)
    }
}

/// The resources of a class, for the runner.
pub fn resources(class: &ResourceClass) -> sandbox_runner::Resources {
    sandbox_runner::Resources {
        nano_cpus: (class.cpus * 1e9) as i64,
        memory_bytes: class.memory_bytes,
        pids: class.pids,
        tmpfs_bytes: class.tmpfs_bytes,
        output_quota_bytes: class.output_quota_bytes,
        log_max_bytes: class.log_max_bytes,
    }
}

/// The full description of a sandbox, from its records.
pub async fn spec_of(
    state: &AppState,
    conn: &mut sqlx::AnyConnection,
    sb: &SandboxRow,
) -> Result<SandboxSpec, sqlx::Error> {
    let staged = sstore::staged(conn, &sb.id).await?;
    let datasets = sstore::datasets(conn, &sb.id).await?;
    let class = state
        .sandboxes
        .class(&sb.resource_class)
        .or_else(|| {
            state
                .sandboxes
                .class(&state.sandboxes.settings.default_class)
        })
        .cloned()
        .expect("the default class exists (checked at start)");
    Ok(SandboxSpec {
        id: sb.id.clone(),
        project: sb.project_id.clone(),
        image_id: sb.image_id.clone(),
        resources: resources(&class),
        ingress: staged.into_iter().map(|(a, _, _)| a).collect(),
        datasets: datasets
            .into_iter()
            .map(|(id, host_path)| sandbox_runner::DatasetMount { id, host_path })
            .collect(),
        runtime: state.sandboxes.settings.runtime.clone(),
    })
}

/// Has a container started ahead for the sandbox's next run (after the sandbox is made or a
/// staging changed it). It is being started when this returns, so a run asked for next takes
/// it; nothing is lost when it fails: the run makes its own.
pub async fn ready_next(state: &AppState, sandbox: &str) {
    let spec = async {
        let mut conn = state.db.pool().acquire().await?;
        match sstore::sandbox(&mut conn, sandbox).await? {
            Some(sb) => spec_of(state, &mut conn, &sb).await.map(Some),
            None => Ok(None),
        }
    };
    match spec.await {
        Ok(Some(spec)) => state.sandboxes.backend.ready_next(&spec).await,
        Ok(None) => {}
        Err(e) => tracing::debug!(%sandbox, error = %e, "no container started ahead"),
    }
}

/// Supervises a run from the queue to its end, in a background worker of its own. `attach` is
/// set when the container already exists (recovery after a restart). The run is live
/// (followers can wait on it) when this returns.
pub fn spawn_supervisor(state: &AppState, run: RunRow, attach: bool) {
    let name = Name::of("run-supervisor", run.id.clone());
    let st = state.clone();
    state
        .workers
        .spawn(name, move |stop| supervise(st, run, attach, stop));
}

/// Makes the run live, then returns its supervision.
fn supervise(
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

/// The run's container: the ID recorded when it started, else the name it is created under.
fn container_of(run: &RunRow) -> String {
    run.container_id
        .clone()
        .unwrap_or_else(|| sandbox_runner::hardening::run_container_name(&run.id))
}

async fn failed(sbx: &Sandboxes, run: &str, reason: String) -> Finish {
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

async fn log_digest(path: &std::path::Path) -> (i64, String) {
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

    let quota = spec.resources.output_quota_bytes;
    let mut over_quota = false;
    let mut unmeasured = false;
    let mut timed_out = false;
    let mut cancelled_by = None;
    let deadline = tokio::time::Instant::now() + remaining;
    let mut measure = QuotaClock::new(quota);
    let end_state = loop {
        let now = tokio::time::Instant::now();
        if now >= deadline {
            timed_out = true;
            break stop(&run.id, &*backend, &container).await?;
        }
        let step = (deadline - now).min(measure.next);
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
        let walk = std::time::Instant::now();
        let usage = backend.output_usage(&spec).await;
        if let Ok(used) = usage {
            measure.measured(used, walk);
        }
        match usage {
            Ok(used) if used > quota => {
                over_quota = true;
                break stop(&run.id, &*backend, &container).await?;
            }
            Ok(_) => {}
            Err(e) if !unmeasured => {
                unmeasured = true;
                tracing::warn!(run = %run.id, error = %e, "the output folder cannot be measured: its quota is not enforced until it can");
            }
            Err(_) => {}
        }
    };
    // A quick writer can fill the folder between two measurements and exit: measure once more,
    // while the end of the output is written.
    let last_usage = async {
        if !timed_out && !over_quota && cancelled_by.is_none() {
            backend.output_usage(&spec).await.ok()
        } else {
            None
        }
    };
    let (used, logs) = tokio::join!(
        last_usage,
        tokio::time::timeout(Duration::from_secs(10), log_task)
    );
    if let Some(used) = used {
        over_quota = used > quota;
    }
    let truncated = match logs {
        Ok(Ok(Ok(t))) => t,
        _ => over_log.load(std::sync::atomic::Ordering::Relaxed),
    };
    let outcome = match end_state {
        None | Some(RunState::Missing) => Outcome::Vanished,
        Some(RunState::Exited { code, oom_killed }) => {
            if cancelled_by.is_some() {
                Outcome::Cancelled
            } else if timed_out {
                Outcome::TimedOut
            } else if over_quota {
                Outcome::OutputQuotaExceeded
            } else if oom_killed {
                Outcome::OomKilled
            } else if over_log.load(std::sync::atomic::Ordering::Relaxed) {
                Outcome::LogLimitExceeded
            } else {
                Outcome::Exited { code }
            }
        }
        Some(other) => Outcome::Failed {
            reason: format!("the container is {other:?} after its wait ended"),
        },
    };
    let (log_bytes, log_sha256) = log_digest(&log_path).await;
    let finish = Finish {
        exit_code: outcome.exit_code(),
        detail: match (&outcome, &cancelled_by) {
            (Outcome::Failed { reason }, _) => Some(reason.clone()),
            (Outcome::Cancelled, Some(by)) => Some(format!("cancelled by {by}")),
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

/// When to measure a run's output folder next. Every `QUOTA_STEP_MAX` while it grows slowly;
/// sooner as it nears its quota at the rate it grows (half the time it would take to reach it),
/// so that a fast writer overshoots by less; never more often than `QUOTA_STEP_MIN`, nor than
/// every `QUOTA_WALK_SHARE` times the last measurement took (a folder of many files takes long
/// to walk, and the walk must not take the machine).
struct QuotaClock {
    quota: u64,
    last: Option<(std::time::Instant, u64)>,
    next: Duration,
}

const QUOTA_STEP_MAX: Duration = Duration::from_millis(500);
const QUOTA_STEP_MIN: Duration = Duration::from_millis(50);
const QUOTA_WALK_SHARE: u32 = 10;

impl QuotaClock {
    fn new(quota: u64) -> Self {
        QuotaClock {
            quota,
            last: None,
            next: QUOTA_STEP_MAX,
        }
    }

    /// A measurement that found `used` bytes; it started at `began` and ends now.
    fn measured(&mut self, used: u64, began: std::time::Instant) {
        let now = std::time::Instant::now();
        self.measured_at(used, began, now);
    }

    fn measured_at(&mut self, used: u64, began: std::time::Instant, now: std::time::Instant) {
        let floor = QUOTA_STEP_MIN.max((now - began) * QUOTA_WALK_SHARE);
        let mut next = QUOTA_STEP_MAX;
        if let Some((then, before)) = self.last {
            let secs = (now - then).as_secs_f64();
            if used > before && secs > 0.0 {
                let rate = (used - before) as f64 / secs;
                let left = self.quota.saturating_sub(used) as f64;
                next = next.min(Duration::from_secs_f64(left / rate / 2.0));
            }
        }
        self.next = next.max(floor);
        self.last = Some((now, used));
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

async fn record_finish(state: &AppState, run: &RunRow, f: &Finish) -> anyhow::Result<()> {
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

/// Brings the engine's state and the records together after a start: waits for the engine,
/// then re-attaches to live runs, records ended and vanished ones, requeues runs that never
/// started, and removes containers and volumes the gateway no longer knows. A stop cuts it
/// short: what it has not done is done at the next start.
pub async fn recover(state: AppState, stop: Stop) {
    tokio::select! {
        () = recover_when_the_engine_answers(&state) => {}
        () = stop.requested() => {}
    }
}

async fn recover_when_the_engine_answers(state: &AppState) {
    let backend = state.sandboxes.backend.clone();
    let mut wait = Duration::from_millis(500);
    loop {
        match backend.info().await {
            Ok(_) => break,
            Err(e) => {
                tracing::warn!(error = %e, "the container engine is not answering; sandbox routes answer 503 until it does");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(30));
            }
        }
    }
    if let Err(e) = recover_once(state).await {
        tracing::error!(error = %format!("{e:#}"), "recovering sandboxes failed");
    }
}

async fn recover_once(state: &AppState) -> anyhow::Result<()> {
    let backend = state.sandboxes.backend.clone();
    // Volumes newer than this may belong to a sandbox being created right now, whose record
    // is not committed yet: they are left alone.
    let cutoff = time::OffsetDateTime::now_utc() - Duration::from_secs(60);
    let (runs, sandboxes) = {
        let mut conn = state.db.pool().acquire().await?;
        (
            sstore::unfinished_runs(&mut conn).await?,
            sstore::all_sandbox_ids(&mut conn).await?,
        )
    };
    let mut keep_runs = std::collections::HashSet::new();
    for run in runs {
        keep_runs.insert(run.id.clone());
        match run.state.as_str() {
            "queued" => {
                tracing::info!(run = %run.id, "requeueing a run that had not started");
                spawn_supervisor(state, run, false);
            }
            _ => {
                let container = container_of(&run);
                match backend.state(&container).await? {
                    RunState::Missing => {
                        tracing::warn!(run = %run.id, "a run's container vanished");
                        let (log_bytes, log_sha256) =
                            log_digest(&state.sandboxes.log_path(&run.id)).await;
                        let f = Finish {
                            outcome: Outcome::Vanished.as_str().into(),
                            exit_code: Outcome::Vanished.exit_code(),
                            detail: Some(
                                "the container was gone when the gateway came back".into(),
                            ),
                            log_bytes,
                            log_sha256,
                            log_truncated: false,
                            at: crate::time::now(),
                        };
                        record_finish(state, &run, &f).await?;
                    }
                    _ => {
                        tracing::info!(run = %run.id, "re-attaching to a run");
                        spawn_supervisor(state, run, true);
                    }
                }
            }
        }
    }
    let live_sandboxes: std::collections::HashSet<String> = sandboxes
        .into_iter()
        .filter(|(_, s)| s != "removed")
        .map(|(id, _)| id)
        .collect();
    for c in backend.list_containers().await? {
        let orphan = match c.labels.get(sandbox_runner::LABEL_RUN) {
            Some(r) if keep_runs.contains(r) => false,
            // A run asked for since the list above was read is not an orphan either.
            Some(r) => {
                let mut conn = state.db.pool().acquire().await?;
                sstore::run(&mut conn, r)
                    .await?
                    .is_none_or(|row| row.state == "finished")
            }
            // Started ahead by this process for a sandbox's next run.
            None if backend.holds(&c) => false,
            // Helpers are short-lived, and containers started ahead by an earlier process
            // are not wanted: one left over was interrupted.
            None => true,
        };
        if orphan {
            tracing::info!(container = %c.name, "removing an orphaned container");
            backend.remove_container(&c.name).await?;
        }
    }
    for v in backend.list_volumes().await? {
        // The launcher's volume belongs to the instance, not to a sandbox.
        if v.labels.get(sandbox_runner::LABEL_ROLE).map(String::as_str) == Some("launcher") {
            continue;
        }
        let sb = v
            .labels
            .get(sandbox_runner::LABEL_SANDBOX)
            .cloned()
            .unwrap_or_default();
        let recent = v
            .created
            .as_deref()
            .and_then(|c| {
                time::OffsetDateTime::parse(c, &time::format_description::well_known::Rfc3339).ok()
            })
            .is_none_or(|c| c > cutoff);
        if !live_sandboxes.contains(&sb) && !recent {
            tracing::info!(volume = %v.name, "removing an orphaned volume");
            let _ = backend.remove_sandbox(&sb).await;
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    const MIB: u64 = 1 << 20;

    #[test]
    fn the_output_folder_is_measured_sooner_as_it_nears_its_quota() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut q = QuotaClock::new(1024 * MIB);
        // A first measurement says nothing of the rate.
        q.measured_at(0, at(0), at(1));
        assert_eq!(q.next, QUOTA_STEP_MAX);
        // Slow growth, far from the quota: the longest step.
        q.measured_at(MIB, at(500), at(501));
        assert_eq!(q.next, QUOTA_STEP_MAX);
        // 400 MiB in half a second, 623 MiB left: reached in ~0.78 s, measured in ~0.39 s.
        q.measured_at(401 * MIB, at(1000), at(1001));
        assert!(q.next < Duration::from_millis(400) && q.next > Duration::from_millis(380));
        // Closer still at the same rate: the shortest step, no shorter.
        q.measured_at(1000 * MIB, at(1380), at(1381));
        assert_eq!(q.next, QUOTA_STEP_MIN);
        // Growth stopped: back to the longest step.
        q.measured_at(1000 * MIB, at(1431), at(1432));
        assert_eq!(q.next, QUOTA_STEP_MAX);
    }

    #[test]
    fn a_folder_slow_to_walk_is_measured_less_often() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut q = QuotaClock::new(1024 * MIB);
        q.measured_at(0, at(0), at(1));
        // Near the quota and growing fast, but each walk takes 30 ms: at most a tenth of the time.
        q.measured_at(1000 * MIB, at(100), at(130));
        assert_eq!(q.next, Duration::from_millis(300));
        // A walk of 200 ms: every 2 s, past the longest step.
        q.measured_at(1001 * MIB, at(500), at(700));
        assert_eq!(q.next, Duration::from_secs(2));
    }
}

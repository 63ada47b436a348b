//! Sandboxes and runs: the gateway's side of `sandbox-runner`.
//!
//! A run is recorded `queued`, owned by the gateway that recorded it (`owners`: a lease it
//! renews, which another gateway on the same database takes over once it lapses), waits for a
//! slot (a global limit and one per project, counted in the database over every gateway, so
//! extra runs queue instead of failing), starts in a fresh hardened container, and is
//! supervised to its end (`supervisor`): its logs go to a capped file in the data dir, its output folder is
//! measured against the quota (`quota`), its deadline is enforced with a kill. The outcome
//! (`outcome` says which, when several things happened), the log's SHA-256 and the times are
//! recorded with an audit event, and the container is removed. At start, `recovery`
//! re-attaches to runs that were live, records those that ended or vanished meanwhile, and
//! removes what the gateway created but no longer knows. A supervisor told that the gateway
//! stops leaves its run going and records nothing: the next start takes it up again.
//!
//! This module holds the run queue (`Sandboxes`), what a sandbox is made of (`spec_of`) and
//! what followers of a live run wait on (`Progress`).

pub mod follow;
pub mod outcome;
pub mod owners;
pub mod quota;
pub mod recovery;
pub mod supervisor;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sandbox_runner::{SandboxBackend, SandboxSpec};
use tokio::sync::{Notify, watch};

use crate::config::sandbox::{ResourceClass, SandboxSettings};
use crate::state::AppState;
use crate::store::sandboxes::{self as sstore, RunRow, SandboxRow};
use crate::workers::Name;

/// The engine and the run queue.
pub struct Sandboxes {
    pub backend: Arc<dyn SandboxBackend>,
    settings: SandboxSettings,
    /// This gateway's instance id: the owner of the runs it supervises.
    instance: String,
    /// Woken when a run of this gateway ends, so that its runs waiting for a slot look again
    /// at once (those of other gateways look every `supervisor::SLOT_POLL`).
    slot_freed: Notify,
    logs_dir: PathBuf,
    /// Runs supervised by this process: followers of their logs and of their end watch them.
    live: Mutex<HashMap<String, watch::Receiver<Progress>>>,
    /// Wakes a live run's supervisor when it is asked to cancel it (which is recorded first;
    /// supervisors in other gateways on the same database see it within
    /// `supervisor::CANCEL_POLL`).
    cancels: Mutex<HashMap<String, Arc<tokio::sync::Notify>>>,
    /// Followers here of runs supervised by any gateway, woken across gateways.
    pub follow: follow::Hub,
    /// Wakes a live run's supervisor when its lease could not be renewed because another
    /// gateway took the run over: it stands down.
    lost: Mutex<HashMap<String, Arc<tokio::sync::Notify>>>,
}

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
        instance: String,
    ) -> Self {
        Sandboxes {
            backend,
            settings,
            instance,
            slot_freed: Notify::new(),
            logs_dir,
            live: Mutex::new(HashMap::new()),
            cancels: Default::default(),
            lost: Default::default(),
            follow: Default::default(),
        }
    }

    /// This gateway's instance id, the owner of the runs it supervises.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// How long a run's lease lasts unless renewed.
    pub fn lease(&self) -> Duration {
        Duration::from_secs(self.settings.run_lease_secs)
    }

    /// The runs this process supervises now.
    pub(crate) fn live_runs(&self) -> Vec<String> {
        crate::lock(&self.live).keys().cloned().collect()
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
}

/// The resources of a class, for the runner.
pub fn resources(class: &ResourceClass) -> sandbox_runner::Resources {
    sandbox_runner::Resources {
        nano_cpus: (class.cpus * 1e9) as i64,
        memory_bytes: class.memory_bytes,
        pids: class.pids,
        tmpfs_bytes: class.tmpfs_bytes,
        output_quota_bytes: class.output_quota_bytes,
        work_quota_bytes: class.work_quota_bytes,
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
    state.workers.spawn(name, move |stop| {
        crate::sandboxes::supervisor::supervise(st, run, attach, stop)
    });
}

//! [`SandboxBackend`] over the Docker Engine API (bollard), on the local socket or a remote
//! engine over TLS.
//!
//! Every control call runs under a deadline (`call_timeout`): bollard's own timeout covers only
//! the time to response headers. Uploads get a client of their own with a long timeout, since
//! the engine answers an upload only after extracting it. Waits poll the stream returned after
//! `start` (never before: a wait stream created before start and polled after exit hangs),
//! raced against the end the engine's event stream reports a few milliseconds earlier
//! (`exits`).
//!
//! What lives where: `connect` reaches the engine and says what its errors mean; `standby`
//! keeps a container started ahead for each recently used sandbox; `volumes` makes, fills and
//! removes a sandbox's volumes; `usage` measures its writable volumes; `export` reads one out.
//! Runs themselves start, end and are followed here.

mod connect;
mod export;
mod standby;
mod usage;
mod volumes;

pub use connect::Connection;
pub(crate) use connect::engine_error;
pub use volumes::INIT_IMAGE;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, CreateContainerOptionsBuilder, KillContainerOptionsBuilder,
    RemoveContainerOptionsBuilder, RenameContainerOptions,
};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;

use crate::hardening;
use crate::{
    ByteStream, EngineInfo, Error, ImageInfo, LABEL_INSTANCE, LABEL_MANAGED, LABEL_RUN, Managed,
    Result, RunSpec, RunState, SandboxBackend, SandboxSpec, Started, Usage, Volume,
};
use standby::Standbys;

pub struct DockerBackend {
    conn: Connection,
    /// The clients, made on first use and again after a failure to make them (a socket that
    /// does not exist yet): a gateway starts while the engine is down.
    clients: std::sync::Mutex<Option<(Docker, Docker)>>,
    instance: String,
    call_timeout: Duration,
    /// The ends of this instance's containers from the engine's event stream, followed by a
    /// task started with the first run or wait and stopped when the backend goes.
    exits: std::sync::Arc<crate::exits::Exits>,
    events: std::sync::Mutex<Option<tokio::task::AbortHandle>>,
    /// The output of runs started by this backend, attached before their start, until `logs`
    /// takes it.
    attached: std::sync::Mutex<HashMap<String, crate::output::Frames>>,
    /// Where each sandbox's writable volume lives on the engine's host (by volume name), once
    /// asked: the quotas are measured every half second of a run, and the place does not change.
    volume_roots: std::sync::Mutex<HashMap<String, PathBuf>>,
    /// Containers started ahead, shared with the tasks that start them.
    standbys: Arc<std::sync::Mutex<Standbys>>,
    /// Whether runs go through the launcher on this engine, once known.
    launcher: tokio::sync::Mutex<Option<bool>>,
    /// Set once a sandbox's volume could not be read on this host: from then on they are
    /// measured by a container on the engine.
    measure_on_engine: std::sync::atomic::AtomicBool,
    /// The runtimes the engine has, once asked (a configured one is checked before use).
    runtimes: tokio::sync::Mutex<Option<Vec<String>>>,
}

impl Drop for DockerBackend {
    fn drop(&mut self) {
        if let Some(task) = crate::lock(&self.events).take() {
            task.abort();
        }
    }
}

impl DockerBackend {
    /// Connects lazily: nothing is sent until the first call, so a gateway starts while the
    /// engine is down and its sandbox routes answer 503 until it is up.
    pub fn connect(conn: &Connection, instance: &str) -> Result<DockerBackend> {
        let mut conn = conn.clone();
        if conn.call_timeout.is_zero() {
            conn.call_timeout = Duration::from_secs(30);
        }
        Ok(DockerBackend {
            call_timeout: conn.call_timeout,
            conn,
            clients: std::sync::Mutex::new(None),
            instance: instance.to_owned(),
            exits: Default::default(),
            events: std::sync::Mutex::new(None),
            attached: Default::default(),
            volume_roots: Default::default(),
            standbys: Arc::new(std::sync::Mutex::new(Standbys::new())),
            launcher: tokio::sync::Mutex::new(None),
            measure_on_engine: Default::default(),
            runtimes: Default::default(),
        })
    }

    /// A backend sharing this one's clients, ends and containers started ahead, for work that
    /// goes on after the call that began it.
    fn sibling(&self) -> DockerBackend {
        DockerBackend {
            conn: self.conn.clone(),
            clients: std::sync::Mutex::new(self.clients().ok()),
            instance: self.instance.clone(),
            call_timeout: self.call_timeout,
            exits: self.exits.clone(),
            events: std::sync::Mutex::new(None),
            attached: Default::default(),
            volume_roots: Default::default(),
            standbys: self.standbys.clone(),
            launcher: tokio::sync::Mutex::new(None),
            measure_on_engine: Default::default(),
            runtimes: Default::default(),
        }
    }

    /// Creates and starts a run's container with its command in it (no launcher).
    async fn start_direct(&self, run: &RunSpec) -> Result<String> {
        self.ensure_datasets(&run.sandbox).await?;
        let name = hardening::run_container_name(&run.id);
        let body = hardening::run_container(&self.instance, run);
        let id = match self
            .call(self.docker()?.create_container(
                Some(CreateContainerOptionsBuilder::default().name(&name).build()),
                body,
            ))
            .await
        {
            Ok(c) => c.id,
            // Created before a crash: start what is there.
            Err(e) if e.is_conflict() => name.clone(),
            Err(e) => return Err(e),
        };
        // Attached before the start, so no output is missed.
        if let Some(output) = self.attach(&id).await {
            crate::lock(&self.attached).insert(id.clone(), output);
        }
        match self.call(self.docker()?.start_container(&id, None)).await {
            Ok(()) => Ok(id),
            Err(e) if e.is_not_modified() => Ok(id),
            Err(e) => {
                crate::lock(&self.attached).remove(&id);
                Err(e)
            }
        }
    }

    /// A sandbox's runtime, when one is configured, is one the engine has: otherwise every
    /// run would fail at its start with the engine's terse refusal.
    async fn check_runtime(&self, sb: &SandboxSpec) -> Result<()> {
        let Some(want) = sb.runtime.as_deref() else {
            return Ok(());
        };
        let mut known = self.runtimes.lock().await;
        if known.is_none() {
            let mut have: Vec<String> = self
                .call(self.docker()?.info())
                .await?
                .runtimes
                .map(|r| r.into_keys().collect())
                .unwrap_or_default();
            have.sort();
            *known = Some(have);
        }
        let have = known.as_deref().unwrap_or_default();
        if have.iter().any(|r| r == want) {
            return Ok(());
        }
        // Asked again next time: the engine may be restarted with it.
        let listed = have.join(", ");
        *known = None;
        Err(Error::Misconfigured(format!(
            "sandbox.runtime is `{want}`, which the engine does not have (it has: {listed}); register it in the engine's configuration (deploy/docker/start-engine.sh does for gVisor's runsc) or change sandbox.runtime"
        )))
    }

    /// Attaches to a created container's stdout and stderr, so its output comes straight from
    /// its pipes and ends when the process does: a few milliseconds before the engine's log
    /// reader would end (after the engine has handled the exit). None when the engine refuses;
    /// `logs` then follows the engine's log.
    async fn attach(&self, container: &str) -> Option<crate::output::Frames> {
        let opts = AttachContainerOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .stream(true)
            .build();
        let attached = self
            .call(self.bulk().ok()?.attach_container(container, Some(opts)))
            .await;
        match attached {
            Ok(a) => Some(a.output),
            Err(e) => {
                tracing::debug!(container, error = %e, "attaching failed; the log is followed");
                None
            }
        }
    }

    /// Follows the engine's events for this instance's containers, from now on (once).
    fn follow_events(&self) {
        let mut task = crate::lock(&self.events);
        if task.as_ref().is_some_and(|t| !t.is_finished()) {
            return;
        }
        let Ok(docker) = self.bulk() else { return };
        let labels = self.label_filter(None).remove("label").unwrap_or_default();
        let follow = crate::exits::follow(docker, labels, std::sync::Arc::downgrade(&self.exits));
        *task = Some(tokio::spawn(follow).abort_handle());
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    fn label_filter(&self, extra: Option<(&str, &str)>) -> HashMap<String, Vec<String>> {
        let mut labels = vec![
            format!("{LABEL_MANAGED}=1"),
            format!("{LABEL_INSTANCE}={}", self.instance),
        ];
        if let Some((k, v)) = extra {
            labels.push(format!("{k}={v}"));
        }
        HashMap::from([("label".to_owned(), labels)])
    }
}

#[async_trait::async_trait]
impl SandboxBackend for DockerBackend {
    async fn info(&self) -> Result<EngineInfo> {
        let v = self.call(self.docker()?.version()).await?;
        let info = self.call(self.docker()?.info()).await?;
        Ok(EngineInfo {
            version: v.version.unwrap_or_default(),
            api_version: v.api_version.unwrap_or_default(),
            runtimes: info
                .runtimes
                .map(|r| r.into_keys().collect())
                .unwrap_or_default(),
        })
    }

    async fn image(&self, name: &str) -> Result<Option<ImageInfo>> {
        match self.call(self.docker()?.inspect_image(name)).await {
            Ok(i) => Ok(Some(ImageInfo {
                id: i.id.unwrap_or_default(),
                tags: i.repo_tags.unwrap_or_default(),
                size: i.size.unwrap_or_default(),
                user: i.config.and_then(|c| c.user).unwrap_or_default(),
            })),
            // A name the engine cannot even parse (400: invalid reference format) names no
            // image it has.
            Err(Error::NotFound(_) | Error::Engine { status: 400, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn prepare(&self, sb: &SandboxSpec) -> Result<()> {
        self.check_runtime(sb).await?;
        self.prepare_volumes(sb).await
    }

    async fn stage(&self, sb: &SandboxSpec, ingress: &str, tar: ByteStream) -> Result<()> {
        self.stage_volume(sb, ingress, tar).await
    }

    async fn unstage(&self, sandbox: &str, ingress: &str) -> Result<()> {
        self.remove_ingress_volume(sandbox, ingress).await
    }

    async fn start(&self, run: &RunSpec) -> Result<Started> {
        self.check_runtime(&run.sandbox).await?;
        // Subscribed before the container exists, so its end is not missed.
        self.follow_events();
        let made = |container| Started {
            container,
            ahead: false,
        };
        if !self.launcher_ready().await {
            return self.start_direct(run).await.map(made);
        }
        let name = hardening::run_container_name(&run.id);
        let key = hardening::standby_key(&self.instance, &run.sandbox);
        if let Some(r) = self.claim(&run.sandbox, &key).await {
            // Named after its run before it has the command: after a restart, it is the run's.
            let rename = RenameContainerOptions { name: name.clone() };
            let handed = match self
                .call(self.docker()?.rename_container(&r.id, rename))
                .await
            {
                Ok(()) => self.hand_over(r, run).await,
                Err(e) => {
                    if self.remove_container(&r.id).await.is_err() {
                        // Still under its name from ahead: shutting down removes it.
                        crate::lock(&self.standbys).unclaimed.insert(r.id.clone());
                    }
                    Err(e)
                }
            };
            match handed {
                Ok(container) => {
                    return Ok(Started {
                        container,
                        ahead: true,
                    });
                }
                // It died idle, unnoticed (the event stream was down): the run makes its own.
                Err(e) => {
                    tracing::debug!(run = %run.id, error = %e, "the container started ahead could not take the run; it starts its own")
                }
            }
        }
        let ready = match self
            .launch_container(&run.sandbox, &name, Some(&run.id))
            .await
        {
            Ok(r) => r,
            Err(e) if e.is_conflict() => {
                // This run's container, from before a restart. Running, it has its command (a
                // launcher without one ends when the gateway that attached goes): it is
                // followed. Anything else never ran to a recorded end: it is made anew.
                if self.state(&name).await? == RunState::Running {
                    return Ok(made(name));
                }
                self.remove_container(&name).await?;
                self.launch_container(&run.sandbox, &name, Some(&run.id))
                    .await?
            }
            Err(e) => return Err(e),
        };
        self.hand_over(ready, run).await.map(made)
    }

    async fn wait(&self, container: &str, deadline: Duration) -> Result<Option<RunState>> {
        // The engine reports the end on its event stream before its wait API answers.
        self.follow_events();
        let mut reported = self.exits.watch(container);
        let api = async {
            let mut stream = self.docker()?.wait_container(container, None);
            match tokio::time::timeout(deadline, stream.next()).await {
                Err(_) => Ok(None),
                Ok(None) => Ok(Some(self.state(container).await?)),
                Ok(Some(Ok(_)))
                | Ok(Some(Err(bollard::errors::Error::DockerContainerWaitError { .. }))) => {
                    Ok(Some(self.state(container).await?))
                }
                Ok(Some(Err(e))) => Err(engine_error(e)),
            }
        };
        tokio::select! {
            r = api => r,
            Ok(end) = reported.wait_for(Option::is_some) => Ok(end.clone()),
        }
    }

    async fn kill(&self, container: &str) -> Result<()> {
        match self
            .call(
                self.docker()?.kill_container(
                    container,
                    Some(
                        KillContainerOptionsBuilder::default()
                            .signal("SIGKILL")
                            .build(),
                    ),
                ),
            )
            .await
        {
            Ok(()) | Err(Error::NotFound(_)) => Ok(()),
            // Not running any more.
            Err(e) if e.is_conflict() => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn state(&self, container: &str) -> Result<RunState> {
        crate::output::inspect(&self.docker()?, container, self.call_timeout).await
    }

    async fn maker(&self, container: &str) -> Result<Option<String>> {
        match self
            .call(self.docker()?.inspect_container(container, None))
            .await
        {
            Ok(c) => Ok(Some(
                c.config
                    .and_then(|c| c.labels)
                    .and_then(|mut l| l.remove(LABEL_INSTANCE))
                    .unwrap_or_default(),
            )),
            Err(Error::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn logs(&self, container: &str) -> BoxStream<'static, Result<Vec<u8>>> {
        let attached = crate::lock(&self.attached).remove(container);
        match self.docker() {
            Ok(docker) => crate::output::Output::stream(
                attached,
                docker,
                container.to_owned(),
                self.exits.clone(),
                self.call_timeout,
            ),
            Err(e) => futures_util::stream::once(async move { Err(e) }).boxed(),
        }
    }

    async fn usage(&self, sb: &SandboxSpec, volume: Volume) -> Result<Usage> {
        self.measure(sb, volume).await
    }

    fn download_output(&self, sb: &SandboxSpec, request: &str, paths: &[String]) -> ByteStream {
        self.download(sb, request, paths)
    }

    async fn remove_container(&self, container: &str) -> Result<()> {
        self.exits.forget(container);
        crate::lock(&self.attached).remove(container);
        match self
            .call(self.docker()?.remove_container(
                container,
                Some(RemoveContainerOptionsBuilder::default().force(true).build()),
            ))
            .await
        {
            Ok(()) | Err(Error::NotFound(_)) => Ok(()),
            // Another caller is removing it (a run's supervisor, and the sandbox's removal).
            Err(Error::Engine {
                status: 409,
                message,
            }) if message.contains("in progress") => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn remove_sandbox(&self, sandbox: &str) -> Result<()> {
        {
            let mut roots = crate::lock(&self.volume_roots);
            for v in Volume::ALL {
                roots.remove(&v.name(sandbox));
            }
        }
        self.retire(sandbox).await?;
        self.remove_sandbox_objects(sandbox).await
    }

    async fn list_containers(&self) -> Result<Vec<Managed>> {
        let list = self.labelled_containers(None).await?;
        Ok(list
            .into_iter()
            .map(|c| {
                let names: Vec<String> = c
                    .names
                    .unwrap_or_default()
                    .into_iter()
                    .map(|n| n.trim_start_matches('/').to_owned())
                    .collect();
                let mut labels = c.labels.unwrap_or_default();
                // A container started ahead is labelled before its run exists; the name it
                // takes says which run it serves.
                if !labels.contains_key(LABEL_RUN) {
                    if let Some(run) = names.iter().find_map(|n| n.strip_prefix("vre-run-")) {
                        labels.insert(LABEL_RUN.to_owned(), run.to_owned());
                    }
                }
                Managed {
                    name: c.id.unwrap_or_default(),
                    names,
                    labels,
                    created: None,
                }
            })
            .collect())
    }

    async fn list_volumes(&self) -> Result<Vec<Managed>> {
        let list = self.labelled_volumes(None).await?;
        Ok(list
            .into_iter()
            .map(|v| Managed {
                name: v.name,
                names: Vec::new(),
                labels: v.labels,
                created: v.created_at,
            })
            .collect())
    }

    fn holds(&self, container: &Managed) -> bool {
        self.holds_ahead(container)
    }

    async fn ready_next(&self, sb: &SandboxSpec) {
        if self.launcher_ready().await {
            self.follow_events();
            self.refill(sb, None);
        }
    }

    async fn shutdown(&self) {
        self.close_standbys().await
    }
}

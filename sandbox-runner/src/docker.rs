//! [`SandboxBackend`] over the Docker Engine API (bollard), on the local socket or a remote
//! engine over TLS.
//!
//! Every control call runs under a deadline (`call_timeout`): bollard's own timeout covers only
//! the time to response headers. Uploads get a client of their own with a long timeout, since
//! the engine answers an upload only after extracting it. Waits poll the stream returned after
//! `start` (never before: a wait stream created before start and polled after exit hangs),
//! raced against the end the engine's event stream reports a few milliseconds earlier
//! (`exits`).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType, VolumeCreateRequest};
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, CreateContainerOptionsBuilder,
    DownloadFromContainerOptionsBuilder, KillContainerOptionsBuilder, ListContainersOptionsBuilder,
    ListVolumesOptionsBuilder, RemoveContainerOptionsBuilder, RemoveVolumeOptionsBuilder,
    RenameContainerOptions, UploadToContainerOptionsBuilder,
};
use futures_util::stream::BoxStream;
use futures_util::{StreamExt, TryStreamExt};

use crate::hardening;
use crate::{
    ByteStream, EngineInfo, Error, ImageInfo, LABEL_INSTANCE, LABEL_MANAGED, LABEL_ROLE, LABEL_RUN,
    LABEL_SANDBOX, Managed, Result, RunSpec, RunState, SANDBOX_UID, SandboxBackend, SandboxSpec,
    Started,
};

/// How long a run has to end before the container for its sandbox's next run is started.
const REFILL_AFTER: Duration = Duration::from_millis(100);

/// The launcher (`launch/main.rs`), built static by `build.rs`.
const LAUNCHER: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/vre-launch"));

/// How to reach the engine.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Connection {
    /// `unix:///var/run/docker.sock` (the default), or `tcp://host:2376` with `tls`.
    pub host: Option<String>,
    /// Client key, certificate and CA for a remote engine.
    pub tls: Option<(PathBuf, PathBuf, PathBuf)>,
    /// Deadline of each control call.
    pub call_timeout: Duration,
    /// How many sandboxes keep a container started ahead for their next run (0: none).
    pub standby: usize,
}

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
    /// Where each sandbox's output volume lives on the engine's host, once asked: the quota is
    /// measured every half second of a run, and the place does not change.
    output_roots: std::sync::Mutex<HashMap<String, PathBuf>>,
    /// Containers started ahead, shared with the tasks that start them.
    standbys: Arc<std::sync::Mutex<Standbys>>,
    /// Whether runs go through the launcher on this engine, once known.
    launcher: tokio::sync::Mutex<Option<bool>>,
    /// Set once an output folder could not be read on this host: from then on they are
    /// measured by a container on the engine.
    measure_on_engine: std::sync::atomic::AtomicBool,
    /// The runtimes the engine has, once asked (a configured one is checked before use).
    runtimes: tokio::sync::Mutex<Option<Vec<String>>>,
}

/// The containers started ahead for sandboxes' next runs, at most one per sandbox and
/// `Connection::standby` in all (the sandbox used least recently gives its up first).
///
/// A run's container costs the engine 70–80 ms to create and start, most of a trivial run. A
/// sandbox's containers all have the same profile and only the command differs, so each run
/// takes a container already started (its launcher waiting on standard input), names it after
/// itself, and hands it the command; another is started for the next run meanwhile. Every
/// container still serves exactly one run and is removed after it.
///
/// Whoever takes a slot out of the map owns what its task makes: the run that claims it, or
/// `discard` (evicted, replaced, sandbox removed, shutting down), which waits for the task and
/// removes the container.
#[derive(Default)]
struct Standbys {
    slots: HashMap<String, Slot>,
    /// Sandboxes being removed: nothing more is started for them.
    retired: HashSet<String>,
    closed: bool,
    /// Counts the slots made: their order of use, and unique names.
    tick: u64,
    /// Random, per backend: names unlike those of an earlier process's containers.
    nonce: u32,
}

struct Slot {
    /// The container profile it was made with: a run whose sandbox changed (a new staging)
    /// does not take it.
    key: String,
    name: String,
    /// Filled by the task that starts it; locked until then.
    cell: Arc<tokio::sync::Mutex<Option<Ready>>>,
    /// Tells that task a run is waiting for it: no point in waiting for the last run first.
    hurry: Arc<tokio::sync::Notify>,
    used: u64,
}

/// A started launcher container, attached, waiting for its command.
struct Ready {
    id: String,
    input: Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
    output: crate::output::Frames,
}

impl Drop for DockerBackend {
    fn drop(&mut self) {
        if let Some(task) = crate::lock(&self.events).take() {
            task.abort();
        }
    }
}

fn make_clients(conn: &Connection) -> Result<(Docker, Docker)> {
    let secs = conn.call_timeout.as_secs().max(1);
    let docker = match (&conn.host, &conn.tls) {
        (Some(host), Some((key, cert, ca))) => {
            return finish(crate::tls::connect(host, key, cert, ca, secs)?, conn);
        }
        (Some(host), None) if host.starts_with("unix://") => Docker::connect_with_unix(
            host.trim_start_matches("unix://"),
            secs,
            bollard::API_DEFAULT_VERSION,
        ),
        (Some(host), None) => Docker::connect_with_http(host, secs, bollard::API_DEFAULT_VERSION),
        (None, _) => Docker::connect_with_local_defaults(),
    }
    .map_err(engine_error)?;
    finish(docker, conn)
}

/// The control client (calls time out after `call_timeout`) and the bulk one.
fn finish(docker: Docker, conn: &Connection) -> Result<(Docker, Docker)> {
    let bulk = docker.clone().with_timeout(Duration::from_secs(6 * 3600));
    Ok((docker.with_timeout(conn.call_timeout), bulk))
}

/// An error and what caused it, down to the root: a connection's failure says why (a refused
/// connection, a certificate the engine or the gateway does not trust), not only where.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cause = c.source();
    }
    s
}

/// What a failed call to the engine means, from bollard's typed errors: the engine's answer
/// (its status and message), no answer in time, or none at all because the connection failed.
pub(crate) fn engine_error(e: bollard::errors::Error) -> Error {
    use bollard::errors::Error as B;
    match e {
        B::DockerResponseServerError {
            status_code: 404,
            message,
        } => Error::NotFound(message),
        B::DockerResponseServerError {
            status_code,
            message,
        } => Error::Engine {
            status: status_code,
            message,
        },
        B::RequestTimeoutError => Error::Timeout(Duration::ZERO),
        // No socket where the engine listens: it is not running, or not yet.
        B::SocketNotFoundError(_) => Error::Unavailable(with_causes(&e)),
        B::HyperLegacyError { ref err } if connection_failed(err) => {
            Error::Unavailable(with_causes(&e))
        }
        B::HyperResponseError { ref err } if connection_failed(err) => {
            Error::Unavailable(with_causes(&e))
        }
        B::IOError { ref err } if connection_failed(err) => Error::Unavailable(with_causes(&e)),
        _ => Error::Failed(with_causes(&e)),
    }
}

/// Whether an exchange with the engine failed for want of a working connection (refused, no
/// socket, reset, closed before the answer was complete): the engine is down, restarting or
/// unreachable, and the caller may ask again. The first error down the chain that tells
/// decides. A failure of the request's own body (an upload's source) or an answer that is not
/// HTTP is no connection failure. bollard turns a broken answer stream into an `io::Error`
/// keeping only hyper's message, so a transport error that tells nothing counts as a broken
/// connection.
fn connection_failed(e: &(dyn std::error::Error + 'static)) -> bool {
    use std::io::ErrorKind as K;
    let mut next = Some(e);
    while let Some(c) = next {
        next = c.source();
        if let Some(client) = c.downcast_ref::<hyper_util::client::legacy::Error>() {
            if client.is_connect() {
                return true;
            }
        } else if let Some(h) = c.downcast_ref::<hyper::Error>() {
            if h.is_user() || h.is_parse() {
                return false;
            }
            if h.is_incomplete_message() || h.is_closed() || h.is_canceled() {
                return true;
            }
        } else if let Some(io) = c.downcast_ref::<std::io::Error>() {
            if matches!(
                io.kind(),
                K::ConnectionRefused
                    | K::ConnectionReset
                    | K::ConnectionAborted
                    | K::NotConnected
                    | K::BrokenPipe
                    | K::UnexpectedEof
                    | K::NotFound
                    | K::TimedOut
                    | K::AddrNotAvailable
                    | K::HostUnreachable
                    | K::NetworkUnreachable
            ) {
                return true;
            }
            // Its `source` skips the error it wraps.
            if let Some(inner) = io.get_ref() {
                next = Some(inner);
            }
        }
    }
    true
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
            output_roots: Default::default(),
            standbys: Arc::new(std::sync::Mutex::new(Standbys {
                nonce: {
                    use std::hash::{BuildHasher, Hasher};
                    std::collections::hash_map::RandomState::new()
                        .build_hasher()
                        .finish() as u32
                },
                ..Default::default()
            })),
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
            output_roots: Default::default(),
            standbys: self.standbys.clone(),
            launcher: tokio::sync::Mutex::new(None),
            measure_on_engine: Default::default(),
            runtimes: Default::default(),
        }
    }

    fn standbys(&self) -> std::sync::MutexGuard<'_, Standbys> {
        crate::lock(&self.standbys)
    }

    /// Whether runs can go through the launcher here: the engine runs Linux on this
    /// architecture and holds the launcher's volume (placed on first use). An engine that
    /// cannot is asked no more; one that failed to answer is asked again next run.
    async fn launcher_ready(&self) -> bool {
        let mut known = self.launcher.lock().await;
        if let Some(ok) = *known {
            return ok;
        }
        match self.place_launcher().await {
            Ok(ok) => {
                *known = Some(ok);
                ok
            }
            Err(e) => {
                tracing::warn!(error = %e, "placing the launcher failed; this run starts without it");
                false
            }
        }
    }

    async fn place_launcher(&self) -> Result<bool> {
        let info = self.call(self.docker()?.info()).await?;
        let (os, arch) = (
            info.os_type.unwrap_or_default(),
            info.architecture.unwrap_or_default(),
        );
        if os != "linux" || arch != std::env::consts::ARCH {
            tracing::info!(%os, %arch, "the engine runs another system: runs are created with their command, none ahead");
            return Ok(false);
        }
        let volume = hardening::launcher_volume(&self.instance);
        let labels = HashMap::from([
            (LABEL_MANAGED.to_owned(), "1".to_owned()),
            (LABEL_INSTANCE.to_owned(), self.instance.clone()),
            (LABEL_ROLE.to_owned(), "launcher".to_owned()),
        ]);
        self.create_volume(&volume, labels.clone()).await?;
        self.ensure_init_image().await?;
        let mounts = vec![Mount {
            typ: Some(MountType::VOLUME),
            source: Some(volume),
            target: Some("/launch".into()),
            ..Default::default()
        }];
        let name = format!("vre-launch-{}", self.instance);
        let helper = self.helper_with(INIT_IMAGE, labels, &name, mounts).await?;
        let tar = tar_of(&[("vre-launch", 0, 0o555, Some(LAUNCHER))]);
        let body = futures_util::stream::once(async move { Ok(bytes::Bytes::from(tar)) }).boxed();
        let placed = self.upload(&helper, "/launch", body).await;
        let _ = self.remove_container(&helper).await;
        placed.map(|()| true)
    }

    /// Creates, attaches to and starts a launcher container of the sandbox, named `name`.
    async fn launch_container(
        &self,
        sb: &SandboxSpec,
        name: &str,
        run: Option<&str>,
    ) -> Result<Ready> {
        self.ensure_datasets(sb).await?;
        let body = hardening::launcher_container(&self.instance, sb, run);
        let id = self
            .call(self.docker()?.create_container(
                Some(CreateContainerOptionsBuilder::default().name(name).build()),
                body,
            ))
            .await?
            .id;
        let started = async {
            let opts = AttachContainerOptionsBuilder::default()
                .stdin(true)
                .stdout(true)
                .stderr(true)
                .stream(true)
                .build();
            // Attached before the start, so no output is missed.
            let a = self
                .call(self.bulk()?.attach_container(&id, Some(opts)))
                .await?;
            self.call(self.docker()?.start_container(&id, None)).await?;
            Ok(Ready {
                id: id.clone(),
                input: a.input,
                output: a.output,
            })
        }
        .await;
        if started.is_err() {
            let _ = self.remove_container(&id).await;
        }
        started
    }

    /// Hands the run's command to a started launcher container, keeps its output for `logs`
    /// and has the next container started ahead; a container that cannot take it is removed.
    async fn hand_over(&self, ready: Ready, run: &RunSpec) -> Result<String> {
        let Ready {
            id,
            mut input,
            output,
        } = ready;
        let payload = hardening::launch_payload(run);
        let sent = tokio::time::timeout(self.call_timeout, async {
            use tokio::io::AsyncWriteExt;
            input.write_all(&payload).await?;
            input.flush().await
        })
        .await;
        let sent = match sent {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Error::Unavailable(format!(
                "handing the command to the run's container failed: {e}"
            ))),
            Err(_) => Err(Error::Timeout(self.call_timeout)),
        };
        if let Err(e) = sent {
            let _ = self.remove_container(&id).await;
            return Err(e);
        }
        crate::lock(&self.attached).insert(id.clone(), output);
        self.refill(&run.sandbox, Some(&id));
        Ok(id)
    }

    /// The sandbox's container started ahead, when there is one of the profile its runs get
    /// now, alive; waits for it when it is still being started (it began before this run did).
    async fn claim(&self, sb: &SandboxSpec, key: &str) -> Option<Ready> {
        let cell = {
            let mut s = self.standbys();
            match s.slots.get(&sb.id) {
                Some(slot) if slot.key == key => {}
                _ => return None,
            }
            let slot = s.slots.remove(&sb.id)?;
            slot.hurry.notify_one();
            slot.cell
        };
        let ready = match tokio::time::timeout(self.call_timeout, cell.clone().lock_owned()).await {
            Ok(mut g) => g.take()?,
            Err(_) => {
                self.discard(cell);
                return None;
            }
        };
        if self.exits.watch(&ready.id).borrow().is_some() {
            // It ended while waiting (its engine restarted, or someone removed it).
            let _ = self.remove_container(&ready.id).await;
            return None;
        }
        Some(ready)
    }

    /// Starts a container ahead for the sandbox's next run, in the background: once the run
    /// that just started in `after` has ended or run for `REFILL_AFTER`, so that the engine's
    /// work on it does not slow down a short run (which spends most of its time in the
    /// engine's handling of its start and exit); at once when there is no such run.
    fn refill(&self, sb: &SandboxSpec, after: Option<&str>) {
        if self.conn.standby == 0 {
            return;
        }
        let key = hardening::standby_key(&self.instance, sb);
        let cell = Arc::new(tokio::sync::Mutex::new(None));
        let guard = cell.clone().try_lock_owned().expect("a new lock is free");
        let hurry = Arc::new(tokio::sync::Notify::new());
        let (name, evicted) = {
            let mut s = self.standbys();
            if s.closed || s.retired.contains(&sb.id) {
                return;
            }
            // One at a time per sandbox: runs that start together while one is being made
            // start their own rather than make more.
            if s.slots.get(&sb.id).is_some_and(|slot| slot.key == key) {
                return;
            }
            s.tick += 1;
            let tick = s.tick;
            let name = hardening::standby_name(&sb.id, s.nonce, tick);
            let slot = Slot {
                key,
                name: name.clone(),
                cell,
                hurry: hurry.clone(),
                used: tick,
            };
            let mut evicted: Vec<_> = s
                .slots
                .insert(sb.id.clone(), slot)
                .map(|o| o.cell)
                .into_iter()
                .collect();
            while s.slots.len() > self.conn.standby {
                let lru = s
                    .slots
                    .iter()
                    .min_by_key(|(_, v)| v.used)
                    .map(|(k, _)| k.clone())
                    .expect("more slots than allowed, so not empty");
                evicted.extend(s.slots.remove(&lru).map(|o| o.cell));
            }
            (name, evicted)
        };
        for cell in evicted {
            self.discard(cell);
        }
        let backend = self.sibling();
        let sb = sb.clone();
        let ended = after.map(|c| self.exits.watch(c));
        tokio::spawn(async move {
            let mut guard = guard;
            if let Some(mut ended) = ended {
                tokio::select! {
                    _ = tokio::time::timeout(REFILL_AFTER, ended.wait_for(Option::is_some)) => {}
                    () = hurry.notified() => {}
                }
            }
            match backend.launch_container(&sb, &name, None).await {
                Ok(ready) => *guard = Some(ready),
                Err(e) => {
                    tracing::debug!(sandbox = %sb.id, error = %e, "starting a container ahead failed; the next run starts its own")
                }
            }
        });
    }

    /// Removes what a slot taken out of the map holds, once its task is done.
    fn discard(&self, cell: Arc<tokio::sync::Mutex<Option<Ready>>>) {
        let backend = self.sibling();
        tokio::spawn(async move {
            let ready = cell.lock().await.take();
            if let Some(r) = ready {
                let _ = backend.remove_container(&r.id).await;
            }
        });
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

    /// The output folder's usage walked on this host, where the engine's volumes live; `Err`
    /// inside when this host cannot read it (the volume lives on another host, or the gateway
    /// may not read the engine's volumes), with why. The engine's own errors (down, the volume
    /// gone) are the outer error: they say nothing of where volumes live.
    async fn usage_here(&self, sandbox: &str) -> Result<std::result::Result<u64, String>> {
        let root = self.output_root(sandbox).await?;
        let walked = {
            let root = root.clone();
            tokio::task::spawn_blocking(move || crate::usage::usage(&root))
                .await
                .map_err(|e| Error::Io(std::io::Error::other(e)))?
        };
        Ok(walked.map_err(|e| {
            // Asked again next time: the volume may have been made anew.
            crate::lock(&self.output_roots).remove(sandbox);
            format!(
                "the output folder {} cannot be read on this host: {e}",
                root.display()
            )
        }))
    }

    /// The output folder's usage measured by a short-lived container on the engine
    /// ([`hardening::measure_container`]), for engines whose volumes this host cannot read.
    async fn usage_on_engine(&self, sb: &SandboxSpec) -> Result<u64> {
        let body = hardening::measure_container(&self.instance, &sb.id, &sb.project);
        let id = self
            .call(self.docker()?.create_container(
                None::<bollard::query_parameters::CreateContainerOptions>,
                body,
            ))
            .await?
            .id;
        let measured = tokio::time::timeout(self.call_timeout, async {
            let opts = AttachContainerOptionsBuilder::default()
                .stdout(true)
                .stderr(true)
                .stream(true)
                .build();
            let mut a = self
                .bulk()?
                .attach_container(&id, Some(opts))
                .await
                .map_err(engine_error)?;
            self.docker()?
                .start_container(&id, None)
                .await
                .map_err(engine_error)?;
            let (mut out, mut err) = (Vec::new(), Vec::new());
            while let Some(frame) = a.output.next().await {
                match frame.map_err(engine_error)? {
                    bollard::container::LogOutput::StdOut { message } => {
                        out.extend_from_slice(&message)
                    }
                    bollard::container::LogOutput::StdErr { message } => {
                        err.extend_from_slice(&message)
                    }
                    _ => {}
                }
                if out.len() + err.len() > 4096 {
                    break;
                }
            }
            let out = String::from_utf8_lossy(&out);
            out.trim().parse::<u64>().map_err(|_| {
                Error::Failed(format!(
                    "measuring the output folder failed: {}",
                    String::from_utf8_lossy(&err).trim()
                ))
            })
        })
        .await
        .unwrap_or(Err(Error::Timeout(self.call_timeout)));
        let _ = self.remove_container(&id).await;
        measured
    }

    async fn output_root(&self, sandbox: &str) -> Result<PathBuf> {
        let known = crate::lock(&self.output_roots).get(sandbox).cloned();
        if let Some(root) = known {
            return Ok(root);
        }
        let v = self
            .call(
                self.docker()?
                    .inspect_volume(&hardening::output_volume(sandbox)),
            )
            .await?;
        let root = PathBuf::from(v.mountpoint);
        crate::lock(&self.output_roots).insert(sandbox.to_owned(), root.clone());
        Ok(root)
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

    /// The control client and the bulk client (for uploads, whose answer comes only after the
    /// engine extracted them, so their timeout must cover it).
    fn clients(&self) -> Result<(Docker, Docker)> {
        let mut guard = crate::lock(&self.clients);
        if let Some(c) = guard.as_ref() {
            return Ok(c.clone());
        }
        let c = make_clients(&self.conn).map_err(|e| match e {
            Error::Failed(m) => Error::Unavailable(m),
            other => other,
        })?;
        *guard = Some(c.clone());
        Ok(c)
    }

    fn docker(&self) -> Result<Docker> {
        Ok(self.clients()?.0)
    }

    fn bulk(&self) -> Result<Docker> {
        Ok(self.clients()?.1)
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    async fn call<T>(
        &self,
        fut: impl std::future::Future<Output = std::result::Result<T, bollard::errors::Error>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.call_timeout, fut).await {
            Ok(r) => r.map_err(engine_error),
            Err(_) => Err(Error::Timeout(self.call_timeout)),
        }
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

    async fn create_volume(&self, name: &str, labels: HashMap<String, String>) -> Result<()> {
        self.create_volume_with(name, labels, HashMap::new()).await
    }

    async fn create_volume_with(
        &self,
        name: &str,
        labels: HashMap<String, String>,
        driver_opts: HashMap<String, String>,
    ) -> Result<()> {
        self.call(self.docker()?.create_volume(VolumeCreateRequest {
            name: Some(name.to_owned()),
            driver: Some("local".into()),
            driver_opts: Some(driver_opts),
            labels: Some(labels),
            ..Default::default()
        }))
        .await?;
        Ok(())
    }

    /// The sandbox's dataset volumes (see [`hardening::dataset_volume_options`]). Creating an
    /// existing one is a no-op; making sure before every run keeps the engine from quietly
    /// creating an empty volume in place of one removed behind the gateway's back.
    async fn ensure_datasets(&self, sb: &SandboxSpec) -> Result<()> {
        for d in &sb.datasets {
            let mut labels = hardening::labels(&self.instance, &sb.id, &sb.project, "dataset");
            labels.insert("vre.dataset".into(), d.id.clone());
            self.create_volume_with(
                &hardening::dataset_volume(&sb.id, &d.id),
                labels,
                hardening::dataset_volume_options(&d.host_path),
            )
            .await?;
        }
        Ok(())
    }

    /// A container that never starts, used to reach volumes through the archive API (which
    /// writes only into volumes when the root is read-only).
    async fn helper(
        &self,
        sandbox: &SandboxSpec,
        name: &str,
        mounts: Vec<Mount>,
    ) -> Result<String> {
        let labels = hardening::labels(&self.instance, &sandbox.id, &sandbox.project, "helper");
        self.helper_with(&sandbox.image_id, labels, name, mounts)
            .await
    }

    async fn helper_with(
        &self,
        image: &str,
        mut labels: HashMap<String, String>,
        name: &str,
        mounts: Vec<Mount>,
    ) -> Result<String> {
        labels.insert("vre.helper".into(), name.to_owned());
        let body = ContainerCreateBody {
            image: Some(image.to_owned()),
            cmd: Some(vec!["/nonexistent".into()]),
            entrypoint: Some(Vec::new()),
            user: Some(format!("{SANDBOX_UID}:{SANDBOX_UID}")),
            network_disabled: Some(true),
            labels: Some(labels),
            host_config: Some(HostConfig {
                network_mode: Some("none".into()),
                readonly_rootfs: Some(true),
                cap_drop: Some(vec!["ALL".into()]),
                security_opt: Some(vec!["no-new-privileges:true".into()]),
                mounts: Some(mounts),
                ..Default::default()
            }),
            ..Default::default()
        };
        // A helper left by a crash has the same name: remove it first.
        let _ = self.remove_container(name).await;
        let created = self
            .call(self.docker()?.create_container(
                Some(CreateContainerOptionsBuilder::default().name(name).build()),
                body,
            ))
            .await?;
        Ok(created.id)
    }

    async fn ensure_init_image(&self) -> Result<()> {
        if self.image(INIT_IMAGE).await?.is_some() {
            return Ok(());
        }
        let tar = tar_of(&[
            ("./", 0, 0o755, None),
            ("vre/", 0, 0o755, None),
            ("vre/work/", SANDBOX_UID, 0o700, None),
            ("vre/output/", SANDBOX_UID, 0o700, None),
        ]);
        let (repo, tag) = INIT_IMAGE.split_once(':').expect("the name has a tag");
        let opts = bollard::query_parameters::CreateImageOptionsBuilder::default()
            .from_src("-")
            .repo(repo)
            .tag(tag)
            .build();
        let mut progress =
            self.bulk()?
                .create_image(Some(opts), Some(bollard::body_full(tar.into())), None);
        while let Some(p) = progress.next().await {
            p.map_err(engine_error)?;
        }
        Ok(())
    }

    async fn upload(&self, container: &str, path: &str, tar: ByteStream) -> Result<()> {
        self.bulk()?
            .upload_to_container(
                container,
                Some(
                    UploadToContainerOptionsBuilder::default()
                        .path(path)
                        .build(),
                ),
                bollard::body_try_stream(tar),
            )
            .await
            .map_err(engine_error)
    }
}

/// The image that initialises a sandbox's volumes: nothing but its mount points, owned by the
/// sandbox user. A fresh volume mounted on a container of it takes the mount point's owner
/// (the engine's copy-up), which the archive API cannot set on a volume's root.
pub const INIT_IMAGE: &str = "vre/volume-init:1";

/// A tar of directories (no content) and files: (path, uid, mode, content).
fn tar_of(entries: &[(&str, u32, u32, Option<&[u8]>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (path, uid, mode, content) in entries {
        let mut h = [0u8; 512];
        h[..path.len()].copy_from_slice(path.as_bytes());
        h[100..108].copy_from_slice(format!("{mode:07o}\0").as_bytes());
        h[108..116].copy_from_slice(format!("{uid:07o}\0").as_bytes());
        h[116..124].copy_from_slice(format!("{uid:07o}\0").as_bytes());
        let size = content.map_or(0, <[u8]>::len);
        h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
        h[136..148].copy_from_slice(b"00000000000\0");
        h[156] = if content.is_some() { b'0' } else { b'5' };
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        out.extend_from_slice(&h);
        if let Some(c) = content {
            out.extend_from_slice(c);
            out.resize(out.len().next_multiple_of(512), 0);
        }
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
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
            Err(Error::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn prepare(&self, sb: &SandboxSpec) -> Result<()> {
        self.check_runtime(sb).await?;
        let work = hardening::work_volume(&sb.id);
        let output = hardening::output_volume(&sb.id);
        self.create_volume(
            &work,
            hardening::labels(&self.instance, &sb.id, &sb.project, "work"),
        )
        .await?;
        self.create_volume(
            &output,
            hardening::labels(&self.instance, &sb.id, &sb.project, "output"),
        )
        .await?;
        self.ensure_datasets(sb).await?;
        let mounts = vec![
            Mount {
                typ: Some(MountType::VOLUME),
                source: Some(work),
                target: Some("/vre/work".into()),
                ..Default::default()
            },
            Mount {
                typ: Some(MountType::VOLUME),
                source: Some(output),
                target: Some("/vre/output".into()),
                ..Default::default()
            },
        ];
        self.ensure_init_image().await?;
        let name = format!("vre-prepare-{}", sb.id);
        let mut init = sb.clone();
        init.image_id = INIT_IMAGE.into();
        // Creating the container is enough: the engine copies the owners up into the volumes.
        let helper = self.helper(&init, &name, mounts).await?;
        self.remove_container(&helper).await
    }

    async fn stage(&self, sb: &SandboxSpec, ingress: &str, tar: ByteStream) -> Result<()> {
        let volume = hardening::ingress_volume(&sb.id, ingress);
        let mut labels = hardening::labels(&self.instance, &sb.id, &sb.project, "ingress");
        labels.insert("vre.ingress".into(), ingress.to_owned());
        self.create_volume(&volume, labels).await?;
        let mounts = vec![Mount {
            typ: Some(MountType::VOLUME),
            source: Some(volume),
            target: Some("/stage".into()),
            ..Default::default()
        }];
        let name = format!("vre-stage-{}-{ingress}", sb.id);
        let helper = self.helper(sb, &name, mounts).await?;
        let result = self.upload(&helper, "/stage", tar).await;
        let _ = self.remove_container(&helper).await;
        result
    }

    async fn unstage(&self, sandbox: &str, ingress: &str) -> Result<()> {
        let name = hardening::ingress_volume(sandbox, ingress);
        match self
            .call(self.docker()?.remove_volume(
                &name,
                Some(RemoveVolumeOptionsBuilder::default().force(true).build()),
            ))
            .await
        {
            Ok(()) | Err(Error::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
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
                    let _ = self.remove_container(&r.id).await;
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

    async fn output_usage(&self, sb: &SandboxSpec) -> Result<u64> {
        if !self.measure_on_engine.load(Ordering::Relaxed) {
            let why = match self.usage_here(&sb.id).await? {
                Ok(used) => return Ok(used),
                Err(why) => why,
            };
            // Never a silent 0, which would switch the quota off.
            if !self.launcher_ready().await {
                return Err(Error::Unavailable(format!(
                    "{why}, and the engine cannot measure it"
                )));
            }
            tracing::info!(reason = %why, "output folders are measured on the engine's side from now on");
            self.measure_on_engine.store(true, Ordering::Relaxed);
        }
        self.usage_on_engine(sb).await
    }

    fn download_output(&self, sb: &SandboxSpec, path: &str) -> ByteStream {
        let docker = match self.bulk() {
            Ok(d) => d,
            Err(e) => {
                return futures_util::stream::once(async move { Err(std::io::Error::other(e)) })
                    .boxed();
            }
        };
        let sb = sb.clone();
        let path = format!("/vre/output/{}", path.trim_start_matches('/'));
        let name = format!("vre-egress-{}", sb.id);
        let backend = self.sibling();
        let stream = async move {
            let mounts = vec![Mount {
                typ: Some(MountType::VOLUME),
                source: Some(hardening::output_volume(&sb.id)),
                target: Some("/vre/output".into()),
                read_only: Some(true),
                ..Default::default()
            }];
            let helper = backend
                .helper(&sb, &name, mounts)
                .await
                .map_err(std::io::Error::other)?;
            let body = docker
                .download_from_container(
                    &helper,
                    Some(
                        DownloadFromContainerOptionsBuilder::default()
                            .path(&path)
                            .build(),
                    ),
                )
                .map_err(std::io::Error::other);
            Ok::<_, std::io::Error>((backend, helper, body))
        };
        futures_util::stream::once(stream)
            .map(|r| match r {
                Ok((backend, helper, body)) => {
                    let cleanup = futures_util::stream::once(async move {
                        let _ = backend.remove_container(&helper).await;
                        None
                    });
                    body.map(Some)
                        .chain(cleanup)
                        .filter_map(|x| async move { x })
                        .boxed()
                }
                Err(e) => futures_util::stream::once(async move { Err(e) }).boxed(),
            })
            .flatten()
            .boxed()
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
        crate::lock(&self.output_roots).remove(sandbox);
        let standby = {
            let mut s = self.standbys();
            s.retired.insert(sandbox.to_owned());
            s.slots.remove(sandbox)
        };
        if let Some(slot) = standby {
            let ready = slot.cell.lock().await.take();
            if let Some(r) = ready {
                self.remove_container(&r.id).await?;
            }
        }
        let filters = self.label_filter(Some((LABEL_SANDBOX, sandbox)));
        let containers = self
            .call(
                self.docker()?.list_containers(Some(
                    ListContainersOptionsBuilder::default()
                        .all(true)
                        .filters(&filters)
                        .build(),
                )),
            )
            .await?;
        for c in containers {
            if let Some(id) = c.id {
                self.remove_container(&id).await?;
            }
        }
        let vols = self
            .call(
                self.docker()?.list_volumes(Some(
                    ListVolumesOptionsBuilder::default()
                        .filters(&filters)
                        .build(),
                )),
            )
            .await?;
        for v in vols.volumes.unwrap_or_default() {
            // A container whose removal another caller started may hold the volume a moment.
            let mut tries = 0;
            loop {
                match self
                    .call(self.docker()?.remove_volume(
                        &v.name,
                        Some(RemoveVolumeOptionsBuilder::default().force(true).build()),
                    ))
                    .await
                {
                    Ok(()) | Err(Error::NotFound(_)) => break,
                    Err(e) if e.is_conflict() && tries < 50 => {
                        tries += 1;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    async fn list_containers(&self) -> Result<Vec<Managed>> {
        let filters = self.label_filter(None);
        let list = self
            .call(
                self.docker()?.list_containers(Some(
                    ListContainersOptionsBuilder::default()
                        .all(true)
                        .filters(&filters)
                        .build(),
                )),
            )
            .await?;
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
        let filters = self.label_filter(None);
        let list = self
            .call(
                self.docker()?.list_volumes(Some(
                    ListVolumesOptionsBuilder::default()
                        .filters(&filters)
                        .build(),
                )),
            )
            .await?;
        Ok(list
            .volumes
            .unwrap_or_default()
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
        let s = self.standbys();
        s.slots
            .values()
            .any(|slot| container.names.contains(&slot.name))
    }

    async fn ready_next(&self, sb: &SandboxSpec) {
        if self.launcher_ready().await {
            self.follow_events();
            self.refill(sb, None);
        }
    }

    async fn shutdown(&self) {
        let slots: Vec<Slot> = {
            let mut s = self.standbys();
            s.closed = true;
            s.slots.drain().map(|(_, v)| v).collect()
        };
        for slot in slots {
            let ready = slot.cell.lock().await.take();
            if let Some(r) = ready {
                let _ = self.remove_container(&r.id).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::errors::Error as B;

    fn server(status: u16) -> B {
        B::DockerResponseServerError {
            status_code: status,
            message: "Conflict. The container name \"/vre-run-1\" is already in use".into(),
        }
    }

    #[test]
    fn answers_keep_their_status_and_message() {
        let e = engine_error(server(409));
        assert!(e.is_conflict() && !e.is_not_modified(), "{e:?}");
        assert!(
            matches!(&e, Error::Engine { status: 409, message } if message.starts_with("Conflict.")),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "the container engine refused: 409: Conflict. The container name \"/vre-run-1\" is already in use"
        );
        assert!(engine_error(server(304)).is_not_modified());
        assert!(!engine_error(server(500)).is_conflict());
        assert!(matches!(engine_error(server(404)), Error::NotFound(_)));
    }

    #[test]
    fn a_connection_that_failed_is_the_engine_away() {
        use std::io::{Error as Io, ErrorKind as K};
        let cases = [
            B::from(Io::from(K::ConnectionRefused)),
            B::from(Io::new(K::ConnectionReset, "reset by peer")),
            // A broken answer stream, as bollard reports it: hyper's message in an `Other`.
            B::from(Io::other("connection closed before message completed")),
            // Made before the engine put its socket there.
            B::SocketNotFoundError("/run/vre-test/docker.sock".into()),
        ];
        for b in cases {
            let shown = b.to_string();
            let e = engine_error(b);
            assert!(matches!(e, Error::Unavailable(_)), "{shown}: {e:?}");
            assert!(e.to_string().contains(&shown), "the cause is kept: {e}");
        }
        assert!(matches!(
            engine_error(B::RequestTimeoutError),
            Error::Timeout(_)
        ));
    }

    #[test]
    fn words_in_a_message_do_not_make_the_engine_away() {
        let cases = [
            B::DockerStreamError {
                error: "failed to connect: connection refused by the registry".into(),
            },
            B::JsonDataError {
                message: "no such file".into(),
                column: 3,
            },
            B::UnsupportedURISchemeError {
                uri: "ftp://engine".into(),
            },
        ];
        for b in cases {
            let e = engine_error(b);
            assert!(matches!(e, Error::Failed(_)), "{e:?}");
        }
        let refused = B::DockerResponseServerError {
            status_code: 500,
            message: "dial unix /run/containerd.sock: connect: connection refused".into(),
        };
        assert!(matches!(
            engine_error(refused),
            Error::Engine { status: 500, .. }
        ));
    }

    /// A client of a socket in a fresh folder, and where that socket is.
    fn client(dir: &std::path::Path) -> (Docker, PathBuf) {
        let path = dir.join("engine.sock");
        // bollard refuses to make a client of a socket that is not there.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let docker =
            Docker::connect_with_unix(path.to_str().unwrap(), 5, bollard::API_DEFAULT_VERSION)
                .unwrap();
        (docker, path)
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("vre-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Answers one request on the socket with `answer`, after reading its head.
    fn answer_once(path: &std::path::Path, answer: &'static [u8]) {
        let _ = std::fs::remove_file(path);
        let listener = tokio::net::UnixListener::bind(path).unwrap();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (mut s, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut buf).await.unwrap();
                if n == 0 {
                    return;
                }
                head.extend_from_slice(&buf[..n]);
            }
            s.write_all(answer).await.unwrap();
            s.shutdown().await.unwrap();
        });
    }

    #[tokio::test]
    async fn real_failures_of_a_socket_are_told_apart() {
        let dir = temp_dir("engine-errors");
        let (docker, path) = client(&dir);

        // Nothing listens on the socket (an engine stopped or restarting).
        let e = engine_error(docker.ping().await.unwrap_err());
        assert!(
            matches!(&e, Error::Unavailable(m) if m.contains("refused")),
            "{e:?}"
        );

        // The socket is gone.
        std::fs::remove_file(&path).unwrap();
        let e = engine_error(docker.ping().await.unwrap_err());
        assert!(
            matches!(&e, Error::Unavailable(m) if m.contains("No such file")),
            "{e:?}"
        );

        // The connection closed before the answer was complete (an engine going down).
        answer_once(&path, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nOK");
        let e = engine_error(docker.ping().await.unwrap_err());
        assert!(matches!(e, Error::Unavailable(_)), "{e:?}");

        // An answer with an error status.
        answer_once(
            &path,
            b"HTTP/1.1 409 Conflict\r\nContent-Type: application/json\r\nContent-Length: 41\r\n\r\n{\"message\":\"removal already in progress\"}",
        );
        let e = engine_error(docker.ping().await.unwrap_err());
        assert!(
            matches!(&e, Error::Engine { status: 409, message } if message == "removal already in progress"),
            "{e:?}"
        );

        // Something that does not speak HTTP listens there: asking again will not help.
        answer_once(&path, b"SSH-2.0-OpenSSH_9.6\r\n\r\n");
        let e = engine_error(docker.ping().await.unwrap_err());
        assert!(matches!(e, Error::Failed(_)), "{e:?}");

        // An upload whose source failed, however that failure looks: the engine is not away.
        let _ = std::fs::remove_file(&path);
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let reader = tokio::spawn(async move {
            // Reads all and answers nothing, so the upload's own failure is what ends it.
            let (mut s, _) = listener.accept().await.unwrap();
            let _ = tokio::io::copy(&mut s, &mut tokio::io::sink()).await;
        });
        let source = futures_util::stream::iter([
            Ok(bytes::Bytes::from_static(b"a tar")),
            Err(std::io::Error::from(std::io::ErrorKind::ConnectionReset)),
        ]);
        let opts = UploadToContainerOptionsBuilder::default().path("/").build();
        let upload = docker.upload_to_container("c", Some(opts), bollard::body_try_stream(source));
        let e = engine_error(upload.await.unwrap_err());
        assert!(
            matches!(&e, Error::Failed(m) if m.contains("connection reset")),
            "{e:?}"
        );
        reader.await.unwrap();

        std::fs::remove_dir_all(dir).unwrap();
    }
}

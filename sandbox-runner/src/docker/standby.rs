//! Containers started ahead: one per recently used sandbox, its launcher waiting for the next
//! run's command, so that a run need not wait 70–80 ms for the engine to create and start one;
//! and the launcher's placement in a volume of its own, which they all mount.

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bollard::query_parameters::{AttachContainerOptionsBuilder, CreateContainerOptionsBuilder};
use futures_util::StreamExt;

use super::DockerBackend;
use super::volumes::{INIT_IMAGE, tar_of, volume_mount};
use crate::hardening;
use crate::{
    Error, LABEL_INSTANCE, LABEL_MANAGED, LABEL_ROLE, Managed, Result, RunSpec, SandboxBackend,
    SandboxSpec,
};

/// How long a run has to end before the container for its sandbox's next run is started.
const REFILL_AFTER: Duration = Duration::from_millis(100);

/// The launcher (`launch/main.rs`), built static by `build.rs`.
const LAUNCHER: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/vre-launch"));

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
pub(super) struct Standbys {
    slots: HashMap<String, Slot>,
    /// Sandboxes being removed: nothing more is started for them.
    retired: HashSet<String>,
    /// The names of the containers started ahead that no run has claimed and that are not
    /// known to be removed. A start the engine carried out but whose answer was lost (the
    /// engine restarting, a call timing out) leaves a container that no slot holds; shutting
    /// down removes these by name, so none is left behind.
    pub(super) unclaimed: HashSet<String>,
    closed: bool,
    /// The removals `discard` started: shutting down waits for them, so a container evicted
    /// just before is gone when the backend says it is done.
    discards: tokio::task::JoinSet<()>,
    /// Counts the slots made: their order of use, and unique names.
    tick: u64,
    /// Random, per backend: names unlike those of an earlier process's containers.
    nonce: u32,
}

impl Standbys {
    pub(super) fn new() -> Standbys {
        Standbys {
            nonce: {
                use std::hash::{BuildHasher, Hasher};
                std::collections::hash_map::RandomState::new()
                    .build_hasher()
                    .finish() as u32
            },
            ..Default::default()
        }
    }
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
pub(super) struct Ready {
    pub(super) id: String,
    input: Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
    output: crate::output::Frames,
}

impl DockerBackend {
    fn standbys(&self) -> std::sync::MutexGuard<'_, Standbys> {
        crate::lock(&self.standbys)
    }

    /// Whether runs can go through the launcher here: the engine runs Linux on this
    /// architecture and holds the launcher's volume (placed on first use). An engine that
    /// cannot is asked no more; one that failed to answer is asked again next run.
    pub(super) async fn launcher_ready(&self) -> bool {
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
        let mounts = vec![volume_mount(volume, "/launch")];
        let name = format!("vre-launch-{}", self.instance);
        let helper = self.helper_with(INIT_IMAGE, labels, &name, mounts).await?;
        let tar = tar_of(&[("vre-launch", 0, 0o555, Some(LAUNCHER))]);
        let body = futures_util::stream::once(async move { Ok(bytes::Bytes::from(tar)) }).boxed();
        self.upload_then_remove(&helper, "/launch", body)
            .await
            .map(|()| true)
    }

    /// Creates, attaches to and starts a launcher container of the sandbox, named `name`.
    pub(super) async fn launch_container(
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
    pub(super) async fn hand_over(&self, ready: Ready, run: &RunSpec) -> Result<String> {
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
    pub(super) async fn claim(&self, sb: &SandboxSpec, key: &str) -> Option<Ready> {
        let cell = {
            let mut s = self.standbys();
            match s.slots.get(&sb.id) {
                Some(slot) if slot.key == key => {}
                _ => return None,
            }
            let slot = s.slots.remove(&sb.id)?;
            slot.hurry.notify_one();
            (slot.name, slot.cell)
        };
        let (name, cell) = cell;
        let ready = match tokio::time::timeout(self.call_timeout, cell.clone().lock_owned()).await {
            // A start that failed keeps its name among the unclaimed: the engine may have made
            // the container all the same.
            Ok(mut g) => g.take()?,
            Err(_) => {
                self.discard(name, cell);
                return None;
            }
        };
        self.standbys().unclaimed.remove(&name);
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
    pub(super) fn refill(&self, sb: &SandboxSpec, after: Option<&str>) {
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
            s.unclaimed.insert(name.clone());
            let slot = Slot {
                key,
                name: name.clone(),
                cell,
                hurry: hurry.clone(),
                used: tick,
            };
            let mut evicted: Vec<_> = s.slots.insert(sb.id.clone(), slot).into_iter().collect();
            while s.slots.len() > self.conn.standby {
                let lru = s
                    .slots
                    .iter()
                    .min_by_key(|(_, v)| v.used)
                    .map(|(k, _)| k.clone())
                    .expect("more slots than allowed, so not empty");
                evicted.extend(s.slots.remove(&lru));
            }
            (name, evicted)
        };
        for slot in evicted {
            self.discard(slot.name, slot.cell);
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
                    tracing::debug!(sandbox = %sb.id, error = %e, "starting a container ahead failed; the next run starts its own");
                    // The engine may have made it and lost the answer (it restarted, say).
                    if backend.remove_container(&name).await.is_ok() {
                        backend.standbys().unclaimed.remove(&name);
                    }
                }
            }
        });
    }

    /// Removes what a slot taken out of the map holds, once its task is done.
    fn discard(&self, name: String, cell: Arc<tokio::sync::Mutex<Option<Ready>>>) {
        let backend = self.sibling();
        let mut s = self.standbys();
        // Finished removals are let go of here, so the set holds only those under way.
        while s.discards.try_join_next().is_some() {}
        s.discards.spawn(async move {
            let ready = cell.lock().await.take();
            if let Some(r) = ready {
                if backend.remove_container(&r.id).await.is_ok() {
                    backend.standbys().unclaimed.remove(&name);
                }
            }
        });
    }

    /// Starts nothing more for a sandbox being removed, and removes its container started
    /// ahead.
    pub(super) async fn retire(&self, sandbox: &str) -> Result<()> {
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
            self.standbys().unclaimed.remove(&slot.name);
        }
        Ok(())
    }

    /// Whether the container is one started ahead for a sandbox's next run.
    pub(super) fn holds_ahead(&self, container: &Managed) -> bool {
        let s = self.standbys();
        s.slots
            .values()
            .any(|slot| container.names.contains(&slot.name))
    }

    /// Starts no more containers ahead and removes those started.
    pub(super) async fn close_standbys(&self) {
        let (slots, mut discards) = {
            let mut s = self.standbys();
            s.closed = true;
            let slots: Vec<Slot> = s.slots.drain().map(|(_, v)| v).collect();
            (slots, std::mem::take(&mut s.discards))
        };
        while discards.join_next().await.is_some() {}
        for slot in slots {
            let ready = slot.cell.lock().await.take();
            if let Some(r) = ready {
                let _ = self.remove_container(&r.id).await;
            }
        }
        // Whatever was started ahead and never claimed, whether or not a slot still knew it
        // (removing one already gone is not an error).
        let unclaimed = std::mem::take(&mut self.standbys().unclaimed);
        for name in unclaimed {
            if let Err(e) = self.remove_container(&name).await {
                tracing::warn!(container = %name, error = %e, "a container started ahead could not be removed at shutdown");
            }
        }
    }
}

//! Files and folders of a sandbox's output folder as one tar stream (for egress), read through
//! a helper container of the request's own that mounts the folder read-only.
//!
//! The helper is made of the init image ([`INIT_IMAGE`]: nothing but empty mount points), so
//! that nothing the archive API could reach through a link is of the sandbox's image; it is
//! never started, and it is removed however the stream ends: at its end, at an error, or
//! dropped half-read ([`HelperGuard`]). Each path's archive comes from the engine named after
//! the path's last component; [`Rebase`] names its entries relative to the output folder as
//! they pass, and the archives follow one another with one end-of-archive marker.
//!
//! The engine resolves the folders above the path it is asked for, following links (inside
//! the helper's root): each of them is looked at first, without following it, and a link or a
//! file there is refused, so a link in the output folder is only ever an entry of the stream.
//! A run writing at the same time could still swap a folder for a link between the look and
//! the read; all such a link could lead to is another place of the output folder (read-only)
//! or the init image's empty mount points: nothing from outside the folder.

use std::collections::VecDeque;
use std::io::ErrorKind;
use std::sync::Arc;

use bollard::Docker;
use bollard::query_parameters::{
    ContainerArchiveInfoOptionsBuilder, DownloadFromContainerOptionsBuilder,
};
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;

use super::DockerBackend;
use super::volumes::INIT_IMAGE;
use crate::hardening;
use crate::rebase::{END, Rebase};
use crate::{ByteStream, Error, SandboxBackend, SandboxSpec};

/// Where the output folder is in the helper.
const OUTPUT: &str = "/vre/output";

/// Go's `os.FileMode` bits, as the engine reports a path's mode.
const MODE_DIR: u32 = 1 << 31;
const MODE_SYMLINK: u32 = 1 << 27;

/// The helper container's name for a request: unique per request, so downloads of one sandbox
/// at once do not meet.
fn egress_helper_name(sandbox: &str, request: &str) -> String {
    format!("vre-egress-{sandbox}-{request}")
}

fn io(kind: ErrorKind, e: Error) -> std::io::Error {
    std::io::Error::new(kind, e)
}

fn io_of(e: Error) -> std::io::Error {
    let kind = match &e {
        Error::NotFound(_) => ErrorKind::NotFound,
        Error::InvalidPath(_) => ErrorKind::InvalidInput,
        Error::Timeout(_) => ErrorKind::TimedOut,
        Error::Io(e) => e.kind(),
        _ => ErrorKind::Other,
    };
    io(kind, e)
}

/// Where the helper is.
enum Helper {
    /// Not asked for yet (the stream was not polled).
    NotMade,
    /// Being made, in a task of its own, so that a stream dropped meanwhile still leaves
    /// something to wait for before the removal (the engine may finish making it after the
    /// request is gone).
    Making(tokio::task::JoinHandle<crate::Result<String>>),
    /// Made, or its making failed (removing what may be there is harmless).
    Made,
    /// Removed.
    Gone,
}

/// The helper container of one request, removed when dropped before it was removed: on the
/// current runtime, after its making has ended when it is still under way.
struct HelperGuard {
    backend: Arc<DockerBackend>,
    sandbox: SandboxSpec,
    name: String,
    helper: Helper,
}

impl HelperGuard {
    /// The helper, made on first use.
    async fn created(&mut self) -> crate::Result<String> {
        if let Helper::NotMade = self.helper {
            let backend = self.backend.clone();
            let sb = self.sandbox.clone();
            let name = self.name.clone();
            self.helper = Helper::Making(tokio::spawn(async move {
                backend.ensure_init_image().await?;
                let mounts = vec![hardening::volume(
                    hardening::output_volume(&sb.id),
                    OUTPUT.into(),
                    true,
                )];
                let labels = hardening::labels(&backend.instance, &sb.id, &sb.project, "egress");
                backend.helper_with(INIT_IMAGE, labels, &name, mounts).await
            }));
        }
        match &mut self.helper {
            Helper::Making(task) => {
                let made = task
                    .await
                    .map_err(|e| Error::Failed(format!("making the egress helper failed: {e}")));
                self.helper = Helper::Made;
                made?
            }
            Helper::Made => Ok(self.name.clone()),
            Helper::NotMade | Helper::Gone => {
                Err(Error::Failed("the egress helper is gone".into()))
            }
        }
    }

    /// Removes the helper now (once its making has ended).
    async fn remove(&mut self) {
        match std::mem::replace(&mut self.helper, Helper::Gone) {
            Helper::NotMade | Helper::Gone => return,
            Helper::Making(task) => {
                let _ = task.await;
            }
            Helper::Made => {}
        }
        if let Err(e) = self.backend.remove_container(&self.name).await {
            tracing::warn!(helper = %self.name, error = %e, "the egress helper could not be removed; recovery removes it");
        }
    }
}

impl Drop for HelperGuard {
    fn drop(&mut self) {
        let making = match std::mem::replace(&mut self.helper, Helper::Gone) {
            Helper::NotMade | Helper::Gone => return,
            Helper::Making(task) => Some(task),
            Helper::Made => None,
        };
        let backend = self.backend.clone();
        let name = std::mem::take(&mut self.name);
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    if let Some(task) = making {
                        let _ = task.await;
                    }
                    if let Err(e) = backend.remove_container(&name).await {
                        tracing::warn!(helper = %name, error = %e, "the egress helper could not be removed; recovery removes it");
                    }
                });
            }
            Err(_) => {
                tracing::warn!(helper = %name, "no runtime to remove the egress helper on; recovery removes it")
            }
        }
    }
}

/// One path's archive, as the engine sends it.
type Archive = BoxStream<'static, Result<Bytes, bollard::errors::Error>>;

/// One download under way.
struct Download {
    docker: Docker,
    guard: HelperGuard,
    /// The paths still to read.
    paths: VecDeque<String>,
    /// The path being read, its archive from the engine and its renamer.
    current: Option<(String, Archive, Rebase)>,
    /// What is ready to go out.
    out: VecDeque<Bytes>,
    /// The end-of-archive marker or an error went out: nothing more follows.
    done: bool,
}

impl Download {
    /// The next piece of the stream.
    async fn next(&mut self) -> Option<std::io::Result<Bytes>> {
        loop {
            if let Some(b) = self.out.pop_front() {
                return Some(Ok(b));
            }
            if self.done {
                return None;
            }
            match self.step().await {
                Ok(()) => {}
                Err(e) => {
                    self.done = true;
                    self.current = None;
                    self.guard.remove().await;
                    return Some(Err(e));
                }
            }
        }
    }

    async fn step(&mut self) -> std::io::Result<()> {
        if let Some((path, body, rebase)) = &mut self.current {
            match body.next().await {
                Some(Ok(chunk)) => {
                    let mut out = Vec::new();
                    rebase.feed(chunk, &mut out).map_err(|e| {
                        std::io::Error::new(e.kind(), format!("reading `{path}`: {e}"))
                    })?;
                    self.out.extend(out);
                }
                Some(Err(e)) => {
                    return Err(match super::engine_error(e) {
                        Error::NotFound(_) => io(
                            ErrorKind::NotFound,
                            Error::NotFound(format!("the output folder has no `{path}`")),
                        ),
                        other => io_of(other),
                    });
                }
                None => {
                    rebase.finish().map_err(|e| {
                        std::io::Error::new(e.kind(), format!("reading `{path}`: {e}"))
                    })?;
                    self.current = None;
                }
            }
            return Ok(());
        }
        let helper = self.guard.created().await.map_err(io_of)?;
        let Some(path) = self.paths.pop_front() else {
            // Everything is read: the helper goes before the archive's end does.
            self.guard.remove().await;
            self.out.push_back(Bytes::from_static(&END));
            self.done = true;
            return Ok(());
        };
        check_folders_above(&self.guard.backend, &self.docker, &helper, &path).await?;
        let body = self
            .docker
            .download_from_container(
                &helper,
                Some(
                    DownloadFromContainerOptionsBuilder::default()
                        .path(&format!("{OUTPUT}/{path}"))
                        .build(),
                ),
            )
            .boxed();
        let rebase = Rebase::new(&path);
        self.current = Some((path, body, rebase));
        Ok(())
    }
}

/// Every folder above `path` in the output folder is a folder, not a link to one nor a file:
/// the engine would follow a link there.
async fn check_folders_above(
    backend: &DockerBackend,
    docker: &Docker,
    helper: &str,
    path: &str,
) -> std::io::Result<()> {
    let mut above = String::new();
    let parts: Vec<&str> = path.split('/').collect();
    for part in &parts[..parts.len() - 1] {
        if !above.is_empty() {
            above.push('/');
        }
        above.push_str(part);
        let options = ContainerArchiveInfoOptionsBuilder::default()
            .path(&format!("{OUTPUT}/{above}"))
            .build();
        let stat = backend
            .call(docker.get_container_archive_info(helper, Some(options)))
            .await;
        let what = match stat {
            Ok(s) if s.file_mode & MODE_SYMLINK != 0 => "a symbolic link",
            Ok(s) if s.file_mode & MODE_DIR != 0 => continue,
            Ok(_) => "not a folder",
            Err(Error::NotFound(_)) => {
                return Err(io(
                    ErrorKind::NotFound,
                    Error::NotFound(format!("the output folder has no `{path}`")),
                ));
            }
            Err(e) => return Err(io_of(e)),
        };
        return Err(io(
            ErrorKind::InvalidInput,
            Error::InvalidPath(format!(
                "`{above}` (above `{path}`) is {what}: egress reads no path through a link or a file"
            )),
        ));
    }
    Ok(())
}

impl DockerBackend {
    /// The output folder's `paths` as one tar stream, through a helper of `request`'s own.
    pub(super) fn download(&self, sb: &SandboxSpec, request: &str, paths: &[String]) -> ByteStream {
        let fail = |e: Error| futures_util::stream::once(async move { Err(io_of(e)) }).boxed();
        let paths = match crate::output_paths(paths) {
            Ok(p) => p,
            Err(e) => return fail(e),
        };
        if request.is_empty()
            || !request
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        {
            return fail(Error::InvalidPath(format!(
                "`{}` cannot name an egress request's helper (letters, digits, `-`, `_` and `.` only)",
                request.escape_debug()
            )));
        }
        let docker = match self.bulk() {
            Ok(d) => d,
            Err(e) => return fail(e),
        };
        let download = Download {
            docker,
            guard: HelperGuard {
                backend: Arc::new(self.sibling()),
                sandbox: sb.clone(),
                name: egress_helper_name(&sb.id, request),
                helper: Helper::NotMade,
            },
            paths: paths.into(),
            current: None,
            out: VecDeque::new(),
            done: false,
        };
        futures_util::stream::unfold(download, |mut d| async move {
            let item = d.next().await?;
            Some((item, d))
        })
        .boxed()
    }
}

//! The only crate of VRE Gateway that speaks Docker.
//!
//! [`SandboxBackend`] is what the gateway needs from a container engine: volumes that make up a
//! sandbox, staging an archive into one of them, runs in fresh hardened containers, their logs
//! and outcomes, and listing what it manages (for recovery after a restart). Every step is
//! idempotent, every engine call has a deadline, and a failed run is an [`Outcome`], not an
//! error. [`docker::DockerBackend`] implements it over bollard; [`hardening`] builds the
//! container profile every run gets, as a pure function that tests inspect field by field.
//!
//! Architecture invariant: no other crate of the workspace depends on bollard.

pub mod docker;
mod exits;
pub mod hardening;
#[path = "../launch/payload.rs"]
mod launch;
mod output;
mod output_path;
mod rebase;
mod tls;
#[path = "../launch/usage.rs"]
mod usage;

pub use output_path::{output_path, output_paths};
pub use usage::Usage;

use std::collections::HashMap;
use std::time::Duration;

use futures_util::stream::BoxStream;

/// A mutex's guard, poisoned or not: no holder panics with the data half-changed.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Bytes on their way into or out of a container.
pub type ByteStream = BoxStream<'static, std::result::Result<bytes::Bytes, std::io::Error>>;

/// Labels every object the gateway creates carries.
pub const LABEL_MANAGED: &str = "vre.managed";
pub const LABEL_INSTANCE: &str = "vre.instance";
pub const LABEL_SANDBOX: &str = "vre.sandbox";
pub const LABEL_PROJECT: &str = "vre.project";
pub const LABEL_RUN: &str = "vre.run";
pub const LABEL_ROLE: &str = "vre.role";

/// The user every run runs as.
pub const SANDBOX_UID: u32 = 65534;

/// How much a run may use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resources {
    /// CPUs in billionths (1 CPU = 1_000_000_000).
    pub nano_cpus: i64,
    pub memory_bytes: i64,
    pub pids: i64,
    pub tmpfs_bytes: i64,
    /// Bytes the output folder may hold; a run that goes past is stopped.
    pub output_quota_bytes: u64,
    /// Bytes the work area may hold; a run that goes past is stopped.
    pub work_quota_bytes: u64,
    /// Bytes of stdout and stderr kept per run; a run that writes more is stopped.
    pub log_max_bytes: u64,
}

/// A dataset mounted read-only at `/vre/data/<id>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatasetMount {
    pub id: String,
    pub host_path: String,
}

/// What a sandbox is made of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SandboxSpec {
    pub id: String,
    pub project: String,
    /// The image, pinned by its ID (`sha256:…`).
    pub image_id: String,
    pub resources: Resources,
    /// Ingress application ids staged into the sandbox, each its own read-only volume.
    pub ingress: Vec<String>,
    pub datasets: Vec<DatasetMount>,
    /// An alternative OCI runtime, e.g. `runsc`.
    pub runtime: Option<String>,
}

/// One run: a command in a fresh container of a sandbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunSpec {
    pub id: String,
    pub sandbox: SandboxSpec,
    pub cmd: Vec<String>,
    pub env: Vec<(String, String)>,
}

/// A run's container, started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Started {
    pub container: String,
    /// It was started ahead, before the run was asked for, and took the run's command then.
    pub ahead: bool,
}

/// How a run ended. Failures of the analyst's program are outcomes like any other.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The program exited by itself.
    Exited { code: i64 },
    /// The kernel killed it for using more memory than allowed.
    OomKilled,
    /// It ran past its deadline and was killed.
    TimedOut,
    /// Its output folder grew past the quota and it was stopped.
    OutputQuotaExceeded,
    /// Its work area grew past the quota and it was stopped.
    WorkQuotaExceeded,
    /// It wrote more logs than allowed and was stopped.
    LogLimitExceeded,
    /// Someone allowed to asked for it to stop (before or after it started).
    Cancelled,
    /// Its container disappeared (removed behind the gateway's back, or the engine lost it).
    Vanished,
    /// The engine could not run it.
    Failed { reason: String },
}

impl Outcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Exited { .. } => "exited",
            Outcome::OomKilled => "oom_killed",
            Outcome::TimedOut => "timed_out",
            Outcome::OutputQuotaExceeded => "output_quota_exceeded",
            Outcome::WorkQuotaExceeded => "work_quota_exceeded",
            Outcome::LogLimitExceeded => "log_limit_exceeded",
            Outcome::Cancelled => "cancelled",
            Outcome::Vanished => "vanished",
            Outcome::Failed { .. } => "failed",
        }
    }

    /// The exit code a client reports: the program's own, or 125+ for the gateway's reasons
    /// (137 as a shell reports a SIGKILL).
    pub fn exit_code(&self) -> i64 {
        match self {
            Outcome::Exited { code } => *code,
            Outcome::OomKilled
            | Outcome::TimedOut
            | Outcome::OutputQuotaExceeded
            | Outcome::WorkQuotaExceeded
            | Outcome::LogLimitExceeded
            | Outcome::Cancelled => 137,
            Outcome::Vanished | Outcome::Failed { .. } => 125,
        }
    }
}

/// A sandbox's writable volumes, each with its quota.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Volume {
    /// `/vre/work`, the run's working directory.
    Work,
    /// `/vre/output`, what may leave through egress.
    Output,
}

impl Volume {
    pub const ALL: [Volume; 2] = [Volume::Work, Volume::Output];

    /// The volume's name on the engine.
    pub fn name(self, sandbox: &str) -> String {
        match self {
            Volume::Work => hardening::work_volume(sandbox),
            Volume::Output => hardening::output_volume(sandbox),
        }
    }

    /// How it is called in messages: "work area", "output folder".
    pub fn label(self) -> &'static str {
        match self {
            Volume::Work => "work area",
            Volume::Output => "output folder",
        }
    }
}

/// A run's container as the engine sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunState {
    Created,
    Running,
    Exited { code: i64, oom_killed: bool },
    Missing,
}

/// An object the backend manages, found by its labels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Managed {
    /// Its ID (containers) or name (volumes).
    pub name: String,
    /// A container's names, without the leading `/`.
    pub names: Vec<String>,
    pub labels: HashMap<String, String>,
    /// When the engine created it (RFC 3339), when it says.
    pub created: Option<String>,
}

/// What the engine is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineInfo {
    pub version: String,
    pub api_version: String,
    pub runtimes: Vec<String>,
}

/// An image as the engine knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageInfo {
    pub id: String,
    pub tags: Vec<String>,
    pub size: i64,
    pub user: String,
}

/// Why the engine could not do what was asked.
/// Their messages can hold paths of the gateway's host (its engine's socket): clients get them
/// through [`without_paths`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the container engine is unavailable: {0}")]
    Unavailable(String),
    #[error("the container engine did not answer within {0:?}")]
    Timeout(Duration),
    #[error("not found: {0}")]
    NotFound(String),
    /// The engine answered with an error status (404 is [`Error::NotFound`]).
    #[error("the container engine refused: {status}: {message}")]
    Engine { status: u16, message: String },
    /// Talking to the engine failed otherwise: an answer that could not be read, an error the
    /// engine reported in the middle of a stream, a client that could not be made.
    #[error("the container engine failed: {0}")]
    Failed(String),
    /// The engine lacks what the gateway's configuration asks of it (a runtime).
    #[error("the container engine is not set up as configured: {0}")]
    Misconfigured(String),
    /// A path asked of a sandbox's output folder that is not one ([`output_path`]), or that
    /// leads through a link or a file.
    #[error("{0}")]
    InvalidPath(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    /// The engine's HTTP status, when it answered with one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Engine { status, .. } => Some(*status),
            Error::NotFound(_) => Some(404),
            _ => None,
        }
    }

    /// 409: the engine's state is in the way (a name already taken, a container not running or
    /// being removed, a volume in use).
    pub fn is_conflict(&self) -> bool {
        self.status() == Some(409)
    }

    /// 304: the object is already as asked (a container already started).
    pub fn is_not_modified(&self) -> bool {
        self.status() == Some(304)
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// `message` without the file system paths in it (an engine's socket, its data root, a
/// certificate's file), each replaced by `…`: for messages that reach clients, who need not
/// learn how the gateway reaches its engine. A path is a `/` at the start of the message or
/// after anything but a letter or digit, up to the next blank, quote, comma, colon, semicolon or
/// closing bracket.
pub fn without_paths(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut in_path = false;
    let mut prev: Option<char> = None;
    for c in message.chars() {
        if in_path {
            if c.is_whitespace() || "\"'`,:;)]}".contains(c) {
                in_path = false;
                out.push(c);
            }
        } else if c == '/' && !prev.is_some_and(|p| p.is_alphanumeric() || p == '/') {
            in_path = true;
            out.push('…');
        } else {
            out.push(c);
        }
        prev = Some(c);
    }
    out
}

/// What the gateway needs from a container engine. Every method is idempotent: calling it
/// again after a crash, a timeout or a success leaves the same state.
#[async_trait::async_trait]
pub trait SandboxBackend: Send + Sync + 'static {
    async fn info(&self) -> Result<EngineInfo>;
    /// An image by name or ID, when the engine has it.
    async fn image(&self, name: &str) -> Result<Option<ImageInfo>>;
    /// Creates the sandbox's volumes (work area, output folder).
    async fn prepare(&self, sandbox: &SandboxSpec) -> Result<()>;
    /// Streams a tar archive into the sandbox's volume for one ingress application.
    async fn stage(&self, sandbox: &SandboxSpec, ingress: &str, tar: ByteStream) -> Result<()>;
    /// Removes what `stage` put in the sandbox for one ingress application (after a failed or
    /// refused staging).
    async fn unstage(&self, sandbox: &str, ingress: &str) -> Result<()>;
    /// Starts the run in a fresh container: one started ahead for its sandbox, or one made
    /// for it.
    async fn start(&self, run: &RunSpec) -> Result<Started>;
    /// Waits for the run to end, at most `deadline`; `None` when the deadline passed first.
    async fn wait(&self, container: &str, deadline: Duration) -> Result<Option<RunState>>;
    async fn kill(&self, container: &str) -> Result<()>;
    async fn state(&self, container: &str) -> Result<RunState>;
    /// The gateway instance that made a container (its `vre.instance` label); `None` when
    /// there is no such container. Gateways sharing an engine ask before starting a run whose
    /// container may have been made by another.
    async fn maker(&self, container: &str) -> Result<Option<String>>;
    /// stdout and stderr, interleaved, following until the container ends.
    fn logs(&self, container: &str) -> BoxStream<'static, Result<Vec<u8>>>;
    /// What one of the sandbox's writable volumes holds ([`Usage::Unmeasurable`] when the run
    /// made something in it that cannot be measured). An error says it could not be looked
    /// at, which is no fault of the run.
    async fn usage(&self, sandbox: &SandboxSpec, volume: Volume) -> Result<Usage>;
    /// The named files and folders of the sandbox's output folder as ONE tar stream whose
    /// entries are named relative to /vre/output (e.g. `tables/counts.csv`, folders as
    /// `tables/`), read through a helper container of its own (named for `request`) that
    /// mounts the output volume read-only; the helper is removed on every path: the end of the
    /// stream, an error, and a stream dropped half-read.
    ///
    /// `paths` are checked first ([`output_paths`]: one that is not a path of the folder is an
    /// error, the stream's first item, and no container is made); duplicates and paths inside
    /// another one asked for are read once. Entries of every type are in the stream as they
    /// are (links, fifos, devices: never followed), for the caller to judge. A path that does
    /// not exist, or one below a link or a file, is an error item naming it; the items' errors
    /// carry an [`Error`] (`std::io::Error::get_ref`). `request` names the request (letters,
    /// digits, `-`, `_`, `.`): downloads of one sandbox at once need names of their own.
    fn download_output(&self, sandbox: &SandboxSpec, request: &str, paths: &[String])
    -> ByteStream;
    async fn remove_container(&self, container: &str) -> Result<()>;
    /// Removes the sandbox's volumes (its containers must be gone).
    async fn remove_sandbox(&self, sandbox: &str) -> Result<()>;
    /// Everything this gateway instance created that still exists.
    async fn list_containers(&self) -> Result<Vec<Managed>>;
    async fn list_volumes(&self) -> Result<Vec<Managed>>;
    /// Whether a container is one the backend keeps started ahead for a sandbox's next run
    /// (recovery leaves it alone).
    fn holds(&self, _container: &Managed) -> bool {
        false
    }
    /// Has a container started ahead for the sandbox's next run, when the backend keeps any:
    /// after the sandbox is made or changed (a staging), so that its next run need not wait
    /// for one.
    async fn ready_next(&self, _sandbox: &SandboxSpec) {}
    /// Stops starting containers ahead and removes those it holds (before a graceful stop).
    async fn shutdown(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_for_clients_name_no_paths() {
        for (message, shown) in [
            (
                "error trying to connect: /var/run/docker.sock: No such file or directory",
                "error trying to connect: …: No such file or directory",
            ),
            (
                "Socket not found: unix:///nonexistent/docker.sock",
                "Socket not found: unix:…",
            ),
            ("mount \"/srv/x y\" (denied)", "mount \"… y\" (denied)"),
            ("HTTP/1.1 and 1/2 stay", "HTTP/1.1 and 1/2 stay"),
            ("/at/the/start", "…"),
            (
                "invalid peer certificate: UnknownIssuer",
                "invalid peer certificate: UnknownIssuer",
            ),
        ] {
            assert_eq!(without_paths(message), shown, "{message}");
        }
    }
}

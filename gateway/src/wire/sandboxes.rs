//! Images, sandboxes and runs.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::wire_enum;

wire_enum! {
    /// A sandbox is ready until it is removed (removed ones are not shown again); it is being
    /// removed in between.
    SandboxState: "sandbox state" {
        Ready = "ready",
        Removing = "removing",
        Removed = "removed",
    }
}

wire_enum! {
    /// Whether a sandbox's run output is shown to its analysts, or only its size and digest
    /// (hidden output leaves only through an egress request).
    LogVisibility: "log visibility" {
        Visible = "visible",
        Hidden = "hidden",
    }
}

wire_enum! {
    /// Where a run is: waiting for a slot, running, or ended with an outcome.
    RunState: "run state" {
        Queued = "queued",
        Running = "running",
        Finished = "finished",
    }
}

wire_enum! {
    /// How a run ended.
    RunOutcome: "run outcome" {
        /// The program exited by itself, with its exit code.
        Exited = "exited",
        OomKilled = "oom_killed",
        TimedOut = "timed_out",
        OutputQuotaExceeded = "output_quota_exceeded",
        WorkQuotaExceeded = "work_quota_exceeded",
        LogLimitExceeded = "log_limit_exceeded",
        Cancelled = "cancelled",
        Vanished = "vanished",
        Failed = "failed",
    }
}

#[derive(Serialize, Deserialize, ToSchema, Debug)]
pub struct Image {
    pub name: String,
    /// The image ID every sandbox of this name is pinned to.
    pub image_id: String,
    pub size: i64,
    pub allowed_by: String,
    pub allowed_at: String,
    /// Commands runs may start under a project's `approved` policy (bare names).
    pub commands: Vec<String>,
    /// Interpreters runs may start with a script of a staged ingress (bare names).
    pub interpreters: Vec<String>,
}

#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AllowImage {
    /// An image the engine has (`name:tag` or an ID); it is pinned by the ID it has now. At
    /// most 255 characters, no whitespace.
    #[schema(
        min_length = 1,
        max_length = 255,
        pattern = r"^[^\s\x00-\x1f\x7f-\x9f]+$"
    )]
    pub name: String,
    /// Commands runs may start under a project's `approved` policy: bare program names (no
    /// `/`, no whitespace), at most 64 characters each, at most 64 of them. Allowing an image
    /// again replaces the list.
    #[serde(default)]
    #[schema(max_items = 64)]
    pub commands: Vec<String>,
    /// Interpreters runs may start with a script of a staged ingress (`sh`, `python3`), named
    /// as commands are. Allowing an image again replaces the list.
    #[serde(default)]
    #[schema(max_items = 64)]
    pub interpreters: Vec<String>,
}

#[derive(Serialize, Deserialize, ToSchema, Debug)]
pub struct Staged {
    pub application: String,
    /// SHA-256 of the tar as staged (owned by root, read-only).
    pub staged_sha256: String,
    pub staged_at: String,
}

#[derive(Serialize, Deserialize, ToSchema, Debug)]
pub struct Sandbox {
    pub id: String,
    pub project: String,
    pub image: String,
    pub image_id: String,
    pub resource_class: String,
    pub state: SandboxState,
    pub created_by: String,
    pub created_at: String,
    pub ingress: Vec<Staged>,
    pub datasets: Vec<String>,
    /// Whether its runs' output is shown to its analysts.
    pub logs: LogVisibility,
}

#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSandbox {
    pub project: String,
    /// An allowed image's name.
    pub image: String,
    /// A resource class from the configuration (default: the configured default).
    #[serde(default)]
    pub class: Option<String>,
    /// Approved ingress applications of the project to stage.
    #[serde(default)]
    pub ingress: Vec<String>,
    /// Registered datasets to mount read-only, by id: each needs the project's approved access,
    /// in force (403 `no_access` or `access_expired` otherwise; 404 for one not registered;
    /// 409 `dataset_unavailable` for one that is not listed, saying why).
    #[serde(default)]
    pub datasets: Vec<String>,
    /// Whether runs' output is shown to the project's analysts (default: the configured one).
    #[serde(default)]
    pub logs: Option<LogVisibility>,
}

#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StageRequest {
    pub application: String,
}

#[derive(Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SandboxQuery {
    pub project: Option<String>,
}

#[derive(Serialize, Deserialize, ToSchema, Debug)]
pub struct Run {
    pub id: String,
    pub sandbox: String,
    pub project: String,
    pub requester: String,
    pub cmd: Vec<String>,
    pub timeout_secs: i64,
    pub state: RunState,
    /// Set once the run has finished.
    pub outcome: Option<RunOutcome>,
    pub exit_code: Option<i64>,
    pub detail: Option<String>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub log_bytes: Option<i64>,
    pub log_sha256: Option<String>,
    pub log_truncated: Option<bool>,
    /// Who asked for the run to be cancelled.
    pub cancelled_by: Option<String>,
}

#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRun {
    /// The command and its arguments, run without a shell: at most 1024 arguments and 128 KiB
    /// in all, no NUL bytes; the first is not empty.
    #[schema(min_items = 1, max_items = 1024)]
    pub cmd: Vec<String>,
    /// Seconds before the run is killed (default and maximum: the class's `max_run_secs`).
    #[serde(default, deserialize_with = "super::whole_number")]
    #[schema(minimum = 1, maximum = 31_536_000)]
    pub timeout_secs: Option<u64>,
}

#[derive(Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunQuery {
    /// Seconds to wait for the run to end before answering (at most 60): the answer comes as
    /// soon as the end is recorded, with the run as it is then.
    #[serde(default)]
    #[param(minimum = 0, maximum = 60)]
    pub wait: Option<u64>,
}

#[derive(Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogQuery {
    /// Keep the response open and send output as it comes, until the run ends.
    #[serde(default)]
    pub follow: bool,
}

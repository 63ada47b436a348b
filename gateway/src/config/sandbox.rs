//! `[sandbox]`: the container engine and how it is reached, resource classes, how many runs go
//! at once, and the defaults new sandboxes and projects get.

use std::path::PathBuf;

use anyhow::bail;
use serde::{Deserialize, Serialize};

/// Sandboxes: the engine, resource classes and how many runs go at once.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxSettings {
    /// `unix:///var/run/docker.sock` (the default when empty), or `tcp://host:2376` with TLS.
    pub docker_host: String,
    /// Client key, certificate and CA files for a remote engine over TLS.
    pub docker_tls_key: Option<PathBuf>,
    pub docker_tls_cert: Option<PathBuf>,
    pub docker_tls_ca: Option<PathBuf>,
    /// Deadline of each engine call, in seconds.
    pub call_timeout_secs: u64,
    /// An alternative OCI runtime for runs, e.g. `runsc` (gVisor).
    pub runtime: Option<String>,
    /// Runs at once, over all projects; more wait in the queue.
    pub max_concurrent_runs: usize,
    /// Runs at once in one project.
    pub max_concurrent_runs_per_project: usize,
    /// Runs of one project waiting for a slot; more are refused (429 `queue_full`).
    pub max_queued_runs_per_project: usize,
    /// How long a gateway's hold on the runs it supervises lasts unless renewed (it renews it
    /// every third of this), in seconds: when a gateway dies, another one on the same database
    /// takes its runs over this long after its last renewal. The gateways' clocks must agree
    /// to well within it.
    pub run_lease_secs: u64,
    /// Where runs' logs are written (default: `runs/` in the data dir). Gateways sharing a
    /// database must share this folder too (the same path on each, e.g. a network file
    /// system), so that each serves the logs of runs another supervises.
    pub logs_dir: Option<PathBuf>,
    /// How many sandboxes (the most recently used) keep a container started ahead for their
    /// next run, which then starts in a few milliseconds instead of the engine's 70–80; 0
    /// turns it off. Each costs the engine one idle container (a shim and two small
    /// processes, a few MiB).
    pub standby_containers: usize,
    /// Whether new sandboxes show their runs' output to their analysts (`visible`) or only its
    /// size and digest (`hidden`), when their creator does not say.
    pub logs: crate::wire::sandboxes::LogVisibility,
    /// The command policy of projects created without one: `approved` (only programs of staged,
    /// approved ingress and the commands the operator allowed for the image) or `any`.
    pub commands: crate::wire::projects::CommandPolicy,
    /// The class sandboxes get when none is named.
    pub default_class: String,
    pub classes: std::collections::BTreeMap<String, ResourceClass>,
    /// Where registered datasets' content lives until it is uploaded to the STORE: the
    /// directory on the engine's host, keyed by the dataset's id (`ds-…`). A sandbox mounts one
    /// (read-only) only when its project holds an approved access in force to that dataset.
    pub datasets: std::collections::BTreeMap<String, PathBuf>,
}

/// What a sandbox's runs may use. Sizes in bytes.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ResourceClass {
    pub cpus: f64,
    pub memory_bytes: i64,
    pub pids: i64,
    pub tmpfs_bytes: i64,
    /// The longest a run may take unless it asks for less, in seconds.
    pub max_run_secs: u64,
    pub output_quota_bytes: u64,
    /// What `/vre/work` may hold; a class that does not say gets 4 GiB.
    #[serde(default = "ResourceClass::default_work_quota")]
    pub work_quota_bytes: u64,
    pub log_max_bytes: u64,
}

impl ResourceClass {
    fn default_work_quota() -> u64 {
        4 << 30
    }
}

impl Default for SandboxSettings {
    fn default() -> Self {
        SandboxSettings {
            docker_host: String::new(),
            docker_tls_key: None,
            docker_tls_cert: None,
            docker_tls_ca: None,
            call_timeout_secs: 30,
            runtime: None,
            max_concurrent_runs: 8,
            max_concurrent_runs_per_project: 4,
            max_queued_runs_per_project: 32,
            run_lease_secs: 30,
            logs_dir: None,
            standby_containers: 8,
            logs: crate::wire::sandboxes::LogVisibility::Visible,
            commands: crate::wire::projects::CommandPolicy::Approved,
            default_class: "standard".into(),
            classes: std::collections::BTreeMap::from([
                (
                    "standard".to_owned(),
                    ResourceClass {
                        cpus: 1.0,
                        memory_bytes: 2 << 30,
                        pids: 256,
                        tmpfs_bytes: 256 << 20,
                        max_run_secs: 4 * 3600,
                        output_quota_bytes: 1 << 30,
                        work_quota_bytes: 4 << 30,
                        log_max_bytes: 8 << 20,
                    },
                ),
                (
                    "large".to_owned(),
                    ResourceClass {
                        cpus: 2.0,
                        memory_bytes: 8 << 30,
                        pids: 1024,
                        tmpfs_bytes: 1 << 30,
                        max_run_secs: 24 * 3600,
                        output_quota_bytes: 8 << 30,
                        work_quota_bytes: 32 << 30,
                        log_max_bytes: 32 << 20,
                    },
                ),
            ]),
            datasets: Default::default(),
        }
    }
}

impl SandboxSettings {
    /// The engine is reached on its local socket, or over TCP with mutual TLS only: a Docker
    /// engine's API is root on its host, so it is never spoken to in the clear, and TLS
    /// settings that would be ignored are refused rather than trusted.
    pub(super) fn check_engine(&self) -> anyhow::Result<()> {
        let tls = [
            &self.docker_tls_key,
            &self.docker_tls_cert,
            &self.docker_tls_ca,
        ];
        let set = tls.iter().filter(|p| p.is_some()).count();
        if set != 0 && set != 3 {
            bail!("sandbox.docker_tls_key, docker_tls_cert and docker_tls_ca must be set together");
        }
        let host = self.docker_host.as_str();
        if host.starts_with("http://") {
            bail!(
                "sandbox.docker_host {host} would speak to the engine in the clear: use tcp://host:port with TLS"
            );
        }
        let tcp = host.starts_with("tcp://") || host.starts_with("https://");
        if tcp && set == 0 {
            bail!(
                "sandbox.docker_host {host} is reached over TCP: set docker_tls_key, docker_tls_cert and docker_tls_ca (the engine is never spoken to without TLS)"
            );
        }
        if !tcp && set == 3 {
            bail!(
                "sandbox.docker_tls_* apply to a tcp:// engine only, and docker_host is {}",
                if host.is_empty() {
                    "the local socket"
                } else {
                    host
                }
            );
        }
        if !(host.is_empty() || host.starts_with("unix://") || tcp) {
            bail!(
                "sandbox.docker_host {host} is not supported: use unix:///path/to/docker.sock or tcp://host:port (with TLS)"
            );
        }
        Ok(())
    }
}

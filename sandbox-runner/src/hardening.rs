//! The container profile of every run, and the names of a sandbox's volumes.
//!
//! [`run_container`] is pure: the same spec gives the same request, and tests check every
//! hardening field on it and, through the engine, on the created container.

use std::collections::HashMap;

use bollard::models::{
    ContainerCreateBody, HostConfig, HostConfigLogConfig, Mount, MountType, MountVolumeOptions,
    ResourcesUlimits, RestartPolicy, RestartPolicyNameEnum,
};

use crate::{
    LABEL_INSTANCE, LABEL_MANAGED, LABEL_PROJECT, LABEL_ROLE, LABEL_RUN, LABEL_SANDBOX, RunSpec,
    SANDBOX_UID,
};

/// Inside every run: the same layout and environment.
pub const INGRESS_DIR: &str = "/vre/ingress";
pub const DATA_DIR: &str = "/vre/data";
pub const WORK_DIR: &str = "/vre/work";
pub const OUTPUT_DIR: &str = "/vre/output";

pub fn work_volume(sandbox: &str) -> String {
    format!("vre-{sandbox}-work")
}
pub fn output_volume(sandbox: &str) -> String {
    format!("vre-{sandbox}-output")
}
pub fn ingress_volume(sandbox: &str, ingress: &str) -> String {
    format!("vre-{sandbox}-ingress-{ingress}")
}
pub fn dataset_volume(sandbox: &str, dataset: &str) -> String {
    format!("vre-{sandbox}-data-{dataset}")
}

/// The local driver's options for a dataset's volume: a bind of its directory, read-only and
/// not recursive. Mounts below the directory are not carried into the volume at all, so none of
/// them can be writable inside a run (which a recursive bind made read-only only at its top
/// would allow on engines before API 1.44), and the run's own mount of the volume is read-only
/// too.
pub fn dataset_volume_options(host_path: &str) -> HashMap<String, String> {
    HashMap::from([
        ("type".to_owned(), "none".to_owned()),
        ("device".to_owned(), host_path.to_owned()),
        ("o".to_owned(), "bind,ro".to_owned()),
    ])
}

pub fn run_container_name(run: &str) -> String {
    format!("vre-run-{run}")
}

/// Labels of the gateway's objects.
pub fn labels(instance: &str, sandbox: &str, project: &str, role: &str) -> HashMap<String, String> {
    HashMap::from([
        (LABEL_MANAGED.to_owned(), "1".to_owned()),
        (LABEL_INSTANCE.to_owned(), instance.to_owned()),
        (LABEL_SANDBOX.to_owned(), sandbox.to_owned()),
        (LABEL_PROJECT.to_owned(), project.to_owned()),
        (LABEL_ROLE.to_owned(), role.to_owned()),
    ])
}

fn volume(source: String, target: String, read_only: bool) -> Mount {
    Mount {
        typ: Some(MountType::VOLUME),
        source: Some(source),
        target: Some(target),
        read_only: Some(read_only),
        // Never copy the image's content up into a volume: an empty output folder would take
        // the owner of the image's mount point, and an image could seed the work area.
        volume_options: Some(MountVolumeOptions {
            no_copy: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The engine's own cap on a run's log file. The gateway cuts the output at `log_max_bytes`;
/// the engine stores it as JSON lines (about three times the bytes for short lines), and a log
/// file that rotates under a follower loses what the follower had not read yet. So the engine's
/// cap sits well above the gateway's and never rotates before the gateway has stopped the run.
pub fn engine_log_max(log_max_bytes: u64) -> u64 {
    log_max_bytes.clamp(1 << 20, 1 << 30) * 4 + (1 << 20)
}

/// The create request for a run: network `none`, read-only root, no capabilities,
/// no-new-privileges, the default seccomp profile (never overridden), a non-root user, limits
/// on pids, memory (= memory + swap) and CPU, a size-capped `/tmp`, capped logs, an init
/// process, labels, never privileged, never a host namespace, never the Docker socket;
/// datasets and ingress read-only.
pub fn run_container(instance: &str, run: &RunSpec) -> ContainerCreateBody {
    let sb = &run.sandbox;
    let r = &sb.resources;
    let mut mounts = vec![
        volume(work_volume(&sb.id), WORK_DIR.into(), false),
        volume(output_volume(&sb.id), OUTPUT_DIR.into(), false),
    ];
    for app in &sb.ingress {
        mounts.push(volume(
            ingress_volume(&sb.id, app),
            format!("{INGRESS_DIR}/{app}"),
            true,
        ));
    }
    for d in &sb.datasets {
        mounts.push(volume(
            dataset_volume(&sb.id, &d.id),
            format!("{DATA_DIR}/{}", d.id),
            true,
        ));
    }
    let mut labels = labels(instance, &sb.id, &sb.project, "run");
    labels.insert(LABEL_RUN.to_owned(), run.id.clone());
    let mut env = vec![
        format!("VRE_INGRESS={INGRESS_DIR}"),
        format!("VRE_DATA={DATA_DIR}"),
        format!("VRE_WORK={WORK_DIR}"),
        format!("VRE_OUTPUT={OUTPUT_DIR}"),
        format!("VRE_RUN={}", run.id),
        format!("VRE_SANDBOX={}", sb.id),
        "HOME=/tmp".to_owned(),
    ];
    env.extend(run.env.iter().map(|(k, v)| format!("{k}={v}")));
    let log_max = engine_log_max(r.log_max_bytes);
    ContainerCreateBody {
        image: Some(sb.image_id.clone()),
        cmd: Some(run.cmd.clone()),
        // Replace the image's entrypoint: the command is exactly what was asked for.
        entrypoint: Some(Vec::new()),
        user: Some(format!("{SANDBOX_UID}:{SANDBOX_UID}")),
        working_dir: Some(WORK_DIR.into()),
        env: Some(env),
        labels: Some(labels),
        network_disabled: Some(true),
        tty: Some(false),
        open_stdin: Some(false),
        attach_stdin: Some(false),
        stop_timeout: Some(1),
        host_config: Some(HostConfig {
            network_mode: Some("none".into()),
            readonly_rootfs: Some(true),
            cap_drop: Some(vec!["ALL".into()]),
            cap_add: Some(Vec::new()),
            security_opt: Some(vec!["no-new-privileges:true".into()]),
            privileged: Some(false),
            pids_limit: Some(r.pids),
            memory: Some(r.memory_bytes),
            memory_swap: Some(r.memory_bytes),
            nano_cpus: Some(r.nano_cpus),
            oom_kill_disable: Some(false),
            tmpfs: Some(HashMap::from([(
                "/tmp".to_owned(),
                format!("rw,noexec,nosuid,nodev,size={}", r.tmpfs_bytes),
            )])),
            ulimits: Some(vec![
                ResourcesUlimits {
                    name: Some("nofile".into()),
                    soft: Some(1024),
                    hard: Some(1024),
                },
                ResourcesUlimits {
                    name: Some("core".into()),
                    soft: Some(0),
                    hard: Some(0),
                },
            ]),
            log_config: Some(HostConfigLogConfig {
                typ: Some("json-file".into()),
                config: Some(HashMap::from([
                    ("max-size".to_owned(), log_max.to_string()),
                    ("max-file".to_owned(), "1".to_owned()),
                ])),
            }),
            init: Some(true),
            mounts: Some(mounts),
            binds: Some(Vec::new()),
            ipc_mode: Some("private".into()),
            pid_mode: Some(String::new()),
            uts_mode: Some(String::new()),
            userns_mode: Some(String::new()),
            cgroupns_mode: None,
            devices: Some(Vec::new()),
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::NO),
                maximum_retry_count: None,
            }),
            auto_remove: Some(false),
            publish_all_ports: Some(false),
            runtime: sb.runtime.clone(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DatasetMount, Resources, SandboxSpec};

    pub(crate) fn spec() -> RunSpec {
        RunSpec {
            id: "run-1".into(),
            cmd: vec!["true".into()],
            env: vec![("A".into(), "b".into())],
            sandbox: SandboxSpec {
                id: "sbx-1".into(),
                project: "p1".into(),
                image_id: "sha256:abc".into(),
                resources: Resources {
                    nano_cpus: 1_000_000_000,
                    memory_bytes: 256 << 20,
                    pids: 128,
                    tmpfs_bytes: 64 << 20,
                    output_quota_bytes: 1 << 30,
                    log_max_bytes: 1 << 20,
                },
                ingress: vec!["app-1".into()],
                datasets: vec![DatasetMount {
                    id: "ds-1".into(),
                    host_path: "/srv/data/ds-1".into(),
                }],
                runtime: None,
            },
        }
    }

    #[test]
    fn every_run_is_hardened() {
        let c = run_container("gw", &spec());
        let h = c.host_config.as_ref().unwrap();
        assert_eq!(h.network_mode.as_deref(), Some("none"));
        assert_eq!(c.network_disabled, Some(true));
        assert_eq!(h.readonly_rootfs, Some(true));
        assert_eq!(h.cap_drop.as_deref(), Some(&["ALL".to_owned()][..]));
        assert_eq!(h.privileged, Some(false));
        assert_eq!(h.memory, h.memory_swap);
        assert!(
            h.security_opt
                .as_ref()
                .unwrap()
                .contains(&"no-new-privileges:true".to_owned())
        );
        assert!(
            !h.security_opt
                .as_ref()
                .unwrap()
                .iter()
                .any(|o| o.contains("unconfined")),
            "the default seccomp and AppArmor profiles stay"
        );
        assert_eq!(c.user.as_deref(), Some("65534:65534"));
        assert_eq!(h.init, Some(true));
        let mounts = h.mounts.as_ref().unwrap();
        let ro: Vec<_> = mounts
            .iter()
            .filter(|m| m.read_only == Some(true))
            .map(|m| m.target.clone().unwrap())
            .collect();
        assert_eq!(
            ro,
            vec!["/vre/ingress/app-1".to_owned(), "/vre/data/ds-1".to_owned()]
        );
        // Datasets too are volumes (non-recursive read-only binds made by the local driver);
        // nothing of the host is bind-mounted directly.
        assert!(mounts.iter().all(|m| m.typ == Some(MountType::VOLUME)));
        assert_eq!(h.binds.as_deref(), Some(&[][..]));
        let ds = mounts
            .iter()
            .find(|m| m.target.as_deref() == Some("/vre/data/ds-1"));
        assert_eq!(
            ds.and_then(|m| m.source.clone()),
            Some(dataset_volume("sbx-1", "ds-1"))
        );
        let opts = dataset_volume_options("/srv/data/ds-1");
        assert_eq!(
            opts["o"], "bind,ro",
            "read-only and not recursive (not rbind)"
        );
        assert_eq!(opts["device"], "/srv/data/ds-1");
        assert!(
            mounts
                .iter()
                .all(|m| !m.source.as_deref().unwrap_or("").contains("docker.sock")),
            "never the Docker socket"
        );
        assert_eq!(
            c.labels
                .as_ref()
                .unwrap()
                .get(LABEL_RUN)
                .map(String::as_str),
            Some("run-1")
        );
        assert!(
            c.env
                .as_ref()
                .unwrap()
                .contains(&"VRE_OUTPUT=/vre/output".to_owned())
        );
    }
}

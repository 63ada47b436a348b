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
    SANDBOX_UID, SandboxSpec, Volume,
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

pub(crate) fn volume(source: String, target: String, read_only: bool) -> Mount {
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
/// datasets and ingress read-only. The command is the container's own: used where the
/// launcher cannot run (an engine of another architecture).
pub fn run_container(instance: &str, run: &RunSpec) -> ContainerCreateBody {
    let mut env = base_env(&run.sandbox);
    env.extend(launch_env(run));
    let mut c = container(instance, &run.sandbox, env, Vec::new());
    c.cmd = Some(run.cmd.clone());
    c.labels
        .get_or_insert_default()
        .insert(LABEL_RUN.to_owned(), run.id.clone());
    c
}

/// Where the launcher is mounted (read-only) in containers started through it.
pub const LAUNCH_DIR: &str = "/vre/launch";
/// The launcher itself (`launch/main.rs`).
pub const LAUNCHER: &str = "/vre/launch/vre-launch";

/// The volume that holds the launcher, one per gateway instance.
pub fn launcher_volume(instance: &str) -> String {
    format!("vre-launch-{instance}")
}

/// The name of a container started ahead for a sandbox's next run, until a run takes it:
/// the `n`th of a backend whose random `nonce` keeps it apart from those of an earlier process
/// (which the next start removes).
pub fn standby_name(sandbox: &str, nonce: u32, n: u64) -> String {
    format!("vre-standby-{sandbox}-{nonce:08x}-{n}")
}

/// The create request for a run's container started through the launcher: exactly the
/// profile of [`run_container`], plus the launcher's volume (read-only) and a standard input
/// open for the one payload that carries the command ([`launch_payload`]). It depends on the
/// sandbox only, so it can be created and started before the run is asked for; `run` is given
/// when it is made for a run already known, which it is then labelled with.
pub fn launcher_container(
    instance: &str,
    sb: &SandboxSpec,
    run: Option<&str>,
) -> ContainerCreateBody {
    let launcher = volume(launcher_volume(instance), LAUNCH_DIR.into(), true);
    let mut c = container(instance, sb, base_env(sb), vec![launcher]);
    c.cmd = Some(vec![LAUNCHER.to_owned()]);
    c.open_stdin = Some(true);
    c.attach_stdin = Some(true);
    // Closed when the gateway's attachment goes: a launcher whose gateway died before handing
    // over the command ends instead of waiting forever.
    c.stdin_once = Some(true);
    if let Some(run) = run {
        c.labels
            .get_or_insert_default()
            .insert(LABEL_RUN.to_owned(), run.to_owned());
    }
    c
}

/// Where a measuring container sees the volume it measures.
pub const MEASURED_DIR: &str = "/vre/measured";

/// The create request for a container that measures one of a sandbox's writable volumes with
/// the launcher's `--usage` mode, where the engine's volumes cannot be read from the gateway's
/// host. It runs as root with one capability, `DAC_READ_SEARCH` (to list and stat what the
/// sandbox made unreadable, which would otherwise hide from the quota), and nothing else: no
/// network, read-only root, the volume (copy-up off) and the launcher read-only,
/// no-new-privileges, a few pids and little memory, under the sandbox's runtime like its runs
/// (gVisor's own threads count in the pids limit: more of them there). It reads metadata only
/// and prints one line.
pub fn measure_container(
    instance: &str,
    sb: &SandboxSpec,
    measured: Volume,
) -> ContainerCreateBody {
    let (pids, memory) = match sb.runtime {
        None => (8, 32 << 20),
        Some(_) => (128, 64 << 20),
    };
    ContainerCreateBody {
        image: Some(crate::docker::INIT_IMAGE.to_owned()),
        entrypoint: Some(Vec::new()),
        cmd: Some(vec![
            LAUNCHER.to_owned(),
            "--usage".to_owned(),
            MEASURED_DIR.to_owned(),
        ]),
        user: Some("0:0".into()),
        labels: Some(labels(instance, &sb.id, &sb.project, "measure")),
        network_disabled: Some(true),
        tty: Some(false),
        host_config: Some(HostConfig {
            cap_add: Some(vec!["DAC_READ_SEARCH".into()]),
            privileged: Some(false),
            pids_limit: Some(pids),
            memory: Some(memory),
            memory_swap: Some(memory),
            log_config: Some(HostConfigLogConfig {
                typ: Some("json-file".into()),
                config: Some(HashMap::from([
                    ("max-size".to_owned(), "64k".to_owned()),
                    ("max-file".to_owned(), "1".to_owned()),
                ])),
            }),
            runtime: sb.runtime.clone(),
            ..confined(vec![
                volume(measured.name(&sb.id), MEASURED_DIR.into(), true),
                volume(launcher_volume(instance), LAUNCH_DIR.into(), true),
            ])
        }),
        ..Default::default()
    }
}

/// What every container the backend creates starts from: no network, a read-only root, every
/// capability dropped, no new privileges, and `mounts`. Each kind adds its own limits.
pub(crate) fn confined(mounts: Vec<Mount>) -> HostConfig {
    HostConfig {
        network_mode: Some("none".into()),
        readonly_rootfs: Some(true),
        cap_drop: Some(vec!["ALL".into()]),
        security_opt: Some(vec!["no-new-privileges:true".into()]),
        mounts: Some(mounts),
        ..Default::default()
    }
}

/// What a sandbox's containers started ahead are made with: a run takes one only if its
/// sandbox would still get exactly that (a staging since changes it).
pub fn standby_key(instance: &str, sb: &SandboxSpec) -> String {
    // Through a `Value`, whose maps are ordered: the request's own maps are not.
    serde_json::to_value(launcher_container(instance, sb, None))
        .map(|v| v.to_string())
        .unwrap_or_default()
}

/// The run's own environment: set by the launcher, or in the container for [`run_container`].
pub fn launch_env(run: &RunSpec) -> Vec<String> {
    let mut env = vec![format!("VRE_RUN={}", run.id)];
    env.extend(run.env.iter().map(|(k, v)| format!("{k}={v}")));
    env
}

/// What the launcher reads: the run's command and its own environment.
pub fn launch_payload(run: &RunSpec) -> Vec<u8> {
    let args: Vec<&[u8]> = run.cmd.iter().map(|a| a.as_bytes()).collect();
    let env = launch_env(run);
    let env: Vec<&[u8]> = env.iter().map(|e| e.as_bytes()).collect();
    crate::launch::encode(&args, &env)
}

fn base_env(sb: &SandboxSpec) -> Vec<String> {
    vec![
        format!("VRE_INGRESS={INGRESS_DIR}"),
        format!("VRE_DATA={DATA_DIR}"),
        format!("VRE_WORK={WORK_DIR}"),
        format!("VRE_OUTPUT={OUTPUT_DIR}"),
        format!("VRE_SANDBOX={}", sb.id),
        "HOME=/tmp".to_owned(),
    ]
}

/// The profile every run's container gets, without its command.
fn container(
    instance: &str,
    sb: &SandboxSpec,
    env: Vec<String>,
    extra_mounts: Vec<Mount>,
) -> ContainerCreateBody {
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
    mounts.extend(extra_mounts);
    let labels = labels(instance, &sb.id, &sb.project, "run");
    let log_max = engine_log_max(r.log_max_bytes);
    ContainerCreateBody {
        image: Some(sb.image_id.clone()),
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
            cap_add: Some(Vec::new()),
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
            ..confined(mounts)
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
                    work_quota_bytes: 4 << 30,
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
    fn a_container_started_ahead_has_the_runs_profile_and_takes_its_command_later() {
        let run = spec();
        let ahead = launcher_container("gw", &run.sandbox, None);
        let direct = run_container("gw", &run);
        // The same request but for the command, what carries it (standard input, the
        // launcher's volume) and what names the run (its label, its environment).
        let mut same = ahead.clone();
        same.cmd = direct.cmd.clone();
        (same.open_stdin, same.attach_stdin, same.stdin_once) =
            (direct.open_stdin, direct.attach_stdin, direct.stdin_once);
        same.labels = direct.labels.clone();
        same.env = direct.env.clone();
        let h = same.host_config.as_mut().unwrap();
        h.mounts.as_mut().unwrap().pop();
        assert_eq!(same, direct);
        assert_eq!(ahead.cmd, Some(vec![LAUNCHER.to_owned()]));
        assert_eq!(
            (ahead.open_stdin, ahead.stdin_once, ahead.tty),
            (Some(true), Some(true), Some(false))
        );
        let mounts = ahead.host_config.as_ref().unwrap().mounts.as_ref().unwrap();
        let launcher = mounts.last().unwrap();
        assert_eq!(
            (launcher.target.as_deref(), launcher.read_only),
            (Some(LAUNCH_DIR), Some(true))
        );
        // Made before its run exists: no run in its labels or environment; the payload has them.
        assert!(!ahead.labels.as_ref().unwrap().contains_key(LABEL_RUN));
        assert!(
            !ahead
                .env
                .as_ref()
                .unwrap()
                .iter()
                .any(|e| e.starts_with("VRE_RUN="))
        );
        let payload = crate::launch::read(&mut &launch_payload(&run)[..]).unwrap();
        assert_eq!(payload.args, vec![b"true".to_vec()]);
        assert_eq!(
            payload.env,
            vec![b"VRE_RUN=run-1".to_vec(), b"A=b".to_vec()]
        );
        // Its key is stable (the request's maps are not ordered) and changes with the sandbox.
        let key = standby_key("gw", &run.sandbox);
        assert_eq!(key, standby_key("gw", &run.sandbox));
        let mut staged = run.sandbox.clone();
        staged.ingress.push("app-2".into());
        assert_ne!(key, standby_key("gw", &staged));
    }

    #[test]
    fn the_launch_payload_refuses_what_is_not_a_whole_command() {
        use crate::launch::{encode, read};
        let ok = encode(&[b"sh", b"-c", b"echo 'a b'"], &[b"K=v=w"]);
        let l = read(&mut &ok[..]).unwrap();
        assert_eq!(l.args.len(), 3);
        assert_eq!(l.env, vec![b"K=v=w".to_vec()]);
        // Exactly one payload is read; what follows stays for the program (here: nothing).
        let mut twice = &[ok.clone(), b"rest".to_vec()].concat()[..];
        read(&mut twice).unwrap();
        assert_eq!(twice, b"rest");
        for bad in [
            Vec::new(),                         // the gateway went before sending
            ok[..ok.len() - 1].to_vec(),        // cut short
            encode(&[], &[]),                   // no command
            encode(&[b"a\0b"], &[]),            // a NUL in an argument
            encode(&[b"true"], &[b"NOEQUALS"]), // not KEY=value
            encode(&[b"true"], &[b"=v"]),       // no key
            [b"VRE-LAUNCH 2\n".to_vec(), ok[13..].to_vec()].concat(), // another version
        ] {
            assert!(read(&mut &bad[..]).is_err(), "{bad:?}");
        }
        let mut huge = crate::launch::MAGIC.to_vec();
        huge.extend_from_slice(&1u32.to_be_bytes());
        huge.extend_from_slice(&0u32.to_be_bytes());
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(
            read(&mut &huge[..]).is_err(),
            "a length past the limit allocates nothing"
        );
    }

    #[test]
    fn a_measuring_container_may_read_the_measured_volume_and_nothing_more() {
        let mut sb = spec().sandbox;
        for (volume, name) in [
            (Volume::Output, output_volume("sbx-1")),
            (Volume::Work, work_volume("sbx-1")),
        ] {
            let c = measure_container("gw", &sb, volume);
            let h = c.host_config.as_ref().unwrap();
            assert_eq!(h.network_mode.as_deref(), Some("none"));
            assert_eq!(c.network_disabled, Some(true));
            assert_eq!(h.readonly_rootfs, Some(true));
            assert_eq!(h.cap_drop.as_deref(), Some(&["ALL".to_owned()][..]));
            assert_eq!(
                h.cap_add.as_deref(),
                Some(&["DAC_READ_SEARCH".to_owned()][..])
            );
            assert_eq!(h.privileged, Some(false));
            assert!(
                h.security_opt
                    .as_ref()
                    .unwrap()
                    .contains(&"no-new-privileges:true".to_owned())
            );
            let mounts = h.mounts.as_ref().unwrap();
            assert!(mounts.iter().all(|m| m.read_only == Some(true)));
            assert!(
                mounts
                    .iter()
                    .all(|m| m.volume_options.as_ref().and_then(|o| o.no_copy) == Some(true)),
                "copy-up off"
            );
            let sources: Vec<_> = mounts.iter().map(|m| m.source.clone().unwrap()).collect();
            assert_eq!(sources, vec![name, launcher_volume("gw")]);
            assert_eq!(h.binds, None);
            assert_eq!(h.runtime, None);
            assert!(c.labels.as_ref().unwrap().get(LABEL_RUN).is_none());
        }
        // Under the runtime the sandbox's runs get, with room for its threads.
        sb.runtime = Some("runsc".into());
        let c = measure_container("gw", &sb, Volume::Output);
        let h = c.host_config.as_ref().unwrap();
        assert_eq!(h.runtime.as_deref(), Some("runsc"));
        assert!(h.pids_limit >= Some(128));
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

//! Isolation and hardening: a run cannot reach the network, the host, the engine or more than its limits, under runc and gVisor, and every hardening field is on the container.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
pub(super) async fn runs_are_isolated_and_limited() {
    if !docker_available() {
        return;
    }
    isolated_and_limited(world().await).await;
}

/// With `sandbox.runtime = "runsc"`, every run is in gVisor's kernel and stays isolated and
/// limited. gVisor's own threads count against the class's pids limit on the host (it does
/// not start under 64), so this class allows 128, and memory enough for its kernel. Skipped
/// where the engine has no `runsc` (deploy/docker/start-engine.sh registers it when Debian's
/// runsc is installed), unless `VRE_TEST_REQUIRE_RUNSC=1`, as `deploy/dev/test.sh` sets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
pub(super) async fn runs_in_gvisor_are_isolated_and_limited() {
    if !docker_available() {
        return;
    }
    let info = std::process::Command::new("docker")
        .args(["info", "-f", "{{json .Runtimes}}"])
        .output()
        .unwrap();
    let runtimes: Value = serde_json::from_slice(&info.stdout).unwrap_or_default();
    if runtimes.get("runsc").is_none() {
        assert!(
            !required("RUNSC"),
            "VRE_TEST_REQUIRE_RUNSC=1 but the engine has no runsc runtime: {runtimes} \
             (deploy/docker/start-engine.sh registers Debian's runsc when it starts the engine)"
        );
        eprintln!("the engine has no runsc runtime: skipped (CI sets VRE_TEST_REQUIRE_RUNSC=1)");
        return;
    }
    let w = world_with(|s| {
        s.sandbox.runtime = Some("runsc".into());
        let tiny = s.sandbox.classes.get_mut("tiny").unwrap();
        tiny.pids = 128;
        tiny.memory_bytes = 96 << 20;
    })
    .await;
    let (app, ana, sb) = (&w.app, w.ana.as_str(), w.sandbox.as_str());
    let script = "uname -r; id -u; grep CapEff /proc/self/status; ls /sys/class/net; \
                  touch /x 2>/dev/null && echo root-writable; \
                  touch /vre/data/cohort/x 2>/dev/null && echo data-writable; \
                  touch /vre/ingress/*/x 2>/dev/null && echo ingress-writable; \
                  ls /var/run/docker.sock 2>/dev/null && echo socket; \
                  cat /vre/data/cohort/cohort.csv; sh /vre/ingress/*/run.sh";
    let (r, log) = run(app, ana, sb, &["sh", "-c", script], None).await;
    assert_eq!(r["exit_code"], 0, "{r} {log}");
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines[0], "4.4.0", "gVisor's kernel answers: {log}");
    assert_eq!(lines[1], "65534", "{log}");
    assert_eq!(
        lines[2].split_whitespace().last(),
        Some("0000000000000000"),
        "{log}"
    );
    assert_eq!(lines[3], "lo", "only loopback: {log}");
    assert!(
        !log.contains("writable") && !log.contains("socket"),
        "{log}"
    );
    assert!(
        log.contains("id,age") && log.contains("from the archive"),
        "{log}"
    );

    // The deadline, the output quota and the memory limit hold.
    let (r, _) = run(app, ana, sb, &["sleep", "60"], Some(1)).await;
    assert_eq!(r["outcome"], "timed_out", "{r}");
    past_the_quota(app, ana, sb).await;
    oom_killed(app, ana, sb, "256M").await;
    assert!(app.get("/healthz", None).await.0 == StatusCode::OK);
    let (st, _) = app
        .delete(&format!("/api/v1/sandboxes/{sb}"), Some(ana))
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(only_the_launcher_left(app).await, Ok(()));
    w.app.stop().await;
}

/// A configured runtime the engine lacks is named when a sandbox is made, with those it has,
/// instead of every run failing at its start; nothing is created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
pub(super) async fn a_runtime_the_engine_lacks_is_refused_by_name() {
    if !docker_available() {
        return;
    }
    let (app, ana, _data) =
        small_world(|s| s.sandbox.runtime = Some("vre-no-such-runtime".into())).await;
    let (st, b) = app.ask_sandbox(&ana, "p1").await;
    assert_refused(
        st,
        &b,
        StatusCode::SERVICE_UNAVAILABLE,
        "engine_misconfigured",
    );
    let message = b["message"].as_str().unwrap();
    assert!(
        message.contains("`vre-no-such-runtime`") && message.contains("runc"),
        "{message}"
    );
    let (_, list) = app.get("/api/v1/sandboxes", Some(&ana)).await;
    assert_eq!(list.as_array().map(Vec::len), Some(0), "{list}");
    let backend = &app.state.sandboxes.backend;
    let volumes = backend.list_volumes().await.unwrap();
    assert!(volumes.is_empty(), "{volumes:?}");
    app.stop().await;
}

/// Not root, no capabilities, no network, no Docker socket; root, dataset and ingress read
/// only; pids, memory, deadline, output quota and logs limited; the gateway healthy throughout.
pub(super) async fn isolated_and_limited(w: World) {
    let (app, ana, sb) = (&w.app, w.ana.as_str(), w.sandbox.as_str());
    let healthy = || async { app.get("/healthz", None).await.0 == StatusCode::OK };

    // Who and where: not root, no capabilities, the layout and its environment.
    let (r, log) = run(app, ana, sb, &["sh", "-c", "id -u; grep CapEff /proc/self/status; pwd; echo $VRE_OUTPUT $VRE_INGRESS $VRE_DATA $VRE_WORK"], None).await;
    assert_eq!(
        (r["outcome"].as_str(), r["exit_code"].as_i64()),
        (Some("exited"), Some(0)),
        "{r} {log}"
    );
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines[0], "65534");
    assert_eq!(
        lines[1].split_whitespace().last(),
        Some("0000000000000000"),
        "{log}"
    );
    assert_eq!(lines[2], "/vre/work");
    assert_eq!(lines[3], "/vre/output /vre/ingress /vre/data /vre/work");

    // No network but loopback, no route anywhere, no Docker socket.
    let (r, log) = run(app, ana, sb, &["sh", "-c", "ls /sys/class/net; cat /proc/net/route | wc -l; ls /var/run/docker.sock /run/docker.sock 2>&1; true"], None).await;
    assert_eq!(r["exit_code"], 0, "{log}");
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines[0], "lo", "only loopback: {log}");
    assert_eq!(lines[1], "1", "no routes beyond the header line: {log}");
    assert!(log.contains("No such file"), "{log}");

    // Writes: root, dataset and ingress refused; work and output allowed; the ingress is there.
    let script = "touch /x 2>/dev/null && echo root-writable; \
                  touch /vre/data/cohort/x 2>/dev/null && echo data-writable; \
                  touch /vre/ingress/*/x 2>/dev/null && echo ingress-writable; \
                  echo ok > /vre/work/w && echo ok > /vre/output/o && echo wrote; \
                  cat /vre/data/cohort/cohort.csv; sh /vre/ingress/*/run.sh";
    let (r, log) = run(app, ana, sb, &["sh", "-c", script], None).await;
    assert_eq!(r["exit_code"], 0, "{log}");
    assert!(!log.contains("writable"), "{log}");
    assert!(
        log.contains("wrote") && log.contains("id,age") && log.contains("from the archive"),
        "{log}"
    );
    // A file system mounted below the dataset's directory on the host is not carried in (the
    // dataset is one read-only, non-recursive bind), so it can be neither read nor written.
    if w.submount.is_some() {
        let script = "ls -A /vre/data/cohort/nested; \
                      touch /vre/data/cohort/nested/x 2>&1 && echo nested-writable; true";
        let (r, log) = run(app, ana, sb, &["sh", "-c", script], None).await;
        assert_eq!(r["exit_code"], 0, "{log}");
        assert!(!log.contains("nested-writable"), "{log}");
        assert!(!log.contains("host-only"), "{log}");
        assert!(log.contains("Read-only file system"), "{log}");
    }
    // The work area persists to the next run; /tmp does not, and it is capped.
    let (_, log) = run(
        app,
        ana,
        sb,
        &[
            "sh",
            "-c",
            "cat /vre/work/w; echo t > /tmp/t; dd if=/dev/zero of=/tmp/big bs=1k count=4096 2>&1",
        ],
        None,
    )
    .await;
    assert!(log.starts_with("ok\n"), "{log}");
    assert!(log.contains("No space left"), "/tmp is capped: {log}");
    let (_, log) = run(app, ana, sb, &["sh", "-c", "ls /tmp | wc -l"], None).await;
    assert_eq!(log.trim(), "0");

    // A fork bomb is contained by the pids limit; the gateway stays healthy.
    // (busybox's shell gives up at the first fork that fails.)
    let bomb = "i=0; while [ $i -lt 500 ]; do sleep 5 & i=$((i+1)); done; wait";
    let (r, log) = run(app, ana, sb, &["sh", "-c", bomb], Some(30)).await;
    assert_eq!(r["outcome"], "exited", "{r}");
    assert_ne!(r["exit_code"], 0, "{r}");
    assert!(
        log.contains("can't fork"),
        "forks past the limit fail: {log}"
    );
    assert!(healthy().await);

    // A memory hog is reported as OOM.
    oom_killed(app, ana, sb, "128M").await;

    // A run past its deadline is killed and reported.
    let t0 = std::time::Instant::now();
    let (r, _) = run(app, ana, sb, &["sleep", "60"], Some(1)).await;
    assert_eq!(r["outcome"], "timed_out", "{r}");
    assert!(t0.elapsed() < Duration::from_secs(20));

    // An output folder filled past its quota: stopped and reported, also when it was quick.
    past_the_quota(app, ana, sb).await;

    // Logs are capped and their hash is recorded in the audit trail.
    let (r, log) = run(
        app,
        ana,
        sb,
        // `yes` writes as fast as the pipe takes it, whatever the machine's load.
        &["yes", "0123456789abcdef0123456789abcdef"],
        Some(30),
    )
    .await;
    assert_eq!(r["outcome"], "log_limit_exceeded", "{r}");
    assert!(log.len() < (1 << 20) + 200, "{}", log.len());
    assert_eq!(r["log_truncated"], true);
    let events = app.audit_events(r["id"].as_str().unwrap()).await;
    let finish = events.iter().find(|e| e["action"] == "run.finish").unwrap();
    assert!(
        finish["detail"]
            .as_str()
            .unwrap()
            .contains(r["log_sha256"].as_str().unwrap())
    );
    assert_eq!(r["log_sha256"], gateway::sha256_hex(log.as_bytes()));

    // Every run's container is gone; the exit code is the program's own.
    let (r, _) = run(app, ana, sb, &["sh", "-c", "exit 7"], None).await;
    assert_eq!(
        (r["outcome"].as_str(), r["exit_code"].as_i64()),
        (Some("exited"), Some(7))
    );
    // Removed right after the end is recorded. What is left is the one container started
    // ahead for the sandbox's next run.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let backend = &app.state.sandboxes.backend;
        let left = backend.list_containers().await.unwrap();
        let (ahead, runs): (Vec<_>, Vec<_>) = left.iter().partition(|c| backend.holds(c));
        if runs.is_empty() && ahead.len() == 1 {
            assert_eq!(ahead[0].labels["vre.sandbox"], *sb);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{left:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(healthy().await);

    // Removing the sandbox removes its dataset volume and leaves the dataset itself whole.
    let (st, r) = app
        .delete(&format!("/api/v1/sandboxes/{sb}"), Some(ana))
        .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert_eq!(only_the_launcher_left(app).await, Ok(()));
    let data = w.data.path();
    assert_eq!(
        std::fs::read_to_string(data.join("cohort.csv")).unwrap(),
        "id,age\n1,40\n"
    );
    if w.submount.is_some() {
        assert!(data.join("nested/host-only.txt").exists());
    }
    assert!(app.verify_audit().await.problem.is_none());
    w.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
pub(super) async fn every_hardening_field_is_on_the_container() {
    if !docker_available() {
        return;
    }
    let w = world().await;
    let id = start_run(&w.app, &w.ana, &w.sandbox, &["sleep", "30"], None).await;
    let name = format!("vre-run-{id}");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let inspect: Value = loop {
        let out = std::process::Command::new("docker")
            .args(["inspect", &name])
            .output()
            .unwrap();
        if out.status.success() {
            let v: Value = serde_json::from_slice(&out.stdout).unwrap();
            if v[0]["State"]["Running"] == true {
                break v[0].clone();
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the run's container never ran"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let h = &inspect["HostConfig"];
    let c = &inspect["Config"];
    assert_eq!(h["NetworkMode"], "none");
    assert_eq!(c["NetworkDisabled"], true);
    assert_eq!(h["ReadonlyRootfs"], true);
    assert_eq!(h["CapDrop"], json!(["ALL"]));
    assert!(h["CapAdd"].is_null() || h["CapAdd"] == json!([]));
    assert_eq!(h["Privileged"], false);
    assert_eq!(
        h["SecurityOpt"],
        json!(["no-new-privileges:true"]),
        "and no seccomp=unconfined"
    );
    assert_eq!(c["User"], "65534:65534");
    assert_eq!(h["PidsLimit"], 32);
    assert_eq!(h["Memory"], 48 << 20);
    assert_eq!(h["MemorySwap"], h["Memory"], "no swap");
    assert_eq!(h["NanoCpus"], 500_000_000);
    assert_eq!(
        h["Tmpfs"]["/tmp"],
        format!("rw,noexec,nosuid,nodev,size={}", 1 << 20)
    );
    assert_eq!(h["LogConfig"]["Type"], "json-file");
    assert_eq!(
        h["LogConfig"]["Config"]["max-size"],
        sandbox_runner::hardening::engine_log_max(1 << 20).to_string(),
        "the engine keeps more than the gateway's cap, so it never rotates under the follower"
    );
    assert_eq!(h["Init"], true);
    assert_eq!(h["IpcMode"], "private");
    assert_eq!(h["PidMode"], "");
    assert_eq!(h["UsernsMode"], "");
    assert_eq!(h["RestartPolicy"]["Name"], "no");
    assert_eq!(h["AutoRemove"], false);
    assert_eq!(
        inspect["AppArmorProfile"]
            .as_str()
            .map(|p| p != "unconfined"),
        Some(true)
    );
    let labels = &c["Labels"];
    assert_eq!(labels["vre.managed"], "1");
    assert_eq!(labels["vre.sandbox"], w.sandbox.as_str());
    assert_eq!(labels["vre.project"], "p1");
    let mounts = inspect["Mounts"].as_array().unwrap();
    let rw = |dest: &str| {
        mounts
            .iter()
            .find(|m| m["Destination"] == dest)
            .map(|m| m["RW"].clone())
    };
    assert_eq!(rw("/vre/work"), Some(json!(true)));
    assert_eq!(rw("/vre/output"), Some(json!(true)));
    assert_eq!(
        rw(&format!("/vre/ingress/{}", w.ingress)),
        Some(json!(false))
    );
    assert_eq!(rw("/vre/data/cohort"), Some(json!(false)));
    // The launcher that took the command on its standard input, read-only, and nothing else.
    assert_eq!(rw("/vre/launch"), Some(json!(false)));
    assert_eq!(mounts.len(), 5, "nothing else is mounted: {mounts:?}");
    assert_eq!(c["Cmd"], json!(["/vre/launch/vre-launch"]));
    assert_eq!(
        (&c["OpenStdin"], &c["StdinOnce"]),
        (&json!(true), &json!(true))
    );
    assert_eq!(c["Tty"], false);
    assert!(!inspect.to_string().contains("docker.sock"));
    w.app.stop().await;
}

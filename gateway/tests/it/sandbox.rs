//! Sandboxes and runs on the real Docker engine, each run through the gateway: isolation
//! (network, file system, capabilities, user, the Docker socket), limits (pids, memory, deadline,
//! output quota, logs), every hardening field on the created container, staging rules, an engine
//! that is down, and a gateway killed during a run.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{
    Engine, TEST_IMAGE, TempDir, TestApp, actions, assert_refused, assert_success,
    docker_available, issued_token, json_of, required, root_available, text_of, vre_command,
};

/// A small class so limits are reached quickly.
fn tiny(s: &mut gateway::config::Settings, data: &std::path::Path) {
    s.sandbox.classes.insert(
        "tiny".into(),
        gateway::config::sandbox::ResourceClass {
            cpus: 0.5,
            memory_bytes: 48 << 20,
            pids: 32,
            tmpfs_bytes: 1 << 20,
            max_run_secs: 60,
            output_quota_bytes: 2 << 20,
            work_quota_bytes: 2 << 20,
            log_max_bytes: 1 << 20,
        },
    );
    s.sandbox.default_class = "tiny".into();
    s.sandbox
        .datasets
        .insert("cohort".into(), data.to_path_buf());
}

struct World {
    app: TestApp,
    ana: String,
    sandbox: String,
    ingress: String,
    /// Dropped before the dataset's directory.
    submount: Option<Submount>,
    data: TempDir,
}

/// A tmpfs (world-writable, with a file in it) mounted below the dataset's directory, as a
/// site's data tree may hold other file systems; unmounted on drop. Needs root (as CI has):
/// None where the tests do not run as root, unless `VRE_TEST_REQUIRE_ROOT=1`.
struct Submount(std::path::PathBuf);

impl Submount {
    fn new(at: std::path::PathBuf) -> Option<Submount> {
        if !root_available("the dataset's checks with a file system mounted below it") {
            return None;
        }
        std::fs::create_dir_all(&at).unwrap();
        let mount = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "mode=1777,size=1m", "tmpfs"])
            .arg(&at)
            .output()
            .expect("mount runs");
        assert!(
            mount.status.success(),
            "mounting a tmpfs at {}: {}",
            at.display(),
            String::from_utf8_lossy(&mount.stderr)
        );
        std::fs::write(at.join("host-only.txt"), "below the dataset\n").unwrap();
        Some(Submount(at))
    }
}

impl Drop for Submount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// A gateway with project p1, an approved and staged ingress archive, a dataset, a sandbox.
async fn world() -> World {
    world_with(|_| {}).await
}

/// [`world`], with `tweak` on the settings.
async fn world_with(tweak: impl FnOnce(&mut gateway::config::Settings)) -> World {
    let (app, ana, data) = small_world(tweak).await;
    std::fs::write(data.path().join("cohort.csv"), "id,age\n1,40\n").unwrap();
    let submount = Submount::new(data.path().join("nested"));
    let ingress = approved_upload(&app, &ana, b"#!/bin/sh\necho from the archive\n").await;
    // The dataset on record as `cohort` (its directory configured under that id), p1's access
    // to it approved.
    crate::access::record(&app, "cohort").await;
    crate::access::grant(&app, "p1", "cohort", None).await;
    let (st, sb) = app
        .post(
            "/api/v1/sandboxes",
            Some(&ana),
            &json!({"project": "p1", "image": TEST_IMAGE, "ingress": [ingress], "datasets": ["cohort"]}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{sb}");
    World {
        sandbox: sb["id"].as_str().unwrap().to_owned(),
        app,
        ana,
        ingress,
        submount,
        data,
    }
}

/// A gateway with the tiny class (and `tweak` on top), project p1 with the analyst ana, and
/// the test image allowed; ana's token, and the dataset directory, which lives as long as it.
async fn small_world(
    tweak: impl FnOnce(&mut gateway::config::Settings),
) -> (TestApp, String, TempDir) {
    small_world_on(Engine::Sqlite, tweak).await
}

pub(crate) async fn small_world_on(
    engine: Engine,
    tweak: impl FnOnce(&mut gateway::config::Settings),
) -> (TestApp, String, TempDir) {
    let data = TempDir::new("dataset");
    let d = data.path().to_path_buf();
    let app = TestApp::spawn_with(engine, move |s| {
        tiny(s, &d);
        tweak(s);
    })
    .await;
    app.project("p1", &[("ana", "analyst")]).await;
    let ana = app.token("ana", "analyst");
    let op = app.token("op", "operator");
    let (st, b) = app
        .post("/api/v1/images", Some(&op), &json!({"name": TEST_IMAGE}))
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    (app, ana, data)
}

/// A new sandbox of p1 on the test image; its id.
pub(crate) async fn new_sandbox(app: &TestApp, ana: &str) -> String {
    app.new_sandbox(ana, "p1").await
}

pub(crate) async fn upload(app: &TestApp, token: &str, project: &str, script: &[u8]) -> String {
    use policy::archive::tar::{END, EntryKind, entry_header, padding};
    let mut t = entry_header("run.sh", EntryKind::File, script.len() as u64, 0o755);
    t.extend_from_slice(script);
    t.extend(std::iter::repeat_n(0u8, padding(script.len() as u64)));
    t.extend_from_slice(&END);
    let (st, b) = app
        .request_raw(
            reqwest::Method::POST,
            &format!("/api/v1/ingress?project={project}&name=prog"),
            Some(token),
            t,
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{b}");
    b["application"]["id"].as_str().unwrap().to_owned()
}

/// An ingress archive of p1 holding `script`, uploaded by ana and approved; its application.
async fn approved_upload(app: &TestApp, ana: &str, script: &[u8]) -> String {
    let ingress = upload(app, ana, "p1", script).await;
    let (_, b) = app.vote(&ingress, "rev", "approve").await;
    assert_eq!(b["state"], "approved");
    ingress
}

/// Starts `cmd` in the sandbox; returns the run's id.
pub(crate) async fn start_run(
    app: &TestApp,
    token: &str,
    sandbox: &str,
    cmd: &[&str],
    timeout: Option<u64>,
) -> String {
    let (st, r) = app
        .post(
            &format!("/api/v1/sandboxes/{sandbox}/runs"),
            Some(token),
            &json!({"cmd": cmd, "timeout_secs": timeout}),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{r}");
    r["id"].as_str().unwrap().to_owned()
}

/// Runs `cmd` and waits for its end; returns the run record and its log.
pub(crate) async fn run(
    app: &TestApp,
    token: &str,
    sandbox: &str,
    cmd: &[&str],
    timeout: Option<u64>,
) -> (Value, String) {
    let id = start_run(app, token, sandbox, cmd, timeout).await;
    let done = app.run_reaching(token, &id, "finished").await;
    let log = text_of(
        app.http
            .get(format!("{}/api/v1/runs/{id}/logs", app.url))
            .bearer_auth(token),
    )
    .await;
    (done, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_are_isolated_and_limited() {
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
async fn runs_in_gvisor_are_isolated_and_limited() {
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
async fn a_runtime_the_engine_lacks_is_refused_by_name() {
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
async fn isolated_and_limited(w: World) {
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
async fn every_hardening_field_is_on_the_container() {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_approved_ingress_of_the_project_is_staged() {
    if !docker_available() {
        return;
    }
    let w = world().await;
    let app = &w.app;
    app.project("p2", &[("bob", "analyst")]).await;
    let bob = app.token("bob", "analyst");
    let submitted = upload(app, &w.ana, "p1", b"echo unreviewed\n").await;
    let rejected = upload(app, &w.ana, "p1", b"echo rejected\n").await;
    app.vote(&rejected, "rev", "reject").await;
    let elsewhere = upload(app, &bob, "p2", b"echo other project\n").await;
    app.vote(&elsewhere, "rev", "approve").await;
    let access = app.application("access", "p1", "ana", "analyst").await;
    app.vote(&access, "rev", "approve").await;
    for (id, status, code) in [
        (&submitted, StatusCode::CONFLICT, "not_approved"),
        (&rejected, StatusCode::CONFLICT, "not_approved"),
        // Another project's application is not found, as everywhere: its id tells nothing.
        (&elsewhere, StatusCode::NOT_FOUND, "not_found"),
        (&access, StatusCode::CONFLICT, "not_ingress"),
    ] {
        let (st, b) = app
            .post(
                &format!("/api/v1/sandboxes/{}/ingress", w.sandbox),
                Some(&w.ana),
                &json!({"application": id}),
            )
            .await;
        assert_eq!((st, b["code"].as_str()), (status, Some(code)), "{id}: {b}");
    }
    // The staged archive: recorded with its hash, the application is now staged.
    let (_, sb) = app
        .get(&format!("/api/v1/sandboxes/{}", w.sandbox), Some(&w.ana))
        .await;
    let staged = sb["ingress"].as_array().unwrap();
    assert_eq!(staged.len(), 1);
    assert_eq!(staged[0]["application"], w.ingress.as_str());
    let (_, a) = app
        .get(&format!("/api/v1/applications/{}", w.ingress), Some(&w.ana))
        .await;
    assert_eq!(a["state"], "staged");
    let events = app.audit_events(&w.ingress).await;
    let stage = events
        .iter()
        .find(|e| e["action"] == "ingress.stage")
        .unwrap();
    let detail: Value = serde_json::from_str(stage["detail"].as_str().unwrap()).unwrap();
    assert_eq!(detail["verified_sha256"], detail["archive_sha256"]);
    assert_eq!(detail["staged_sha256"], staged[0]["staged_sha256"]);
    // A stored archive that changed since its approval is not staged, and nothing of it stays:
    // once with a file's content changed (caught while streaming), once with only zero padding
    // added (caught by the archive's hash at the end), once removed.
    for tamper in ["content", "padding", "gone"] {
        let id = upload(app, &w.ana, "p1", b"echo approved content\n").await;
        app.vote(&id, "rev", "approve").await;
        let (_, m) = app
            .get(&format!("/api/v1/applications/{id}/manifest"), Some(&w.ana))
            .await;
        let blob = app
            .state
            .blobs
            .path_of(m["archive"]["sha256"].as_str().unwrap())
            .unwrap();
        let mut bytes = std::fs::read(&blob).unwrap();
        match tamper {
            "content" => {
                let at = bytes.windows(8).position(|x| x == b"approved").unwrap();
                bytes[at..at + 8].copy_from_slice(b"TAMPERED");
            }
            "padding" => bytes.extend_from_slice(&[0u8; 512]),
            _ => {}
        }
        if tamper == "gone" {
            std::fs::remove_file(&blob).unwrap();
        } else {
            std::fs::write(&blob, &bytes).unwrap();
        }
        let (st, b) = app
            .post(
                &format!("/api/v1/sandboxes/{}/ingress", w.sandbox),
                Some(&w.ana),
                &json!({"application": id}),
            )
            .await;
        assert_eq!(
            (st, b["code"].as_str()),
            (StatusCode::CONFLICT, Some("archive_tampered")),
            "{tamper}: {b}"
        );
        let events = app.audit_events(&id).await;
        let refused: Vec<Value> = events
            .iter()
            .filter(|e| e["action"] == "ingress.stage_refused")
            .map(|e| serde_json::from_str(e["detail"].as_str().unwrap()).unwrap())
            .collect();
        assert_eq!(refused.len(), 1, "{tamper}: {events:?}");
        assert_eq!(refused[0]["reason"], "archive_tampered");
        assert_eq!(refused[0]["sandbox"], w.sandbox.as_str());
        assert_eq!(refused[0]["archive_sha256"], m["archive"]["sha256"]);
        let vols = app.state.sandboxes.backend.list_volumes().await.unwrap();
        assert!(
            vols.iter()
                .all(|v| v.labels.get("vre.ingress") != Some(&id)),
            "{tamper}: a refused staging left its volume: {vols:?}"
        );
        let (_, a) = app
            .get(&format!("/api/v1/applications/{id}"), Some(&w.ana))
            .await;
        assert_eq!(a["state"], "approved", "{tamper}");
    }
    // A staged application can go into a second sandbox of the project.
    let (st, b) = app
        .post(
            "/api/v1/sandboxes",
            Some(&w.ana),
            &json!({"project": "p1", "image": TEST_IMAGE, "ingress": [w.ingress]}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{b}");
    // Other project's analysts see no sandbox of p1 and cannot run in it.
    let (st, _) = app
        .post(
            &format!("/api/v1/sandboxes/{}/runs", w.sandbox),
            Some(&bob),
            &json!({"cmd": ["true"]}),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    // Removing a sandbox removes its volumes.
    let (st, _) = app
        .delete(&format!("/api/v1/sandboxes/{}", w.sandbox), Some(&w.ana))
        .await;
    assert_eq!(st, StatusCode::OK);
    let vols = app.state.sandboxes.backend.list_volumes().await.unwrap();
    assert!(
        vols.iter()
            .all(|v| v.labels.get("vre.sandbox") != Some(&w.sandbox)),
        "{vols:?}"
    );
    w.app.stop().await;
}

/// A sandbox route (allowing an image) answers that the engine is unavailable, and the gateway
/// stays healthy; the error's message.
async fn engine_unavailable(app: &TestApp) -> String {
    let op = app.token("op", "operator");
    let (st, b) = app
        .post("/api/v1/images", Some(&op), &json!({"name": TEST_IMAGE}))
        .await;
    assert_refused(
        st,
        &b,
        StatusCode::SERVICE_UNAVAILABLE,
        "engine_unavailable",
    );
    let (st, _) = app.get("/healthz", None).await;
    assert_eq!(st, StatusCode::OK);
    b["message"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn an_engine_that_is_down_gives_a_clear_error_and_the_rest_serves() {
    let app = TestApp::spawn_with(Engine::Sqlite, |s| {
        s.sandbox.docker_host = "unix:///nonexistent/docker.sock".into()
    })
    .await;
    app.project("p1", &[("ana", "analyst")]).await;
    engine_unavailable(&app).await;
    let id = app.application("access", "p1", "ana", "analyst").await;
    let (_, b) = app.vote(&id, "rev", "approve").await;
    assert_eq!(b["state"], "approved");
    app.stop().await;
}

/// The real binary, killed with SIGKILL during runs and started again on the same data dir.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_killed_during_runs_records_their_outcomes_after_restart() {
    use crate::ingress::{start_server, vre};
    if !docker_available() {
        return;
    }
    let dir = TempDir::new("restart-runs");
    let (child, url) = start_server(dir.path());
    // Whatever the gateways in other processes leave (the launcher's volume), gone at the end.
    let objects = crate::support::InstanceObjects(
        std::fs::read_to_string(dir.path().join("instance-id"))
            .unwrap()
            .trim()
            .to_owned(),
    );
    let d = dir.path().to_str().unwrap().to_owned();
    let token = |sub: &str, role: &str| issued_token(dir.path(), sub, role);
    let http = gateway::client::http_client(Some(&dir.path().join("tls/ca.pem"))).unwrap();
    let post = |path: String, t: String, body: Value| {
        let http = http.clone();
        let url = url.clone();
        async move { json_of(http.post(format!("{url}{path}")).bearer_auth(t).json(&body)).await }
    };
    let (admin, op, ana) = (
        token("root", "admin"),
        token("op", "operator"),
        token("ana", "analyst"),
    );
    // A gateway of its own, with the production default (`approved`): this project runs
    // ad-hoc commands.
    let (st, _) = post(
        "/api/v1/projects".into(),
        admin,
        json!({"id": "p1", "title": "P", "commands": "any",
               "members": [{"subject": "ana", "role": "analyst"}]}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, _) = post("/api/v1/images".into(), op, json!({"name": TEST_IMAGE})).await;
    assert_eq!(st, StatusCode::OK);
    let (st, sb) = post(
        "/api/v1/sandboxes".into(),
        ana.clone(),
        json!({"project": "p1", "image": TEST_IMAGE}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{sb}");
    let sb = sb["id"].as_str().unwrap().to_owned();
    let runs_path = format!("/api/v1/sandboxes/{sb}/runs");
    // One run that outlives the gateway and ends by itself; one whose container is removed
    // while the gateway is down.
    let (_, survivor) = post(
        runs_path.clone(),
        ana.clone(),
        json!({"cmd": ["sh", "-c", "sleep 4; echo survived; exit 5"]}),
    )
    .await;
    let (_, victim) = post(
        runs_path.clone(),
        ana.clone(),
        json!({"cmd": ["sleep", "60"]}),
    )
    .await;
    let (survivor, victim) = (
        survivor["id"].as_str().unwrap().to_owned(),
        victim["id"].as_str().unwrap().to_owned(),
    );
    let get = |url: String, id: String, t: String| {
        let http = http.clone();
        async move {
            json_of(http.get(format!("{url}/api/v1/runs/{id}")).bearer_auth(t))
                .await
                .1
        }
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    for id in [&survivor, &victim] {
        while get(url.clone(), id.clone(), ana.clone()).await["state"] != "running" {
            assert!(std::time::Instant::now() < deadline, "{id} never started");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // The container started ahead for the sandbox's next run, which the next process must
    // not take (it waits for this one's payload): removed at start.
    let standbys = || {
        let out = std::process::Command::new("docker")
            .args([
                "ps",
                "-a",
                "--format",
                "{{.Names}}",
                "--filter",
                "name=vre-standby-",
            ])
            .args(["--filter", &format!("label=vre.instance={}", objects.0)])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let ahead = loop {
        let names = standbys();
        if !names.is_empty() {
            break names;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "nothing started ahead"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    drop(child); // SIGKILL: the runs' containers go on without their supervisor.
    let gone = std::process::Command::new("docker")
        .args(["rm", "-f", &format!("vre-run-{victim}")])
        .output()
        .unwrap();
    assert!(gone.status.success());
    // An object of this gateway that no record knows: removed at start.
    let instance = std::fs::read_to_string(dir.path().join("instance-id")).unwrap();
    let orphan = std::process::Command::new("docker")
        .args([
            "create",
            "--network",
            "none",
            "--label",
            "vre.managed=1",
            "--label",
        ])
        .arg(format!("vre.instance={}", instance.trim()))
        .args(["--label", "vre.run=run-unknown", TEST_IMAGE, "true"])
        .output()
        .unwrap();
    assert_success(&orphan);
    let orphan_id = String::from_utf8(orphan.stdout).unwrap().trim().to_owned();

    let (_child, url) = start_server(dir.path());
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let (s, v) = loop {
        let s = get(url.clone(), survivor.clone(), ana.clone()).await;
        let v = get(url.clone(), victim.clone(), ana.clone()).await;
        if s["state"] == "finished" && v["state"] == "finished" {
            break (s, v);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "outcomes never recorded: {s} {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        (s["outcome"].as_str(), s["exit_code"].as_i64()),
        (Some("exited"), Some(5)),
        "{s}"
    );
    let log = text_of(
        http.get(format!("{url}/api/v1/runs/{survivor}/logs"))
            .bearer_auth(&ana),
    )
    .await;
    assert_eq!(log, "survived\n");
    assert_eq!(v["outcome"], "vanished", "{v}");
    let inspect = std::process::Command::new("docker")
        .args(["inspect", &orphan_id])
        .output()
        .unwrap();
    assert!(
        !inspect.status.success(),
        "the orphaned container is still there"
    );
    let left = standbys();
    assert!(
        ahead.iter().all(|a| !left.contains(a)),
        "started ahead by the killed gateway: {ahead:?}, left: {left:?}"
    );
    // Clean up the sandbox through the gateway.
    let r = http
        .delete(format!("{url}/api/v1/sandboxes/{sb}"))
        .bearer_auth(&ana)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let out = vre(&["audit", "verify", "--data-dir", &d], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extra_runs_queue_instead_of_failing() {
    if !docker_available() {
        return;
    }
    let (app, ana, _data) = small_world(|s| {
        s.sandbox.max_concurrent_runs = 4;
        s.sandbox.max_concurrent_runs_per_project = 1;
    })
    .await;
    let sb = new_sandbox(&app, &ana).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let (st, r) = app
            .post(
                &format!("/api/v1/sandboxes/{sb}/runs"),
                Some(&ana),
                &json!({"cmd": ["sh", "-c", format!("sleep 1; echo {i}")]}),
            )
            .await;
        assert_eq!(st, StatusCode::ACCEPTED);
        ids.push(r["id"].as_str().unwrap().to_owned());
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut max_running = 0;
    loop {
        let (_, runs) = app
            .get(&format!("/api/v1/sandboxes/{sb}/runs"), Some(&ana))
            .await;
        let runs = runs.as_array().unwrap().clone();
        let running = runs.iter().filter(|r| r["state"] == "running").count();
        max_running = max_running.max(running);
        assert_eq!(runs.len(), ids.len(), "{runs:?}");
        if runs.iter().all(|r| r["state"] == "finished") {
            assert!(
                runs.iter()
                    .all(|r| r["outcome"] == "exited" && r["exit_code"] == 0),
                "{runs:?}"
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{runs:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(max_running, 1, "one run at a time in the project");
    app.stop().await;
}

/// A run can be cancelled by the project's analysts and by operators, not by others: a
/// running one is killed at once, a queued one ends before it starts, one asked of another
/// gateway on the same database (written there, no wake-up here) stops within a second or so;
/// each is recorded as cancelled, with who asked, and audited. A finished run cannot be.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_is_cancelled_running_or_queued_by_those_allowed() {
    if !docker_available() {
        return;
    }
    let (app, ana, _data) = small_world(|s| s.sandbox.max_concurrent_runs_per_project = 1).await;
    let (op, rev) = (app.token("op", "operator"), app.token("rev", "reviewer"));
    let sb = new_sandbox(&app, &ana).await;
    let running = start_run(&app, &ana, &sb, &["sleep", "60"], None).await;
    app.run_reaching(&ana, &running, "running").await;
    let queued = start_run(&app, &ana, &sb, &["echo", "never"], None).await;
    let cancel = |id: &str| format!("/api/v1/runs/{id}/cancel");

    // Not a member of the project, nor an operator: refused, and nothing changes.
    let (st, b) = app.post(&cancel(&running), Some(&rev), &json!({})).await;
    assert!(
        matches!(st, StatusCode::FORBIDDEN | StatusCode::NOT_FOUND),
        "{st} {b}"
    );

    // The queued run ends where it is; the running one goes on meanwhile.
    let (st, b) = app.post(&cancel(&queued), Some(&ana), &json!({})).await;
    assert_eq!(
        (st, b["cancelled_by"].as_str()),
        (StatusCode::ACCEPTED, Some("ana")),
        "{b}"
    );
    let q = app.run_reaching(&ana, &queued, "finished").await;
    assert_eq!(
        (
            q["outcome"].as_str(),
            q["exit_code"].as_i64(),
            q["started_at"].as_str()
        ),
        (Some("cancelled"), Some(137), None),
        "{q}"
    );
    let (_, r) = app
        .get(&format!("/api/v1/runs/{running}"), Some(&ana))
        .await;
    assert_eq!(r["state"], "running", "{r}");

    // An operator stops the running one: killed at once, not at its deadline.
    let t0 = std::time::Instant::now();
    let (st, b) = app.post(&cancel(&running), Some(&op), &json!({})).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{b}");
    let r = app.run_reaching(&ana, &running, "finished").await;
    assert!(t0.elapsed() < Duration::from_secs(15), "{:?}", t0.elapsed());
    assert_eq!(
        (
            r["outcome"].as_str(),
            r["detail"].as_str(),
            r["cancelled_by"].as_str()
        ),
        (Some("cancelled"), Some("cancelled by op"), Some("op")),
        "{r}"
    );
    // Asking again is answered with the run; a run that ended by itself cannot be cancelled.
    let (st, _) = app.post(&cancel(&running), Some(&ana), &json!({})).await;
    assert_eq!(st, StatusCode::ACCEPTED);
    let (done, _) = run(&app, &ana, &sb, &["true"], None).await;
    let (st, b) = app
        .post(
            &cancel(done["id"].as_str().unwrap()),
            Some(&ana),
            &json!({}),
        )
        .await;
    assert_refused(st, &b, StatusCode::CONFLICT, "run_finished");

    // Asked of another gateway: only the database says so.
    let elsewhere = start_run(&app, &ana, &sb, &["sleep", "60"], None).await;
    app.run_reaching(&ana, &elsewhere, "running").await;
    {
        let mut conn = app.state.db.pool().acquire().await.unwrap();
        let asked = gateway::store::sandboxes::request_cancel(&mut conn, &elsewhere, "ana")
            .await
            .unwrap();
        assert!(asked);
    }
    let t0 = std::time::Instant::now();
    let r = app.run_reaching(&ana, &elsewhere, "finished").await;
    assert_eq!(r["outcome"], "cancelled", "{r}");
    assert!(t0.elapsed() < Duration::from_secs(15), "{:?}", t0.elapsed());

    let (_, events) = app
        .get(
            "/api/v1/audit?limit=1000",
            Some(&app.token("aud", "auditor")),
        )
        .await;
    let cancels: Vec<(&str, &str)> = events
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .filter(|e| e["action"] == "run.cancel")
        .map(|e| (e["actor"].as_str().unwrap(), e["subject"].as_str().unwrap()))
        .collect();
    assert_eq!(
        cancels,
        vec![("ana", queued.as_str()), ("op", running.as_str())],
        "{events}"
    );
    assert!(app.verify_audit().await.problem.is_none());
    app.stop().await;
}

/// A run started with `--detach` is followed with `vre logs -f` (exiting with its code), read
/// back whole with `vre logs`, and stopped with `vre cancel`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_detached_run_is_followed_read_and_cancelled_from_the_cli() {
    use crate::ingress::vre;
    if !docker_available() {
        return;
    }
    let (app, ana, _data) = small_world(|_| {}).await;
    let sb = new_sandbox(&app, &ana).await;
    let ca = app.dir.path().join("tls/ca.pem").display().to_string();
    let url = app.url.clone();
    let out = tokio::task::spawn_blocking(move || {
        let env = [
            ("VRE_URL", url.as_str()),
            ("VRE_CA", ca.as_str()),
            ("VRE_TOKEN", ana.as_str()),
        ];
        let text = |o: &std::process::Output| String::from_utf8_lossy(&o.stdout).trim().to_owned();
        let script = "echo one; sleep 0.5; echo two; exit 3";
        let started = vre(&["run", "--detach", &sb, "--", "sh", "-c", script], &env);
        let id = text(&started);
        let followed = vre(&["logs", "--follow", &id], &env);
        let read = vre(&["logs", &id], &env);
        let long = vre(&["run", "--detach", &sb, "--", "sleep", "60"], &env);
        let long = text(&long);
        let cancelled = vre(&["cancel", &long], &env);
        let after = vre(&["logs", "-f", &long], &env);
        (id, followed, read, long, cancelled, after)
    })
    .await
    .unwrap();
    let (id, followed, read, long, cancelled, after) = out;
    assert!(id.starts_with("run-"), "{id}");
    assert_eq!(
        (
            followed.status.code(),
            String::from_utf8_lossy(&followed.stdout).as_ref()
        ),
        (Some(3), "one\ntwo\n"),
        "{}",
        String::from_utf8_lossy(&followed.stderr)
    );
    assert_eq!(
        (
            read.status.code(),
            String::from_utf8_lossy(&read.stdout).as_ref()
        ),
        (Some(0), "one\ntwo\n")
    );
    assert_success(&cancelled);
    assert!(String::from_utf8_lossy(&cancelled.stdout).starts_with(&long));
    let stderr = String::from_utf8_lossy(&after.stderr);
    assert_eq!(after.status.code(), Some(137), "{stderr}");
    assert!(stderr.contains("cancelled by ana"), "{stderr}");
    app.stop().await;
}

/// Starts `vre ARGS` as `token`, waits for its first line of output (which must be
/// `started`), sends it Ctrl-C (SIGINT) and returns what it did then, and how long it took.
async fn interrupted(
    app: &TestApp,
    token: &str,
    args: &[&str],
) -> (std::process::Output, Duration) {
    let mut child = vre_command()
        .args(args)
        .env("VRE_URL", &app.url)
        .env("VRE_CA", app.dir.path().join("tls/ca.pem"))
        .env("VRE_TOKEN", token)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let first = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .unwrap();
        line
    })
    .await
    .unwrap();
    assert_eq!(first, "started\n");
    let t0 = std::time::Instant::now();
    let kill = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    (out, t0.elapsed())
}

/// Ctrl-C on `vre run` cancels the run and waits for its recorded end: the client exits with
/// the run's code and says why. Ctrl-C on `vre logs -f` only stops following: the run goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_on_vre_run_cancels_the_run() {
    if !docker_available() {
        return;
    }
    let (app, ana, _data) = small_world(|_| {}).await;
    let sb = new_sandbox(&app, &ana).await;
    let script = "echo started; sleep 60";
    let (out, took) = interrupted(&app, &ana, &["run", &sb, "--", "sh", "-c", script]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(137), "{stderr}");
    assert!(
        stderr.contains("cancelling run") && stderr.contains("cancelled by ana"),
        "{stderr}"
    );
    assert!(took < Duration::from_secs(15), "{took:?}");

    let id = start_run(&app, &ana, &sb, &["sh", "-c", script], None).await;
    let (out, _) = interrupted(&app, &ana, &["logs", "-f", &id]).await;
    assert_ne!(out.status.code(), Some(137), "{out:?}");
    let (_, r) = app.get(&format!("/api/v1/runs/{id}"), Some(&ana)).await;
    assert_eq!(
        (r["state"].as_str(), &r["cancelled_by"]),
        (Some("running"), &Value::Null),
        "{r}"
    );
    let (st, _) = app
        .post(&format!("/api/v1/runs/{id}/cancel"), Some(&ana), &json!({}))
        .await;
    assert_eq!(st, StatusCode::ACCEPTED);
    app.run_reaching(&ana, &id, "finished").await;
    app.stop().await;
}

/// A run's container is removed after its end is recorded, so an analyst who removes the
/// sandbox the moment the run is finished races that removal: it must still succeed and leave
/// nothing on the engine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandbox_removed_as_its_run_finishes_leaves_nothing() {
    if !docker_available() {
        return;
    }
    let (app, ana, _data) = small_world(|_| {}).await;
    for _ in 0..3 {
        let sb = new_sandbox(&app, &ana).await;
        let (st, r) = app
            .post(
                &format!("/api/v1/sandboxes/{sb}/runs"),
                Some(&ana),
                &json!({"cmd": ["true"]}),
            )
            .await;
        assert_eq!(st, StatusCode::ACCEPTED, "{r}");
        let id = r["id"].as_str().unwrap().to_owned();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let (_, r) = app.get(&format!("/api/v1/runs/{id}"), Some(&ana)).await;
            if r["state"] == "finished" {
                assert_eq!(r["exit_code"], 0, "{r}");
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{r}");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let (st, r) = app
            .delete(&format!("/api/v1/sandboxes/{sb}"), Some(&ana))
            .await;
        assert_eq!(st, StatusCode::OK, "{r}");
        assert_eq!(r["state"], "removed");
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while let Err(left) = only_the_launcher_left(&app).await {
        assert!(std::time::Instant::now() < deadline, "{left}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.stop().await;
}

/// Whether the gateway's objects on the engine are down to the launcher's volume (which
/// belongs to the gateway, not to a sandbox); what else is left, when not.
async fn only_the_launcher_left(app: &TestApp) -> Result<(), String> {
    let backend = &app.state.sandboxes.backend;
    let c = backend.list_containers().await.unwrap();
    let v = backend.list_volumes().await.unwrap();
    let others: Vec<_> = v
        .iter()
        .filter(|v| v.labels.get("vre.role").map(String::as_str) != Some("launcher"))
        .collect();
    if c.is_empty() && others.is_empty() && v.len() == 1 {
        Ok(())
    } else {
        Err(format!("{c:?} {v:?}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_request_with_wait_answers_when_the_run_ends() {
    if !docker_available() {
        return;
    }
    let w = world().await;
    let cmd = ["sh", "-c", "echo one; sleep 2; echo two; exit 3"];
    let id = start_run(&w.app, &w.ana, &w.sandbox, &cmd, None).await;
    // Without waiting: as it is now.
    let (_, now) = w.app.get(&format!("/api/v1/runs/{id}"), Some(&w.ana)).await;
    assert_ne!(now["state"], "finished", "{now}");
    // Following the log while waiting for the end: the log comes as it is written.
    let follow = {
        let http = w.app.http.clone();
        let url = format!("{}/api/v1/runs/{id}/logs?follow=true", w.app.url);
        let token = w.ana.clone();
        tokio::spawn(async move {
            let mut resp = http.get(url).bearer_auth(token).send().await.unwrap();
            let first = resp.chunk().await.unwrap().unwrap_or_default();
            let mut rest = Vec::new();
            while let Some(c) = resp.chunk().await.unwrap() {
                rest.extend_from_slice(&c);
            }
            (first, rest)
        })
    };
    let asked = std::time::Instant::now();
    let (st, done) = w
        .app
        .get(&format!("/api/v1/runs/{id}?wait=50"), Some(&w.ana))
        .await;
    assert_eq!(st, StatusCode::OK, "{done}");
    assert_eq!(
        done["state"], "finished",
        "the answer came before the end: {done}"
    );
    assert_eq!(
        (done["outcome"].as_str(), done["exit_code"].as_i64()),
        (Some("exited"), Some(3))
    );
    assert!(
        asked.elapsed() < Duration::from_secs(40),
        "the answer waited for the limit, not for the end"
    );
    let (first, rest) = follow.await.unwrap();
    assert_eq!(
        String::from_utf8_lossy(&first),
        "one\n",
        "the first line came on its own"
    );
    assert_eq!(String::from_utf8_lossy(&rest), "two\n");
    // An ended run answers at once, wait or not; a wait past the limit is refused, as the
    // schema says.
    let (st, again) = w
        .app
        .get(&format!("/api/v1/runs/{id}?wait=60"), Some(&w.ana))
        .await;
    assert_eq!((st, &again), (StatusCode::OK, &done));
    let (st, b) = w
        .app
        .get(&format!("/api/v1/runs/{id}?wait=61"), Some(&w.ana))
        .await;
    assert_refused(st, &b, StatusCode::BAD_REQUEST, "bad_filter");
    let (st, b) = w
        .app
        .get(&format!("/api/v1/runs/{id}?wait=soon"), Some(&w.ana))
        .await;
    assert_refused(st, &b, StatusCode::BAD_REQUEST, "bad_request");
    w.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vre_run_streams_output_and_exits_with_the_runs_code() {
    use crate::ingress::vre;
    if !docker_available() {
        return;
    }
    let w = world().await;
    let ca = w.app.dir.path().join("tls/ca.pem");
    let env = [
        ("VRE_URL", w.app.url.as_str()),
        ("VRE_CA", ca.to_str().unwrap()),
        ("VRE_TOKEN", w.ana.as_str()),
    ];
    let sb = w.sandbox.clone();
    let e: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let out = tokio::task::spawn_blocking(move || {
        let env: Vec<(&str, &str)> = e.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let a = vre(
            &[
                "run",
                &sb,
                "--",
                "sh",
                "-c",
                "echo one; sleep 1; echo two; exit 4",
            ],
            &env,
        );
        let b = vre(&["run", &sb, "--timeout", "1s", "--", "sleep", "30"], &env);
        (a, b)
    })
    .await
    .unwrap();
    let (a, b) = out;
    assert_eq!(
        a.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&a.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&a.stdout), "one\ntwo\n");
    assert_eq!(b.status.code(), Some(137));
    assert!(
        String::from_utf8_lossy(&b.stderr).contains("timed_out"),
        "{}",
        String::from_utf8_lossy(&b.stderr)
    );
    w.app.stop().await;
}

/// The containers the backend holds started ahead, by sandbox: (sandbox, container ID).
async fn started_ahead(app: &TestApp) -> Vec<(String, String)> {
    let backend = &app.state.sandboxes.backend;
    let mut held: Vec<_> = backend
        .list_containers()
        .await
        .unwrap()
        .into_iter()
        .filter(|c| backend.holds(c))
        .map(|c| (c.labels["vre.sandbox"].clone(), c.name))
        .collect();
    held.sort();
    held
}

/// The container a run was recorded in.
async fn container_of(app: &TestApp, run: &str) -> String {
    let mut conn = app.state.db.pool().acquire().await.unwrap();
    gateway::store::sandboxes::run(&mut conn, run)
        .await
        .unwrap()
        .unwrap()
        .container_id
        .unwrap()
}

/// Waits until the sandbox has a container started ahead, running (its launcher waiting for a
/// command); returns its ID.
async fn ready_ahead(app: &TestApp, sandbox: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some((_, id)) = started_ahead(app)
            .await
            .into_iter()
            .find(|(s, _)| s == sandbox)
        {
            let state = app.state.sandboxes.backend.state(&id).await;
            if matches!(state, Ok(sandbox_runner::RunState::Running)) {
                return id;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "nothing started ahead"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_takes_the_container_started_ahead_for_it_and_gets_only_its_command() {
    if !docker_available() {
        return;
    }
    let w = world().await;
    let (app, ana, sb) = (&w.app, &w.ana, &w.sandbox);
    // A container is started ahead as the sandbox is made: its first run takes it, and one
    // is started ahead for the next.
    let first = ready_ahead(app, sb).await;
    let (r, _) = run(app, ana, sb, &["true"], None).await;
    assert_eq!(r["exit_code"], 0, "{r}");
    assert_eq!(container_of(app, r["id"].as_str().unwrap()).await, first);
    let ahead = ready_ahead(app, sb).await;

    // The next run takes that very container, named after it, and nothing of the launcher
    // is left: its command, its environment, standard input at end of file, no signal
    // ignored, the program as the init's child.
    let script = "echo \"run=$VRE_RUN sandbox=$VRE_SANDBOX\"; cat; echo stdin-empty; \
                  grep -E '^Sig(Ign|Blk)' /proc/self/status; cat /proc/1/cmdline | tr '\\0' ' '; \
                  echo; ls /vre/launch; exit 3";
    let (done, log) = run(app, ana, sb, &["sh", "-c", script], None).await;
    let id = done["id"].as_str().unwrap().to_owned();
    assert_eq!(
        container_of(app, &id).await,
        ahead,
        "the run took the container started ahead"
    );
    assert_eq!(
        (done["outcome"].as_str(), done["exit_code"].as_i64()),
        (Some("exited"), Some(3)),
        "{done}"
    );
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines[0], format!("run={id} sandbox={sb}"), "{log}");
    assert_eq!(lines[1], "stdin-empty", "standard input is empty: {log}");
    assert_eq!(lines[2], "SigBlk:\t0000000000000000", "{log}");
    assert_eq!(lines[3], "SigIgn:\t0000000000000000", "{log}");
    assert!(
        lines[4].starts_with("/sbin/docker-init -- /vre/launch/vre-launch"),
        "{log}"
    );
    assert_eq!(lines[5], "vre-launch", "{log}");

    // A command that does not exist is the program's failure, as a shell reports it.
    let _ = ready_ahead(app, sb).await;
    let (r, log) = run(app, ana, sb, &["no-such-program", "x"], None).await;
    assert_eq!(
        (r["outcome"].as_str(), r["exit_code"].as_i64()),
        (Some("exited"), Some(127)),
        "{r}"
    );
    assert!(log.contains("vre: cannot run no-such-program"), "{log}");

    // One removed behind the gateway's back is not taken: the run makes its own.
    let gone = ready_ahead(app, sb).await;
    let rm = std::process::Command::new("docker")
        .args(["rm", "-f", &gone])
        .output()
        .unwrap();
    assert!(rm.status.success());
    let (r, _) = run(app, ana, sb, &["true"], None).await;
    assert_eq!(
        (r["outcome"].as_str(), r["exit_code"].as_i64()),
        (Some("exited"), Some(0)),
        "{r}"
    );
    assert_ne!(container_of(app, r["id"].as_str().unwrap()).await, gone);

    // A staging changes what the sandbox's runs mount: the container started before it is not
    // used, and the run sees the new archive.
    let before = ready_ahead(app, sb).await;
    let second = upload(app, ana, "p1", b"#!/bin/sh\necho second\n").await;
    let (_, b) = app.vote(&second, "rev", "approve").await;
    assert_eq!(b["state"], "approved");
    let (st, b) = app
        .post(
            &format!("/api/v1/sandboxes/{sb}/ingress"),
            Some(ana),
            &json!({"application": second}),
        )
        .await;
    assert!(st.is_success(), "{b}");
    let (r, log) = run(
        app,
        ana,
        sb,
        &["sh", "-c", &format!("/vre/ingress/{second}/run.sh")],
        None,
    )
    .await;
    assert_eq!(
        (r["exit_code"].as_i64(), log.as_str()),
        (Some(0), "second\n"),
        "{r}"
    );
    assert_ne!(container_of(app, r["id"].as_str().unwrap()).await, before);
    // The one made before the staging is gone; one of the new profile takes its place.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let held = started_ahead(app).await;
        let exists = std::process::Command::new("docker")
            .args(["inspect", &before])
            .output()
            .unwrap()
            .status
            .success();
        if !exists && held.len() == 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{held:?}, old one there: {exists}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Operators see how runs started and ended: only the run after the removal made its own
    // (the staging had one of the new profile started ahead at once).
    let op = app.token("op", "operator");
    let metrics = text_of(
        app.http
            .get(format!("{}/metrics", app.url))
            .bearer_auth(&op),
    )
    .await;
    for line in [
        "vre_runs_started_total{container=\"ahead\"} 4",
        "vre_runs_started_total{container=\"made\"} 1",
        "vre_runs_finished_total{outcome=\"exited\"} 5",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
    }

    // Removing the sandbox removes its container started ahead (and a graceful stop, as
    // `TestApp::stop` checks, leaves none of the others).
    let (st, _) = app
        .delete(&format!("/api/v1/sandboxes/{sb}"), Some(ana))
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(started_ahead(app).await, Vec::new());
    assert!(app.verify_audit().await.problem.is_none());
    w.app.stop().await;
}

/// A Docker engine of the test's own (data, sockets and containerd apart from the shared one),
/// with live restore: it can be restarted without disturbing other tests. Stopped, and its
/// data removed, on drop.
struct PrivateEngine {
    dir: TempDir,
    child: Option<std::process::Child>,
    /// Its data root is a file system of its own mount namespace: this host cannot read its
    /// volumes, as if it ran on another machine.
    hidden: bool,
    /// Also listening on 127.0.0.1 at this port, with mutual TLS ([`engine_certs`]).
    tcp: Option<u16>,
}

impl PrivateEngine {
    /// None where the tests do not run as root (unless `VRE_TEST_REQUIRE_ROOT=1`); a dockerd
    /// that does not start fails the test.
    fn start() -> Option<PrivateEngine> {
        Self::start_with(false)
    }

    /// One as on another machine: its volumes cannot be read from here
    /// ([`PrivateEngine::hidden`]) and it is reached over TCP with mutual TLS.
    fn start_remote() -> Option<PrivateEngine> {
        Self::start_with(true)
    }

    fn start_with(hidden: bool) -> Option<PrivateEngine> {
        if !root_available("a test with a Docker engine of its own") {
            return None;
        }
        let mut e = PrivateEngine {
            dir: TempDir::new("engine"),
            child: None,
            hidden,
            tcp: None,
        };
        if hidden {
            engine_certs(&e.dir.path().join("tls"), "engine");
            let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            e.tcp = Some(free.local_addr().unwrap().port());
        }
        e.launch();
        // The test image, from the shared engine.
        let mut save = std::process::Command::new("docker")
            .args(["save", TEST_IMAGE])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let load = std::process::Command::new("docker")
            .args(["-H", &e.host(), "load"])
            .stdin(save.stdout.take().unwrap())
            .output()
            .unwrap();
        assert!(save.wait().unwrap().success());
        assert_success(&load);
        Some(e)
    }

    fn host(&self) -> String {
        format!("unix://{}", self.dir.path().join("docker.sock").display())
    }

    fn launch(&mut self) {
        let d = self.dir.path();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.join("dockerd.log"))
            .unwrap();
        let mut dockerd = if self.hidden {
            std::fs::create_dir_all(d.join("root")).unwrap();
            let mut c = std::process::Command::new("unshare");
            c.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
                .arg("mount -t tmpfs -o mode=0711 vre-hidden \"$0\" && exec dockerd \"$@\"")
                .arg(d.join("root"));
            c
        } else {
            std::process::Command::new("dockerd")
        };
        let child = dockerd
            .arg("--data-root")
            .arg(d.join("root"))
            .arg("--exec-root")
            .arg(d.join("exec"))
            .arg("--pidfile")
            .arg(d.join("dockerd.pid"))
            .args(["-H", &self.host()])
            .args([
                "--containerd-namespace",
                "vre-test",
                "--containerd-plugins-namespace",
                "vre-test-plugins",
            ])
            .args([
                "--bridge=none",
                "--iptables=false",
                "--ip-forward=false",
                "--ip-masq=false",
            ])
            .args(["--live-restore", "--log-level=warn"])
            // gVisor as on the shared engine, where it is installed.
            .args(std::path::Path::new("/usr/bin/runsc").exists().then(|| {
                format!(
                    "--add-runtime=runsc={}/../deploy/docker/runsc",
                    env!("CARGO_MANIFEST_DIR")
                )
            }))
            .args(self.tcp.iter().flat_map(|port| {
                let tls = d.join("tls");
                [
                    "-H".to_owned(),
                    format!("tcp://127.0.0.1:{port}"),
                    "--tlsverify".to_owned(),
                    format!("--tlscacert={}", tls.join("ca.pem").display()),
                    format!("--tlscert={}", tls.join("server-cert.pem").display()),
                    format!("--tlskey={}", tls.join("server-key.pem").display()),
                ]
            }))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("dockerd runs");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !std::process::Command::new("docker")
            .args(["-H", &self.host(), "info"])
            .output()
            .is_ok_and(|o| o.status.success())
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the test's engine did not start: {}",
                std::fs::read_to_string(d.join("dockerd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the engine (SIGTERM, as an operator's restart does); live restore keeps its
    /// containers running.
    fn halt(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = std::process::Command::new("kill")
                .arg(c.id().to_string())
                .status();
            let _ = c.wait();
        }
    }
}

/// A CA of its own (`ca.pem`), a certificate for 127.0.0.1 (`server-*.pem`) and a client's
/// (`client-*.pem`), all signed by it, in `dir`.
fn engine_certs(dir: &std::path::Path, name: &str) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    std::fs::create_dir_all(dir).unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.distinguished_name
        .push(DnType::CommonName, format!("{name} CA"));
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    let issuer = Issuer::new(ca, &ca_key);
    for (who, sans, usage) in [
        (
            "server",
            vec!["127.0.0.1".to_owned()],
            ExtendedKeyUsagePurpose::ServerAuth,
        ),
        ("client", Vec::new(), ExtendedKeyUsagePurpose::ClientAuth),
    ] {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(sans).unwrap();
        p.extended_key_usages = vec![usage];
        p.distinguished_name
            .push(DnType::CommonName, format!("{name} {who}"));
        let cert = p.signed_by(&key, &issuer).unwrap();
        std::fs::write(dir.join(format!("{who}-cert.pem")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{who}-key.pem")), key.serialize_pem()).unwrap();
    }
}

impl Drop for PrivateEngine {
    fn drop(&mut self) {
        if self.child.is_none() {
            self.launch();
        }
        let h = self.host();
        let ids = std::process::Command::new("docker")
            .args(["-H", &h, "ps", "-aq"])
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .split_whitespace()
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        if !ids.is_empty() {
            let _ = std::process::Command::new("docker")
                .args(["-H", &h, "rm", "-f"])
                .args(&ids)
                .output();
        }
        self.halt();
        // What the engine mounted under its root, then the rest.
        let _ = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "grep -o ' {0}[^ ]*' /proc/mounts | sort -r | xargs -r -n1 umount -l",
                self.dir.path().display()
            ))
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_goes_on_and_keeps_all_its_output_across_an_engine_restart() {
    if !docker_available() {
        return;
    }
    let Some(mut engine) = PrivateEngine::start() else {
        return;
    };
    let host = engine.host();
    let (app, ana, _data) = small_world(|s| s.sandbox.docker_host = host).await;
    let sb = new_sandbox(&app, &ana).await;
    // A first run, so that a container is started ahead before the restart too.
    let (r, _) = run(&app, &ana, &sb, &["true"], None).await;
    assert_eq!(r["exit_code"], 0, "{r}");
    let _ = ready_ahead(&app, &sb).await;

    let script = "for i in $(seq 1 25); do echo out-$i; echo err-$i >&2; sleep 0.2; done";
    let id = start_run(&app, &ana, &sb, &["sh", "-c", script], None).await;
    // Once it is well under way, the engine restarts.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let log = tokio::fs::read_to_string(app.state.sandboxes.log_path(&id))
            .await
            .unwrap_or_default();
        if log.contains("out-3\n") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no output: {log:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::task::block_in_place(|| {
        engine.halt();
        std::thread::sleep(Duration::from_secs(1));
        engine.launch();
    });
    let done = app.run_reaching(&ana, &id, "finished").await;
    assert_eq!(
        (done["outcome"].as_str(), done["exit_code"].as_i64()),
        (Some("exited"), Some(0)),
        "{done}"
    );
    let log = text_of(
        app.http
            .get(format!("{}/api/v1/runs/{id}/logs", app.url))
            .bearer_auth(&ana),
    )
    .await;
    // Every line once, each stream in its order.
    for stream in ["out", "err"] {
        let lines: Vec<&str> = log.lines().filter(|l| l.starts_with(stream)).collect();
        let want: Vec<String> = (1..=25).map(|i| format!("{stream}-{i}")).collect();
        assert_eq!(lines, want, "{log}");
    }
    assert_eq!(log.lines().count(), 50, "{log}");

    // The container started ahead did not live through the restart: the next run makes its
    // own and succeeds.
    let (r, log) = run(&app, &ana, &sb, &["echo", "after"], None).await;
    assert_eq!(
        (r["exit_code"].as_i64(), log.as_str()),
        (Some(0), "after\n"),
        "{r}"
    );
    assert!(app.verify_audit().await.problem.is_none());
    app.stop().await;
    drop(engine);
}

/// A run that takes `block` of memory at once is reported as killed for memory.
async fn oom_killed(app: &TestApp, ana: &str, sb: &str, block: &str) {
    let bs = format!("bs={block}");
    let hog = ["dd", "if=/dev/zero", "of=/dev/null", bs.as_str(), "count=1"];
    let (r, _) = run(app, ana, sb, &hog, None).await;
    assert_eq!(
        (r["outcome"].as_str(), r["exit_code"].as_i64()),
        (Some("oom_killed"), Some(137)),
        "{r}"
    );
}

/// Fills the output folder past the tiny class's quota twice: quickly (the run exits before
/// the next measurement, so it is measured once more at its end) and slowly, into a folder the
/// run made unreadable (through a descriptor opened before). Both are stopped and reported;
/// the folder is emptied after.
async fn past_the_quota(app: &TestApp, ana: &str, sb: &str) {
    let quick = [
        "dd",
        "if=/dev/zero",
        "of=/vre/output/big",
        "bs=1M",
        "count=20",
    ];
    let (r, _) = run(app, ana, sb, &quick, None).await;
    assert_eq!(r["outcome"], "output_quota_exceeded", "{r}");
    let slow = "rm -f /vre/output/big; mkdir /vre/output/d; exec 3>>/vre/output/d/slow; chmod 0 /vre/output/d; \
                while true; do head -c 65536 /dev/zero >&3; sleep 0.1; done";
    let (r, _) = run(app, ana, sb, &["sh", "-c", slow], Some(30)).await;
    assert_eq!(r["outcome"], "output_quota_exceeded", "{r}");
    let empty =
        "chmod 700 /vre/output/d && rm -rf /vre/output/* && [ -z \"$(ls -A /vre/output)\" ]";
    let (r, _) = run(app, ana, sb, &["sh", "-c", empty], None).await;
    assert_eq!(r["exit_code"], 0, "{r}");
}

/// An engine as on another machine: reached over TCP with mutual TLS, its volumes unreadable
/// from the gateway's host. Runs work as on the local engine, and the output quota still holds,
/// measured on the engine's side, also over a folder the sandbox made unreadable. A client the
/// engine does not trust, or an engine the gateway does not, gets nowhere and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_engine_over_tls_runs_sandboxes_and_keeps_their_quota() {
    if !docker_available() {
        return;
    }
    let Some(engine) = PrivateEngine::start_remote() else {
        return;
    };
    let host = engine.host();
    let tcp = format!("tcp://127.0.0.1:{}", engine.tcp.unwrap());
    let tls = engine.dir.path().join("tls");
    let remote = |s: &mut gateway::config::Settings, certs: &std::path::Path| {
        s.sandbox.docker_host = tcp.clone();
        s.sandbox.docker_tls_ca = Some(tls.join("ca.pem"));
        s.sandbox.docker_tls_cert = Some(certs.join("client-cert.pem"));
        s.sandbox.docker_tls_key = Some(certs.join("client-key.pem"));
    };

    // Certificates of another CA: the engine refuses the client, and the client the engine.
    let stranger = TempDir::new("stranger");
    engine_certs(stranger.path(), "stranger");
    let refusals = [
        // Refused in the handshake; how the client learns it depends on when it sent.
        (tls.clone(), stranger.path(), ""),
        (
            stranger.path().to_path_buf(),
            tls.as_path(),
            "invalid peer certificate: UnknownIssuer",
        ),
    ];
    for (ca, client, why) in refusals {
        let app = TestApp::spawn_with(Engine::Sqlite, |s| {
            remote(s, client);
            s.sandbox.docker_tls_ca = Some(ca.join("ca.pem"));
        })
        .await;
        let message = engine_unavailable(&app).await;
        assert!(message.contains(why), "{message}");
        app.stop().await;
    }

    let (app, ana, _data) = small_world(|s| remote(s, &tls)).await;
    let sb = new_sandbox(&app, &ana).await;
    let inspect = std::process::Command::new("docker")
        .args(["-H", &host, "volume", "inspect", "-f", "{{.Mountpoint}}"])
        .arg(format!("vre-{sb}-output"))
        .output()
        .unwrap();
    let mountpoint = String::from_utf8_lossy(&inspect.stdout).trim().to_owned();
    assert!(
        inspect.status.success() && !mountpoint.is_empty(),
        "{inspect:?}"
    );
    assert!(
        std::fs::read_dir(&mountpoint).is_err(),
        "{mountpoint} is readable here"
    );

    // Under the quota: the run ends as it would.
    let (r, log) = run(
        &app,
        &ana,
        &sb,
        &["sh", "-c", "echo kept > /vre/output/a && cat /vre/output/a"],
        None,
    )
    .await;
    assert_eq!(
        (r["outcome"].as_str(), log.as_str()),
        (Some("exited"), "kept\n"),
        "{r}"
    );
    past_the_quota(&app, &ana, &sb).await;

    app.stop().await;
    // No measuring container is left behind.
    let ps = std::process::Command::new("docker")
        .args(["-H", &host, "ps", "-aq"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&ps.stdout).trim(),
        "",
        "containers left"
    );
    drop(engine);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_sandboxes_used_last_keep_a_container_ahead() {
    if !docker_available() {
        return;
    }
    let (app, ana, _data) = small_world(|s| s.sandbox.standby_containers = 1).await;
    let (a, b) = (
        &new_sandbox(&app, &ana).await,
        &new_sandbox(&app, &ana).await,
    );
    // The second sandbox made took the one place: the first's container is removed.
    let b_ahead = ready_ahead(&app, b).await;
    let held: Vec<String> = started_ahead(&app)
        .await
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(held, vec![b.clone()]);
    // A run in the first makes its own container, and takes the place back.
    let (r, _) = run(&app, &ana, a, &["true"], None).await;
    assert_eq!(r["exit_code"], 0, "{r}");
    let _ = ready_ahead(&app, a).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while app.state.sandboxes.backend.state(&b_ahead).await.unwrap()
        != sandbox_runner::RunState::Missing
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the evicted container stays"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let held: Vec<String> = started_ahead(&app)
        .await
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(held, vec![a.clone()]);
    // The other sandbox's runs still work, in containers made for them.
    let (r, log) = run(&app, &ana, b, &["echo", "made"], None).await;
    assert_eq!((r["exit_code"].as_i64(), log.as_str()), (Some(0), "made\n"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_is_recorded_alike_on_every_database() {
    if !docker_available() {
        return;
    }
    for engine in crate::support::engines() {
        let (app, ana, _data) = small_world_on(engine, |_| {}).await;
        let sb = new_sandbox(&app, &ana).await;
        let script = "echo out; echo err >&2; exit 4";
        let (r, log) = run(&app, &ana, &sb, &["sh", "-c", script], None).await;
        let id = r["id"].as_str().unwrap().to_owned();
        assert_eq!(
            (r["outcome"].as_str(), r["exit_code"].as_i64()),
            (Some("exited"), Some(4)),
            "{engine:?}: {r}"
        );
        assert_eq!(
            log.lines().collect::<std::collections::BTreeSet<_>>(),
            ["err", "out"].into()
        );
        assert_eq!(r["log_sha256"], gateway::sha256_hex(log.as_bytes()));
        // Both recorded, and in order.
        let at = |k: &str| {
            let t = r[k].as_str().unwrap_or_else(|| panic!("no {k}: {r}"));
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                .unwrap_or_else(|e| panic!("{k} {t:?}: {e}"))
        };
        assert!(at("started_at") <= at("finished_at"), "{engine:?}: {r}");
        let (st, runs) = app
            .get(&format!("/api/v1/sandboxes/{sb}/runs"), Some(&ana))
            .await;
        assert_eq!(st, StatusCode::OK, "{runs}");
        assert!(
            runs.as_array()
                .unwrap()
                .iter()
                .any(|x| x["id"] == id.as_str()),
            "{runs}"
        );
        // The audit log tells the run's story: asked for, started (in which container, and
        // whether it was started ahead), finished with its outcome and the log's digest, and
        // its output read by its analyst (above).
        let events = app.audit_events(&id).await;
        assert_eq!(
            actions(&events)[1..],
            ["run.start", "run.finish", "run.logs_read"],
            "{engine:?}: {events:?}"
        );
        let detail = |i: usize| -> Value {
            serde_json::from_str(events[i]["detail"].as_str().unwrap()).unwrap()
        };
        let start = detail(1);
        assert_eq!(start["started_ahead"], true, "{start}");
        assert!(
            start["container"].as_str().is_some_and(|c| !c.is_empty()),
            "{start}"
        );
        assert_eq!(detail(2)["log_sha256"], r["log_sha256"]);
        assert!(app.verify_audit().await.problem.is_none());
        app.stop().await;
    }
}

/// A gateway with the tiny class, and a sandbox of p1 that ana may use: the gateway, ana's
/// token, the sandbox, the dataset's directory. None without an engine.
async fn tiny_sandbox() -> Option<(TestApp, String, String, TempDir)> {
    if !docker_available() {
        return None;
    }
    let (app, ana, data) = small_world(|_| {}).await;
    let sb = new_sandbox(&app, &ana).await;
    Some((app, ana, sb, data))
}

/// The audit event that recorded a run's end.
async fn finish_event(app: &TestApp, run: &str) -> Value {
    let auditor = app.token("aud", "auditor");
    let (st, events) = app
        .get(&format!("/api/v1/audit?subject={run}"), Some(&auditor))
        .await;
    assert_eq!(st, StatusCode::OK, "{events}");
    let finish = events
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "run.finish")
        .unwrap_or_else(|| panic!("no run.finish: {events}"));
    serde_json::from_str(finish["detail"].as_str().unwrap()).unwrap()
}

/// Fills the work area past the tiny class's quota twice: quickly (measured once more at the
/// end) and slowly, into a folder the run made unreadable. Both are stopped, recorded with
/// why, and audited; the work area is emptied after.
async fn past_the_work_quota(app: &TestApp, ana: &str, sb: &str) {
    let quick = [
        "dd",
        "if=/dev/zero",
        "of=/vre/work/big",
        "bs=1M",
        "count=20",
    ];
    let (r, _) = run(app, ana, sb, &quick, None).await;
    assert_eq!(
        (r["outcome"].as_str(), r["exit_code"].as_i64()),
        (Some("work_quota_exceeded"), Some(137)),
        "{r}"
    );
    assert!(
        r["detail"]
            .as_str()
            .is_some_and(|d| d.contains("work area")),
        "{r}"
    );
    let audited = finish_event(app, r["id"].as_str().unwrap()).await;
    assert_eq!(audited["outcome"], "work_quota_exceeded", "{audited}");
    let slow = "rm -f /vre/work/big; mkdir /vre/work/d; exec 3>>/vre/work/d/slow; chmod 0 /vre/work/d; \
                while true; do head -c 65536 /dev/zero >&3; sleep 0.1; done";
    let (r, _) = run(app, ana, sb, &["sh", "-c", slow], Some(30)).await;
    assert_eq!(r["outcome"], "work_quota_exceeded", "{r}");
    let empty = "chmod 700 /vre/work/d && rm -rf /vre/work/* && [ -z \"$(ls -A /vre/work)\" ]";
    let (r, _) = run(app, ana, sb, &["sh", "-c", empty], None).await;
    assert_eq!(r["exit_code"], 0, "{r}");
}

/// 20 nested folders of 250 characters below the output folder (a path past PATH_MAX, made
/// with `cd` step by step), and then past the quota in the deepest.
const DEEP_OUTPUT: &str = "n=$(head -c 250 /dev/zero | tr '\\0' n); cd /vre/output || exit 9; \
     i=0; while [ $i -lt 20 ]; do mkdir $n && cd -P $n || exit 9; i=$((i+1)); done; \
     dd if=/dev/zero of=big bs=1M count=20";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_work_area_filled_past_its_quota_is_stopped_and_reported() {
    let Some((app, ana, sb, _data)) = tiny_sandbox().await else {
        return;
    };
    // Under the quota: the run ends as it would.
    let under = "head -c 1000000 /dev/zero > /vre/work/a && rm /vre/work/a";
    let (r, _) = run(&app, &ana, &sb, &["sh", "-c", under], None).await;
    assert_eq!(
        (r["outcome"].as_str(), r["exit_code"].as_i64()),
        (Some("exited"), Some(0)),
        "{r}"
    );
    past_the_work_quota(&app, &ana, &sb).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_folder_deeper_than_path_max_keeps_its_quota() {
    let Some((app, ana, sb, _data)) = tiny_sandbox().await else {
        return;
    };
    let (r, _) = run(&app, &ana, &sb, &["sh", "-c", DEEP_OUTPUT], None).await;
    assert_eq!(r["outcome"], "output_quota_exceeded", "{r}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sparse_files_count_their_size_and_hard_links_count_once() {
    let Some((app, ana, sb, _data)) = tiny_sandbox().await else {
        return;
    };
    // 1.5 MiB under ten more names: still 1.5 MiB of a 2 MiB quota.
    let linked = "head -c 1572864 /dev/zero > /vre/output/f && \
                  for i in 0 1 2 3 4 5 6 7 8 9; do ln /vre/output/f /vre/output/l$i || exit 9; done; \
                  sleep 1.2; rm /vre/output/*";
    let (r, _) = run(&app, &ana, &sb, &["sh", "-c", linked], None).await;
    assert_eq!(
        (r["outcome"].as_str(), r["exit_code"].as_i64()),
        (Some("exited"), Some(0)),
        "{r}"
    );
    // A sparse file of 100 GiB takes no block, and counts 100 GiB.
    let sparse = ["truncate", "-s", "100G", "/vre/output/sparse"];
    let (r, _) = run(&app, &ana, &sb, &sparse, None).await;
    assert_eq!(r["outcome"], "output_quota_exceeded", "{r}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_in_a_sandboxs_volumes_are_never_followed() {
    let Some((app, ana, sb, _data)) = tiny_sandbox().await else {
        return;
    };
    // Links to the root (of the run, and of whoever walks the folder), to the folder itself,
    // in a loop; and a folder swapped with a link to the root while the walks go on.
    let links = "cd /vre/output && ln -s / root && ln -s /vre/output self && ln -s loop loop && \
                 ln -s .. up && mkdir d && cd /vre/work && ln -s / root && mkdir d && \
                 i=0; while [ $i -lt 200 ]; do \
                   for v in /vre/output /vre/work; do mv $v/d $v/x && ln -s / $v/d && rm $v/d && mv $v/x $v/d || exit 9; done; \
                   i=$((i+1)); done";
    let (r, _) = run(&app, &ana, &sb, &["sh", "-c", links], None).await;
    assert_eq!(
        (r["outcome"].as_str(), r["exit_code"].as_i64()),
        (Some("exited"), Some(0)),
        "{r}"
    );
    app.stop().await;
}

#[tokio::test]
async fn engine_errors_reach_clients_without_the_hosts_paths() {
    let app = TestApp::spawn_with(Engine::Sqlite, |s| {
        s.sandbox.docker_host = "unix:///nonexistent/vre-engine/docker.sock".into()
    })
    .await;
    let message = engine_unavailable(&app).await;
    assert!(
        !message.contains("/nonexistent") && !message.contains("docker.sock"),
        "{message}"
    );
    assert!(message.contains("unavailable"), "{message}");
    app.stop().await;
}

/// A remote engine's sandboxes under gVisor keep both quotas: their volumes are measured by a
/// container under the same runtime, which has what gVisor needs to start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_engine_measures_under_the_sandboxes_runtime() {
    if !docker_available() || !std::path::Path::new("/usr/bin/runsc").exists() && !required("RUNSC")
    {
        return;
    }
    let Some(engine) = PrivateEngine::start_remote() else {
        return;
    };
    let tls = engine.dir.path().join("tls");
    let (app, ana, _data) = small_world(|s| {
        s.sandbox.docker_host = format!("tcp://127.0.0.1:{}", engine.tcp.unwrap());
        s.sandbox.docker_tls_ca = Some(tls.join("ca.pem"));
        s.sandbox.docker_tls_cert = Some(tls.join("client-cert.pem"));
        s.sandbox.docker_tls_key = Some(tls.join("client-key.pem"));
        s.sandbox.runtime = Some("runsc".into());
        let tiny = s.sandbox.classes.get_mut("tiny").unwrap();
        tiny.pids = 128;
        tiny.memory_bytes = 96 << 20;
    })
    .await;
    let sb = new_sandbox(&app, &ana).await;
    let (r, log) = run(
        &app,
        &ana,
        &sb,
        &["sh", "-c", "dmesg | head -1; echo kept > /vre/work/a"],
        None,
    )
    .await;
    assert_eq!(r["outcome"], "exited", "{r}");
    assert!(log.contains("gVisor"), "{log}");
    let quick = [
        "dd",
        "if=/dev/zero",
        "of=/vre/work/big",
        "bs=1M",
        "count=20",
    ];
    let (r, _) = run(&app, &ana, &sb, &quick, None).await;
    assert_eq!(r["outcome"], "work_quota_exceeded", "{r}");
    let (r, _) = run(&app, &ana, &sb, &["rm", "/vre/work/big"], None).await;
    assert_eq!(r["exit_code"], 0, "{r}");
    // gVisor's getcwd fails past PATH_MAX (busybox's `cd -P` aborts): the folder with the big
    // file is put below 20 others of 250 characters one at a time instead.
    let deep = "cd /vre/output && n=$(head -c 250 /dev/zero | tr '\\0' n) && mkdir c && \
                dd if=/dev/zero of=c/big bs=1M count=20 && \
                i=0; while [ $i -lt 20 ]; do mkdir t && mv c t/$n && mv t c || exit 9; i=$((i+1)); done";
    let (r, _) = run(&app, &ana, &sb, &["sh", "-c", deep], None).await;
    assert_eq!(r["outcome"], "output_quota_exceeded", "{r}");
    app.stop().await;
    drop(engine);
}

/// An image of the test image's content with a file at `/stage`; removed on drop.
struct SeededImage(String);

impl SeededImage {
    fn new() -> SeededImage {
        let name = format!("vre-test/stage-seed:{}", std::process::id());
        let container = format!("vre-test-stage-seed-{}", std::process::id());
        let made = std::process::Command::new("docker")
            .args([
                "run",
                "--name",
                &container,
                "--network",
                "none",
                "--user",
                "0:0",
                TEST_IMAGE,
            ])
            .args([
                "sh",
                "-c",
                "mkdir -p /stage && echo planted > /stage/planted",
            ])
            .output()
            .unwrap();
        assert!(made.status.success(), "{made:?}");
        let committed = std::process::Command::new("docker")
            .args(["commit", &container, &name])
            .output()
            .unwrap();
        let _ = std::process::Command::new("docker")
            .args(["rm", "-f", &container])
            .output();
        assert!(committed.status.success(), "{committed:?}");
        SeededImage(name)
    }
}

impl Drop for SeededImage {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker")
            .args(["rmi", "-f", &self.0])
            .output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staging_copies_nothing_of_the_image_into_the_ingress_volume() {
    if !docker_available() {
        return;
    }
    let image = SeededImage::new();
    let (app, ana, _data) = small_world(|_| {}).await;
    let op = app.token("op", "operator");
    let (st, b) = app
        .post("/api/v1/images", Some(&op), &json!({"name": image.0}))
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let ingress = approved_upload(&app, &ana, b"#!/bin/sh\necho staged\n").await;
    let (st, sb) = app
        .post(
            "/api/v1/sandboxes",
            Some(&ana),
            &json!({"project": "p1", "image": image.0, "ingress": [ingress]}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{sb}");
    let sb = sb["id"].as_str().unwrap();
    let ls = format!("ls -A /vre/ingress/{ingress}");
    let (r, log) = run(&app, &ana, sb, &["sh", "-c", &ls], None).await;
    assert_eq!(
        (r["exit_code"].as_i64(), log.as_str()),
        (Some(0), "run.sh\n"),
        "{r}"
    );
    app.stop().await;
}

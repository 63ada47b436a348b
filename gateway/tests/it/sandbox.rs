//! Sandboxes and runs on the real Docker engine, each run through the gateway: isolation
//! (network, file system, capabilities, user, the Docker socket), limits (pids, memory, deadline,
//! output quota, logs), every hardening field on the created container, staging rules, an engine
//! that is down, and a gateway killed during a run.
//!
//! This file holds the worlds the tests run in, staging, and the gateway's restarts; the
//! submodules hold isolation and hardening (`isolation`), runs from the queue to their end
//! (`runs`), engines restarted, remote or shared with databases (`engines`), and quotas
//! (`quota`).

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{
    Engine, TEST_IMAGE, TempDir, TestApp, actions, assert_refused, assert_success,
    docker_available, issued_token, json_of, required, root_available, text_of, vre_command,
};

mod engines;
mod isolation;
mod quota;
mod runs;
use engines::*;
use runs::*;

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

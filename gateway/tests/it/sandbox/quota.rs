//! Quotas of the work area and the output folder, links never followed, engine errors without host paths, and staging that copies nothing of the image.

use super::*;

/// A gateway with the tiny class, and a sandbox of p1 that ana may use: the gateway, ana's
/// token, the sandbox, the dataset's directory. None without an engine.
pub(super) async fn tiny_sandbox() -> Option<(TestApp, String, String, TempDir)> {
    if !docker_available() {
        return None;
    }
    let (app, ana, data) = small_world(|_| {}).await;
    let sb = new_sandbox(&app, &ana).await;
    Some((app, ana, sb, data))
}

/// The audit event that recorded a run's end.
pub(super) async fn finish_event(app: &TestApp, run: &str) -> Value {
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
pub(super) async fn past_the_work_quota(app: &TestApp, ana: &str, sb: &str) {
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
pub(super) const DEEP_OUTPUT: &str = "n=$(head -c 250 /dev/zero | tr '\\0' n); cd /vre/output || exit 9; \
     i=0; while [ $i -lt 20 ]; do mkdir $n && cd -P $n || exit 9; i=$((i+1)); done; \
     dd if=/dev/zero of=big bs=1M count=20";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
pub(super) async fn a_work_area_filled_past_its_quota_is_stopped_and_reported() {
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
pub(super) async fn an_output_folder_deeper_than_path_max_keeps_its_quota() {
    let Some((app, ana, sb, _data)) = tiny_sandbox().await else {
        return;
    };
    let (r, _) = run(&app, &ana, &sb, &["sh", "-c", DEEP_OUTPUT], None).await;
    assert_eq!(r["outcome"], "output_quota_exceeded", "{r}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
pub(super) async fn sparse_files_count_their_size_and_hard_links_count_once() {
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
pub(super) async fn links_in_a_sandboxs_volumes_are_never_followed() {
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
pub(super) async fn engine_errors_reach_clients_without_the_hosts_paths() {
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
pub(super) async fn a_remote_engine_measures_under_the_sandboxes_runtime() {
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
pub(super) struct SeededImage(String);

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
pub(super) async fn staging_copies_nothing_of_the_image_into_the_ingress_volume() {
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

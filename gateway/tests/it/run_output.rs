//! A run's output is data that came out of the sandbox: every read of it is audited (what was
//! sent, with its SHA-256), and a sandbox made with `logs = hidden` shows its analysts only the
//! output's size and digest, through the API and through `vre run`.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{Engine, TEST_IMAGE, TestApp, docker_available, engines, vre_command};

/// A gateway with project p1 (analyst ana) and the test image allowed; ana's token.
async fn world(engine: Engine) -> (TestApp, String) {
    let app = TestApp::spawn(engine).await;
    app.project("p1", &[("ana", "analyst")]).await;
    let op = app.token("op", "operator");
    let (st, b) = app
        .post("/api/v1/images", Some(&op), &json!({"name": TEST_IMAGE}))
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let ana = app.token("ana", "analyst");
    (app, ana)
}

async fn sandbox(app: &TestApp, ana: &str, logs: Option<&str>) -> Value {
    let (st, sb) = app
        .post(
            "/api/v1/sandboxes",
            Some(ana),
            &json!({"project": "p1", "image": TEST_IMAGE, "logs": logs}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{sb}");
    sb
}

/// Runs `cmd` to its end; the run as recorded.
async fn finished(app: &TestApp, ana: &str, sandbox: &str, cmd: &[&str]) -> Value {
    let (st, r) = app
        .post(
            &format!("/api/v1/sandboxes/{sandbox}/runs"),
            Some(ana),
            &json!({"cmd": cmd}),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{r}");
    app.run_reaching(ana, r["id"].as_str().unwrap(), "finished")
        .await
}

/// The `run.logs_read` events about a run, waiting up to 10 s for `n` of them (they are
/// written once the response's stream is done with).
async fn reads_of(app: &TestApp, run: &str, n: usize) -> Vec<Value> {
    let auditor = app.token("aud", "auditor");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (st, events) = app
            .get(&format!("/api/v1/audit?subject={run}"), Some(&auditor))
            .await;
        assert_eq!(st, StatusCode::OK, "{events}");
        let reads: Vec<Value> = events
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["action"] == "run.logs_read")
            .cloned()
            .collect();
        if reads.len() >= n || std::time::Instant::now() > deadline {
            return reads;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn read_logs(app: &TestApp, token: &str, run: &str, follow: bool) -> (StatusCode, String) {
    let resp = app
        .http
        .get(format!(
            "{}/api/v1/runs/{run}/logs?follow={follow}",
            app.url
        ))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    (resp.status(), resp.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_read_of_a_runs_output_is_audited_with_what_was_sent() {
    if !docker_available() {
        return;
    }
    for engine in engines() {
        let (app, ana) = world(engine).await;
        let sb = sandbox(&app, &ana, None).await;
        assert_eq!(sb["logs"], "visible", "{sb}");
        let sb = sb["id"].as_str().unwrap();
        let run = finished(&app, &ana, sb, &["echo", "cohort row 1"]).await;
        let id = run["id"].as_str().unwrap();
        assert!(reads_of(&app, id, 0).await.is_empty());

        let (st, log) = read_logs(&app, &ana, id, false).await;
        assert_eq!((st, log.as_str()), (StatusCode::OK, "cohort row 1\n"));
        let (st, again) = read_logs(&app, &ana, id, true).await;
        assert_eq!((st, again.as_str()), (StatusCode::OK, "cohort row 1\n"));

        let reads = reads_of(&app, id, 2).await;
        assert_eq!(reads.len(), 2, "{reads:?}");
        let sha = gateway::sha256_hex(b"cohort row 1\n");
        for (read, follow) in reads.iter().zip([false, true]) {
            assert_eq!(read["actor"], "ana", "{read}");
            let detail: Value = serde_json::from_str(read["detail"].as_str().unwrap()).unwrap();
            assert_eq!(
                detail,
                json!({"from": 0, "to": 13, "bytes": 13, "sha256": sha, "follow": follow}),
                "{read}"
            );
        }
        assert_eq!(run["log_sha256"], sha.as_str(), "{run}");
        assert!(app.verify_audit().await.problem.is_none());
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hidden_sandbox_shows_only_the_size_and_digest_of_its_output() {
    if !docker_available() {
        return;
    }
    let (app, ana) = world(Engine::Sqlite).await;
    let sb = sandbox(&app, &ana, Some("hidden")).await;
    assert_eq!(sb["logs"], "hidden", "{sb}");
    let sb = sb["id"].as_str().unwrap();
    let run = finished(&app, &ana, sb, &["echo", "secret"]).await;
    let id = run["id"].as_str().unwrap();
    // State, exit code, size and digest: yes.
    assert_eq!(
        (
            run["outcome"].as_str(),
            run["exit_code"].as_i64(),
            run["log_bytes"].as_i64()
        ),
        (Some("exited"), Some(0), Some(7)),
        "{run}"
    );
    assert_eq!(run["log_sha256"], gateway::sha256_hex(b"secret\n").as_str());
    // The content: no, followed or not.
    for follow in [false, true] {
        let (st, body) = read_logs(&app, &ana, id, follow).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{body}");
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["code"], "logs_hidden", "{body}");
    }
    assert!(reads_of(&app, id, 0).await.is_empty());

    // `vre run` follows the run to its end and exits with its code, without printing it.
    let mut run = vre_command();
    run.args(["run", sb, "--", "echo", "secret"])
        .env("VRE_URL", &app.url)
        .env("VRE_CA", app.dir.path().join("tls/ca.pem"))
        .env("VRE_TOKEN", &ana);
    // Off the runtime's threads, which serve the gateway it talks to.
    let out = tokio::task::spawn_blocking(move || run.output())
        .await
        .unwrap()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stdout.contains("secret"), "{stdout}");
    assert!(stderr.contains("is hidden (7 bytes, sha256 "), "{stderr}");
    app.stop().await;
}

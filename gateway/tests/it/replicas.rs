//! Two real `vre server` processes on one PostgreSQL database and one engine, sharing their
//! keys (a token issued by one works on both): every run is owned by one gateway at a time.
//! The per-project limit of 1 holds across both (no two runs of the project ever overlap), a
//! cancellation through either stops a run the other supervises, runs go on across a restart
//! of one, and when one is killed with SIGKILL mid-run the survivor takes over its running and
//! queued runs once their lease lapses, finishes supervising them, and no run starts twice. Any gateway serves any run (its
//! output followed as it comes, its end awaited) and any file, from the logs folder and blob
//! store they share.

use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::release_crash::audit_actions;
use crate::restart::{Server, get, post};
use crate::support::{
    InstanceObjects, PgDatabase, TEST_IMAGE, TempDir, docker_available, issued_token, required,
};

/// The lease of the test's gateways: a dead one's runs are taken over within this and a
/// third of it.
const LEASE_SECS: u64 = 3;

/// The settings of both: short leases, a limit of one run at once per project, and the logs
/// folder and blob store they share.
fn settings(shared: &Path) -> Vec<(&'static str, String)> {
    let logs = shared.join("runs");
    vec![
        ("VRE_BLOBS_DIR", shared.join("blobs").display().to_string()),
        ("VRE_SANDBOX__COMMANDS", "any".into()),
        ("VRE_SANDBOX__RUN_LEASE_SECS", LEASE_SECS.to_string()),
        ("VRE_SANDBOX__MAX_CONCURRENT_RUNS_PER_PROJECT", "1".into()),
        ("VRE_SANDBOX__LOGS_DIR", logs.display().to_string()),
    ]
}

/// A gateway, and what it made on the engine, removed after the gateway is killed (fields
/// drop in their order), whatever happened: it cannot make more afterwards.
struct Replica {
    server: Server,
    _objects: InstanceObjects,
}

impl Replica {
    fn start(data: &Path, database: &str, shared: &Path, log: std::path::PathBuf) -> Replica {
        let server = Self::server(data, database, shared, log);
        let id = std::fs::read_to_string(data.join("instance-id")).unwrap();
        Replica {
            server,
            _objects: InstanceObjects(id.trim().to_owned()),
        }
    }

    fn server(data: &Path, database: &str, shared: &Path, log: std::path::PathBuf) -> Server {
        let settings = settings(shared);
        let settings: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
        Server::start_with(data, Some(database), log, &settings)
    }
}

/// Copies one gateway's keys into another's data dir, before that one first starts.
fn share_keys(from: &Path, to: &Path) {
    let keys = to.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    for e in std::fs::read_dir(from.join("keys")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), keys.join(e.file_name())).unwrap();
    }
}

async fn ask_run(s: &Server, token: &str, sandbox: &str, script: &str) -> String {
    let (st, b) = post(
        s,
        &format!("/api/v1/sandboxes/{sandbox}/runs"),
        token,
        &json!({"cmd": ["sh", "-c", script], "timeout_secs": 120}),
    )
    .await
    .unwrap();
    assert_eq!(st, StatusCode::ACCEPTED, "{b}");
    b["id"].as_str().unwrap().to_owned()
}

/// Waits (at most `within`) until the run is in `state`, asking `s`.
async fn reaching(s: &Server, token: &str, run: &str, state: &str, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let r = get(s, &format!("/api/v1/runs/{run}?wait=1"), token).await;
        if r["state"] == state {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "run {run} not {state} after {within:?}: {r}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn count(actions: &[String], action: &str) -> usize {
    actions.iter().filter(|a| *a == action).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_gateways_on_one_database_own_each_run_once_and_serve_any_run() {
    if !docker_available() {
        return;
    }
    if std::env::var("VRE_TEST_POSTGRES_URL").is_err() {
        assert!(
            !required("POSTGRES"),
            "VRE_TEST_REQUIRE_POSTGRES=1 but VRE_TEST_POSTGRES_URL is not set"
        );
        eprintln!("no PostgreSQL here: skipping the test of two gateways on one database");
        return;
    }
    let pg = PgDatabase::create().await;
    let root = TempDir::new("replicas");
    let (a_dir, b_dir) = (root.path().join("a"), root.path().join("b"));
    let shared = root.path().join("shared");
    let mut a_replica = Replica::start(&a_dir, &pg.url, &shared, root.path().join("a.log"));
    share_keys(&a_dir, &b_dir);
    let mut b_replica = Replica::start(&b_dir, &pg.url, &shared, root.path().join("b.log"));
    let (a, b) = (&a_replica.server, &b_replica.server);

    // Tokens of A's key, which B shares.
    let admin = issued_token(&a_dir, "root", "admin");
    let op = issued_token(&a_dir, "op", "operator");
    let ana = issued_token(&a_dir, "ana", "analyst");
    let auditor = issued_token(&a_dir, "aud", "auditor");
    let (st, r) = post(
        b,
        "/api/v1/projects",
        &admin,
        &json!({"id": "p1", "title": "Project", "members": [{"subject": "ana", "role": "analyst"}]}),
    )
    .await
    .unwrap();
    assert_eq!(st, StatusCode::CREATED, "{r}");
    let (st, r) = post(a, "/api/v1/images", &op, &json!({"name": TEST_IMAGE}))
        .await
        .unwrap();
    assert_eq!(st, StatusCode::OK, "{r}");
    let (st, r) = post(
        a,
        "/api/v1/sandboxes",
        &ana,
        &json!({"project": "p1", "image": TEST_IMAGE}),
    )
    .await
    .unwrap();
    assert_eq!(st, StatusCode::CREATED, "{r}");
    let sandbox = r["id"].as_str().unwrap().to_owned();
    let mut runs = Vec::new();

    // A file one gateway received is served by the other, from the blob store they share.
    let dataset = crate::restart::registered_dataset(a, &a_dir).await;
    let (st, app) = post(
        a,
        "/api/v1/applications",
        &ana,
        &crate::restart::access_application(&dataset, "Please"),
    )
    .await
    .unwrap();
    assert_eq!(st, StatusCode::CREATED, "{app}");
    let file = b"%PDF-1.4 institution review: approved\n";
    let (st, att) = post(
        a,
        &format!(
            "/api/v1/applications/{}/attachments",
            app["id"].as_str().unwrap()
        ),
        &issued_token(&a_dir, "sue", "steward"),
        &json!({
            "kind": "institution_review",
            "text": "Approved.",
            "file_name": "review.pdf",
            "file_base64": base64::engine::general_purpose::STANDARD.encode(file),
        }),
    )
    .await
    .unwrap();
    assert_eq!(st, StatusCode::CREATED, "{att}");
    let resp = b
        .http
        .get(format!(
            "{}/api/v1/applications/{}/attachments/{}/file",
            b.url,
            app["id"].as_str().unwrap(),
            att["id"].as_str().unwrap()
        ))
        .bearer_auth(issued_token(&a_dir, "rev1", "reviewer"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.bytes().await.unwrap().to_vec(), file.to_vec());

    // Runs asked for through both at once: the project's limit of 1 holds across them.
    for i in 0..4 {
        let s = if i % 2 == 0 { a } else { b };
        runs.push(ask_run(s, &ana, &sandbox, &format!("echo run {i}; sleep 0.5")).await);
    }
    for run in &runs {
        let r = reaching(a, &ana, run, "finished", Duration::from_secs(60)).await;
        assert_eq!(r["outcome"], "exited", "{r}");
        assert_eq!(r["exit_code"], 0, "{r}");
    }

    // Any gateway serves any run: the output of a run A supervises is followed through B as
    // it comes (B is woken by A's notifications), and a wait through B ends with the run.
    let followed = ask_run(a, &ana, &sandbox, "echo hello; sleep 2; echo bye").await;
    let follow = {
        let req = b
            .http
            .get(format!("{}/api/v1/runs/{followed}/logs?follow=true", b.url))
            .bearer_auth(&ana);
        tokio::spawn(async move {
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
            resp.text().await.unwrap()
        })
    };
    let r = get(b, &format!("/api/v1/runs/{followed}?wait=30"), &ana).await;
    assert_eq!(r["state"], "finished", "{r}");
    let asked = Instant::now();
    assert_eq!(follow.await.unwrap(), "hello\nbye\n");
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "{:?}",
        asked.elapsed()
    );
    runs.push(followed);

    // A cancellation through either gateway stops a run the other supervises: running (asked
    // through B, cancelled through A) and queued behind it (asked through A, cancelled
    // through B).
    let running = ask_run(b, &ana, &sandbox, "sleep 60").await;
    reaching(a, &ana, &running, "running", Duration::from_secs(30)).await;
    let queued = ask_run(a, &ana, &sandbox, "sleep 60").await;
    let cancel = |id: &str| format!("/api/v1/runs/{id}/cancel");
    let (st, r) = post(a, &cancel(&running), &ana, &json!({})).await.unwrap();
    assert_eq!(st, StatusCode::ACCEPTED, "{r}");
    let (st, r) = post(b, &cancel(&queued), &ana, &json!({})).await.unwrap();
    assert_eq!(st, StatusCode::ACCEPTED, "{r}");
    for run in [&running, &queued] {
        let r = reaching(b, &ana, run, "finished", Duration::from_secs(30)).await;
        assert_eq!(r["outcome"], "cancelled", "{r}");
    }
    runs.push(running.clone());
    runs.push(queued.clone());

    // B restarts (a graceful stop, then a start on its data dir) while it supervises a run and
    // another waits behind it: both go on, each started once (by B again, at its start, or by
    // A, should their lease lapse meanwhile).
    let across_restart = ask_run(b, &ana, &sandbox, "echo one; sleep 3; echo two").await;
    reaching(a, &ana, &across_restart, "running", Duration::from_secs(30)).await;
    let behind_restart = ask_run(b, &ana, &sandbox, "echo three").await;
    b_replica.server.stop().await;
    b_replica.server = Replica::server(&b_dir, &pg.url, &shared, root.path().join("b2.log"));
    let b = &b_replica.server;
    for (run, out) in [
        (&across_restart, "one\ntwo\n"),
        (&behind_restart, "three\n"),
    ] {
        let r = reaching(b, &ana, run, "finished", Duration::from_secs(30)).await;
        assert_eq!(r["outcome"], "exited", "{r}");
        assert_eq!(r["log_bytes"], out.len(), "{r}");
        runs.push(run.clone());
    }

    // A is killed while its run runs and another waits behind it: B takes both over once
    // their lease lapses, follows the first to its end and starts the second, once.
    let killed_mid_run = ask_run(a, &ana, &sandbox, "echo before; sleep 4; echo after").await;
    reaching(a, &ana, &killed_mid_run, "running", Duration::from_secs(30)).await;
    let waiting = ask_run(a, &ana, &sandbox, "echo waited; sleep 60").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = get(b, &format!("/api/v1/runs/{waiting}"), &ana).await;
    assert_eq!(r["state"], "queued", "{r}");
    a_replica.server.kill();
    let killed_at = Instant::now();
    let r = reaching(
        b,
        &ana,
        &killed_mid_run,
        "finished",
        Duration::from_secs(30),
    )
    .await;
    // It ran its 4 s and was taken over within the lease and a third of it (plus a margin
    // for a loaded machine).
    assert!(
        killed_at.elapsed() < Duration::from_secs(4 + LEASE_SECS + 1 + 5),
        "the survivor took {:?}",
        killed_at.elapsed()
    );
    assert_eq!(r["outcome"], "exited", "{r}");
    assert_eq!(r["exit_code"], 0, "{r}");
    assert_eq!(r["log_bytes"], "before\nafter\n".len(), "{r}");
    let (st, logs) = {
        let resp = b
            .http
            .get(format!("{}/api/v1/runs/{killed_mid_run}/logs", b.url))
            .bearer_auth(&ana)
            .send()
            .await
            .unwrap();
        (resp.status(), resp.text().await.unwrap())
    };
    assert_eq!(st, StatusCode::OK);
    assert_eq!(logs, "before\nafter\n");
    // The run that waited starts on B, and a cancellation through B stops it.
    reaching(b, &ana, &waiting, "running", Duration::from_secs(30)).await;
    let (st, r) = post(b, &cancel(&waiting), &ana, &json!({})).await.unwrap();
    assert_eq!(st, StatusCode::ACCEPTED, "{r}");
    let r = reaching(b, &ana, &waiting, "finished", Duration::from_secs(30)).await;
    assert_eq!(r["outcome"], "cancelled", "{r}");
    for run in [&killed_mid_run, &waiting] {
        let actions = audit_actions(b, &auditor, run).await;
        assert_eq!(count(&actions, "run.takeover"), 1, "{run}: {actions:?}");
    }
    runs.push(killed_mid_run.clone());
    runs.push(waiting.clone());

    // No run started twice nor finished twice; no two runs of the project ran at once.
    let mut spans = Vec::new();
    for run in &runs {
        let actions = audit_actions(b, &auditor, run).await;
        let starts = if *run == queued { 0 } else { 1 };
        assert_eq!(count(&actions, "run.start"), starts, "{run}: {actions:?}");
        assert_eq!(count(&actions, "run.finish"), 1, "{run}: {actions:?}");
        let r = get(b, &format!("/api/v1/runs/{run}"), &ana).await;
        if let (Some(s), Some(f)) = (r["started_at"].as_str(), r["finished_at"].as_str()) {
            assert!(s <= f, "{r}");
            if starts == 1 {
                spans.push((s.to_owned(), f.to_owned(), run.clone()));
            }
        }
    }
    spans.sort();
    for w in spans.windows(2) {
        assert!(
            w[0].1 <= w[1].0,
            "two runs of the project overlapped: {:?} and {:?}",
            w[0],
            w[1]
        );
    }

    // The sandbox A made is removed through B: its objects go, whichever gateway made them.
    let (st, r) = crate::restart::send(
        b.http
            .delete(format!("{}/api/v1/sandboxes/{sandbox}", b.url))
            .bearer_auth(&ana),
    )
    .await
    .unwrap();
    assert_eq!(st, StatusCode::OK, "{r}");
    let of_sandbox = format!("label=vre.sandbox={sandbox}");
    for list in [
        &["ps", "-aq", "--filter", &of_sandbox][..],
        &["volume", "ls", "-q", "--filter", &of_sandbox][..],
    ] {
        let out = std::process::Command::new("docker")
            .args(list)
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "", "{list:?}");
    }
    drop(b_replica);
    drop(a_replica);
    pg.drop_db().await;
}

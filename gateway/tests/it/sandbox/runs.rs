//! Runs from the queue to their end: cancellation (API, CLI, Ctrl-C), followed output, waits, removal as a run ends, and the container started ahead of a run.

use super::*;

/// A run can be cancelled by the project's analysts and by operators, not by others: a
/// running one is killed at once, a queued one ends before it starts, one asked of another
/// gateway on the same database (written there, no wake-up here) stops within a second or so;
/// each is recorded as cancelled, with who asked, and audited. A finished run cannot be.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
pub(super) async fn a_run_is_cancelled_running_or_queued_by_those_allowed() {
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
pub(super) async fn a_detached_run_is_followed_read_and_cancelled_from_the_cli() {
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
pub(super) async fn interrupted(
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
pub(super) async fn ctrl_c_on_vre_run_cancels_the_run() {
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
pub(super) async fn a_sandbox_removed_as_its_run_finishes_leaves_nothing() {
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
pub(super) async fn only_the_launcher_left(app: &TestApp) -> Result<(), String> {
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
pub(super) async fn a_status_request_with_wait_answers_when_the_run_ends() {
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
pub(super) async fn vre_run_streams_output_and_exits_with_the_runs_code() {
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
pub(super) async fn started_ahead(app: &TestApp) -> Vec<(String, String)> {
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
pub(super) async fn container_of(app: &TestApp, run: &str) -> String {
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
pub(super) async fn ready_ahead(app: &TestApp, sandbox: &str) -> String {
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
pub(super) async fn a_run_takes_the_container_started_ahead_for_it_and_gets_only_its_command() {
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

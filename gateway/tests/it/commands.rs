//! Only reviewed programs run: under a project's `approved` command policy a run starts a
//! program of a staged, approved ingress, a command the operator allowed for the image, or an
//! allowed interpreter with a script of a staged ingress; anything else is refused (403
//! `command_refused`, naming the rule) and audited. A project made `any` runs what it likes.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{Engine, TEST_IMAGE, TestApp, docker_available, engines};

/// A gateway whose projects default to `approved` (the production default; the rest of the
/// suite runs under `any`), with project p1 (analyst ana) and the test image allowed with `sh`
/// as an interpreter and `ls` as a command; ana's token.
async fn world(engine: Engine) -> (TestApp, String) {
    let app = TestApp::spawn_with(engine, |s| {
        s.sandbox.commands = gateway::wire::projects::CommandPolicy::Approved;
    })
    .await;
    app.project("p1", &[("ana", "analyst")]).await;
    let op = app.token("op", "operator");
    let (st, b) = app
        .post(
            "/api/v1/images",
            Some(&op),
            &json!({"name": TEST_IMAGE, "commands": ["ls"], "interpreters": ["sh"]}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(b["commands"], json!(["ls"]), "{b}");
    assert_eq!(b["interpreters"], json!(["sh"]), "{b}");
    let ana = app.token("ana", "analyst");
    (app, ana)
}

/// An ingress archive of p1 holding `run.sh`, approved and staged into the sandbox; its
/// application.
async fn staged_script(app: &TestApp, ana: &str, sandbox: &str, script: &[u8]) -> String {
    let id = crate::sandbox::upload(app, ana, "p1", script).await;
    let (_, b) = app.vote(&id, "rev", "approve").await;
    assert_eq!(b["state"], "approved", "{b}");
    let (st, b) = app
        .post(
            &format!("/api/v1/sandboxes/{sandbox}/ingress"),
            Some(ana),
            &json!({"application": id}),
        )
        .await;
    assert!(st.is_success(), "{b}");
    id
}

async fn ask(app: &TestApp, ana: &str, sandbox: &str, cmd: &[&str]) -> (StatusCode, Value) {
    app.post(
        &format!("/api/v1/sandboxes/{sandbox}/runs"),
        Some(ana),
        &json!({"cmd": cmd}),
    )
    .await
}

/// Runs `cmd` to its end; the run as recorded.
async fn finished(app: &TestApp, ana: &str, sandbox: &str, cmd: &[&str]) -> Value {
    let (st, r) = ask(app, ana, sandbox, cmd).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{cmd:?}: {r}");
    app.run_reaching(ana, r["id"].as_str().unwrap(), "finished")
        .await
}

/// Asks for `cmd` and expects it refused under `rule`.
async fn refused(app: &TestApp, ana: &str, sandbox: &str, cmd: &[&str], rule: &str) {
    let (st, b) = ask(app, ana, sandbox, cmd).await;
    assert_eq!(
        (st, b["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("command_refused")),
        "{cmd:?}: {b}"
    );
    let message = b["message"].as_str().unwrap();
    assert!(message.contains(&format!("{rule}: ")), "{cmd:?}: {b}");
}

/// The audit events about `subject` with `action`, their details parsed.
async fn events(app: &TestApp, subject: &str, action: &str) -> Vec<(Value, Value)> {
    let auditor = app.token("aud", "auditor");
    let (st, events) = app
        .get(&format!("/api/v1/audit?subject={subject}"), Some(&auditor))
        .await;
    assert_eq!(st, StatusCode::OK, "{events}");
    events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == action)
        .map(|e| {
            let detail = serde_json::from_str(e["detail"].as_str().unwrap()).unwrap();
            (e.clone(), detail)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_approved_only_reviewed_programs_and_allowed_commands_run() {
    if !docker_available() {
        return;
    }
    for engine in engines() {
        let (app, ana) = world(engine).await;
        let sb = app.new_sandbox(&ana, "p1").await;
        let app_id = staged_script(&app, &ana, &sb, b"echo reviewed\n").await;
        let script = format!("/vre/ingress/{app_id}/run.sh");

        // An allowed interpreter with a reviewed script, and an allowed command.
        let run = finished(&app, &ana, &sb, &["sh", &script]).await;
        assert_eq!(run["exit_code"], 0, "{run}");
        let created = events(&app, run["id"].as_str().unwrap(), "run.create").await;
        assert_eq!(created.len(), 1, "{created:?}");
        assert_eq!(
            created[0].1["program"],
            json!({
                "program": "interpreted",
                "interpreter": "sh",
                "scripts": [{"application": app_id, "path": script}],
            }),
            "{created:?}"
        );
        let run = finished(&app, &ana, &sb, &["ls", "/vre"]).await;
        assert_eq!(run["exit_code"], 0, "{run}");
        let created = events(&app, run["id"].as_str().unwrap(), "run.create").await;
        assert_eq!(
            created[0].1["program"],
            json!({"program": "command", "name": "ls"}),
            "{created:?}"
        );

        // Inline code, a script in a writable place, a command nobody allowed.
        refused(&app, &ana, &sb, &["sh", "-c", "echo hi"], "inline_code").await;
        refused(
            &app,
            &ana,
            &sb,
            &["sh", "/vre/work/x.sh"],
            "writable_program",
        )
        .await;
        refused(
            &app,
            &ana,
            &sb,
            &["cat", "/etc/passwd"],
            "command_not_allowed",
        )
        .await;

        // Each refusal is audited with the rule, the command and the sandbox; no run recorded.
        let refusals = events(&app, &sb, "run.refused").await;
        let seen: Vec<(&str, Value)> = refusals
            .iter()
            .map(|(e, d)| {
                assert_eq!(e["actor"], "ana", "{e}");
                assert_eq!(d["sandbox"], sb.as_str(), "{d}");
                (d["rule"].as_str().unwrap(), d["cmd"].clone())
            })
            .collect();
        assert_eq!(
            seen,
            vec![
                ("inline_code", json!(["sh", "-c", "echo hi"])),
                ("writable_program", json!(["sh", "/vre/work/x.sh"])),
                ("command_not_allowed", json!(["cat", "/etc/passwd"])),
            ]
        );
        let (st, runs) = app
            .get(&format!("/api/v1/sandboxes/{sb}/runs"), Some(&ana))
            .await;
        assert_eq!(st, StatusCode::OK, "{runs}");
        assert_eq!(runs.as_array().unwrap().len(), 2, "{runs}");
        assert!(app.verify_audit().await.problem.is_none());
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_created_with_commands_any_runs_inline_code() {
    if !docker_available() {
        return;
    }
    for engine in engines() {
        let (app, ana) = world(engine).await;
        let admin = app.token("root", "admin");
        let (st, p) = app
            .post(
                "/api/v1/projects",
                Some(&admin),
                &json!({"id": "p2", "title": "Project p2", "commands": "any",
                        "members": [{"subject": "ana", "role": "analyst"}]}),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{p}");
        assert_eq!(p["commands"], "any", "{p}");
        let (_, p1) = app.get("/api/v1/projects/p1", Some(&admin)).await;
        assert_eq!(p1["commands"], "approved", "{p1}");
        let created = events(&app, "p2", "project.create").await;
        assert_eq!(created[0].1["commands"], "any", "{created:?}");

        let sb = app.new_sandbox(&ana, "p2").await;
        let run = finished(&app, &ana, &sb, &["sh", "-c", "echo hi"]).await;
        assert_eq!(run["exit_code"], 0, "{run}");
        let created = events(&app, run["id"].as_str().unwrap(), "run.create").await;
        assert_eq!(
            created[0].1["program"],
            json!({"program": "unchecked"}),
            "{created:?}"
        );
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_images_commands_are_bare_names_and_allowing_it_again_replaces_them() {
    if !docker_available() {
        return;
    }
    for engine in engines() {
        let (app, ana) = world(engine).await;
        let op = app.token("op", "operator");
        let long = "x".repeat(65);
        let many: Vec<String> = (0..65).map(|i| format!("c{i}")).collect();
        for body in [
            json!({"name": TEST_IMAGE, "commands": ["/bin/ls"]}),
            json!({"name": TEST_IMAGE, "interpreters": ["sh -c"]}),
            json!({"name": TEST_IMAGE, "commands": ["ls\n"]}),
            json!({"name": TEST_IMAGE, "commands": [""]}),
            json!({"name": TEST_IMAGE, "interpreters": [long]}),
            json!({"name": TEST_IMAGE, "commands": many}),
        ] {
            let (st, b) = app.post("/api/v1/images", Some(&op), &body).await;
            assert_eq!(
                (st, b["code"].as_str()),
                (StatusCode::BAD_REQUEST, Some("bad_image")),
                "{body}: {b}"
            );
        }
        // Allowed again with `cat` only: `ls` and `sh` are no longer allowed.
        let (st, b) = app
            .post(
                "/api/v1/images",
                Some(&op),
                &json!({"name": TEST_IMAGE, "commands": ["cat"]}),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{b}");
        assert_eq!(
            (&b["commands"], &b["interpreters"]),
            (&json!(["cat"]), &json!([])),
            "{b}"
        );
        let allowed = events(&app, TEST_IMAGE, "image.allow").await;
        let last = &allowed.last().unwrap().1;
        assert_eq!(
            (&last["commands"], &last["interpreters"]),
            (&json!(["cat"]), &json!([])),
            "{last}"
        );
        let sb = app.new_sandbox(&ana, "p1").await;
        refused(&app, &ana, &sb, &["ls", "/vre"], "command_not_allowed").await;
        let run = finished(&app, &ana, &sb, &["cat", "/etc/passwd"]).await;
        assert_eq!(run["exit_code"], 0, "{run}");
        app.stop().await;
    }
}

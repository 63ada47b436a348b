//! The fixtures of the authorization matrix: the objects each cell is prepared with (projects,
//! applications in the state a route needs, sandboxes, runs, egress requests and releases),
//! and the path a row's template names for them.

use super::*;

pub(super) async fn audit_seq(app: &TestApp) -> i64 {
    sqlx::query_scalar::<_, i64>("SELECT seq FROM audit_head WHERE id = 1")
        .fetch_one(app.state.db.pool())
        .await
        .unwrap()
}

/// Waits until the run has finished (and with it the audit events of its supervisor); returns
/// its record.
pub(super) async fn finished_run(app: &TestApp, id: &str) -> Value {
    app.run_reaching(&app.token("ana", "analyst"), id, "finished")
        .await
}

/// Allows the test image, as an operator.
pub(super) async fn allow_test_image(app: &TestApp) {
    let t = app.token("prep-op", "operator");
    let (st, b) = app
        .post("/api/v1/images", Some(&t), &json!({"name": TEST_IMAGE}))
        .await;
    assert_eq!(
        st,
        StatusCode::OK,
        "allowing {TEST_IMAGE} (made by deploy/images/build-test-image.sh): {b}"
    );
}

/// Uploads the small archive to the project as the requester; returns the application's id.
pub(super) async fn upload_ingress(app: &TestApp, project: &str) -> String {
    let t = app.token("ana", "analyst");
    let (st, b) = app
        .request_raw(
            reqwest::Method::POST,
            &format!("/api/v1/ingress?project={project}&name=prep"),
            Some(&t),
            small_tar(),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{b}");
    b["application"]["id"].as_str().unwrap().to_owned()
}

/// Registers a fresh age recipient for `sub` (an analyst).
pub(super) async fn register_key(app: &TestApp, sub: &str) {
    let t = app.token(sub, "analyst");
    let (st, b) = app
        .request(
            reqwest::Method::PUT,
            "/api/v1/keys/me",
            Some(&t),
            Some(&json!({"recipient": gateway::release::new_identity().1})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
}

/// The egress fixtures on the sandbox of `w`: its output written by a run, then (as `prep`
/// asks) an egress application of the requester's, sent back, or released.
pub(super) async fn prepare_egress(app: &TestApp, w: &mut World, prep: Prep) {
    let ana = app.token("ana", "analyst");
    for sub in ["ana", "cole"] {
        register_key(app, sub).await;
    }
    w.run =
        crate::sandbox::start_run(app, &ana, &w.sandbox, &["sh", "-c", OUTPUT_SCRIPT], None).await;
    let run = finished_run(app, &w.run).await;
    assert_eq!(
        (run["outcome"].as_str(), run["exit_code"].as_i64()),
        (Some("exited"), Some(0)),
        "{run}"
    );
    if prep == Prep::Output {
        return;
    }
    let (st, b) = app
        .post("/api/v1/egress", Some(&ana), &new_egress(w).unwrap())
        .await;
    assert_eq!(st, StatusCode::CREATED, "{b}");
    w.app = b["id"].as_str().unwrap().to_owned();
    match prep {
        Prep::EgressChangesRequested => {
            let (st, b) = app.vote(&w.app, "prep-rev", "request_changes").await;
            assert_eq!(
                (st, b["state"].as_str()),
                (StatusCode::OK, Some("changes_requested")),
                "{b}"
            );
        }
        Prep::Released => {
            for rev in ["prep-rev", "prep-rev2"] {
                let (st, b) = app.vote(&w.app, rev, "approve").await;
                assert_eq!(st, StatusCode::OK, "{b}");
            }
            let rev = app.token("prep-rev", "reviewer");
            let mut state = Value::Null;
            for _ in 0..600 {
                let (st, b) = app
                    .get(&format!("/api/v1/applications/{}", w.app), Some(&rev))
                    .await;
                assert_eq!(st, StatusCode::OK, "{b}");
                state = b["state"].clone();
                if state == "released" {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            panic!("{} never released: {state}", w.app);
        }
        _ => {}
    }
}

/// Creates what the cell needs, with names of its own.
pub(super) async fn prepare(app: &TestApp, n: usize, prep: Prep) -> World {
    let mut w = World {
        n,
        project: String::new(),
        dataset: String::new(),
        app: String::new(),
        attachment: String::new(),
        sandbox: String::new(),
        run: String::new(),
    };
    if prep == Prep::Nothing {
        return w;
    }
    if prep == Prep::Dataset || prep == Prep::ListingApproved {
        let sue = app.token_for("sue", "steward", Some(INSTITUTION));
        (w.dataset, w.app) =
            crate::datasets::register(app, &sue, &crate::datasets::example_dmp(INSTITUTION)).await;
        if prep == Prep::ListingApproved {
            crate::access::approve(app, &w.app).await;
        }
        return w;
    }
    if prep == Prep::Keys {
        for sub in ["lone-analyst", "ana", "cole", "bob"] {
            register_key(app, sub).await;
        }
        return w;
    }
    w.project = format!("p-{n}");
    app.project(
        &w.project,
        &[
            ("ana", "analyst"),
            ("cole", "analyst"),
            ("sue", "steward"),
            ("leaver", "analyst"),
        ],
    )
    .await;
    if prep == Prep::Project {
        return w;
    }
    if prep == Prep::Ingress {
        w.app = upload_ingress(app, &w.project).await;
        return w;
    }
    if prep.needs_engine() {
        allow_test_image(app).await;
        if prep == Prep::Allowed {
            return w;
        }
        let ana = app.token("ana", "analyst");
        w.sandbox = app.new_sandbox(&ana, &w.project).await;
        match prep {
            Prep::Staging => {
                w.app = upload_ingress(app, &w.project).await;
                let (st, b) = app.vote(&w.app, "prep-rev", "approve").await;
                assert_eq!(
                    (st, b["state"].as_str()),
                    (StatusCode::OK, Some("approved")),
                    "{b}"
                );
            }
            Prep::Run => {
                w.run = crate::sandbox::start_run(app, &ana, &w.sandbox, &["true"], None).await;
                let run = finished_run(app, &w.run).await;
                assert_eq!(
                    (run["outcome"].as_str(), run["exit_code"].as_i64()),
                    (Some("exited"), Some(0)),
                    "{run}"
                );
            }
            Prep::LiveRun => {
                let (st, b) = app
                    .post(
                        &format!("/api/v1/sandboxes/{}/runs", w.sandbox),
                        Some(&ana),
                        &json!({"cmd": ["sleep", "60"]}),
                    )
                    .await;
                assert_eq!(st, StatusCode::ACCEPTED, "{b}");
                w.run = b["id"].as_str().unwrap().to_owned();
                app.run_reaching(&ana, &w.run, "running").await;
            }
            Prep::Output | Prep::Egress | Prep::EgressChangesRequested | Prep::Released => {
                prepare_egress(app, &mut w, prep).await;
            }
            _ => {}
        }
        return w;
    }
    w.app = app
        .application("access", &w.project, "ana", "analyst")
        .await;
    match prep {
        Prep::ChangesRequested => {
            let (st, b) = app.vote(&w.app, "prep-rev", "request_changes").await;
            assert_eq!(
                (st, b["state"].as_str()),
                (StatusCode::OK, Some("changes_requested")),
                "{b}"
            );
        }
        Prep::WithFile => {
            let t = app.token("prep-steward", "steward");
            let (st, b) = app
                .post(
                    &format!("/api/v1/applications/{}/attachments", w.app),
                    Some(&t),
                    &json!({"kind": "institution_review", "text": "Approved.", "file_name": "r.txt", "file_base64": "aGk="}),
                )
                .await;
            assert_eq!(st, StatusCode::CREATED, "{b}");
            w.attachment = b["id"].as_str().unwrap().to_owned();
        }
        _ => {}
    }
    w
}

pub(super) fn path_of(row: &Row, w: &World) -> String {
    let object = if row.path.starts_with("/api/v1/projects/") {
        &w.project
    } else if row.path.starts_with("/api/v1/sandboxes/") {
        &w.sandbox
    } else if row.path.starts_with("/api/v1/runs/") {
        &w.run
    } else if row.path.starts_with("/api/v1/datasets/") {
        &w.dataset
    } else {
        &w.app
    };
    let query = match row.path {
        "/api/v1/ingress" => format!("?project={}&name=matrix", w.project),
        "/api/v1/applications/{id}/file" => "?path=main.py".to_owned(),
        "/api/v1/applications/{id}/egress/preview" => format!("?path={OUTPUT_FILE}"),
        _ => String::new(),
    };
    row.path
        .replace("{id}", object)
        .replace("{subject}", "leaver")
        .replace("{attachment}", &w.attachment)
        + &query
}

//! Access to datasets: an access application names registered datasets; its approval grants
//! the project access, recorded with it; on every engine.

use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::Row;

use crate::datasets::{INSTITUTION, example_dmp, register, vre};
use crate::support::{
    TEST_IMAGE, TestApp, actions, assert_refused, docker_available, each_engine, engines,
};

/// A registered dataset, by a steward of its institution; its id.
pub async fn dataset(app: &TestApp) -> String {
    let steward = app.token_for("hana", "steward", Some(INSTITUTION));
    register(app, &steward, &example_dmp(INSTITUTION)).await.0
}

/// Asks, as analyst `ana` of `project`, for access to `datasets`; the status and body.
pub async fn ask(app: &TestApp, project: &str, payload: Value) -> (StatusCode, Value) {
    let ana = app.token("ana", "analyst");
    app.post(
        "/api/v1/applications",
        Some(&ana),
        &json!({"kind": "access", "project": project, "title": "Access", "payload": payload}),
    )
    .await
}

/// Votes to approve `id` until the committee's quorum approves it.
pub async fn approve(app: &TestApp, id: &str) {
    for r in ["rev1", "rev2", "rev3", "rev4", "rev5"] {
        let (st, b) = app.vote(id, r, "approve").await;
        assert_eq!(st, StatusCode::OK, "{b}");
        if b["state"] == "approved" {
            return;
        }
    }
    panic!("{id} was never approved");
}

/// The project's access to `dataset`, granted and approved: the application's id.
pub async fn grant(app: &TestApp, project: &str, dataset: &str, until: Option<&str>) -> String {
    let mut payload = json!({"datasets": [dataset], "purpose": "a cohort study"});
    if let Some(u) = until {
        payload["until"] = json!(u);
    }
    let (st, a) = ask(app, project, payload).await;
    assert_eq!(st, StatusCode::CREATED, "{a}");
    let id = a["id"].as_str().unwrap().to_owned();
    approve(app, &id).await;
    id
}

/// A dataset on record with the id `id`, its listing approved (as one configured under
/// `[sandbox.datasets]` by that id, which is then its content), written straight to the store:
/// registration makes ids of its own.
pub async fn record(app: &TestApp, id: &str) {
    app.record_dataset(id, INSTITUTION).await;
}

/// The grants recorded: (application, project, dataset, until, commercial).
pub async fn grants(app: &TestApp) -> Vec<(String, String, String, Option<String>, i64)> {
    sqlx::query(
        "SELECT application_id, project_id, dataset_id, until_date, commercial \
         FROM access_grants ORDER BY application_id, dataset_id",
    )
    .fetch_all(app.state.db.pool())
    .await
    .unwrap()
    .iter()
    .map(|r| {
        (
            r.get(0),
            r.get(1),
            r.get(2),
            r.get::<Option<String>, _>(3),
            r.get(4),
        )
    })
    .collect()
}

#[tokio::test]
async fn an_access_application_names_registered_datasets_and_its_approval_grants_them() {
    each_engine(|app| async move {
        app.project("p1", &[("ana", "analyst")]).await;
        let ds = dataset(&app).await;

        // Unknown datasets are named; bad terms are refused.
        let (st, b) = ask(
            &app,
            "p1",
            json!({"datasets": [ds, "ds-nope", "ds-gone"], "purpose": "study"}),
        )
        .await;
        assert_refused(st, &b, StatusCode::BAD_REQUEST, "bad_dataset");
        let msg = b["message"].as_str().unwrap();
        assert!(
            msg.contains("ds-nope") && msg.contains("ds-gone") && !msg.contains(&ds),
            "{msg}"
        );
        for bad in [
            json!({"datasets": [], "purpose": "study"}),
            json!({"datasets": [ds], "purpose": "  "}),
            json!({"datasets": [ds], "purpose": "study", "until": "2024-02-30"}),
            json!({"datasets": [ds], "purpose": "study", "until": "2001-01-01"}),
            json!({"datasets": [ds], "purpose": "study", "commercial": "maybe"}),
            json!({"datasets": [ds]}),
        ] {
            let (st, b) = ask(&app, "p1", bad.clone()).await;
            assert_refused(st, &b, StatusCode::BAD_REQUEST, "bad_payload");
        }
        assert!(grants(&app).await.is_empty());

        // Submitted: nothing granted yet. Approved: one grant per dataset, audited.
        let (st, a) = ask(
            &app,
            "p1",
            json!({"datasets": [ds], "purpose": "study", "until": "2099-12-31", "commercial": true}),
        )
        .await;
        assert_eq!(st, StatusCode::CREATED, "{a}");
        let id = a["id"].as_str().unwrap().to_owned();
        assert!(grants(&app).await.is_empty());
        approve(&app, &id).await;
        assert_eq!(
            grants(&app).await,
            [(
                id.clone(),
                "p1".to_owned(),
                ds.clone(),
                Some("2099-12-31".to_owned()),
                1
            )]
        );
        let events = app.audit_events(&id).await;
        assert!(actions(&events).contains(&"access.grant"), "{events:?}");
        app
    })
    .await;
}

#[tokio::test]
async fn vre_access_request_prints_the_application() {
    each_engine(|app| async move {
        app.project("p1", &[("ana", "analyst")]).await;
        let ds = dataset(&app).await;
        let ana = app.token("ana", "analyst");
        let (ok, out, err) = vre(
            &app,
            &ana,
            &[
                "access", "request", "--project", "p1", "--dataset", &ds, "--purpose", "study",
                "--until", "2099-01-31", "--json",
            ],
        )
        .await;
        assert!(ok, "{err}");
        let v: Value = serde_json::from_str(&out).unwrap();
        let id = v["id"].as_str().unwrap();
        let (st, a) = app
            .get(&format!("/api/v1/applications/{id}"), Some(&ana))
            .await;
        assert_eq!(st, StatusCode::OK, "{a}");
        assert_eq!(a["kind"], "access");
        assert_eq!(
            a["payload"],
            json!({"datasets": [ds], "purpose": "study", "until": "2099-01-31", "commercial": false})
        );

        let (ok, out, _) = vre(
            &app,
            &ana,
            &["access", "request", "--project", "p1", "--dataset", &ds, "--purpose", "study"],
        )
        .await;
        assert!(ok && out.trim().starts_with("app-"), "{out}");

        let (ok, _, err) = vre(
            &app,
            &ana,
            &[
                "access", "request", "--project", "p1", "--dataset", "ds-nope", "--purpose", "x",
            ],
        )
        .await;
        assert!(!ok && err.contains("ds-nope"), "{err}");
        app
    })
    .await;
}

/// Asks, as ana, for a sandbox of p1 mounting `datasets`; the status and body.
pub(crate) async fn ask_sandbox(app: &TestApp, datasets: &[&str]) -> (StatusCode, Value) {
    let ana = app.token("ana", "analyst");
    app.post(
        "/api/v1/sandboxes",
        Some(&ana),
        &json!({"project": "p1", "image": TEST_IMAGE, "datasets": datasets}),
    )
    .await
}

/// Ends every grant of `dataset`: its last day was long ago.
async fn expire(app: &TestApp, dataset: &str) {
    set_until(app, dataset, "2001-01-01").await;
}

/// Sets the last day of every grant of `dataset`, as if it had been granted so.
async fn set_until(app: &TestApp, dataset: &str, until: &str) {
    sqlx::query("UPDATE access_grants SET until_date = $1 WHERE dataset_id = $2")
        .bind(until)
        .bind(dataset)
        .execute(app.state.db.pool())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_sandbox_mounts_a_dataset_only_with_access_in_force() {
    // No container is made before the refusals: they run without an engine as well.
    each_engine(|app| async move {
        app.project("p1", &[("ana", "analyst")]).await;
        app.project("p2", &[("ana", "analyst")]).await;
        let op = app.token("op", "operator");
        let (st, b) = app
            .post("/api/v1/images", Some(&op), &json!({"name": TEST_IMAGE}))
            .await;
        assert_eq!(st, StatusCode::OK, "{b}");
        let ds = dataset(&app).await;

        // Not registered: not found. Registered, never granted: refused, audited.
        let (st, b) = ask_sandbox(&app, &["ds-nope"]).await;
        assert_refused(st, &b, StatusCode::NOT_FOUND, "not_found");
        let (st, b) = ask_sandbox(&app, &[&ds]).await;
        assert_refused(st, &b, StatusCode::FORBIDDEN, "no_access");
        assert!(b["message"].as_str().unwrap().contains(&ds), "{b}");
        assert_eq!(
            actions(&app.audit_events("p1").await),
            ["project.create", "sandbox.refused"]
        );

        // Another project's access, or an application not yet approved, grants p1 nothing.
        grant(&app, "p2", &ds, None).await;
        let (st, a) = ask(&app, "p1", json!({"datasets": [ds], "purpose": "study"})).await;
        assert_eq!(st, StatusCode::CREATED, "{a}");
        let (st, b) = ask_sandbox(&app, &[&ds]).await;
        assert_refused(st, &b, StatusCode::FORBIDDEN, "no_access");

        // Approved: in force, but this gateway holds no content for it.
        approve(&app, a["id"].as_str().unwrap()).await;
        let (st, b) = ask_sandbox(&app, &[&ds]).await;
        assert_refused(st, &b, StatusCode::CONFLICT, "dataset_unavailable");

        // Expired: refused as such.
        expire(&app, &ds).await;
        let (st, b) = ask_sandbox(&app, &[&ds]).await;
        assert_refused(st, &b, StatusCode::FORBIDDEN, "access_expired");
        app
    })
    .await;
}

/// A gateway on `engine` with the test image allowed, project p1 (analyst ana) and the
/// dataset `cohort` on record, its directory configured (holding `cohort.csv`).
pub(crate) async fn mounting_world(
    engine: crate::support::Engine,
) -> (TestApp, String, crate::support::TempDir) {
    // A class whose runs may take two days, longer than any access ending today.
    let (app, ana, data) = crate::sandbox::small_world_on(engine, |s| {
        s.sandbox.classes.get_mut("tiny").unwrap().max_run_secs = 172_800;
    })
    .await;
    std::fs::write(data.path().join("cohort.csv"), "id,age\n1,40\n").unwrap();
    record(&app, "cohort").await;
    (app, ana, data)
}

/// Runs `cmd` in `sandbox` as `token`; the status and body of the answer.
pub(crate) async fn ask_run(
    app: &TestApp,
    token: &str,
    sandbox: &str,
    cmd: &[&str],
) -> (StatusCode, Value) {
    app.post(
        &format!("/api/v1/sandboxes/{sandbox}/runs"),
        Some(token),
        &json!({"cmd": cmd}),
    )
    .await
}

/// Reads a run's output as `token`: the status and the body.
pub(crate) async fn read_logs(app: &TestApp, token: &str, run: &str) -> (StatusCode, String) {
    let r = app
        .http
        .get(format!("{}/api/v1/runs/{run}/logs", app.url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    (r.status(), r.text().await.unwrap())
}

/// The output of a finished run.
pub(crate) async fn logs_of(app: &TestApp, token: &str, run: &str) -> String {
    let (st, body) = read_logs(app, token, run).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    body
}

/// A sandbox mounts the dataset once its project's access is approved; every run re-checks
/// the access, ends before it does and is refused once it has expired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_approved_access_the_dataset_is_mounted_until_it_ends() {
    if !docker_available() {
        return;
    }
    for engine in engines() {
        let (app, ana, _data) = mounting_world(engine).await;
        let (st, b) = ask_sandbox(&app, &["cohort"]).await;
        assert_refused(st, &b, StatusCode::FORBIDDEN, "no_access");
        grant(&app, "p1", "cohort", None).await;
        let (st, sb) = ask_sandbox(&app, &["cohort"]).await;
        assert_eq!(st, StatusCode::CREATED, "{sb}");
        assert_eq!(sb["datasets"], json!(["cohort"]));
        let sb = sb["id"].as_str().unwrap();
        let (st, r) = ask_run(&app, &ana, sb, &["ls", "/vre/data/cohort"]).await;
        assert_eq!(st, StatusCode::ACCEPTED, "{r}");
        let id = r["id"].as_str().unwrap();
        let r = app.run_reaching(&ana, id, "finished").await;
        assert_eq!(r["exit_code"], 0, "{r}");
        assert_eq!(logs_of(&app, &ana, id).await, "cohort.csv\n");
        assert_eq!(r["timeout_secs"], 172_800, "no end: the class's longest");

        // Access that ends today: the run's deadline is no later than the end of the day.
        set_until(&app, "cohort", &gateway::time::now()[..10]).await;
        let (st, r) = ask_run(&app, &ana, sb, &["true"]).await;
        assert_eq!(st, StatusCode::ACCEPTED, "{r}");
        let t = r["timeout_secs"].as_i64().unwrap();
        assert!((1..=86_400).contains(&t), "{r}");
        app.run_reaching(&ana, r["id"].as_str().unwrap(), "finished")
            .await;

        // Expired: every run is refused, audited.
        set_until(&app, "cohort", "2001-01-01").await;
        let (st, b) = ask_run(&app, &ana, sb, &["true"]).await;
        assert_refused(st, &b, StatusCode::FORBIDDEN, "access_expired");
        assert!(b["message"].as_str().unwrap().contains("cohort"), "{b}");
        let events = app.audit_events(sb).await;
        let last = events.last().unwrap();
        assert_eq!(last["action"], "run.refused", "{events:?}");
        assert!(
            last["detail"].as_str().unwrap().contains("access"),
            "{last}"
        );
        app.stop().await;
    }
}

/// An admin's revocation ends the access at once: the live run that mounts the dataset is
/// stopped, and no run starts after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_an_access_stops_live_runs_and_every_run_after() {
    if !docker_available() {
        return;
    }
    for engine in engines() {
        let (app, ana, _data) = mounting_world(engine).await;
        let access = grant(&app, "p1", "cohort", None).await;
        let (st, sb) = ask_sandbox(&app, &["cohort"]).await;
        assert_eq!(st, StatusCode::CREATED, "{sb}");
        let sb = sb["id"].as_str().unwrap();
        let (st, r) = ask_run(&app, &ana, sb, &["sleep", "60"]).await;
        assert_eq!(st, StatusCode::ACCEPTED, "{r}");
        let run = r["id"].as_str().unwrap();
        app.run_reaching(&ana, run, "running").await;

        let path = format!("/api/v1/applications/{access}/access/revoke");
        let body = json!({"reason": "consent withdrawn"});
        let (st, b) = app
            .post(&path, Some(&app.token("op", "operator")), &body)
            .await;
        assert_refused(st, &b, StatusCode::FORBIDDEN, "forbidden");
        // Through `vre access revoke`.
        let admin = app.token("root", "admin");
        let args = [
            "access",
            "revoke",
            &access,
            "--reason",
            "consent withdrawn",
            "--json",
        ];
        let (ok, out, err) = vre(&app, &admin, &args).await;
        assert!(ok, "{err}");
        let b: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(b["datasets"], json!(["cohort"]));
        assert_eq!(b["cancelled_runs"], json!([run]));
        let r = app.run_reaching(&ana, run, "finished").await;
        assert_eq!(r["cancelled_by"], "root", "{r}");
        assert!(actions(&app.audit_events(&access).await).contains(&"access.revoke"));

        let (st, b) = app.post(&path, Some(&admin), &body).await;
        assert_refused(st, &b, StatusCode::CONFLICT, "wrong_state");
        let (st, b) = ask_run(&app, &ana, sb, &["true"]).await;
        assert_refused(st, &b, StatusCode::FORBIDDEN, "access_expired");
        let (st, b) = ask_sandbox(&app, &["cohort"]).await;
        assert_refused(st, &b, StatusCode::FORBIDDEN, "access_expired");
        app.stop().await;
    }
}

/// A run that waited in the queue while its access ended is stopped as soon as it starts: its
/// deadline never passes the access's end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_run_whose_access_ends_meanwhile_is_stopped_at_its_start() {
    if !docker_available() {
        return;
    }
    let engine = engines()[0];
    let (app, ana, _data) = crate::sandbox::small_world_on(engine, |s| {
        s.sandbox.max_concurrent_runs_per_project = 1;
    })
    .await;
    record(&app, "cohort").await;
    grant(&app, "p1", "cohort", None).await;
    let (st, sb) = ask_sandbox(&app, &["cohort"]).await;
    assert_eq!(st, StatusCode::CREATED, "{sb}");
    let sb = sb["id"].as_str().unwrap();
    let (st, first) = ask_run(&app, &ana, sb, &["sleep", "60"]).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{first}");
    let first = first["id"].as_str().unwrap();
    app.run_reaching(&ana, first, "running").await;
    let (st, second) = ask_run(&app, &ana, sb, &["sleep", "30"]).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{second}");
    let second = second["id"].as_str().unwrap();

    expire(&app, "cohort").await;
    let (st, b) = app
        .post(
            &format!("/api/v1/runs/{first}/cancel"),
            Some(&ana),
            &json!({}),
        )
        .await;
    assert!(st.is_success(), "{b}");
    let r = app.run_reaching(&ana, second, "finished").await;
    assert_eq!(r["outcome"], "timed_out", "{r}");
    app.stop().await;
}

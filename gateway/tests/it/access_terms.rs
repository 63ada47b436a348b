//! Conditions on access: approving reviewers may tighten what an access application asks (an
//! earlier last day, no commercial use, run output hidden from the analysts), the strictest of
//! the approving votes is what its grants record, and every access application names its
//! datasets; on every engine.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::access::{ask, ask_run, ask_sandbox, dataset, mounting_world, read_logs};
use crate::datasets::vre;
use crate::support::{TestApp, assert_refused, docker_available, engines};

/// A gateway on which access applications need two approvals, with project p1 (analyst ana).
async fn two_approvals(engine: crate::support::Engine) -> TestApp {
    let app = TestApp::spawn_with(engine, |s| s.review.quorum.access = 2).await;
    app.project("p1", &[("ana", "analyst")]).await;
    app
}

/// An access application of p1 to `ds`, asking until 2099-12-31 for commercial use; its id.
pub(crate) async fn asking(app: &TestApp, ds: &str) -> String {
    let (st, a) = ask(
        app,
        "p1",
        json!({"datasets": [ds], "purpose": "study", "until": "2099-12-31", "commercial": true}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{a}");
    a["id"].as_str().unwrap().to_owned()
}

/// `reviewer` approves `id` with `conditions`; the status and body.
async fn approve_with(
    app: &TestApp,
    id: &str,
    reviewer: &str,
    conditions: Value,
) -> (StatusCode, Value) {
    let t = app.token(reviewer, "reviewer");
    app.post(
        &format!("/api/v1/applications/{id}/decisions"),
        Some(&t),
        &json!({"decision": "approve", "comment": "with conditions", "conditions": conditions}),
    )
    .await
}

/// The application as a reviewer reads it.
async fn detail(app: &TestApp, id: &str) -> Value {
    let (st, a) = app
        .get(
            &format!("/api/v1/applications/{id}"),
            Some(&app.token("rev9", "reviewer")),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{a}");
    a
}

/// The detail of the `access.grant` event of `id`.
async fn grant_event(app: &TestApp, id: &str) -> Value {
    let events = app.audit_events(id).await;
    let e = events
        .iter()
        .find(|e| e["action"] == "access.grant")
        .unwrap_or_else(|| panic!("no access.grant: {events:?}"));
    serde_json::from_str(e["detail"].as_str().unwrap()).unwrap()
}

#[tokio::test]
async fn the_strictest_of_the_approving_votes_applies_to_the_grants() {
    for engine in engines() {
        let app = two_approvals(engine).await;
        let ds = dataset(&app).await;

        // One of two approvers tightens the last day: it applies; the rest is as asked.
        let one = asking(&app, &ds).await;
        let (st, b) = approve_with(&app, &one, "rev1", json!({"until": "2099-06-30"})).await;
        assert_eq!(
            (st, b["state"].as_str()),
            (StatusCode::OK, Some("in_review")),
            "{b}"
        );
        let (st, b) = app.vote(&one, "rev2", "approve").await;
        assert_eq!(
            (st, b["state"].as_str()),
            (StatusCode::OK, Some("approved")),
            "{b}"
        );
        let a = detail(&app, &one).await;
        assert_eq!(a["grants"].as_array().unwrap().len(), 1, "{a}");
        let g = &a["grants"][0];
        assert_eq!(
            (&g["dataset"], &g["until"], &g["commercial"], &g["logs"]),
            (
                &json!(ds),
                &json!("2099-06-30"),
                &json!(true),
                &json!("visible")
            ),
            "{a}"
        );
        assert_eq!(
            a["decisions"][0]["conditions"],
            json!({"until": "2099-06-30"})
        );
        assert!(a["decisions"][1].get("conditions").is_none(), "{a}");

        // Two approvers, each stricter in something: the earliest day, no commercial use,
        // hidden output. The second vote goes through `vre app approve`.
        let two = asking(&app, &ds).await;
        let (st, b) = approve_with(
            &app,
            &two,
            "rev1",
            json!({"until": "2099-06-30", "logs": "hidden"}),
        )
        .await;
        assert_eq!(st, StatusCode::OK, "{b}");
        let rev2 = app.token("rev2", "reviewer");
        let (ok, out, err) = vre(
            &app,
            &rev2,
            &[
                "app",
                "approve",
                &two,
                "--comment",
                "tighter",
                "--until",
                "2099-03-31",
                "--commercial",
                "no",
            ],
        )
        .await;
        assert!(ok && out.contains("approved"), "{out}{err}");
        let a = detail(&app, &two).await;
        let g = &a["grants"][0];
        assert_eq!(
            (&g["until"], &g["commercial"], &g["logs"]),
            (&json!("2099-03-31"), &json!(false), &json!("hidden")),
            "{a}"
        );
        let e = grant_event(&app, &two).await;
        assert_eq!(
            (&e["until"], &e["commercial"], &e["logs"]),
            (&json!("2099-03-31"), &json!(false), &json!("hidden")),
            "{e}"
        );
        assert_eq!(
            e["asked"],
            json!({"until": "2099-12-31", "commercial": true})
        );
        assert_eq!(e["conditions_by"], json!(["rev1", "rev2"]));

        // No commercial use, as `vre app show` tells it.
        let (ok, out, err) = vre(&app, &rev2, &["app", "show", &two]).await;
        assert!(ok, "{err}");
        assert!(
            out.contains("no commercial use") && out.contains("until 2099-03-31"),
            "{out}"
        );
        assert!(
            out.contains("conditions: until 2099-06-30, run output hidden"),
            "{out}"
        );
        // And under the dataset, for its institution's steward.
        let hana = app.token_for("hana", "steward", Some(crate::datasets::INSTITUTION));
        let (ok, out, err) = vre(&app, &hana, &["dataset", "show", &ds]).await;
        assert!(ok, "{err}");
        let line =
            format!("access: {ds} to p1: until 2099-03-31, no commercial use, run output hidden");
        assert!(out.contains(&line), "{line} not in:\n{out}");
        assert!(app.verify_audit().await.problem.is_none());
        app.stop().await;
    }
}

#[tokio::test]
async fn conditions_that_loosen_or_do_not_fit_are_refused() {
    for engine in engines() {
        let app = two_approvals(engine).await;
        let ds = dataset(&app).await;
        let (st, a) = ask(
            &app,
            "p1",
            json!({"datasets": [ds], "purpose": "study", "until": "2099-12-31"}),
        )
        .await;
        assert_eq!(st, StatusCode::CREATED, "{a}");
        let id = a["id"].as_str().unwrap().to_owned();
        for bad in [
            json!({"until": "2100-01-01"}),
            json!({"until": "2001-01-01"}),
            json!({"until": "2099-02-30"}),
            json!({"commercial": true}),
        ] {
            let (st, b) = approve_with(&app, &id, "rev1", bad.clone()).await;
            assert_refused(st, &b, StatusCode::BAD_REQUEST, "bad_conditions");
        }
        let (st, b) = approve_with(&app, &id, "rev1", json!({"logs": "opaque"})).await;
        assert_refused(st, &b, StatusCode::BAD_REQUEST, "bad_request");
        // With a rejection: conditions come with an approval only.
        let t = app.token("rev1", "reviewer");
        let (st, b) = app
            .post(
                &format!("/api/v1/applications/{id}/decisions"),
                Some(&t),
                &json!({"decision": "reject", "comment": "no", "conditions": {"commercial": false}}),
            )
            .await;
        assert_refused(st, &b, StatusCode::BAD_REQUEST, "bad_conditions");
        // Nothing was recorded by the refusals.
        let a = detail(&app, &id).await;
        assert_eq!(
            (
                a["state"].as_str(),
                a["decisions"].as_array().unwrap().len()
            ),
            (Some("submitted"), 0),
            "{a}"
        );

        // On another kind of application: its listing.
        let steward = app.token_for("hana", "steward", Some(crate::datasets::INSTITUTION));
        let (_, listing) = crate::datasets::register(
            &app,
            &steward,
            &crate::datasets::example_dmp(crate::datasets::INSTITUTION),
        )
        .await;
        let (st, b) = approve_with(&app, &listing, "rev1", json!({"until": "2099-01-01"})).await;
        assert_refused(st, &b, StatusCode::BAD_REQUEST, "bad_conditions");
        assert!(b["message"].as_str().unwrap().contains("listing"), "{b}");
        app.stop().await;
    }
}

#[tokio::test]
async fn an_access_application_names_its_datasets() {
    for engine in engines() {
        let app = TestApp::spawn(engine).await;
        app.project("p1", &[("ana", "analyst")]).await;
        let ana = app.token("ana", "analyst");
        for body in [
            json!({"kind": "access", "project": "p1", "title": "Access"}),
            json!({"kind": "access", "project": "p1", "title": "Access", "payload": {}}),
            json!({"kind": "access", "project": "p1", "title": "Access", "payload": {"purpose": "study"}}),
        ] {
            let (st, b) = app.post("/api/v1/applications", Some(&ana), &body).await;
            assert_refused(st, &b, StatusCode::BAD_REQUEST, "bad_payload");
            let msg = b["message"].as_str().unwrap();
            assert!(
                msg.contains("\"datasets\": [ID...]") && msg.contains("datasets"),
                "{msg}"
            );
        }
        let (st, list) = app.get("/api/v1/applications", Some(&ana)).await;
        assert_eq!((st, list), (StatusCode::OK, json!([])));
        app.stop().await;
    }
}

/// Runs `cmd` in `sandbox` to its end; the run's id.
async fn finished(app: &TestApp, ana: &str, sandbox: &str, cmd: &[&str]) -> String {
    let (st, r) = ask_run(app, ana, sandbox, cmd).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{r}");
    let id = r["id"].as_str().unwrap().to_owned();
    let r = app.run_reaching(ana, &id, "finished").await;
    assert_eq!(r["exit_code"], 0, "{r}");
    id
}

/// An access whose conditions hide run output hides it: sandboxes mounting the dataset are
/// made with hidden logs (one asked visible is refused), and runs of a sandbox made before
/// such an access was granted are hidden from then on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_access_that_hides_output_hides_it_from_the_analysts() {
    if !docker_available() {
        return;
    }
    for engine in engines() {
        let (app, ana, _data) = mounting_world(engine).await;
        // Granted as asked: the sandbox shows its runs' output.
        crate::access::grant(&app, "p1", "cohort", None).await;
        let (st, sb) = ask_sandbox(&app, &["cohort"]).await;
        assert_eq!(
            (st, sb["logs"].as_str()),
            (StatusCode::CREATED, Some("visible")),
            "{sb}"
        );
        let before = sb["id"].as_str().unwrap().to_owned();
        let run = finished(&app, &ana, &before, &["ls", "/vre/data/cohort"]).await;
        assert_eq!(
            read_logs(&app, &ana, &run).await,
            (StatusCode::OK, "cohort.csv\n".to_owned())
        );

        // Another access to it, approved with its output hidden.
        let (st, a) = ask(
            &app,
            "p1",
            json!({"datasets": ["cohort"], "purpose": "more"}),
        )
        .await;
        assert_eq!(st, StatusCode::CREATED, "{a}");
        let id = a["id"].as_str().unwrap();
        let (st, b) = approve_with(&app, id, "rev1", json!({"logs": "hidden"})).await;
        assert_eq!(
            (st, b["state"].as_str()),
            (StatusCode::OK, Some("approved")),
            "{b}"
        );

        // The earlier sandbox's runs are hidden from now on, the old one's too.
        let (st, body) = read_logs(&app, &ana, &run).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{body}");
        assert!(body.contains("logs_hidden"), "{body}");
        // A new sandbox mounting it is hidden; one asked visible is refused, naming the dataset.
        let (st, sb) = ask_sandbox(&app, &["cohort"]).await;
        assert_eq!(
            (st, sb["logs"].as_str()),
            (StatusCode::CREATED, Some("hidden")),
            "{sb}"
        );
        let hidden = sb["id"].as_str().unwrap().to_owned();
        let run = finished(&app, &ana, &hidden, &["ls", "/vre/data/cohort"]).await;
        let (st, body) = read_logs(&app, &ana, &run).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{body}");
        let (st, r) = app.get(&format!("/api/v1/runs/{run}"), Some(&ana)).await;
        assert_eq!(
            (st, r["log_bytes"].as_i64()),
            (StatusCode::OK, Some(11)),
            "{r}"
        );
        let (st, b) = app
            .post(
                "/api/v1/sandboxes",
                Some(&ana),
                &json!({"project": "p1", "image": crate::support::TEST_IMAGE, "datasets": ["cohort"], "logs": "visible"}),
            )
            .await;
        assert_refused(st, &b, StatusCode::FORBIDDEN, "logs_hidden");
        assert!(b["message"].as_str().unwrap().contains("cohort"), "{b}");

        // A sandbox that mounts nothing still shows its output.
        let plain = app.new_sandbox(&ana, "p1").await;
        let run = finished(&app, &ana, &plain, &["echo", "plain"]).await;
        assert_eq!(
            read_logs(&app, &ana, &run).await,
            (StatusCode::OK, "plain\n".to_owned())
        );
        app.stop().await;
    }
}

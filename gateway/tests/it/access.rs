//! Access to datasets: an access application names registered datasets; its approval grants
//! the project access, recorded with it; on every engine.

use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::Row;

use crate::datasets::{INSTITUTION, example_dmp, register, vre};
use crate::support::{TestApp, actions, assert_refused, each_engine};

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

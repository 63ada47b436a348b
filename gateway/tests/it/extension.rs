//! A dataset's restricted sharing over time: an extension application moves its end once
//! approved; once the end has passed, the category job moves the dataset to the category its
//! DMP names after it, once, however many gateways run the job; the dataset's history shows
//! every decision and who made it. On every engine.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::datasets::{INSTITUTION, example_dmp, register, vre};
use crate::support::{TestApp, actions, assert_refused, engines};

/// The example DMP's end of restricted sharing, and the category after it.
const END: &str = "2035-03-31";
const AFTER: &str = "restricted_open_sharing";

/// A dataset registered by hana, a steward of its institution; its id and hana's token.
async fn registered(app: &TestApp) -> (String, String) {
    let hana = app.token_for("hana", "steward", Some(INSTITUTION));
    let (ds, _) = register(app, &hana, &example_dmp(INSTITUTION)).await;
    (ds, hana)
}

/// Asks, with `token`, for `dataset`'s restricted sharing to last until `until`.
async fn extend(app: &TestApp, token: &str, dataset: &str, until: &str) -> (StatusCode, Value) {
    app.post(
        &format!("/api/v1/datasets/{dataset}/extension"),
        Some(token),
        &json!({"until": until, "justification": "the follow-up study needs two more years"}),
    )
    .await
}

/// The dataset as its steward reads it.
async fn dataset(app: &TestApp, token: &str, id: &str) -> Value {
    let (st, d) = app
        .get(&format!("/api/v1/datasets/{id}"), Some(token))
        .await;
    assert_eq!(st, StatusCode::OK, "{d}");
    d
}

#[tokio::test]
async fn an_approved_extension_moves_the_end_of_restricted_sharing() {
    for engine in engines() {
        let app = TestApp::spawn(engine).await;
        app.project("p1", &[("ana", "analyst")]).await;
        let (ds, hana) = registered(&app).await;

        // Refused: not after the current end, not a date; by a steward of another
        // institution (who cannot see it), an analyst or a reviewer.
        for bad in [END, "2030-01-01", "2036-02-30", "soon"] {
            let (st, b) = extend(&app, &hana, &ds, bad).await;
            assert_refused(st, &b, StatusCode::BAD_REQUEST, "bad_extension");
        }
        let other = app.token_for("olga", "steward", Some("other-u"));
        let (st, b) = extend(&app, &other, &ds, "2036-03-31").await;
        assert_refused(st, &b, StatusCode::NOT_FOUND, "not_found");
        for (sub, role) in [("ana", "analyst"), ("rev1", "reviewer")] {
            let (st, b) = extend(&app, &app.token(sub, role), &ds, "2036-03-31").await;
            assert_refused(st, &b, StatusCode::FORBIDDEN, "forbidden");
        }
        // Not through the route of a project's applications.
        app.project("p2", &[("sue", "steward")]).await;
        let (st, b) = app
            .post(
                "/api/v1/applications",
                Some(&app.token("sue", "steward")),
                &json!({"kind": "extension", "project": "p2", "title": "Longer"}),
            )
            .await;
        assert_refused(st, &b, StatusCode::BAD_REQUEST, "wrong_route");
        // A dataset not in restricted sharing has nothing to extend.
        app.record_dataset("ds-open", INSTITUTION).await;
        let (st, b) = extend(&app, &hana, "ds-open", "2036-03-31").await;
        assert_refused(st, &b, StatusCode::BAD_REQUEST, "bad_extension");

        // Through `vre dataset extend`: the application belongs to the dataset.
        let (ok, out, err) = vre(
            &app,
            &hana,
            &[
                "dataset",
                "extend",
                &ds,
                "--until",
                "2036-03-31",
                "--justification",
                "the follow-up study",
                "--json",
            ],
        )
        .await;
        assert!(ok, "{err}");
        let id = serde_json::from_str::<Value>(&out).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let (st, a) = app
            .get(&format!("/api/v1/applications/{id}"), Some(&hana))
            .await;
        assert_eq!(st, StatusCode::OK, "{a}");
        assert_eq!(
            (
                &a["kind"],
                &a["dataset"],
                &a["project"],
                &a["payload"]["until"]
            ),
            (
                &json!("extension"),
                &json!(ds),
                &Value::Null,
                &json!("2036-03-31")
            ),
            "{a}"
        );
        // Its institution's stewards do not decide on it; a reviewer does.
        let (st, b) = app.decide(&id, &hana, "approve", "fine").await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{b}");
        assert_eq!(dataset(&app, &hana, &ds).await["restricted_until"], END);
        let (st, b) = app.vote(&id, "rev1", "approve").await;
        assert_eq!(
            (st, b["state"].as_str()),
            (StatusCode::OK, Some("extended")),
            "{b}"
        );
        let d = dataset(&app, &hana, &ds).await;
        assert_eq!(
            (&d["restricted_until"], &d["category"]),
            (&json!("2036-03-31"), &json!("restricted_closed_sharing")),
            "{d}"
        );
        let events = app.audit_events(&ds).await;
        let extended = events
            .iter()
            .find(|e| e["action"] == "dataset.extend")
            .unwrap_or_else(|| panic!("{events:?}"));
        let detail: Value = serde_json::from_str(extended["detail"].as_str().unwrap()).unwrap();
        assert_eq!(
            detail,
            json!({"application": id, "from": END, "to": "2036-03-31"})
        );
        // The next extension starts from the new end.
        let (st, b) = extend(&app, &hana, &ds, "2036-01-01").await;
        assert_refused(st, &b, StatusCode::BAD_REQUEST, "bad_extension");

        // The history: who applied, who voted, what moved.
        let (ok, out, err) = vre(&app, &hana, &["dataset", "show", &ds]).await;
        assert!(ok, "{err}");
        for line in [
            "hana       registered it (restricted_closed_sharing)",
            "hana       applied for listing",
            "hana       applied for extension",
            &format!("rev1       voted approve on {id}: rev1 says approve"),
            &format!("restricted sharing extended from {END} to 2036-03-31 ({id})"),
            &format!("{id} approved -> extended"),
        ] {
            assert!(out.contains(line), "{line} not in:\n{out}");
        }
        let (st, h) = app
            .get(&format!("/api/v1/datasets/{ds}/history"), Some(&hana))
            .await;
        assert_eq!(st, StatusCode::OK, "{h}");
        let seqs: Vec<i64> = h["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["seq"].as_i64().unwrap())
            .collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{h}");
        assert!(app.verify_audit().await.problem.is_none());
        app.stop().await;
    }
}

/// Sets `dataset`'s end of restricted sharing, as if it had been registered so.
async fn set_end(app: &TestApp, dataset: &str, end: &str) {
    sqlx::query("UPDATE datasets SET restricted_until = $1 WHERE id = $2")
        .bind(end)
        .bind(dataset)
        .execute(app.state.db.pool())
        .await
        .unwrap();
}

/// The `dataset.category` events about `dataset`.
async fn category_moves(app: &TestApp, dataset: &str) -> Vec<Value> {
    app.audit_events(dataset)
        .await
        .into_iter()
        .filter(|e| e["action"] == "dataset.category")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dataset_whose_restricted_sharing_ended_moves_to_the_next_category_once() {
    for engine in engines() {
        let app = TestApp::spawn(engine).await;
        let (ds, hana) = registered(&app).await;
        let (st, pending) = extend(&app, &hana, &ds, "2036-03-31").await;
        assert_eq!(st, StatusCode::CREATED, "{pending}");
        let today = policy::dmp::Date::parse(&gateway::time::now()[..10]).unwrap();

        // Not yet: nothing moves.
        let moved = gateway::service::extension::move_categories(&app.state, &today)
            .await
            .unwrap();
        assert!(moved.is_empty(), "{moved:?}");

        // Ended yesterday: of two passes at once (two gateways), one moves it.
        set_end(&app, &ds, "2001-01-01").await;
        let (a, b) = tokio::join!(
            gateway::service::extension::move_categories(&app.state, &today),
            gateway::service::extension::move_categories(&app.state, &today),
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(a.len() + b.len(), 1, "{a:?} {b:?}");
        assert!(
            gateway::service::extension::move_categories(&app.state, &today)
                .await
                .unwrap()
                .is_empty()
        );
        let d = dataset(&app, &hana, &ds).await;
        assert_eq!(
            (&d["category"], &d["restricted_until"], &d["category_after"]),
            (&json!(AFTER), &Value::Null, &Value::Null),
            "{d}"
        );
        let moves = category_moves(&app, &ds).await;
        assert_eq!(moves.len(), 1, "{moves:?}");
        assert_eq!(moves[0]["actor"], "gateway");
        let detail: Value = serde_json::from_str(moves[0]["detail"].as_str().unwrap()).unwrap();
        assert_eq!(
            detail,
            json!({"from": "restricted_closed_sharing", "to": AFTER, "restricted_until": "2001-01-01"})
        );

        // An extension approved after the end has passed no longer applies.
        let id = pending["id"].as_str().unwrap();
        let (st, b) = app.vote(id, "rev1", "approve").await;
        assert_refused(st, &b, StatusCode::CONFLICT, "wrong_state");
        assert_eq!(dataset(&app, &hana, &ds).await["category"], AFTER);
        let (ok, out, err) = vre(&app, &hana, &["dataset", "history", &ds]).await;
        assert!(ok, "{err}");
        assert!(
            out.contains(&format!(
                "gateway    restricted sharing ended 2001-01-01: category restricted_closed_sharing -> {AFTER}"
            )),
            "{out}"
        );
        assert!(app.verify_audit().await.problem.is_none());
        app.stop().await;
    }
}

/// The job runs at start and then every `dataset_categories.check_interval_secs`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_category_job_runs_in_the_background() {
    let app = TestApp::spawn_with(engines()[0], |s| {
        s.dataset_categories.check_interval_secs = 1;
    })
    .await;
    let (ds, _) = registered(&app).await;
    set_end(&app, &ds, "2001-01-01").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while category_moves(&app, &ds).await.is_empty() {
        assert!(Instant::now() < deadline, "the job never moved {ds}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(actions(&app.audit_events(&ds).await).contains(&"dataset.category"));
    app.stop().await;
}

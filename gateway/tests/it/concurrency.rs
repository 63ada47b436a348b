//! Many writers at once: concurrent votes are counted one after the other, a quorum is reached
//! exactly once, a reviewer's vote counts once however often it is sent, and concurrent writes
//! of every kind leave one whole audit chain.

use std::collections::BTreeSet;
use std::sync::Arc;

use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::Barrier;

use crate::support::{TestApp, engines, json_of, text_of};

/// Sends every `(path, token, body)` POST at once: each task first opens its own connection,
/// then all are released together. Returns the answers in the order given.
async fn all_at_once(
    app: &TestApp,
    requests: Vec<(String, String, Value)>,
) -> Vec<(StatusCode, Value)> {
    let barrier = Arc::new(Barrier::new(requests.len()));
    let tasks = requests.into_iter().map(|(path, token, body)| {
        let http = app.http.clone();
        let base = app.url.clone();
        let barrier = barrier.clone();
        tokio::spawn(async move {
            text_of(http.get(format!("{base}/healthz"))).await;
            barrier.wait().await;
            json_of(
                http.post(format!("{base}{path}"))
                    .bearer_auth(token)
                    .json(&body),
            )
            .await
        })
    });
    join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.expect("a request task"))
        .collect()
}

fn approve(app: &TestApp, id: &str, reviewer: &str) -> (String, String, Value) {
    (
        format!("/api/v1/applications/{id}/decisions"),
        app.token(reviewer, "reviewer"),
        json!({"decision": "approve", "comment": format!("{reviewer} approves")}),
    )
}

fn detail(e: &Value) -> Value {
    serde_json::from_str(e["detail"].as_str().unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_quorum_is_reached_exactly_once_under_concurrent_votes() {
    const QUORUM: usize = 5;
    const REVIEWERS: usize = 20;
    for engine in engines() {
        let app = TestApp::spawn_with(engine, |s| s.review.quorum.access = QUORUM as u32).await;
        app.project("p1", &[("ana", "analyst")]).await;
        let id = app.application("access", "p1", "ana", "analyst").await;
        let reviewers: Vec<String> = (1..=REVIEWERS).map(|i| format!("rev{i:02}")).collect();
        let answers = all_at_once(
            &app,
            reviewers.iter().map(|r| approve(&app, &id, r)).collect(),
        )
        .await;

        let mut counted = BTreeSet::new();
        let mut approvals = Vec::new();
        let mut approved = 0;
        for ((st, body), reviewer) in answers.iter().zip(&reviewers) {
            match *st {
                StatusCode::OK => {
                    counted.insert(reviewer.clone());
                    approvals.push(body["approvals"].as_u64().unwrap());
                    match body["state"].as_str().unwrap() {
                        "approved" => {
                            approved += 1;
                            assert_eq!(body["approvals"], QUORUM, "{body}");
                        }
                        "in_review" => {}
                        other => panic!("{engine:?}: a vote left the application {other}"),
                    }
                }
                StatusCode::CONFLICT => assert_eq!(body["code"], "wrong_state", "{body}"),
                other => panic!("{engine:?}: a vote was answered {other}: {body}"),
            }
        }
        assert_eq!(counted.len(), QUORUM, "{engine:?}: votes accepted");
        assert_eq!(approved, 1, "{engine:?}: the quorum was reached once");
        approvals.sort_unstable();
        assert_eq!(
            approvals,
            [1, 2, 3, 4, 5],
            "{engine:?}: each vote saw the ones before it"
        );

        let rev = app.token("rev99", "reviewer");
        let (_, b) = app
            .get(&format!("/api/v1/applications/{id}"), Some(&rev))
            .await;
        assert_eq!(
            (b["state"].as_str(), b["approvals"].as_u64()),
            (Some("approved"), Some(5))
        );
        let recorded: BTreeSet<String> = b["decisions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["reviewer"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            recorded, counted,
            "{engine:?}: the recorded votes are the accepted ones"
        );

        let events = app.audit_events(&id).await;
        let decisions = events
            .iter()
            .filter(|e| e["action"] == "application.decision")
            .count();
        assert_eq!(decisions, QUORUM);
        let to: Vec<String> = events
            .iter()
            .filter(|e| e["action"] == "application.state")
            .map(|e| detail(e)["to"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(to, ["in_review", "approved"], "{engine:?}: state changes");
        let report = app.verify_audit().await;
        assert_eq!(report.problem, None);
        // project, submission, five votes, two state changes, the grant
        assert_eq!(report.events, 10);
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_reviewer_voting_many_times_at_once_counts_once() {
    for engine in engines() {
        let app = TestApp::spawn_with(engine, |s| s.review.quorum.access = 5).await;
        app.project("p1", &[("ana", "analyst")]).await;
        let id = app.application("access", "p1", "ana", "analyst").await;
        let answers =
            all_at_once(&app, (0..20).map(|_| approve(&app, &id, "rev1")).collect()).await;
        let ok: Vec<&Value> = answers
            .iter()
            .filter(|(st, _)| *st == StatusCode::OK)
            .map(|(_, b)| b)
            .collect();
        assert_eq!(ok.len(), 1, "{engine:?}: {answers:?}");
        assert_eq!(
            (ok[0]["state"].as_str(), ok[0]["approvals"].as_u64()),
            (Some("in_review"), Some(1))
        );
        for (st, body) in answers.iter().filter(|(st, _)| *st != StatusCode::OK) {
            assert_eq!(
                (*st, body["code"].as_str()),
                (StatusCode::CONFLICT, Some("already_voted")),
                "{engine:?}: {body}"
            );
        }

        let rev = app.token("rev2", "reviewer");
        let (_, b) = app
            .get(&format!("/api/v1/applications/{id}"), Some(&rev))
            .await;
        assert_eq!(b["decisions"].as_array().unwrap().len(), 1);
        assert_eq!(b["approvals"], 1);
        let events = app.audit_events(&id).await;
        let decisions = events
            .iter()
            .filter(|e| e["action"] == "application.decision")
            .count();
        assert_eq!(decisions, 1, "{engine:?}");
        assert_eq!(app.verify_audit().await.problem, None);
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_of_every_kind_share_one_chain() {
    for engine in engines() {
        let app = TestApp::spawn(engine).await;
        app.project("p1", &[("ana", "analyst")]).await;
        let mut open = Vec::new();
        for _ in 0..8 {
            open.push(app.application("access", "p1", "ana", "analyst").await);
        }
        let before = app.verify_audit().await;
        assert_eq!((before.events, before.problem.clone()), (9, None));

        let ana = app.token("ana", "analyst");
        let admin = app.token("root", "admin");
        let steward = app.token("sue", "steward");
        let mut requests = Vec::new();
        for (i, id) in open.iter().enumerate() {
            // With a quorum of one: a vote, a state change and the grant, in one commit.
            requests.push(approve(&app, id, &format!("rev{i}")));
            requests.push((
                format!("/api/v1/applications/{id}/attachments"),
                steward.clone(),
                json!({"kind": "institution_review", "text": format!("review {i}")}),
            ));
            requests.push((
                "/api/v1/applications".to_owned(),
                ana.clone(),
                json!({"kind": "access", "project": "p1", "title": format!("more {i}"), "payload": app.access_payload().await}),
            ));
            requests.push((
                "/api/v1/projects".to_owned(),
                admin.clone(),
                json!({"id": format!("q{i}"), "title": "Another", "members": []}),
            ));
        }
        let answers = all_at_once(&app, requests).await;
        for (st, body) in &answers {
            assert!(st.is_success(), "{engine:?}: {st} {body}");
        }

        // 8 × (decision + state + grant + attachment + submission + project) after the first 9.
        let report = app.verify_audit().await;
        assert_eq!(report.problem, None, "{engine:?}");
        assert_eq!(report.events, 9 + 8 * 6, "{engine:?}");
        let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM audit_events")
            .fetch_one(app.state.db.pool())
            .await
            .unwrap();
        assert_eq!(count, report.events, "no gaps, no duplicates");
        app.stop().await;
    }
}

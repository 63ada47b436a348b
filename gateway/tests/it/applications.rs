//! The committee's machinery end to end: submit, vote, quorum, return, resubmit, withdraw,
//! attachments, and what the audit log remembers of it.

use reqwest::StatusCode;
use serde_json::json;

use crate::support::{TestApp, actions, assert_refused, each_engine, engines, keys_of, walk_list};

/// The ids of the objects in a list answered by the API.
fn ids_in(list: &serde_json::Value) -> Vec<&str> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn access_application_lifecycle() {
    each_engine(|app| async move {
        app.project("p1", &[("ana", "analyst"), ("colleague", "analyst")])
            .await;
        let id = app.application("access", "p1", "ana", "analyst").await;
        let ana = app.token("ana", "analyst");

        let (st, body) = app
            .get(&format!("/api/v1/applications/{id}"), Some(&ana))
            .await;
        assert_eq!(st, StatusCode::OK);
        assert_eq!(body["state"], "submitted");
        assert_eq!(body["quorum"], 1);

        // A request for changes returns it; the requester resubmits; a new round opens.
        let (st, body) = app.vote(&id, "rev1", "request_changes").await;
        assert_eq!(st, StatusCode::OK, "{body}");
        assert_eq!(body["state"], "changes_requested");
        let (st, body) = app
            .post(
                &format!("/api/v1/applications/{id}/resubmit"),
                Some(&ana),
                &json!({"comment": "clarified the purpose", "description": "a better why"}),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{body}");
        assert_eq!(
            (body["state"].as_str(), body["round"].as_i64()),
            (Some("submitted"), Some(2))
        );
        assert_eq!(body["description"], "a better why");

        // rev1 voted in round 1; in round 2 they may vote again, once.
        let (st, body) = app.vote(&id, "rev1", "approve").await;
        assert_eq!(st, StatusCode::OK, "{body}");
        assert_eq!(body["state"], "approved");
        let (st, body) = app.vote(&id, "rev2", "approve").await;
        assert_eq!(st, StatusCode::CONFLICT, "{body}");
        assert_eq!(body["code"], "wrong_state");

        // Approved applications cannot be withdrawn.
        let (st, _) = app
            .post(
                &format!("/api/v1/applications/{id}/withdraw"),
                Some(&ana),
                &json!({}),
            )
            .await;
        assert_eq!(st, StatusCode::CONFLICT);

        let (_, body) = app
            .get(&format!("/api/v1/applications/{id}"), Some(&ana))
            .await;
        let decisions = body["decisions"].as_array().unwrap();
        assert_eq!(decisions.len(), 2);
        assert_eq!(decisions[0]["round"], 1);
        assert_eq!(decisions[1]["round"], 2);

        let events = app.audit_events(&id).await;
        assert_eq!(
            actions(&events),
            [
                "application.submit",
                "application.decision",
                "application.state",
                "application.resubmit",
                "application.decision",
                "application.state",
                "access.grant"
            ]
        );
        assert!(app.verify_audit().await.problem.is_none());
        app
    })
    .await;
}

#[tokio::test]
async fn quorum_comes_from_configuration_and_any_reject_rejects() {
    for engine in engines() {
        let app = TestApp::spawn_with(engine, |s| s.review.quorum.access = 3).await;
        app.project("p1", &[("ana", "analyst")]).await;
        let id = app.application("access", "p1", "ana", "analyst").await;
        let (_, b) = app.vote(&id, "rev1", "approve").await;
        assert_eq!(
            (b["state"].as_str(), b["approvals"].as_i64()),
            (Some("in_review"), Some(1))
        );
        let (_, b) = app.vote(&id, "rev2", "approve").await;
        assert_eq!(
            (b["state"].as_str(), b["approvals"].as_i64()),
            (Some("in_review"), Some(2))
        );
        let (_, b) = app.vote(&id, "rev3", "reject").await;
        assert_eq!(b["state"], "rejected");
        let (st, b) = app.vote(&id, "rev4", "approve").await;
        assert_refused(st, &b, StatusCode::CONFLICT, "wrong_state");

        let id = app.application("access", "p1", "ana", "analyst").await;
        for (i, r) in ["rev1", "rev2", "rev3"].iter().enumerate() {
            let (_, b) = app.vote(&id, r, "approve").await;
            let want = if i == 2 { "approved" } else { "in_review" };
            assert_eq!(b["state"], want);
        }
        app.stop().await;
    }
}

#[tokio::test]
async fn separation_of_duties_is_enforced_and_audited() {
    each_engine(|app| async move {
        app.project("p1", &[("ana", "analyst"), ("colleague", "analyst")])
            .await;
        let id = app.application("access", "p1", "ana", "analyst").await;
        // The requester also sits on the committee: still no vote on their own application.
        let both = app.token("ana", "analyst,reviewer");
        let (st, b) = app.decide(&id, &both, "approve", "mine").await;
        assert_refused(st, &b, StatusCode::FORBIDDEN, "separation_of_duties");
        // Nor a member of the same project.
        let colleague = app.token("colleague", "analyst,reviewer");
        let (st, b) = app.decide(&id, &colleague, "approve", "a friend's").await;
        assert_refused(st, &b, StatusCode::FORBIDDEN, "separation_of_duties");
        let (_, b) = app
            .get(&format!("/api/v1/applications/{id}"), Some(&both))
            .await;
        assert_eq!(b["state"], "submitted");
        assert!(b["decisions"].as_array().unwrap().is_empty());

        let events = app.audit_events(&id).await;
        let refused = actions(&events)
            .into_iter()
            .filter(|&a| a == "application.decision_refused")
            .count();
        assert_eq!(refused, 2);
        app
    })
    .await;
}

#[tokio::test]
async fn withdraw_and_bad_input() {
    each_engine(|app| async move {
        app.project(
            "p1",
            &[("ana", "analyst"), ("bea", "analyst"), ("sue", "steward")],
        )
        .await;
        let ana = app.token("ana", "analyst");
        let id = app.application("access", "p1", "ana", "analyst").await;
        // Another member may read it but not withdraw it.
        let bea = app.token("bea", "analyst");
        let (st, b) = app
            .post(
                &format!("/api/v1/applications/{id}/withdraw"),
                Some(&bea),
                &json!({}),
            )
            .await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{b}");
        let (st, b) = app
            .post(
                &format!("/api/v1/applications/{id}/withdraw"),
                Some(&ana),
                &json!({"comment": "not needed"}),
            )
            .await;
        assert_eq!(
            (st, b["state"].as_str()),
            (StatusCode::OK, Some("withdrawn"))
        );

        for (body, code) in [
            (
                json!({"kind": "nonsense", "project": "p1", "title": "t"}),
                "bad_kind",
            ),
            (
                json!({"kind": "access", "project": "p1", "title": "  "}),
                "missing_text",
            ),
            (
                json!({"kind": "access", "project": "p1", "title": "t", "payload": [1]}),
                "bad_payload",
            ),
            (
                json!({"kind": "ingress", "project": "p1", "title": "t"}),
                "wrong_route",
            ),
            (
                json!({"kind": "access", "project": "p1", "title": "t", "surprise": 1}),
                "bad_request",
            ),
        ] {
            let (st, b) = app.post("/api/v1/applications", Some(&ana), &body).await;
            assert_eq!(st, StatusCode::BAD_REQUEST, "{body} -> {b}");
            assert_eq!(b["code"], code, "{body}");
        }
        // Listing and extension applications come from stewards.
        let (st, _) = app
            .post(
                "/api/v1/applications",
                Some(&ana),
                &json!({"kind": "listing", "project": "p1", "title": "t"}),
            )
            .await;
        assert_eq!(st, StatusCode::FORBIDDEN);
        let id = app.application("listing", "p1", "sue", "steward").await;
        let (st, b) = app.vote(&id, "rev1", "maybe").await;
        assert_refused(st, &b, StatusCode::BAD_REQUEST, "bad_decision");
        let rev = app.token("rev1", "reviewer");
        let (st, b) = app.decide(&id, &rev, "approve", "").await;
        assert_refused(st, &b, StatusCode::BAD_REQUEST, "missing_text");
        app
    })
    .await;
}

#[tokio::test]
async fn list_filters_and_visibility() {
    each_engine(|app| async move {
        app.project("p1", &[("ana", "analyst")]).await;
        app.project("p2", &[("bob", "analyst")]).await;
        let a1 = app.application("access", "p1", "ana", "analyst").await;
        let a2 = app.application("access", "p1", "ana", "analyst").await;
        let b1 = app.application("access", "p2", "bob", "analyst").await;
        app.vote(&a2, "rev1", "approve").await;

        let ana = app.token("ana", "analyst");
        let (_, list) = app.get("/api/v1/applications", Some(&ana)).await;
        let ids = ids_in(&list);
        assert!(ids.contains(&a1.as_str()) && ids.contains(&a2.as_str()));
        assert!(
            !ids.contains(&b1.as_str()),
            "another project's application leaked into a list"
        );

        let rev = app.token("rev9", "reviewer");
        let (_, list) = app
            .get("/api/v1/applications?state=submitted", Some(&rev))
            .await;
        let ids = ids_in(&list);
        assert_eq!(ids.len(), 2);
        assert!(ids.contains(&a1.as_str()) && ids.contains(&b1.as_str()));
        let (_, list) = app
            .get("/api/v1/applications?project=p2&kind=access", Some(&rev))
            .await;
        assert_eq!(list.as_array().unwrap().len(), 1);
        let (st, b) = app
            .get("/api/v1/applications?state=bogus", Some(&rev))
            .await;
        assert_refused(st, &b, StatusCode::BAD_REQUEST, "bad_filter");
        // Bob cannot even learn that ana's application exists.
        let bob = app.token("bob", "analyst");
        let (st, _) = app
            .get(&format!("/api/v1/applications/{a1}"), Some(&bob))
            .await;
        assert_eq!(st, StatusCode::NOT_FOUND);
        app
    })
    .await;
}

#[tokio::test]
async fn attachments_are_stored_by_hash_and_reads_are_audited() {
    each_engine(|app| async move {
        use base64::Engine as _;
        app.project("p1", &[("ana", "analyst")]).await;
        let id = app.application("access", "p1", "ana", "analyst").await;
        let steward = app.token("sue", "steward");
        let file = b"%PDF-1.4 institution review: approved with conditions\n".to_vec();
        let (st, att) = app
            .post(
                &format!("/api/v1/applications/{id}/attachments"),
                Some(&steward),
                &json!({
                    "kind": "institution_review",
                    "text": "The ethics board of the providing institution approved.",
                    "file_name": "review.pdf",
                    "file_base64": base64::engine::general_purpose::STANDARD.encode(&file),
                }),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{att}");
        assert_eq!(att["file_sha256"], gateway::sha256_hex(&file));
        assert!(app.state.blobs.contains(att["file_sha256"].as_str().unwrap()));

        // Reviewers attach opinions; analysts cannot attach either kind.
        let ana = app.token("ana", "analyst");
        for kind in ["institution_review", "committee_opinion"] {
            let (st, _) = app
                .post(&format!("/api/v1/applications/{id}/attachments"), Some(&ana), &json!({"kind": kind, "text": "x"}))
                .await;
            assert_eq!(st, StatusCode::FORBIDDEN);
        }
        let rev = app.token("rev1", "reviewer");
        let (st, _) = app
            .post(
                &format!("/api/v1/applications/{id}/attachments"),
                Some(&rev),
                &json!({"kind": "committee_opinion", "text": "No concerns."}),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED);
        let (st, b) = app
            .post(
                &format!("/api/v1/applications/{id}/attachments"),
                Some(&rev),
                &json!({"kind": "committee_opinion", "text": "x", "file_name": "../../etc/passwd", "file_base64": "aGk="}),
            )
            .await;
        assert_refused(st, &b, StatusCode::BAD_REQUEST, "bad_file_name");

        // Download: bytes and hash match, and the read is an audit event.
        let resp = app
            .http
            .get(format!("{}/api/v1/applications/{id}/attachments/{}/file", app.url, att["id"].as_str().unwrap()))
            .bearer_auth(&rev)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.bytes().await.unwrap().to_vec(), file);
        let auditor = app.token("aud", "auditor");
        let (st, _) = app
            .get(&format!("/api/v1/applications/{id}/attachments/{}/file", att["id"].as_str().unwrap()), Some(&auditor))
            .await;
        assert_eq!(st, StatusCode::FORBIDDEN, "auditors read the log, not the content");
        let events = app.audit_events(&id).await;
        let reads: Vec<_> = events.iter().filter(|e| e["action"] == "content.read").collect();
        assert_eq!(reads.len(), 1);
        assert_eq!(reads[0]["actor"], "rev1");
        app
    })
    .await;
}

#[tokio::test]
async fn committee_opinions_come_from_outside_the_project_and_refusals_are_audited() {
    each_engine(|app| async move {
        app.project("p1", &[("ana", "analyst"), ("colleague", "analyst")])
            .await;
        let id = app.application("access", "p1", "ana", "analyst").await;
        let opinion = json!({"kind": "committee_opinion", "text": "No concerns."});
        let path = format!("/api/v1/applications/{id}/attachments");
        // The requester, though also a reviewer, and a member of the project may not give it.
        for (sub, who) in [("ana", "the requester"), ("colleague", "a project member")] {
            let t = app.token(sub, "analyst,reviewer");
            let (st, b) = app.post(&path, Some(&t), &opinion).await;
            assert_eq!(
                (st, b["code"].as_str()),
                (StatusCode::FORBIDDEN, Some("separation_of_duties")),
                "{who}: {b}"
            );
        }
        // A reviewer from outside may.
        let rev = app.token("rev", "reviewer");
        let (st, b) = app.post(&path, Some(&rev), &opinion).await;
        assert_eq!(st, StatusCode::CREATED, "{b}");

        let (_, detail) = app
            .get(&format!("/api/v1/applications/{id}"), Some(&rev))
            .await;
        let authors: Vec<&str> = detail["attachments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["author"].as_str().unwrap())
            .collect();
        assert_eq!(authors, ["rev"]);
        let auditor = app.token("aud", "auditor");
        let (_, events) = app
            .get(&format!("/api/v1/audit?subject={id}"), Some(&auditor))
            .await;
        let refused: Vec<&str> = events
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["action"] == "application.attach_refused")
            .map(|e| e["actor"].as_str().unwrap())
            .collect();
        assert_eq!(refused, ["ana", "colleague"]);
        assert!(app.verify_audit().await.problem.is_none());
        app
    })
    .await;
}

/// A list pages by cursor, newest first: every application once, in order, across pages of
/// any size, with the votes of each; the last page has no cursor, and a cursor the gateway
/// did not give out is refused.
#[tokio::test]
async fn lists_page_by_cursor() {
    each_engine(|app| async move {
        app.project("p1", &[("ana", "analyst")]).await;
        let mut made = Vec::new();
        for _ in 0..7 {
            made.push(app.application("access", "p1", "ana", "analyst").await);
        }
        let (st, b) = app.vote(&made[2], "rev1", "approve").await;
        assert_eq!(st, StatusCode::OK, "{b}");
        made.reverse();
        let rev = app.token("rev", "reviewer");
        for size in [1, 3, 7, 50] {
            let (seen, pages) = walk_list(&app, "/api/v1/applications", &rev, size).await;
            assert_eq!(keys_of(&seen, "id"), made, "pages of {size}");
            assert_eq!(pages, made.len().div_ceil(size), "pages of {size}");
            let voted = seen.iter().find(|a| a["id"] == made[4].as_str()).unwrap();
            assert_eq!(voted["approvals"], 1, "votes come with the page: {voted}");
        }
        let (st, b) = app
            .get("/api/v1/applications?cursor=not-a-cursor", Some(&rev))
            .await;
        assert_refused(st, &b, StatusCode::BAD_REQUEST, "bad_filter");
        app
    })
    .await;
}

/// A member's list holds the applications of their projects only, all of them, newest first
/// across the projects, a page at a time.
#[tokio::test]
async fn a_members_list_pages_across_their_projects() {
    each_engine(|app| async move {
        app.project("p1", &[("ana", "analyst")]).await;
        app.project("p2", &[("ana", "analyst")]).await;
        app.project("p3", &[("bob", "analyst")]).await;
        let mut mine = Vec::new();
        for i in 0..9 {
            match i % 3 {
                0 => mine.push(app.application("access", "p1", "ana", "analyst").await),
                1 => mine.push(app.application("access", "p2", "ana", "analyst").await),
                _ => drop(app.application("access", "p3", "bob", "analyst").await),
            }
        }
        mine.reverse();
        let ana = app.token("ana", "analyst");
        for size in [1, 2, 4, 100] {
            let (seen, _) = walk_list(&app, "/api/v1/applications", &ana, size).await;
            assert_eq!(keys_of(&seen, "id"), mine, "pages of {size}");
        }
        let path = "/api/v1/applications?project=p2";
        let (seen, _) = walk_list(&app, path, &ana, 2).await;
        let of_p2: Vec<String> = mine.iter().step_by(2).cloned().collect();
        assert_eq!(keys_of(&seen, "id"), of_p2);
        app
    })
    .await;
}

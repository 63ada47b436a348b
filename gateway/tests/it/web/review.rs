//! The review pages over HTTP: the queue and its filters, an application's page, votes with
//! their CSRF token and one-time nonce, one's own application refused with the service's own
//! words, and an egress file's preview with its flagged cell (an audited read).

use reqwest::StatusCode;
use serde_json::json;

use super::Browser;
use crate::support::{Engine, TestApp, actions, docker_available, each_engine};

#[tokio::test]
async fn reviewers_vote_on_the_page_once_and_never_on_their_own_application() {
    each_engine(|app| async move {
        app.project("p1", &[("ana", "analyst")]).await;
        // Ana is a reviewer too: her own application is not hers to vote on.
        let access = app
            .application("access", "p1", "ana", "analyst,reviewer")
            .await;
        let ingress_like = app.application("access", "p1", "ana", "analyst").await;
        let rev = app.token("rev", "reviewer");
        let mut b = Browser::new(&app);
        b.accept_language = Some("en");
        assert_eq!(b.sign_in(&rev).await.status, StatusCode::SEE_OTHER);

        // The queue, filtered by kind, state and project.
        let q = b.get("/ui/queue").await;
        assert!(
            q.body.contains(&access) && q.body.contains(&ingress_like),
            "{}",
            q.body
        );
        let q = b.get("/ui/queue?kind=egress&state=&project=").await;
        assert!(!q.body.contains(&access) && q.body.contains("No applications match."));
        let q = b
            .get("/ui/queue?kind=access&state=submitted&project=p1")
            .await;
        assert!(q.body.contains(&access), "{}", q.body);
        let q = b.get("/ui/queue?kind=access&state=approved&project=").await;
        assert!(!q.body.contains(&access));
        let q = b.get("/ui/queue?kind=access&state=&project=p2").await;
        assert!(!q.body.contains(&access));
        let q = b.get("/ui/queue?kind=nonsense").await;
        assert_eq!(q.status, StatusCode::BAD_REQUEST);
        assert!(q.body.contains("bad_filter"), "{}", q.body);

        // The application's page and its vote form.
        let path = format!("/ui/applications/{access}");
        let page = b.get(&path).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert!(page.body.contains("No votes yet."));
        for label in [
            "for=\"choice-approve\"",
            "for=\"choice-reject\"",
            "for=\"choice-request_changes\"",
            "for=\"comment\"",
        ] {
            assert!(page.body.contains(label), "{label}");
        }
        let csrf = page.field("csrf");
        let nonce = page.field("nonce");
        let decide = format!("{path}/decide");
        let vote = |csrf: &str, nonce: &str| {
            vec![
                ("csrf", csrf.to_owned()),
                ("nonce", nonce.to_owned()),
                ("choice", "approve".to_owned()),
                ("comment", "fine by me".to_owned()),
            ]
        };

        // Without the session's CSRF token nothing is counted.
        let f = vote("0000", &nonce);
        let refs: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let a = b.post(&decide, &refs).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.body);
        let (_, d) = app
            .get(&format!("/api/v1/applications/{access}"), Some(&rev))
            .await;
        assert_eq!(d["decisions"], json!([]));

        // Counted once: the same form sent again is refused, not counted twice.
        let f = vote(&csrf, &nonce);
        let refs: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let a = b.post(&decide, &refs).await;
        assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
        assert_eq!(a.location(), format!("{path}?voted=approve"));
        let again = b.post(&decide, &refs).await;
        assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.body);
        assert!(again.body.contains("stale_form"), "{}", again.body);
        let (_, d) = app
            .get(&format!("/api/v1/applications/{access}"), Some(&rev))
            .await;
        assert_eq!(d["decisions"].as_array().unwrap().len(), 1, "{d}");
        assert_eq!(d["decisions"][0]["comment"], "fine by me");
        let shown = b.get(&format!("{path}?voted=approve")).await;
        assert!(shown.body.contains("Your vote was counted"));
        assert!(shown.body.contains(">Round 1</h2>"), "{}", shown.body);
        assert!(
            shown.body.contains("fine by me") && shown.body.contains("rev ("),
            "{}",
            shown.body
        );
        // The quorum of one approved it: no more votes, no form.
        assert!(shown.body.contains("This application takes no more votes."));
        assert!(!shown.body.contains("name=\"nonce\""));

        // Ana's own application: refused with the service's own error.
        let mut own = Browser::new(&app);
        own.accept_language = Some("en");
        assert_eq!(
            own.sign_in(&app.token("ana", "analyst,reviewer"))
                .await
                .status,
            StatusCode::SEE_OTHER
        );
        let path = format!("/ui/applications/{ingress_like}");
        let decide = format!("{path}/decide");
        let page = own.get(&path).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        let f = vote(&page.field("csrf"), &page.field("nonce"));
        let refs: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let a = own.post(&decide, &refs).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.body);
        assert!(a.body.contains("role=\"alert\""), "{}", a.body);
        let (st, api) = app
            .decide(
                &ingress_like,
                &app.token("ana", "analyst,reviewer"),
                "approve",
                "mine",
            )
            .await;
        assert_eq!(st, StatusCode::FORBIDDEN);
        assert!(
            a.body.contains(api["code"].as_str().unwrap()),
            "{api} {}",
            a.body
        );
        assert!(
            a.body.contains(api["message"].as_str().unwrap()),
            "{api} {}",
            a.body
        );
        let (_, d) = app
            .get(&format!("/api/v1/applications/{ingress_like}"), Some(&rev))
            .await;
        assert_eq!(d["decisions"], json!([]));
        app
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_egress_file_s_preview_marks_the_flagged_cell_and_is_an_audited_read() {
    if !docker_available() {
        return;
    }
    let (app, ana, _data) = crate::sandbox::small_world_on(Engine::Sqlite, |_| {}).await;
    let id = flagged_egress(&app, &ana).await;

    let mut b = Browser::new(&app);
    b.accept_language = Some("en");
    assert_eq!(
        b.sign_in(&app.token("rev", "reviewer")).await.status,
        StatusCode::SEE_OTHER
    );
    let page = b.get(&format!("/ui/applications/{id}")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let (_, api) = app
        .get(
            &format!("/api/v1/applications/{id}/egress"),
            Some(&app.token("rev", "reviewer")),
        )
        .await;
    let file = &api["files"][0];
    assert!(
        page.body.contains(file["sha256"].as_str().unwrap()),
        "{}",
        page.body
    );
    assert!(
        page.body.contains(&format!("<td>{}</td>", file["size"])),
        "{}",
        page.body
    );
    assert!(page.body.contains("counts.csv"));
    let before = actions(&app.audit_events(&id).await).len();
    let preview = b
        .get(&format!(
            "/ui/applications/{id}/preview?path=counts.csv&round=1"
        ))
        .await;
    assert_eq!(preview.status, StatusCode::OK, "{}", preview.body);
    assert!(
        preview.body.contains(
            "<td class=\"flag flag-review\"><span class=\"marker\">[to review]</span> 0</td>"
        ),
        "{}",
        preview.body
    );
    assert!(preview.body.contains("<td>25</td>"));
    let events = app.audit_events(&id).await;
    assert_eq!(events.len(), before + 1);
    assert_eq!(actions(&events).last(), Some(&"content.read"));
    // The requester may not preview: the service's refusal, on the page.
    let mut own = Browser::new(&app);
    assert_eq!(own.sign_in(&ana).await.status, StatusCode::SEE_OTHER);
    let a = own
        .get(&format!("/ui/applications/{id}/preview?path=counts.csv"))
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert!(a.body.contains("reviewer"), "{}", a.body);
    app.stop().await;
}

/// An egress application of ana's (in `small_world_on`'s project p1) for one table whose count
/// of zero the checks flag for review; its id.
pub async fn flagged_egress(app: &TestApp, ana: &str) -> String {
    egress_of(
        app,
        ana,
        "printf 'group,count\\nA,25\\nB,0\\n' > /vre/output/counts.csv",
        &["counts.csv"],
    )
    .await
}

/// An egress application of ana's (in `small_world_on`'s project p1) for the files `paths` of
/// the output folder that the shell command `script` writes; its id.
pub async fn egress_of(app: &TestApp, ana: &str, script: &str, paths: &[&str]) -> String {
    register_key(app, ana).await;
    let sandbox = app.new_sandbox(ana, "p1").await;
    let run = crate::sandbox::start_run(app, ana, &sandbox, &["sh", "-c", script], Some(30)).await;
    let done = app.run_reaching(ana, &run, "finished").await;
    assert_eq!(done["exit_code"], 0, "{done}");
    let (st, req) = app
        .post(
            "/api/v1/egress",
            Some(ana),
            &json!({"sandbox": sandbox, "paths": paths, "justification": "aggregates"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{req}");
    req["application"]
        .as_str()
        .or(req["id"].as_str())
        .unwrap()
        .to_owned()
}

/// Registers a new age recipient for the holder of `token`; the identity's text.
pub async fn register_key(app: &TestApp, token: &str) -> String {
    let (identity, recipient) = gateway::release::new_identity();
    let (st, body) = app
        .request(
            reqwest::Method::PUT,
            "/api/v1/keys/me",
            Some(token),
            Some(&json!({"recipient": recipient})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    identity
}

/// A reviewer approving an access application on its page may tighten its conditions (an
/// earlier last day, no commercial use), as through the API; what would loosen them is the
/// service's refusal, shown on the page.
#[tokio::test]
async fn an_approval_on_the_page_tightens_an_access_s_conditions() {
    for engine in crate::support::engines() {
        let app = TestApp::spawn_with(engine, |s| s.review.quorum.access = 1).await;
        app.project("p1", &[("ana", "analyst")]).await;
        let ds = app.support_dataset().await;
        let id = crate::access_terms::asking(&app, &ds).await;

        let mut b = Browser::new(&app);
        b.accept_language = Some("en");
        assert_eq!(
            b.sign_in(&app.token("rev", "reviewer")).await.status,
            StatusCode::SEE_OTHER
        );
        let path = format!("/ui/applications/{id}");
        let page = b.get(&path).await;
        for label in [
            "for=\"until\"",
            "for=\"no_commercial\"",
            "for=\"hide_logs\"",
        ] {
            assert!(page.body.contains(label), "{label}: {}", page.body);
        }
        let send = |page: &super::Answer, until: &str| {
            vec![
                ("csrf", page.field("csrf")),
                ("nonce", page.field("nonce")),
                ("choice", "approve".to_owned()),
                ("comment", "for the study only".to_owned()),
                ("until", until.to_owned()),
                ("no_commercial", "yes".to_owned()),
            ]
        };
        // A later day than asked loosens the access: refused, nothing counted.
        let f = send(&page, "2199-01-01");
        let refs: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let a = b.post(&format!("{path}/decide"), &refs).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
        assert!(a.body.contains("bad_conditions"), "{}", a.body);
        assert!(crate::access::grants(&app).await.is_empty());

        let page = b.get(&path).await;
        let f = send(&page, "2030-06-30");
        let refs: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let a = b.post(&format!("{path}/decide"), &refs).await;
        assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
        let grants = crate::access::grants(&app).await;
        assert_eq!(grants.len(), 1, "{grants:?}");
        let (_, _, dataset, until, commercial) = &grants[0];
        assert_eq!(
            (dataset.as_str(), until.as_deref(), *commercial),
            (ds.as_str(), Some("2030-06-30"), 0),
            "{grants:?}"
        );
        app.stop().await;
    }
}

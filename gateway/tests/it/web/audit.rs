//! The audit log's page over HTTP: auditors filter it (by action, actor, subject and days, as
//! the API filters it) and see whether the chain verifies, and where it breaks once a row is
//! edited behind the gateway's back; anyone else gets the service's refusal. On every engine.

use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::{AnyConnection, Connection};

use super::{Answer, Browser};
use crate::support::{TestApp, each_engine};

/// The actions of the events the page lists, in order.
fn listed_actions(a: &Answer) -> Vec<String> {
    a.body
        .split("<td class=\"code action\">")
        .skip(1)
        .map(|s| s[..s.find('<').unwrap()].to_owned())
        .collect()
}

/// A log with projects, applications and votes in it, an auditor signed in.
async fn audited(app: &TestApp) -> Browser {
    app.project("p1", &[("ana", "analyst")]).await;
    let id = app.application("access", "p1", "ana", "analyst").await;
    let (st, b) = app.vote(&id, "rev1", "request_changes").await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let mut b = Browser::new(app);
    b.accept_language = Some("en");
    assert_eq!(
        b.sign_in(&app.token("aud", "auditor")).await.status,
        StatusCode::SEE_OTHER
    );
    b
}

#[tokio::test]
async fn auditors_filter_the_log_and_see_it_verified() {
    each_engine(|app| async move {
        let mut b = audited(&app).await;
        let all = b.get("/ui/audit").await;
        assert_eq!(all.status, StatusCode::OK, "{}", all.body);
        assert!(
            all.body
                .contains("<p role=\"status\" class=\"ok\" id=\"verify\">Verified:"),
            "{}",
            all.body
        );
        let actions = listed_actions(&all);
        for a in [
            "project.create",
            "application.submit",
            "application.decision",
            "web.sign_in",
        ] {
            assert!(actions.iter().any(|x| x == a), "{a} not in {actions:?}");
        }

        // A filter that matches one action shows only it, as the API does.
        let one = b.get("/ui/audit?action=application.decision").await;
        assert_eq!(
            listed_actions(&one),
            ["application.decision"],
            "{}",
            one.body
        );
        assert!(one.body.contains("value=\"application.decision\""));
        let auditor = app.token("aud", "auditor");
        let (st, api) = app
            .get("/api/v1/audit?action=application.decision", Some(&auditor))
            .await;
        assert_eq!(st, StatusCode::OK, "{api}");
        let api_actions: Vec<&str> = api
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["action"].as_str().unwrap())
            .collect();
        assert_eq!(api_actions, ["application.decision"]);

        // By actor, by subject, by days, after an event.
        let mine = b.get("/ui/audit?actor=aud").await;
        assert_eq!(listed_actions(&mine), ["web.sign_in"], "{}", mine.body);
        let p1 = b.get("/ui/audit?subject=p1").await;
        assert!(
            listed_actions(&p1)
                .iter()
                .all(|a| a.starts_with("project.")),
            "{}",
            p1.body
        );
        assert!(!listed_actions(&p1).is_empty());
        // The days of the first and the last event (the same day, unless midnight passed).
        let (_, every) = app.get("/api/v1/audit?limit=1000", Some(&auditor)).await;
        let every = every.as_array().unwrap();
        let first = &every[0]["at"].as_str().unwrap()[..10];
        let last = &every[every.len() - 1]["at"].as_str().unwrap()[..10];
        let days = b
            .get(&format!("/ui/audit?since={first}&until={last}"))
            .await;
        assert_eq!(listed_actions(&days), actions);
        let old = b.get("/ui/audit?until=2000-01-01").await;
        assert!(listed_actions(&old).is_empty() && old.body.contains("No events match."));
        let later = b.get("/ui/audit?after=1").await;
        assert_eq!(listed_actions(&later), actions[1..]);
        for bad in [
            "since=yesterday",
            "since=2030-01-02&until=2030-01-01",
            "after=x",
        ] {
            let a = b.get(&format!("/ui/audit?{bad}")).await;
            assert_eq!(a.status, StatusCode::BAD_REQUEST, "{bad}: {}", a.body);
            assert!(a.body.contains("bad_filter"), "{}", a.body);
        }

        // In Japanese.
        let ja = b.get("/ui/audit?lang=ja").await;
        assert!(ja.body.contains("監査ログ") && ja.body.contains("検証済み"));

        // Anyone but auditors and admins: the service's refusal.
        for (sub, role) in [("rev", "reviewer"), ("ana", "analyst")] {
            let mut other = Browser::new(&app);
            other.sign_in(&app.token(sub, role)).await;
            let a = other.get("/ui/audit").await;
            assert_eq!(a.status, StatusCode::FORBIDDEN, "{role}: {}", a.body);
            assert!(!a.body.contains("project.create"), "{}", a.body);
        }
        let a = Browser::new(&app).get("/ui/audit").await;
        assert_eq!(a.location(), "/ui/sign-in");
        app
    })
    .await;
}

#[tokio::test]
async fn the_page_shows_where_an_edited_row_breaks_the_chain() {
    each_engine(|app| async move {
        let mut b = audited(&app).await;
        assert!(b.get("/ui/audit").await.body.contains(">Verified:"));
        let (st, v) = app
            .get("/api/v1/audit/verify", Some(&app.token("aud", "auditor")))
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        assert_eq!(
            (&v["intact"], &v["problem"]),
            (&json!(true), &Value::Null),
            "{v}"
        );

        // Someone with the database's password edits event 2.
        sqlx::any::install_default_drivers();
        let mut c = AnyConnection::connect(&app.settings.database_url())
            .await
            .unwrap();
        sqlx::query("UPDATE audit_events SET detail = $1 WHERE seq = 2")
            .bind(r#"{"note":"nothing to see"}"#)
            .execute(&mut c)
            .await
            .unwrap();
        c.close().await.unwrap();

        // The page shows the last check, and when it ran, until someone checks again.
        let shown = b.get("/ui/audit?action=application.decision").await;
        assert!(shown.body.contains(">Verified:"), "{}", shown.body);
        assert!(
            shown.body.contains("id=\"checked\">Checked at 20"),
            "{}",
            shown.body
        );
        let again = shown
            .body
            .split("id=\"check-now\"")
            .next()
            .and_then(|s| s.rsplit("href=\"").next())
            .unwrap()
            .trim_end_matches("\" ")
            .replace("&amp;", "&");
        assert!(
            again.starts_with("/ui/audit?") && again.contains("action=application.decision"),
            "{again}"
        );
        assert!(again.contains("check=now"), "{again}");
        let a = b
            .get(&again.replace("action=application.decision", "action="))
            .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        assert!(
            a.body
                .contains("<p role=\"alert\" class=\"problem\" id=\"verify\">BROKEN at event 2:"),
            "{}",
            a.body
        );
        assert!(a.body.contains("the row was edited"), "{}", a.body);
        // The row is marked where it is listed.
        let row = a.body.split("<tr class=\"broken\">").nth(1).unwrap();
        assert!(row.contains("</strong> 2</td>"), "{row}");
        assert_eq!(a.body.matches("<tr class=\"broken\">").count(), 1);
        // As `verify` itself finds it, and the API.
        let report = app.verify_audit().await;
        assert_eq!(report.problem.map(|p| p.seq), Some(2));
        let (st, v) = app
            .get("/api/v1/audit/verify", Some(&app.token("aud", "auditor")))
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        assert_eq!(
            (&v["intact"], &v["problem"]["seq"]),
            (&json!(false), &json!(2)),
            "{v}"
        );
        let ja = b.get("/ui/audit?lang=ja").await;
        assert!(ja.body.contains("イベント 2 で改ざんを検出"), "{}", ja.body);
        app
    })
    .await;
}

#[tokio::test]
async fn the_page_s_check_stops_at_the_head_it_read_so_later_writes_are_no_break() {
    each_engine(|app| async move {
        let _b = audited(&app).await;
        app.settle_checkpoints().await;
        let public =
            gateway::keys::PublicKey::load(&app.settings.data_dir.join("keys/audit.pub.pem"))
                .unwrap();
        let mut c = app.state.db.pool().acquire().await.unwrap();
        let head = gateway::audit::head(&mut c).await.unwrap();
        assert!(head.seq > 3, "{head:?}");
        // A head read before the last events were written (and signed): what follows it is
        // not looked at, and the chain up to it checks out.
        let earlier = gateway::audit::events(&mut c, 2, None, 1).await.unwrap();
        let earlier = gateway::audit::ChainHead {
            seq: earlier[0].seq,
            hash: earlier[0].hash.clone(),
        };
        drop(c);
        let dir = app.settings.checkpoint_dir();
        let r = gateway::audit::verify_through(&app.state.db, &dir, &public, Some(&earlier))
            .await
            .unwrap();
        assert_eq!((r.problem, r.events), (None, 3));
        // The head it read must be the chain's: another hash there is a rewrite.
        let forged = gateway::audit::ChainHead {
            seq: 3,
            hash: "0".repeat(64),
        };
        let r = gateway::audit::verify_through(&app.state.db, &dir, &public, Some(&forged))
            .await
            .unwrap();
        assert_eq!(r.problem.map(|p| p.seq), Some(3));
        // An edit up to that head is still caught.
        sqlx::any::install_default_drivers();
        let mut c = AnyConnection::connect(&app.settings.database_url())
            .await
            .unwrap();
        sqlx::query("UPDATE audit_events SET actor = $1 WHERE seq = 3")
            .bind("mallory")
            .execute(&mut c)
            .await
            .unwrap();
        c.close().await.unwrap();
        let r = gateway::audit::verify_through(&app.state.db, &dir, &public, Some(&earlier))
            .await
            .unwrap();
        assert_eq!(r.problem.map(|p| p.seq), Some(3));
        app
    })
    .await;
}

/// `vre audit list` takes the page's filters too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vre_audit_list_filters_as_the_page_does() {
    let app = TestApp::spawn(crate::support::Engine::Sqlite).await;
    let _b = audited(&app).await;
    let ca = app.dir.path().join("tls/ca.pem");
    let list = |extra: &[&str]| {
        let out = crate::support::vre_command()
            .args(["audit", "list", "--json", "--all"])
            .args(extra)
            .env("VRE_URL", &app.url)
            .env("VRE_CA", &ca)
            .env("VRE_TOKEN", app.token("aud", "auditor"))
            .output()
            .unwrap();
        crate::support::assert_success(&out);
        let items: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
        items
            .iter()
            .map(|e| e["action"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        list(&["--action", "application.decision"]),
        ["application.decision"]
    );
    assert_eq!(list(&["--actor", "aud"]), ["web.sign_in"]);
    assert!(list(&["--until", "2000-01-01"]).is_empty());
    let every = list(&[]);
    let (_, first) = app
        .get("/api/v1/audit?limit=1", Some(&app.token("aud", "auditor")))
        .await;
    let first = &first[0]["at"].as_str().unwrap()[..10];
    assert_eq!(list(&["--since", first]), every);
    app.stop().await;
}

/// Many asking at once share checks: one runs at a time, and whoever asked before a check
/// began takes its result instead of starting another. Eight at once make at most two.
#[tokio::test]
async fn checks_asked_at_once_are_shared() {
    each_engine(|app| async move {
        let _b = audited(&app).await;
        let caller = gateway::auth::Caller {
            sub: policy::ids::Subject::parse("aud").unwrap(),
            roles: policy::roles::RoleSet::EMPTY.with(policy::roles::Role::Auditor),
            institution: None,
        };
        // Eight asks lined up while checks are held back: each has asked once polled, so the
        // count does not depend on how fast a check ends or when a task is scheduled.
        let held = app.state.audit_checks.hold().await;
        let mut asks = futures_util::future::join_all(
            (0..8).map(|_| gateway::service::system::audit_verify(&app.state, &caller)),
        );
        assert!(futures_util::poll!(&mut asks).is_pending());
        drop(held);
        let checks: Vec<_> = asks.await.into_iter().map(Result::unwrap).collect();
        let mut distinct: Vec<&std::sync::Arc<_>> = Vec::new();
        for c in &checks {
            assert!(c.report.problem.is_none(), "{:?}", c.report);
            if !distinct.iter().any(|d| std::sync::Arc::ptr_eq(d, c)) {
                distinct.push(c);
            }
        }
        assert!(distinct.len() <= 2, "{} checks for 8 asks", distinct.len());
        // Asked after they all ended: a check of its own.
        let later = gateway::service::system::audit_verify(&app.state, &caller)
            .await
            .unwrap();
        assert!(!distinct.iter().any(|d| std::sync::Arc::ptr_eq(d, &later)));
        app
    })
    .await;
}

//! Every list pages by cursor (`?limit=`, `?cursor=`, `x-next-cursor`): its pages, walked to
//! the end, hold every item once and in the list's order; the last page has no cursor; a
//! cursor the list did not give out (or another list's) is refused 400 `bad_filter`. The
//! applications' own paging test is `applications::lists_page_by_cursor`.
//!
//! Sandboxes, runs and images are written straight to the database here, as the gateway
//! stores them: the lists read them the same way, and no container engine is needed.

use reqwest::StatusCode;
use serde_json::Value;

use gateway::store::sandboxes::{self as sstore, ImageRow, SandboxRow};

use crate::support::{
    TestApp, assert_refused, assert_success, each_engine, keys_of, vre_command, walk_list,
};

/// Walks `path` as `token` in pages of several sizes: each time the items' `key`s are
/// `expected`, in the pages the size makes. A made-up cursor, and `foreign` (another list's),
/// are refused. The items as one page of 1000 holds them.
async fn assert_pages(
    app: &TestApp,
    path: &str,
    token: &str,
    key: &str,
    expected: &[String],
    foreign: &str,
) -> Vec<Value> {
    let mut whole = Vec::new();
    for size in [1, 2, 3, expected.len(), 1000] {
        let (items, pages) = walk_list(app, path, token, size).await;
        assert_eq!(keys_of(&items, key), expected, "{path}, pages of {size}");
        assert_eq!(
            pages,
            expected.len().div_ceil(size).max(1),
            "{path}, pages of {size}"
        );
        whole = items;
    }
    let sep = if path.contains('?') { '&' } else { '?' };
    for bad in ["not-a-cursor", "AAAA", foreign] {
        let (st, b) = app
            .get(&format!("{path}{sep}cursor={bad}"), Some(token))
            .await;
        assert_refused(st, &b, StatusCode::BAD_REQUEST, "bad_filter");
    }
    whole
}

/// The cursor after the first item of `path`, a list of at least two.
async fn first_cursor(app: &TestApp, path: &str, token: &str) -> String {
    let sep = if path.contains('?') { '&' } else { '?' };
    let resp = app
        .http
        .get(format!("{}{path}{sep}limit=1", app.url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let c = resp.headers().get("x-next-cursor").expect("a cursor");
    c.to_str().unwrap().to_owned()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// A sandbox row of `project` made at `at`.
fn sandbox(id: &str, project: &str, at: &str) -> SandboxRow {
    SandboxRow {
        id: id.to_owned(),
        project_id: project.to_owned(),
        image_name: "vre-test/busybox:latest".into(),
        image_id: "sha256:00".into(),
        resource_class: "small".into(),
        state: "ready".into(),
        created_by: "ana".into(),
        created_at: at.to_owned(),
        removed_at: None,
        logs: "visible".into(),
    }
}

/// Times with ties: items `2k` and `2k+1` share one, so the order falls back on the id.
fn tied_time(i: usize) -> String {
    format!("2026-01-01T00:00:{:02}.000000Z", i / 2)
}

#[tokio::test]
async fn projects_page_by_cursor() {
    each_engine(|app| async move {
        let ids: Vec<String> = [5, 1, 7, 3, 2, 6, 4].map(|i| format!("lp{i}")).into();
        for (n, id) in ids.iter().enumerate() {
            let members: &[(&str, &str)] = if n % 2 == 0 {
                &[("ana", "analyst")]
            } else {
                &[]
            };
            app.project(id, members).await;
        }
        let admin = app.token("root", "admin");
        let foreign = first_cursor(&app, "/api/v1/audit", &app.token("aud", "auditor")).await;
        let all = sorted(ids.clone());
        let items = assert_pages(&app, "/api/v1/projects", &admin, "id", &all, &foreign).await;
        let lp5 = items.iter().find(|p| p["id"] == "lp5").unwrap();
        assert_eq!(
            lp5["members"][0]["subject"], "ana",
            "members come with the page"
        );
        // An analyst pages through their own projects only.
        let ana = app.token("ana", "analyst");
        let mine = sorted(ids.iter().step_by(2).cloned().collect());
        assert_pages(&app, "/api/v1/projects", &ana, "id", &mine, &foreign).await;
        app
    })
    .await;
}

#[tokio::test]
async fn images_page_by_cursor() {
    each_engine(|app| async move {
        let names: Vec<String> = ["reg/b:1", "a:2", "reg/a:1", "z", "m/x:latest"]
            .map(str::to_owned)
            .into();
        let mut conn = app.state.db.pool().acquire().await.unwrap();
        for n in &names {
            let image = ImageRow {
                name: n.clone(),
                image_id: format!("sha256:{n}"),
                size: 1,
                allowed_by: "op".into(),
                allowed_at: "2026-01-01T00:00:00.000000Z".into(),
                commands: vec![],
                interpreters: vec![],
            };
            sstore::upsert_image(&mut conn, &image).await.unwrap();
        }
        drop(conn);
        app.project("p1", &[]).await;
        app.project("p2", &[]).await;
        let foreign = first_cursor(&app, "/api/v1/projects", &app.token("root", "admin")).await;
        let op = app.token("op", "operator");
        let all = sorted(names);
        assert_pages(&app, "/api/v1/images", &op, "name", &all, &foreign).await;
        app
    })
    .await;
}

#[tokio::test]
async fn sandboxes_page_by_cursor() {
    each_engine(|app| async move {
        app.project("lp", &[("ana", "analyst")]).await;
        app.project("lp2", &[("ana", "analyst")]).await;
        app.project("other", &[]).await;
        let mut conn = app.state.db.pool().acquire().await.unwrap();
        let (mut mine, mut of_lp) = (Vec::new(), Vec::new());
        for i in 0..11 {
            // Ids out of the order of time, so the order seen is the list's, not the ids'.
            let id = format!("sb-{:02}", 11 - i);
            let project = match i {
                4 => "other",
                _ if i % 3 == 0 => "lp2",
                _ => "lp",
            };
            let mut row = sandbox(&id, project, &tied_time(i));
            if i == 6 {
                row.state = "removed".into();
            }
            sstore::insert_sandbox(&mut conn, &row).await.unwrap();
            if project != "other" && i != 6 {
                mine.push((row.created_at.clone(), id.clone()));
                if project == "lp" {
                    of_lp.push((row.created_at, id));
                }
            }
        }
        sstore::insert_dataset(&mut conn, "sb-11", "census", "/data/census")
            .await
            .unwrap();
        drop(conn);
        let ids = |mut v: Vec<(String, String)>| -> Vec<String> {
            v.sort();
            v.into_iter().map(|(_, id)| id).collect()
        };
        let (mine, of_lp) = (ids(mine), ids(of_lp));
        // An analyst's sandboxes, of both their projects, merged in one order.
        let ana = app.token("ana", "analyst");
        let foreign = first_cursor(&app, "/api/v1/projects", &app.token("root", "admin")).await;
        let items = assert_pages(&app, "/api/v1/sandboxes", &ana, "id", &mine, &foreign).await;
        let sb11 = items.iter().find(|s| s["id"] == "sb-11").unwrap();
        assert_eq!(sb11["datasets"], serde_json::json!(["census"]), "{sb11}");
        // A filter keeps working beside the cursor.
        let path = "/api/v1/sandboxes?project=lp";
        assert_pages(&app, path, &ana, "id", &of_lp, &foreign).await;
        // Everyone's, to an operator.
        let op = app.token("op", "operator");
        let (every, _) = walk_list(&app, "/api/v1/sandboxes", &op, 4).await;
        assert_eq!(every.len(), 10, "all but the removed one");
        app
    })
    .await;
}

#[tokio::test]
async fn runs_page_by_cursor() {
    each_engine(|app| async move {
        app.project("lp", &[("ana", "analyst")]).await;
        let mut conn = app.state.db.pool().acquire().await.unwrap();
        for sb in ["sb-a", "sb-b"] {
            let row = sandbox(sb, "lp", &tied_time(0));
            sstore::insert_sandbox(&mut conn, &row).await.unwrap();
        }
        let mut runs = Vec::new();
        for i in 0..9 {
            let sb = if i % 4 == 3 { "sb-b" } else { "sb-a" };
            let (id, at) = (format!("run-{}", 9 - i), tied_time(i));
            sqlx::query(
                "INSERT INTO runs (id, sandbox_id, project_id, requester, cmd, timeout_secs, state, created_at) \
                 VALUES ($1, $2, 'lp', 'ana', '[\"true\"]', 60, 'finished', $3)",
            )
            .bind(&id)
            .bind(sb)
            .bind(&at)
            .execute(&mut *conn)
            .await
            .unwrap();
            if sb == "sb-a" {
                runs.push((at, id));
            }
        }
        drop(conn);
        runs.sort();
        let runs: Vec<String> = runs.into_iter().map(|(_, id)| id).collect();
        let ana = app.token("ana", "analyst");
        let path = "/api/v1/sandboxes/sb-a/runs";
        let foreign = first_cursor(&app, "/api/v1/sandboxes", &ana).await;
        assert_pages(&app, path, &ana, "id", &runs, &foreign).await;
        app
    })
    .await;
}

#[tokio::test]
async fn audit_pages_by_cursor() {
    each_engine(|app| async move {
        for i in 0..4 {
            app.project(&format!("lp{i}"), &[("ana", "analyst")]).await;
        }
        let admin = app.token("root", "admin");
        let bob = serde_json::json!({"subject": "bob", "role": "analyst"});
        let (st, b) = app
            .post("/api/v1/projects/lp2/members", Some(&admin), &bob)
            .await;
        assert_eq!(st, StatusCode::OK, "{b}");
        let foreign = first_cursor(&app, "/api/v1/projects", &admin).await;
        let aud = app.token("aud", "auditor");
        let (st, every) = app.get("/api/v1/audit?limit=1000", Some(&aud)).await;
        assert_eq!(st, StatusCode::OK, "{every}");
        let every = keys_of(every.as_array().unwrap(), "seq");
        assert!(every.len() >= 5, "{every:?}");
        assert_pages(&app, "/api/v1/audit", &aud, "seq", &every, &foreign).await;
        // `after` and `subject` keep working beside the cursor.
        let from_3 = every[3..].to_vec();
        assert_pages(
            &app,
            "/api/v1/audit?after=3",
            &aud,
            "seq",
            &from_3,
            &foreign,
        )
        .await;
        let lp2 = keys_of(&app.audit_events("lp2").await, "seq");
        assert!(lp2.len() >= 2, "{lp2:?}");
        let path = "/api/v1/audit?subject=lp2";
        assert_pages(&app, path, &aud, "seq", &lp2, &foreign).await;
        app
    })
    .await;
}

/// `vre project list` prints the first page; with `--all` it follows the cursors to the end, as
/// `vre audit list` does.
// The test's gateway runs on this runtime while the real binary blocks a thread: two workers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_follows_cursors_with_all() {
    let app = TestApp::spawn(crate::support::Engine::Sqlite).await;
    let ids: Vec<String> = (1..=5).map(|i| format!("cp{i}")).collect();
    for id in &ids {
        app.project(id, &[]).await;
    }
    let ca = app.dir.path().join("tls/ca.pem");
    let admin = app.token("root", "admin");
    let list = |what: &[&str], extra: &[&str]| {
        let out = vre_command()
            .args(what)
            .args(["list", "--json", "--limit", "2"])
            .args(extra)
            .env("VRE_URL", &app.url)
            .env("VRE_CA", &ca)
            .env("VRE_TOKEN", &admin)
            .output()
            .unwrap();
        assert_success(&out);
        let items: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
        items
    };
    assert_eq!(keys_of(&list(&["project"], &[]), "id"), ids[..2]);
    assert_eq!(keys_of(&list(&["project"], &["--all"]), "id"), ids);
    // The audit log, of one subject, with `--after` beside the cursors.
    let (_, every) = app.get("/api/v1/audit?limit=1000", Some(&admin)).await;
    let every = keys_of(every.as_array().unwrap(), "seq");
    assert_eq!(keys_of(&list(&["audit"], &["--all"]), "seq"), every);
    let after = ["--all", "--after", "2"];
    assert_eq!(keys_of(&list(&["audit"], &after), "seq"), every[2..]);
    app.stop().await;
}

#[tokio::test]
async fn datasets_page_by_cursor() {
    use crate::datasets::{example_dmp, register};
    each_engine(|app| async move {
        let mine = app.token_for("st-a", "steward", Some("inst-a"));
        let theirs = app.token_for("st-b", "steward", Some("inst-b"));
        let mut ids = Vec::new();
        for (n, (token, inst)) in [(&mine, "inst-a"), (&theirs, "inst-b")]
            .into_iter()
            .cycle()
            .take(5)
            .enumerate()
        {
            let mut dmp = example_dmp(inst);
            dmp["title"] = serde_json::json!(format!("Cohort {n}"));
            ids.push((register(&app, token, &dmp).await.0, inst));
        }
        // Newest first; a reviewer sees every one, a steward their institution's.
        let all: Vec<String> = ids.iter().rev().map(|(id, _)| id.clone()).collect();
        let own: Vec<String> = ids
            .iter()
            .rev()
            .filter(|(_, i)| *i == "inst-a")
            .map(|(id, _)| id.clone())
            .collect();
        let foreign = first_cursor(&app, "/api/v1/audit", &app.token("aud", "auditor")).await;
        let reviewer = app.token("rev", "reviewer");
        assert_pages(&app, "/api/v1/datasets", &reviewer, "id", &all, &foreign).await;
        assert_pages(&app, "/api/v1/datasets", &mine, "id", &own, &foreign).await;
        app
    })
    .await;
}

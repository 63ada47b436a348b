//! Datasets with a DMP: registering the example DMP (`deploy/examples/dmp.json`) through the
//! API and through `vre dataset`, bad DMPs refused with every bad field named, who may register
//! and read, and the listing application it opens going through the committee's decisions; on
//! every engine.

use std::path::Path;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{
    Engine, PgDatabase, TempDir, TestApp, actions, assert_refused, each_engine, engines,
    vre_command,
};

/// The example DMP the README points at.
pub const EXAMPLE: &str = include_str!("../../../deploy/examples/dmp.json");

/// Its data-providing institution.
pub const INSTITUTION: &str = "tohoku-u";

/// The example DMP, for `institution`.
pub fn example_dmp(institution: &str) -> Value {
    let mut v: Value = serde_json::from_str(EXAMPLE).unwrap();
    v["providing_institution"]["id"] = json!(institution);
    v
}

/// Registers `dmp` with `token`; the dataset's and its listing application's ids.
pub async fn register(app: &TestApp, token: &str, dmp: &Value) -> (String, String) {
    let (st, b) = app
        .post("/api/v1/datasets", Some(token), &json!({ "dmp": dmp }))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{b}");
    (
        b["id"].as_str().unwrap().to_owned(),
        b["application"].as_str().unwrap().to_owned(),
    )
}

/// Registers `dmp` with `token` and has the committee approve its listing; the dataset's and
/// its listing application's ids.
pub async fn register_approved(app: &TestApp, token: &str, dmp: &Value) -> (String, String) {
    let (ds, listing) = register(app, token, dmp).await;
    crate::access::approve(app, &listing).await;
    (ds, listing)
}

#[tokio::test]
async fn the_example_dmp_registers_a_dataset_and_opens_its_listing() {
    each_engine(|app| async move {
        let steward = app.token_for("hana", "steward", Some(INSTITUTION));
        let (id, listing) = register(&app, &steward, &example_dmp(INSTITUTION)).await;
        assert!(
            id.starts_with("ds-") && listing.starts_with("app-"),
            "{id} {listing}"
        );

        let (st, d) = app
            .get(&format!("/api/v1/datasets/{id}"), Some(&steward))
            .await;
        assert_eq!(st, StatusCode::OK, "{d}");
        assert_eq!(d["state"], "registered");
        assert_eq!(d["institution"], INSTITUTION);
        assert_eq!(d["category"], "restricted_closed_sharing");
        assert_eq!(d["restricted_until"], "2035-03-31");
        assert_eq!(d["category_after"], "restricted_open_sharing");
        assert_eq!(d["created_by"], "hana");
        assert_eq!(d["applications"], json!([listing]));

        // The listing application belongs to the dataset, the steward its applicant.
        let (st, a) = app
            .get(&format!("/api/v1/applications/{listing}"), Some(&steward))
            .await;
        assert_eq!(st, StatusCode::OK, "{a}");
        assert_eq!(
            (
                &a["kind"],
                &a["dataset"],
                &a["project"],
                &a["requester"],
                &a["state"]
            ),
            (
                &json!("listing"),
                &json!(id),
                &Value::Null,
                &json!("hana"),
                &json!("submitted")
            )
        );

        // Our own JSON gives the DMP back as registered; GakuNin RDM's shape its common items.
        let (st, dmp) = app
            .get(&format!("/api/v1/datasets/{id}/dmp"), Some(&steward))
            .await;
        assert_eq!(st, StatusCode::OK, "{dmp}");
        assert_eq!(dmp, example_dmp(INSTITUTION));
        let (st, g) = app
            .get(
                &format!("/api/v1/datasets/{id}/dmp?format=gakunin"),
                Some(&steward),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{g}");
        assert_eq!(g["schema"], "e-rad-metadata-1");
        let title = g["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["item"] == 7)
            .unwrap();
        assert_eq!(title["label"], "データの名称|Title of data");
        assert_eq!(title["value"], dmp["title"]);
        let (st, b) = app
            .get(
                &format!("/api/v1/datasets/{id}/dmp?format=xml"),
                Some(&steward),
            )
            .await;
        assert_refused(st, &b, StatusCode::BAD_REQUEST, "bad_filter");

        // Registered and applied for in one go, both audited.
        assert_eq!(actions(&app.audit_events(&id).await), ["dataset.register"]);
        let submitted = app.audit_events(&listing).await;
        assert_eq!(actions(&submitted), ["application.submit"]);
        let detail: Value = serde_json::from_str(submitted[0]["detail"].as_str().unwrap()).unwrap();
        assert_eq!(detail["dataset"], json!(id));
        app
    })
    .await;
}

#[tokio::test]
async fn the_listing_application_goes_through_the_committee() {
    each_engine(|app| async move {
        // A reviewer who is also a steward of the institution: conflicted.
        let steward = app.token_for("hana", "steward", Some(INSTITUTION));
        let (id, listing) = register(&app, &steward, &example_dmp(INSTITUTION)).await;
        let conflicted = app.token_for("kenji", "reviewer,steward", Some(INSTITUTION));
        let (st, b) = app
            .decide(&listing, &conflicted, "approve", "ours, fine")
            .await;
        assert_refused(st, &b, StatusCode::FORBIDDEN, "separation_of_duties");

        // Changes requested, answered by the steward, then the quorum approves.
        let (st, b) = app.vote(&listing, "rev1", "request_changes").await;
        assert_eq!(
            (st, b["state"].as_str()),
            (StatusCode::OK, Some("changes_requested")),
            "{b}"
        );
        let (st, b) = app
            .post(
                &format!("/api/v1/applications/{listing}/resubmit"),
                Some(&steward),
                &json!({"comment": "consent scope clarified"}),
            )
            .await;
        assert_eq!((st, b["round"].as_i64()), (StatusCode::OK, Some(2)), "{b}");
        // A steward of another institution may not answer for it.
        let other = app.token_for("taro", "steward", Some("kyoto-u"));
        let (st, b) = app
            .post(
                &format!("/api/v1/applications/{listing}/withdraw"),
                Some(&other),
                &json!({"comment": "not ours"}),
            )
            .await;
        assert_refused(st, &b, StatusCode::FORBIDDEN, "forbidden");
        let (_, a) = app
            .get(&format!("/api/v1/applications/{listing}"), Some(&steward))
            .await;
        let quorum = a["quorum"].as_u64().unwrap();
        let mut state = Value::Null;
        for n in 0..quorum {
            let (st, b) = app
                .vote(&listing, &format!("rev{}", n + 2), "approve")
                .await;
            assert_eq!(st, StatusCode::OK, "{b}");
            state = b["state"].clone();
        }
        assert_eq!(state, "approved");
        // The approval moved the dataset in the same transaction, audited; it awaits its
        // content.
        let (_, d) = app
            .get(&format!("/api/v1/datasets/{id}"), Some(&steward))
            .await;
        assert_eq!(
            (&d["state"], &d["content"]),
            (&json!("approved"), &Value::Null)
        );
        let events = app.audit_events(&id).await;
        assert_eq!(actions(&events), ["dataset.register", "dataset.state"]);
        let detail: Value = serde_json::from_str(events[1]["detail"].as_str().unwrap()).unwrap();
        assert_eq!(
            detail,
            json!({"from": "registered", "to": "approved", "application": listing})
        );
        app
    })
    .await;
}

async fn audit_seq(app: &TestApp) -> i64 {
    sqlx::query_scalar::<_, i64>("SELECT seq FROM audit_head WHERE id = 1")
        .fetch_one(app.state.db.pool())
        .await
        .unwrap()
}

/// Every bad field is named, in one answer; nothing is recorded.
#[tokio::test]
async fn a_bad_dmp_is_refused_with_every_bad_field_named() {
    each_engine(|app| async move {
        let steward = app.token_for("hana", "steward", Some(INSTITUTION));
        let mut dmp = example_dmp(INSTITUTION);
        let o = dmp.as_object_mut().unwrap();
        o.remove("title");
        o.remove("restricted_sharing_ends");
        o.insert(
            "management_category".into(),
            json!("restricted_open_sharing"),
        );
        o.insert("category_after".into(), json!("unshared"));
        o.insert("date_issued".into(), json!("2026-02-30"));
        o.insert("consent".into(), json!({"obtained": "maybe", "scope": ""}));
        o.insert("colour".into(), json!("blue"));
        let before = audit_seq(&app).await;
        let (st, b) = app
            .post("/api/v1/datasets", Some(&steward), &json!({ "dmp": dmp }))
            .await;
        assert_refused(st, &b, StatusCode::BAD_REQUEST, "bad_dmp");
        let message = b["message"].as_str().unwrap();
        for field in [
            "title (データの名称 / Title of data)",
            "restricted_sharing_ends",
            "category_after",
            "date_issued",
            "consent.obtained",
            "consent.scope",
            "colour",
        ] {
            assert!(message.contains(field), "{field} not named: {message}");
        }
        assert!(message.contains("has 7 bad field(s)"), "{message}");
        // And each in the body's `fields`, labelled in Japanese and English.
        let mut named: Vec<&str> = b["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["field"].as_str().unwrap())
            .collect();
        named.sort();
        assert_eq!(
            named,
            [
                "category_after",
                "colour",
                "consent.obtained",
                "consent.scope",
                "date_issued",
                "restricted_sharing_ends",
                "title"
            ]
        );
        let scope = b["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["field"] == "consent.scope")
            .unwrap();
        assert_eq!(
            (&scope["label_ja"], &scope["label_en"], &scope["problem"]),
            (
                &json!("同意の範囲"),
                &json!("Consent scope"),
                &json!("is required")
            )
        );
        let (st, list) = app.get("/api/v1/datasets", Some(&steward)).await;
        assert_eq!((st, list), (StatusCode::OK, json!([])));
        assert_eq!(audit_seq(&app).await, before);

        // Not an object at all.
        let (st, b) = app
            .post("/api/v1/datasets", Some(&steward), &json!({"dmp": []}))
            .await;
        assert_refused(st, &b, StatusCode::BAD_REQUEST, "bad_dmp");
        app
    })
    .await;
}

/// Only a steward of the DMP's institution registers; reviewers, auditors, admins and that
/// institution's stewards read; nobody else sees the dataset at all.
#[tokio::test]
async fn who_registers_and_who_reads() {
    each_engine(|app| async move {
        let dmp = example_dmp(INSTITUTION);
        for (sub, roles, inst) in [
            ("taro", "steward", Some("kyoto-u")),
            ("nobody-inst", "steward", None),
            ("ana", "analyst", Some(INSTITUTION)),
            ("root", "admin", Some(INSTITUTION)),
        ] {
            let t = app.token_for(sub, roles, inst);
            let (st, b) = app
                .post("/api/v1/datasets", Some(&t), &json!({ "dmp": dmp }))
                .await;
            assert_refused(st, &b, StatusCode::FORBIDDEN, "forbidden");
        }
        let steward = app.token_for("hana", "steward", Some(INSTITUTION));
        let (id, _) = register(&app, &steward, &dmp).await;
        for (sub, roles, inst, sees) in [
            ("hana2", "steward", Some(INSTITUTION), true),
            ("rev", "reviewer", None, true),
            ("aud", "auditor", None, true),
            ("root", "admin", None, true),
            ("taro", "steward", Some("kyoto-u"), false),
            ("ana", "analyst", Some(INSTITUTION), false),
            ("op", "operator", None, false),
        ] {
            let t = app.token_for(sub, roles, inst);
            for path in [
                format!("/api/v1/datasets/{id}"),
                format!("/api/v1/datasets/{id}/dmp"),
            ] {
                let (st, b) = app.get(&path, Some(&t)).await;
                let want = if sees {
                    StatusCode::OK
                } else {
                    StatusCode::NOT_FOUND
                };
                assert_eq!(st, want, "{sub} reads {path}: {b}");
            }
            let (st, list) = app.get("/api/v1/datasets", Some(&t)).await;
            let ids: Vec<&str> = list
                .as_array()
                .map(|l| l.iter().filter_map(|d| d["id"].as_str()).collect())
                .unwrap_or_default();
            match (sees, roles) {
                (true, _) => assert_eq!(ids, [id.as_str()], "{sub}: {list}"),
                (false, "steward") => assert_eq!((st, ids.len()), (StatusCode::OK, 0), "{sub}"),
                (false, _) => assert_eq!(st, StatusCode::FORBIDDEN, "{sub}: {list}"),
            }
        }
        app
    })
    .await;
}

/// Runs `vre ARGS` with `token` against `app` on a blocking thread; its exit status and
/// standard output.
pub async fn vre(app: &TestApp, token: &str, args: &[&str]) -> (bool, String, String) {
    vre_as(app, Some(token), args).await
}

/// Runs `vre ARGS` against `app` with `token`, or with none at all; as [`vre`].
pub async fn vre_as(app: &TestApp, token: Option<&str>, args: &[&str]) -> (bool, String, String) {
    let mut c = vre_command();
    c.args(args)
        .env("VRE_URL", &app.url)
        .env("VRE_CA", app.dir.path().join("tls/ca.pem"));
    if let Some(t) = token {
        c.env("VRE_TOKEN", t);
    }
    let out = tokio::task::spawn_blocking(move || c.output().expect("running vre"))
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn vre_dataset_registers_shows_lists_and_exports() {
    each_engine(|app| async move {
        // A token from `vre token issue --institution`.
        let out = vre_command()
            .args(["token", "issue", "--sub", "hana", "--role", "steward"])
            .args(["--institution", INSTITUTION, "--data-dir"])
            .arg(app.dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let steward = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples/dmp.json");
        let example = example.to_str().unwrap();

        let (ok, stdout, stderr) = vre(
            &app,
            &steward,
            &["dataset", "register", "--dmp", example, "--json"],
        )
        .await;
        assert!(ok, "{stderr}");
        let r: Value = serde_json::from_str(&stdout).unwrap();
        let keys: Vec<&String> = r.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["application", "id"], "{stdout}");
        let id = r["id"].as_str().unwrap();
        let listing = r["application"].as_str().unwrap();

        // Without --json: both ids, one a line.
        let tmp = TempDir::new("dmp-toml");
        let toml_path = tmp.path().join("dmp.toml");
        let dmp: Value = serde_json::from_str(EXAMPLE).unwrap();
        // TOML's own date, unquoted.
        let toml_text = toml::to_string(&dmp)
            .unwrap()
            .replace("date_issued = \"2026-04-01\"", "date_issued = 2026-04-01");
        assert!(
            toml_text.contains("date_issued = 2026-04-01\n"),
            "{toml_text}"
        );
        std::fs::write(&toml_path, toml_text).unwrap();
        let (ok, stdout, stderr) = vre(
            &app,
            &steward,
            &["dataset", "register", "--dmp", toml_path.to_str().unwrap()],
        )
        .await;
        assert!(ok, "{stderr}");
        let lines: Vec<&str> = stdout.lines().collect();
        assert!(
            lines[0].starts_with("ds-") && lines[1].contains("app-"),
            "{stdout}"
        );

        let (ok, stdout, stderr) = vre(&app, &steward, &["dataset", "show", id]).await;
        assert!(ok, "{stderr}");
        assert!(stdout.contains(id) && stdout.contains(listing), "{stdout}");
        assert!(stdout.contains("restricted_closed_sharing"), "{stdout}");
        let (ok, stdout, stderr) = vre(&app, &steward, &["dataset", "list", "--json"]).await;
        assert!(ok, "{stderr}");
        assert_eq!(
            serde_json::from_str::<Value>(&stdout)
                .unwrap()
                .as_array()
                .unwrap()
                .len(),
            2
        );
        let (ok, stdout, stderr) = vre(
            &app,
            &steward,
            &["dataset", "dmp", id, "--format", "gakunin"],
        )
        .await;
        assert!(ok, "{stderr}");
        assert_eq!(
            serde_json::from_str::<Value>(&stdout).unwrap()["schema"],
            "e-rad-metadata-1"
        );
        let (ok, stdout, stderr) = vre(&app, &steward, &["dataset", "dmp", id]).await;
        assert!(ok, "{stderr}");
        assert_eq!(serde_json::from_str::<Value>(&stdout).unwrap(), dmp);

        // A bad DMP: the command fails, naming the fields.
        let bad = tmp.path().join("bad.json");
        std::fs::write(&bad, r#"{"title": ""}"#).unwrap();
        let (ok, _, stderr) = vre(
            &app,
            &steward,
            &["dataset", "register", "--dmp", bad.to_str().unwrap()],
        )
        .await;
        assert!(!ok);
        assert!(
            stderr.contains("title") && stderr.contains("management_category"),
            "{stderr}"
        );
        app
    })
    .await;
}

/// The indexes on `applications` its migrations make, in order (a dropped one is gone): what
/// SQLite's own form of 0011, which rebuilds the table, must make again.
fn indexes_the_migrations_make() -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for m in gateway::db::MIGRATOR.iter() {
        for line in m.sql.lines().map(str::trim) {
            let words: Vec<&str> = line.trim_end_matches(';').split_whitespace().collect();
            match words.as_slice() {
                ["CREATE", "INDEX", name, "ON", "applications", ..] => names.push(name.to_string()),
                ["DROP", "INDEX", name] => names.retain(|n| n != name),
                _ => {}
            }
        }
    }
    names.sort();
    names
}

/// Migration 0011 on a database that already holds an application of a project, with a vote
/// and an attachment: they keep their project and rows, every reference still holds, and
/// `applications` has the same indexes on both engines as the migrations make.
#[tokio::test]
async fn applications_made_before_datasets_survive_the_migration() {
    use sqlx::migrate::Migrator;
    for engine in engines() {
        let dir = TempDir::new("migrate-0011");
        let pg = match engine {
            Engine::Sqlite => None,
            Engine::Postgres => Some(PgDatabase::create().await),
        };
        let url = match &pg {
            Some(pg) => pg.url.clone(),
            None => format!("sqlite://{}?mode=rwc", dir.path().join("vre.db").display()),
        };
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&url).await.unwrap();
        let before = Migrator {
            migrations: std::borrow::Cow::Owned(
                gateway::db::MIGRATOR
                    .iter()
                    .filter(|m| m.version <= 8)
                    .cloned()
                    .collect(),
            ),
            ..Migrator::DEFAULT
        };
        before.run(&pool).await.unwrap();
        for sql in [
            "INSERT INTO projects (id, title, created_at, created_by) VALUES ('p1', 'P', 't', 'root')",
            "INSERT INTO applications (id, kind, project_id, requester, title, description, payload, state, round, created_at, updated_at) \
             VALUES ('app-1', 'access', 'p1', 'ana', 'A', '', '{}', 'in_review', 1, 't', 't')",
            "INSERT INTO decisions (application_id, round, reviewer, choice, comment, decided_at) VALUES ('app-1', 1, 'rev', 'approve', 'ok', 't')",
            "INSERT INTO attachments (id, application_id, kind, author, body, created_at) VALUES ('att-1', 'app-1', 'committee_opinion', 'rev', 'fine', 't')",
        ] {
            sqlx::query(sql).execute(&pool).await.unwrap();
        }
        pool.close().await;

        let db = gateway::db::Db::open(&url, 2).await.unwrap();
        let mut conn = db.pool().acquire().await.unwrap();
        let app = gateway::store::application(&mut conn, "app-1")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (app.project_id.as_deref(), app.dataset_id.as_deref()),
            (Some("p1"), None)
        );
        assert_eq!(
            gateway::store::decisions(&mut conn, "app-1")
                .await
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            gateway::store::attachments(&mut conn, "app-1")
                .await
                .unwrap()
                .len(),
            1
        );
        // References hold as before: to applications, and from them.
        for sql in [
            "INSERT INTO decisions (application_id, round, reviewer, choice, comment, decided_at) VALUES ('app-none', 1, 'rev', 'approve', 'ok', 't')",
            "INSERT INTO applications (id, kind, project_id, requester, title, description, payload, state, round, created_at, updated_at) \
             VALUES ('app-2', 'access', 'p-none', 'ana', 'A', '', '{}', 'submitted', 1, 't', 't')",
            "INSERT INTO applications (id, kind, dataset_id, requester, title, description, payload, state, round, created_at, updated_at) \
             VALUES ('app-3', 'listing', 'ds-none', 'sue', 'L', '', '{}', 'submitted', 1, 't', 't')",
            // Neither a project nor a dataset.
            "INSERT INTO applications (id, kind, requester, title, description, payload, state, round, created_at, updated_at) \
             VALUES ('app-4', 'listing', 'sue', 'L', '', '{}', 'submitted', 1, 't', 't')",
        ] {
            assert!(
                sqlx::query(sql).execute(&mut *conn).await.is_err(),
                "{engine:?} took {sql}"
            );
        }
        let indexes_sql = match engine {
            Engine::Sqlite => {
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'applications' \
                               AND name NOT LIKE 'sqlite_autoindex%' ORDER BY name"
            }
            Engine::Postgres => {
                "SELECT CAST(indexname AS TEXT) AS name FROM pg_indexes WHERE tablename = 'applications' \
                                 AND indexname <> 'applications_pkey' ORDER BY indexname"
            }
        };
        let indexes: Vec<String> = sqlx::query_scalar(indexes_sql)
            .fetch_all(&mut *conn)
            .await
            .unwrap();
        assert_eq!(indexes, indexes_the_migrations_make(), "{engine:?}");
        drop(conn);
        db.close().await;
        if let Some(pg) = pg {
            pg.drop_db().await;
        }
    }
}

//! The compare-and-sets that keep a run with one gateway, on each database engine, straight
//! against the store: a lapsed run is taken over by exactly one of two gateways; only its owner
//! claims, starts and finishes it; a run asked to be cancelled is not claimed; the slots count
//! every gateway's running and claimed runs.

use gateway::store::owners::{self, Lapsed};
use gateway::store::sandboxes::{self as sstore, Finish, RunRow, SandboxRow};

use crate::support::{Engine, PgDatabase, TempDir, engines};

fn run(id: &str, project: &str, at: &str) -> RunRow {
    RunRow {
        id: id.into(),
        sandbox_id: "sbx-1".into(),
        project_id: project.into(),
        requester: "ana".into(),
        cmd: vec!["true".into()],
        timeout_secs: 60,
        state: "queued".into(),
        outcome: None,
        exit_code: None,
        detail: None,
        container_id: None,
        created_at: at.into(),
        started_at: None,
        finished_at: None,
        log_bytes: None,
        log_sha256: None,
        log_truncated: None,
        cancelled_by: None,
    }
}

#[tokio::test]
async fn a_run_changes_hands_and_state_only_by_compare_and_set() {
    for engine in engines() {
        let dir = TempDir::new("owners");
        let pg = match engine {
            Engine::Postgres => Some(PgDatabase::create().await),
            Engine::Sqlite => None,
        };
        let url = match &pg {
            Some(pg) => pg.url.clone(),
            None => format!("sqlite://{}?mode=rwc", dir.path().join("vre.db").display()),
        };
        let db = gateway::db::Db::open(&url, 2).await.unwrap();
        let mut conn = db.pool().acquire().await.unwrap();
        let c = &mut *conn;
        for p in ["p1", "p2"] {
            sqlx::query(
                "INSERT INTO projects (id, title, created_at, created_by) VALUES ($1, 't', 'x', 'root')",
            )
            .bind(p)
            .execute(&mut *c)
            .await
            .unwrap();
        }
        sstore::insert_sandbox(
            c,
            &SandboxRow {
                id: "sbx-1".into(),
                project_id: "p1".into(),
                image_name: "i".into(),
                image_id: "sha256:0".into(),
                resource_class: "standard".into(),
                state: "ready".into(),
                created_by: "ana".into(),
                created_at: "2026-01-01T00:00:00.000Z".into(),
                removed_at: None,
                logs: "visible".into(),
            },
        )
        .await
        .unwrap();
        let past = "2026-01-01T00:00:00.000Z";
        let now = "2026-01-01T00:01:00.000Z";
        let later = "2026-01-01T00:02:00.000Z";
        for (id, at) in [
            ("run-a", "2026-01-01T00:00:01.000Z"),
            ("run-b", "2026-01-01T00:00:02.000Z"),
        ] {
            sstore::insert_run(c, &run(id, "p1", at)).await.unwrap();
        }
        // run-a's gateway died (its lease lapsed); run-b's lives.
        owners::own_new(c, "run-a", "gw-dead", past).await.unwrap();
        owners::own_new(c, "run-b", "gw-live", later).await.unwrap();
        let lapsed = owners::lapsed(c, now, "gw-1", false).await.unwrap();
        assert_eq!(
            lapsed,
            vec![Lapsed {
                run: "run-a".into(),
                owner: Some("gw-dead".into()),
                lease_expires: Some(past.into()),
            }],
            "{engine:?}"
        );
        // At its start a gateway takes its own too, lapsed or not.
        let own = owners::lapsed(c, now, "gw-live", true).await.unwrap();
        assert_eq!(own.len(), 2, "{engine:?}");

        // Two gateways take the lapsed run over with what they read: one wins.
        let l = &lapsed[0];
        assert!(owners::take_over(c, l, "gw-1", later).await.unwrap());
        assert!(!owners::take_over(c, l, "gw-2", later).await.unwrap());
        // The old owner's renewal, claim, start and end are refused; the new one's are not.
        assert!(!owners::renew(c, "run-a", "gw-dead", later).await.unwrap());
        assert!(owners::renew(c, "run-a", "gw-1", later).await.unwrap());
        assert!(
            !owners::claim_start(c, "run-a", "gw-dead", now)
                .await
                .unwrap()
        );
        assert_eq!(owners::slots_taken(c, "p1", "run-b").await.unwrap(), (0, 0));
        assert_eq!(
            owners::queued_ahead(c, "p1", "2026-01-01T00:00:02.000Z", "run-b")
                .await
                .unwrap(),
            1
        );
        assert!(owners::claim_start(c, "run-a", "gw-1", now).await.unwrap());
        // A claimed run holds a slot of its project, for every gateway.
        assert_eq!(owners::slots_taken(c, "p1", "run-b").await.unwrap(), (1, 1));
        assert_eq!(owners::slots_taken(c, "p2", "run-b").await.unwrap(), (1, 0));
        assert_eq!(
            owners::queued_ahead(c, "p1", "2026-01-01T00:00:02.000Z", "run-b")
                .await
                .unwrap(),
            0
        );
        assert!(
            !sstore::mark_started(c, "run-a", "gw-dead", "ctr", now)
                .await
                .unwrap()
        );
        assert!(
            sstore::mark_started(c, "run-a", "gw-1", "ctr", now)
                .await
                .unwrap()
        );
        assert!(
            !sstore::mark_started(c, "run-a", "gw-1", "ctr", now)
                .await
                .unwrap(),
            "started once"
        );
        let f = Finish {
            outcome: "exited".into(),
            exit_code: 0,
            detail: None,
            log_bytes: 0,
            log_sha256: String::new(),
            log_truncated: false,
            at: later.into(),
        };
        assert!(
            !sstore::mark_finished(c, "run-a", "gw-dead", &f)
                .await
                .unwrap()
        );
        assert!(sstore::mark_finished(c, "run-a", "gw-1", &f).await.unwrap());
        assert!(
            !sstore::mark_finished(c, "run-a", "gw-1", &f).await.unwrap(),
            "finished once"
        );
        assert!(
            !owners::renew(c, "run-a", "gw-1", later).await.unwrap(),
            "finished"
        );

        // A run asked to be cancelled is never claimed.
        assert!(sstore::request_cancel(c, "run-b", "ana").await.unwrap());
        assert!(
            !owners::claim_start(c, "run-b", "gw-live", now)
                .await
                .unwrap()
        );

        drop(conn);
        db.close().await;
        if let Some(pg) = pg {
            pg.drop_db().await;
        }
    }
}

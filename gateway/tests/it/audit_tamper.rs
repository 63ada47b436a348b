//! Tampering with the audit log behind the gateway's back, with plain SQL and file edits, and
//! what `verify` (in process and as `vre audit verify`) makes of it: every kind is caught and
//! named by the first event that can be shown to be wrong.
//!
//! Every test starts from the same log of 11 events, written one request at a time with a
//! checkpoint after each commit, so that exactly which events are signed is known:
//!
//! ```text
//!  1 project.create          signed
//!  2..5 application.submit   signed (one commit each)
//!  6 decision,  7 state      reject: one commit, 7 signed
//!  8 decision,  9 state      request_changes: one commit, 9 signed
//! 10 decision, 11 state      reject: one commit, 11 signed (the head)
//! ```

use gateway::audit::{Report, event_hash, read_checkpoints};
use gateway::config::Settings;
use reqwest::StatusCode;
use sqlx::{AnyConnection, Connection, Row};

use crate::support::{Engine, TestApp, engines, run_audit_verify, verify_offline};

const EVENTS: i64 = 11;
const SIGNED: [i64; 8] = [1, 2, 3, 4, 5, 7, 9, 11];

/// A gateway that has written the log above, settled, still running.
async fn logged(engine: Engine) -> TestApp {
    let app = TestApp::spawn(engine).await;
    app.project("p1", &[("ana", "analyst")]).await;
    app.settle_checkpoints().await;
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(app.application("access", "p1", "ana", "analyst").await);
        app.settle_checkpoints().await;
    }
    for (id, reviewer, decision) in [
        (&ids[0], "rev1", "reject"),
        (&ids[1], "rev1", "request_changes"),
        (&ids[2], "rev2", "reject"),
    ] {
        let (st, body) = app.vote(id, reviewer, decision).await;
        assert_eq!(st, StatusCode::OK, "{body}");
        app.settle_checkpoints().await;
    }
    app
}

/// The same, halted, checked to be intact and signed as described.
async fn logged_and_halted(engine: Engine) -> TestApp {
    let mut app = logged(engine).await;
    app.halt().await;
    assert_intact(&app.settings).await;
    let signed: Vec<i64> = read_checkpoints(&app.settings.checkpoint_dir())
        .unwrap()
        .into_iter()
        .map(|c| c.unwrap().seq)
        .collect();
    assert_eq!(signed, SIGNED, "the fixture's checkpoints");
    app
}

async fn assert_intact(settings: &Settings) {
    assert_eq!(
        verify_offline(settings).await,
        Report {
            events: EVENTS,
            checkpoints: SIGNED.len(),
            problem: None,
            torn_tail: None,
        }
    );
}

/// Asserts that verify names event `seq` first, with a message containing every one of `words`.
async fn assert_caught(settings: &Settings, seq: i64, words: &[&str]) {
    let report = verify_offline(settings).await;
    let p = report
        .problem
        .clone()
        .unwrap_or_else(|| panic!("the tampering went unnoticed: {report:?}"));
    assert_eq!(p.seq, seq, "named the wrong event: {p}");
    for w in words {
        assert!(p.what.contains(w), "`{p}` does not say `{w}`");
    }
}

/// A connection of its own, as someone with access to the database would have.
async fn sql(settings: &Settings) -> AnyConnection {
    sqlx::any::install_default_drivers();
    AnyConnection::connect(&settings.database_url())
        .await
        .unwrap()
}

async fn exec(c: &mut AnyConnection, query: &str, binds: &[&str]) {
    let mut q = sqlx::query(query);
    for b in binds {
        q = q.bind(*b);
    }
    q.execute(&mut *c).await.unwrap();
}

async fn exec_seq(c: &mut AnyConnection, query: &str, seq: i64) {
    sqlx::query(query).bind(seq).execute(&mut *c).await.unwrap();
}

#[derive(Clone, Debug)]
struct Ev {
    seq: i64,
    at: String,
    actor: String,
    action: String,
    subject: String,
    detail: String,
    prev_hash: String,
    hash: String,
}

impl Ev {
    fn rehash(&mut self) {
        self.hash = event_hash(
            self.seq,
            &self.at,
            &self.actor,
            &self.action,
            &self.subject,
            &self.detail,
            &self.prev_hash,
        );
    }

    /// A forged event at `seq` after `prev`, with a hash that matches its content.
    fn forged(seq: i64, prev: &Ev) -> Ev {
        let mut e = Ev {
            seq,
            at: prev.at.clone(),
            actor: "root".into(),
            action: "project.member_add".into(),
            subject: "p1".into(),
            detail: r#"{"role":"analyst","subject":"mallory"}"#.into(),
            prev_hash: prev.hash.clone(),
            hash: String::new(),
        };
        e.rehash();
        e
    }
}

async fn event(c: &mut AnyConnection, seq: i64) -> Ev {
    let r = sqlx::query(
        "SELECT seq, at, actor, action, subject, detail, prev_hash, hash FROM audit_events WHERE seq = $1",
    )
    .bind(seq)
    .fetch_one(&mut *c)
    .await
    .unwrap();
    Ev {
        seq: r.get("seq"),
        at: r.get("at"),
        actor: r.get("actor"),
        action: r.get("action"),
        subject: r.get("subject"),
        detail: r.get("detail"),
        prev_hash: r.get("prev_hash"),
        hash: r.get("hash"),
    }
}

async fn insert(c: &mut AnyConnection, e: &Ev) {
    sqlx::query(
        "INSERT INTO audit_events (seq, at, actor, action, subject, detail, prev_hash, hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(e.seq)
    .bind(&e.at)
    .bind(&e.actor)
    .bind(&e.action)
    .bind(&e.subject)
    .bind(&e.detail)
    .bind(&e.prev_hash)
    .bind(&e.hash)
    .execute(&mut *c)
    .await
    .unwrap();
}

async fn overwrite(c: &mut AnyConnection, e: &Ev) {
    sqlx::query(
        "UPDATE audit_events SET at = $1, actor = $2, action = $3, subject = $4, detail = $5, \
         prev_hash = $6, hash = $7 WHERE seq = $8",
    )
    .bind(&e.at)
    .bind(&e.actor)
    .bind(&e.action)
    .bind(&e.subject)
    .bind(&e.detail)
    .bind(&e.prev_hash)
    .bind(&e.hash)
    .bind(e.seq)
    .execute(&mut *c)
    .await
    .unwrap();
}

async fn set_head(c: &mut AnyConnection, e: &Ev) {
    sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
        .bind(e.seq)
        .bind(&e.hash)
        .execute(&mut *c)
        .await
        .unwrap();
}

/// Moves every event from `from` on one place up (through negative numbers, since the primary
/// key is checked row by row on PostgreSQL).
async fn shift_up(c: &mut AnyConnection, from: i64) {
    exec_seq(
        c,
        "UPDATE audit_events SET seq = -(seq + 1) WHERE seq >= $1",
        from,
    )
    .await;
    exec(c, "UPDATE audit_events SET seq = -seq WHERE seq < 0", &[]).await;
}

/// Moves every event after `after` one place down.
async fn shift_down(c: &mut AnyConnection, after: i64) {
    exec_seq(
        c,
        "UPDATE audit_events SET seq = -(seq - 1) WHERE seq > $1",
        after,
    )
    .await;
    exec(c, "UPDATE audit_events SET seq = -seq WHERE seq < 0", &[]).await;
}

/// Swaps the places of events `a` and `b`.
async fn swap(c: &mut AnyConnection, a: i64, b: i64) {
    exec_seq(c, "UPDATE audit_events SET seq = -1 WHERE seq = $1", a).await;
    sqlx::query("UPDATE audit_events SET seq = $1 WHERE seq = $2")
        .bind(a)
        .bind(b)
        .execute(&mut *c)
        .await
        .unwrap();
    exec_seq(c, "UPDATE audit_events SET seq = $1 WHERE seq = -1", b).await;
}

fn database_url_for_binary(app: &TestApp) -> Option<&str> {
    Some(app.settings.database_url.expose()).filter(|u| !u.is_empty())
}

#[tokio::test]
async fn the_binary_exits_0_when_intact_and_1_naming_the_first_bad_event() {
    for engine in engines() {
        let app = logged_and_halted(engine).await;
        let url = database_url_for_binary(&app);
        let (code, out) = run_audit_verify(&app.settings.data_dir, url);
        assert_eq!(code, 0, "{engine:?}: {out}");
        assert!(
            out.contains("audit log intact: 11 events, 8 signed checkpoints"),
            "{out}"
        );

        let mut c = sql(&app.settings).await;
        exec(
            &mut c,
            "UPDATE audit_events SET detail = $1 WHERE seq = 4",
            &[r#"{"kind":"access","title":"Something else"}"#],
        )
        .await;
        c.close().await.unwrap();
        let (code, out) = run_audit_verify(&app.settings.data_dir, url);
        assert_eq!(code, 1, "{engine:?}: {out}");
        assert!(
            out.contains("audit log TAMPERED: event 4: its content does not match its hash"),
            "{out}"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn an_edited_event_is_named() {
    for engine in engines() {
        let app = logged_and_halted(engine).await;
        let mut c = sql(&app.settings).await;
        for (seq, change) in [(4, "detail"), (9, "actor"), (1, "at"), (EVENTS, "action")] {
            let original = event(&mut c, seq).await;
            let mut edited = original.clone();
            match change {
                "detail" => edited.detail = r#"{"kind":"access","title":"Harmless"}"#.into(),
                "actor" => edited.actor = "someone-else".into(),
                "at" => edited.at = "2020-01-01T00:00:00.000Z".into(),
                _ => edited.action = "application.withdraw".into(),
            }
            overwrite(&mut c, &edited).await;
            assert_caught(
                &app.settings,
                seq,
                &["content does not match its hash", "edited"],
            )
            .await;
            overwrite(&mut c, &original).await;
            assert_intact(&app.settings).await;
        }

        // Edited with its hash recomputed: the next event still points at the old hash, and
        // a signed event is caught by its checkpoint at once.
        let original = event(&mut c, 4).await;
        let mut edited = original.clone();
        edited.actor = "someone-else".into();
        edited.rehash();
        overwrite(&mut c, &edited).await;
        assert_caught(&app.settings, 4, &["differs from the signed checkpoint"]).await;
        overwrite(&mut c, &original).await;
        assert_intact(&app.settings).await;

        c.close().await.unwrap();
        app.stop().await;
    }
}

#[tokio::test]
async fn a_deleted_event_is_named() {
    for engine in engines() {
        let app = logged_and_halted(engine).await;
        let mut c = sql(&app.settings).await;
        for (seq, before, after) in [(6, 5, 7), (1, 0, 2)] {
            let original = event(&mut c, seq).await;
            exec_seq(&mut c, "DELETE FROM audit_events WHERE seq = $1", seq).await;
            assert_caught(
                &app.settings,
                seq,
                &[
                    "missing",
                    &format!("jumps from event {before} to event {after}"),
                ],
            )
            .await;
            insert(&mut c, &original).await;
            assert_intact(&app.settings).await;
        }
        c.close().await.unwrap();
        app.stop().await;
    }
}

#[tokio::test]
async fn an_inserted_event_is_named() {
    for engine in engines() {
        let app = logged_and_halted(engine).await;
        let mut c = sql(&app.settings).await;
        let head = event(&mut c, EVENTS).await;

        // Slipped in as event 6 (unsigned), the rest renumbered and the head moved along. The
        // forged row itself is consistent; the first event that is provably wrong is the one
        // after it, which no longer follows its predecessor.
        let prev = event(&mut c, 5).await;
        shift_up(&mut c, 6).await;
        insert(&mut c, &Ev::forged(6, &prev)).await;
        set_head(
            &mut c,
            &Ev {
                seq: EVENTS + 1,
                ..head.clone()
            },
        )
        .await;
        assert_caught(
            &app.settings,
            7,
            &["does not follow the event before it", "inserted"],
        )
        .await;
        exec(&mut c, "DELETE FROM audit_events WHERE seq = 6", &[]).await;
        shift_down(&mut c, 6).await;
        set_head(&mut c, &head).await;
        assert_intact(&app.settings).await;

        // Slipped in as event 7, which is signed: the checkpoint names the forged row itself.
        let prev = event(&mut c, 6).await;
        shift_up(&mut c, 7).await;
        insert(&mut c, &Ev::forged(7, &prev)).await;
        assert_caught(&app.settings, 7, &["differs from the signed checkpoint"]).await;
        exec(&mut c, "DELETE FROM audit_events WHERE seq = 7", &[]).await;
        shift_down(&mut c, 7).await;
        assert_intact(&app.settings).await;

        // The careful forger: inserted as event 6, and every later event re-chained and
        // re-hashed, the head updated. The chain is consistent again; only the signed
        // checkpoints remember, and the first one after the forgery names where it shows.
        let prev = event(&mut c, 5).await;
        shift_up(&mut c, 6).await;
        let mut last = Ev::forged(6, &prev);
        insert(&mut c, &last).await;
        for seq in 7..=EVENTS + 1 {
            let mut e = event(&mut c, seq).await;
            e.prev_hash = last.hash.clone();
            e.rehash();
            overwrite(&mut c, &e).await;
            last = e;
        }
        set_head(&mut c, &last).await;
        assert_caught(
            &app.settings,
            7,
            &["differs from the signed checkpoint", "rewritten"],
        )
        .await;

        c.close().await.unwrap();
        app.stop().await;
    }
}

#[tokio::test]
async fn an_appended_event_is_named() {
    for engine in engines() {
        let app = logged_and_halted(engine).await;
        let mut c = sql(&app.settings).await;
        let head = event(&mut c, EVENTS).await;
        let next = EVENTS + 1;

        // Appended, head updated, but chained to an older event.
        let older = event(&mut c, EVENTS - 1).await;
        let forged = Ev::forged(next, &older);
        insert(&mut c, &forged).await;
        set_head(&mut c, &forged).await;
        assert_caught(
            &app.settings,
            next,
            &["does not follow the event before it"],
        )
        .await;
        exec_seq(&mut c, "DELETE FROM audit_events WHERE seq = $1", next).await;
        set_head(&mut c, &head).await;
        assert_intact(&app.settings).await;

        // Appended after the head, with a hash that is not its own.
        let mut forged = Ev::forged(next, &head);
        forged.hash = head.hash.clone();
        insert(&mut c, &forged).await;
        set_head(&mut c, &forged).await;
        assert_caught(&app.settings, next, &["content does not match its hash"]).await;
        exec_seq(&mut c, "DELETE FROM audit_events WHERE seq = $1", next).await;
        set_head(&mut c, &head).await;
        assert_intact(&app.settings).await;

        // Chained correctly, but the head row left alone: the forged event is beyond the
        // chain's recorded head.
        insert(&mut c, &Ev::forged(next, &head)).await;
        assert_caught(
            &app.settings,
            next,
            &["recorded head is event 11", "goes on to event 12"],
        )
        .await;
        exec_seq(&mut c, "DELETE FROM audit_events WHERE seq = $1", next).await;
        assert_intact(&app.settings).await;

        // The last event replaced by a consistent forgery, the head row left alone.
        exec(&mut c, "DELETE FROM audit_events WHERE seq = 11", &[]).await;
        let prev = event(&mut c, EVENTS - 1).await;
        insert(&mut c, &Ev::forged(EVENTS, &prev)).await;
        let text =
            std::fs::read_to_string(app.settings.checkpoint_dir().join("checkpoints.log")).unwrap();
        // Without the checkpoint for 11, only the head row tells.
        let kept: String = text
            .lines()
            .filter(|l| !l.starts_with("11 "))
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(app.settings.checkpoint_dir().join("checkpoints.log"), kept).unwrap();
        assert_caught(
            &app.settings,
            EVENTS,
            &["differs from the chain's recorded head"],
        )
        .await;
        std::fs::write(app.settings.checkpoint_dir().join("checkpoints.log"), text).unwrap();
        assert_caught(
            &app.settings,
            EVENTS,
            &["differs from the signed checkpoint"],
        )
        .await;

        c.close().await.unwrap();
        app.stop().await;
    }
}

#[tokio::test]
async fn swapped_events_are_named() {
    for engine in engines() {
        let app = logged_and_halted(engine).await;
        let mut c = sql(&app.settings).await;
        for (a, b) in [(4, 5), (10, 11)] {
            swap(&mut c, a, b).await;
            assert_caught(
                &app.settings,
                a,
                &["does not follow the event before it", "moved"],
            )
            .await;
            swap(&mut c, a, b).await;
            assert_intact(&app.settings).await;
        }
        c.close().await.unwrap();
        app.stop().await;
    }
}

#[tokio::test]
async fn a_database_rolled_back_behind_a_checkpoint_is_caught() {
    for engine in engines() {
        let mut app = logged(engine).await;
        let backup = app.dir.path().join("backup.db");
        if engine == Engine::Sqlite {
            sqlx::query(&format!("VACUUM INTO '{}'", backup.display()))
                .execute(app.state.db.pool())
                .await
                .unwrap();
        }
        let mut c = sql(&app.settings).await;
        let old_head = event(&mut c, EVENTS).await;
        c.close().await.unwrap();
        for _ in 0..3 {
            app.application("access", "p1", "ana", "analyst").await;
            app.settle_checkpoints().await;
        }
        app.halt().await;
        let signed: Vec<i64> = read_checkpoints(&app.settings.checkpoint_dir())
            .unwrap()
            .into_iter()
            .map(|c| c.unwrap().seq)
            .filter(|s| *s > EVENTS)
            .collect();
        assert_eq!(signed, [12, 13, 14]);

        match engine {
            Engine::Sqlite => {
                let db = app.settings.data_dir.join("vre.db");
                for ext in ["-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{ext}", db.display()));
                }
                std::fs::copy(&backup, &db).unwrap();
            }
            Engine::Postgres => {
                // What restoring yesterday's dump amounts to, as far as the audit tables go.
                let mut c = sql(&app.settings).await;
                exec_seq(&mut c, "DELETE FROM audit_events WHERE seq > $1", EVENTS).await;
                set_head(&mut c, &old_head).await;
                c.close().await.unwrap();
            }
        }
        assert_caught(
            &app.settings,
            EVENTS + 1,
            &[
                "missing",
                "a signed checkpoint covers event 12 but the database ends at event 11",
            ],
        )
        .await;
        let (code, out) = run_audit_verify(&app.settings.data_dir, database_url_for_binary(&app));
        assert_eq!(code, 1, "{out}");
        assert!(out.contains("event 12: missing"), "{out}");
        app.stop().await;
    }
}

#[tokio::test]
async fn a_truncated_tail_is_caught() {
    for engine in engines() {
        let app = logged_and_halted(engine).await;
        let mut c = sql(&app.settings).await;
        exec(&mut c, "DELETE FROM audit_events WHERE seq >= 10", &[]).await;
        c.close().await.unwrap();
        assert_caught(
            &app.settings,
            10,
            &["a signed checkpoint covers event 11 but the database ends at event 9"],
        )
        .await;

        // Had the gateway died before signing 10 and 11, the head row still tells.
        let log = app.settings.checkpoint_dir().join("checkpoints.log");
        let text = std::fs::read_to_string(&log).unwrap();
        let kept: String = text
            .lines()
            .filter(|l| l.split(' ').next().unwrap().parse::<i64>().unwrap() <= 9)
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(&log, kept).unwrap();
        assert_caught(
            &app.settings,
            10,
            &["missing", "recorded head is 11 but the log ends at event 9"],
        )
        .await;
        app.stop().await;
    }
}

#[tokio::test]
async fn a_damaged_or_forged_checkpoint_is_named() {
    for engine in engines() {
        let app = logged_and_halted(engine).await;
        let log = app.settings.checkpoint_dir().join("checkpoints.log");
        let original = std::fs::read_to_string(&log).unwrap();
        let lines: Vec<&str> = original.lines().collect();
        let line_of = |seq: i64| {
            lines
                .iter()
                .position(|l| l.starts_with(&format!("{seq} ")))
                .unwrap()
        };
        let with_line = |i: usize, new: &str| {
            let mut l: Vec<String> = lines.iter().map(|s| s.to_string()).collect();
            l[i] = new.to_owned();
            l.join("\n") + "\n"
        };
        let fields = |i: usize| -> Vec<String> { lines[i].split(' ').map(str::to_owned).collect() };

        // A signature with one character changed.
        let i = line_of(5);
        let mut f = fields(i);
        let first = if f[4].starts_with('A') { "B" } else { "A" };
        f[4].replace_range(0..1, first);
        std::fs::write(&log, with_line(i, &f.join(" "))).unwrap();
        assert_caught(
            &app.settings,
            5,
            &["signature does not verify with the audit key"],
        )
        .await;

        // A checkpoint moved to another hash (to bless a rewritten chain), signature kept.
        let i = line_of(7);
        let mut f = fields(i);
        f[1] = fields(line_of(5))[1].clone();
        std::fs::write(&log, with_line(i, &f.join(" "))).unwrap();
        assert_caught(&app.settings, 7, &["signature does not verify"]).await;

        // A well-formed checkpoint for the real head, signed by a key that is not the audit key.
        let stranger = gateway::keys::Ed25519Key::generate().unwrap();
        let other = crate::support::TempDir::new("stranger");
        let head = gateway::audit::ChainHead {
            seq: EVENTS,
            hash: fields(line_of(EVENTS))[1].clone(),
        };
        gateway::audit::write_checkpoint(other.path(), &stranger, &head).unwrap();
        let forged = std::fs::read_to_string(other.path().join("checkpoints.log")).unwrap();
        std::fs::write(&log, format!("{original}{forged}")).unwrap();
        assert_caught(&app.settings, EVENTS, &["signature does not verify"]).await;

        // A line that is not a checkpoint at all: no event to name, the line is named instead.
        std::fs::write(&log, format!("{original}11 garbage\n")).unwrap();
        let n = lines.len() + 1;
        assert_caught(
            &app.settings,
            0,
            &[&format!("line {n} of"), "is not a checkpoint"],
        )
        .await;

        std::fs::write(&log, &original).unwrap();
        assert_intact(&app.settings).await;
        app.stop().await;
    }
}

/// Checkpoints come in the order of the chain, but one written after later ones (two writers
/// sharing the log) is still held to the event it names: an old head signed again is fine, a
/// signed hash the event does not have is caught at that event.
#[tokio::test]
async fn a_checkpoint_out_of_order_is_still_compared() {
    let app = logged_and_halted(Engine::Sqlite).await;
    let dir = app.settings.checkpoint_dir();
    let log = dir.join("checkpoints.log");
    let original = std::fs::read_to_string(&log).unwrap();
    let data = gateway::keys::DataDir::new(app.settings.data_dir.clone());
    let key = gateway::keys::Ed25519Key::load_or_create(&data.audit_key()).unwrap();
    let hash_of = |seq: i64| {
        original
            .lines()
            .find(|l| l.starts_with(&format!("{seq} ")))
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .to_owned()
    };
    let head = gateway::audit::ChainHead {
        seq: 3,
        hash: hash_of(3),
    };
    gateway::audit::write_checkpoint(&dir, &key, &head).unwrap();
    let report = verify_offline(&app.settings).await;
    assert_eq!(report.problem, None, "{report:?}");
    assert_eq!(report.checkpoints, SIGNED.len() + 1);

    std::fs::write(&log, &original).unwrap();
    let forged = gateway::audit::ChainHead {
        seq: 4,
        hash: hash_of(5),
    };
    gateway::audit::write_checkpoint(&dir, &key, &forged).unwrap();
    assert_caught(&app.settings, 4, &["differs from the signed checkpoint"]).await;
    std::fs::write(&log, &original).unwrap();
    app.stop().await;
}

/// A checkpoint write cut short by a crash leaves a last line without its end of line: `verify`
/// says so (it is no signed checkpoint changed), and the next start cuts it off and records
/// what it cut.
#[tokio::test]
async fn a_torn_last_checkpoint_line_is_named_and_repaired_at_start() {
    for engine in engines() {
        let app = logged_and_halted(engine).await;
        let log = app.settings.checkpoint_dir().join("checkpoints.log");
        let original = std::fs::read_to_string(&log).unwrap();
        // The head's line again, cut a few characters short of its end: its signature still
        // decodes, but is not the one signed.
        let last = original.lines().last().unwrap();
        let torn = &last[..last.len() - 4];
        std::fs::write(&log, format!("{original}{torn}")).unwrap();
        let report = verify_offline(&app.settings).await;
        let t = report.torn_tail.clone().expect("the torn line is seen");
        assert_eq!(
            (t.line, t.bytes, t.offset),
            (SIGNED.len() + 1, torn.len() as u64, original.len() as u64)
        );
        assert_eq!(report.checkpoints, SIGNED.len(), "{report:?}");
        assert_eq!(report.events, EVENTS, "{report:?}");
        assert_caught(
            &app.settings,
            0,
            &["last line (9) of the checkpoint log is torn"],
        )
        .await;
        let url = database_url_for_binary(&app);
        let (code, out) = run_audit_verify(&app.settings.data_dir, url);
        assert_eq!(code, 1, "{engine:?}: {out}");
        assert!(out.contains("checkpoint log is torn"), "{out}");
        assert!(!out.contains("signature does not verify"), "{out}");

        // The next start cuts it and says so in the log; the log is intact again.
        let gw = gateway::startup::Application::build(app.settings.clone())
            .await
            .expect("the gateway starts");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(gw.run_until_stopped(async move {
            let _ = rx.await;
        }));
        let _ = tx.send(());
        running.await.unwrap().unwrap();
        let repaired = std::fs::read_to_string(&log).unwrap();
        // What is after the complete lines is the new head's checkpoint only, a line of its own.
        let added = repaired
            .strip_prefix(&original)
            .expect("the complete lines stay");
        assert!(
            !added.is_empty()
                && added.ends_with('\n')
                && added
                    .lines()
                    .all(|l| l.starts_with(&format!("{} ", EVENTS + 1))),
            "the torn line stayed: {added:?}"
        );
        let report = verify_offline(&app.settings).await;
        assert_eq!((report.problem, report.torn_tail), (None, None));
        assert_eq!(report.events, EVENTS + 1);
        let mut c = sql(&app.settings).await;
        let e = event(&mut c, EVENTS + 1).await;
        c.close().await.unwrap();
        assert_eq!(
            (e.actor.as_str(), e.action.as_str(), e.subject.as_str()),
            ("gateway", "audit.checkpoints_repaired", "checkpoints.log")
        );
        let detail: serde_json::Value = serde_json::from_str(&e.detail).unwrap();
        assert_eq!(detail["bytes"], torn.len());
        assert_eq!(detail["line"], SIGNED.len() + 1);
        assert_eq!(detail["text"], torn);
        assert_eq!(detail["sha256"], gateway::sha256_hex(torn.as_bytes()));
        app.stop().await;
    }
}

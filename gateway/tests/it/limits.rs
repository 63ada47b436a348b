//! What no caller can exhaust: body sizes per route (refused by their declared length before
//! any of them is read, cut off at the limit when chunked, and answered so that a client
//! sending the whole body still reads the refusal), uploads at once, silent connections
//! (a handshake, a head, a body), connections at once, and queued runs per project.
//!
//! The raw HTTP/1.1 requests here go over a blocking rustls client of their own, so that a test
//! decides exactly what is sent, and when.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{Engine, TestApp, docker_available, each_engine, engines};

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A client configuration that trusts the test gateway's own CA.
fn client_config(app: &TestApp) -> Arc<rustls::ClientConfig> {
    let ca = gateway::keys::DataDir::new(app.settings.data_dir.clone()).ca_cert();
    let pem = std::fs::read(ca).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut &pem[..]) {
        roots.add(cert.unwrap()).unwrap();
    }
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    )
}

/// Reads one response: its status and its body (as JSON when it is).
fn read_response(s: &mut impl Read) -> io::Result<(u16, Value)> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let status = head[9..12].parse().unwrap();
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    let mut body = vec![0; len];
    s.read_exact(&mut body)?;
    let body = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    Ok((status, body))
}

/// Waits until the gateway ends the connection: how long that took from `since`, or None if it
/// was still open when the read timeout passed. What it sends before is read and dropped.
fn ended(s: &mut impl Read, since: Instant) -> Option<Duration> {
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Some(since.elapsed()),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return None;
            }
            Err(_) => return Some(since.elapsed()),
        }
    }
}

/// A request's head.
fn head(method: &str, path: &str, token: &str, extra: &str) -> String {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\n{extra}\r\n"
    )
}

/// An application whose description makes it `bytes` long, as JSON.
fn big_application(bytes: usize) -> Vec<u8> {
    let mut b = br#"{"kind":"access","project":"p1","title":"Big","description":""#.to_vec();
    b.resize(bytes - 2, b'a');
    b.extend_from_slice(b"\"}");
    b
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

/// Finds `too_large` in an answer.
fn is_too_large(answer: &(u16, Value)) -> bool {
    answer.0 == 413 && answer.1["code"] == "too_large"
}

/// A 16 MB JSON body is refused by its declared length: with no byte of it sent, the refusal
/// comes at once, and a client that sends all of it before reading still reads the refusal
/// (the rest is drained, not reset). A chunked one is cut off at the limit. The attachment
/// route alone takes a file's worth, and refuses more by its length too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_bodies_are_small_and_refused_before_they_are_read() {
    each_engine(|app| async move {
        app.project("p1", &[("ana", "analyst")]).await;
        let ana = app.token("ana", "analyst");
        let config = client_config(&app);
        let big: u64 = 16 << 20;

        // Declared, not sent: the answer does not wait for the body.
        let addr = TestAppAddr(app.addr);
        let post = |path: &str, token: &str, body: Sent| {
            let (cfg, path, token) = (config.clone(), path.to_owned(), token.to_owned());
            blocking(move || addr.post(&cfg, &path, &token, body))
        };
        let answer = post("/api/v1/applications", &ana, Sent::Declared(big)).await;
        assert!(
            answer.as_ref().is_ok_and(is_too_large),
            "a declared 16 MB body must be refused before it is sent: {answer:?}"
        );

        // Sent whole before the answer is read: the refusal is still there to read.
        let body = Sent::Whole(big_application(big as usize));
        let answer = post("/api/v1/applications", &ana, body).await;
        assert!(answer.as_ref().is_ok_and(is_too_large), "{answer:?}");

        // Chunked: no length to refuse it by, cut off at the limit.
        let body = Sent::Chunked(big_application(2 << 20));
        let answer = post("/api/v1/applications", &ana, body).await;
        assert!(answer.as_ref().is_ok_and(is_too_large), "{answer:?}");

        // Below the limit, as before.
        let (st, b) = app
            .post(
                "/api/v1/applications",
                Some(&ana),
                &json!({"kind": "access", "project": "p1", "title": "Small", "description": "why", "payload": app.access_payload().await}),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{b}");
        let id = b["id"].as_str().unwrap().to_owned();

        // The attachment route takes a file of 2 MiB (past the JSON limit) ...
        use base64::Engine as _;
        let rev = app.token("rev", "reviewer");
        let file = vec![7u8; 2 << 20];
        let path = format!("/api/v1/applications/{id}/attachments");
        let (st, b) = app
            .post(
                &path,
                Some(&rev),
                &json!({"kind": "committee_opinion", "text": "see the file", "file_name": "f.bin",
                    "file_base64": base64::engine::general_purpose::STANDARD.encode(&file)}),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{b}");
        // ... and refuses one past its own limit by its length, unsent.
        let over = app.settings.limits.attachment_body_max_bytes() + 1;
        let answer = post(&path, &rev, Sent::Declared(over)).await;
        assert!(answer.as_ref().is_ok_and(is_too_large), "{answer:?}");
        app
    })
    .await;
}

/// The address of a test gateway, for blocking clients (which cannot hold the `TestApp`).
#[derive(Clone, Copy)]
struct TestAppAddr(std::net::SocketAddr);

impl TestAppAddr {
    fn tcp(self, wait: Duration) -> TcpStream {
        let s = TcpStream::connect(self.0).unwrap();
        s.set_read_timeout(Some(wait)).unwrap();
        s
    }

    fn connect(self, config: &Arc<rustls::ClientConfig>, wait: Duration) -> io::Result<Tls> {
        let conn = rustls::ClientConnection::new(config.clone(), "localhost".try_into().unwrap())
            .map_err(io::Error::other)?;
        let mut tls = rustls::StreamOwned::new(conn, self.tcp(wait));
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock)?;
        }
        Ok(tls)
    }

    /// POSTs `body` to `path` as `token` on a connection of its own, and reads the answer once
    /// all of it is sent.
    fn post(
        self,
        config: &Arc<rustls::ClientConfig>,
        path: &str,
        token: &str,
        body: Sent,
    ) -> io::Result<(u16, Value)> {
        let mut s = self.connect(config, Duration::from_secs(30))?;
        let framing = match &body {
            Sent::Declared(n) => format!("Content-Length: {n}\r\n"),
            Sent::Whole(b) => format!("Content-Length: {}\r\n", b.len()),
            Sent::Chunked(_) => "Transfer-Encoding: chunked\r\n".to_owned(),
        };
        s.write_all(head("POST", path, token, &framing).as_bytes())?;
        match body {
            Sent::Declared(_) => {}
            Sent::Whole(b) => s.write_all(&b)?,
            Sent::Chunked(b) => {
                for chunk in b.chunks(64 << 10) {
                    write!(s, "{:x}\r\n", chunk.len())?;
                    s.write_all(chunk)?;
                    s.write_all(b"\r\n")?;
                }
                s.write_all(b"0\r\n\r\n")?;
            }
        }
        s.flush()?;
        read_response(&mut s)
    }
}

/// What a raw request sends of its body.
enum Sent {
    /// A length in the head, and not a byte of the body.
    Declared(u64),
    /// All of it, its length in the head.
    Whole(Vec<u8>),
    /// All of it, in chunks of 64 KiB.
    Chunked(Vec<u8>),
}

/// Uploads at once are capped: while one is in progress (its body half sent), another is
/// answered 503 `busy`; once it is gone, uploads go through again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_beyond_the_cap_are_told_to_wait() {
    let app = TestApp::spawn_with(Engine::Sqlite, |s| s.server.max_concurrent_uploads = 1).await;
    app.project("p1", &[("ana", "analyst")]).await;
    let ana = app.token("ana", "analyst");
    let config = client_config(&app);
    let addr = TestAppAddr(app.addr);
    let t = ana.clone();
    // A tar whose one file is announced 1 MiB long, of which 1 KiB is sent.
    use policy::archive::tar::{EntryKind, entry_header};
    let tar_head = entry_header("data.bin", EntryKind::File, 1 << 20, 0o644);
    let mut held = blocking(move || {
        let mut s = addr.connect(&config, Duration::from_secs(30)).unwrap();
        let h = head(
            "POST",
            "/api/v1/ingress?project=p1&name=held",
            &t,
            &format!("Content-Length: {}\r\n", (2 << 20) + 1024),
        );
        s.write_all(h.as_bytes()).unwrap();
        s.write_all(&tar_head).unwrap();
        s.write_all(&[1u8; 1024]).unwrap();
        s.flush().unwrap();
        s
    })
    .await;
    // Its upload has begun (so it holds the one permit) once its temporary file exists.
    let tmp = app.dir.path().join("tmp");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_dir(&tmp).unwrap().next().is_none() {
        assert!(Instant::now() < deadline, "the held upload never began");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (st, b) = not_an_archive(&app, &ana).await;
    assert_eq!(
        (st, b["code"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("busy")),
        "{b}"
    );
    held = blocking(move || {
        held.sock.shutdown(std::net::Shutdown::Both).unwrap();
        held
    })
    .await;
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (st, b) = not_an_archive(&app, &ana).await;
        if st != StatusCode::SERVICE_UNAVAILABLE {
            assert!(
                b["code"]
                    .as_str()
                    .is_some_and(|c| c.starts_with("archive_")),
                "{st} {b}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "still busy: {b}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.stop().await;
}

/// An upload the gateway reads and refuses.
async fn not_an_archive(app: &TestApp, token: &str) -> (StatusCode, Value) {
    app.request_raw(
        reqwest::Method::POST,
        "/api/v1/ingress?project=p1&name=second",
        Some(token),
        b"not a tar".to_vec(),
    )
    .await
}

/// A connection on which the client is silent is closed within `server.idle_timeout_secs`:
/// one that never starts its handshake, one that completes it and sends nothing, one that
/// stops halfway through a body. One that sends half a head is closed within
/// `server.header_read_timeout_secs`. (HTTP only: one engine is enough.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_are_closed_on_time() {
    let idle = TestApp::spawn_with(Engine::Sqlite, |s| {
        s.server.idle_timeout_secs = 2;
        s.server.header_read_timeout_secs = 60;
    })
    .await;
    idle.project("p1", &[("ana", "analyst")]).await;
    let ana = idle.token("ana", "analyst");
    let config = client_config(&idle);
    let addr = TestAppAddr(idle.addr);
    let wait = Duration::from_secs(10);
    let within = Duration::from_millis(2000 + 1500);

    let (no_handshake, silent, half_body) = blocking(move || {
        let t0 = Instant::now();
        let mut raw = addr.tcp(wait);
        let no_handshake = ended(&mut raw, t0);

        let mut s = addr.connect(&config, wait).unwrap();
        let t0 = Instant::now();
        let silent = ended(&mut s, t0);

        let mut s = addr.connect(&config, wait).unwrap();
        let h = head(
            "POST",
            "/api/v1/applications",
            &ana,
            "Content-Length: 100\r\n",
        );
        s.write_all(h.as_bytes()).unwrap();
        s.write_all(br#"{"kind":"#).unwrap();
        s.flush().unwrap();
        let t0 = Instant::now();
        let half_body = ended(&mut s, t0);
        (no_handshake, silent, half_body)
    })
    .await;
    for (what, took) in [
        ("no handshake", no_handshake),
        ("nothing after the handshake", silent),
        ("half a body", half_body),
    ] {
        assert!(
            took.is_some_and(|t| t < within),
            "{what}: the connection was closed after {took:?}, not within {within:?}"
        );
    }
    idle.stop().await;

    let head_timeout = TestApp::spawn_with(Engine::Sqlite, |s| {
        s.server.idle_timeout_secs = 60;
        s.server.header_read_timeout_secs = 2;
    })
    .await;
    let config = client_config(&head_timeout);
    let addr = TestAppAddr(head_timeout.addr);
    let half_head = blocking(move || {
        let mut s = addr.connect(&config, wait).unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localh")
            .unwrap();
        s.flush().unwrap();
        let t0 = Instant::now();
        ended(&mut s, t0)
    })
    .await;
    assert!(
        half_head.is_some_and(|t| t < within),
        "half a head: the connection was closed after {half_head:?}, not within {within:?}"
    );
    head_timeout.stop().await;
}

/// Connections beyond `server.max_connections` are closed as they come while the earlier ones
/// are held (and keep working); one closed makes room for the next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_are_refused() {
    let app = TestApp::spawn_with(Engine::Sqlite, |s| s.server.max_connections = 4).await;
    let config = client_config(&app);
    let addr = TestAppAddr(app.addr);
    let wait = Duration::from_secs(5);
    blocking(move || {
        let mut held: Vec<Tls> = (0..4)
            .map(|_| addr.connect(&config, wait).unwrap())
            .collect();
        let t0 = Instant::now();
        let beyond = addr.connect(&config, wait);
        assert!(beyond.is_err(), "a fifth connection was accepted");
        assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
        // The held ones still serve.
        for s in &mut held {
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
                .unwrap();
            s.flush().unwrap();
            let (status, _) = read_response(s).unwrap();
            assert_eq!(status, 200);
        }
        let gone = held.pop().unwrap();
        gone.sock.shutdown(std::net::Shutdown::Both).unwrap();
        drop(gone);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match addr.connect(&config, wait) {
                Ok(_) => break,
                Err(e) => assert!(Instant::now() < deadline, "no room after one closed: {e}"),
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    })
    .await;
    app.stop().await;
}

/// A project's queue of runs is capped (`sandbox.max_queued_runs_per_project`, 32 by default):
/// the 33rd run waiting is refused 429 `queue_full`, and a cancelled one makes room. Meanwhile
/// a long poll and a quiet log being followed outlast the idle timeout: the gateway's own
/// silence is not the client's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projects_queue_of_runs_is_capped() {
    if !docker_available() {
        return;
    }
    for engine in engines() {
        let (app, ana, _data) = crate::sandbox::small_world_on(engine, |s| {
            s.sandbox.max_concurrent_runs = 1;
            s.sandbox.max_concurrent_runs_per_project = 1;
            s.server.idle_timeout_secs = 2;
        })
        .await;
        let sb = crate::sandbox::new_sandbox(&app, &ana).await;
        let running = crate::sandbox::start_run(&app, &ana, &sb, &["sleep", "60"], None).await;
        app.run_reaching(&ana, &running, "running").await;
        let mut queued = Vec::new();
        for _ in 0..32 {
            queued.push(crate::sandbox::start_run(&app, &ana, &sb, &["true"], None).await);
        }
        let runs = format!("/api/v1/sandboxes/{sb}/runs");
        let (st, b) = app.post(&runs, Some(&ana), &json!({"cmd": ["true"]})).await;
        assert_eq!(
            (st, b["code"].as_str()),
            (StatusCode::TOO_MANY_REQUESTS, Some("queue_full")),
            "{engine:?}: {b}"
        );

        // Waits longer than the idle timeout, answered in time, on a connection kept open.
        let t0 = Instant::now();
        let (st, r) = app
            .get(&format!("/api/v1/runs/{running}?wait=4"), Some(&ana))
            .await;
        assert_eq!(
            (st, r["state"].as_str()),
            (StatusCode::OK, Some("running")),
            "{r}"
        );
        assert!(t0.elapsed() >= Duration::from_secs(3), "{:?}", t0.elapsed());
        let mut follow = app
            .http
            .get(format!(
                "{}/api/v1/runs/{running}/logs?follow=true",
                app.url
            ))
            .bearer_auth(&ana)
            .send()
            .await
            .unwrap();
        assert_eq!(follow.status(), StatusCode::OK);
        let quiet = tokio::time::timeout(Duration::from_secs(4), follow.chunk()).await;
        assert!(
            quiet.is_err(),
            "the follow ended while the run ran: {quiet:?}"
        );

        // A cancelled run leaves the queue, and makes room for one more.
        let cancel = |id: &str| format!("/api/v1/runs/{id}/cancel");
        let (st, b) = app.post(&cancel(&queued[0]), Some(&ana), &json!({})).await;
        assert_eq!(st, StatusCode::ACCEPTED, "{b}");
        queued.push(crate::sandbox::start_run(&app, &ana, &sb, &["true"], None).await);
        let (st, _) = app.post(&runs, Some(&ana), &json!({"cmd": ["true"]})).await;
        assert_eq!(st, StatusCode::TOO_MANY_REQUESTS);

        for id in queued.iter().chain([&running]) {
            let (st, b) = app.post(&cancel(id), Some(&ana), &json!({})).await;
            assert_eq!(st, StatusCode::ACCEPTED, "{b}");
        }
        let r = app.run_reaching(&ana, &running, "finished").await;
        assert_eq!(r["outcome"], "cancelled", "{r}");
        drop(follow);
        app.stop().await;
    }
}

/// Authorization comes before the body: a caller whose roles allow a route's action on no
/// object (a reviewer applying, an analyst voting) is refused with only the request's head
/// sent, so no body of theirs is read or parsed at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_without_the_role_are_refused_before_their_body_is_read() {
    each_engine(|app| async move {
        app.project("p1", &[("ana", "analyst")]).await;
        let config = client_config(&app);
        let addr = TestAppAddr(app.addr);
        // Under the JSON limit, declared and never sent: only a refusal that does not wait for
        // the body can come back.
        for (path, who, role) in [
            ("/api/v1/applications", "rev", "reviewer"),
            ("/api/v1/applications/app-x/decisions", "ana", "analyst"),
            ("/api/v1/sandboxes/sbx-x/runs", "op", "operator"),
        ] {
            let (cfg, path_, token) = (config.clone(), path.to_owned(), app.token(who, role));
            let answer =
                blocking(move || addr.post(&cfg, &path_, &token, Sent::Declared(512 << 10))).await;
            let (status, body) = answer.unwrap_or_else(|e| panic!("{path} as {role}: {e}"));
            assert_eq!(
                (status, body["code"].as_str()),
                (403, Some("forbidden")),
                "{path} as {role}: {body}"
            );
        }
        app
    })
    .await;
}

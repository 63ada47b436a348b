//! Engines: a run across an engine restart, a remote engine over TLS with its quotas, containers kept ahead, and a run recorded alike on every database.

use super::*;

/// A Docker engine of the test's own (data, sockets and containerd apart from the shared one),
/// with live restore: it can be restarted without disturbing other tests. Stopped, and its
/// data removed, on drop.
pub(super) struct PrivateEngine {
    pub(super) dir: TempDir,
    child: Option<std::process::Child>,
    /// Its data root is a file system of its own mount namespace: this host cannot read its
    /// volumes, as if it ran on another machine.
    hidden: bool,
    /// Also listening on 127.0.0.1 at this port, with mutual TLS ([`engine_certs`]).
    pub(super) tcp: Option<u16>,
}

impl PrivateEngine {
    /// None where the tests do not run as root (unless `VRE_TEST_REQUIRE_ROOT=1`); a dockerd
    /// that does not start fails the test.
    fn start() -> Option<PrivateEngine> {
        Self::start_with(false)
    }

    /// One as on another machine: its volumes cannot be read from here
    /// ([`PrivateEngine::hidden`]) and it is reached over TCP with mutual TLS.
    pub(super) fn start_remote() -> Option<PrivateEngine> {
        Self::start_with(true)
    }

    fn start_with(hidden: bool) -> Option<PrivateEngine> {
        if !root_available("a test with a Docker engine of its own") {
            return None;
        }
        let mut e = PrivateEngine {
            dir: TempDir::new("engine"),
            child: None,
            hidden,
            tcp: None,
        };
        if hidden {
            engine_certs(&e.dir.path().join("tls"), "engine");
            let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            e.tcp = Some(free.local_addr().unwrap().port());
        }
        e.launch();
        // The test image, from the shared engine.
        let mut save = std::process::Command::new("docker")
            .args(["save", TEST_IMAGE])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let load = std::process::Command::new("docker")
            .args(["-H", &e.host(), "load"])
            .stdin(save.stdout.take().unwrap())
            .output()
            .unwrap();
        assert!(save.wait().unwrap().success());
        assert_success(&load);
        Some(e)
    }

    fn host(&self) -> String {
        format!("unix://{}", self.dir.path().join("docker.sock").display())
    }

    fn launch(&mut self) {
        let d = self.dir.path();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.join("dockerd.log"))
            .unwrap();
        let mut dockerd = if self.hidden {
            std::fs::create_dir_all(d.join("root")).unwrap();
            let mut c = std::process::Command::new("unshare");
            c.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
                .arg("mount -t tmpfs -o mode=0711 vre-hidden \"$0\" && exec dockerd \"$@\"")
                .arg(d.join("root"));
            c
        } else {
            std::process::Command::new("dockerd")
        };
        let child = dockerd
            .arg("--data-root")
            .arg(d.join("root"))
            .arg("--exec-root")
            .arg(d.join("exec"))
            .arg("--pidfile")
            .arg(d.join("dockerd.pid"))
            .args(["-H", &self.host()])
            .args([
                "--containerd-namespace",
                "vre-test",
                "--containerd-plugins-namespace",
                "vre-test-plugins",
            ])
            .args([
                "--bridge=none",
                "--iptables=false",
                "--ip-forward=false",
                "--ip-masq=false",
            ])
            .args(["--live-restore", "--log-level=warn"])
            // gVisor as on the shared engine, where it is installed.
            .args(std::path::Path::new("/usr/bin/runsc").exists().then(|| {
                format!(
                    "--add-runtime=runsc={}/../deploy/docker/runsc",
                    env!("CARGO_MANIFEST_DIR")
                )
            }))
            .args(self.tcp.iter().flat_map(|port| {
                let tls = d.join("tls");
                [
                    "-H".to_owned(),
                    format!("tcp://127.0.0.1:{port}"),
                    "--tlsverify".to_owned(),
                    format!("--tlscacert={}", tls.join("ca.pem").display()),
                    format!("--tlscert={}", tls.join("server-cert.pem").display()),
                    format!("--tlskey={}", tls.join("server-key.pem").display()),
                ]
            }))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("dockerd runs");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !std::process::Command::new("docker")
            .args(["-H", &self.host(), "info"])
            .output()
            .is_ok_and(|o| o.status.success())
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the test's engine did not start: {}",
                std::fs::read_to_string(d.join("dockerd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the engine (SIGTERM, as an operator's restart does); live restore keeps its
    /// containers running.
    fn halt(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = std::process::Command::new("kill")
                .arg(c.id().to_string())
                .status();
            let _ = c.wait();
        }
    }
}

/// A CA of its own (`ca.pem`), a certificate for 127.0.0.1 (`server-*.pem`) and a client's
/// (`client-*.pem`), all signed by it, in `dir`.
pub(super) fn engine_certs(dir: &std::path::Path, name: &str) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    std::fs::create_dir_all(dir).unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.distinguished_name
        .push(DnType::CommonName, format!("{name} CA"));
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    let issuer = Issuer::new(ca, &ca_key);
    for (who, sans, usage) in [
        (
            "server",
            vec!["127.0.0.1".to_owned()],
            ExtendedKeyUsagePurpose::ServerAuth,
        ),
        ("client", Vec::new(), ExtendedKeyUsagePurpose::ClientAuth),
    ] {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(sans).unwrap();
        p.extended_key_usages = vec![usage];
        p.distinguished_name
            .push(DnType::CommonName, format!("{name} {who}"));
        let cert = p.signed_by(&key, &issuer).unwrap();
        std::fs::write(dir.join(format!("{who}-cert.pem")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{who}-key.pem")), key.serialize_pem()).unwrap();
    }
}

impl Drop for PrivateEngine {
    fn drop(&mut self) {
        if self.child.is_none() {
            self.launch();
        }
        let h = self.host();
        let ids = std::process::Command::new("docker")
            .args(["-H", &h, "ps", "-aq"])
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .split_whitespace()
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        if !ids.is_empty() {
            let _ = std::process::Command::new("docker")
                .args(["-H", &h, "rm", "-f"])
                .args(&ids)
                .output();
        }
        self.halt();
        // What the engine mounted under its root, then the rest.
        let _ = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "grep -o ' {0}[^ ]*' /proc/mounts | sort -r | xargs -r -n1 umount -l",
                self.dir.path().display()
            ))
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
pub(super) async fn a_run_goes_on_and_keeps_all_its_output_across_an_engine_restart() {
    if !docker_available() {
        return;
    }
    let Some(mut engine) = PrivateEngine::start() else {
        return;
    };
    let host = engine.host();
    let (app, ana, _data) = small_world(|s| s.sandbox.docker_host = host).await;
    let sb = new_sandbox(&app, &ana).await;
    // A first run, so that a container is started ahead before the restart too.
    let (r, _) = run(&app, &ana, &sb, &["true"], None).await;
    assert_eq!(r["exit_code"], 0, "{r}");
    let _ = ready_ahead(&app, &sb).await;

    let script = "for i in $(seq 1 25); do echo out-$i; echo err-$i >&2; sleep 0.2; done";
    let id = start_run(&app, &ana, &sb, &["sh", "-c", script], None).await;
    // Once it is well under way, the engine restarts.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let log = tokio::fs::read_to_string(app.state.sandboxes.log_path(&id))
            .await
            .unwrap_or_default();
        if log.contains("out-3\n") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no output: {log:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::task::block_in_place(|| {
        engine.halt();
        std::thread::sleep(Duration::from_secs(1));
        engine.launch();
    });
    let done = app.run_reaching(&ana, &id, "finished").await;
    assert_eq!(
        (done["outcome"].as_str(), done["exit_code"].as_i64()),
        (Some("exited"), Some(0)),
        "{done}"
    );
    let log = text_of(
        app.http
            .get(format!("{}/api/v1/runs/{id}/logs", app.url))
            .bearer_auth(&ana),
    )
    .await;
    // Every line once, each stream in its order.
    for stream in ["out", "err"] {
        let lines: Vec<&str> = log.lines().filter(|l| l.starts_with(stream)).collect();
        let want: Vec<String> = (1..=25).map(|i| format!("{stream}-{i}")).collect();
        assert_eq!(lines, want, "{log}");
    }
    assert_eq!(log.lines().count(), 50, "{log}");

    // The container started ahead did not live through the restart: the next run makes its
    // own and succeeds.
    let (r, log) = run(&app, &ana, &sb, &["echo", "after"], None).await;
    assert_eq!(
        (r["exit_code"].as_i64(), log.as_str()),
        (Some(0), "after\n"),
        "{r}"
    );
    assert!(app.verify_audit().await.problem.is_none());
    app.stop().await;
    drop(engine);
}

/// A run that takes `block` of memory at once is reported as killed for memory.
pub(super) async fn oom_killed(app: &TestApp, ana: &str, sb: &str, block: &str) {
    let bs = format!("bs={block}");
    let hog = ["dd", "if=/dev/zero", "of=/dev/null", bs.as_str(), "count=1"];
    let (r, _) = run(app, ana, sb, &hog, None).await;
    assert_eq!(
        (r["outcome"].as_str(), r["exit_code"].as_i64()),
        (Some("oom_killed"), Some(137)),
        "{r}"
    );
}

/// Fills the output folder past the tiny class's quota twice: quickly (the run exits before
/// the next measurement, so it is measured once more at its end) and slowly, into a folder the
/// run made unreadable (through a descriptor opened before). Both are stopped and reported;
/// the folder is emptied after.
pub(super) async fn past_the_quota(app: &TestApp, ana: &str, sb: &str) {
    let quick = [
        "dd",
        "if=/dev/zero",
        "of=/vre/output/big",
        "bs=1M",
        "count=20",
    ];
    let (r, _) = run(app, ana, sb, &quick, None).await;
    assert_eq!(r["outcome"], "output_quota_exceeded", "{r}");
    let slow = "rm -f /vre/output/big; mkdir /vre/output/d; exec 3>>/vre/output/d/slow; chmod 0 /vre/output/d; \
                while true; do head -c 65536 /dev/zero >&3; sleep 0.1; done";
    let (r, _) = run(app, ana, sb, &["sh", "-c", slow], Some(30)).await;
    assert_eq!(r["outcome"], "output_quota_exceeded", "{r}");
    let empty =
        "chmod 700 /vre/output/d && rm -rf /vre/output/* && [ -z \"$(ls -A /vre/output)\" ]";
    let (r, _) = run(app, ana, sb, &["sh", "-c", empty], None).await;
    assert_eq!(r["exit_code"], 0, "{r}");
}

/// An engine as on another machine: reached over TCP with mutual TLS, its volumes unreadable
/// from the gateway's host. Runs work as on the local engine, and the output quota still holds,
/// measured on the engine's side, also over a folder the sandbox made unreadable. A client the
/// engine does not trust, or an engine the gateway does not, gets nowhere and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
pub(super) async fn a_remote_engine_over_tls_runs_sandboxes_and_keeps_their_quota() {
    if !docker_available() {
        return;
    }
    let Some(engine) = PrivateEngine::start_remote() else {
        return;
    };
    let host = engine.host();
    let tcp = format!("tcp://127.0.0.1:{}", engine.tcp.unwrap());
    let tls = engine.dir.path().join("tls");
    let remote = |s: &mut gateway::config::Settings, certs: &std::path::Path| {
        s.sandbox.docker_host = tcp.clone();
        s.sandbox.docker_tls_ca = Some(tls.join("ca.pem"));
        s.sandbox.docker_tls_cert = Some(certs.join("client-cert.pem"));
        s.sandbox.docker_tls_key = Some(certs.join("client-key.pem"));
    };

    // Certificates of another CA: the engine refuses the client, and the client the engine.
    let stranger = TempDir::new("stranger");
    engine_certs(stranger.path(), "stranger");
    let refusals = [
        // Refused in the handshake; how the client learns it depends on when it sent.
        (tls.clone(), stranger.path(), ""),
        (
            stranger.path().to_path_buf(),
            tls.as_path(),
            "invalid peer certificate: UnknownIssuer",
        ),
    ];
    for (ca, client, why) in refusals {
        let app = TestApp::spawn_with(Engine::Sqlite, |s| {
            remote(s, client);
            s.sandbox.docker_tls_ca = Some(ca.join("ca.pem"));
        })
        .await;
        let message = engine_unavailable(&app).await;
        assert!(message.contains(why), "{message}");
        app.stop().await;
    }

    let (app, ana, _data) = small_world(|s| remote(s, &tls)).await;
    let sb = new_sandbox(&app, &ana).await;
    let inspect = std::process::Command::new("docker")
        .args(["-H", &host, "volume", "inspect", "-f", "{{.Mountpoint}}"])
        .arg(format!("vre-{sb}-output"))
        .output()
        .unwrap();
    let mountpoint = String::from_utf8_lossy(&inspect.stdout).trim().to_owned();
    assert!(
        inspect.status.success() && !mountpoint.is_empty(),
        "{inspect:?}"
    );
    assert!(
        std::fs::read_dir(&mountpoint).is_err(),
        "{mountpoint} is readable here"
    );

    // Under the quota: the run ends as it would.
    let (r, log) = run(
        &app,
        &ana,
        &sb,
        &["sh", "-c", "echo kept > /vre/output/a && cat /vre/output/a"],
        None,
    )
    .await;
    assert_eq!(
        (r["outcome"].as_str(), log.as_str()),
        (Some("exited"), "kept\n"),
        "{r}"
    );
    past_the_quota(&app, &ana, &sb).await;

    app.stop().await;
    // No measuring container is left behind.
    let ps = std::process::Command::new("docker")
        .args(["-H", &host, "ps", "-aq"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&ps.stdout).trim(),
        "",
        "containers left"
    );
    drop(engine);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
pub(super) async fn only_the_sandboxes_used_last_keep_a_container_ahead() {
    if !docker_available() {
        return;
    }
    let (app, ana, _data) = small_world(|s| s.sandbox.standby_containers = 1).await;
    let (a, b) = (
        &new_sandbox(&app, &ana).await,
        &new_sandbox(&app, &ana).await,
    );
    // The second sandbox made took the one place: the first's container is removed.
    let b_ahead = ready_ahead(&app, b).await;
    let held: Vec<String> = started_ahead(&app)
        .await
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(held, vec![b.clone()]);
    // A run in the first makes its own container, and takes the place back.
    let (r, _) = run(&app, &ana, a, &["true"], None).await;
    assert_eq!(r["exit_code"], 0, "{r}");
    let _ = ready_ahead(&app, a).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while app.state.sandboxes.backend.state(&b_ahead).await.unwrap()
        != sandbox_runner::RunState::Missing
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the evicted container stays"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let held: Vec<String> = started_ahead(&app)
        .await
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(held, vec![a.clone()]);
    // The other sandbox's runs still work, in containers made for them.
    let (r, log) = run(&app, &ana, b, &["echo", "made"], None).await;
    assert_eq!((r["exit_code"].as_i64(), log.as_str()), (Some(0), "made\n"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
pub(super) async fn a_run_is_recorded_alike_on_every_database() {
    if !docker_available() {
        return;
    }
    for engine in crate::support::engines() {
        let (app, ana, _data) = small_world_on(engine, |_| {}).await;
        let sb = new_sandbox(&app, &ana).await;
        let script = "echo out; echo err >&2; exit 4";
        let (r, log) = run(&app, &ana, &sb, &["sh", "-c", script], None).await;
        let id = r["id"].as_str().unwrap().to_owned();
        assert_eq!(
            (r["outcome"].as_str(), r["exit_code"].as_i64()),
            (Some("exited"), Some(4)),
            "{engine:?}: {r}"
        );
        assert_eq!(
            log.lines().collect::<std::collections::BTreeSet<_>>(),
            ["err", "out"].into()
        );
        assert_eq!(r["log_sha256"], gateway::sha256_hex(log.as_bytes()));
        // Both recorded, and in order.
        let at = |k: &str| {
            let t = r[k].as_str().unwrap_or_else(|| panic!("no {k}: {r}"));
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                .unwrap_or_else(|e| panic!("{k} {t:?}: {e}"))
        };
        assert!(at("started_at") <= at("finished_at"), "{engine:?}: {r}");
        let (st, runs) = app
            .get(&format!("/api/v1/sandboxes/{sb}/runs"), Some(&ana))
            .await;
        assert_eq!(st, StatusCode::OK, "{runs}");
        assert!(
            runs.as_array()
                .unwrap()
                .iter()
                .any(|x| x["id"] == id.as_str()),
            "{runs}"
        );
        // The audit log tells the run's story: asked for, started (in which container, and
        // whether it was started ahead), finished with its outcome and the log's digest, and
        // its output read by its analyst (above).
        let events = app.audit_events(&id).await;
        assert_eq!(
            actions(&events)[1..],
            ["run.start", "run.finish", "run.logs_read"],
            "{engine:?}: {events:?}"
        );
        let detail = |i: usize| -> Value {
            serde_json::from_str(events[i]["detail"].as_str().unwrap()).unwrap()
        };
        let start = detail(1);
        assert_eq!(start["started_ahead"], true, "{start}");
        assert!(
            start["container"].as_str().is_some_and(|c| !c.is_empty()),
            "{start}"
        );
        assert_eq!(detail(2)["log_sha256"], r["log_sha256"]);
        assert!(app.verify_audit().await.problem.is_none());
        app.stop().await;
    }
}

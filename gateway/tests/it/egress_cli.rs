//! The `vre` client's egress commands end to end, the real binary against a test gateway:
//! `vre keys init` (the identity kept in the config folder, mode 0600, its recipient
//! registered; run again, the same identity), `vre egress request` (a receipt, and a refusal
//! with its code), `vre app show` and `vre egress preview` as a reviewer, votes with
//! `vre app approve`, and `vre release download`; then the raw package opened with the standard
//! tools (Debian's `age`, GNU `tar --zstd`, `sha256sum -c`) and its metadata loaded with the
//! `rocrate` Python package (`VRE_TEST_ROCRATE_PYTHON`, which `deploy/dev/test.sh` sets).
//!
//! A missing tool skips its part with a note, unless `VRE_TEST_REQUIRE_TOOLS=1` (as
//! `deploy/dev/test.sh` sets): then it fails.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::sandbox::{small_world_on, start_run};
use crate::support::{Engine, TempDir, TestApp, docker_available, vre_command};

/// Runs `vre ARGS` as the holder of `token` against `app`, with `config` as its
/// `XDG_CONFIG_HOME`, on a blocking thread (the gateway answers on this runtime).
async fn vre(app: &TestApp, token: &str, config: &Path, args: &[&str]) -> Output {
    let mut c = vre_command();
    c.args(args)
        .env("VRE_URL", &app.url)
        .env("VRE_TOKEN", token)
        .env("VRE_CA", app.dir.path().join("tls/ca.pem"))
        .env("XDG_CONFIG_HOME", config);
    tokio::task::spawn_blocking(move || c.output().expect("running vre"))
        .await
        .unwrap()
}

/// `vre ARGS`, which must succeed; its standard output.
async fn vre_ok(app: &TestApp, token: &str, config: &Path, args: &[&str]) -> String {
    let out = vre(app, token, config, args).await;
    assert!(
        out.status.success(),
        "vre {args:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn tools_required() -> bool {
    std::env::var("VRE_TEST_REQUIRE_TOOLS").as_deref() == Ok("1")
}

/// Whether `program` runs; a note, or a failure under `VRE_TEST_REQUIRE_TOOLS=1`, when not.
fn have(program: &str) -> bool {
    let runs = ["--version", "--help"].iter().any(|arg| {
        Command::new(program)
            .arg(arg)
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if !runs {
        assert!(
            !tools_required(),
            "`{program}` is not installed and VRE_TEST_REQUIRE_TOOLS=1"
        );
        eprintln!("note: `{program}` is not installed: its part of the test is skipped");
    }
    runs
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Waits until the application is released (the builder works in the background).
async fn released(app: &TestApp, id: &str) -> Value {
    let rev = app.token("rev-watch", "reviewer");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (st, b) = app
            .get(&format!("/api/v1/applications/{id}/egress"), Some(&rev))
            .await;
        assert_eq!(st, StatusCode::OK, "{b}");
        if b["application"]["state"] == "released" {
            return b;
        }
        assert!(Instant::now() < deadline, "{id} was never released: {b}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const COUNTS: &[u8] = b"group,count\nA,25\nB,40\n";
const SITES: &[u8] = b"site,n\nX,31\nY,12\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_requests_reviews_and_downloads_a_release_that_standard_tools_open() {
    if !docker_available() {
        return;
    }
    let started = Instant::now();
    let (app, ana, _data) = small_world_on(Engine::Sqlite, |_| {}).await;
    let tmp = TempDir::new("egress-cli");
    let config = tmp.path().join("config");

    // An identity in the config folder, readable by its owner only, its recipient registered.
    let said: Value =
        serde_json::from_str(&vre_ok(&app, &ana, &config, &["keys", "init", "--json"]).await)
            .unwrap();
    let identity = PathBuf::from(said["identity"].as_str().unwrap());
    assert_eq!(identity, config.join("vre/identity.txt"));
    let recipient = said["recipient"].as_str().unwrap().to_owned();
    assert!(recipient.starts_with("age1"), "{said}");
    let mode = std::fs::metadata(&identity).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    let key_text = std::fs::read_to_string(&identity).unwrap();
    assert!(key_text.contains("AGE-SECRET-KEY-1"));
    let (st, b) = app.get("/api/v1/keys/me", Some(&ana)).await;
    assert_eq!((st, &b["recipient"]), (StatusCode::OK, &json!(recipient)));
    // Again: the same identity, registered again, replacing nothing.
    let again: Value =
        serde_json::from_str(&vre_ok(&app, &ana, &config, &["keys", "init", "--json"]).await)
            .unwrap();
    assert_eq!(again["recipient"], json!(recipient), "{again}");
    assert_eq!(again["replaced"], Value::Null, "{again}");
    assert_eq!(std::fs::read_to_string(&identity).unwrap(), key_text);

    let sandbox = app.new_sandbox(&ana, "p1").await;
    let script = "cd /vre/output && printf 'group,count\\nA,25\\nB,40\\n' > counts.csv \
        && mkdir -p tables && printf 'site,n\\nX,31\\nY,12\\n' > tables/sites.csv \
        && printf 'group,count\\nA,3\\nB,40\\n' > small.csv";
    let writer = start_run(&app, &ana, &sandbox, &["sh", "-c", script], Some(30)).await;
    let done = app.run_reaching(&ana, &writer, "finished").await;
    assert_eq!(done["exit_code"], 0, "{done}");

    // A request prints its id.
    let receipt: Value = serde_json::from_str(
        &vre_ok(
            &app,
            &ana,
            &config,
            &[
                "egress",
                "request",
                &sandbox,
                "counts.csv",
                "tables",
                "--justification",
                "aggregates for the paper",
                "--json",
            ],
        )
        .await,
    )
    .unwrap();
    let id = receipt["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("app-"), "{receipt}");
    let files: Vec<(String, String)> = receipt["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_owned(),
                f["sha256"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        files,
        [
            ("counts.csv".to_owned(), gateway::sha256_hex(COUNTS)),
            ("tables/sites.csv".to_owned(), gateway::sha256_hex(SITES)),
        ]
    );
    // A file that fails a check, without an exception, is refused with the code.
    let out = vre(
        &app,
        &ana,
        &config,
        &[
            "egress",
            "request",
            &sandbox,
            "small.csv",
            "--justification",
            "small counts",
        ],
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("disclosure_check_failed"), "{stderr}");
    assert!(stderr.contains("small.csv"), "{stderr}");
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // A reviewer sees the files, their digests and outcomes, and previews one.
    let rev1 = app.token("rev1", "reviewer");
    let shown = vre_ok(&app, &rev1, &config, &["app", "show", &id]).await;
    for (path, sha) in &files {
        let line = shown
            .lines()
            .find(|l| l.ends_with(&format!("{path} (csv)")))
            .unwrap_or_else(|| panic!("{path} is not listed:\n{shown}"));
        assert!(line.contains(sha.as_str()), "{line}");
        assert!(line.trim_start().starts_with("PASS"), "{line}");
    }
    let preview = vre_ok(
        &app,
        &rev1,
        &config,
        &["egress", "preview", &id, "counts.csv"],
    )
    .await;
    assert!(preview.contains("A | 25"), "{preview}");
    // The requester previews nothing.
    let out = vre(
        &app,
        &ana,
        &config,
        &["egress", "preview", &id, "counts.csv"],
    )
    .await;
    assert!(!out.status.success());

    for reviewer in [&rev1, &app.token("rev2", "reviewer")] {
        vre_ok(
            &app,
            reviewer,
            &config,
            &["app", "approve", &id, "--comment", "aggregates only"],
        )
        .await;
    }
    let detail = released(&app, &id).await;
    let package_sha = detail["release"]["package_sha256"]
        .as_str()
        .unwrap()
        .to_owned();

    // A folder that is not empty is refused before anything is downloaded.
    let full = tmp.path().join("full");
    std::fs::create_dir(&full).unwrap();
    std::fs::write(full.join("old.txt"), b"x").unwrap();
    let out = vre(
        &app,
        &ana,
        &config,
        &[
            "release",
            "download",
            &id,
            "--identity",
            identity.to_str().unwrap(),
            "-o",
            full.to_str().unwrap(),
        ],
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("is not empty"), "{stderr}");
    let (_, d) = app
        .get(
            &format!("/api/v1/applications/{id}/egress"),
            Some(&app.token("rev-watch", "reviewer")),
        )
        .await;
    assert_eq!(d["release"]["downloads"], 0, "{d}");

    // The requester downloads, decrypts, unpacks and verifies it.
    let dest = tmp.path().join("release");
    let said: Value = serde_json::from_str(
        &vre_ok(
            &app,
            &ana,
            &config,
            &[
                "release",
                "download",
                &id,
                "--identity",
                identity.to_str().unwrap(),
                "-o",
                dest.to_str().unwrap(),
                "--json",
            ],
        )
        .await,
    )
    .unwrap();
    assert_eq!(said["package_sha256"], json!(package_sha), "{said}");
    assert_eq!(
        std::fs::read(dest.join("files/counts.csv")).unwrap(),
        COUNTS
    );
    assert_eq!(
        std::fs::read(dest.join("files/tables/sites.csv")).unwrap(),
        SITES
    );
    assert!(dest.join("SHA256SUMS").is_file());
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".part"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // The raw package, with the standard tools.
    let resp = app
        .http
        .get(format!("{}/api/v1/applications/{id}/release", app.url))
        .bearer_auth(&ana)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let package = tmp.path().join("p.tar.zst.age");
    std::fs::write(&package, resp.bytes().await.unwrap()).unwrap();
    assert_eq!(
        gateway::sha256_hex(&std::fs::read(&package).unwrap()),
        package_sha
    );
    let unpacked = tmp.path().join("unpacked");
    std::fs::create_dir(&unpacked).unwrap();
    if have("age") && have("zstd") && have("tar") && have("sha256sum") {
        let plain = tmp.path().join("p.tar.zst");
        run(Command::new("age")
            .arg("-d")
            .arg("-i")
            .arg(&identity)
            .arg("-o")
            .arg(&plain)
            .arg(&package));
        run(Command::new("tar")
            .arg("--zstd")
            .arg("-xf")
            .arg(&plain)
            .arg("-C")
            .arg(&unpacked));
        let check = run(Command::new("sha256sum")
            .args(["--strict", "-c", "SHA256SUMS"])
            .current_dir(&unpacked));
        let said = String::from_utf8_lossy(&check.stdout);
        let ok: Vec<&str> = said.lines().filter(|l| l.ends_with(": OK")).collect();
        assert_eq!(
            ok,
            ["files/counts.csv: OK", "files/tables/sites.csv: OK"],
            "{said}"
        );
    } else {
        gateway::release::open(std::fs::File::open(&package).unwrap(), &key_text, &unpacked)
            .unwrap();
    }

    match std::env::var_os("VRE_TEST_ROCRATE_PYTHON") {
        Some(python) => {
            let script = r#"
import json, sys
from urllib.parse import unquote
from rocrate.rocrate import ROCrate
crate = ROCrate(sys.argv[1])
print(json.dumps(sorted([unquote(e.id), str(e.type)] for e in crate.data_entities)))
"#;
            let out = run(Command::new(python).arg("-c").arg(script).arg(&unpacked));
            let entities: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
                panic!("{e}: {}", String::from_utf8_lossy(&out.stdout));
            });
            assert_eq!(
                entities,
                json!([
                    ["SHA256SUMS", "File"],
                    ["files/counts.csv", "File"],
                    ["files/tables/sites.csv", "File"]
                ])
            );
        }
        None => {
            assert!(
                !tools_required(),
                "VRE_TEST_ROCRATE_PYTHON is not set and VRE_TEST_REQUIRE_TOOLS=1"
            );
            eprintln!(
                "note: VRE_TEST_ROCRATE_PYTHON (a Python with `rocrate`) is not set: the \
                 metadata is not loaded (deploy/dev/test.sh makes one)"
            );
        }
    }
    app.stop().await;
    eprintln!("egress_cli: {:?}", started.elapsed());
}

//! Copying chosen files out of a sandbox's output folder on the real engine
//! (`SandboxBackend::download_output`) and into quarantine (`gateway::egress::quarantine`):
//! entries named relative to /vre/output, content byte-exact, links and fifos kept as entries
//! (and refused by quarantine), paths that are not the folder's refused before any container is
//! made, a missing path named, downloads of one sandbox at once, and the request's helper
//! container gone however the stream ends.

use std::io::Read;
use std::time::Duration;

use futures_util::StreamExt;
use gateway::egress::quarantine::{Inspect, Limits, QuarantineError, Refused, quarantine};
use sandbox_runner::{ByteStream, SandboxSpec};

use crate::sandbox::{new_sandbox, small_world_on, start_run};
use crate::support::{Engine, TestApp, docker_available};

/// The output a run leaves: nested folders, a name past 100 bytes, a symbolic link, a hard
/// link, a fifo, a link to a folder, binary content.
const FILL: &str = "cd /vre/output && mkdir -p tables/nested/deeper && \
    printf 'id,n\\n1,2\\n' > tables/counts.csv && \
    seq 1 30000 > tables/nested/deeper/seq.txt && \
    printf '\\000\\001\\377\\n' > tables/nested/bin.dat && \
    n=$(head -c 120 /dev/zero | tr '\\0' n) && printf 'long name\\n' > tables/nested/$n.txt && \
    ln -s counts.csv tables/link && ln tables/counts.csv tables/hard && mkfifo tables/fifo && \
    printf top > top.txt && ln -s tables linkdir";

fn long_name() -> String {
    format!("tables/nested/{}.txt", "n".repeat(120))
}

fn seq() -> Vec<u8> {
    (1..=30000)
        .map(|i| format!("{i}\n"))
        .collect::<String>()
        .into_bytes()
}

/// (path, type, link target, content) of every entry.
fn entries(tar: &[u8]) -> Vec<(String, tar::EntryType, String, Vec<u8>)> {
    let mut a = tar::Archive::new(tar);
    a.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let path = String::from_utf8(e.path_bytes().into_owned()).unwrap();
            let kind = e.header().entry_type();
            let link = e
                .link_name_bytes()
                .map(|l| String::from_utf8(l.into_owned()).unwrap())
                .unwrap_or_default();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            (path, kind, link, data)
        })
        .collect()
}

async fn read_all(mut s: ByteStream) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(c) = s.next().await {
        out.extend_from_slice(&c?);
    }
    Ok(out)
}

/// The first item of a stream that must fail at once, and that nothing follows it.
async fn first_error(mut s: ByteStream) -> std::io::Error {
    let e = match s.next().await {
        Some(Err(e)) => e,
        Some(Ok(b)) => panic!("{} bytes instead of an error", b.len()),
        None => panic!("an empty stream instead of an error"),
    };
    assert!(s.next().await.is_none(), "nothing follows the error");
    e
}

fn paths(ps: &[&str]) -> Vec<String> {
    ps.iter().map(|p| p.to_string()).collect()
}

/// The egress helpers of this gateway on the engine.
async fn helpers(app: &TestApp) -> Vec<String> {
    app.state
        .sandboxes
        .backend
        .list_containers()
        .await
        .unwrap()
        .into_iter()
        .flat_map(|c| c.names)
        .filter(|n| n.starts_with("vre-egress-"))
        .collect()
}

/// Waits (at most 5 s) until no egress helper is left.
async fn no_helper_left(app: &TestApp, after: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let left = helpers(app).await;
        if left.is_empty() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "egress helpers left after {after}: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The names of the containers the engine created from `since` (a Unix time) to now.
fn created_since(since: u64) -> Vec<String> {
    let until = unix_now() + 1;
    let out = std::process::Command::new("docker")
        .args([
            "events",
            "--since",
            &since.to_string(),
            "--until",
            &until.to_string(),
        ])
        .args(["--filter", "type=container", "--filter", "event=create"])
        .args(["--format", "{{.Actor.Attributes.name}}"])
        .output()
        .expect("docker events runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

struct Hashed(sha2::Sha256);

impl Inspect for Hashed {
    type Report = String;
    fn update(&mut self, chunk: &[u8]) {
        sha2::Digest::update(&mut self.0, chunk);
    }
    fn finish(self, _size: u64) -> String {
        hex::encode(sha2::Digest::finalize(self.0))
    }
}

fn hashed(_: &str) -> Hashed {
    Hashed(<sha2::Sha256 as sha2::Digest>::new())
}

const LIMITS: Limits = Limits {
    max_files: 100,
    max_file_bytes: 1 << 20,
    max_total_bytes: 1 << 21,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chosen_files_leave_the_output_folder_named_and_whole() {
    if !docker_available() {
        return;
    }
    let (app, ana, _data) = small_world_on(Engine::Sqlite, |_| {}).await;
    let sb = new_sandbox(&app, &ana).await;
    let run = start_run(&app, &ana, &sb, &["sh", "-c", FILL], None).await;
    let done = app.run_reaching(&ana, &run, "finished").await;
    assert_eq!(
        (done["outcome"].as_str(), done["exit_code"].as_i64()),
        (Some("exited"), Some(0)),
        "{done}"
    );
    let spec: SandboxSpec = {
        let mut conn = app.state.db.pool().acquire().await.unwrap();
        let row = gateway::store::sandboxes::sandbox(&mut conn, &sb)
            .await
            .unwrap()
            .unwrap();
        gateway::sandboxes::spec_of(&app.state, &mut conn, &row)
            .await
            .unwrap()
    };
    let start = unix_now();
    let backend = app.state.sandboxes.backend.clone();
    let download = |request: &str, ps: &[&str]| backend.download_output(&spec, request, &paths(ps));

    // Folders and files, named relative to the output folder, byte-exact; the inner path and
    // the duplicate are read once.
    let tar = read_all(download(
        "r1",
        &[
            "tables/nested",
            "top.txt",
            "./tables//nested/bin.dat",
            "top.txt",
        ],
    ))
    .await
    .unwrap();
    let got = entries(&tar);
    let listed: Vec<(&str, tar::EntryType)> =
        got.iter().map(|(p, k, _, _)| (p.as_str(), *k)).collect();
    let long = long_name();
    assert_eq!(
        listed,
        [
            ("tables/nested/", tar::EntryType::Directory),
            ("tables/nested/bin.dat", tar::EntryType::Regular),
            ("tables/nested/deeper/", tar::EntryType::Directory),
            ("tables/nested/deeper/seq.txt", tar::EntryType::Regular),
            (long.as_str(), tar::EntryType::Regular),
            ("top.txt", tar::EntryType::Regular),
        ]
    );
    assert_eq!(got[1].3, b"\x00\x01\xff\n");
    assert!(got[3].3 == seq(), "seq.txt is byte-exact");
    assert_eq!(got[4].3, b"long name\n");
    assert_eq!(got[5].3, b"top");
    no_helper_left(&app, "a download read to its end").await;

    // Links and fifos are entries as they are, never followed; quarantine refuses each.
    let tar = read_all(download("r2", &["tables"])).await.unwrap();
    let got = entries(&tar);
    let find = |p: &str| {
        got.iter()
            .find(|e| e.0 == p)
            .unwrap_or_else(|| panic!("no {p}"))
    };
    assert_eq!(find("tables/link").1, tar::EntryType::Symlink);
    assert_eq!(find("tables/link").2, "counts.csv");
    assert_eq!(find("tables/hard").1, tar::EntryType::Link);
    assert_eq!(find("tables/hard").2, "tables/counts.csv");
    assert_eq!(find("tables/fifo").1, tar::EntryType::Fifo);
    assert_eq!(find(&long).3, b"long name\n");
    let refused = quarantine(
        download("r3", &["tables", "top.txt"]),
        &app.state.blobs,
        &LIMITS,
        0,
        None,
        hashed,
    )
    .await;
    let Err(QuarantineError::Refused(refused)) = refused else {
        panic!("not refused: {:?}", refused.err());
    };
    let mut refused: Vec<_> = refused
        .into_iter()
        .map(|r| match r {
            Refused::NotRegular { path, kind } => (path, kind),
            other => panic!("{other}"),
        })
        .collect();
    refused.sort();
    assert_eq!(
        refused,
        [
            ("tables/fifo".to_owned(), "fifo"),
            ("tables/hard".to_owned(), "hard link"),
            ("tables/link".to_owned(), "symbolic link"),
        ]
    );
    // A symbolic link named itself is an entry too.
    let got = entries(&read_all(download("r4", &["linkdir"])).await.unwrap());
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].0.as_str(), got[0].1, got[0].2.as_str()),
        ("linkdir", tar::EntryType::Symlink, "tables")
    );

    // Regular files alone go into quarantine, hashed on the way.
    let (files, _payload) = quarantine(
        download("r5", &["tables/nested", "top.txt", "tables/counts.csv"]),
        &app.state.blobs,
        &LIMITS,
        0,
        None,
        hashed,
    )
    .await
    .unwrap();
    let want: Vec<(String, Vec<u8>)> = vec![
        ("tables/counts.csv".into(), b"id,n\n1,2\n".to_vec()),
        ("tables/nested/bin.dat".into(), b"\x00\x01\xff\n".to_vec()),
        ("tables/nested/deeper/seq.txt".into(), seq()),
        (long.clone(), b"long name\n".to_vec()),
        ("top.txt".into(), b"top".to_vec()),
    ];
    assert_eq!(files.len(), want.len());
    for (q, (path, content)) in files.iter().zip(&want) {
        let sha = gateway::sha256_hex(content);
        assert_eq!(
            (&q.path, q.size, &q.sha256, &q.report),
            (path, content.len() as u64, &sha, &sha)
        );
    }
    drop(files);

    // Paths that are not the folder's: refused before any container is made (the engine's
    // events say none was created, not even for a moment).
    let since = unix_now();
    for bad in [
        "../sibling",
        "/etc/passwd",
        "tables/../../x",
        "a\\b",
        "",
        ".",
    ] {
        let e = first_error(download("bad", &[bad])).await;
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{bad:?}: {e}");
        assert!(
            matches!(
                e.get_ref()
                    .and_then(|e| e.downcast_ref::<sandbox_runner::Error>()),
                Some(sandbox_runner::Error::InvalidPath(_))
            ),
            "{bad:?}: {e:?}"
        );
        assert!(helpers(&app).await.is_empty(), "{bad:?} made a container");
    }
    let e = first_error(download("bad", &["tables", "../x"])).await;
    assert!(e.to_string().contains("`../x`"), "{e}");
    assert!(helpers(&app).await.is_empty());
    let made = created_since(since);
    assert!(
        !made.contains(&format!("vre-egress-{sb}-bad")),
        "containers made for refused paths: {made:?}"
    );
    // The events do show the helpers of the requests that were read.
    let helper = format!("vre-egress-{sb}-r1");
    assert!(
        created_since(start).contains(&helper),
        "no {helper} in the events"
    );

    // A missing path is named; a path through a link or a file is refused; the helper goes.
    for (missing, named) in [
        ("nope.csv", "`nope.csv`"),
        ("tables/nope/x.csv", "`tables/nope/x.csv`"),
    ] {
        let e = first_error(download("missing", &["top.txt", missing])).await;
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{e}");
        assert!(e.to_string().contains(named), "{e}");
        no_helper_left(&app, "a missing path").await;
    }
    for through in ["linkdir/counts.csv", "top.txt/x"] {
        let e = first_error(download("through", &[through])).await;
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{e}");
        assert!(
            e.to_string().contains("symbolic link") || e.to_string().contains("not a folder"),
            "{e}"
        );
        no_helper_left(&app, "a path through a link").await;
    }

    // Two downloads of one sandbox at once, each through its own helper.
    let (a, b) = tokio::join!(
        read_all(download("c1", &["tables"])),
        read_all(download("c2", &["tables"]))
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(
        !a.is_empty() && a == b,
        "both downloads read the same archive"
    );
    no_helper_left(&app, "two downloads at once").await;

    // A stream dropped half-read: its helper is removed all the same.
    let mut half = download("half", &["tables/nested"]);
    let first = half.next().await.expect("a first chunk").unwrap();
    assert!(!first.is_empty());
    assert_eq!(
        helpers(&app).await,
        [format!("vre-egress-{sb}-half")],
        "the request's own helper"
    );
    drop(half);
    no_helper_left(&app, "a stream dropped half-read").await;
    // A stream dropped before it was ever read makes nothing.
    drop(download("never", &["tables"]));
    assert!(helpers(&app).await.is_empty());

    assert!(app.temp_files_left().await.is_empty());
    app.stop().await;
}

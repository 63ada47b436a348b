//! Unit tests: build → open round trips, and everything `open` must refuse.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::json;

use super::*;

pub(super) const MTIME: u64 = 1_764_777_600; // 2025-12-03T16:00:00Z

/// A package file for `bytes`, written under `dir` as a quarantined blob would be.
pub(super) fn blob(dir: &Path, name: &str, bytes: &[u8]) -> PackageFile {
    let source = dir.join(format!("blob-{}", crate::sha256_hex(name.as_bytes())));
    std::fs::write(&source, bytes).unwrap();
    PackageFile {
        name: name.to_string(),
        source,
        sha256: crate::sha256_hex(bytes),
        size: bytes.len() as u64,
    }
}

/// Deterministic, incompressible bytes.
pub(crate) fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

pub(super) fn metadata_for(files: &[PackageFile]) -> serde_json::Value {
    ro_crate(&CrateInput {
        application: AppInfo {
            id: "app-7".into(),
            title: "Counts by region".into(),
            project: "proj-1".into(),
            requester: "alice".into(),
            justification: "Table 2 of the paper".into(),
            sandbox: "sbx-3".into(),
            submitted_at: "2025-12-01T10:00:00.000Z".into(),
        },
        files: files
            .iter()
            .map(|f| CrateFile {
                name: f.name.clone(),
                sha256: f.sha256.clone(),
                size: f.size,
                content_type: "text/csv".into(),
                outcome: "pass".into(),
                findings: vec![json!({"check": "min_cell", "ok": true})],
                exception: None,
            })
            .collect(),
        runs: vec![CrateRun {
            id: "run-1".into(),
            image_id: "sha256:abcd".into(),
            command: vec!["python3".into(), "/vre/ingress/app-2/count.py".into()],
            started_at: Some("2025-12-01T09:00:00.000Z".into()),
            finished_at: Some("2025-12-01T09:01:00.000Z".into()),
            outcome: Some("succeeded".into()),
            exit_code: Some(0),
            ingress: vec![("app-2".into(), "e3b0".repeat(16))],
            datasets: vec!["census-2020".into()],
        }],
        decisions: vec![
            CrateDecision {
                round: 1,
                reviewer: "bob".into(),
                choice: "approve".into(),
                comment: "fine".into(),
                decided_at: "2025-12-02T10:00:00.000Z".into(),
            },
            CrateDecision {
                round: 1,
                reviewer: "carol".into(),
                choice: "approve".into(),
                comment: "".into(),
                decided_at: "2025-12-02T11:00:00.000Z".into(),
            },
        ],
        rules_version: "2025-11".into(),
        released_at: "2025-12-03T16:00:00.000Z".into(),
        recipient: "age1example".into(),
    })
}

pub(super) fn key() -> (String, String) {
    new_identity()
}

pub(super) fn build_to_vec(files: &[PackageFile], recipient: &str) -> (Vec<u8>, Built) {
    let mut out = Vec::new();
    let built = build(files, &metadata_for(files), recipient, MTIME, &mut out).unwrap();
    (out, built)
}

/// The files a round trip uses: nested names, an empty file, spaces and non-ASCII.
pub(super) fn sample(dir: &Path) -> Vec<PackageFile> {
    vec![
        blob(dir, "summary.csv", b"region,count\nnorth,120\nsouth,85\n"),
        blob(dir, "tables/by age/counts.csv", b"age,count\n18-29,40\n"),
        blob(dir, "tables/empty.txt", b""),
        blob(
            dir,
            "figures/r\u{e9}sum\u{e9} \u{30c7}\u{30fc}\u{30bf}.txt",
            "données\n".as_bytes(),
        ),
        blob(
            dir,
            &format!("deep/{}/x.txt", "long-name".repeat(20)),
            b"x\n",
        ),
    ]
}

#[test]
fn round_trip_keeps_every_file_and_the_metadata() {
    let tmp = tempfile::tempdir().unwrap();
    let files = sample(tmp.path());
    let (identity, recipient) = key();
    let (package, built) = build_to_vec(&files, &recipient);
    assert_eq!(built.size, package.len() as u64);
    assert_eq!(built.sha256, crate::sha256_hex(&package));

    let dest = tmp.path().join("out/release");
    let opened = open(&package[..], &identity, &dest).unwrap();
    let mut expected: Vec<(String, String, u64)> = files
        .iter()
        .map(|f| (f.name.clone(), f.sha256.clone(), f.size))
        .collect();
    expected.sort();
    assert_eq!(opened.files, expected);
    assert_eq!(opened.metadata, metadata_for(&files));
    for f in &files {
        let got = std::fs::read(dest.join("files").join(&f.name)).unwrap();
        assert_eq!(got, std::fs::read(&f.source).unwrap(), "{}", f.name);
    }
    assert_eq!(
        std::fs::read_to_string(dest.join("SHA256SUMS")).unwrap(),
        sha256sums(&files)
    );
    assert!(dest.join("ro-crate-metadata.json").is_file());
}

#[test]
fn tar_headers_are_deterministic() {
    let tmp = tempfile::tempdir().unwrap();
    let files = sample(tmp.path());
    let (identity, recipient) = key();
    let plain = |package: &[u8]| {
        let id = identity.parse::<age::x25519::Identity>().ok();
        let id = id.unwrap_or_else(|| {
            identity
                .lines()
                .find(|l| l.starts_with("AGE-SECRET-KEY-1"))
                .unwrap()
                .parse()
                .unwrap()
        });
        let compressed = age::decrypt(&id, package).unwrap();
        zstd::decode_all(&compressed[..]).unwrap()
    };
    let (a, _) = build_to_vec(&files, &recipient);
    let (b, _) = build_to_vec(&files, &recipient);
    assert_ne!(a, b, "age uses a fresh file key each time");
    let (ta, tb) = (plain(&a), plain(&b));
    assert_eq!(ta, tb, "the tar inside is the same");

    let mut archive = tar::Archive::new(&ta[..]);
    let mut names = Vec::new();
    for e in archive.entries().unwrap() {
        let e = e.unwrap();
        let h = e.header();
        assert_eq!(h.mtime().unwrap(), MTIME);
        assert_eq!((h.uid().unwrap(), h.gid().unwrap()), (0, 0));
        assert_eq!(h.username().unwrap(), Some(""));
        assert_eq!(h.groupname().unwrap(), Some(""));
        let dir = h.entry_type().is_dir();
        assert_eq!(h.mode().unwrap(), if dir { 0o755 } else { 0o644 });
        names.push(e.path().unwrap().to_string_lossy().into_owned());
    }
    let n = names.len();
    assert_eq!(&names[n - 2..], ["SHA256SUMS", "ro-crate-metadata.json"]);
    assert_eq!(names[0].trim_end_matches('/'), "files");
    assert!(names[..n - 2].iter().all(|p| p.starts_with("files")));
    // Each folder comes before what it holds.
    for (i, p) in names.iter().enumerate() {
        if let Some((parent, _)) = p.trim_end_matches('/').rsplit_once('/') {
            let at = names
                .iter()
                .position(|q| q.trim_end_matches('/') == parent)
                .unwrap_or_else(|| panic!("no folder entry for {parent}"));
            assert!(at < i, "{parent} after {p}");
        }
    }
}

/// The source of a large file is a FIFO fed in step with the package's output: the last
/// quarter is only written once most of what came before has reached the output, which a
/// builder that held the file (or the package) in memory would never do.
#[test]
fn a_large_file_streams_through_in_bounded_memory() {
    const SIZE: usize = 20 << 20;
    let tmp = tempfile::tempdir().unwrap();
    let data = noise(SIZE, 42);
    let fifo = tmp.path().join("big.fifo");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success());
    let files = vec![
        blob(tmp.path(), "small.csv", b"a,b\n1,2\n"),
        PackageFile {
            name: "big/data.bin".into(),
            source: fifo.clone(),
            sha256: crate::sha256_hex(&data),
            size: SIZE as u64,
        },
    ];

    struct Progress(Arc<AtomicU64>, std::fs::File);
    impl Write for Progress {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let n = self.1.write(buf)?;
            self.0.fetch_add(n as u64, Ordering::SeqCst);
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.1.flush()
        }
    }
    let written = Arc::new(AtomicU64::new(0));
    let feeder = {
        let written = written.clone();
        let data = data.clone();
        std::thread::spawn(move || {
            let mut f = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
            let three_quarters = SIZE / 4 * 3;
            f.write_all(&data[..three_quarters]).unwrap();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            // Everything up to 2 MiB behind the input has been encrypted and written out.
            let target = (three_quarters - (2 << 20)) as u64;
            let mut caught_up = false;
            while std::time::Instant::now() < deadline {
                if written.load(Ordering::SeqCst) >= target {
                    caught_up = true;
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            f.write_all(&data[three_quarters..]).unwrap();
            caught_up
        })
    };
    let (identity, recipient) = key();
    let package_path = tmp.path().join("p.tar.zst.age");
    let mut out = Progress(
        written.clone(),
        std::fs::File::create(&package_path).unwrap(),
    );
    let built = build(&files, &metadata_for(&files), &recipient, MTIME, &mut out).unwrap();
    assert!(
        feeder.join().unwrap(),
        "the output did not keep up with the input: the builder buffers"
    );
    assert!(built.size > SIZE as u64);

    let dest = tmp.path().join("opened");
    let opened = open(
        std::fs::File::open(&package_path).unwrap(),
        &identity,
        &dest,
    )
    .unwrap();
    assert_eq!(opened.files.len(), 2);
    let got = std::fs::read(dest.join("files/big/data.bin")).unwrap();
    assert!(got == data, "the large file differs after the round trip");
}

#[test]
fn a_source_changed_after_hashing_aborts_the_build() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, recipient) = key();
    for changed in [&b"north,121\n"[..], b"north,12\n", b"north,1200\n", b""] {
        let mut files = sample(tmp.path());
        let f = blob(tmp.path(), "tables/changed.csv", b"north,120\n");
        std::fs::write(&f.source, changed).unwrap();
        files.push(f);
        let mut out = Vec::new();
        match build(&files, &json!({}), &recipient, MTIME, &mut out) {
            Err(BuildError::Mismatch {
                name,
                expected,
                found,
            }) => {
                assert_eq!(name, "tables/changed.csv");
                assert_eq!(expected, crate::sha256_hex(b"north,120\n"));
                assert_eq!(found, crate::sha256_hex(changed));
            }
            other => panic!("{changed:?}: {other:?}"),
        }
    }
}

#[test]
fn build_refuses_bad_names_and_recipients() {
    let tmp = tempfile::tempdir().unwrap();
    let (identity, recipient) = key();
    let bad = |name: &str| {
        let files = vec![blob(tmp.path(), name, b"x")];
        let r = build(&files, &json!({}), &recipient, MTIME, &mut Vec::new());
        assert!(matches!(r, Err(BuildError::BadName(_))), "{name:?}: {r:?}");
    };
    for name in [
        "",
        "/abs",
        "../up",
        "a/../b",
        "a/./b",
        "a//b",
        "a/",
        "new\nline",
        "back\\slash",
        "tab\there",
    ] {
        bad(name);
    }
    bad(&"x".repeat(256));
    let clash = vec![blob(tmp.path(), "a", b"1"), blob(tmp.path(), "a/b", b"2")];
    let r = build(&clash, &json!({}), &recipient, MTIME, &mut Vec::new());
    assert!(matches!(r, Err(BuildError::BadName(_))), "{r:?}");
    let twice = vec![blob(tmp.path(), "a", b"1"), blob(tmp.path(), "a", b"1")];
    let r = build(&twice, &json!({}), &recipient, MTIME, &mut Vec::new());
    assert!(matches!(r, Err(BuildError::BadName(_))), "{r:?}");

    for r in ["", "ssh-ed25519 AAAA", "age1nope", identity.as_str()] {
        let e = build(&[], &json!({}), r, MTIME, &mut Vec::new());
        assert!(
            matches!(e, Err(BuildError::BadRecipient(_))),
            "{r:?}: {e:?}"
        );
    }
}

#[test]
fn the_wrong_identity_is_told_apart() {
    let tmp = tempfile::tempdir().unwrap();
    let files = sample(tmp.path());
    let (_, recipient) = key();
    let (other, _) = key();
    let (package, _) = build_to_vec(&files, &recipient);
    let dest = tmp.path().join("out");
    assert!(matches!(
        open(&package[..], &other, &dest),
        Err(OpenError::WrongKey)
    ));
    assert!(!dest.exists(), "a failed open leaves no folder it made");
    assert!(matches!(
        open(&package[..], "# nothing here\n", &dest),
        Err(OpenError::BadIdentity(_))
    ));
    assert!(matches!(
        open(&package[..], "not a key\n", &dest),
        Err(OpenError::BadIdentity(_))
    ));
    let (identity, _) = key();
    assert!(matches!(
        open(&b"hello, not age"[..], &identity, &dest),
        Err(OpenError::NotAPackage(_))
    ));
}

#[test]
fn a_tampered_or_truncated_package_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let mut files = sample(tmp.path());
    files.push(blob(tmp.path(), "big.bin", &noise(300_000, 7)));
    let (identity, recipient) = key();
    let (package, _) = build_to_vec(&files, &recipient);
    let header_end = package.windows(4).position(|w| w == b"\n---").unwrap();

    // The payload starts after the header's MAC line and the 16-byte nonce, in chunks of
    // 64 KiB of plaintext and a 16-byte tag.
    let body = header_end
        + 1
        + package[header_end + 1..]
            .iter()
            .position(|b| *b == b'\n')
            .unwrap()
        + 1;
    let payload = body + 16;
    // (what, the package, whether age's authentication is what must refuse it)
    let mut cases: Vec<(&str, Vec<u8>, bool)> = Vec::new();
    for at in [payload + 40, package.len() / 2, package.len() - 20] {
        let mut p = package.clone();
        p[at] ^= 0x01;
        cases.push(("a flipped bit in the payload", p, true));
    }
    for at in [20, header_end + 10, body + 3] {
        let mut p = package.clone();
        p[at] ^= 0x01;
        cases.push(("a flipped bit in the header or nonce", p, false));
    }
    // Cut at a chunk boundary, inside a chunk, and just before the end.
    for len in [payload + (65536 + 16), package.len() / 2, package.len() - 1] {
        cases.push(("cut short", package[..len].to_vec(), true));
    }
    for (i, (what, p, damaged)) in cases.into_iter().enumerate() {
        let dest = tmp.path().join(format!("out-{i}"));
        std::fs::create_dir(&dest).unwrap();
        let r = open(&p[..], &identity, &dest);
        assert!(r.is_err(), "{what} #{i} opened");
        if damaged {
            assert!(
                matches!(r, Err(OpenError::Damaged(_))),
                "{what} #{i}: {r:?}"
            );
        }
        let left: Vec<_> = std::fs::read_dir(&dest).unwrap().collect();
        assert!(left.is_empty(), "{what} #{i}: {r:?} left {left:?}");
    }
}

#[test]
fn keys_are_x25519_and_recipients_are_checked() {
    let (identity, recipient) = new_identity();
    let lines: Vec<&str> = identity.lines().collect();
    assert_eq!(lines.len(), 3, "{identity}");
    assert!(lines[0].starts_with("# created: 20"), "{identity}");
    assert_eq!(lines[1], format!("# public key: {recipient}"));
    assert!(lines[2].starts_with("AGE-SECRET-KEY-1"));
    assert!(recipient.starts_with("age1"));
    assert_eq!(parse_recipient(&recipient).unwrap(), recipient);
    assert_eq!(
        parse_recipient(&format!("  {}\n", recipient.to_uppercase())).unwrap(),
        recipient
    );
    let why = |s: &str| parse_recipient(s).unwrap_err();
    assert!(why("ssh-ed25519 AAAAC3Nza me@host").contains("SSH"));
    assert!(why("ssh-rsa AAAAB3Nza").contains("SSH"));
    assert!(why(lines[2]).contains("SECRET"));
    assert!(
        why("age1yubikey1qwt50d05nh5vutpdzmlg5wn80xq5negm4uj9ghv0snvdd3yysf5yw3rhl3t")
            .contains("plugin")
    );
    assert!(why("age1qqqq").contains("not a valid"));
    assert!(why("hello").contains("not an age recipient"));
    assert!(why("").contains("no recipient"));
    // One character changed breaks Bech32's checksum.
    let mut broken = recipient.clone().into_bytes();
    let last = broken.len() - 1;
    broken[last] = if broken[last] == b'q' { b'p' } else { b'q' };
    assert!(parse_recipient(std::str::from_utf8(&broken).unwrap()).is_err());
}

#[test]
fn sums_and_names_have_the_documented_form() {
    let files = vec![
        PackageFile {
            name: "b c.csv".into(),
            source: PathBuf::new(),
            sha256: "AB".repeat(32),
            size: 1,
        },
        PackageFile {
            name: "a/x.csv".into(),
            source: PathBuf::new(),
            sha256: "01".repeat(32),
            size: 1,
        },
    ];
    assert_eq!(
        sha256sums(&files),
        format!(
            "{}  files/a/x.csv\n{}  files/b c.csv\n",
            "01".repeat(32),
            "ab".repeat(32)
        )
    );
    assert!(check_name("tables/counts.csv").is_ok());
    assert!(check_name("r\u{e9}sum\u{e9} 2.csv").is_ok());
    assert_eq!(file_id("a b/r\u{e9}.csv"), "files/a%20b/r%C3%A9.csv");
    assert_eq!(file_id("50%#?.csv"), "files/50%25%23%3F.csv");
}

#[test]
fn the_crate_describes_files_runs_checks_and_decisions() {
    let tmp = tempfile::tempdir().unwrap();
    let files = sample(tmp.path());
    let crate_ = metadata_for(&files);
    assert_eq!(crate_["@context"], CONTEXT);
    let graph = crate_["@graph"].as_array().unwrap();
    let by_id = |id: &str| {
        graph
            .iter()
            .find(|e| e["@id"] == id)
            .unwrap_or_else(|| panic!("no entity {id}"))
    };
    // Every `@id` once, every reference resolves (except the spec's own URIs).
    let mut ids = std::collections::HashSet::new();
    for e in graph {
        assert!(ids.insert(e["@id"].as_str().unwrap()), "{} twice", e["@id"]);
    }
    fn refs<'a>(v: &'a serde_json::Value, out: &mut Vec<&'a str>) {
        match v {
            serde_json::Value::Object(m) => {
                if m.len() == 1 {
                    if let Some(serde_json::Value::String(s)) = m.get("@id") {
                        out.push(s);
                    }
                }
                m.values().for_each(|v| refs(v, out));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&crate_["@graph"], &mut all);
    for r in all {
        assert!(
            ids.contains(r) || r.starts_with("http"),
            "dangling reference {r}"
        );
    }

    let descriptor = by_id("ro-crate-metadata.json");
    assert_eq!(
        descriptor["conformsTo"]["@id"],
        "https://w3id.org/ro/crate/1.1"
    );
    assert_eq!(descriptor["about"]["@id"], "./");
    let root = by_id("./");
    assert_eq!(root["@type"], "Dataset");
    assert_eq!(root["datePublished"], "2025-12-03T16:00:00.000Z");
    let parts: Vec<&str> = root["hasPart"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["@id"].as_str().unwrap())
        .collect();
    assert_eq!(parts.len(), files.len() + 1);
    assert!(parts.contains(&"SHA256SUMS"));
    let spaced = by_id("files/figures/r%C3%A9sum%C3%A9%20%E3%83%87%E3%83%BC%E3%82%BF.txt");
    assert_eq!(spaced["@type"], "File");
    let empty = by_id("files/tables/empty.txt");
    assert_eq!(empty["contentSize"], "0");
    assert_eq!(empty["sha256"], crate::sha256_hex(b""));
    assert_eq!(empty["encodingFormat"], "text/csv");
    assert_eq!(
        by_id("SHA256SUMS")["sha256"],
        crate::sha256_hex(sha256sums(&files).as_bytes())
    );

    let run = by_id("#run-run-1");
    assert_eq!(run["@type"], "CreateAction");
    let image = by_id(run["instrument"]["@id"].as_str().unwrap());
    assert_eq!(image["@type"], "SoftwareApplication");
    assert_eq!(image["identifier"], "sha256:abcd");
    let objects = run["object"].as_array().unwrap();
    let ingress = by_id(objects[0]["@id"].as_str().unwrap());
    assert_eq!(ingress["sha256"], "e3b0".repeat(16));
    assert_eq!(run["result"].as_array().unwrap().len(), files.len());
    assert_eq!(
        run["actionStatus"]["@id"],
        "http://schema.org/CompletedActionStatus"
    );

    let checks: Vec<_> = graph
        .iter()
        .filter(|e| e["@type"] == "AssessAction")
        .collect();
    assert_eq!(checks.len(), files.len());
    let reviews: Vec<_> = graph
        .iter()
        .filter(|e| e["@type"] == "ReviewAction")
        .collect();
    assert_eq!(reviews.len(), 2);
    assert_eq!(
        by_id(reviews[0]["agent"]["@id"].as_str().unwrap())["@type"],
        "Person"
    );
    let mentioned = root["mentions"].as_array().unwrap().len();
    assert_eq!(mentioned, 1 + files.len() + 2 + 1);
}

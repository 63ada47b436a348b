//! Packages against the standard tools: Debian's `age` and `age-keygen`, GNU `tar --zstd`,
//! `sha256sum -c`, and the `rocrate` Python package (`VRE_TEST_ROCRATE_PYTHON`: a Python
//! that imports it; `deploy/dev/test.sh` makes one in `target/rocrate-venv`).
//!
//! A missing tool skips its test with a note, unless `VRE_TEST_REQUIRE_TOOLS=1` (as
//! `deploy/dev/test.sh` sets): then it fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::tests::{MTIME, metadata_for, sample};
use super::*;

fn required() -> bool {
    std::env::var("VRE_TEST_REQUIRE_TOOLS").as_deref() == Ok("1")
}

/// Whether `program` runs (`--version` or `--help`); a note or a failure when it does not.
fn have(program: &str, test: &str) -> bool {
    let runs = ["--version", "--help"].iter().any(|arg| {
        Command::new(program)
            .arg(arg)
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if !runs {
        assert!(
            !required(),
            "{test}: `{program}` is not installed and VRE_TEST_REQUIRE_TOOLS=1"
        );
        eprintln!(
            "note: {test} skipped: `{program}` is not installed (deploy/dev/test.sh installs it)"
        );
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

/// Builds the sample package for `recipient` into `<dir>/p.tar.zst.age`.
fn package_file(dir: &Path, files: &[PackageFile], recipient: &str) -> PathBuf {
    let path = dir.join("p.tar.zst.age");
    let mut out = std::fs::File::create(&path).unwrap();
    build(files, &metadata_for(files), recipient, MTIME, &mut out).unwrap();
    path
}

#[test]
fn standard_tools_decrypt_unpack_and_check_a_package() {
    const TEST: &str = "standard_tools_decrypt_unpack_and_check_a_package";
    if !(have("age", TEST) && have("tar", TEST) && have("zstd", TEST) && have("sha256sum", TEST)) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let files = sample(tmp.path());
    let (identity, recipient) = new_identity();
    let key = tmp.path().join("key.txt");
    std::fs::write(&key, &identity).unwrap();
    let package = package_file(tmp.path(), &files, &recipient);

    let plain = tmp.path().join("p.tar.zst");
    run(Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(&key)
        .arg("-o")
        .arg(&plain)
        .arg(&package));
    let dir = tmp.path().join("unpacked");
    std::fs::create_dir(&dir).unwrap();
    run(Command::new("tar")
        .arg("--zstd")
        .arg("-xf")
        .arg(&plain)
        .arg("-C")
        .arg(&dir));
    let check = run(Command::new("sha256sum")
        .args(["--strict", "-c", "SHA256SUMS"])
        .current_dir(&dir));
    let said = String::from_utf8_lossy(&check.stdout);
    assert_eq!(
        said.lines().filter(|l| l.ends_with(": OK")).count(),
        files.len(),
        "{said}"
    );
    for f in &files {
        assert_eq!(
            std::fs::read(dir.join("files").join(&f.name)).unwrap(),
            std::fs::read(&f.source).unwrap(),
            "{}",
            f.name
        );
    }
    let metadata: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("ro-crate-metadata.json")).unwrap())
            .unwrap();
    assert_eq!(metadata, metadata_for(&files));

    // GNU tar sees the deterministic headers: root's numeric ids, 0644 and 0755, the time.
    let listing = run(Command::new("tar")
        .args(["--zstd", "--numeric-owner", "--full-time", "-tvf"])
        .arg(&plain)
        .env("TZ", "UTC"));
    let listing = String::from_utf8_lossy(&listing.stdout);
    for line in listing.lines() {
        assert!(
            line.starts_with("-rw-r--r-- 0/0") || line.starts_with("drwxr-xr-x 0/0"),
            "{line}"
        );
        assert!(line.contains("2025-12-03 16:00:00"), "{line}");
    }

    // A package altered by one bit does not get past age.
    let mut bytes = std::fs::read(&package).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 1;
    let altered = tmp.path().join("altered.age");
    std::fs::write(&altered, &bytes).unwrap();
    let out = Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(&key)
        .arg(&altered)
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn an_identity_from_age_keygen_opens_a_package_built_for_it() {
    const TEST: &str = "an_identity_from_age_keygen_opens_a_package_built_for_it";
    if !(have("age-keygen", TEST) && have("age", TEST)) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("key.txt");
    run(Command::new("age-keygen").arg("-o").arg(&key));
    let public = run(Command::new("age-keygen").arg("-y").arg(&key));
    let recipient = parse_recipient(&String::from_utf8_lossy(&public.stdout)).unwrap();
    let identity = std::fs::read_to_string(&key).unwrap();
    assert!(identity.starts_with("# created: "), "{identity}");
    assert!(identity.contains(&format!("# public key: {recipient}")));

    let files = sample(tmp.path());
    let package = package_file(tmp.path(), &files, &recipient);
    let dest = tmp.path().join("opened");
    let opened = open(std::fs::File::open(&package).unwrap(), &identity, &dest).unwrap();
    assert_eq!(opened.files.len(), files.len());

    // And the other way round: what `age -r` encrypts, `open` decrypts (with a key of ours).
    let (ours, our_recipient) = new_identity();
    let mine = package_file(tmp.path(), &files, &our_recipient);
    let plain = tmp.path().join("plain.tar.zst");
    let ours_path = tmp.path().join("ours.txt");
    std::fs::write(&ours_path, &ours).unwrap();
    run(Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(&ours_path)
        .arg("-o")
        .arg(&plain)
        .arg(&mine));
    let again = tmp.path().join("again.age");
    run(Command::new("age")
        .arg("-r")
        .arg(&our_recipient)
        .arg("-o")
        .arg(&again)
        .arg(&plain));
    let dest = tmp.path().join("again");
    let reopened = open(std::fs::File::open(&again).unwrap(), &ours, &dest).unwrap();
    assert_eq!(reopened.files, opened.files);
}

#[test]
fn the_metadata_loads_with_the_rocrate_package() {
    const TEST: &str = "the_metadata_loads_with_the_rocrate_package";
    let python = match std::env::var_os("VRE_TEST_ROCRATE_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => {
            assert!(
                !required(),
                "{TEST}: VRE_TEST_ROCRATE_PYTHON is not set and VRE_TEST_REQUIRE_TOOLS=1"
            );
            eprintln!(
                "note: {TEST} skipped: VRE_TEST_ROCRATE_PYTHON (a Python with `rocrate`) is not \
                 set (deploy/dev/test.sh makes one)"
            );
            return;
        }
    };
    let tmp = tempfile::tempdir().unwrap();
    let files = sample(tmp.path());
    let (identity, recipient) = new_identity();
    let package = package_file(tmp.path(), &files, &recipient);
    let dest = tmp.path().join("opened");
    open(std::fs::File::open(&package).unwrap(), &identity, &dest).unwrap();

    let script = r#"
import json, sys
from urllib.parse import unquote
from rocrate.rocrate import ROCrate
crate = ROCrate(sys.argv[1])
root = crate.root_dataset
print(json.dumps({
    "entities": [[unquote(e.id), e.type] for e in crate.data_entities],
    "published": root["datePublished"],
    "actions": sorted(set(e.type for e in crate.contextual_entities if str(e.type).endswith("Action"))),
}))
"#;
    let out = run(Command::new(&python).arg("-c").arg(script).arg(&dest));
    let said: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}", String::from_utf8_lossy(&out.stdout));
    });
    let mut entities: Vec<(String, String)> = said["entities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e[0].as_str().unwrap().to_string(),
                e[1].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    entities.sort();
    let mut expected: Vec<(String, String)> = files
        .iter()
        .map(|f| (format!("files/{}", f.name), "File".to_string()))
        .chain([("SHA256SUMS".to_string(), "File".to_string())])
        .collect();
    expected.sort();
    assert_eq!(entities, expected);
    assert_eq!(said["published"], "2025-12-03T16:00:00.000Z");
    assert_eq!(
        said["actions"],
        serde_json::json!([
            "AssessAction",
            "CreateAction",
            "ReviewAction",
            "ShareAction"
        ])
    );
}

//! Unit tests of `open`: the entries, names, sums and destinations it must refuse, each
//! leaving nothing behind.

use std::path::Path;

use policy::archive::tar::{END, EntryKind, entry_header, padding};

use super::tests::*;
use super::*;

/// A tar built by hand, entry by entry, zstd-compressed and encrypted to `recipient`.
pub(super) struct Evil {
    tar: Vec<u8>,
}

impl Evil {
    pub(super) fn new() -> Self {
        Evil { tar: Vec::new() }
    }
    pub(super) fn entry(mut self, path: &str, kind: EntryKind, data: &[u8]) -> Self {
        self.tar
            .extend_from_slice(&entry_header(path, kind, data.len() as u64, 0o644));
        self.tar.extend_from_slice(data);
        self.tar
            .extend(std::iter::repeat_n(0u8, padding(data.len() as u64)));
        self
    }
    pub(super) fn file(self, path: &str, data: &[u8]) -> Self {
        self.entry(path, EntryKind::File, data)
    }
    /// Adds SHA256SUMS for `(name, data)` and an empty metadata file.
    pub(super) fn listed(self, files: &[(&str, &[u8])]) -> Self {
        let sums: String = files
            .iter()
            .map(|(n, d)| format!("{}  files/{n}\n", crate::sha256_hex(d)))
            .collect();
        self.file("SHA256SUMS", sums.as_bytes())
            .file("ro-crate-metadata.json", b"{}")
    }
    pub(super) fn seal(mut self, recipient: &str) -> Vec<u8> {
        self.tar.extend_from_slice(&END);
        let compressed = zstd::encode_all(&self.tar[..], 3).unwrap();
        let r: age::x25519::Recipient = recipient.parse().unwrap();
        age::encrypt(&r, &compressed).unwrap()
    }
}

#[test]
fn unsafe_entries_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (identity, recipient) = key();
    let cases: Vec<(&str, Evil)> = vec![
        ("dot-dot", Evil::new().file("files/../../evil", b"x")),
        (
            "dot-dot inside",
            Evil::new().file("files/a/../../evil", b"x"),
        ),
        ("absolute", Evil::new().file("/tmp/evil", b"x")),
        ("dot", Evil::new().file("files/./evil", b"x")),
        (
            "symlink",
            Evil::new().entry("files/link", EntryKind::Symlink, b""),
        ),
        (
            "hardlink",
            Evil::new().entry("files/hard", EntryKind::Hardlink, b""),
        ),
        (
            "fifo",
            Evil::new().entry("files/fifo", EntryKind::Fifo, b""),
        ),
        (
            "device",
            Evil::new().entry("files/dev", EntryKind::CharDevice, b""),
        ),
        (
            "other type",
            Evil::new().entry("files/sparse", EntryKind::Other(b'S'), b""),
        ),
        (
            "twice",
            Evil::new().file("files/a", b"1").file("files/a", b"2"),
        ),
        (
            "below a file",
            Evil::new().file("files/a", b"1").file("files/a/b", b"2"),
        ),
        (
            "too long",
            Evil::new().file(&format!("files/{}", "a/".repeat(2100)), b""),
        ),
        ("control", Evil::new().file("files/a\u{1b}[2J", b"x")),
    ];
    for (what, evil) in cases {
        let dest = tmp.path().join("dest").join(what);
        let r = open(&evil.seal(&recipient)[..], &identity, &dest);
        assert!(matches!(r, Err(OpenError::Unsafe(_))), "{what}: {r:?}");
        assert!(!dest.exists(), "{what}: left {dest:?}");
    }
    assert!(!tmp.path().join("evil").exists());
    assert!(!tmp.path().join("dest/evil").exists());
    assert!(!Path::new("/tmp/evil").exists());

    // Non-UTF-8 names, past the `&str` the builder above takes.
    let mut raw = policy::archive::tar::ustar_header(b"files/\xff\xfe", b'0', 0, 0o644).to_vec();
    raw.extend_from_slice(&END);
    let r: age::x25519::Recipient = recipient.parse().unwrap();
    let sealed = age::encrypt(&r, &zstd::encode_all(&raw[..], 3).unwrap()).unwrap();
    let r = open(&sealed[..], &identity, &tmp.path().join("utf8"));
    assert!(matches!(r, Err(OpenError::Unsafe(_))), "{r:?}");
}

/// The bounds are reached with lower ones (the defaults' mechanism, without writing 100,000
/// folders); the defaults themselves are what `open` uses.
#[test]
fn entries_and_names_are_bounded() {
    let tmp = tempfile::tempdir().unwrap();
    let (identity, recipient) = key();
    let limits = open::Limits::default();
    assert_eq!(limits.entries, MAX_ENTRIES);
    assert_eq!(limits.names_bytes, 32 << 20);

    let many = |n: usize, name_len: usize| {
        let mut tar = Vec::new();
        for i in 0..n {
            let name = format!("files/{i:0>name_len$}");
            tar.extend_from_slice(&entry_header(&name, EntryKind::Dir, 0, 0o755));
        }
        Evil { tar }.listed(&[]).seal(&recipient)
    };
    let low = open::Limits {
        entries: 50,
        names_bytes: 1 << 20,
    };
    // `files/` (implied), 47 folders in it and the two listings make 50 entries.
    let dest = tmp.path().join("fits");
    open::open_within(&many(47, 8)[..], &identity, &dest, low).unwrap();
    let dest = tmp.path().join("many");
    let r = open::open_within(&many(48, 8)[..], &identity, &dest, low);
    assert!(
        matches!(&r, Err(OpenError::Unsafe(why)) if why.contains("entries")),
        "{r:?}"
    );
    assert!(!dest.exists());

    // 300 names of about 4,000 bytes: past 1 MiB. (Components are at most 255 bytes: one
    // long folder above them.)
    let prefix = format!("files/{}", format!("{}/", "d".repeat(250)).repeat(15));
    let mut tar = Vec::new();
    for i in 0..300 {
        let name = format!("{prefix}{i:0>200}");
        tar.extend_from_slice(&entry_header(&name, EntryKind::Dir, 0, 0o755));
    }
    let sealed = Evil { tar }.listed(&[]).seal(&recipient);
    let dest = tmp.path().join("names");
    let low = open::Limits {
        entries: 1000,
        names_bytes: 1 << 20,
    };
    let r = open::open_within(&sealed[..], &identity, &dest, low);
    assert!(
        matches!(&r, Err(OpenError::Unsafe(why)) if why.contains("names take")),
        "{r:?}"
    );
    assert!(!dest.exists());
}

#[test]
fn sums_must_match_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let (identity, recipient) = key();
    let dest = |n: &str| tmp.path().join(n);

    let wrong = Evil::new()
        .file("files/a.csv", b"1,2\n")
        .listed(&[("a.csv", b"1,3\n")]);
    let r = open(&wrong.seal(&recipient)[..], &identity, &dest("wrong"));
    assert!(
        matches!(&r, Err(OpenError::Checksum { name }) if name == "a.csv"),
        "{r:?}"
    );
    assert!(!dest("wrong").exists());

    let extra = Evil::new()
        .file("files/a.csv", b"1\n")
        .file("files/b.csv", b"2\n")
        .listed(&[("a.csv", b"1\n")]);
    let r = open(&extra.seal(&recipient)[..], &identity, &dest("extra"));
    assert!(
        matches!(&r, Err(OpenError::Extra { name }) if name == "b.csv"),
        "{r:?}"
    );

    let missing = Evil::new()
        .file("files/a.csv", b"1\n")
        .listed(&[("a.csv", b"1\n"), ("gone.csv", b"2\n")]);
    let r = open(&missing.seal(&recipient)[..], &identity, &dest("missing"));
    assert!(
        matches!(&r, Err(OpenError::Missing { name }) if name == "gone.csv"),
        "{r:?}"
    );

    let stray = Evil::new()
        .file("files/a.csv", b"1\n")
        .file("README", b"hi")
        .listed(&[("a.csv", b"1\n")]);
    let r = open(&stray.seal(&recipient)[..], &identity, &dest("stray"));
    assert!(matches!(&r, Err(OpenError::NotAPackage(_))), "{r:?}");
    assert!(!dest("stray").exists());
    for top in [
        Evil::new().file("files", b"not a folder"),
        Evil::new().file("filesX/a", b""),
        Evil::new().entry("SHA256SUMS", EntryKind::Dir, b""),
    ] {
        let r = open(&top.seal(&recipient)[..], &identity, &dest("top"));
        assert!(matches!(&r, Err(OpenError::NotAPackage(_))), "{r:?}");
    }

    let unlisted = Evil::new().file("files/a.csv", b"1\n");
    let r = open(&unlisted.seal(&recipient)[..], &identity, &dest("unlisted"));
    assert!(matches!(&r, Err(OpenError::NotAPackage(_))), "{r:?}");

    // And the same hand-made layout, listed right, opens.
    let good = Evil::new()
        .file("files/a.csv", b"1\n")
        .listed(&[("a.csv", b"1\n")]);
    let opened = open(&good.seal(&recipient)[..], &identity, &dest("good")).unwrap();
    assert_eq!(
        opened.files,
        vec![("a.csv".into(), crate::sha256_hex(b"1\n"), 2)]
    );
}

#[test]
fn a_destination_that_is_not_empty_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let files = sample(tmp.path());
    let (identity, recipient) = key();
    let (package, _) = build_to_vec(&files, &recipient);
    let dest = tmp.path().join("busy");
    std::fs::create_dir(&dest).unwrap();
    std::fs::write(dest.join("mine.txt"), b"keep me").unwrap();
    let r = open(&package[..], &identity, &dest);
    assert!(matches!(r, Err(OpenError::DestNotEmpty)), "{r:?}");
    assert_eq!(std::fs::read(dest.join("mine.txt")).unwrap(), b"keep me");
    assert_eq!(std::fs::read_dir(&dest).unwrap().count(), 1);
    let file = dest.join("mine.txt");
    let r = open(&package[..], &identity, &file);
    assert!(matches!(r, Err(OpenError::DestNotEmpty)), "{r:?}");
    // An empty folder is fine.
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    open(&package[..], &identity, &empty).unwrap();
}

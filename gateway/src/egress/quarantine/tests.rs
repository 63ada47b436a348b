use super::*;
use futures_util::StreamExt;

/// Sees every byte of a file, and what it was told at its end.
struct Seen {
    hasher: Sha256,
    bytes: u64,
    path: String,
}

impl Inspect for Seen {
    type Report = (String, u64, String);
    fn update(&mut self, chunk: &[u8]) {
        self.hasher.update(chunk);
        self.bytes += chunk.len() as u64;
    }
    fn finish(self, size: u64) -> Self::Report {
        assert_eq!(size, self.bytes, "{}: every byte is inspected", self.path);
        (self.path, size, hex::encode(self.hasher.finalize()))
    }
}

fn seen(path: &str) -> Seen {
    Seen {
        hasher: Sha256::new(),
        bytes: 0,
        path: path.to_owned(),
    }
}

type Outcome = Result<(Vec<Quarantined<<Seen as Inspect>::Report>>, Payload), QuarantineError>;

const LIMITS: Limits = Limits {
    max_files: 100,
    max_file_bytes: 1 << 20,
    max_total_bytes: 4 << 20,
};

/// A tar builder's entry with `name` written into the header as it is (no checks).
fn raw(b: &mut tar::Builder<Vec<u8>>, name: &[u8], kind: tar::EntryType, data: &[u8]) {
    let mut h = tar::Header::new_ustar();
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.set_entry_type(kind);
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append(&h, data).unwrap();
}

fn file(b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) {
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    b.append_data(&mut h, path, data).unwrap();
}

fn link(b: &mut tar::Builder<Vec<u8>>, path: &str, kind: tar::EntryType, target: &str) {
    let mut h = tar::Header::new_gnu();
    h.set_size(0);
    h.set_mode(0o777);
    h.set_entry_type(kind);
    b.append_link(&mut h, path, target).unwrap();
}

fn dir(b: &mut tar::Builder<Vec<u8>>, path: &str) {
    let mut h = tar::Header::new_gnu();
    h.set_size(0);
    h.set_mode(0o755);
    h.set_entry_type(tar::EntryType::Directory);
    b.append_data(&mut h, path, &[][..]).unwrap();
}

/// `tar` as a stream of chunks of `chunk` bytes.
fn stream_of(tar: Vec<u8>, chunk: usize) -> sandbox_runner::ByteStream {
    let chunks: Vec<_> = tar
        .chunks(chunk)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    futures_util::stream::iter(chunks).boxed()
}

struct Store {
    dir: tempfile::TempDir,
    blobs: BlobStore,
}

fn store() -> Store {
    let dir = tempfile::tempdir().unwrap();
    let blobs = BlobStore::new(
        dir.path().join("blobs"),
        dir.path().join("tmp"),
        crate::workers::Workers::default(),
    );
    Store { dir, blobs }
}

impl Store {
    /// The payload files left once their removal in the background ran (at most 5 s).
    async fn temp_files(&self) -> Vec<std::path::PathBuf> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let left: Vec<_> = std::fs::read_dir(self.dir.path().join("blobs").join("quarantine"))
                .map(|d| d.map(|e| e.unwrap().path()).collect())
                .unwrap_or_default();
            if left.is_empty() || std::time::Instant::now() > deadline {
                return left;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }
}

/// A file read back out of its payload, as a preview reads it.
fn read_back(p: &Payload, at: Location, size: u64) -> Vec<u8> {
    use std::io::Read;
    let seed = p
        .keys
        .seal_chunk(p.written.full_chunks, false, &p.written.held);
    let file = std::fs::File::open(&p.file.path).unwrap();
    let mut out = Vec::new();
    crate::egress::payload::file_reader(
        file,
        p.keys.clone(),
        p.written.full_chunks,
        seed,
        at,
        size,
    )
    .unwrap()
    .read_to_end(&mut out)
    .unwrap();
    out
}

async fn run(s: &Store, tar: Vec<u8>, chunk: usize, limits: &Limits) -> Outcome {
    quarantine(stream_of(tar, chunk), &s.blobs, limits, 0, None, seen).await
}

fn refusals(r: Outcome) -> Vec<Refused> {
    match r {
        Err(QuarantineError::Refused(v)) => v,
        Err(e) => panic!("not a refusal: {e}"),
        Ok(q) => panic!("accepted {} files", q.0.len()),
    }
}

#[tokio::test]
async fn files_are_stored_byte_exact_with_their_sha256_in_every_chunking() {
    let long = format!("tables/{}/deep.csv", "n".repeat(140));
    let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut b = tar::Builder::new(Vec::new());
    dir(&mut b, "tables/");
    file(&mut b, "tables/counts.csv", b"id,n\n1,2\n");
    file(&mut b, &long, b"long\n");
    file(&mut b, "big.bin", &big);
    file(&mut b, "empty.txt", b"");
    let tar = b.into_inner().unwrap();
    for chunk in [1, 511, 512, 4096, 1 << 20] {
        let s = store();
        let (got, payload) = run(&s, tar.clone(), chunk, &LIMITS).await.unwrap();
        let want: [(&str, &[u8]); 4] = [
            ("tables/counts.csv", b"id,n\n1,2\n"),
            (&long, b"long\n"),
            ("big.bin", &big),
            ("empty.txt", b""),
        ];
        assert_eq!(got.len(), want.len());
        for (q, (path, content)) in got.into_iter().zip(want) {
            let sha = crate::sha256_hex(content);
            assert_eq!((q.path.as_str(), q.size), (path, content.len() as u64));
            assert_eq!(q.sha256, sha, "{path}");
            assert_eq!(q.report, (path.to_owned(), q.size, sha.clone()));
            let stored = read_back(&payload, q.location, q.size);
            assert!(stored == content, "{path}: byte-exact");
        }
        assert_eq!(s.temp_files().await.len(), 1, "the payload, until dropped");
        drop(payload);
        assert!(s.temp_files().await.is_empty(), "a payload not kept goes");
    }
}

#[tokio::test]
async fn links_devices_fifos_and_bad_names_are_all_refused_together() {
    let mut b = tar::Builder::new(Vec::new());
    file(&mut b, "ok.csv", b"1\n");
    link(&mut b, "sym", tar::EntryType::Symlink, "/etc/passwd");
    link(&mut b, "hard", tar::EntryType::Link, "ok.csv");
    raw(&mut b, b"tty", tar::EntryType::Char, b"");
    raw(&mut b, b"disk", tar::EntryType::Block, b"");
    raw(&mut b, b"pipe", tar::EntryType::Fifo, b"");
    raw(&mut b, b"../escape.csv", tar::EntryType::Regular, b"x");
    raw(&mut b, b"/etc/shadow", tar::EntryType::Regular, b"x");
    raw(&mut b, b"a\\b", tar::EntryType::Regular, b"x");
    // A name a release cannot hold: `SHA256SUMS` would break on it.
    raw(&mut b, b"new\nline.csv", tar::EntryType::Regular, b"x");
    file(&mut b, "again.csv", b"2\n");
    raw(&mut b, b"./again.csv", tar::EntryType::Regular, b"x");
    let s = store();
    let got = refusals(run(&s, b.into_inner().unwrap(), 700, &LIMITS).await);
    let kinds: Vec<(&str, &str)> = got
        .iter()
        .map(|r| match r {
            Refused::NotRegular { path, kind } => (path.as_str(), *kind),
            Refused::BadPath { path, .. } => (path.as_str(), "bad path"),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("sym", "symbolic link"),
            ("hard", "hard link"),
            ("tty", "device"),
            ("disk", "device"),
            ("pipe", "fifo"),
            ("../escape.csv", "bad path"),
            ("/etc/shadow", "bad path"),
            ("a\\\\b", "bad path"),
            ("new\\nline.csv", "bad path"),
            ("again.csv", "bad path"),
        ]
    );
    let shown = QuarantineError::Refused(got).to_string();
    assert!(shown.contains("`sym` is a symbolic link"), "{shown}");
    assert!(
        shown.contains("`..`") && shown.contains("absolute") && shown.contains("twice"),
        "{shown}"
    );
    assert!(
        s.temp_files().await.is_empty(),
        "the accepted file's blob is removed"
    );
}

#[tokio::test]
async fn refusals_stop_at_their_bound() {
    let mut b = tar::Builder::new(Vec::new());
    for i in 0..MAX_REFUSALS + 500 {
        link(&mut b, &format!("l{i}"), tar::EntryType::Symlink, "/");
    }
    let s = store();
    let got = refusals(run(&s, b.into_inner().unwrap(), 4096, &LIMITS).await);
    assert_eq!(got.len(), MAX_REFUSALS);
    assert_eq!(
        got.last(),
        Some(&Refused::NotRegular {
            path: format!("l{}", MAX_REFUSALS - 1),
            kind: "symbolic link"
        })
    );
}

#[tokio::test]
async fn limits_are_refused_with_what_passed_them() {
    let mut b = tar::Builder::new(Vec::new());
    file(&mut b, "a", &[1u8; 600]);
    file(&mut b, "b", &[2u8; 2000]);
    file(&mut b, "c", &[3u8; 900]);
    file(&mut b, "d", &[4u8; 10]);
    let tar = b.into_inner().unwrap();
    let s = store();
    let per_file = Limits {
        max_file_bytes: 1000,
        ..LIMITS
    };
    assert_eq!(
        refusals(run(&s, tar.clone(), 512, &per_file).await),
        [Refused::TooLarge {
            path: Some("b".into()),
            size: 2000,
            limit: 1000
        }]
    );
    let total = Limits {
        max_total_bytes: 3000,
        ..LIMITS
    };
    assert_eq!(
        refusals(run(&s, tar.clone(), 512, &total).await),
        [Refused::TooLarge {
            path: None,
            size: 3500,
            limit: 3000
        }]
    );
    let files = Limits {
        max_files: 2,
        ..LIMITS
    };
    assert_eq!(
        refusals(run(&s, tar.clone(), 512, &files).await),
        [Refused::TooMany {
            what: "files",
            limit: 2
        }]
    );
    let exact = Limits {
        max_files: 4,
        max_file_bytes: 2000,
        max_total_bytes: 3510,
    };
    assert_eq!(run(&s, tar, 512, &exact).await.unwrap().0.len(), 4);
    assert!(s.temp_files().await.is_empty());
}

#[tokio::test]
async fn folders_alone_a_broken_archive_and_a_failed_stream_are_refused() {
    let s = store();
    let mut b = tar::Builder::new(Vec::new());
    dir(&mut b, "a/");
    dir(&mut b, "a/b/");
    assert_eq!(
        refusals(run(&s, b.into_inner().unwrap(), 512, &LIMITS).await),
        [Refused::Empty]
    );

    let mut b = tar::Builder::new(Vec::new());
    file(&mut b, "a.csv", &[7u8; 5000]);
    let whole = b.into_inner().unwrap();
    let cut = whole[..3000].to_vec();
    let got = refusals(run(&s, cut, 512, &LIMITS).await);
    assert!(
        matches!(&got[..], [Refused::Malformed(m)] if m.contains("ends early")),
        "{got:?}"
    );
    let mut damaged = whole.clone();
    damaged[0] ^= 1;
    let got = refusals(run(&s, damaged, 512, &LIMITS).await);
    assert!(
        matches!(&got[..], [Refused::Malformed(m)] if m.contains("checksum")),
        "{got:?}"
    );

    // The engine fails halfway.
    let mut chunks: Vec<std::io::Result<Bytes>> = whole[..2048]
        .chunks(512)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    chunks.push(Err(std::io::Error::other("the engine went away")));
    let r = quarantine(
        futures_util::stream::iter(chunks).boxed(),
        &s.blobs,
        &LIMITS,
        0,
        None,
        seen,
    )
    .await;
    assert!(
        matches!(&r, Err(QuarantineError::Source { message: m, .. }) if m.contains("went away")),
        "{:?}",
        r.err()
    );
    assert!(
        s.temp_files().await.is_empty(),
        "the half-written file is removed"
    );
}

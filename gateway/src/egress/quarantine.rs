//! Quarantine: the files an egress request names, taken out of a sandbox's output folder into
//! the blob store in one pass over the backend's tar stream, with bounded memory.
//!
//! ```text
//! stream ──▶ tar reader (policy) ──▶ names, types, limits ──▶ caller's Inspect per file
//!                                          └──── data ──▶ writer thread: temp file, SHA-256
//!                                                          ──▶ fsync threads ──▶ FinishedBlob
//! ```
//!
//! Entries are named relative to `/vre/output`. Folders are passed over; every other entry that
//! is not a regular file (a symbolic or hard link, a device, a fifo) is refused by name, as is a
//! name that is not a path of the folder, a file past the limits, and a stream that is not a
//! whole tar archive. After the first refusal nothing more is written, but the stream is read
//! to its end so that every refusal is reported at once (up to [`MAX_REFUSALS`]). The temporary files of a refused or
//! failed quarantine are removed ([`FinishedBlob`] drops them); those of an accepted one are the
//! caller's to commit.

use std::collections::HashSet;
use std::fmt;

use axum::body::Bytes;
use futures_util::StreamExt;
use policy::archive::tar::{EntryKind, Header, Sink, TarError, TarScanner};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};

use crate::blobs::{BlobStore, FinishedBlob};

/// Chunks of the stream in flight to the writer thread (each with the ops it made): the memory
/// bound of a quarantine, beside one chunk of the stream and the names of its entries.
const QUEUE: usize = 8;
/// Folders one quarantine takes (their names are kept, to find a name given twice).
const MAX_FOLDERS: u64 = 100_000;
/// Refusals reported at most: reading stops at the last, so that a stream of nothing but
/// links holds no more than these in memory.
pub const MAX_REFUSALS: usize = 1000;

/// A check of one file's content, fed chunk by chunk as it streams into the blob store.
pub trait Inspect: Send {
    type Report: Send;
    fn update(&mut self, chunk: &[u8]);
    /// The file's end: its size and SHA-256 (lowercase hex).
    fn finish(self, size: u64, sha256: &str) -> Self::Report;
}

/// A file of the output folder, in a temporary blob.
pub struct Quarantined<R> {
    /// Relative to `/vre/output`.
    pub path: String,
    pub size: u64,
    pub sha256: String,
    /// Written and fsynced; removed unless committed.
    pub blob: FinishedBlob,
    pub report: R,
}

/// How much one quarantine may take.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_files: u64,
    pub max_file_bytes: u64,
    pub max_total_bytes: u64,
}

/// Why an entry, or the whole stream, is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refused {
    /// Not a regular file: `kind` is "symbolic link", "hard link", "device", "fifo" or
    /// "unknown entry type".
    NotRegular { path: String, kind: &'static str },
    /// More than `limit` files, or folders (`what`).
    TooMany { what: &'static str, limit: u64 },
    /// A file of `size` bytes (`path`), or all files together (`path` is None), past `limit`.
    TooLarge {
        path: Option<String>,
        size: u64,
        limit: u64,
    },
    /// A name that is not a path of the output folder (`..`, absolute, not UTF-8, twice).
    BadPath { path: String, why: String },
    /// Nothing but folders.
    Empty,
    /// The stream is not a whole tar archive.
    Malformed(String),
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refused::NotRegular { path, kind } => write!(
                f,
                "`{path}` is a {kind}: only regular files leave the output folder"
            ),
            Refused::TooMany { what, limit } => write!(f, "more than {limit} {what}"),
            Refused::TooLarge {
                path: Some(path),
                size,
                limit,
            } => write!(
                f,
                "`{path}` has {size} bytes, more than the {limit} allowed per file"
            ),
            Refused::TooLarge {
                path: None,
                size,
                limit,
            } => write!(
                f,
                "the files hold {size} bytes or more, more than the {limit} allowed together"
            ),
            Refused::BadPath { path, why } => write!(f, "`{path}`: {why}"),
            Refused::Empty => f.write_str("there is no file, only folders"),
            Refused::Malformed(why) => write!(f, "the output's archive is malformed: {why}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QuarantineError {
    /// Every refused entry, in the stream's order (the first [`MAX_REFUSALS`]).
    #[error("refused: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Refused(Vec<Refused>),
    /// The engine or the stream failed; `kind` tells a path the folder lacks
    /// (`NotFound`, `InvalidInput`) from an engine that failed.
    #[error("reading the output folder failed: {message}")]
    Source {
        kind: std::io::ErrorKind,
        message: String,
    },
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// What the writer thread is told.
enum Op {
    /// A new file begins.
    Start,
    Data(Bytes),
    /// The file ends: fsync it and send it back.
    End(oneshot::Sender<FinishedBlob>),
}

/// A file being read: its inspector, and how it comes back from the writer.
struct Current<I> {
    path: String,
    size: u64,
    inspector: I,
}

/// A file written or being written, until the writer sends it back.
struct Pending<I> {
    path: String,
    size: u64,
    inspector: I,
    written: oneshot::Receiver<FinishedBlob>,
}

/// The tar reader's sink: checks each entry, hands the data of accepted files to their
/// inspector and (as ops) to the writer.
struct Quarantine<'a, I, M> {
    limits: &'a Limits,
    make: M,
    /// The chunk being fed, whose slices the data ops are.
    chunk: Bytes,
    ops: Vec<Op>,
    current: Option<Current<I>>,
    pending: Vec<Pending<I>>,
    refused: Vec<Refused>,
    seen: HashSet<String>,
    files: u64,
    folders: u64,
    total: u64,
}

impl<I: Inspect, M: FnMut(&str) -> I> Quarantine<'_, I, M> {
    fn refuse(&mut self, r: Refused) {
        // Nothing more is written once anything is refused; what was is dropped at the end.
        self.current = None;
        self.refused.push(r);
    }
}

impl<I: Inspect, M: FnMut(&str) -> I> Sink for Quarantine<'_, I, M> {
    type Error = TarError;

    fn entry(&mut self, h: &Header) -> Result<(), TarError> {
        self.current = None;
        let shown = h.display_path();
        let path = match std::str::from_utf8(&h.path) {
            Err(_) => {
                self.refuse(Refused::BadPath {
                    path: shown,
                    why: "the name is not UTF-8".into(),
                });
                return Ok(());
            }
            Ok(p) => match sandbox_runner::output_path(p) {
                Ok(p) => p,
                Err(e) => {
                    self.refuse(Refused::BadPath {
                        path: shown,
                        why: e.to_string(),
                    });
                    return Ok(());
                }
            },
        };
        // Past this many names the stream is refused anyway (more files or folders than
        // allowed, or refusals enough to stop reading): names are no longer kept.
        let keep = self
            .limits
            .max_files
            .saturating_add(MAX_FOLDERS)
            .saturating_add(MAX_REFUSALS as u64);
        if (self.seen.len() as u64) < keep && !self.seen.insert(path.clone()) {
            self.refuse(Refused::BadPath {
                path,
                why: "it is in the archive twice".into(),
            });
            return Ok(());
        }
        let kind = match h.kind {
            EntryKind::Dir => {
                self.folders += 1;
                if self.folders == MAX_FOLDERS + 1 {
                    self.refuse(Refused::TooMany {
                        what: "folders",
                        limit: MAX_FOLDERS,
                    });
                }
                return Ok(());
            }
            EntryKind::File => None,
            EntryKind::Symlink => Some("symbolic link"),
            EntryKind::Hardlink => Some("hard link"),
            EntryKind::CharDevice | EntryKind::BlockDevice => Some("device"),
            EntryKind::Fifo => Some("fifo"),
            EntryKind::Other(_) => Some("unknown entry type"),
        };
        if let Some(kind) = kind {
            self.refuse(Refused::NotRegular { path, kind });
            return Ok(());
        }
        self.files += 1;
        if self.files == self.limits.max_files + 1 {
            self.refuse(Refused::TooMany {
                what: "files",
                limit: self.limits.max_files,
            });
        }
        if h.size > self.limits.max_file_bytes {
            self.refuse(Refused::TooLarge {
                path: Some(path),
                size: h.size,
                limit: self.limits.max_file_bytes,
            });
            return Ok(());
        }
        let before = self.total;
        self.total = self.total.saturating_add(h.size);
        if self.total > self.limits.max_total_bytes && before <= self.limits.max_total_bytes {
            self.refuse(Refused::TooLarge {
                path: None,
                size: self.total,
                limit: self.limits.max_total_bytes,
            });
        }
        if self.refused.is_empty() {
            self.ops.push(Op::Start);
            self.current = Some(Current {
                inspector: (self.make)(&path),
                path,
                size: h.size,
            });
        }
        Ok(())
    }

    fn data(&mut self, bytes: &[u8]) -> Result<(), TarError> {
        if let Some(c) = &mut self.current {
            c.inspector.update(bytes);
            self.ops.push(Op::Data(self.chunk.slice_ref(bytes)));
        }
        Ok(())
    }

    fn end_entry(&mut self) -> Result<(), TarError> {
        if let Some(c) = self.current.take() {
            let (tx, rx) = oneshot::channel();
            self.ops.push(Op::End(tx));
            self.pending.push(Pending {
                path: c.path,
                size: c.size,
                inspector: c.inspector,
                written: rx,
            });
        }
        Ok(())
    }
}

/// Files being fsynced at once, each on a thread of its own: the writer goes on with the next
/// file meanwhile, and the file system commits concurrent fsyncs together (one journal commit
/// for many small files instead of one each).
const FSYNCS: usize = 8;

/// A file written whole, to be fsynced before it is sent back.
struct Written {
    file: std::fs::File,
    blob: FinishedBlob,
    reply: oneshot::Sender<FinishedBlob>,
}

/// Writes the files it is sent, each into a temporary file of the blob store, hashed; hands
/// each written file to the fsync threads ([`FSYNCS`]), which send it back once it is durable.
/// A file it is not asked to finish, or whose fsync failed, is removed; the first failure is
/// the answer.
fn write_files(rx: mpsc::Receiver<Vec<Op>>, blobs: BlobStore) -> anyhow::Result<()> {
    let (tx, queue) = std::sync::mpsc::sync_channel::<Written>(FSYNCS);
    let queue = std::sync::Mutex::new(queue);
    std::thread::scope(|scope| {
        let syncers: Vec<_> = (0..FSYNCS)
            .map(|_| {
                scope.spawn(|| -> anyhow::Result<()> {
                    loop {
                        let next = queue
                            .lock()
                            .map_err(|_| anyhow::anyhow!("poisoned"))?
                            .recv();
                        let Ok(w) = next else { return Ok(()) };
                        w.file.sync_all()?;
                        drop(w.file);
                        // Nobody waits for it any more (the quarantine failed): dropped, it is
                        // removed.
                        let _ = w.reply.send(w.blob);
                    }
                })
            })
            .collect();
        let written = write_each(rx, &blobs, &tx);
        drop(tx);
        let mut result = written;
        for s in syncers {
            let synced = s
                .join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("an fsync thread panicked")));
            if result.is_ok() {
                result = synced;
            }
        }
        result
    })
}

fn write_each(
    mut rx: mpsc::Receiver<Vec<Op>>,
    blobs: &BlobStore,
    synced: &std::sync::mpsc::SyncSender<Written>,
) -> anyhow::Result<()> {
    use anyhow::Context;
    use std::io::Write;
    let mut current: Option<(
        FinishedBlob,
        std::io::BufWriter<crate::blobs::Writeback>,
        Sha256,
        u64,
    )> = None;
    while let Some(ops) = rx.blocking_recv() {
        for op in ops {
            match op {
                Op::Start => {
                    let (path, file) = blobs.temp_file()?;
                    // The guard first: an error below removes the file.
                    let blob = blobs.finished(path, String::new(), 0);
                    current = Some((
                        blob,
                        std::io::BufWriter::with_capacity(
                            256 * 1024,
                            crate::blobs::Writeback::new(file),
                        ),
                        Sha256::new(),
                        0,
                    ));
                }
                Op::Data(bytes) => {
                    let (_, file, hasher, size) =
                        current.as_mut().context("data outside a file")?;
                    file.write_all(&bytes)?;
                    hasher.update(&bytes);
                    *size += bytes.len() as u64;
                }
                Op::End(reply) => {
                    let (mut blob, file, hasher, size) =
                        current.take().context("the end of no file")?;
                    let file = file.into_inner().map_err(|e| e.into_error())?.file;
                    blob.set_content(hex::encode(hasher.finalize()), size);
                    if synced.send(Written { file, blob, reply }).is_err() {
                        // The fsync threads stopped: one failed, and says why.
                        return Ok(());
                    }
                }
            }
        }
    }
    Ok(())
}

/// Takes the regular files of `stream` (a tar whose entries are named relative to
/// `/vre/output`, as [`sandbox_runner::SandboxBackend::download_output`] makes it) into
/// temporary blobs, each hashed and fed to the inspector `make` gives for its path, in one
/// pass and with bounded memory; the files in the stream's order.
pub async fn quarantine<I: Inspect>(
    mut stream: sandbox_runner::ByteStream,
    blobs: &BlobStore,
    limits: &Limits,
    make: impl FnMut(&str) -> I + Send,
) -> Result<Vec<Quarantined<I::Report>>, QuarantineError> {
    let (tx, rx) = mpsc::channel::<Vec<Op>>(QUEUE);
    let store = blobs.clone();
    // Belongs to this request and is awaited before it answers: not among the `Workers`.
    let writer = tokio::task::spawn_blocking(move || write_files(rx, store));
    let mut tx = Some(tx);
    let mut scanner = TarScanner::default();
    let mut sink = Quarantine {
        limits,
        make,
        chunk: Bytes::new(),
        ops: Vec::new(),
        current: None,
        pending: Vec::new(),
        refused: Vec::new(),
        seen: HashSet::new(),
        files: 0,
        folders: 0,
        total: 0,
    };
    // The writer's own failure, which stops it: reported once it is joined.
    let mut writer_gone = false;
    let read = async {
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| QuarantineError::Source {
                kind: e.kind(),
                message: e.to_string(),
            })?;
            sink.chunk = chunk.clone();
            let fed = scanner.feed(&chunk, &mut sink);
            sink.chunk = Bytes::new();
            let ops = std::mem::take(&mut sink.ops);
            if let Err(e) = fed {
                sink.refused.push(Refused::Malformed(e.to_string()));
                return Ok(());
            }
            if sink.refused.len() >= MAX_REFUSALS {
                sink.refused.truncate(MAX_REFUSALS);
                return Ok(());
            }
            if !sink.refused.is_empty() {
                // Nothing more is written; what was is dropped.
                tx = None;
                sink.pending.clear();
                continue;
            }
            if let Some(t) = &tx
                && !ops.is_empty()
                && t.send(ops).await.is_err()
            {
                writer_gone = true;
                tx = None;
            }
            if writer_gone {
                return Ok(());
            }
        }
        if let Err(e) = scanner.finish() {
            sink.refused.push(Refused::Malformed(e.to_string()));
        }
        Ok::<(), QuarantineError>(())
    };
    let read = read.await;
    drop(tx);
    let failed = read.err().or_else(|| {
        if sink.refused.is_empty() && sink.files == 0 {
            sink.refused.push(Refused::Empty);
        }
        (!sink.refused.is_empty())
            .then(|| QuarantineError::Refused(std::mem::take(&mut sink.refused)))
    });
    if let Some(e) = failed {
        // What was written is dropped, and so removed; the writer is done before the answer.
        sink.pending.clear();
        let _ = writer.await;
        return Err(e);
    }
    if writer_gone {
        let why = match writer.await {
            Ok(Err(e)) => e,
            Ok(Ok(())) => anyhow::anyhow!("the quarantine's writer stopped early"),
            Err(e) => anyhow::anyhow!("the quarantine's writer failed: {e}"),
        };
        return Err(QuarantineError::Internal(why));
    }
    let mut out = Vec::with_capacity(sink.pending.len());
    for p in sink.pending {
        let Ok(blob) = p.written.await else {
            // The writer dropped it: it failed, and says why below.
            break;
        };
        let sha256 = blob.sha256().to_owned();
        out.push(Quarantined {
            report: p.inspector.finish(p.size, &sha256),
            path: p.path,
            size: p.size,
            sha256,
            blob,
        });
    }
    match writer.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(QuarantineError::Internal(e)),
        Err(e) => {
            return Err(QuarantineError::Internal(anyhow::anyhow!(
                "the quarantine's writer failed: {e}"
            )));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    /// Sees every byte of a file, and what it was told at its end.
    struct Seen {
        hasher: Sha256,
        bytes: u64,
        path: String,
    }

    impl Inspect for Seen {
        type Report = (String, u64, String, String);
        fn update(&mut self, chunk: &[u8]) {
            self.hasher.update(chunk);
            self.bytes += chunk.len() as u64;
        }
        fn finish(self, size: u64, sha256: &str) -> Self::Report {
            assert_eq!(size, self.bytes, "{}: every byte is inspected", self.path);
            (
                self.path,
                size,
                sha256.to_owned(),
                hex::encode(self.hasher.finalize()),
            )
        }
    }

    fn seen(path: &str) -> Seen {
        Seen {
            hasher: Sha256::new(),
            bytes: 0,
            path: path.to_owned(),
        }
    }

    type Outcome = Result<Vec<Quarantined<<Seen as Inspect>::Report>>, QuarantineError>;

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
        /// The temporary files once their removal in the background ran (at most 5 s).
        async fn temp_files(&self) -> Vec<std::path::PathBuf> {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            loop {
                let left: Vec<_> = std::fs::read_dir(self.dir.path().join("tmp"))
                    .map(|d| d.map(|e| e.unwrap().path()).collect())
                    .unwrap_or_default();
                if left.is_empty() || std::time::Instant::now() > deadline {
                    return left;
                }
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        }
    }

    async fn run(s: &Store, tar: Vec<u8>, chunk: usize, limits: &Limits) -> Outcome {
        quarantine(stream_of(tar, chunk), &s.blobs, limits, seen).await
    }

    fn refusals(r: Outcome) -> Vec<Refused> {
        match r {
            Err(QuarantineError::Refused(v)) => v,
            Err(e) => panic!("not a refusal: {e}"),
            Ok(q) => panic!("accepted {} files", q.len()),
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
            let got = run(&s, tar.clone(), chunk, &LIMITS).await.unwrap();
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
                assert_eq!(q.blob.sha256(), sha);
                assert_eq!(
                    q.report,
                    (path.to_owned(), q.size, sha.clone(), sha.clone())
                );
                q.blob.commit().await.unwrap();
                let stored = std::fs::read(s.blobs.path_of(&sha).unwrap()).unwrap();
                assert!(stored == content, "{path}: byte-exact");
            }
            assert!(s.temp_files().await.is_empty());
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
        assert_eq!(run(&s, tar, 512, &exact).await.unwrap().len(), 4);
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
}

//! Quarantine: the files an egress request names, taken out of a sandbox's output folder into
//! the round's payload (`egress::payload`) in one pass over the backend's tar stream, with
//! bounded memory.
//!
//! ```text
//! stream ──▶ tar reader (policy) ──▶ names, types, limits ──▶ caller's Inspect
//!                                          └──── data ──▶ writer: SHA-256, tar ──▶ zstd ×2
//!                                                          ──▶ seal, write ──▶ one fsync
//! ```
//!
//! Entries are named relative to `/vre/output`. Folders are passed over; every other entry that
//! is not a regular file (a symbolic or hard link, a device, a fifo) is refused by name, as is a
//! name that is not a path of the folder, a file past the limits, and a stream that is not a
//! whole tar archive. After the first refusal nothing more is written, but the stream is read
//! to its end so that every refusal is reported at once (up to [`MAX_REFUSALS`]). The payload
//! of a refused or failed quarantine is removed ([`NewPayload`] drops it); that of an accepted
//! one is the caller's to keep once its round is recorded.

use std::collections::HashSet;
use std::fmt;

use axum::body::Bytes;
use futures_util::StreamExt;
use policy::archive::tar::{EntryKind, Header, Sink, TarError, TarScanner};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::blobs::{BlobStore, NewPayload};
use crate::egress::payload::{PayloadWriter, Written};
use crate::release::sealed::PayloadKeys;
use crate::store::egress::Location;

/// Batches of ops in flight to the writer thread: the memory bound of a quarantine, beside the
/// batch being made and the names of its entries.
const QUEUE: usize = 32;
/// The data a batch of ops carries before it is sent (the chunks of the engine's stream are
/// smaller): one message, and one wakeup of the writer, per batch rather than per chunk.
const BATCH: usize = 256 * 1024;
/// Folders one quarantine takes (their names are kept, to find a name given twice).
const MAX_FOLDERS: u64 = 100_000;
/// Refusals reported at most: reading stops at the last, so that a stream of nothing but
/// links holds no more than these in memory.
pub const MAX_REFUSALS: usize = 1000;

/// A check of one file's content, fed chunk by chunk as it streams into the payload.
pub trait Inspect: Send {
    type Report: Send;
    fn update(&mut self, chunk: &[u8]);
    /// The file's end: its size.
    fn finish(self, size: u64) -> Self::Report;
}

/// A file of the output folder, in the payload.
pub struct Quarantined<R> {
    /// Relative to `/vre/output`.
    pub path: String,
    pub size: u64,
    pub sha256: String,
    /// Where it is in the payload.
    pub location: Location,
    pub report: R,
}

/// The payload of a quarantine: written and fsynced, removed unless kept.
pub struct Payload {
    pub file: NewPayload,
    pub keys: PayloadKeys,
    pub written: Written,
    /// The recipient its release was prepared for, and that release's age header (the
    /// package's digest over it is begun in `written`).
    pub prepared: Option<(String, Vec<u8>)>,
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
    Start {
        path: String,
        size: u64,
    },
    Data(Bytes),
    /// The file ends.
    End,
}

/// A file being read: its inspector.
struct Current<I> {
    path: String,
    size: u64,
    inspector: I,
    read: u64,
}

/// A file read whole, its SHA-256 and place in the payload known once the payload is written.
struct Pending<R> {
    path: String,
    size: u64,
    /// The inspector's report, made as the file ended (while the next is read).
    report: R,
}

/// The tar reader's sink: checks each entry, hands the data of accepted files to their
/// inspector and (as ops) to the writer.
struct Quarantine<'a, I: Inspect, M> {
    limits: &'a Limits,
    make: M,
    /// The chunk being fed, whose slices the data ops are.
    chunk: Bytes,
    ops: Vec<Op>,
    /// The data in `ops`, in bytes.
    batched: usize,
    current: Option<Current<I>>,
    pending: Vec<Pending<I::Report>>,
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
            Ok(p) => match sandbox_runner::output_path(p).and_then(|p| {
                // A name a release cannot hold is refused now, not when it is approved.
                crate::release::check_name(&format!("{}/{p}", crate::release::FILES_DIR))
                    .map_err(sandbox_runner::Error::InvalidPath)?;
                Ok(p)
            }) {
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
            self.ops.push(Op::Start {
                path: path.clone(),
                size: h.size,
            });
            self.current = Some(Current {
                inspector: (self.make)(&path),
                path,
                size: h.size,
                read: 0,
            });
        }
        Ok(())
    }

    fn data(&mut self, bytes: &[u8]) -> Result<(), TarError> {
        if let Some(c) = &mut self.current {
            c.inspector.update(bytes);
            c.read += bytes.len() as u64;
            self.ops.push(Op::Data(self.chunk.slice_ref(bytes)));
            self.batched += bytes.len();
        }
        Ok(())
    }

    fn end_entry(&mut self) -> Result<(), TarError> {
        if let Some(c) = self.current.take() {
            debug_assert_eq!(c.read, c.size);
            self.pending.push(Pending {
                report: c.inspector.finish(c.size),
                path: c.path,
                size: c.size,
            });
            self.ops.push(Op::End);
        }
        Ok(())
    }
}

/// Writes the files it is sent into the payload, in order, hashing each (here, off the
/// reader's thread, which parses the stream and runs the checks), and finishes the payload
/// (fsynced). Answers it with the files' SHA-256 (hex), in order.
fn write_payload(
    mut rx: mpsc::Receiver<Vec<Op>>,
    mut writer: PayloadWriter,
    abandoned: &std::sync::atomic::AtomicBool,
) -> anyhow::Result<(Written, Vec<String>)> {
    let mut hashes = Vec::new();
    let mut hasher = Sha256::new();
    while let Some(ops) = rx.blocking_recv() {
        for op in ops {
            match op {
                Op::Start { path, size } => writer.begin(&path, size)?,
                Op::Data(bytes) => {
                    hasher.update(&bytes);
                    writer.data(&bytes)?;
                }
                Op::End => {
                    writer.end()?;
                    hashes.push(hex::encode(hasher.finalize_reset()));
                }
            }
        }
    }
    // A refused quarantine's payload is removed, not made durable first.
    anyhow::ensure!(
        !abandoned.load(std::sync::atomic::Ordering::Relaxed),
        "the quarantine was refused"
    );
    Ok((writer.finish()?, hashes))
}

/// Sends the batch of `ops` (if any) to the writer; false if the writer is gone (and `tx` with
/// it).
async fn send(tx: &mut Option<mpsc::Sender<Vec<Op>>>, ops: &mut Vec<Op>) -> bool {
    let batch = std::mem::take(ops);
    let Some(t) = tx else { return true };
    if batch.is_empty() || t.send(batch).await.is_ok() {
        return true;
    }
    *tx = None;
    false
}

/// Takes the regular files of `stream` (a tar whose entries are named relative to
/// `/vre/output`, as [`sandbox_runner::SandboxBackend::download_output`] makes it) into a new
/// payload under fresh keys, each hashed and fed to the inspector `make` gives for its path,
/// in one pass and with bounded memory; the files in the stream's order. `mtime` goes on
/// every tar entry. With `recipient` (the requester's), the release is prepared for it: its
/// header made now and the package's digest begun as the payload is written.
pub async fn quarantine<I: Inspect>(
    mut stream: sandbox_runner::ByteStream,
    blobs: &BlobStore,
    limits: &Limits,
    mtime: u64,
    recipient: Option<&str>,
    make: impl FnMut(&str) -> I + Send,
) -> Result<(Vec<Quarantined<I::Report>>, Payload), QuarantineError> {
    let (tx, rx) = mpsc::channel::<Vec<Op>>(QUEUE);
    let keys = PayloadKeys::generate();
    let prepared = recipient.and_then(|r| Some((r.to_owned(), keys.header(r).ok()?)));
    let header = prepared.as_ref().map(|(_, h)| h.clone());
    let (file, out) = {
        let blobs = blobs.clone();
        tokio::task::spawn_blocking(move || blobs.new_payload())
            .await
            .map_err(|e| anyhow::anyhow!("creating a payload: {e}"))??
    };
    let writer_keys = keys.clone();
    let abandoned = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let abandon = abandoned.clone();
    // Belongs to this request and is awaited before it answers: not among the `Workers`.
    let writer = tokio::task::spawn_blocking(move || {
        write_payload(
            rx,
            PayloadWriter::start(out, writer_keys, mtime, header.as_deref())?,
            &abandon,
        )
    });
    let mut tx = Some(tx);
    let mut scanner = TarScanner::default();
    let mut sink = Quarantine {
        limits,
        make,
        chunk: Bytes::new(),
        ops: Vec::new(),
        batched: 0,
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
                abandoned.store(true, std::sync::atomic::Ordering::Relaxed);
                tx = None;
                sink.pending.clear();
                sink.ops.clear();
                continue;
            }
            if sink.batched >= BATCH {
                sink.batched = 0;
                if !send(&mut tx, &mut sink.ops).await {
                    writer_gone = true;
                    return Ok(());
                }
            }
        }
        if let Err(e) = scanner.finish() {
            sink.refused.push(Refused::Malformed(e.to_string()));
        } else if sink.refused.is_empty() && !send(&mut tx, &mut sink.ops).await {
            writer_gone = true;
        }
        Ok::<(), QuarantineError>(())
    };
    let read = read.await;
    let failed = read.err().or_else(|| {
        if sink.refused.is_empty() && sink.files == 0 {
            sink.refused.push(Refused::Empty);
        }
        (!sink.refused.is_empty())
            .then(|| QuarantineError::Refused(std::mem::take(&mut sink.refused)))
    });
    if failed.is_some() {
        abandoned.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    drop(tx);
    if let Some(e) = failed {
        // What was written is dropped, and so removed; the writer is done before the answer.
        sink.pending.clear();
        let _ = writer.await;
        return Err(e);
    }
    if writer_gone {
        let why = match writer.await {
            Ok(Err(e)) => e,
            Ok(Ok(_)) => anyhow::anyhow!("the quarantine's writer stopped early"),
            Err(e) => anyhow::anyhow!("the quarantine's writer failed: {e}"),
        };
        return Err(QuarantineError::Internal(why));
    }
    let (written, hashes) = match writer.await {
        Ok(Ok(w)) => w,
        Ok(Err(e)) => return Err(QuarantineError::Internal(e)),
        Err(e) => {
            return Err(QuarantineError::Internal(anyhow::anyhow!(
                "the quarantine's writer failed: {e}"
            )));
        }
    };
    if written.locations.len() != sink.pending.len() || hashes.len() != sink.pending.len() {
        return Err(QuarantineError::Internal(anyhow::anyhow!(
            "the payload holds {} files ({} hashed), {} were read",
            written.locations.len(),
            hashes.len(),
            sink.pending.len()
        )));
    }
    {
        let blobs = blobs.clone();
        tokio::task::spawn_blocking(move || blobs.sync_quarantine())
            .await
            .map_err(|e| anyhow::anyhow!("syncing the quarantine folder: {e}"))?;
    }
    let out = sink
        .pending
        .into_iter()
        .zip(written.locations.iter().zip(hashes))
        .map(|(p, (&location, sha256))| Quarantined {
            report: p.report,
            path: p.path,
            size: p.size,
            sha256,
            location,
        })
        .collect();
    Ok((
        out,
        Payload {
            file,
            keys,
            written,
            prepared,
        },
    ))
}

#[cfg(test)]
mod tests;

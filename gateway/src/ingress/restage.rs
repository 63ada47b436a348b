//! Restaging: an approved archive re-emitted for a sandbox, with root-owned, read-only headers,
//! in one read of the stored archive, every file checked against the approved manifest.

use std::path::PathBuf;

use axum::body::Bytes;
use policy::archive::rules::{Rule, Violation};
use policy::archive::tar::{EntryKind, Header, Sink};
use sha2::{Digest, Sha256};

use crate::ingress::unpack::Unpacker;
use crate::store::ingress::ManifestEntry;

/// A stored archive re-emitted for staging: the same paths and contents, every entry owned by
/// root and read-only (directories and executables 0555, other files 0444), each file's SHA-256
/// checked against the approved manifest on the way. The stream ends with an error if anything
/// differs, so a mismatch never lands complete in a sandbox; the worker's error is then
/// [`Tampered`].
pub fn restage(
    blob: PathBuf,
    manifest: Vec<ManifestEntry>,
) -> (
    tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>,
    tokio::task::JoinHandle<anyhow::Result<Restaged>>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    // Part of the staging request, which awaits the handle: not background work.
    let handle = tokio::task::spawn_blocking(move || restage_worker(blob, manifest, tx));
    (rx, handle)
}

/// The stored archive is not what the committee approved: a file differs from the manifest, an
/// entry is missing or added, or it no longer reads as the archive it was.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Tampered(pub Violation);

/// What was staged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restaged {
    /// SHA-256 of the tar stream as sent to the sandbox.
    pub sha256: String,
    /// SHA-256 of the stored archive, as it was read for staging.
    pub source_sha256: String,
    pub files: u64,
    pub bytes: u64,
}

struct RestageSink {
    tx: tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
    buf: Vec<u8>,
    stream_hash: Sha256,
    expected: std::collections::HashMap<String, Option<String>>,
    current: Option<(String, Sha256, u64, bool)>,
    files: u64,
    bytes: u64,
    /// The sandbox stopped taking the stream: what fails then is no fault of the archive.
    stopped: bool,
}

const RESTAGE_CHUNK: usize = 256 * 1024;

impl RestageSink {
    fn emit(&mut self, bytes: &[u8]) -> Result<(), Violation> {
        self.stream_hash.update(bytes);
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= RESTAGE_CHUNK {
            self.flush()?;
        }
        Ok(())
    }
    fn flush(&mut self) -> Result<(), Violation> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::take(&mut self.buf));
        if self.tx.blocking_send(Ok(chunk)).is_err() {
            self.stopped = true;
            return Err(Violation {
                rule: Rule::Truncated,
                entry: None,
                message: "the sandbox stopped receiving".into(),
            });
        }
        Ok(())
    }
}

fn mismatch(path: &str, what: &str) -> Violation {
    Violation {
        rule: Rule::Corrupt,
        entry: Some(path.to_owned()),
        message: format!("the stored archive differs from the approved manifest: {what}"),
    }
}

impl Sink for RestageSink {
    type Error = Violation;
    fn entry(&mut self, h: &Header) -> Result<(), Violation> {
        let raw = String::from_utf8_lossy(&h.path).into_owned();
        let mut p = raw.as_str();
        while let Some(r) = p.strip_prefix("./") {
            p = r;
        }
        let p = p.trim_end_matches('/').to_owned();
        if p.is_empty() || p == "." {
            self.current = None;
            return Ok(());
        }
        let Some(expected) = self.expected.get(&p) else {
            return Err(mismatch(&p, "an entry that is not in the manifest"));
        };
        let is_file = h.kind == EntryKind::File;
        if expected.is_some() != is_file {
            return Err(mismatch(&p, "an entry of another type"));
        }
        let mode = if !is_file || h.mode & 0o111 != 0 {
            0o555
        } else {
            0o444
        };
        let header = policy::archive::tar::entry_header(
            &p,
            if is_file {
                EntryKind::File
            } else {
                EntryKind::Dir
            },
            h.size,
            mode,
        );
        self.emit(&header)?;
        self.current = Some((p, Sha256::new(), h.size, is_file));
        Ok(())
    }
    fn data(&mut self, bytes: &[u8]) -> Result<(), Violation> {
        if let Some((_, hasher, _, _)) = &mut self.current {
            hasher.update(bytes);
        }
        self.emit(bytes)
    }
    fn end_entry(&mut self) -> Result<(), Violation> {
        if let Some((path, hasher, size, is_file)) = self.current.take() {
            let pad = policy::archive::tar::padding(size);
            self.emit(&vec![0u8; pad])?;
            if is_file {
                let got = hex::encode(hasher.finalize());
                let want = self.expected.remove(&path).flatten();
                if want.as_deref() != Some(got.as_str()) {
                    return Err(mismatch(&path, "its SHA-256 is not the approved one"));
                }
                self.files += 1;
                self.bytes += size;
            } else {
                self.expected.remove(&path);
            }
        }
        Ok(())
    }
}

fn restage_worker(
    blob: PathBuf,
    manifest: Vec<ManifestEntry>,
    tx: tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
) -> anyhow::Result<Restaged> {
    use std::io::Read;
    let err_tx = tx.clone();
    let mut sink = RestageSink {
        tx,
        buf: Vec::with_capacity(RESTAGE_CHUNK),
        stream_hash: Sha256::new(),
        expected: manifest.into_iter().map(|e| (e.path, e.sha256)).collect(),
        current: None,
        files: 0,
        bytes: 0,
        stopped: false,
    };
    let mut source = Sha256::new();
    let mut run = |sink: &mut RestageSink| -> anyhow::Result<()> {
        let mut f = match std::fs::File::open(&blob) {
            // Removed behind the gateway's back: no less a change than an edit.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Violation {
                    rule: Rule::Truncated,
                    entry: None,
                    message: "the stored archive is gone from the blob store".into(),
                }
                .into());
            }
            f => f?,
        };
        let mut u = Unpacker::default();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            source.update(&buf[..n]);
            u.feed(&buf[..n], sink, |_, _| Ok(()))?;
        }
        u.finish()?;
        if let Some(missing) = sink.expected.keys().next() {
            return Err(mismatch(
                missing,
                "an approved entry is missing from the stored archive",
            )
            .into());
        }
        sink.emit(&policy::archive::tar::END)?;
        sink.flush()?;
        Ok(())
    };
    match run(&mut sink) {
        Ok(()) => Ok(Restaged {
            sha256: hex::encode(sink.stream_hash.clone().finalize()),
            source_sha256: hex::encode(source.finalize()),
            files: sink.files,
            bytes: sink.bytes,
        }),
        Err(e) => {
            let _ = err_tx.blocking_send(Err(std::io::Error::other(e.to_string())));
            // A rule the stored archive broke (it was read whole at its upload) means it changed
            // since; a failure to read it or to send it on is another matter.
            Err(match e.downcast::<Violation>() {
                Ok(v) if !sink.stopped => Tampered(v).into(),
                Ok(v) => v.into(),
                Err(e) => e,
            })
        }
    }
}

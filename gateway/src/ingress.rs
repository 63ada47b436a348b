//! Ingress: archives streamed in, checksummed, validated entry by entry and stored.
//!
//! An upload runs through two blocking workers fed from the request body, so the network, the
//! disk and the hashing overlap and nothing is held in memory beyond a few chunks:
//!
//! ```text
//! body ──chunks──┬──▶ store worker: temp file + SHA-256 of the upload, fsync
//!                └──▶ scan worker:  [zstd] ▶ tar reader ▶ rules ▶ SHA-256 per entry, checks
//! ```
//!
//! The first broken rule stops the scan; the rest of the body is drained (up to the upload
//! limit) so the client gets a clean answer, and the temporary file is removed. Only after both
//! workers succeed does the caller record the application and commit the blob.

use std::path::PathBuf;
use tokio::sync::mpsc::{Receiver, channel};

use axum::body::Bytes;
use futures_util::{Stream, StreamExt};
use policy::archive::checks::{CheckResult, CheckSettings, Checker, PREFIX_BYTES};
use policy::archive::rules::{Limits, Rule, Validator, Violation};
use policy::archive::tar::{EntryKind, Header, Sink, TarScanner};
use sha2::{Digest, Sha256};

use crate::blobs::{BlobStore, FinishedBlob};
use crate::store::ManifestEntry;

/// zstd frames that need a window larger than 2^this are refused (memory stays bounded).
const ZSTD_WINDOW_LOG_MAX: u32 = 27;
/// Chunks in flight per worker: the memory bound of a streaming upload.
const QUEUE: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Tar,
    TarZstd,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Tar => "tar",
            Format::TarZstd => "tar.zst",
        }
    }
    fn sniff(first: &[u8]) -> Format {
        if first.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Format::TarZstd
        } else {
            Format::Tar
        }
    }
}

/// What an accepted upload is.
pub struct Ingested {
    pub blob: FinishedBlob,
    pub format: Format,
    pub upload_bytes: u64,
    pub tar_sha256: String,
    pub unpacked_bytes: u64,
    pub entries: Vec<ManifestEntry>,
    pub checks: Vec<CheckResult>,
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("{0}")]
    Refused(Violation),
    #[error("the upload was interrupted: {0}")]
    Interrupted(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// Streams `body` through validation into a temporary blob.
pub async fn ingest<S, E>(
    mut body: S,
    blobs: &BlobStore,
    limits: Limits,
    checks: CheckSettings,
    direct_io: bool,
) -> Result<Ingested, IngestError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    // Bounded queues: the body is read no faster than the slower worker takes it.
    let (store_tx, store_rx) = channel::<Bytes>(QUEUE);
    let (scan_tx, scan_rx) = channel::<Bytes>(QUEUE);
    let (path, file) = blobs.temp_file()?;
    let direct = direct_io.then(|| open_direct(&path)).flatten();
    // The guard removes the temporary file on every early return.
    let mut blob = blobs.finished(path, String::new(), 0);
    // Both workers belong to this request and are awaited before it answers: not background
    // work, so not among the gateway's `Workers`.
    let store = tokio::task::spawn_blocking(move || match direct {
        Some(direct) => store_direct(file, direct, store_rx),
        None => store_buffered(file, store_rx),
    });
    let scan_limits = limits.clone();
    let scan = tokio::task::spawn_blocking(move || scan_worker(scan_rx, scan_limits, checks));

    let mut uploaded: u64 = 0;
    let mut scan_tx = Some(scan_tx);
    let mut interrupted = None;
    let mut too_large = None;
    while let Some(chunk) = body.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                interrupted = Some(e.to_string());
                break;
            }
        };
        uploaded += chunk.len() as u64;
        if uploaded > limits.max_upload_bytes {
            too_large = limits.check_upload_size(uploaded).err();
            break;
        }
        if let Some(tx) = &scan_tx {
            if tx.send(chunk.clone()).await.is_err() {
                // The scan stopped on a broken rule: stop storing, drain the rest.
                scan_tx = None;
            }
        }
        if scan_tx.is_none() {
            continue;
        }
        if store_tx.send(chunk).await.is_err() {
            break;
        }
    }
    drop(scan_tx);
    drop(store_tx);
    let scanned = scan
        .await
        .map_err(|e| anyhow::anyhow!("the scan worker failed: {e}"))?;
    let stored = store
        .await
        .map_err(|e| anyhow::anyhow!("the store worker failed: {e}"))?;
    if let Some(v) = too_large {
        return Err(IngestError::Refused(v));
    }
    if let Some(why) = interrupted {
        return Err(IngestError::Interrupted(why));
    }
    let scanned = scanned.map_err(IngestError::Refused)?;
    let (sha256, size) = stored?;
    let tar_sha256 = scanned.tar_sha256.clone().unwrap_or_else(|| sha256.clone());
    blob.set_content(sha256, size);
    Ok(Ingested {
        blob,
        format: scanned.format,
        upload_bytes: uploaded,
        tar_sha256,
        unpacked_bytes: scanned.unpacked,
        entries: scanned.entries,
        checks: scanned.checks,
    })
}

fn store_buffered(
    mut file: std::fs::File,
    mut rx: Receiver<Bytes>,
) -> anyhow::Result<(String, u64)> {
    use std::io::Write;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut writeback = Writeback::default();
    while let Some(chunk) = rx.blocking_recv() {
        file.write_all(&chunk)?;
        hasher.update(&chunk);
        size += chunk.len() as u64;
        writeback.written(&file, size);
    }
    file.sync_all()?;
    Ok((hex::encode(hasher.finalize()), size))
}

/// The temporary file opened again for direct I/O, when its file system allows it (tmpfs
/// does not).
fn open_direct(path: &std::path::Path) -> Option<std::fs::File> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(path)
            .ok()
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = path;
        None
    }
}

/// Direct I/O writes from buffers aligned to this, in multiples of it.
const DIRECT_ALIGN: usize = 4096;
const DIRECT_BUF: usize = 1 << 20;

/// A `DIRECT_BUF`-sized window of a vector, aligned to `DIRECT_ALIGN`.
struct AlignedBuf {
    raw: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBuf {
    fn new() -> Self {
        let raw = vec![0u8; DIRECT_BUF + DIRECT_ALIGN];
        let start = raw.as_ptr().align_offset(DIRECT_ALIGN);
        AlignedBuf { raw, start, len: 0 }
    }
    fn room(&self) -> usize {
        DIRECT_BUF - self.len
    }
    fn push(&mut self, bytes: &[u8]) {
        let at = self.start + self.len;
        self.raw[at..at + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }
    fn filled(&self) -> &[u8] {
        &self.raw[self.start..self.start + self.len]
    }
}

/// Writes the upload around the page cache: the worker hashes and copies each chunk into
/// aligned buffers, a writer thread writes full buffers with direct I/O, so hashing and the
/// disk overlap and the kernel neither copies the upload nor writes it back later. The last
/// few bytes past the alignment go through the page cache; the final fsync covers them and the
/// metadata.
fn store_direct(
    file: std::fs::File,
    direct: std::fs::File,
    mut rx: Receiver<Bytes>,
) -> anyhow::Result<(String, u64)> {
    use std::os::unix::fs::FileExt;
    let (full_tx, full_rx) = std::sync::mpsc::sync_channel::<(AlignedBuf, u64)>(2);
    let (free_tx, free_rx) = std::sync::mpsc::channel::<AlignedBuf>();
    for _ in 0..3 {
        free_tx
            .send(AlignedBuf::new())
            .expect("the receiver is here");
    }
    // A file system may take the open and still refuse the writes (EINVAL for an alignment
    // it does not support): the rest then goes through the page cache.
    let buffered = file.try_clone()?;
    std::thread::scope(|scope| {
        let writer = scope.spawn(move || -> std::io::Result<()> {
            let mut through_cache = false;
            for (mut buf, offset) in full_rx {
                if !through_cache {
                    match direct.write_all_at(buf.filled(), offset) {
                        Ok(()) => {}
                        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => through_cache = true,
                        Err(e) => return Err(e),
                    }
                }
                if through_cache {
                    buffered.write_all_at(buf.filled(), offset)?;
                }
                buf.len = 0;
                if free_tx.send(buf).is_err() {
                    break;
                }
            }
            Ok(())
        });
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut written = 0u64;
        let mut buf = free_rx.recv().ok();
        while let Some(chunk) = rx.blocking_recv() {
            hasher.update(&chunk);
            size += chunk.len() as u64;
            let mut rest = &chunk[..];
            while let (false, Some(b)) = (rest.is_empty(), buf.as_mut()) {
                let n = rest.len().min(b.room());
                b.push(&rest[..n]);
                rest = &rest[n..];
                if b.room() == 0 {
                    let full = buf.take().expect("just used");
                    let len = full.len as u64;
                    if full_tx.send((full, written)).is_ok() {
                        written += len;
                        buf = free_rx.recv().ok();
                    }
                }
            }
            if buf.is_none() {
                break;
            }
        }
        // The tail: its aligned part directly, the rest through the page cache.
        let mut tail = Vec::new();
        if let Some(mut b) = buf.take() {
            let aligned = b.len / DIRECT_ALIGN * DIRECT_ALIGN;
            tail = b.filled()[aligned..].to_vec();
            if aligned > 0 {
                b.len = aligned;
                if full_tx.send((b, written)).is_ok() {
                    written += aligned as u64;
                }
            }
        }
        drop(full_tx);
        writer
            .join()
            .map_err(|_| anyhow::anyhow!("the direct writer panicked"))??;
        if written + tail.len() as u64 != size {
            return Err(anyhow::anyhow!("the direct writer stopped"));
        }
        file.write_all_at(&tail, written)?;
        file.sync_all()?;
        Ok((hex::encode(hasher.finalize()), size))
    })
}

/// Starts writing an upload to disk while it is still arriving, so that the `fsync` at its end
/// has little left to do instead of the whole file. Each `WRITEBACK_WINDOW` written is handed
/// to the kernel's writeback without waiting for it; the window before it is waited for, which
/// also keeps the page cache from filling with one upload's dirty pages.
#[derive(Default)]
struct Writeback {
    /// The window handed to writeback last: `[previous, kicked)`.
    previous: u64,
    kicked: u64,
}

const WRITEBACK_WINDOW: u64 = 8 << 20;

impl Writeback {
    // The one system call without a safe wrapper in the dependencies.
    #[allow(unsafe_code)]
    fn written(&mut self, file: &std::fs::File, size: u64) {
        if size - self.kicked < WRITEBACK_WINDOW {
            return;
        }
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            let fd = file.as_raw_fd();
            // Best effort: the final fsync is what makes the upload durable.
            // SAFETY: `fd` is an open file owned by `file`; the calls take no pointers.
            unsafe {
                libc::sync_file_range(
                    fd,
                    self.kicked as i64,
                    (size - self.kicked) as i64,
                    libc::SYNC_FILE_RANGE_WRITE,
                );
                if self.kicked > self.previous {
                    let (start, len) = (self.previous as i64, (self.kicked - self.previous) as i64);
                    libc::sync_file_range(fd, start, len, libc::SYNC_FILE_RANGE_WAIT_BEFORE);
                    // Written and clean: the upload is not read again soon (staging comes
                    // after a review), so its pages leave the cache to what others use.
                    libc::posix_fadvise(fd, start, len, libc::POSIX_FADV_DONTNEED);
                }
            }
        }
        #[cfg(not(target_os = "linux"))]
        let _ = file;
        self.previous = self.kicked;
        self.kicked = size;
    }
}

struct Scanned {
    format: Format,
    tar_sha256: Option<String>,
    unpacked: u64,
    entries: Vec<ManifestEntry>,
    checks: Vec<CheckResult>,
}

/// Receives the tar (or zstd-compressed tar) stream and turns it into events for a sink.
pub struct Unpacker {
    format: Option<Format>,
    zstd: Option<zstd::stream::raw::Decoder<'static>>,
    out: Vec<u8>,
    /// The zstd decoder says a frame ended and nothing is pending.
    frame_done: bool,
    pub scanner: TarScanner,
    pub compressed_in: u64,
    pub unpacked_out: u64,
    tar_hasher: Sha256,
}

impl Default for Unpacker {
    fn default() -> Self {
        Unpacker {
            format: None,
            zstd: None,
            out: vec![0u8; 128 * 1024],
            frame_done: true,
            scanner: TarScanner::default(),
            compressed_in: 0,
            unpacked_out: 0,
            tar_hasher: Sha256::new(),
        }
    }
}

fn zstd_error(e: std::io::Error) -> Violation {
    let msg = e.to_string();
    let rule = if msg.contains("indow") {
        Rule::CompressionRatio
    } else {
        Rule::Corrupt
    };
    Violation {
        rule,
        entry: None,
        message: format!("the zstd stream cannot be decompressed: {msg}"),
    }
}

impl Unpacker {
    pub fn format(&self) -> Option<Format> {
        self.format
    }

    /// Feeds raw upload bytes; `ratio` checks the expansion after each step.
    pub fn feed<S: Sink<Error = Violation>>(
        &mut self,
        chunk: &[u8],
        sink: &mut S,
        ratio: impl Fn(u64, u64) -> Result<(), Violation>,
    ) -> Result<(), Violation> {
        use zstd::stream::raw::Operation;
        if chunk.is_empty() {
            return Ok(());
        }
        if self.compressed_in == 0 {
            for (magic, what) in [
                (&b"\x1f\x8b"[..], "gzip"),
                (b"BZh", "bzip2"),
                (b"\xfd7zXZ\0", "xz"),
                (b"PK\x03\x04", "zip"),
            ] {
                if chunk.starts_with(magic) {
                    return Err(Violation {
                        rule: Rule::Corrupt,
                        entry: None,
                        message: format!(
                            "{what} archives are not accepted: send a tar, or a tar compressed with zstd"
                        ),
                    });
                }
            }
        }
        self.compressed_in += chunk.len() as u64;
        let format = *self.format.get_or_insert_with(|| Format::sniff(chunk));
        if format == Format::Tar {
            // The tar is the upload: its hash is the upload's, computed by the store worker.
            self.unpacked_out += chunk.len() as u64;
            return self.scanner.feed(chunk, sink);
        }
        if self.zstd.is_none() {
            let mut d = zstd::stream::raw::Decoder::new().map_err(zstd_error)?;
            d.set_parameter(zstd::stream::raw::DParameter::WindowLogMax(
                ZSTD_WINDOW_LOG_MAX,
            ))
            .map_err(zstd_error)?;
            self.zstd = Some(d);
        }
        let mut input = chunk;
        loop {
            let dec = self.zstd.as_mut().expect("set above");
            let st = dec
                .run_on_buffers(input, &mut self.out)
                .map_err(zstd_error)?;
            input = &input[st.bytes_read..];
            let produced = &self.out[..st.bytes_written];
            // A call that neither read nor wrote (asking for more output after the buffer came
            // back full) says nothing about the frame: after a frame's end it already hints at
            // the next frame's header.
            if st.bytes_read > 0 || st.bytes_written > 0 {
                self.frame_done = st.remaining == 0;
            }
            if !produced.is_empty() {
                self.unpacked_out += produced.len() as u64;
                self.tar_hasher.update(produced);
                self.scanner.feed(produced, sink)?;
                ratio(self.compressed_in, self.unpacked_out)?;
            }
            if input.is_empty() && st.bytes_written < self.out.len() {
                return Ok(());
            }
        }
    }

    /// At the end of the upload: the tar and the zstd stream must both be complete. Returns the
    /// SHA-256 of the decompressed tar; `None` for a plain tar, whose hash is the upload's.
    pub fn finish(&mut self) -> Result<Option<String>, Violation> {
        if self.format == Some(Format::TarZstd) && !self.frame_done {
            return Err(Violation {
                rule: Rule::Truncated,
                entry: None,
                message: "the zstd stream ends inside a frame".into(),
            });
        }
        self.scanner.finish()?;
        if self.format == Some(Format::Tar) {
            return Ok(None);
        }
        Ok(Some(hex::encode(
            std::mem::take(&mut self.tar_hasher).finalize(),
        )))
    }
}

/// Validates entries, hashes their content, and runs the checks.
struct IngestSink {
    validator: Validator,
    checker: Checker,
    entries: Vec<ManifestEntry>,
    current: Option<Current>,
}

struct Current {
    entry: ManifestEntry,
    hasher: Sha256,
    prefix: Vec<u8>,
}

impl Sink for IngestSink {
    type Error = Violation;

    fn entry(&mut self, h: &Header) -> Result<(), Violation> {
        let Some(accepted) = self.validator.check_entry(h)? else {
            self.current = None;
            return Ok(());
        };
        self.current = Some(Current {
            entry: ManifestEntry {
                path: accepted.path,
                kind: if accepted.kind == EntryKind::Dir {
                    "directory"
                } else {
                    "file"
                }
                .into(),
                size: accepted.size,
                mode: accepted.mode,
                sha256: None,
            },
            hasher: Sha256::new(),
            prefix: Vec::new(),
        });
        Ok(())
    }

    fn data(&mut self, bytes: &[u8]) -> Result<(), Violation> {
        if let Some(c) = &mut self.current {
            c.hasher.update(bytes);
            if c.prefix.len() < PREFIX_BYTES {
                let n = (PREFIX_BYTES - c.prefix.len()).min(bytes.len());
                c.prefix.extend_from_slice(&bytes[..n]);
            }
        }
        Ok(())
    }

    fn end_entry(&mut self) -> Result<(), Violation> {
        if let Some(mut c) = self.current.take() {
            if c.entry.kind == "file" {
                c.entry.sha256 = Some(hex::encode(c.hasher.finalize()));
                self.checker
                    .file(&c.entry.path, c.entry.size, c.entry.mode, &c.prefix);
            }
            self.entries.push(c.entry);
        }
        Ok(())
    }
}

fn scan_worker(
    mut rx: Receiver<Bytes>,
    limits: Limits,
    checks: CheckSettings,
) -> Result<Scanned, Violation> {
    let mut unpacker = Unpacker::default();
    let mut sink = IngestSink {
        validator: Validator::new(limits),
        checker: Checker::new(checks),
        entries: Vec::new(),
        current: None,
    };
    let limits = sink.validator.limits().clone();
    while let Some(chunk) = rx.blocking_recv() {
        unpacker.feed(&chunk, &mut sink, |up, out| limits.check_ratio(up, out))?;
    }
    let tar_sha256 = unpacker.finish()?;
    sink.validator.finish()?;
    Ok(Scanned {
        format: unpacker.format().unwrap_or(Format::Tar),
        tar_sha256,
        unpacked: unpacker.unpacked_out,
        entries: sink.entries,
        checks: sink.checker.finish(),
    })
}

/// Reads one file out of a stored archive (for reviewers). Returns `None` when the archive has
/// no such file, `Err` when it is larger than `max`.
pub fn read_file(
    blob: PathBuf,
    wanted: String,
    max: u64,
) -> anyhow::Result<Option<Result<Vec<u8>, u64>>> {
    use std::io::Read;
    struct Find {
        wanted: String,
        max: u64,
        active: bool,
        found: Option<Result<Vec<u8>, u64>>,
    }
    impl Sink for Find {
        type Error = Violation;
        fn entry(&mut self, h: &Header) -> Result<(), Violation> {
            let p = String::from_utf8_lossy(&h.path);
            let p = p.trim_start_matches("./").trim_end_matches('/');
            self.active = h.kind == EntryKind::File && p == self.wanted && self.found.is_none();
            if self.active {
                self.found = Some(if h.size > self.max {
                    Err(h.size)
                } else {
                    Ok(Vec::with_capacity(h.size as usize))
                });
                if h.size > self.max {
                    self.active = false;
                }
            }
            Ok(())
        }
        fn data(&mut self, bytes: &[u8]) -> Result<(), Violation> {
            if self.active {
                if let Some(Ok(v)) = &mut self.found {
                    v.extend_from_slice(bytes);
                }
            }
            Ok(())
        }
        fn end_entry(&mut self) -> Result<(), Violation> {
            if self.active {
                self.active = false;
                // Found: an error is how a sink stops the reader; the caller knows it is not one.
                return Err(Violation {
                    rule: Rule::Corrupt,
                    entry: None,
                    message: "stop: found".into(),
                });
            }
            Ok(())
        }
    }
    let mut f = std::fs::File::open(&blob)?;
    let mut u = Unpacker::default();
    let mut sink = Find {
        wanted,
        max,
        active: false,
        found: None,
    };
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        match u.feed(&buf[..n], &mut sink, |_, _| Ok(())) {
            Ok(()) => {}
            Err(_) if sink.found.is_some() => break,
            Err(e) => anyhow::bail!("the stored archive does not read back: {e}"),
        }
        if matches!(sink.found, Some(Err(_))) {
            break;
        }
    }
    Ok(sink.found)
}

/// A stored archive re-emitted for staging: the same paths and contents, every entry owned by
/// root and read-only (directories and executables 0555, other files 0444), each file's SHA-256
/// checked against the approved manifest on the way. The stream ends with an error if anything
/// differs, so a mismatch never lands complete in a sandbox.
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
        self.tx.blocking_send(Ok(chunk)).map_err(|_| Violation {
            rule: Rule::Truncated,
            entry: None,
            message: "the sandbox stopped receiving".into(),
        })
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
    };
    let mut source = Sha256::new();
    let mut run = |sink: &mut RestageSink| -> anyhow::Result<()> {
        let mut f = std::fs::File::open(&blob)?;
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
            Err(e)
        }
    }
}

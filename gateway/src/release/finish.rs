//! Finishing a release from its round's payload (`egress::payload`): the payload is read once
//! (every chunk authenticated, every file re-hashed against what was approved), then the age
//! header for the recipient goes into the space kept for it and the metadata is appended,
//! sealed on from the seed with the final chunk. The same file is then the release: a few KiB
//! written and one fsync, however large the files.

use std::collections::HashMap;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use super::sealed::ResumableSha256;

use super::package::{BuildError, Built, append_bytes, sums};
use super::sealed::{self, ChunkSealer, PayloadKeys};
use super::{FILES_DIR, METADATA_NAME, SUMS_NAME};

/// A file the payload must hold, as approved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Approved {
    /// Its name inside `files/`.
    pub name: String,
    pub sha256: String,
    pub size: u64,
}

/// The payload as the database knows it.
pub struct PayloadAt<'a> {
    pub path: &'a Path,
    pub keys: &'a PayloadKeys,
    pub full_chunks: u64,
    /// Chunk `full_chunks`, sealed, not final.
    pub seed: &'a [u8],
    /// The release prepared at the request, if it was.
    pub prepared: Option<Prepared<'a>>,
}

/// A release prepared at the request: for `recipient`, with its age `header`, and the
/// package's SHA-256 begun over that header, the nonce and the whole chunks.
#[derive(Clone, Copy)]
pub struct Prepared<'a> {
    pub recipient: &'a str,
    pub header: &'a [u8],
    pub hash: &'a ResumableSha256,
}

/// Chunks read from the file at once (a MiB).
const READ_CHUNKS: usize = 16;
/// Batches waiting for the hasher.
const DEPTH: usize = 4;
/// zstd level of the metadata.
const ZSTD_LEVEL: i32 = 3;

/// Checks the payload and makes it the release for `recipient` (blocking). On
/// [`BuildError::Mismatch`] or [`BuildError::Altered`] the file is left as it was. `cancel`
/// set stops the check between reads.
pub fn finish(
    at: &PayloadAt<'_>,
    files: &[Approved],
    metadata: &serde_json::Value,
    recipient: &str,
    mtime: u64,
    cancel: &AtomicBool,
) -> Result<Built, BuildError> {
    let recipient = super::parse_recipient(recipient).map_err(BuildError::BadRecipient)?;
    // Prepared for this recipient: its header and the digest over the chunks are ready, and
    // the chunks are read only to be checked. Otherwise (the recipient changed since the
    // request) a header is made now and the chunks are hashed as they are read.
    let prepared = at
        .prepared
        .filter(|p| super::parse_recipient(p.recipient).as_deref() == Ok(recipient.as_str()));
    let (header, mut hasher) = match prepared {
        Some(p) => (p.header.to_vec(), p.hash.clone()),
        None => {
            let header = at
                .keys
                .header(&recipient)
                .map_err(BuildError::BadRecipient)?;
            let mut hasher = ResumableSha256::new();
            hasher.update(&header);
            (header, hasher)
        }
    };
    if header.len() != sealed::HEADER_LEN {
        return Err(BuildError::BadRecipient(format!(
            "a header of {} bytes, not {}",
            header.len(),
            sealed::HEADER_LEN
        )));
    }
    let held = check(at, files, prepared.is_none().then_some(&mut hasher), cancel)?;

    let mut tar = tar::Builder::new(Vec::new());
    let sums = sums(files.iter().map(|f| (f.name.as_str(), f.sha256.as_str())));
    append_bytes(&mut tar, SUMS_NAME, sums.as_bytes(), mtime)?;
    let mut json = serde_json::to_vec_pretty(metadata).map_err(io::Error::other)?;
    json.push(b'\n');
    append_bytes(&mut tar, METADATA_NAME, &json, mtime)?;
    let tail_tar = tar.into_inner()?;
    let mut zstd = zstd::bulk::Compressor::new(ZSTD_LEVEL)?;
    zstd.include_checksum(true)?;
    let frame = zstd.compress(&tail_tar)?;
    let mut tail = Vec::with_capacity(frame.len() + 2 * sealed::SEALED_CHUNK);
    let mut sealer = ChunkSealer::new(at.keys.clone(), at.full_chunks, held);
    sealer.write(&frame, &mut |c| {
        tail.extend_from_slice(c);
        Ok(())
    })?;
    sealer.finish(&mut |c| {
        tail.extend_from_slice(c);
        Ok(())
    })?;
    hasher.update(&tail);

    let file = std::fs::OpenOptions::new().write(true).open(at.path)?;
    let base = sealed::PREFIX_LEN + at.full_chunks * sealed::SEALED_CHUNK as u64;
    file.write_all_at(&header, 0)?;
    // What an attempt cut short may have appended goes.
    file.set_len(base)?;
    file.write_all_at(&tail, base)?;
    file.sync_all()?;
    Ok(Built {
        sha256: hex::encode(hasher.finalize()),
        size: base + tail.len() as u64,
    })
}

/// Reads the payload through and checks it, on threads of their own, about equal in work:
///
/// ```text
///                      ┌─▶ hash (the package's SHA-256, in order) ───────────────┐
/// read (nonce, chunks) ┤                                                          │
///   a MiB at a time    └─▶ open ×2 (batches dealt in turn) ─▶ here: zstd, tar,    │
///                                                   each file re-hashed ──────────┘
/// ```
///
/// Every whole chunk is authenticated, and hashed into `package` (when given) as it is on
/// disk; the seed's plaintext ends the stream. Answers the seed's plaintext.
fn check(
    at: &PayloadAt<'_>,
    files: &[Approved],
    package: Option<&mut ResumableSha256>,
    cancel: &AtomicBool,
) -> Result<Vec<u8>, BuildError> {
    let held = at
        .keys
        .open_chunk(at.full_chunks, false, at.seed)
        .map_err(|e| BuildError::Altered(e.to_string()))?;
    let opener_failed = Mutex::new(None);
    std::thread::scope(|s| {
        let (to_hash, hashing) = match package {
            Some(package) => {
                let (to_hash, batches) = sync_channel::<Arc<Vec<u8>>>(DEPTH);
                let hashing = s.spawn(move || {
                    for b in batches {
                        package.update(&b[..]);
                    }
                });
                (Some(to_hash), Some(hashing))
            }
            None => (None, None),
        };
        let (mut to_open, mut opened, mut back) = (Vec::new(), Vec::new(), Vec::new());
        let mut openers = Vec::new();
        for _ in 0..OPENERS {
            let (tx, rx) = sync_channel::<(u64, Arc<Vec<u8>>)>(2);
            let (out, plain) = sync_channel::<Vec<u8>>(2);
            let (give_back, spare) = std::sync::mpsc::channel::<Vec<u8>>();
            let failed = &opener_failed;
            openers.push(s.spawn(move || {
                if let Err(e) = open_batches(at.keys, rx, out, spare) {
                    *crate::lock(failed) = Some(e);
                }
            }));
            to_open.push(tx);
            opened.push(plain);
            back.push(give_back);
        }
        let reading = s.spawn(move || read_batches(at, to_hash, to_open, cancel));
        let checked = check_tar(InTurn::new(opened, back, held.clone()), files);
        let read = reading
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the reading thread panicked").into()));
        if let Some(h) = hashing {
            let _ = h.join();
        }
        // An opener's failure is recorded before its thread ends: all are waited for before
        // it is looked at (the tar side may have seen the stream end first).
        for o in openers {
            let _ = o.join();
        }
        // What went wrong first explains what the tar saw: the file (short, a changed nonce),
        // then a chunk that fails authentication.
        read?;
        if let Some(e) = crate::lock(&opener_failed).take() {
            return Err(e);
        }
        checked?;
        Ok(held)
    })
}

/// Threads opening chunks.
const OPENERS: usize = 2;

/// Reads the nonce (checked) and the whole chunks, a batch at a time: each to the hasher, and
/// to the openers in turn. Stops, without an error, once the openers stopped.
fn read_batches(
    at: &PayloadAt<'_>,
    to_hash: Option<SyncSender<Arc<Vec<u8>>>>,
    to_open: Vec<SyncSender<(u64, Arc<Vec<u8>>)>>,
    cancel: &AtomicBool,
) -> Result<(), BuildError> {
    let altered = |why: String| BuildError::Altered(why);
    let mut file = std::fs::File::open(at.path)?;
    file.seek(SeekFrom::Start(sealed::HEADER_LEN as u64))?;
    let mut nonce = [0u8; sealed::NONCE_LEN];
    file.read_exact(&mut nonce)
        .map_err(|_| altered("the file is shorter than its nonce".into()))?;
    if &nonce != at.keys.nonce() {
        return Err(altered("its nonce changed".into()));
    }
    if let Some(h) = &to_hash {
        let _ = h.send(Arc::new(nonce.to_vec()));
    }
    let mut counter = 0u64;
    for turn in (0..to_open.len()).cycle() {
        if counter == at.full_chunks {
            break;
        }
        if cancel.load(Ordering::Relaxed) {
            return Err(io::Error::other("the release build was cut short").into());
        }
        let n = (at.full_chunks - counter).min(READ_CHUNKS as u64) as usize;
        let want = n * sealed::SEALED_CHUNK;
        let mut batch = Vec::with_capacity(want);
        (&mut file).take(want as u64).read_to_end(&mut batch)?;
        if batch.len() < want {
            return Err(altered(format!(
                "the file ends before its chunk {} of {}",
                counter + (batch.len() / sealed::SEALED_CHUNK) as u64 + 1,
                at.full_chunks
            )));
        }
        let batch = Arc::new(batch);
        if to_open[turn].send((counter, batch.clone())).is_err() {
            // The tar side stopped (or an opener failed): it says why.
            return Ok(());
        }
        if let Some(h) = &to_hash {
            let _ = h.send(batch);
        }
        counter += n as u64;
    }
    Ok(())
}

/// Opens the batches it is dealt, each chunk authenticated, and sends their plaintext on (in
/// buffers that come back once read).
fn open_batches(
    keys: &PayloadKeys,
    batches: Receiver<(u64, Arc<Vec<u8>>)>,
    out: SyncSender<Vec<u8>>,
    spare: Receiver<Vec<u8>>,
) -> Result<(), BuildError> {
    for (first, batch) in batches {
        let mut plain = spare.try_recv().unwrap_or_default();
        plain.clear();
        plain.reserve(batch.len());
        for (i, sealed_chunk) in batch.chunks(sealed::SEALED_CHUNK).enumerate() {
            keys.open_chunk_onto(first + i as u64, false, sealed_chunk, &mut plain)
                .map_err(|e| BuildError::Altered(e.to_string()))?;
        }
        if out.send(plain).is_err() {
            return Ok(());
        }
    }
    Ok(())
}

/// The payload's tar must hold exactly the approved files, each once with its size and
/// SHA-256, under `files/` (with the folders above them), and nothing else.
fn check_tar(plain: InTurn, files: &[Approved]) -> Result<(), BuildError> {
    let altered = |why: String| BuildError::Altered(why);
    let mut want: HashMap<&str, (&Approved, bool)> = files
        .iter()
        .map(|f| (f.name.as_str(), (f, false)))
        .collect();
    let decoder = zstd::stream::read::Decoder::new(plain)?;
    let mut tar = tar::Archive::new(decoder);
    let prefix = format!("{FILES_DIR}/");
    let mut buf = vec![0u8; 256 * 1024];
    for entry in tar.entries()? {
        let mut entry = entry.map_err(|e| altered(format!("its tar: {e}")))?;
        let path = String::from_utf8(entry.path_bytes().into_owned())
            .map_err(|_| altered("a name in its tar is not UTF-8".into()))?;
        let kind = entry.header().entry_type();
        if kind.is_dir() && path.starts_with(&prefix) {
            continue;
        }
        let name = path.strip_prefix(&prefix).unwrap_or(&path);
        let Some((approved, seen)) = want.get_mut(name) else {
            return Err(altered(format!("its tar holds {path:?}, not approved")));
        };
        if !kind.is_file() || *seen {
            return Err(altered(format!(
                "its tar holds {path:?} twice or not as a file"
            )));
        }
        *seen = true;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        loop {
            let n = match entry.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(altered(format!("reading {path:?}: {e}"))),
            };
            hasher.update(&buf[..n]);
            size += n as u64;
        }
        let found = hex::encode(hasher.finalize());
        if size != approved.size || !found.eq_ignore_ascii_case(&approved.sha256) {
            return Err(BuildError::Mismatch {
                name: approved.name.clone(),
                expected: approved.sha256.to_ascii_lowercase(),
                found,
            });
        }
    }
    if let Some((name, _)) = want.iter().find(|(_, (_, seen))| !seen) {
        return Err(altered(format!("{name} is missing from it")));
    }
    Ok(())
}

/// The openers' plaintext as one stream, taken from each in the turn they were dealt, then
/// the seed's.
struct InTurn {
    opened: Vec<Receiver<Vec<u8>>>,
    /// Where each opener's buffers go back to.
    back: Vec<std::sync::mpsc::Sender<Vec<u8>>>,
    /// Whose buffer `current` is.
    from: Option<usize>,
    turn: usize,
    tail: Option<Vec<u8>>,
    current: Vec<u8>,
    at: usize,
}

impl InTurn {
    fn new(
        opened: Vec<Receiver<Vec<u8>>>,
        back: Vec<std::sync::mpsc::Sender<Vec<u8>>>,
        tail: Vec<u8>,
    ) -> Self {
        InTurn {
            opened,
            back,
            from: None,
            turn: 0,
            tail: Some(tail),
            current: Vec::new(),
            at: 0,
        }
    }
}

impl Read for InTurn {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.at == self.current.len() {
            let next = self
                .opened
                .get(self.turn)
                .and_then(|rx| rx.recv().ok())
                .or_else(|| {
                    // Whoever's turn it is has no more: the chunks are done (or failed).
                    self.opened.clear();
                    self.tail.take()
                });
            let Some(next) = next else {
                return Ok(0);
            };
            let used = std::mem::replace(&mut self.current, next);
            if let Some(from) = self.from {
                let _ = self.back[from].send(used);
            }
            self.from = (!self.opened.is_empty()).then_some(self.turn);
            self.turn = (self.turn + 1) % self.opened.len().max(1);
            self.at = 0;
        }
        let n = out.len().min(self.current.len() - self.at);
        out[..n].copy_from_slice(&self.current[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

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

use sha2::{Digest, Sha256};

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
}

/// Chunks read from the file at once.
const READ_CHUNKS: usize = 16;
/// Plaintext chunks waiting for the decompressing side.
const DEPTH: usize = 32;
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
    let header = at
        .keys
        .header(&recipient)
        .map_err(BuildError::BadRecipient)?;
    let mut hasher = Sha256::new();
    hasher.update(&header);
    let held = check(at, files, &mut hasher, cancel)?;

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

/// Reads the payload through: its nonce, every whole chunk (hashed into `package` as it is on
/// disk, then authenticated) and the seed, on a thread of its own; here the plaintext is
/// decompressed and its tar checked against `files`. Answers the seed's plaintext.
fn check(
    at: &PayloadAt<'_>,
    files: &[Approved],
    package: &mut Sha256,
    cancel: &AtomicBool,
) -> Result<Vec<u8>, BuildError> {
    let (tx, rx) = sync_channel::<Vec<u8>>(DEPTH);
    let (back, spare) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::scope(|s| {
        let reading = s.spawn(move || read_chunks(at, package, tx, spare, cancel));
        let checked = check_tar(ChannelReader::new(rx, back), files);
        let read = reading
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the reading thread panicked").into()));
        // The reader's failure (a forged chunk, a short file) explains what the tar saw.
        let held = read?;
        checked?;
        Ok(held)
    })
}

fn read_chunks(
    at: &PayloadAt<'_>,
    package: &mut Sha256,
    tx: SyncSender<Vec<u8>>,
    spare: Receiver<Vec<u8>>,
    cancel: &AtomicBool,
) -> Result<Vec<u8>, BuildError> {
    let altered = |why: String| BuildError::Altered(why);
    let mut file = std::fs::File::open(at.path)?;
    file.seek(SeekFrom::Start(sealed::HEADER_LEN as u64))?;
    let mut nonce = [0u8; sealed::NONCE_LEN];
    file.read_exact(&mut nonce)
        .map_err(|_| altered("the file is shorter than its nonce".into()))?;
    if &nonce != at.keys.nonce() {
        return Err(altered("its nonce changed".into()));
    }
    package.update(nonce);
    let mut buf = vec![0u8; READ_CHUNKS * sealed::SEALED_CHUNK];
    let mut counter = 0u64;
    while counter < at.full_chunks {
        if cancel.load(Ordering::Relaxed) {
            return Err(io::Error::other("the release build was cut short").into());
        }
        let n = (at.full_chunks - counter).min(READ_CHUNKS as u64) as usize;
        let batch = &mut buf[..n * sealed::SEALED_CHUNK];
        file.read_exact(batch).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => altered(format!(
                "the file ends before its chunk {} of {}",
                counter + 1,
                at.full_chunks
            )),
            _ => e.into(),
        })?;
        package.update(&batch[..]);
        for sealed_chunk in batch.chunks(sealed::SEALED_CHUNK) {
            let mut c = spare.try_recv().unwrap_or_default();
            c.clear();
            c.extend_from_slice(sealed_chunk);
            at.keys
                .open_chunk_in_place(counter, false, &mut c)
                .map_err(|e| altered(e.to_string()))?;
            counter += 1;
            if tx.send(c).is_err() {
                // The tar side stopped: it says why.
                return Ok(Vec::new());
            }
        }
    }
    let held = at
        .keys
        .open_chunk(at.full_chunks, false, at.seed)
        .map_err(|e| altered(e.to_string()))?;
    let _ = tx.send(held.clone());
    Ok(held)
}

/// The payload's tar must hold exactly the approved files, each once with its size and
/// SHA-256, under `files/` (with the folders above them), and nothing else.
fn check_tar(plain: ChannelReader, files: &[Approved]) -> Result<(), BuildError> {
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

/// The plaintext chunks as one stream, each buffer given back once read.
struct ChannelReader {
    rx: Receiver<Vec<u8>>,
    back: std::sync::mpsc::Sender<Vec<u8>>,
    current: Vec<u8>,
    at: usize,
}

impl ChannelReader {
    fn new(rx: Receiver<Vec<u8>>, back: std::sync::mpsc::Sender<Vec<u8>>) -> Self {
        ChannelReader {
            rx,
            back,
            current: Vec::new(),
            at: 0,
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.at == self.current.len() {
            let Ok(next) = self.rx.recv() else {
                return Ok(0);
            };
            let used = std::mem::replace(&mut self.current, next);
            let _ = self.back.send(used);
            self.at = 0;
        }
        let n = out.len().min(self.current.len() - self.at);
        out[..n].copy_from_slice(&self.current[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

//! A round's payload: its files written, as they are copied out of the sandbox, straight into
//! what will be the body of their release, so that the files are made durable once.
//!
//! ```text
//! payload file:  [ header: HEADER_LEN zero bytes ][ nonce ][ chunk 0 ] … [ chunk full-1 ]
//!                                                           └ age STREAM, not final ┘
//! plaintext:     zstd frames of tar: files/, its folders, each file (a frame begins at each
//!                file's entries, and every FRAME bytes of tar within a file)
//! database:      the round's keys (sealed), `full`, and the seed: the plaintext after the
//!                last whole chunk, sealed as chunk `full`, not final
//! ```
//!
//! A file's place is its [`Location`]: the offset in the plaintext of the frame its entries
//! begin in, and the bytes of tar before its data from there; [`FileReader`] reads it by
//! decrypting only the chunks from there on. The payload's key is the round's own, sealed in
//! the database under the gateway's quarantine key: the bytes at rest are ciphertext that only
//! the gateway opens, and every chunk is authenticated as it is read.
//!
//! At approval (`release::finish`) the payload is read once more (every chunk authenticated,
//! every file re-hashed), then the age header for the requester's recipient is written into
//! the space kept for it and the release's metadata, sealed from the seed on with the final
//! chunk, is appended: the same file is the release.

use std::collections::HashSet;
use std::io::{self, Read, Write};
use std::thread::JoinHandle;

use crate::release::package::{BLOCK, append_dir, header};
use crate::release::sealed::{self, ChunkSealer, PayloadKeys};
use crate::release::stages::{self, FRAME, Pieces};
use crate::release::{FILES_DIR, check_name};
use crate::store::egress::Location;

/// zstd level of a payload (as the releases built from blobs).
const ZSTD_LEVEL: i32 = 3;
/// Threads compressing pieces of tar at once.
const COMPRESSORS: usize = 2;

/// What a finished payload is: where each file is (in the order written), the whole chunks in
/// the file and the plaintext after them; with a header given at the start, the state of the
/// package's SHA-256 over that header, the nonce and the whole chunks
/// ([`sealed::ResumableSha256::to_bytes`]).
pub struct Written {
    pub locations: Vec<Location>,
    pub full_chunks: u64,
    pub held: Vec<u8>,
    pub package_hash: Option<Vec<u8>>,
}

/// Writes a payload in four stages, each on a thread of its own: the caller's thread makes the
/// tar (headers, and the data it is given) in pieces; two threads compress a piece each in
/// turn; one seals the frames into chunks and writes them, handing the file to writeback as it
/// goes.
pub struct PayloadWriter {
    tar: Pieces,
    mtime: u64,
    dirs: HashSet<String>,
    /// For each file, the piece it begins in and the tar before its data from there.
    starts: Vec<(u64, u64)>,
    /// The size of the file being written and what of it came.
    current: Option<(u64, u64)>,
    compressing: Vec<JoinHandle<io::Result<()>>>,
    sealing: JoinHandle<io::Result<Sealed>>,
}

impl PayloadWriter {
    /// Starts writing into `file` (empty): the space for the header, the nonce, then the
    /// chunks as they come. `mtime` goes on every entry. With `header` (the age header for the
    /// recipient the release will likely have), the package's digest is begun as if that
    /// header were in place; the file keeps zeros there until the release is made.
    pub fn start(
        mut file: std::fs::File,
        keys: PayloadKeys,
        mtime: u64,
        header: Option<&[u8]>,
    ) -> io::Result<PayloadWriter> {
        file.write_all(&[0u8; sealed::HEADER_LEN])?;
        file.write_all(keys.nonce())?;
        let hash = header.map(|h| {
            let mut hash = sealed::ResumableSha256::new();
            hash.update(h);
            hash.update(keys.nonce());
            hash
        });
        let (mut tar_out, mut frames) = (Vec::new(), Vec::new());
        let mut compressing = Vec::new();
        for _ in 0..COMPRESSORS {
            let (to_zstd, zstd_in) = stages::pipe();
            let (zstd_out, from_zstd) = stages::pipe();
            compressing.push(std::thread::spawn(move || {
                stages::compress(zstd_in, zstd_out, ZSTD_LEVEL)
            }));
            tar_out.push(to_zstd);
            frames.push(from_zstd);
        }
        let sealing = std::thread::spawn(move || seal(frames, keys, file, hash));
        Ok(PayloadWriter {
            tar: Pieces::new(tar_out, FRAME),
            mtime,
            dirs: HashSet::new(),
            starts: Vec::new(),
            current: None,
            compressing,
            sealing,
        })
    }

    /// Begins the file `path` (relative to the output folder, a name [`check_name`] accepts
    /// under `files/`) of `size` bytes: its folders not yet written, then its header, in a
    /// frame that begins here.
    pub fn begin(&mut self, path: &str, size: u64) -> io::Result<()> {
        if self.current.is_some() {
            return Err(io::Error::other("a file begun before the last one ended"));
        }
        let name = format!("{FILES_DIR}/{path}");
        check_name(&name).map_err(io::Error::other)?;
        // The headers are made apart: a tar builder on the pieces would end the archive when
        // it is done, and the payload's tar goes on in the release's metadata.
        let mut headers = tar::Builder::new(Vec::new());
        if self.dirs.insert(String::new()) {
            append_dir(&mut headers, &format!("{FILES_DIR}/"), self.mtime)?;
        }
        for (i, _) in path.match_indices('/') {
            if self.dirs.insert(path[..i].to_owned()) {
                append_dir(
                    &mut headers,
                    &format!("{FILES_DIR}/{}/", &path[..i]),
                    self.mtime,
                )?;
            }
        }
        let mut h = header(tar::EntryType::Regular, size, 0o644, self.mtime);
        headers.append_data(&mut h, &name, io::empty())?;
        let piece = self.tar.cut()?;
        self.tar.write_all(headers.get_ref())?;
        let skip = headers.get_ref().len() as u64;
        self.starts.push((piece, skip));
        self.current = Some((size, 0));
        Ok(())
    }

    /// The next bytes of the file begun.
    pub fn data(&mut self, bytes: &[u8]) -> io::Result<()> {
        let Some((size, got)) = &mut self.current else {
            return Err(io::Error::other("data outside a file"));
        };
        *got += bytes.len() as u64;
        if *got > *size {
            return Err(io::Error::other("a file longer than its header says"));
        }
        self.tar.write_all(bytes)
    }

    /// Ends the file begun: it must have had all its bytes.
    pub fn end(&mut self) -> io::Result<()> {
        let Some((size, got)) = self.current.take() else {
            return Err(io::Error::other("the end of no file"));
        };
        if got != size {
            return Err(io::Error::other(format!(
                "a file of {size} bytes ended after {got}"
            )));
        }
        let pad = (BLOCK - (size % BLOCK as u64) as usize) % BLOCK;
        self.tar.write_all(&[0u8; BLOCK][..pad])
    }

    /// Writes what is left, fsyncs the file and answers where everything is. The tar has no
    /// end yet: the release's metadata follows it.
    pub fn finish(self) -> io::Result<Written> {
        let PayloadWriter {
            tar,
            starts,
            compressing,
            sealing,
            current,
            ..
        } = self;
        if current.is_some() {
            return Err(io::Error::other("the payload ended inside a file"));
        }
        let closed = tar.close();
        let mut failed: Vec<io::Error> = compressing
            .into_iter()
            .filter_map(|c| joined(c, "compressing").err())
            .collect();
        let sealed = joined(sealing, "sealing");
        let Sealed {
            frames,
            full_chunks,
            held,
            package_hash,
        } = match sealed {
            Ok(s) => s,
            Err(e) => {
                failed.insert(0, e);
                return Err(first_cause(failed));
            }
        };
        if let Err(e) = closed {
            failed.push(e);
        }
        if !failed.is_empty() {
            return Err(first_cause(failed));
        }
        let locations = starts
            .iter()
            .map(|&(piece, skip)| {
                let offset = frames.get(piece as usize).ok_or_else(|| {
                    io::Error::other(format!("a file begins in piece {piece}, never written"))
                })?;
                Ok(Location {
                    frame_offset: *offset as i64,
                    data_skip: skip as i64,
                })
            })
            .collect::<io::Result<_>>()?;
        Ok(Written {
            locations,
            full_chunks,
            held,
            package_hash,
        })
    }
}

/// The failure that explains the others (a broken pipe is what a stage sees when the one
/// after it stopped).
fn first_cause(mut failed: Vec<io::Error>) -> io::Error {
    match failed
        .iter()
        .position(|e| e.kind() != io::ErrorKind::BrokenPipe)
    {
        Some(i) => failed.swap_remove(i),
        None => failed.swap_remove(0),
    }
}

fn joined<T>(h: JoinHandle<io::Result<T>>, what: &str) -> io::Result<T> {
    h.join()
        .unwrap_or_else(|_| Err(io::Error::other(format!("the {what} thread panicked"))))
}

/// What the sealing stage made: the offset of every frame (a piece each) in the plaintext,
/// the whole chunks written and the plaintext after them.
struct Sealed {
    frames: Vec<u64>,
    full_chunks: u64,
    held: Vec<u8>,
    package_hash: Option<Vec<u8>>,
}

/// The last stage: the frames in order, sealed into chunks and written (each frame's offset
/// noted); the file fsynced at the end.
fn seal(
    frames: Vec<stages::Returns>,
    keys: PayloadKeys,
    file: std::fs::File,
    mut hash: Option<sealed::ResumableSha256>,
) -> io::Result<Sealed> {
    let mut out = crate::blobs::Writeback::new(file);
    let mut sealer = ChunkSealer::new(keys, 0, Vec::new());
    let mut offsets = Vec::new();
    let mut offset = 0u64;
    stages::each_in_turn(frames, |frame| {
        offsets.push(offset);
        offset += frame.len() as u64;
        // The sealer hands out its chunks several at a time, from a buffer of its own.
        sealer.write(frame, &mut |chunks| {
            if let Some(h) = &mut hash {
                h.update(chunks);
            }
            out.write_all(chunks)
        })
    })?;
    out.flush()?;
    out.file.sync_all()?;
    let (full_chunks, held) = sealer.into_parts();
    Ok(Sealed {
        frames: offsets,
        full_chunks,
        held,
        package_hash: hash.map(|h| h.to_bytes()),
    })
}

/// Reads one file of a payload: the chunks from its frame on are decrypted (each
/// authenticated), the frames decompressed, the tar before its data passed over, and at most
/// its `size` bytes given.
pub fn file_reader(
    file: std::fs::File,
    keys: PayloadKeys,
    full_chunks: u64,
    seed: Vec<u8>,
    at: Location,
    size: u64,
) -> io::Result<impl Read> {
    let plain = sealed::PayloadReader::new(
        io::BufReader::with_capacity(sealed::SEALED_CHUNK, file),
        keys,
        full_chunks,
        Some(seed),
        at.frame_offset as u64,
    )?;
    let mut tar = zstd::stream::read::Decoder::new(plain)?;
    let skip = at.data_skip as u64;
    let skipped = io::copy(&mut (&mut tar).take(skip), &mut io::sink())?;
    if skipped < skip {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the payload ends before the file",
        ));
    }
    Ok(tar.take(size))
}

/// A round's payload as stored, opened: its file, keys, whole chunks and seed, and the
/// release prepared at the request (recipient, header, the package's digest begun).
pub struct Unsealed {
    pub path: std::path::PathBuf,
    pub keys: PayloadKeys,
    pub full_chunks: u64,
    pub seed: Vec<u8>,
    pub prepared: Option<(String, Vec<u8>, sealed::ResumableSha256)>,
}

impl Unsealed {
    /// The payload as `release::finish` takes it.
    pub fn at(&self) -> crate::release::PayloadAt<'_> {
        crate::release::PayloadAt {
            path: &self.path,
            keys: &self.keys,
            full_chunks: self.full_chunks,
            seed: &self.seed,
            prepared: self.prepared.as_ref().map(|(recipient, header, hash)| {
                crate::release::Prepared {
                    recipient,
                    header,
                    hash,
                }
            }),
        }
    }
}

/// What a payload's prepared header is sealed for.
pub fn header_context(name: &str) -> String {
    format!("{name}/header")
}

/// Opens what the database holds of a payload with the gateway's quarantine key.
pub fn unseal(
    blobs: &crate::blobs::BlobStore,
    master: &[u8; 32],
    p: &crate::store::egress::Payload,
) -> anyhow::Result<Unsealed> {
    use base64::Engine;
    let keys = sealed::open_keys(master, &p.name, &p.sealed_keys)
        .map_err(|e| anyhow::anyhow!("the keys of payload {}: {e}", p.name))?;
    let seed = base64::engine::general_purpose::STANDARD
        .decode(&p.seed)
        .map_err(|e| anyhow::anyhow!("the seed of payload {}: {e}", p.name))?;
    let prepared = match &p.prepared {
        None => None,
        Some(x) => {
            let header = sealed::open_bytes(master, &header_context(&p.name), &x.sealed_header)
                .map_err(|e| anyhow::anyhow!("the header of payload {}: {e}", p.name))?;
            let state = base64::engine::general_purpose::STANDARD
                .decode(&x.package_hash)
                .ok()
                .and_then(|b| sealed::ResumableSha256::from_bytes(&b))
                .ok_or_else(|| anyhow::anyhow!("the digest state of payload {}", p.name))?;
            Some((x.recipient.clone(), header, state))
        }
    };
    Ok(Unsealed {
        path: blobs.payload_path(&p.name)?,
        keys,
        full_chunks: u64::try_from(p.full_chunks)?,
        seed,
        prepared,
    })
}

/// A quarantined file's bytes (blocking): from its round's payload, decrypted with every chunk
/// authenticated; or, for a round quarantined before payloads, from its blob.
pub fn open_file(
    blobs: &crate::blobs::BlobStore,
    master: &[u8; 32],
    payload: Option<&crate::store::egress::Payload>,
    file: &crate::store::egress::FileRow,
) -> anyhow::Result<Box<dyn Read + Send>> {
    let size = u64::try_from(file.size)?;
    match (payload, file.location) {
        (Some(p), Some(at)) => {
            let u = unseal(blobs, master, p)?;
            let f = std::fs::File::open(&u.path)?;
            Ok(Box::new(file_reader(
                f,
                u.keys,
                u.full_chunks,
                u.seed,
                at,
                size,
            )?))
        }
        _ => Ok(Box::new(
            std::fs::File::open(blobs.path_of(&file.sha256)?)?.take(size),
        )),
    }
}

#[cfg(test)]
pub(crate) mod tests;

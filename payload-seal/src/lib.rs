//! Quarantined egress as the payload of an age v1 file, written in pieces and read at random.
//!
//! An age file (<https://age-encryption.org/v1>) is a header, then the payload: a 16-byte
//! nonce and the STREAM of ChaCha20-Poly1305 chunks, 64 KiB of plaintext each, the last one
//! flagged. The payload key comes from the file key and that nonce alone, so the payload can
//! be written before its recipient is known, and the header put in front of it later:
//!
//! ```text
//! [ header: HEADER_LEN bytes ][ nonce ][ chunk 0 ][ chunk 1 ] … [ chunk n, final ]
//!   ^ written at approval      ^ PREFIX_LEN - NONCE_LEN       ^ appended at approval
//! ```
//!
//! - [`PayloadKeys`]: the file key and the nonce, the header for one X25519 recipient, and
//!   single chunks; [`seal_keys`] and [`open_keys`] keep them in the database.
//! - [`ChunkSealer`]: a plaintext stream into non-final chunks. It always holds back the tail
//!   (1 to [`CHUNK`] bytes), so that the stream can be continued later
//!   ([`ChunkSealer::into_parts`], [`ChunkSealer::new`]) or ended ([`ChunkSealer::finish`]).
//! - [`PayloadReader`]: the plaintext from any offset, every chunk authenticated before any
//!   of its bytes is handed out.
//!
//! Sealing reuses its buffers: no allocation per chunk. In a release build, on one core of the
//! development machine, [`ChunkSealer::write`] in 1 MiB pieces seals about 700 MiB/s and
//! [`PayloadReader`] opens about 980 MiB/s.

use std::io::{self, Read, Seek, SeekFrom};

use age_core::format::{FileKey, Stanza};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, Tag, UnboundKey};
use sha2::Sha256;

/// Plaintext per chunk.
pub const CHUNK: usize = 64 * 1024;
/// A chunk on disk: its plaintext's length and the 16-byte tag.
pub const SEALED_CHUNK: usize = CHUNK + TAG_LEN;
/// The length of [`PayloadKeys::header`]: the version line (22), `-> X25519 ` (10), the
/// ephemeral share (43) and a newline, the wrapped file key (43) and a newline, `--- ` (4),
/// the MAC (43) and a newline.
pub const HEADER_LEN: usize = 168;
/// The payload's nonce, in front of its first chunk.
pub const NONCE_LEN: usize = 16;
/// Where chunk 0 starts in the file.
pub const PREFIX_LEN: u64 = (HEADER_LEN + NONCE_LEN) as u64;

const TAG_LEN: usize = 16;
const FILE_KEY_LEN: usize = 16;
const VERSION_LINE: &str = "age-encryption.org/v1";
/// Chunks a [`ChunkSealer`] hands to its output at once (about 1 MiB).
const BATCH: usize = 16;
/// A sealed [`PayloadKeys`]: the nonce, the 32 bytes, the tag.
const SEALED_KEYS_LEN: usize = 12 + 32 + TAG_LEN;

/// A payload's secrets: the age file key, the payload nonce, and the payload key derived from
/// them (HKDF-SHA-256, salt = the nonce, info = `payload`).
#[derive(Clone)]
pub struct PayloadKeys {
    file_key: [u8; FILE_KEY_LEN],
    nonce: [u8; NONCE_LEN],
    payload: LessSafeKey,
}

impl std::fmt::Debug for PayloadKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PayloadKeys { .. }")
    }
}

/// A chunk that does not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    #[error("chunk {counter} of the payload fails authentication")]
    Forged { counter: u64 },
    #[error("chunk {counter} of the payload is {len} bytes, shorter than its 16-byte tag")]
    TooShort { counter: u64, len: usize },
}

impl PayloadKeys {
    /// A new file key and nonce from the OS's randomness.
    pub fn generate() -> Self {
        let mut b = [0u8; 32];
        getrandom::fill(&mut b).expect("the OS has randomness");
        Self::from_bytes(&b)
    }

    /// The file key, then the nonce.
    pub fn to_bytes(&self) -> [u8; 32] {
        let mut b = [0u8; 32];
        b[..FILE_KEY_LEN].copy_from_slice(&self.file_key);
        b[FILE_KEY_LEN..].copy_from_slice(&self.nonce);
        b
    }

    /// The keys [`PayloadKeys::to_bytes`] gave.
    pub fn from_bytes(b: &[u8; 32]) -> Self {
        let mut file_key = [0u8; FILE_KEY_LEN];
        let mut nonce = [0u8; NONCE_LEN];
        file_key.copy_from_slice(&b[..FILE_KEY_LEN]);
        nonce.copy_from_slice(&b[FILE_KEY_LEN..]);
        let key = hkdf(&nonce, b"payload", &file_key);
        Self {
            file_key,
            nonce,
            payload: aead_key(&key),
        }
    }

    /// The payload's nonce, written just before chunk 0.
    pub fn nonce(&self) -> &[u8; 16] {
        &self.nonce
    }

    /// The age header for one X25519 recipient `age1…` (anything else is refused with the
    /// reason), exactly [`HEADER_LEN`] bytes:
    /// `age-encryption.org/v1\n-> X25519 <share>\n<wrapped key>\n--- <mac>\n`.
    pub fn header(&self, recipient: &str) -> Result<Vec<u8>, String> {
        let recipient: age::x25519::Recipient = recipient
            .trim()
            .parse()
            .map_err(|e| format!("not an age X25519 recipient (age1…): {e}"))?;
        let file_key = FileKey::new(Box::new(self.file_key));
        let (stanzas, _) = age::Recipient::wrap_file_key(&recipient, &file_key)
            .map_err(|e| format!("the file key could not be wrapped: {e}"))?;
        let [stanza] = stanzas.as_slice() else {
            return Err(format!(
                "an X25519 recipient gave {} stanzas, not one",
                stanzas.len()
            ));
        };
        let mut header = format!("{VERSION_LINE}\n");
        push_stanza(&mut header, stanza);
        header.push_str("---");
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&hkdf(&[], b"header", &self.file_key))
            .expect("HMAC takes a key of any length");
        mac.update(header.as_bytes());
        header.push(' ');
        header.push_str(&STANDARD_NO_PAD.encode(mac.finalize().into_bytes()));
        header.push('\n');
        if header.len() != HEADER_LEN {
            return Err(format!(
                "the age header is {} bytes, not the {HEADER_LEN} reserved for it",
                header.len()
            ));
        }
        Ok(header.into_bytes())
    }

    /// Chunk `counter` sealed (`plain` at most [`CHUNK`] bytes).
    pub fn seal_chunk(&self, counter: u64, last: bool, plain: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(plain.len() + TAG_LEN);
        self.seal_chunk_into(counter, last, plain, &mut out);
        out
    }

    /// The plaintext of chunk `counter`, once it authenticates.
    pub fn open_chunk(
        &self,
        counter: u64,
        last: bool,
        sealed: &[u8],
    ) -> Result<Vec<u8>, ChunkError> {
        let mut buf = sealed.to_vec();
        self.open_chunk_in_place(counter, last, &mut buf)?;
        Ok(buf)
    }

    /// Appends chunk `counter` sealed to `out`, without allocating beyond `out`'s growth.
    ///
    /// # Panics
    ///
    /// If `plain` is longer than [`CHUNK`].
    pub fn seal_chunk_into(&self, counter: u64, last: bool, plain: &[u8], out: &mut Vec<u8>) {
        assert!(
            plain.len() <= CHUNK,
            "a chunk holds at most {CHUNK} bytes, not {}",
            plain.len()
        );
        let start = out.len();
        out.extend_from_slice(plain);
        let tag = self
            .payload
            .seal_in_place_separate_tag(
                stream_nonce(counter, last),
                Aad::empty(),
                &mut out[start..],
            )
            .expect("a chunk is far below ChaCha20-Poly1305's limit");
        out.extend_from_slice(tag.as_ref());
    }

    /// Opens chunk `counter` (`sealed`: ciphertext and tag) onto the end of `out`: its
    /// plaintext is appended once it authenticates (one copy, decrypted where it lands), and
    /// `out` is left as it was otherwise.
    pub fn open_chunk_onto(
        &self,
        counter: u64,
        last: bool,
        sealed: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), ChunkError> {
        let Some(at) = sealed.len().checked_sub(TAG_LEN) else {
            return Err(ChunkError::TooShort {
                counter,
                len: sealed.len(),
            });
        };
        let tag = tag_of(&sealed[at..]);
        let start = out.len();
        out.extend_from_slice(&sealed[..at]);
        let opened = self.payload.open_in_place_separate_tag(
            stream_nonce(counter, last),
            Aad::empty(),
            tag,
            &mut out[start..],
            0..,
        );
        if opened.is_err() {
            out.truncate(start);
            return Err(ChunkError::Forged { counter });
        }
        Ok(())
    }

    /// Opens chunk `counter` in place: `buf` (ciphertext and tag) becomes its plaintext once
    /// it authenticates, and is emptied otherwise (nothing unauthenticated is left in it).
    pub fn open_chunk_in_place(
        &self,
        counter: u64,
        last: bool,
        buf: &mut Vec<u8>,
    ) -> Result<(), ChunkError> {
        let Some(at) = buf.len().checked_sub(TAG_LEN) else {
            return Err(ChunkError::TooShort {
                counter,
                len: buf.len(),
            });
        };
        let tag = tag_of(&buf[at..]);
        let opened = self.payload.open_in_place_separate_tag(
            stream_nonce(counter, last),
            Aad::empty(),
            tag,
            &mut buf[..at],
            0..,
        );
        if opened.is_err() {
            buf.clear();
            return Err(ChunkError::Forged { counter });
        }
        buf.truncate(at);
        Ok(())
    }
}

/// HKDF-SHA-256, 32 bytes.
fn hkdf(salt: &[u8], info: &[u8], ikm: &[u8]) -> [u8; 32] {
    let mut okm = [0u8; 32];
    Hkdf::<Sha256>::new(Some(salt), ikm)
        .expand(info, &mut okm)
        .expect("32 bytes is a valid HKDF-SHA-256 length");
    okm
}

/// STREAM's nonce: the 11-byte big-endian counter, then 1 for the last chunk, 0 otherwise.
fn stream_nonce(counter: u64, last: bool) -> Nonce {
    let mut n = [0u8; 12];
    n[3..11].copy_from_slice(&counter.to_be_bytes());
    n[11] = u8::from(last);
    Nonce::assume_unique_for_key(n)
}

/// A ChaCha20-Poly1305 key (ring's: about twice as fast here as a portable one).
fn aead_key(key: &[u8; 32]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, key).expect("a 32-byte key"))
}

/// A tag of [`TAG_LEN`] bytes (`b` is one).
fn tag_of(b: &[u8]) -> Tag {
    let mut tag = [0u8; TAG_LEN];
    tag.copy_from_slice(b);
    Tag::from(tag)
}

/// A header stanza: `-> tag args…`, then the body in base64 lines of 64 characters, the
/// last one shorter (empty if need be).
fn push_stanza(out: &mut String, stanza: &Stanza) {
    out.push_str("->");
    for word in std::iter::once(&stanza.tag).chain(&stanza.args) {
        out.push(' ');
        out.push_str(word);
    }
    out.push('\n');
    let body = STANDARD_NO_PAD.encode(&stanza.body);
    let mut rest = body.as_str();
    loop {
        let (line, more) = rest.split_at(rest.len().min(64));
        out.push_str(line);
        out.push('\n');
        if line.len() < 64 {
            break;
        }
        rest = more;
    }
}

/// Seals a plaintext stream into chunks, never the final one: it always holds back between 1
/// and [`CHUNK`] bytes (0 only before anything was written), so the stream can be continued
/// later. After an error from its output the stream is broken and must be started over.
pub struct ChunkSealer {
    keys: PayloadKeys,
    counter: u64,
    held: Vec<u8>,
    /// Sealed chunks not yet handed out; reused.
    batch: Vec<u8>,
}

impl ChunkSealer {
    /// Continues a stream at chunk `first_counter`, `held` being the plaintext held back so
    /// far (nothing and 0 for a new stream).
    pub fn new(keys: PayloadKeys, first_counter: u64, mut held: Vec<u8>) -> Self {
        held.reserve(CHUNK.saturating_sub(held.len()));
        Self {
            keys,
            counter: first_counter,
            held,
            batch: Vec::new(),
        }
    }

    /// Feeds plaintext: every chunk that is surely not the last (more than [`CHUNK`] bytes
    /// held) is sealed, non-final, and handed to `out`, whole chunks only, several at a time.
    pub fn write(
        &mut self,
        data: &[u8],
        out: &mut impl FnMut(&[u8]) -> io::Result<()>,
    ) -> io::Result<()> {
        let mut rest = data;
        while self.held.len() + rest.len() > CHUNK {
            if self.batch.capacity() == 0 {
                self.batch.reserve_exact(BATCH * SEALED_CHUNK);
            }
            if self.held.is_empty() {
                let (chunk, more) = rest.split_at(CHUNK);
                self.keys
                    .seal_chunk_into(self.counter, false, chunk, &mut self.batch);
                rest = more;
            } else {
                let take = CHUNK.saturating_sub(self.held.len()).min(rest.len());
                self.held.extend_from_slice(&rest[..take]);
                rest = &rest[take..];
                self.keys.seal_chunk_into(
                    self.counter,
                    false,
                    &self.held[..CHUNK],
                    &mut self.batch,
                );
                self.held.drain(..CHUNK);
            }
            self.counter += 1;
            if self.batch.len() >= BATCH * SEALED_CHUNK {
                out(&self.batch)?;
                self.batch.clear();
            }
        }
        self.held.extend_from_slice(rest);
        if !self.batch.is_empty() {
            out(&self.batch)?;
            self.batch.clear();
        }
        Ok(())
    }

    /// The index of the next chunk to seal.
    pub fn counter(&self) -> u64 {
        self.counter
    }

    /// The plaintext held back.
    pub fn held(&self) -> &[u8] {
        &self.held
    }

    /// Seals what is held as the final chunk (an empty final chunk only when nothing came
    /// before it: a stream continued at a later chunk with nothing held is refused).
    pub fn finish(mut self, out: &mut impl FnMut(&[u8]) -> io::Result<()>) -> io::Result<()> {
        self.write(&[], out)?;
        if self.held.is_empty() && self.counter > 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "the payload cannot end with an empty chunk {}: a continued stream holds \
                     back 1 to {CHUNK} bytes",
                    self.counter
                ),
            ));
        }
        self.keys
            .seal_chunk_into(self.counter, true, &self.held, &mut self.batch);
        out(&self.batch)
    }

    /// The index of the next chunk and the plaintext held back, to continue later.
    pub fn into_parts(self) -> (u64, Vec<u8>) {
        (self.counter, self.held)
    }
}

/// Reads the plaintext of a payload from plaintext offset `offset` on. Chunks `0..full` are
/// read from `file` (chunk i at `PREFIX_LEN + i * SEALED_CHUNK`, non-final); chunk `full` is
/// `seed` (its sealed bytes, non-final; absent when `full` is the end); after that, the end.
/// Each chunk is authenticated before any of its bytes is returned: a forged one is an error
/// of kind `InvalidData` wrapping a [`ChunkError`], and every read after an error fails too.
pub struct PayloadReader<R> {
    file: R,
    keys: PayloadKeys,
    full: u64,
    seed: Option<Vec<u8>>,
    /// The chunk to load next.
    next: u64,
    /// The current chunk's plaintext, and how much of it was read.
    buf: Vec<u8>,
    pos: usize,
    failed: Option<(io::ErrorKind, String)>,
}

impl<R: Read + Seek> PayloadReader<R> {
    pub fn new(
        file: R,
        keys: PayloadKeys,
        full: u64,
        seed: Option<Vec<u8>>,
        offset: u64,
    ) -> io::Result<Self> {
        let seed_len = match &seed {
            None => 0,
            Some(s) if s.len() < TAG_LEN => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    ChunkError::TooShort {
                        counter: full,
                        len: s.len(),
                    },
                ));
            }
            Some(s) => (s.len() - TAG_LEN) as u64,
        };
        // Every offset in the file fits in a u64, hence every plaintext offset too.
        let file_len = full
            .checked_mul(SEALED_CHUNK as u64)
            .and_then(|n| n.checked_add(PREFIX_LEN));
        if file_len.is_none() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a payload of {full} full chunks is too long"),
            ));
        }
        let total = full * CHUNK as u64 + seed_len;
        if offset > total {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("offset {offset} is past the end of the payload ({total} bytes)"),
            ));
        }
        let mut reader = Self {
            file,
            keys,
            full,
            seed,
            next: offset / CHUNK as u64,
            buf: Vec::with_capacity(SEALED_CHUNK),
            pos: 0,
            failed: None,
        };
        if offset == total {
            reader.next = full + 1;
            reader.seed = None;
            return Ok(reader);
        }
        if reader.next < full {
            let at = PREFIX_LEN + reader.next * SEALED_CHUNK as u64;
            reader.file.seek(SeekFrom::Start(at))?;
        }
        reader.load()?;
        reader.pos = (offset % CHUNK as u64) as usize;
        Ok(reader)
    }

    /// Loads and opens the next chunk; false at the end.
    fn load(&mut self) -> io::Result<bool> {
        let counter = self.next;
        self.pos = 0;
        if counter < self.full {
            self.buf.resize(SEALED_CHUNK, 0);
            if let Err(e) = self.file.read_exact(&mut self.buf) {
                self.buf.clear();
                if e.kind() != io::ErrorKind::UnexpectedEof {
                    return Err(e);
                }
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("chunk {counter} of the payload is missing from its file"),
                ));
            }
        } else if counter == self.full {
            match self.seed.take() {
                Some(seed) => self.buf = seed,
                None => return Ok(false),
            }
        } else {
            return Ok(false);
        }
        if let Err(e) = self.keys.open_chunk_in_place(counter, false, &mut self.buf) {
            self.buf.clear();
            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
        }
        self.next += 1;
        Ok(true)
    }
}

impl<R: Read + Seek> Read for PayloadReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        while self.pos == self.buf.len() {
            if let Some((kind, why)) = &self.failed {
                return Err(io::Error::new(*kind, why.clone()));
            }
            match self.load() {
                Ok(true) => {}
                Ok(false) => return Ok(0),
                Err(e) => {
                    self.failed = Some((e.kind(), e.to_string()));
                    return Err(e);
                }
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Seals `plain` for the database under the gateway's quarantine key (ChaCha20-Poly1305, a
/// random nonce, `context` as associated data, so that what is sealed for one payload does not
/// open for another), as standard base64: nonce, ciphertext, tag.
pub fn seal_bytes(master: &[u8; 32], context: &str, plain: &[u8]) -> String {
    let mut nonce = [0u8; 12];
    getrandom::fill(&mut nonce).expect("the OS has randomness");
    let mut sealed = Vec::with_capacity(12 + plain.len() + TAG_LEN);
    sealed.extend_from_slice(&nonce);
    sealed.extend_from_slice(plain);
    let tag = aead_key(master)
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(context.as_bytes()),
            &mut sealed[12..],
        )
        .expect("a few bytes are far below ChaCha20-Poly1305's limit");
    sealed.extend_from_slice(tag.as_ref());
    STANDARD.encode(sealed)
}

/// What [`seal_bytes`] sealed under `master` for `context`.
pub fn open_bytes(master: &[u8; 32], context: &str, sealed: &str) -> Result<Vec<u8>, String> {
    let mut raw = STANDARD
        .decode(sealed)
        .map_err(|e| format!("sealed bytes are not base64 ({e})"))?;
    if raw.len() < 12 + TAG_LEN {
        return Err(format!("sealed bytes are too short ({} bytes)", raw.len()));
    }
    let tag = tag_of(&raw[raw.len() - TAG_LEN..]);
    raw.truncate(raw.len() - TAG_LEN);
    let (nonce, body) = raw.split_at_mut(12);
    let nonce: [u8; 12] = (&*nonce).try_into().expect("12 bytes");
    aead_key(master)
        .open_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(context.as_bytes()),
            tag,
            body,
            0..,
        )
        .map_err(|_| {
            "sealed bytes do not open: another quarantine key or context, or altered".to_string()
        })?;
    Ok(body.to_vec())
}

/// Seals the 32 bytes of `keys` for the database ([`seal_bytes`]).
pub fn seal_keys(master: &[u8; 32], context: &str, keys: &PayloadKeys) -> String {
    seal_bytes(master, context, &keys.to_bytes())
}

/// The keys [`seal_keys`] sealed under `master` for `context`.
pub fn open_keys(master: &[u8; 32], context: &str, sealed: &str) -> Result<PayloadKeys, String> {
    let raw = STANDARD
        .decode(sealed)
        .map_err(|e| format!("sealed payload keys are not base64 ({e})"))?;
    if raw.len() != SEALED_KEYS_LEN {
        return Err(format!(
            "sealed payload keys are {} bytes, not {SEALED_KEYS_LEN}",
            raw.len()
        ));
    }
    let body = open_bytes(master, context, sealed).map_err(|_| {
        "sealed payload keys do not open: another quarantine key or context, or altered".to_string()
    })?;
    let b: [u8; 32] = body.as_slice().try_into().expect("32 bytes");
    Ok(PayloadKeys::from_bytes(&b))
}

/// SHA-256 that can be stopped, kept and resumed: a package's digest is begun as its payload
/// is written (the header for the recipient of the time, the nonce, the whole chunks) and
/// ended at approval with the tail, so that the build does not hash the chunks again.
#[derive(Clone)]
pub struct ResumableSha256 {
    state: [u32; 8],
    /// Bytes hashed so far.
    len: u64,
    /// Less than a block, waiting for the rest of it.
    buf: Vec<u8>,
}

/// A block of 64 bytes (`b` is one).
fn block(b: &[u8]) -> [u8; 64] {
    b.try_into().expect("a block is 64 bytes")
}

/// SHA-256's initial state.
const SHA256_IV: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

/// Blocks handed to the compression function at once.
const SHA_BATCH: usize = 1024;

impl Default for ResumableSha256 {
    fn default() -> Self {
        Self::new()
    }
}

impl ResumableSha256 {
    pub fn new() -> Self {
        ResumableSha256 {
            state: SHA256_IV,
            len: 0,
            buf: Vec::with_capacity(64),
        }
    }

    pub fn update(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        if !self.buf.is_empty() {
            let take = (64 - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() < 64 {
                return;
            }
            sha2::compress256(&mut self.state, &[block(&self.buf).into()]);
            self.buf.clear();
        }
        let whole = data.len() / 64 * 64;
        let mut blocks = Vec::with_capacity(SHA_BATCH.min(whole / 64));
        for batch in data[..whole].chunks(SHA_BATCH * 64) {
            blocks.clear();
            for b in batch.chunks_exact(64) {
                blocks.push(block(b).into());
            }
            sha2::compress256(&mut self.state, &blocks);
        }
        self.buf.extend_from_slice(&data[whole..]);
    }

    pub fn finalize(mut self) -> [u8; 32] {
        let bits = self.len.wrapping_mul(8);
        let mut tail = std::mem::take(&mut self.buf);
        tail.push(0x80);
        while tail.len() % 64 != 56 {
            tail.push(0);
        }
        tail.extend_from_slice(&bits.to_be_bytes());
        let blocks: Vec<_> = tail.chunks_exact(64).map(|b| block(b).into()).collect();
        sha2::compress256(&mut self.state, &blocks);
        let mut out = [0u8; 32];
        for (o, w) in out.chunks_exact_mut(4).zip(self.state) {
            o.copy_from_slice(&w.to_be_bytes());
        }
        out
    }

    /// The state, to keep: 32 bytes of state, 8 of length, then what waits for a block.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(40 + self.buf.len());
        for w in self.state {
            out.extend_from_slice(&w.to_be_bytes());
        }
        out.extend_from_slice(&self.len.to_be_bytes());
        out.extend_from_slice(&self.buf);
        out
    }

    /// A state [`ResumableSha256::to_bytes`] kept; None for anything else.
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        if b.len() < 40 || b.len() >= 40 + 64 {
            return None;
        }
        let mut state = [0u32; 8];
        for (w, c) in state.iter_mut().zip(b[..32].chunks_exact(4)) {
            *w = u32::from_be_bytes(c.try_into().ok()?);
        }
        let len = u64::from_be_bytes(b[32..40].try_into().ok()?);
        let buf = b[40..].to_vec();
        if len % 64 != buf.len() as u64 {
            return None;
        }
        Some(ResumableSha256 { state, len, buf })
    }
}

#[cfg(test)]
mod tests;

//! Opening a package: the analyst's side.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::rc::Rc;

use policy::archive::tar::{EntryKind, Header, Sink, TarError, TarScanner};
use sha2::{Digest, Sha256};

use super::{FILES_DIR, METADATA_NAME, SUMS_NAME, check_name};

/// The most entries (files and folders) a package may hold.
pub const MAX_ENTRIES: u64 = 100_000;
/// `SHA256SUMS` and `ro-crate-metadata.json` are read into memory: at most this each.
const MAX_LISTING_BYTES: usize = 64 << 20;
/// The names of all entries together (kept in memory to refuse duplicates): at most this.
const MAX_NAMES_BYTES: usize = 32 << 20;
/// zstd's window, which the decoder allocates, is capped at 2^24 bytes (16 MiB). The builder's
/// level (3) uses 2 MiB, as does `tar --zstd`; levels up to 19 fit.
const ZSTD_WINDOW_LOG_MAX: u32 = 24;

/// What an opened package held: its files (name inside `files/`, SHA-256, size), sorted by
/// name, every one of them checked against `SHA256SUMS`, and its RO-Crate metadata.
#[derive(Clone, Debug, PartialEq)]
pub struct Opened {
    pub files: Vec<(String, String, u64)>,
    pub metadata: serde_json::Value,
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// None of the identities given can decrypt the package.
    #[error("this package is not encrypted to this key")]
    WrongKey,
    /// The identity text holds no usable X25519 identity.
    #[error("the identity is not usable: {0}")]
    BadIdentity(String),
    /// Not an age file, or its content is not a package's (zstd, tar, the listings).
    #[error("not a release package: {0}")]
    NotAPackage(String),
    /// The encrypted stream failed authentication: altered, or cut short.
    #[error("the package is damaged or was altered: {0}")]
    Damaged(String),
    /// An entry that [`open`] will not write: a link, a device, an absolute path, `..`…
    #[error("the package holds an unsafe entry: {0}")]
    Unsafe(String),
    /// A file (`name` inside `files/`, as in [`Opened::files`]) whose content is not what
    /// `SHA256SUMS` says.
    #[error("files/{name} does not match its SHA-256 in SHA256SUMS")]
    Checksum { name: String },
    /// A name (inside `files/`) that `SHA256SUMS` lists and the package does not hold.
    #[error("files/{name} is listed in SHA256SUMS but not in the package")]
    Missing { name: String },
    /// A file (`name` inside `files/`) that `SHA256SUMS` does not list.
    #[error("files/{name} is in the package but not listed in SHA256SUMS")]
    Extra { name: String },
    #[error("the destination is not an empty folder")]
    DestNotEmpty,
    #[error("unpacking failed: {0}")]
    Io(#[from] io::Error),
}

impl From<TarError> for OpenError {
    fn from(e: TarError) -> Self {
        OpenError::NotAPackage(format!("tar: {e}"))
    }
}

/// Decrypts `package` with the identities in `identity` (an identity file's text: comments and
/// blank lines allowed), decompresses it and unpacks it into `dest`, which must be an empty
/// folder or absent (it is then made). Unpacking is strict: regular files and folders only,
/// relative names without `.`, `..`, control characters or backslashes, at most
/// [`MAX_ENTRIES`] entries, names of at most [`MAX_PATH_BYTES`](super::MAX_PATH_BYTES) bytes
/// and 32 MiB of them in all, each entry once; at the top only `files/`, `SHA256SUMS` and
/// `ro-crate-metadata.json` (anything else there is [`OpenError::NotAPackage`]). Files are
/// written 0644 and folders 0755 whatever the headers say; nothing is ever a link, so nothing
/// written can land outside `dest`. Memory stays bounded: file data streams to disk, the two
/// listings are kept (64 MiB each at most), the zstd window is capped at 16 MiB.
///
/// Then `SHA256SUMS` is checked: every file under `files/` listed, with that digest, and every
/// name listed present. The whole age stream is read to its end, so a package cut short is
/// refused too. On any error, what was unpacked is removed again (and `dest` itself, when
/// this call made it): nothing is left that could pass for a checked release.
pub fn open(package: impl Read, identity: &str, dest: &Path) -> Result<Opened, OpenError> {
    open_within(package, identity, dest, Limits::default())
}

/// The bounds `open` holds a package to; tests lower them to reach them cheaply.
#[derive(Clone, Copy, Debug)]
pub(super) struct Limits {
    pub(super) entries: u64,
    pub(super) names_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            entries: MAX_ENTRIES,
            names_bytes: MAX_NAMES_BYTES,
        }
    }
}

/// [`open`] within `limits`.
pub(super) fn open_within(
    package: impl Read,
    identity: &str,
    dest: &Path,
    limits: Limits,
) -> Result<Opened, OpenError> {
    let identities = age::IdentityFile::from_buffer(identity.as_bytes())
        .map_err(|e| OpenError::BadIdentity(e.to_string()))?
        .into_identities()
        .map_err(|e| OpenError::BadIdentity(e.to_string()))?;
    if identities.is_empty() {
        return Err(OpenError::BadIdentity(
            "no AGE-SECRET-KEY-1… line in it".into(),
        ));
    }
    let made = prepare_dest(dest)?;
    let result = unpack(package, &identities, dest, limits);
    if result.is_err() {
        clean(dest, made);
    }
    result
}

/// Makes sure `dest` is an empty folder; answers whether it made it.
fn prepare_dest(dest: &Path) -> Result<bool, OpenError> {
    match fs::metadata(dest) {
        Ok(m) if m.is_dir() => {
            if fs::read_dir(dest)?.next().is_some() {
                return Err(OpenError::DestNotEmpty);
            }
            Ok(false)
        }
        Ok(_) => Err(OpenError::DestNotEmpty),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(dest)?;
            Ok(true)
        }
        Err(e) => Err(e.into()),
    }
}

/// Removes what an unsuccessful `open` left in `dest`, best effort.
fn clean(dest: &Path, made: bool) {
    if let Ok(entries) = fs::read_dir(dest) {
        for e in entries.flatten() {
            let p = e.path();
            let _ = match e.file_type() {
                Ok(t) if t.is_dir() => fs::remove_dir_all(&p),
                _ => fs::remove_file(&p),
            };
        }
    }
    if made {
        let _ = fs::remove_dir(dest);
    }
}

fn unpack(
    package: impl Read,
    identities: &[Box<dyn age::Identity>],
    dest: &Path,
    limits: Limits,
) -> Result<Opened, OpenError> {
    use age::DecryptError as D;
    let decryptor = age::Decryptor::new(package).map_err(|e| match e {
        D::Io(e)
            if e.kind() != io::ErrorKind::UnexpectedEof
                && e.kind() != io::ErrorKind::InvalidData =>
        {
            OpenError::Io(e)
        }
        e => OpenError::NotAPackage(format!("not an age file ({e})")),
    })?;
    let plain = decryptor
        .decrypt(identities.iter().map(|i| i.as_ref() as &dyn age::Identity))
        .map_err(|e| match e {
            D::NoMatchingKeys => OpenError::WrongKey,
            D::InvalidMac | D::DecryptionFailed => {
                OpenError::Damaged(format!("its header does not verify ({e})"))
            }
            D::Io(e) => OpenError::Io(e),
            e => OpenError::NotAPackage(e.to_string()),
        })?;

    // The age layer authenticates every byte; its errors are told apart from zstd's.
    let age_failed = Rc::new(RefCell::new(None));
    let sealed = Tagged {
        inner: plain,
        failed: age_failed.clone(),
    };
    // age reports a chunk that fails authentication as invalid data and a stream cut short as
    // an unexpected end; any other error is the package's reader's own (a disk's, say).
    let layer_error = |e: io::Error| match age_failed.borrow_mut().take() {
        Some(failed)
            if matches!(
                failed.kind(),
                io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof
            ) =>
        {
            OpenError::Damaged(failed.to_string())
        }
        Some(failed) => OpenError::Io(failed),
        None => OpenError::NotAPackage(format!("not zstd-compressed ({e})")),
    };
    let mut zstd = zstd::stream::read::Decoder::new(sealed).map_err(OpenError::Io)?;
    zstd.window_log_max(ZSTD_WINDOW_LOG_MAX)
        .map_err(OpenError::Io)?;

    let mut sink = Unpack {
        dest,
        current: None,
        kinds: HashMap::new(),
        files: BTreeMap::new(),
        sums: None,
        metadata: None,
        name_bytes: 0,
        limits,
    };
    let mut scanner = TarScanner::default();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match zstd.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(layer_error(e)),
        };
        scanner.feed(&buf[..n], &mut sink)?;
    }
    scanner.finish()?;
    // zstd stops at the end of its frames; the age stream must end there too, authenticated
    // to its last chunk.
    let mut rest = zstd.finish();
    let mut extra = [0u8; 1];
    match rest.read(&mut extra) {
        Ok(0) => {}
        Ok(_) => {
            return Err(OpenError::NotAPackage(
                "data after the compressed stream".into(),
            ));
        }
        Err(e) => return Err(layer_error(e)),
    }
    sink.finish()
}

/// An age stream that remembers why it failed (the error as it was: zstd wraps it).
struct Tagged<R> {
    inner: R,
    failed: Rc<RefCell<Option<io::Error>>>,
}

impl<R: Read> Read for Tagged<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).map_err(|e| {
            if e.kind() == io::ErrorKind::Interrupted {
                return e;
            }
            let copy = io::Error::new(e.kind(), e.to_string());
            *self.failed.borrow_mut() = Some(e);
            copy
        })
    }
}

/// Where an entry goes.
enum Place {
    /// `files/` or a folder in it.
    Folder,
    /// A released file: its name inside `files/`.
    File(String),
    /// `SHA256SUMS` or `ro-crate-metadata.json`.
    Listing(&'static str),
}

enum Current {
    File {
        name: String,
        out: BufWriter<fs::File>,
        hasher: Sha256,
        size: u64,
    },
    Listing {
        which: &'static str,
        path: std::path::PathBuf,
        bytes: Vec<u8>,
    },
}

struct Unpack<'a> {
    dest: &'a Path,
    current: Option<Current>,
    /// Every path written so far: whether it is a folder.
    kinds: HashMap<String, bool>,
    /// The files under `files/`: their name inside it, SHA-256 and size.
    files: BTreeMap<String, (String, u64)>,
    sums: Option<Vec<u8>>,
    metadata: Option<Vec<u8>>,
    /// The bytes of every name so far (they are kept in `kinds`).
    name_bytes: usize,
    limits: Limits,
}

impl Unpack<'_> {
    fn finish(self) -> Result<Opened, OpenError> {
        let sums = self
            .sums
            .ok_or_else(|| OpenError::NotAPackage(format!("it holds no {SUMS_NAME}")))?;
        let metadata = self
            .metadata
            .ok_or_else(|| OpenError::NotAPackage(format!("it holds no {METADATA_NAME}")))?;
        let mut listed = parse_sums(&sums)?;
        let mut files = Vec::with_capacity(self.files.len());
        for (name, (sha256, size)) in self.files {
            match listed.remove(&name) {
                None => return Err(OpenError::Extra { name }),
                Some(expected) if expected != sha256 => return Err(OpenError::Checksum { name }),
                Some(_) => files.push((name, sha256, size)),
            }
        }
        if let Some(name) = listed.into_keys().next() {
            return Err(OpenError::Missing { name });
        }
        let metadata = serde_json::from_slice(&metadata)
            .map_err(|e| OpenError::NotAPackage(format!("{METADATA_NAME} is not JSON: {e}")))?;
        Ok(Opened { files, metadata })
    }
}

/// `SHA256SUMS` lines: `<64 hex>  files/<name>` (or ` *` for binary mode), each name once.
fn parse_sums(text: &[u8]) -> Result<BTreeMap<String, String>, OpenError> {
    let bad = |why: String| OpenError::NotAPackage(format!("{SUMS_NAME}: {why}"));
    let text = std::str::from_utf8(text).map_err(|_| bad("not UTF-8".into()))?;
    let mut listed = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        if line.is_empty() {
            continue;
        }
        let (hash, rest) = line
            .split_at_checked(64)
            .ok_or_else(|| bad(format!("line {} is not `<sha256>  <name>`", i + 1)))?;
        let path = rest
            .strip_prefix("  ")
            .or_else(|| rest.strip_prefix(" *"))
            .filter(|_| hash.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| bad(format!("line {} is not `<sha256>  <name>`", i + 1)))?;
        let name = path
            .strip_prefix(FILES_DIR)
            .and_then(|p| p.strip_prefix('/'))
            .ok_or_else(|| {
                bad(format!(
                    "line {} names {path:?}, outside {FILES_DIR}/",
                    i + 1
                ))
            })?;
        if listed
            .insert(name.to_string(), hash.to_ascii_lowercase())
            .is_some()
        {
            return Err(bad(format!("{path:?} is listed twice")));
        }
    }
    Ok(listed)
}

fn unsafe_entry(h: &Header, why: &str) -> OpenError {
    OpenError::Unsafe(format!("{}: {why}", h.display_path()))
}

impl Sink for Unpack<'_> {
    type Error = OpenError;

    fn entry(&mut self, h: &Header) -> Result<(), OpenError> {
        if self.kinds.len() as u64 >= self.limits.entries {
            return Err(OpenError::Unsafe(format!(
                "more than {} entries",
                self.limits.entries
            )));
        }
        let is_dir = match h.kind {
            EntryKind::File => false,
            EntryKind::Dir => true,
            other => {
                return Err(unsafe_entry(
                    h,
                    &format!("a {} (only files and folders)", other.as_str()),
                ));
            }
        };
        let raw = std::str::from_utf8(&h.path).map_err(|_| unsafe_entry(h, "not UTF-8"))?;
        let name = match raw.strip_suffix('/') {
            Some(n) if is_dir => n,
            Some(_) => return Err(unsafe_entry(h, "a file whose name ends with /")),
            None => raw,
        };
        check_name(name).map_err(OpenError::Unsafe)?;
        let place = match name.strip_prefix(FILES_DIR) {
            Some("") if is_dir => Place::Folder,
            Some(rest) if rest.starts_with('/') => {
                if is_dir {
                    Place::Folder
                } else {
                    Place::File(rest[1..].to_string())
                }
            }
            _ if !is_dir && name == SUMS_NAME => Place::Listing(SUMS_NAME),
            _ if !is_dir && name == METADATA_NAME => Place::Listing(METADATA_NAME),
            _ => {
                return Err(OpenError::NotAPackage(format!(
                    "{} at its top: only {FILES_DIR}/, {SUMS_NAME} and {METADATA_NAME} belong there",
                    h.display_path()
                )));
            }
        };
        self.name_bytes += name.len();
        if self.name_bytes > self.limits.names_bytes {
            return Err(OpenError::Unsafe(format!(
                "its names take more than {} bytes",
                self.limits.names_bytes
            )));
        }
        if self.kinds.contains_key(name) {
            return Err(unsafe_entry(h, "it appears twice"));
        }
        for (i, _) in name.match_indices('/') {
            if self.kinds.get(&name[..i]) == Some(&false) {
                return Err(unsafe_entry(h, "it is below a file"));
            }
        }
        let path = self.dest.join(name);
        if let Some(parent) = path.parent() {
            // A folder may come after what it holds (or not at all); make it, inside `dest`,
            // where nothing is a link.
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(parent)?;
            for (i, _) in name.match_indices('/') {
                self.kinds.entry(name[..i].to_string()).or_insert(true);
            }
        }
        self.kinds.insert(name.to_string(), is_dir);
        if matches!(place, Place::Folder) {
            match fs::DirBuilder::new().mode(0o755).create(&path) {
                Ok(()) => {}
                // Made above as the parent of an earlier entry.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => {}
                Err(e) => return Err(e.into()),
            }
            return Ok(());
        }
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&path)?;
        self.current = Some(match place {
            Place::File(name) => Current::File {
                name,
                out: BufWriter::with_capacity(64 * 1024, file),
                hasher: Sha256::new(),
                size: 0,
            },
            Place::Listing(which) => Current::Listing {
                which,
                path,
                bytes: Vec::new(),
            },
            Place::Folder => unreachable!("folders returned above"),
        });
        Ok(())
    }

    fn data(&mut self, bytes: &[u8]) -> Result<(), OpenError> {
        match &mut self.current {
            Some(Current::File {
                out, hasher, size, ..
            }) => {
                out.write_all(bytes)?;
                hasher.update(bytes);
                *size += bytes.len() as u64;
            }
            Some(Current::Listing {
                which, bytes: b, ..
            }) => {
                if b.len() + bytes.len() > MAX_LISTING_BYTES {
                    return Err(OpenError::NotAPackage(format!(
                        "{which} is larger than {} MiB",
                        MAX_LISTING_BYTES >> 20
                    )));
                }
                b.extend_from_slice(bytes);
            }
            None => {}
        }
        Ok(())
    }

    fn end_entry(&mut self) -> Result<(), OpenError> {
        match self.current.take() {
            Some(Current::File {
                name,
                out,
                hasher,
                size,
            }) => {
                out.into_inner().map_err(|e| e.into_error())?;
                self.files
                    .insert(name, (hex::encode(hasher.finalize()), size));
            }
            Some(Current::Listing { which, path, bytes }) => {
                fs::write(&path, &bytes)?;
                if which == SUMS_NAME {
                    self.sums = Some(bytes);
                } else {
                    self.metadata = Some(bytes);
                }
            }
            None => {}
        }
        Ok(())
    }
}

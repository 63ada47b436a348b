//! Building a package: tar → zstd → age in one streaming pass.

use std::collections::{BTreeSet, HashSet};
use std::io::{self, Read, Write};
use std::path::PathBuf;

use sha2::{Digest, Sha256};

use super::{FILES_DIR, METADATA_NAME, SUMS_NAME, check_name, parse_recipient};

/// One file to release: where it is in the package and where its bytes are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackageFile {
    /// Its relative path inside `files/`, e.g. `tables/counts.csv` (see [`check_name`]).
    pub name: String,
    /// The quarantined blob on disk.
    pub source: PathBuf,
    /// The SHA-256 (hex) the committee approved; the source must still have it.
    pub sha256: String,
    /// Its size in bytes, as approved.
    pub size: u64,
}

/// What [`build`] wrote: the age file's digest and size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Built {
    pub sha256: String,
    pub size: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A source no longer has the content it was approved with (`found` is the SHA-256 of
    /// what it holds now).
    #[error("{name} changed since it was approved: expected SHA-256 {expected}, found {found}")]
    Mismatch {
        name: String,
        expected: String,
        found: String,
    },
    #[error("the recipient is not usable: {0}")]
    BadRecipient(String),
    /// A file's name cannot be in a package (see [`check_name`]), or two files clash.
    #[error("a file cannot be packaged: {0}")]
    BadName(String),
    #[error("writing the package failed: {0}")]
    Io(#[from] io::Error),
}

/// `SHA256SUMS` as `sha256sum -c` reads it: `<hex>  files/<name>\n` per file, sorted by name
/// (bytewise). The names are those [`check_name`] accepts, so none needs escaping.
pub fn sha256sums(files: &[PackageFile]) -> String {
    let mut sorted: Vec<&PackageFile> = files.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out = String::new();
    for f in sorted {
        out.push_str(&f.sha256.to_ascii_lowercase());
        out.push_str("  ");
        out.push_str(FILES_DIR);
        out.push('/');
        out.push_str(&f.name);
        out.push('\n');
    }
    out
}

/// zstd level: fast, and a window (2 MiB) any decoder accepts.
const ZSTD_LEVEL: i32 = 3;

/// Builds a package into `out` in one streaming pass (blocking; async callers use
/// `spawn_blocking`): a tar of the files under `files/` (sorted by name, each folder before
/// what it holds), then `SHA256SUMS`, then `ro-crate-metadata.json` (`metadata`, pretty
/// printed), compressed with zstd and encrypted with age to `recipient` (X25519 only).
///
/// Every source is hashed again as it is read; one that no longer has its approved size and
/// SHA-256 aborts the build with [`BuildError::Mismatch`] and `out` holds a broken package
/// that the caller discards. Memory stays bounded whatever the files' sizes (the tar, zstd and
/// age stages each hold a buffer of their own). Headers are deterministic: `mtime` on every
/// entry, uid and gid 0, no user or group names, mode 0644 for files and 0755 for folders.
pub fn build(
    files: &[PackageFile],
    metadata: &serde_json::Value,
    recipient: &str,
    mtime: u64,
    out: &mut impl Write,
) -> Result<Built, BuildError> {
    let recipient = parse_recipient(recipient).map_err(BuildError::BadRecipient)?;
    let recipient: age::x25519::Recipient = recipient
        .parse()
        .map_err(|e: &str| BuildError::BadRecipient(e.to_string()))?;
    let mut sorted: Vec<&PackageFile> = files.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let dirs = check_layout(&sorted)?;

    let counted = Counted {
        inner: out,
        hasher: Sha256::new(),
        size: 0,
    };
    let encryptor =
        age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))
            .map_err(|e| BuildError::BadRecipient(e.to_string()))?;
    let sealed = encryptor.wrap_output(counted)?;
    let mut zstd = zstd::stream::write::Encoder::new(sealed, ZSTD_LEVEL)?;
    zstd.include_checksum(true)?;
    let mut tar = tar::Builder::new(zstd);

    append_dir(&mut tar, &format!("{FILES_DIR}/"), mtime)?;
    let mut made: HashSet<&str> = HashSet::new();
    for f in &sorted {
        // Each folder above the file, outermost first, once.
        for (i, _) in f.name.match_indices('/') {
            let dir = &f.name[..i];
            if made.insert(dir) {
                append_dir(&mut tar, &format!("{FILES_DIR}/{dir}/"), mtime)?;
            }
        }
        append_source(&mut tar, f, mtime)?;
    }
    debug_assert_eq!(made.len(), dirs);
    append_bytes(&mut tar, SUMS_NAME, sha256sums(files).as_bytes(), mtime)?;
    let mut json = serde_json::to_vec_pretty(metadata).map_err(io::Error::other)?;
    json.push(b'\n');
    append_bytes(&mut tar, METADATA_NAME, &json, mtime)?;

    let zstd = tar.into_inner()?;
    let sealed = zstd.finish()?;
    let counted = sealed.finish()?;
    counted.inner.flush()?;
    Ok(Built {
        sha256: hex::encode(counted.hasher.finalize()),
        size: counted.size,
    })
}

/// Checks every name, and that no two files clash (the same name, or a file where another
/// needs a folder). Answers how many folders `files/` will hold.
fn check_layout(sorted: &[&PackageFile]) -> Result<usize, BuildError> {
    let mut names = HashSet::new();
    let mut dirs = BTreeSet::new();
    for f in sorted {
        check_name(&format!("{FILES_DIR}/{}", f.name)).map_err(BuildError::BadName)?;
        if !names.insert(f.name.as_str()) {
            return Err(BuildError::BadName(format!("{:?} is listed twice", f.name)));
        }
        for (i, _) in f.name.match_indices('/') {
            dirs.insert(&f.name[..i]);
        }
    }
    if let Some(both) = dirs.iter().find(|d| names.contains(*d)) {
        return Err(BuildError::BadName(format!(
            "{both:?} is both a file and a folder"
        )));
    }
    Ok(dirs.len())
}

fn header(kind: tar::EntryType, size: u64, mode: u32, mtime: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(mtime);
    h
}

fn append_dir<W: Write>(tar: &mut tar::Builder<W>, path: &str, mtime: u64) -> io::Result<()> {
    let mut h = header(tar::EntryType::Directory, 0, 0o755, mtime);
    tar.append_data(&mut h, path, io::empty())
}

fn append_bytes<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &str,
    bytes: &[u8],
    mtime: u64,
) -> io::Result<()> {
    let mut h = header(tar::EntryType::Regular, bytes.len() as u64, 0o644, mtime);
    tar.append_data(&mut h, path, bytes)
}

/// Streams one source into the tar, hashing what it reads; the source must hold exactly the
/// approved bytes (a longer one is read to its end for the digest reported).
fn append_source<W: Write>(
    tar: &mut tar::Builder<W>,
    f: &PackageFile,
    mtime: u64,
) -> Result<(), BuildError> {
    let file = std::fs::File::open(&f.source)?;
    let mut reader = Hashing {
        inner: file.take(f.size),
        hasher: Sha256::new(),
        read: 0,
    };
    let mut h = header(tar::EntryType::Regular, f.size, 0o644, mtime);
    tar.append_data(&mut h, format!("{FILES_DIR}/{}", f.name), &mut reader)?;
    let short = reader.read < f.size;
    let mut hasher = reader.hasher;
    let mut rest = reader.inner.into_inner();
    let longer = io::copy(&mut rest, &mut HashSink(&mut hasher))? > 0;
    let found = hex::encode(hasher.finalize());
    if short || longer || !found.eq_ignore_ascii_case(&f.sha256) {
        return Err(BuildError::Mismatch {
            name: f.name.clone(),
            expected: f.sha256.to_ascii_lowercase(),
            found,
        });
    }
    Ok(())
}

struct Hashing<R> {
    inner: R,
    hasher: Sha256,
    read: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

struct HashSink<'a>(&'a mut Sha256);

impl Write for HashSink<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The caller's writer, hashing and counting what reaches it.
struct Counted<W> {
    inner: W,
    hasher: Sha256,
    size: u64,
}

impl<W: Write> Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

//! Building a package: tar → zstd → age in one streaming pass.

use std::collections::{BTreeSet, HashSet};
use std::io::{self, Write};
use std::path::PathBuf;

use sha2::{Digest, Sha256};

use super::stages::{self, FRAME, OUT_PIECE, Pieces};
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
    /// The payload a release is finished from is not what the gateway wrote: a chunk fails
    /// authentication, it is shorter, or its tar is not the files recorded.
    #[error("the quarantined payload was altered: {0}")]
    Altered(String),
    #[error("writing the package failed: {0}")]
    Io(#[from] io::Error),
}

/// `SHA256SUMS` as `sha256sum -c` reads it: `<hex>  files/<name>\n` per file, sorted by name
/// (bytewise). The names are those [`check_name`] accepts, so none needs escaping.
pub fn sha256sums(files: &[PackageFile]) -> String {
    sums(files.iter().map(|f| (f.name.as_str(), f.sha256.as_str())))
}

/// [`sha256sums`] of `(name, SHA-256)` pairs.
pub(crate) fn sums<'a>(files: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let mut sorted: Vec<(&str, &str)> = files.collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let mut out = String::new();
    for (name, sha256) in sorted {
        out.push_str(&sha256.to_ascii_lowercase());
        out.push_str("  ");
        out.push_str(FILES_DIR);
        out.push('/');
        out.push_str(name);
        out.push('\n');
    }
    out
}

/// zstd level: fast, and a window (at most 1 MiB: one frame, see [`FRAME`]) any decoder
/// accepts.
const ZSTD_LEVEL: i32 = 3;

/// Threads compressing pieces of tar at once.
const COMPRESSORS: usize = 2;

/// Builds a package into `out` in one streaming pass (blocking; async callers use
/// `spawn_blocking`): a tar of the files under `files/` (sorted by name, each folder before
/// what it holds), then `SHA256SUMS`, then `ro-crate-metadata.json` (`metadata`, pretty
/// printed), compressed with zstd (frames of [`FRAME`] bytes of tar each) and encrypted with
/// age to `recipient` (X25519 only).
///
/// Four stages run at once (see [`super::stages`]), on threads of their own: this one reads
/// and hashes the sources and writes the tar; two compress it, a piece each in turn; one
/// encrypts the frames and hashes what comes out; the last writes it.
///
/// Every source is hashed again as it is read; one that no longer has its approved size and
/// SHA-256 aborts the build with [`BuildError::Mismatch`] and `out` holds a broken package
/// that the caller discards. Memory stays bounded whatever the files' sizes (each stage holds
/// a few pieces). Headers are deterministic: `mtime` on every
/// entry, uid and gid 0, no user or group names, mode 0644 for files and 0755 for folders.
pub fn build(
    files: &[PackageFile],
    metadata: &serde_json::Value,
    recipient: &str,
    mtime: u64,
    out: &mut (impl Write + Send),
) -> Result<Built, BuildError> {
    let recipient = parse_recipient(recipient).map_err(BuildError::BadRecipient)?;
    let recipient: age::x25519::Recipient = recipient
        .parse()
        .map_err(|e: &str| BuildError::BadRecipient(e.to_string()))?;
    let mut sorted: Vec<&PackageFile> = files.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let dirs = check_layout(&sorted)?;

    let encryptor =
        age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))
            .map_err(|e| BuildError::BadRecipient(e.to_string()))?;

    std::thread::scope(|scope| {
        // Two compressors, the pieces of tar dealt to them in turn and their frames taken
        // back in the same turn: the order holds, and both cores compress.
        let (mut tar_out, mut age_in, mut compressing) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..COMPRESSORS {
            let (to_zstd, zstd_in) = stages::pipe();
            let (zstd_out, to_age) = stages::pipe();
            compressing.push(scope.spawn(move || stages::compress(zstd_in, zstd_out, ZSTD_LEVEL)));
            tar_out.push(to_zstd);
            age_in.push(to_age);
        }
        let (age_out, write_in) = stages::pipe();
        let sealing = scope.spawn(move || -> io::Result<(Sha256, u64)> {
            let counted = Counted {
                inner: Pieces::new(vec![age_out], OUT_PIECE),
                hasher: Sha256::new(),
                size: 0,
            };
            let mut sealed = encryptor.wrap_output(counted)?;
            stages::each_in_turn(age_in, |frame| sealed.write_all(frame))?;
            let counted = sealed.finish()?;
            counted.inner.close()?;
            Ok((counted.hasher, counted.size))
        });
        let writing = scope.spawn(move || -> io::Result<()> {
            stages::each_in_turn(vec![write_in], |piece| out.write_all(piece))?;
            out.flush()
        });
        let written = write_tar(
            &sorted,
            files,
            metadata,
            mtime,
            dirs,
            Pieces::new(tar_out, FRAME),
        );
        // Each stage ends once the pipe into it is closed (written whole, or dropped by a
        // failure); a later stage's failure explains a broken pipe in an earlier one.
        let mut failed: Vec<io::Error> = compressing
            .into_iter()
            .filter_map(|c| joined(c, "compressing").err())
            .collect();
        let sealed = match joined(sealing, "encrypting") {
            Ok(digest) => Some(digest),
            Err(e) => {
                failed.push(e);
                None
            }
        };
        failed.extend(joined(writing, "writing").err());
        let broken = |e: &io::Error| e.kind() == io::ErrorKind::BrokenPipe;
        let cause = match failed.iter().position(|e| !broken(e)) {
            Some(i) => Some(failed.swap_remove(i)),
            None => failed.into_iter().next(),
        };
        match (written, cause, sealed) {
            (Err(BuildError::Io(e)), cause, _) if broken(&e) => {
                Err(BuildError::Io(cause.unwrap_or(e)))
            }
            (Err(e), _, _) => Err(e),
            (Ok(()), Some(e), _) => Err(BuildError::Io(e)),
            (Ok(()), None, Some((hasher, size))) => Ok(Built {
                sha256: hex::encode(hasher.finalize()),
                size,
            }),
            (Ok(()), None, None) => Err(io::Error::other("the encrypting thread failed").into()),
        }
    })
}

/// What a stage's thread answered (a panic as an error).
fn joined<T>(h: std::thread::ScopedJoinHandle<'_, io::Result<T>>, what: &str) -> io::Result<T> {
    h.join()
        .unwrap_or_else(|_| Err(io::Error::other(format!("the {what} thread panicked"))))
}

/// The tar of the package into `pieces` (closed at the end).
fn write_tar(
    sorted: &[&PackageFile],
    files: &[PackageFile],
    metadata: &serde_json::Value,
    mtime: u64,
    dirs: usize,
    pieces: Pieces,
) -> Result<(), BuildError> {
    let mut tar = tar::Builder::new(pieces);

    append_dir(&mut tar, &format!("{FILES_DIR}/"), mtime)?;
    let mut made: HashSet<&str> = HashSet::new();
    for f in sorted {
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

    tar.into_inner()?.close()?;
    Ok(())
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

pub(crate) fn header(kind: tar::EntryType, size: u64, mode: u32, mtime: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(mtime);
    h
}

pub(crate) fn append_dir<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &str,
    mtime: u64,
) -> io::Result<()> {
    let mut h = header(tar::EntryType::Directory, 0, 0o755, mtime);
    tar.append_data(&mut h, path, io::empty())
}

pub(crate) fn append_bytes<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &str,
    bytes: &[u8],
    mtime: u64,
) -> io::Result<()> {
    let mut h = header(tar::EntryType::Regular, bytes.len() as u64, 0o644, mtime);
    tar.append_data(&mut h, path, bytes)
}

/// Streams one source into the tar, hashing what it reads; the source must hold exactly the
/// approved bytes (a longer one is read to its end for the digest reported). Its header goes
/// through the tar crate; its data is read straight into the tar's pieces, then the padding
/// to a whole block.
fn append_source(
    tar: &mut tar::Builder<Pieces>,
    f: &PackageFile,
    mtime: u64,
) -> Result<(), BuildError> {
    let mut file = std::fs::File::open(&f.source)?;
    let mut hasher = Sha256::new();
    let mut h = header(tar::EntryType::Regular, f.size, 0o644, mtime);
    // A header (with a long name's entry before it where needed) and no data.
    tar.append_data(&mut h, format!("{FILES_DIR}/{}", f.name), io::empty())?;
    let out = tar.get_mut();
    let read = out.read_from(&mut file, f.size, &mut hasher)?;
    let short = read < f.size;
    if !short {
        let pad = (BLOCK - (f.size % BLOCK as u64) as usize) % BLOCK;
        out.write_all(&[0u8; BLOCK][..pad])?;
    }
    let longer = io::copy(&mut file, &mut HashSink(&mut hasher))? > 0;
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

/// A tar block.
pub(crate) const BLOCK: usize = 512;

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

#[cfg(test)]
mod pipeline_tests {
    //! The stages' buffers: files larger than the read buffer and the pipe's pieces, sizes
    //! that are not a whole number of tar blocks, and a change caught past the first piece.
    use super::super::tests::{blob, key, metadata_for, noise};
    use super::*;

    #[test]
    fn files_larger_than_every_buffer_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let text: Vec<u8> = (0..400_000u32)
            .flat_map(|i| format!("{i},{}\n", i % 97).into_bytes())
            .collect();
        let files = vec![
            blob(tmp.path(), "a/noise.bin", &noise(3 * FRAME + 1234, 7)),
            blob(tmp.path(), "a/table.csv", &text),
            blob(tmp.path(), "b/odd.bin", &noise(FRAME - 1, 9)),
            blob(tmp.path(), "b/one.txt", b"x"),
        ];
        let (identity, recipient) = key();
        let mut out = Vec::new();
        let built = build(&files, &metadata_for(&files), &recipient, 0, &mut out).unwrap();
        assert_eq!(built.size, out.len() as u64);
        assert_eq!(built.sha256, crate::sha256_hex(&out));
        assert!(out.len() > 2 * FRAME, "the pipes carried several pieces");
        let dest = tmp.path().join("opened");
        let opened = crate::release::open(&out[..], &identity, &dest).unwrap();
        assert_eq!(opened.files.len(), files.len());
        for f in &files {
            let got = std::fs::read(dest.join("files").join(&f.name)).unwrap();
            assert_eq!(crate::sha256_hex(&got), f.sha256, "{}", f.name);
        }
    }

    #[test]
    fn a_change_past_the_first_buffer_is_caught() {
        let tmp = tempfile::tempdir().unwrap();
        let bytes = noise(2 * FRAME + 10, 3);
        let mut f = blob(tmp.path(), "big.bin", &bytes);
        let mut changed = bytes.clone();
        changed[FRAME + 5] ^= 1;
        std::fs::write(&f.source, &changed).unwrap();
        let (_, recipient) = key();
        match build(&[f.clone()], &json_empty(), &recipient, 0, &mut Vec::new()) {
            Err(BuildError::Mismatch { found, .. }) => {
                assert_eq!(found, crate::sha256_hex(&changed))
            }
            other => panic!("{other:?}"),
        }
        // Shorter than approved, too.
        std::fs::write(&f.source, &bytes[..FRAME]).unwrap();
        f.name = "short.bin".into();
        let r = build(&[f], &json_empty(), &recipient, 0, &mut Vec::new());
        assert!(matches!(r, Err(BuildError::Mismatch { .. })), "{r:?}");
    }

    /// The last stage's failure (the disk) is what the build answers, not the broken pipes it
    /// leaves behind in the stages before it.
    #[test]
    fn a_failing_output_is_the_error_reported() {
        struct Full;
        impl Write for Full {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::other("the disk is full"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let tmp = tempfile::tempdir().unwrap();
        let files = vec![blob(tmp.path(), "big.bin", &noise(8 * FRAME, 5))];
        let (_, recipient) = key();
        match build(&files, &json_empty(), &recipient, 0, &mut Full) {
            Err(BuildError::Io(e)) => assert_eq!(e.to_string(), "the disk is full"),
            other => panic!("{other:?}"),
        }
    }

    fn json_empty() -> serde_json::Value {
        serde_json::json!({})
    }
}

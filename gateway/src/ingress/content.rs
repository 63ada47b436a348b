//! A dataset's content: an upload (a tar, or a tar compressed with zstd) read through the same
//! archive rules as ingress and written straight into a folder, each file hashed as it is
//! written, everything made read-only at the end (files 0444, folders 0555).
//!
//! ```text
//! body ──chunks──▶ unpack worker: SHA-256 of the upload ▶ [zstd] ▶ tar reader ▶ rules
//!                                  ▶ file written + SHA-256 per file, fsynced
//! ```
//!
//! The folder is the caller's, fresh and empty; nothing else writes it. No entry can leave it:
//! the rules accept only regular files and folders with canonical relative paths (no `..`, no
//! links, no devices), and files are created new. On any refusal the caller removes it
//! ([`remove_tree`]).

use std::collections::BTreeSet;
use std::fs::{DirBuilder, File, OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use axum::body::Bytes;
use futures_util::Stream;
use policy::archive::rules::{Limits, Rule, Validator, Violation};
use policy::archive::tar::{EntryKind, Header, Sink};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc::{Receiver, channel};

use super::unpack::Unpacker;
use super::{Format, IngestError};
use crate::store::ingress::ManifestEntry;

/// Chunks in flight: the memory bound of an upload.
const QUEUE: usize = 8;

/// After a refusal, how much more of the body is read (and dropped) so the client gets the
/// answer rather than a reset connection.
const DRAIN_MAX: u64 = 64 << 20;

/// The modes of what is unpacked.
const FILE_MODE: u32 = 0o444;
const DIR_MODE: u32 = 0o555;

/// What an accepted upload unpacked to.
#[derive(Debug)]
pub struct Unpacked {
    pub format: Format,
    pub upload_bytes: u64,
    pub upload_sha256: String,
    /// The tar's SHA-256 (the upload's, for a plain tar).
    pub tar_sha256: String,
    /// Every file and folder, in the archive's order, with the modes they were given.
    pub entries: Vec<ManifestEntry>,
    /// The files' bytes, summed.
    pub bytes: u64,
}

impl Unpacked {
    pub fn files(&self) -> u64 {
        self.entries.iter().filter(|e| e.kind == "file").count() as u64
    }

    /// The manifest as `sha256sum` prints it, one `<sha256>  <path>` line per file, sorted by
    /// path; its SHA-256 is what the dataset's record keeps.
    pub fn manifest(&self) -> String {
        manifest_of(&self.entries)
    }
}

/// The `sha256sum` lines of `entries`' files, sorted by path.
pub fn manifest_of(entries: &[ManifestEntry]) -> String {
    let mut files: Vec<(&str, &str)> = entries
        .iter()
        .filter_map(|e| Some((e.path.as_str(), e.sha256.as_deref()?)))
        .collect();
    files.sort_unstable();
    files
        .iter()
        .map(|(path, sha)| format!("{sha}  {path}\n"))
        .collect()
}

/// Streams `body` through the archive rules into `dir` (which exists and is empty).
pub async fn unpack_into<S, E>(
    mut body: S,
    dir: PathBuf,
    limits: Limits,
) -> Result<Unpacked, IngestError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let (tx, rx) = channel::<Bytes>(QUEUE);
    let worker_limits = limits.clone();
    // Awaited before the request answers: not background work, so not among the `Workers`.
    let worker = tokio::task::spawn_blocking(move || unpack_worker(rx, dir, worker_limits));
    let mut uploaded: u64 = 0;
    let mut tx = Some(tx);
    let mut refused_at: Option<u64> = None;
    let mut cut = None;
    loop {
        let chunk = match super::next_chunk(&mut body, &mut uploaded, &limits).await {
            Ok(Some(c)) => c,
            Ok(None) => break,
            Err(e) => {
                cut = Some(e);
                break;
            }
        };
        if let Some(t) = &tx {
            if t.send(chunk).await.is_err() {
                // The worker stopped on a broken rule: drain a little of the rest.
                tx = None;
                refused_at = Some(uploaded);
            }
        }
        if refused_at.is_some_and(|at| uploaded - at > DRAIN_MAX) {
            break;
        }
    }
    drop(tx);
    let done = worker
        .await
        .map_err(|e| anyhow::anyhow!("the unpack worker failed: {e}"))?;
    if let Some(e) = cut {
        return Err(e);
    }
    let mut done = done?;
    done.upload_bytes = uploaded;
    Ok(done)
}

/// Makes `path` (a tree [`unpack_into`] wrote) writable again and removes it; a path that does
/// not exist is not an error.
pub fn remove_tree(path: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return std::fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    }
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        std::fs::set_permissions(&dir, Permissions::from_mode(0o755))?;
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    std::fs::remove_dir_all(path)
}

/// Writes accepted entries under the root, hashing each file.
struct WriteSink {
    root: PathBuf,
    validator: Validator,
    entries: Vec<ManifestEntry>,
    /// Every folder made, explicit or above a file, relative to the root.
    dirs: BTreeSet<String>,
    bytes: u64,
    current: Option<Current>,
    /// What failed on the gateway's side (a write, a folder), not the archive's fault.
    failed: Option<std::io::Error>,
}

struct Current {
    entry: ManifestEntry,
    out: std::io::BufWriter<File>,
    hasher: Sha256,
}

impl WriteSink {
    /// Turns a failure of the gateway's own into the violation the tar reader passes on; the
    /// worker answers it as what it is ([`WriteSink::failed`]).
    fn io(&mut self, e: std::io::Error) -> Violation {
        let message = format!("writing the content: {e}");
        self.failed = Some(e);
        Violation {
            rule: Rule::Corrupt,
            entry: None,
            message,
        }
    }

    fn make_dir(&mut self, rel: &str) -> std::io::Result<()> {
        if self.dirs.contains(rel) {
            return Ok(());
        }
        DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(self.root.join(rel))?;
        let mut cur = rel;
        loop {
            self.dirs.insert(cur.to_owned());
            match cur.rsplit_once('/') {
                Some((parent, _)) => cur = parent,
                None => return Ok(()),
            }
        }
    }

    fn open(&mut self, rel: &str) -> std::io::Result<File> {
        if let Some((parent, _)) = rel.rsplit_once('/') {
            self.make_dir(parent)?;
        }
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(self.root.join(rel))
    }

    fn close(&mut self, c: Current) -> std::io::Result<ManifestEntry> {
        let file = c.out.into_inner().map_err(|e| e.into_error())?;
        file.set_permissions(Permissions::from_mode(FILE_MODE))?;
        file.sync_all()?;
        let mut entry = c.entry;
        entry.sha256 = Some(hex::encode(c.hasher.finalize()));
        Ok(entry)
    }

    /// Makes every folder read-only and durable, the deepest first, the root last.
    fn seal(&mut self) -> std::io::Result<()> {
        let mut dirs: Vec<&String> = self.dirs.iter().collect();
        dirs.sort_by_key(|d| std::cmp::Reverse(d.matches('/').count()));
        for d in dirs {
            let path = self.root.join(d);
            File::open(&path)?.sync_all()?;
            std::fs::set_permissions(&path, Permissions::from_mode(DIR_MODE))?;
        }
        File::open(&self.root)?.sync_all()?;
        std::fs::set_permissions(&self.root, Permissions::from_mode(DIR_MODE))
    }
}

impl Sink for WriteSink {
    type Error = Violation;

    fn entry(&mut self, h: &Header) -> Result<(), Violation> {
        let Some(accepted) = self.validator.check_entry(h)? else {
            self.current = None;
            return Ok(());
        };
        if accepted.kind == EntryKind::Dir {
            if let Err(e) = self.make_dir(&accepted.path) {
                return Err(self.io(e));
            }
            self.entries.push(ManifestEntry {
                path: accepted.path,
                kind: "directory".into(),
                size: 0,
                mode: DIR_MODE,
                sha256: None,
            });
            self.current = None;
            return Ok(());
        }
        let file = match self.open(&accepted.path) {
            Ok(f) => f,
            Err(e) => return Err(self.io(e)),
        };
        self.current = Some(Current {
            entry: ManifestEntry {
                path: accepted.path,
                kind: "file".into(),
                size: accepted.size,
                mode: FILE_MODE,
                sha256: None,
            },
            out: std::io::BufWriter::with_capacity(1 << 20, file),
            hasher: Sha256::new(),
        });
        Ok(())
    }

    fn data(&mut self, bytes: &[u8]) -> Result<(), Violation> {
        if let Some(c) = &mut self.current {
            c.hasher.update(bytes);
            if let Err(e) = c.out.write_all(bytes) {
                return Err(self.io(e));
            }
        }
        Ok(())
    }

    fn end_entry(&mut self) -> Result<(), Violation> {
        if let Some(c) = self.current.take() {
            let size = c.entry.size;
            match self.close(c) {
                Ok(entry) => self.entries.push(entry),
                Err(e) => return Err(self.io(e)),
            }
            self.bytes += size;
        }
        Ok(())
    }
}

fn unpack_worker(
    mut rx: Receiver<Bytes>,
    root: PathBuf,
    limits: Limits,
) -> Result<Unpacked, IngestError> {
    let mut unpacker = Unpacker::default();
    let mut sink = WriteSink {
        root,
        validator: Validator::new(limits.clone()),
        entries: Vec::new(),
        dirs: BTreeSet::new(),
        bytes: 0,
        current: None,
        failed: None,
    };
    let mut upload = Sha256::new();
    let refusal = |sink: &mut WriteSink, v: Violation| match sink.failed.take() {
        Some(e) => IngestError::Internal(anyhow::Error::new(e).context("unpacking a dataset")),
        None => IngestError::Refused(v),
    };
    while let Some(chunk) = rx.blocking_recv() {
        upload.update(&chunk);
        if let Err(v) = unpacker.feed(&chunk, &mut sink, |up, out| limits.check_ratio(up, out)) {
            return Err(refusal(&mut sink, v));
        }
    }
    let tar_sha256 = match unpacker.finish() {
        Ok(t) => t,
        Err(v) => return Err(refusal(&mut sink, v)),
    };
    sink.validator.finish().map_err(IngestError::Refused)?;
    sink.seal()
        .map_err(|e| IngestError::Internal(anyhow::Error::new(e).context("sealing a dataset")))?;
    let upload_sha256 = hex::encode(upload.finalize());
    Ok(Unpacked {
        format: unpacker.format().unwrap_or(Format::Tar),
        upload_bytes: 0,
        tar_sha256: tar_sha256.unwrap_or_else(|| upload_sha256.clone()),
        upload_sha256,
        entries: sink.entries,
        bytes: sink.bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, sha256: Option<&str>) -> ManifestEntry {
        ManifestEntry {
            path: path.into(),
            kind: if sha256.is_some() {
                "file"
            } else {
                "directory"
            }
            .into(),
            size: 0,
            mode: 0,
            sha256: sha256.map(Into::into),
        }
    }

    #[test]
    fn the_manifest_is_sha256sum_lines_of_the_files_sorted_by_path() {
        let entries = [
            entry("b/x.csv", Some("22")),
            entry("b", None),
            entry("a.csv", Some("11")),
            entry("B.csv", Some("33")),
        ];
        assert_eq!(manifest_of(&entries), "33  B.csv\n11  a.csv\n22  b/x.csv\n");
        assert_eq!(manifest_of(&[]), "");
    }

    #[test]
    fn remove_tree_removes_read_only_folders_and_nothing_is_fine() {
        let root = std::env::temp_dir().join(format!("vre-remove-tree-{}", std::process::id()));
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("a/b/f"), "x").unwrap();
        for d in ["a/b", "a", ""] {
            std::fs::set_permissions(root.join(d), Permissions::from_mode(DIR_MODE)).unwrap();
        }
        remove_tree(&root).unwrap();
        assert!(!root.exists());
        remove_tree(&root).unwrap();
    }
}

//! The content-addressed blob store: `blobs/sha256/ab/cdef…`, each blob written once.
//!
//! A blob is written to `tmp/` and fsynced; [`FinishedBlob::commit`] renames it into place (and
//! fsyncs the folder it lands in, and the parent of any folder it had to make), which callers do
//! inside the write transaction that records it (in the `blobs` table), just before the commit.
//! Identical content is stored once. At start, whatever is in `tmp/` was never committed and is
//! swept, and so is any blob the database does not know (a crash between the rename and the
//! commit).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use sha2::{Digest, Sha256};

use crate::workers::Workers;

#[derive(Clone)]
pub struct BlobStore {
    root: PathBuf,
    tmp: PathBuf,
    /// Where temporary files that are not kept are unlinked, in the background.
    workers: Workers,
}

impl BlobStore {
    pub fn new(root: PathBuf, tmp: PathBuf, workers: Workers) -> Self {
        BlobStore { root, tmp, workers }
    }

    /// Removes the leftovers of writes that never committed; returns how many.
    pub fn sweep_tmp(&self) -> anyhow::Result<usize> {
        std::fs::create_dir_all(&self.tmp)?;
        let mut n = 0;
        for entry in std::fs::read_dir(&self.tmp)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                std::fs::remove_file(entry.path())?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Every blob on disk, by SHA-256.
    pub fn list(&self) -> anyhow::Result<Vec<String>> {
        let mut out = Vec::new();
        let base = self.root.join("sha256");
        let Ok(dirs) = std::fs::read_dir(&base) else {
            return Ok(out);
        };
        for d in dirs {
            let d = d?;
            let prefix = d.file_name().to_string_lossy().into_owned();
            if !d.file_type()?.is_dir() {
                continue;
            }
            for f in std::fs::read_dir(d.path())? {
                let f = f?;
                out.push(format!("{prefix}{}", f.file_name().to_string_lossy()));
            }
        }
        Ok(out)
    }

    pub fn remove(&self, sha256: &str) -> anyhow::Result<()> {
        std::fs::remove_file(self.path_of(sha256)?)?;
        Ok(())
    }

    /// Whether the blob's file last changed (its rename into place, on Linux) more than `age`
    /// ago; false when that cannot be told.
    pub fn settled(&self, sha256: &str, age: std::time::Duration) -> bool {
        use std::os::unix::fs::MetadataExt;
        let Ok(meta) = self.path_of(sha256).and_then(|p| Ok(std::fs::metadata(p)?)) else {
            return false;
        };
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        now.saturating_sub(meta.ctime()) > age.as_secs() as i64
    }

    pub fn path_of(&self, sha256: &str) -> anyhow::Result<PathBuf> {
        anyhow::ensure!(
            sha256.len() == 64
                && sha256
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "not a SHA-256 in lowercase hex"
        );
        Ok(self
            .root
            .join("sha256")
            .join(&sha256[..2])
            .join(&sha256[2..]))
    }

    pub fn contains(&self, sha256: &str) -> bool {
        self.path_of(sha256).map(|p| p.exists()).unwrap_or(false)
    }

    /// A new temporary file for a blob being written (by a blocking writer).
    pub fn temp_file(&self) -> anyhow::Result<(PathBuf, std::fs::File)> {
        std::fs::create_dir_all(&self.tmp)?;
        let mut r = [0u8; 12];
        getrandom::fill(&mut r).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        let path = self.tmp.join(format!("blob-{}", hex::encode(r)));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .with_context(|| format!("creating {}", path.display()))?;
        Ok((path, file))
    }

    /// Wraps a temporary file that was written, fsynced and hashed.
    pub fn finished(&self, tmp: PathBuf, sha256: String, size: u64) -> FinishedBlob {
        FinishedBlob {
            tmp,
            sha256,
            size,
            root: self.root.clone(),
            workers: self.workers.clone(),
            committed: false,
        }
    }

    /// Writes a small blob from memory.
    pub async fn put(&self, bytes: Vec<u8>) -> anyhow::Result<FinishedBlob> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || {
            let (path, mut f) = store.temp_file()?;
            // Build the guard first so an error below removes the file.
            let mut blob = store.finished(path, String::new(), bytes.len() as u64);
            f.write_all(&bytes)?;
            f.sync_all()?;
            blob.sha256 = hex::encode(Sha256::digest(&bytes));
            Ok(blob)
        })
        .await?
    }

    pub async fn open(&self, sha256: &str) -> anyhow::Result<tokio::fs::File> {
        let p = self.path_of(sha256)?;
        tokio::fs::File::open(&p)
            .await
            .with_context(|| format!("opening blob {sha256}"))
    }
}

/// A blob written to a temporary file, not yet in the store. Dropped without
/// [`commit`](FinishedBlob::commit), it is removed.
pub struct FinishedBlob {
    tmp: PathBuf,
    sha256: String,
    size: u64,
    root: PathBuf,
    workers: Workers,
    committed: bool,
}

impl FinishedBlob {
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Sets what a blocking writer found the content to be, once it finished.
    pub fn set_content(&mut self, sha256: String, size: u64) {
        self.sha256 = sha256;
        self.size = size;
    }

    /// Moves the blob into the store (or drops it when identical content is there).
    pub async fn commit(mut self) -> anyhow::Result<String> {
        let sha = self.sha256.clone();
        let dest = self.root.join("sha256").join(&sha[..2]).join(&sha[2..]);
        if tokio::fs::try_exists(&dest).await.unwrap_or(false) {
            remove_soon(&self.workers, std::mem::take(&mut self.tmp));
        } else {
            let parent = dest.parent().context("a blob path has a parent")?;
            let base = self.root.join("sha256");
            let exists =
                |p: PathBuf| async move { tokio::fs::try_exists(p).await.unwrap_or(false) };
            let new_base = !exists(base.clone()).await;
            let new_fanout = !exists(parent.to_owned()).await;
            tokio::fs::create_dir_all(parent).await?;
            tokio::fs::rename(&self.tmp, &dest).await?;
            sync_dir(parent).await;
            // A folder made here is an entry of its parent: a crash could lose it, and every
            // blob in it, until the parent is fsynced too.
            if new_fanout {
                sync_dir(&base).await;
            }
            if new_base {
                sync_dir(&self.root).await;
            }
        }
        self.committed = true;
        Ok(sha)
    }
}

/// Moves many blobs into the store at once, as [`FinishedBlob::commit`] does one: every rename
/// first, then each folder they landed in fsynced once (and a folder made here, in its
/// parent), all on one blocking thread. A request of thousands of small files costs a few
/// hundred folder fsyncs, not one per file.
pub async fn commit_all(blobs: Vec<FinishedBlob>) -> anyhow::Result<()> {
    if blobs.is_empty() {
        return Ok(());
    }
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let mut blobs = blobs;
        let mut synced: std::collections::BTreeSet<PathBuf> = Default::default();
        let mut made: std::collections::BTreeSet<PathBuf> = Default::default();
        for b in &mut blobs {
            let dest = b
                .root
                .join("sha256")
                .join(&b.sha256[..2])
                .join(&b.sha256[2..]);
            if dest.exists() {
                // Identical content is there: this copy goes (the guard removes it).
                continue;
            }
            let parent = dest
                .parent()
                .context("a blob path has a parent")?
                .to_owned();
            if !parent.exists() {
                let base = b.root.join("sha256");
                if !base.exists() {
                    made.insert(b.root.clone());
                }
                made.insert(base);
                std::fs::create_dir_all(&parent)?;
            }
            std::fs::rename(&b.tmp, &dest)?;
            b.committed = true;
            synced.insert(parent);
        }
        for dir in synced.iter().chain(made.iter()) {
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    })
    .await
    .context("committing blobs panicked")?
}

async fn sync_dir(dir: &Path) {
    if let Ok(d) = tokio::fs::File::open(dir).await {
        let _ = d.sync_all().await;
    }
}

impl Drop for FinishedBlob {
    fn drop(&mut self) {
        if !self.committed {
            remove_soon(&self.workers, std::mem::take(&mut self.tmp));
        }
    }
}

/// Removes a temporary file without making the caller wait for it. Unlinking a large file
/// frees all its blocks there and then (about 160 ms per GiB on an ext4 volume with online
/// discard), which must hold neither the write transaction a duplicate upload commits in nor a
/// thread of the async runtime, as a refused upload's guard would. A file a crash leaves before
/// it goes is swept at the next start; so is one a stop does not wait for.
fn remove_soon(workers: &Workers, path: PathBuf) {
    if path.as_os_str().is_empty() {
        return;
    }
    match tokio::runtime::Handle::try_current() {
        Ok(_) => {
            // Not cut short by a stop: it is one system call, over soon.
            workers.spawn("temp-file-unlink", |_stop| async move {
                let _ = tokio::task::spawn_blocking(move || std::fs::remove_file(&path)).await;
            });
        }
        Err(_) => {
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// How much of a file is written between two hand-overs to writeback.
const WRITEBACK_WINDOW: u64 = 8 << 20;

/// A large file being written (a quarantined file, a release package), each
/// [`WRITEBACK_WINDOW`] written handed to the kernel's writeback without waiting for it, so
/// that the disk works while the file is written and the `fsync` at its end (still what makes
/// it durable) has little left to do instead of the whole file.
pub(crate) struct Writeback {
    pub(crate) file: std::fs::File,
    written: u64,
    /// Handed to writeback up to here.
    kicked: u64,
}

impl Writeback {
    pub(crate) fn new(file: std::fs::File) -> Writeback {
        Writeback {
            file,
            written: 0,
            kicked: 0,
        }
    }
}

impl Writeback {
    fn wrote(&mut self, n: usize) {
        self.written += n as u64;
        if self.written - self.kicked >= WRITEBACK_WINDOW {
            start_writeback(&self.file, self.kicked, self.written - self.kicked);
            self.kicked = self.written;
        }
    }

    /// Writes all of `bufs`, in order, with as few `writev`s as it takes (no copy).
    pub(crate) fn write_all_bytes(&mut self, bufs: &[impl AsRef<[u8]>]) -> std::io::Result<()> {
        // The kernel takes at most IOV_MAX (1024) slices at once.
        const AT_ONCE: usize = 512;
        let mut slices: Vec<std::io::IoSlice<'_>> = bufs
            .iter()
            .map(|b| std::io::IoSlice::new(b.as_ref()))
            .collect();
        let mut left = &mut slices[..];
        std::io::IoSlice::advance_slices(&mut left, 0);
        while !left.is_empty() {
            let at_once = left.len().min(AT_ONCE);
            let n = match self.file.write_vectored(&left[..at_once]) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.wrote(n);
            std::io::IoSlice::advance_slices(&mut left, n);
        }
        Ok(())
    }
}

impl std::io::Write for Writeback {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.wrote(n);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// Starts writing `len` bytes of `file` from `start` back to disk; best effort, not waited for.
// The one system call without a safe wrapper in the dependencies.
#[allow(unsafe_code)]
fn start_writeback(file: &std::fs::File, start: u64, len: u64) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: the descriptor is an open file owned by `file`; the call takes no pointers.
        unsafe {
            libc::sync_file_range(
                file.as_raw_fd(),
                start as i64,
                len as i64,
                libc::SYNC_FILE_RANGE_WRITE,
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, start, len);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Slices written at once, more of them than one `writev` takes, empty ones among them,
    /// land whole and in order.
    #[test]
    fn writev_writes_every_slice_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("f");
        let mut w = Writeback::new(std::fs::File::create(&path).unwrap());
        let slices: Vec<Vec<u8>> = (0..1500u32)
            .map(|i| vec![(i % 251) as u8; (i % 7) as usize * 3])
            .collect();
        w.write_all_bytes(&slices).unwrap();
        w.write_all_bytes(&[b"end".to_vec()]).unwrap();
        let mut want = slices.concat();
        want.extend_from_slice(b"end");
        assert!(std::fs::read(&path).unwrap() == want);
        assert_eq!(w.written, want.len() as u64);
    }

    /// Many blobs land in the store at once, identical content once, and no temporary file
    /// is left behind.
    #[tokio::test]
    async fn many_blobs_are_committed_at_once() {
        let dir = std::env::temp_dir().join(format!("vre-blobs-{}", crate::store::new_id("t")));
        let workers = Workers::default();
        let store = BlobStore::new(dir.join("blobs"), dir.join("tmp"), workers.clone());
        let mut blobs = Vec::new();
        for content in [&b"one"[..], b"two", b"one", b""] {
            blobs.push(store.put(content.to_vec()).await.unwrap());
        }
        let shas: Vec<String> = blobs.iter().map(|b| b.sha256().to_owned()).collect();
        commit_all(blobs).await.unwrap();
        for (sha, content) in shas.iter().zip([&b"one"[..], b"two", b"one", b""]) {
            assert_eq!(std::fs::read(store.path_of(sha).unwrap()).unwrap(), content);
        }
        assert_eq!(store.list().unwrap().len(), 3);
        workers.stop(std::time::Duration::from_secs(5)).await;
        assert_eq!(std::fs::read_dir(dir.join("tmp")).unwrap().count(), 0);
        let _ = std::fs::remove_dir_all(dir);
    }
}

//! The content-addressed blob store: `blobs/sha256/ab/cdef…`, each blob written once.
//!
//! A blob is written to `tmp/` and fsynced; [`FinishedBlob::commit`] renames it into place (and
//! fsyncs the folder it lands in, and the parent of any folder it had to make), which callers do
//! inside the write transaction that records it (in the `blobs` table), just before the commit.
//! Identical content is stored once. At start, whatever is in `tmp/` was never committed and is
//! swept, and so is any blob the database does not know (a crash between the rename and the
//! commit).
//!
//! A temporary file that is not kept (a duplicate of a blob already stored, a refused upload)
//! goes to the [`Reaper`]: one background task that removes such files in turn, a large one cut
//! short a step at a time before it is unlinked, so that the discards its blocks cost on a file
//! system mounted with `discard` do not stall the writes of the requests and builds beside it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use sha2::{Digest, Sha256};

use crate::workers::Workers;

mod payloads;
pub use payloads::NewPayload;

#[derive(Clone)]
pub struct BlobStore {
    root: PathBuf,
    tmp: PathBuf,
    /// Where temporary files that are not kept are removed, in the background.
    reaper: Reaper,
}

impl BlobStore {
    pub fn new(root: PathBuf, tmp: PathBuf, workers: Workers) -> Self {
        BlobStore {
            root,
            tmp,
            reaper: Reaper::new(workers, REMOVE_STEP),
        }
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
            reaper: self.reaper.clone(),
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
    reaper: Reaper,
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
            self.reaper.remove_soon(std::mem::take(&mut self.tmp));
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

async fn sync_dir(dir: &Path) {
    if let Ok(d) = tokio::fs::File::open(dir).await {
        let _ = d.sync_all().await;
    }
}

impl Drop for FinishedBlob {
    fn drop(&mut self) {
        if !self.committed {
            self.reaper.remove_soon(std::mem::take(&mut self.tmp));
        }
    }
}

/// How much of a large file [`remove_gently`] frees at a time.
const REMOVE_STEP: u64 = 64 << 20;

/// The share of the disk's time a removal may take: after each step it waits this many times
/// as long as the step took.
const REMOVE_PAUSE_FACTOR: u32 = 3;

/// At least this long between two steps of a removal.
const REMOVE_PAUSE_MIN: Duration = Duration::from_millis(10);

/// Removes the temporary files that are not kept, without making the caller wait, one at a
/// time on one background task (started when the first file comes, through [`Workers`]).
/// Unlinking a large file frees all its blocks there and then: on ext4 with online discard that
/// is a synchronous discard of every block (about 250 ms per GiB on a virtio disk), which must
/// hold neither the write transaction a duplicate commits in, nor a thread of the async
/// runtime, nor the disk under a build beside it. So a file is removed by [`remove_gently`]:
/// cut short from its end a step at a time, with a pause after each step, then unlinked. When
/// the gateway stops, what is left in the queue is unlinked at once. A file a crash leaves
/// before it goes is swept at the next start; so is one a stop does not wait for.
#[derive(Clone)]
struct Reaper {
    workers: Workers,
    step: u64,
    /// The queue of the task that removes, while it runs.
    queue: Arc<Mutex<Option<tokio::sync::mpsc::UnboundedSender<PathBuf>>>>,
}

impl Reaper {
    fn new(workers: Workers, step: u64) -> Reaper {
        Reaper {
            workers,
            step,
            queue: Arc::default(),
        }
    }

    fn remove_soon(&self, path: PathBuf) {
        if path.as_os_str().is_empty() {
            return;
        }
        if tokio::runtime::Handle::try_current().is_err() {
            // No runtime to hand it to (a guard dropped on a plain thread).
            let _ = std::fs::remove_file(&path);
            return;
        }
        let mut queue = crate::lock(&self.queue);
        let path = match queue.as_ref() {
            Some(tx) => match tx.send(path) {
                Ok(()) => return,
                Err(back) => back.0,
            },
            None => path,
        };
        // The first file, or the task has ended (a stop): a new task takes the queue.
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let _ = tx.send(path);
        *queue = Some(tx);
        let step = self.step;
        self.workers
            .spawn("temp-file-unlink", move |stop| reap(rx, stop, step));
    }
}

/// The reaper's task: removes what comes, in turn, until the gateway stops (then what is
/// queued is unlinked without pauses) or the store is gone.
async fn reap(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<PathBuf>,
    stop: crate::workers::Stop,
    step: u64,
) {
    loop {
        let path = tokio::select! {
            biased;
            path = rx.recv() => path,
            () = stop.requested() => None,
        };
        let Some(path) = path else { break };
        let step = if stop.is_requested() { u64::MAX } else { step };
        let _ = tokio::task::spawn_blocking(move || remove_gently(&path, step)).await;
    }
    rx.close();
    while let Ok(path) = rx.try_recv() {
        let _ = tokio::task::spawn_blocking(move || std::fs::remove_file(&path)).await;
    }
}

/// Removes a file that nothing else links to, `step` bytes of it at a time from its end (a
/// pause after each, [`REMOVE_PAUSE_FACTOR`] times as long as the step took), then unlinks
/// it; returns how many times it was cut short. A file already gone is no error.
fn remove_gently(path: &Path, step: u64) -> std::io::Result<u32> {
    let file = match std::fs::OpenOptions::new().write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut len = file.metadata()?.len();
    let mut cuts = 0;
    while len > step {
        len -= step;
        let t = Instant::now();
        file.set_len(len)?;
        cuts += 1;
        std::thread::sleep((t.elapsed() * REMOVE_PAUSE_FACTOR).max(REMOVE_PAUSE_MIN));
    }
    drop(file);
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(cuts),
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

    /// A large file is cut short from its end in steps, then unlinked; one already gone is no
    /// error.
    #[test]
    fn a_large_file_is_removed_a_step_at_a_time() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("f");
        std::fs::write(&path, vec![7u8; (1 << 20) + 1]).unwrap();
        assert_eq!(remove_gently(&path, 256 << 10).unwrap(), 4);
        assert!(!path.exists());
        assert_eq!(remove_gently(&path, 256 << 10).unwrap(), 0);
        std::fs::write(&path, b"small").unwrap();
        assert_eq!(remove_gently(&path, 256 << 10).unwrap(), 0);
        assert!(!path.exists());
    }

    /// The copy of content already stored is dropped and removed in the background, in steps
    /// (the store's step made small here), and the blob that is kept stays whole.
    #[tokio::test]
    async fn a_dropped_duplicate_goes_and_the_kept_blob_is_intact() {
        let dir = std::env::temp_dir().join(format!("vre-blobs-{}", crate::store::new_id("t")));
        let workers = Workers::default();
        let store = BlobStore {
            root: dir.join("blobs"),
            tmp: dir.join("tmp"),
            reaper: Reaper::new(workers.clone(), 64 << 10),
        };
        let content: Vec<u8> = (0..(1u32 << 20) + 12345)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let kept = store.put(content.clone()).await.unwrap();
        let sha = kept.sha256().to_owned();
        kept.commit().await.unwrap();
        let copy = store.put(content.clone()).await.unwrap();
        let copy_path = copy.tmp.clone();
        assert!(copy_path.exists());
        copy.commit().await.unwrap();
        // Gone without a stop: removed by the reaper's steps (16 of 64 KiB, each followed by
        // a pause), not at once by a stop.
        let started = std::time::Instant::now();
        while copy_path.exists() {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(20),
                "the dropped copy is still there"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(started.elapsed() >= REMOVE_PAUSE_MIN * 16);
        let on_disk = std::fs::read(store.path_of(&sha).unwrap()).unwrap();
        assert!(on_disk == content, "the kept blob changed");
        assert_eq!(hex::encode(Sha256::digest(&on_disk)), sha);
        assert_eq!(store.list().unwrap(), vec![sha]);
        assert_eq!(workers.running().get("temp-file-unlink"), Some(&1));
        workers.stop(std::time::Duration::from_secs(5)).await;
        assert!(workers.running().is_empty());
        let _ = std::fs::remove_dir_all(dir);
    }
}

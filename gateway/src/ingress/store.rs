//! Writing an upload: its temporary file filled and fsynced while its SHA-256 is computed,
//! with direct I/O from aligned buffers through a writer thread where the file system allows
//! it, otherwise through the page cache with each 8 MiB handed to writeback as it arrives.

use axum::body::Bytes;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc::Receiver;

/// Writes the upload through the page cache, handing it to writeback as it arrives; returns
/// its SHA-256 and size once it is fsynced.
pub(crate) fn store_buffered(
    mut file: std::fs::File,
    mut rx: Receiver<Bytes>,
) -> anyhow::Result<(String, u64)> {
    use std::io::Write;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut writeback = Writeback::default();
    while let Some(chunk) = rx.blocking_recv() {
        file.write_all(&chunk)?;
        hasher.update(&chunk);
        size += chunk.len() as u64;
        writeback.written(&file, size);
    }
    file.sync_all()?;
    Ok((hex::encode(hasher.finalize()), size))
}

/// The temporary file opened again for direct I/O, when its file system allows it (tmpfs
/// does not).
pub(crate) fn open_direct(path: &std::path::Path) -> Option<std::fs::File> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(path)
            .ok()
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = path;
        None
    }
}

/// Direct I/O writes from buffers aligned to this, in multiples of it.
const DIRECT_ALIGN: usize = 4096;
const DIRECT_BUF: usize = 1 << 20;

/// A `DIRECT_BUF`-sized window of a vector, aligned to `DIRECT_ALIGN`.
struct AlignedBuf {
    raw: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBuf {
    fn new() -> Self {
        let raw = vec![0u8; DIRECT_BUF + DIRECT_ALIGN];
        let start = raw.as_ptr().align_offset(DIRECT_ALIGN);
        AlignedBuf { raw, start, len: 0 }
    }
    fn room(&self) -> usize {
        DIRECT_BUF - self.len
    }
    fn push(&mut self, bytes: &[u8]) {
        let at = self.start + self.len;
        self.raw[at..at + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }
    fn filled(&self) -> &[u8] {
        &self.raw[self.start..self.start + self.len]
    }
}

/// Writes the upload around the page cache: the worker hashes and copies each chunk into
/// aligned buffers, a writer thread writes full buffers with direct I/O, so hashing and the
/// disk overlap and the kernel neither copies the upload nor writes it back later. The last
/// few bytes past the alignment go through the page cache; the final fsync covers them and the
/// metadata.
pub(crate) fn store_direct(
    file: std::fs::File,
    direct: std::fs::File,
    mut rx: Receiver<Bytes>,
) -> anyhow::Result<(String, u64)> {
    use std::os::unix::fs::FileExt;
    let (full_tx, full_rx) = std::sync::mpsc::sync_channel::<(AlignedBuf, u64)>(2);
    let (free_tx, free_rx) = std::sync::mpsc::channel::<AlignedBuf>();
    for _ in 0..3 {
        free_tx
            .send(AlignedBuf::new())
            .expect("the receiver is here");
    }
    // A file system may take the open and still refuse the writes (EINVAL for an alignment
    // it does not support): the rest then goes through the page cache.
    let buffered = file.try_clone()?;
    std::thread::scope(|scope| {
        let writer = scope.spawn(move || -> std::io::Result<()> {
            let mut through_cache = false;
            for (mut buf, offset) in full_rx {
                if !through_cache {
                    match direct.write_all_at(buf.filled(), offset) {
                        Ok(()) => {}
                        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => through_cache = true,
                        Err(e) => return Err(e),
                    }
                }
                if through_cache {
                    buffered.write_all_at(buf.filled(), offset)?;
                }
                buf.len = 0;
                if free_tx.send(buf).is_err() {
                    break;
                }
            }
            Ok(())
        });
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut written = 0u64;
        let mut buf = free_rx.recv().ok();
        while let Some(chunk) = rx.blocking_recv() {
            hasher.update(&chunk);
            size += chunk.len() as u64;
            let mut rest = &chunk[..];
            while let (false, Some(b)) = (rest.is_empty(), buf.as_mut()) {
                let n = rest.len().min(b.room());
                b.push(&rest[..n]);
                rest = &rest[n..];
                if b.room() == 0 {
                    let full = buf.take().expect("just used");
                    let len = full.len as u64;
                    if full_tx.send((full, written)).is_ok() {
                        written += len;
                        buf = free_rx.recv().ok();
                    }
                }
            }
            if buf.is_none() {
                break;
            }
        }
        // The tail: its aligned part directly, the rest through the page cache.
        let mut tail = Vec::new();
        if let Some(mut b) = buf.take() {
            let aligned = b.len / DIRECT_ALIGN * DIRECT_ALIGN;
            tail = b.filled()[aligned..].to_vec();
            if aligned > 0 {
                b.len = aligned;
                if full_tx.send((b, written)).is_ok() {
                    written += aligned as u64;
                }
            }
        }
        drop(full_tx);
        writer
            .join()
            .map_err(|_| anyhow::anyhow!("the direct writer panicked"))??;
        if written + tail.len() as u64 != size {
            return Err(anyhow::anyhow!("the direct writer stopped"));
        }
        file.write_all_at(&tail, written)?;
        file.sync_all()?;
        Ok((hex::encode(hasher.finalize()), size))
    })
}

/// Starts writing an upload to disk while it is still arriving, so that the `fsync` at its end
/// has little left to do instead of the whole file. Each `WRITEBACK_WINDOW` written is handed
/// to the kernel's writeback without waiting for it; the window before it is waited for, which
/// also keeps the page cache from filling with one upload's dirty pages.
#[derive(Default)]
struct Writeback {
    /// The window handed to writeback last: `[previous, kicked)`.
    previous: u64,
    kicked: u64,
}

const WRITEBACK_WINDOW: u64 = 8 << 20;

impl Writeback {
    // The one system call without a safe wrapper in the dependencies.
    #[allow(unsafe_code)]
    fn written(&mut self, file: &std::fs::File, size: u64) {
        if size - self.kicked < WRITEBACK_WINDOW {
            return;
        }
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            let fd = file.as_raw_fd();
            // Best effort: the final fsync is what makes the upload durable.
            // SAFETY: `fd` is an open file owned by `file`; the calls take no pointers.
            unsafe {
                libc::sync_file_range(
                    fd,
                    self.kicked as i64,
                    (size - self.kicked) as i64,
                    libc::SYNC_FILE_RANGE_WRITE,
                );
                if self.kicked > self.previous {
                    let (start, len) = (self.previous as i64, (self.kicked - self.previous) as i64);
                    libc::sync_file_range(fd, start, len, libc::SYNC_FILE_RANGE_WAIT_BEFORE);
                    // Written and clean: the upload is not read again soon (staging comes
                    // after a review), so its pages leave the cache to what others use.
                    libc::posix_fadvise(fd, start, len, libc::POSIX_FADV_DONTNEED);
                }
            }
        }
        #[cfg(not(target_os = "linux"))]
        let _ = file;
        self.previous = self.kicked;
        self.kicked = size;
    }
}

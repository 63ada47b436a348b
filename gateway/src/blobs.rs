//! The content-addressed blob store: `blobs/sha256/ab/cdef…`, each blob written once.
//!
//! A blob is written to `tmp/`, fsynced, and renamed into place only by [`BlobWriter::commit`],
//! which the caller invokes after the database recorded the checksum; identical content is
//! stored once. Whatever is in `tmp/` at start was never committed and is swept.

use std::path::{Path, PathBuf};

use anyhow::Context;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

#[derive(Clone, Debug)]
pub struct BlobStore {
    root: PathBuf,
    tmp: PathBuf,
}

impl BlobStore {
    pub fn new(root: PathBuf, tmp: PathBuf) -> Self {
        BlobStore { root, tmp }
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

    pub fn path_of(&self, sha256: &str) -> anyhow::Result<PathBuf> {
        anyhow::ensure!(
            sha256.len() == 64
                && sha256
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
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

    /// Starts a new blob.
    pub async fn writer(&self) -> anyhow::Result<BlobWriter> {
        tokio::fs::create_dir_all(&self.tmp).await?;
        let mut r = [0u8; 12];
        getrandom::fill(&mut r).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        let path = self.tmp.join(format!("blob-{}", hex::encode(r)));
        let file = tokio::fs::File::create(&path)
            .await
            .with_context(|| format!("creating {}", path.display()))?;
        Ok(BlobWriter {
            file: Some(file),
            path,
            hasher: Sha256::new(),
            size: 0,
            root: self.root.clone(),
        })
    }

    pub async fn put(&self, bytes: &[u8]) -> anyhow::Result<BlobWriter> {
        let mut w = self.writer().await?;
        w.write(bytes).await?;
        w.finish().await?;
        Ok(w)
    }

    pub async fn open(&self, sha256: &str) -> anyhow::Result<tokio::fs::File> {
        let p = self.path_of(sha256)?;
        tokio::fs::File::open(&p)
            .await
            .with_context(|| format!("opening blob {sha256}"))
    }
}

/// A blob being written. Dropping it without [`commit`](BlobWriter::commit) removes the
/// temporary file.
pub struct BlobWriter {
    file: Option<tokio::fs::File>,
    path: PathBuf,
    hasher: Sha256,
    size: u64,
    root: PathBuf,
}

impl BlobWriter {
    pub async fn write(&mut self, chunk: &[u8]) -> anyhow::Result<()> {
        let f = self.file.as_mut().context("the blob is already finished")?;
        f.write_all(chunk).await?;
        self.hasher.update(chunk);
        self.size += chunk.len() as u64;
        Ok(())
    }

    /// Flushes and fsyncs; returns (sha256, size).
    pub async fn finish(&mut self) -> anyhow::Result<(String, u64)> {
        if let Some(mut f) = self.file.take() {
            f.flush().await?;
            f.sync_all().await?;
        }
        Ok((self.sha256(), self.size))
    }

    pub fn sha256(&self) -> String {
        hex::encode(self.hasher.clone().finalize())
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Moves the finished blob into the store (or drops it when identical content is there).
    pub async fn commit(mut self) -> anyhow::Result<String> {
        self.finish().await?;
        let sha = self.sha256();
        let dest = self.root.join("sha256").join(&sha[..2]).join(&sha[2..]);
        if tokio::fs::try_exists(&dest).await.unwrap_or(false) {
            let _ = tokio::fs::remove_file(&self.path).await;
        } else {
            let parent = dest.parent().context("blob path has a parent")?;
            tokio::fs::create_dir_all(parent).await?;
            tokio::fs::rename(&self.path, &dest).await?;
            sync_dir(parent).await;
        }
        self.path = PathBuf::new();
        Ok(sha)
    }
}

async fn sync_dir(dir: &Path) {
    if let Ok(d) = tokio::fs::File::open(dir).await {
        let _ = d.sync_all().await;
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

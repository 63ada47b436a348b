//! Ingress: archives streamed in, checksummed, validated entry by entry and stored.
//!
//! An upload runs through two blocking workers fed from the request body, so the network, the
//! disk and the hashing overlap and nothing is held in memory beyond a few chunks:
//!
//! ```text
//! body ──chunks──┬──▶ store worker: temp file + SHA-256 of the upload, fsync
//!                └──▶ scan worker:  [zstd] ▶ tar reader ▶ rules ▶ SHA-256 per entry, checks
//! ```
//!
//! The first broken rule stops the scan; the rest of the body is drained (up to the upload
//! limit) so the client gets a clean answer, and the temporary file is removed. Only after both
//! workers succeed does the caller record the application and commit the blob.
//!
//! By stage: `store` writes and hashes the upload (direct I/O, or the page cache with early
//! writeback), `unpack` decompresses and scans the tar into the manifest and the checks,
//! `restage` re-emits an approved archive for a sandbox, and `read` takes one file out of a
//! stored archive for reviewers. This module runs an upload through the first two.

pub mod content;
pub mod read;
pub mod restage;
pub mod store;
pub mod unpack;

use tokio::sync::mpsc::channel;

use axum::body::Bytes;
use futures_util::{Stream, StreamExt};
use policy::archive::checks::{CheckResult, CheckSettings};
use policy::archive::rules::{Limits, Violation};

use crate::blobs::{BlobStore, FinishedBlob};
use crate::ingress::store::{open_direct, store_buffered, store_direct};
use crate::ingress::unpack::scan_worker;
use crate::store::ingress::ManifestEntry;

/// Chunks in flight per worker: the memory bound of a streaming upload.
const QUEUE: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Tar,
    TarZstd,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Tar => "tar",
            Format::TarZstd => "tar.zst",
        }
    }
    fn sniff(first: &[u8]) -> Format {
        if first.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Format::TarZstd
        } else {
            Format::Tar
        }
    }
}

/// What an accepted upload is.
pub struct Ingested {
    pub blob: FinishedBlob,
    pub format: Format,
    pub upload_bytes: u64,
    pub tar_sha256: String,
    pub unpacked_bytes: u64,
    pub entries: Vec<ManifestEntry>,
    pub checks: Vec<CheckResult>,
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("{0}")]
    Refused(Violation),
    #[error("the upload was interrupted: {0}")]
    Interrupted(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// Streams `body` through validation into a temporary blob.
pub async fn ingest<S, E>(
    mut body: S,
    blobs: &BlobStore,
    limits: Limits,
    checks: CheckSettings,
    direct_io: bool,
) -> Result<Ingested, IngestError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    // Bounded queues: the body is read no faster than the slower worker takes it.
    let (store_tx, store_rx) = channel::<Bytes>(QUEUE);
    let (scan_tx, scan_rx) = channel::<Bytes>(QUEUE);
    let (path, file) = blobs.temp_file()?;
    let direct = direct_io.then(|| open_direct(&path)).flatten();
    // The guard removes the temporary file on every early return.
    let mut blob = blobs.finished(path, String::new(), 0);
    // Both workers belong to this request and are awaited before it answers: not background
    // work, so not among the gateway's `Workers`.
    let store = tokio::task::spawn_blocking(move || match direct {
        Some(direct) => store_direct(file, direct, store_rx),
        None => store_buffered(file, store_rx),
    });
    let scan_limits = limits.clone();
    let scan = tokio::task::spawn_blocking(move || scan_worker(scan_rx, scan_limits, checks));

    let mut uploaded: u64 = 0;
    let mut scan_tx = Some(scan_tx);
    let mut cut = None;
    loop {
        let chunk = match next_chunk(&mut body, &mut uploaded, &limits).await {
            Ok(Some(c)) => c,
            Ok(None) => break,
            Err(e) => {
                cut = Some(e);
                break;
            }
        };
        if let Some(tx) = &scan_tx {
            if tx.send(chunk.clone()).await.is_err() {
                // The scan stopped on a broken rule: stop storing, drain the rest.
                scan_tx = None;
            }
        }
        if scan_tx.is_none() {
            continue;
        }
        if store_tx.send(chunk).await.is_err() {
            break;
        }
    }
    drop(scan_tx);
    drop(store_tx);
    let scanned = scan
        .await
        .map_err(|e| anyhow::anyhow!("the scan worker failed: {e}"))?;
    let stored = store
        .await
        .map_err(|e| anyhow::anyhow!("the store worker failed: {e}"))?;
    if let Some(e) = cut {
        return Err(e);
    }
    let scanned = scanned.map_err(IngestError::Refused)?;
    let (sha256, size) = stored?;
    let tar_sha256 = scanned.tar_sha256.clone().unwrap_or_else(|| sha256.clone());
    blob.set_content(sha256, size);
    Ok(Ingested {
        blob,
        format: scanned.format,
        upload_bytes: uploaded,
        tar_sha256,
        unpacked_bytes: scanned.unpacked,
        entries: scanned.entries,
        checks: scanned.checks,
    })
}

/// The next chunk of an upload's body, counted into `uploaded`; `None` at its end. A body that
/// fails is `Interrupted`, one past the upload limit `Refused`.
pub(crate) async fn next_chunk<S, E>(
    body: &mut S,
    uploaded: &mut u64,
    limits: &Limits,
) -> Result<Option<Bytes>, IngestError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let chunk = match body.next().await {
        None => return Ok(None),
        Some(Ok(c)) => c,
        Some(Err(e)) => return Err(IngestError::Interrupted(e.to_string())),
    };
    *uploaded += chunk.len() as u64;
    limits
        .check_upload_size(*uploaded)
        .map_err(IngestError::Refused)?;
    Ok(Some(chunk))
}

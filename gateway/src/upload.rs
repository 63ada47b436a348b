//! The client side of an archive's upload (ingress, a dataset's content): a directory packed on
//! the fly as tar.zst (deterministic headers, streaming, never whole in memory), or an archive
//! file streamed as it is; with a progress bar on a terminal and a SHA-256 of what was sent,
//! compared with the gateway's.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use axum::body::Bytes;
use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

/// The bytes to send, how many are expected (for the progress bar) and what they are.
pub struct Upload {
    pub stream: std::pin::Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>,
    pub size_hint: Option<u64>,
    pub packed: bool,
}

/// Prepares an upload of `path`: a directory, a `.tar` or a `.tar.zst`.
pub fn prepare(path: &Path) -> anyhow::Result<Upload> {
    let meta = std::fs::symlink_metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    if meta.is_dir() {
        let files = walk(path)?;
        let total: u64 = files.iter().map(|(_, _, size)| size).sum();
        return Ok(Upload {
            stream: Box::pin(pack(path.to_path_buf(), files)),
            size_hint: Some(total),
            packed: true,
        });
    }
    anyhow::ensure!(
        meta.is_file(),
        "{} is neither a directory nor a regular file",
        path.display()
    );
    let mut head = [0u8; 4];
    let n = std::io::Read::read(&mut std::fs::File::open(path)?, &mut head)?;
    if head[..n].starts_with(&[0x1f, 0x8b]) {
        anyhow::bail!(
            "{} is gzip-compressed: send a .tar or a .tar.zst (zstd) instead",
            path.display()
        );
    }
    let path = path.to_path_buf();
    let stream = async_stream_file(path);
    Ok(Upload {
        stream: Box::pin(stream),
        size_hint: Some(meta.len()),
        packed: false,
    })
}

fn async_stream_file(path: PathBuf) -> impl Stream<Item = std::io::Result<Bytes>> + Send {
    futures_util::stream::unfold(None::<tokio::fs::File>, move |f| {
        let path = path.clone();
        async move {
            use tokio::io::AsyncReadExt;
            let mut f = match f {
                Some(f) => f,
                None => match tokio::fs::File::open(&path).await {
                    Ok(f) => f,
                    Err(e) => return Some((Err(e), None)),
                },
            };
            let mut buf = vec![0u8; 256 * 1024];
            match f.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok(Bytes::from(buf)), Some(f)))
                }
                Err(e) => Some((Err(e), None)),
            }
        }
    })
}

/// The regular files and directories under `root`, sorted, with their sizes; anything else is
/// refused here with a clear message rather than by the gateway after the upload.
fn walk(root: &Path) -> anyhow::Result<Vec<(PathBuf, bool, u64)>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let mut children: Vec<_> = std::fs::read_dir(&dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .collect::<Result<_, _>>()?;
        children.sort_by_key(|e| e.file_name());
        for c in children {
            let p = c.path();
            let t = c.file_type()?;
            let rel = p.strip_prefix(root).expect("under the root").to_path_buf();
            if t.is_symlink() {
                anyhow::bail!(
                    "{} is a symbolic link; ingress takes regular files and directories only",
                    p.display()
                );
            } else if t.is_dir() {
                out.push((rel, true, 0));
                stack.push(p);
            } else if t.is_file() {
                out.push((rel, false, c.metadata()?.len()));
            } else {
                anyhow::bail!(
                    "{} is not a regular file; ingress takes regular files and directories only",
                    p.display()
                );
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Sends what is written to it as chunks on a channel.
struct ChannelWriter {
    tx: mpsc::Sender<std::io::Result<Bytes>>,
    buf: Vec<u8>,
}

const CHUNK: usize = 256 * 1024;

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
            self.tx.blocking_send(Ok(chunk)).map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the upload was cancelled")
            })?;
        }
        Ok(())
    }
}

fn pack(
    root: PathBuf,
    files: Vec<(PathBuf, bool, u64)>,
) -> impl Stream<Item = std::io::Result<Bytes>> + Send {
    let (tx, rx) = mpsc::channel(4);
    let err_tx = tx.clone();
    tokio::task::spawn_blocking(move || {
        let run = || -> std::io::Result<()> {
            let writer = ChannelWriter {
                tx,
                buf: Vec::with_capacity(CHUNK),
            };
            let enc = zstd::stream::write::Encoder::new(writer, 3)?;
            let mut b = tar::Builder::new(enc);
            // Deterministic headers: no owners, times or odd modes; the same tree gives the same
            // archive, which the gateway then stores once.
            b.mode(tar::HeaderMode::Deterministic);
            b.follow_symlinks(false);
            for (rel, is_dir, _) in &files {
                let full = root.join(rel);
                if *is_dir {
                    b.append_dir(rel, &full)?;
                } else {
                    let mut f = std::fs::File::open(&full)?;
                    b.append_file(rel, &mut f)?;
                }
            }
            let enc = b.into_inner()?;
            let mut writer = enc.finish()?;
            writer.flush()
        };
        if let Err(e) = run() {
            let _ = err_tx.blocking_send(Err(e));
        }
    });
    tokio_stream(rx)
}

fn tokio_stream<T: Send + 'static>(rx: mpsc::Receiver<T>) -> impl Stream<Item = T> + Send {
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|v| (v, rx)) })
}

/// Wraps an upload so it hashes what goes out and advances a progress bar (on a terminal).
pub fn instrument(
    upload: Upload,
    show_progress: bool,
) -> (
    impl Stream<Item = std::io::Result<Bytes>> + Send,
    Arc<Mutex<Sha256>>,
    indicatif::ProgressBar,
) {
    let bar = if show_progress {
        let bar = match upload.size_hint {
            Some(n) if !upload.packed => indicatif::ProgressBar::new(n),
            _ => indicatif::ProgressBar::new_spinner(),
        };
        let style = if upload.packed || upload.size_hint.is_none() {
            indicatif::ProgressStyle::with_template(
                "{spinner} {bytes} sent ({bytes_per_sec}) {elapsed}",
            )
        } else {
            indicatif::ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} ({bytes_per_sec}, {eta} left)",
            )
        };
        if let Ok(s) = style {
            bar.set_style(s);
        }
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let hasher = Arc::new(Mutex::new(Sha256::new()));
    let h = hasher.clone();
    let b = bar.clone();
    let stream = upload.stream.map(move |chunk| {
        if let Ok(c) = &chunk {
            crate::lock(&h).update(c);
            b.inc(c.len() as u64);
        }
        chunk
    });
    (stream, hasher, bar)
}

/// Uploads `path` (see [`prepare`]) to `route` with a progress bar when `show_progress`; the
/// gateway's answer, once `sha256_of` it (the SHA-256 the gateway recorded) is what was sent.
pub async fn send<T: serde::de::DeserializeOwned>(
    client: &crate::client::Client,
    route: &str,
    path: &Path,
    show_progress: bool,
    sha256_of: impl FnOnce(&T) -> &str,
) -> anyhow::Result<T> {
    let upload = prepare(path)?;
    let content_type = if upload.packed {
        "application/zstd"
    } else {
        "application/x-tar"
    };
    let (stream, hasher, bar) = instrument(upload, show_progress);
    let result: anyhow::Result<T> = client
        .post_stream(route, reqwest::Body::wrap_stream(stream), content_type)
        .await;
    bar.finish_and_clear();
    let answer = result?;
    let sent = hex::encode(crate::lock(&hasher).clone().finalize());
    let got = sha256_of(&answer);
    anyhow::ensure!(
        sent == got,
        "the gateway recorded SHA-256 {got} but this client sent {sent}"
    );
    Ok(answer)
}

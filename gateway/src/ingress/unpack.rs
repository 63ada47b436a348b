//! Unpacking an upload: zstd decompression (its window capped) and the tar scan, each entry
//! checked against the rules and hashed into the manifest while the automatic checks look at it
//! (every byte of each file, for terminal controls).

use axum::body::Bytes;
use policy::archive::checks::{CheckResult, CheckSettings, Checker, ControlScan, PREFIX_BYTES};
use policy::archive::rules::{Limits, Rule, Validator, Violation};
use policy::archive::tar::{EntryKind, Header, Sink, TarScanner};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc::Receiver;

use crate::ingress::Format;
use crate::store::ingress::ManifestEntry;

/// zstd frames that need a window larger than 2^this are refused (memory stays bounded).
const ZSTD_WINDOW_LOG_MAX: u32 = 27;

/// What the scan of an accepted upload found.
pub(crate) struct Scanned {
    pub(crate) format: Format,
    /// The SHA-256 of the tar inside a compressed upload; `None` for a plain tar, whose hash is
    /// the upload's.
    pub(crate) tar_sha256: Option<String>,
    pub(crate) unpacked: u64,
    pub(crate) entries: Vec<ManifestEntry>,
    pub(crate) checks: Vec<CheckResult>,
}

/// Receives the tar (or zstd-compressed tar) stream and turns it into events for a sink.
pub struct Unpacker {
    format: Option<Format>,
    zstd: Option<zstd::stream::raw::Decoder<'static>>,
    out: Vec<u8>,
    /// The zstd decoder says a frame ended and nothing is pending.
    frame_done: bool,
    pub scanner: TarScanner,
    pub compressed_in: u64,
    pub unpacked_out: u64,
    tar_hasher: Sha256,
}

impl Default for Unpacker {
    fn default() -> Self {
        Unpacker {
            format: None,
            zstd: None,
            out: vec![0u8; 128 * 1024],
            frame_done: true,
            scanner: TarScanner::default(),
            compressed_in: 0,
            unpacked_out: 0,
            tar_hasher: Sha256::new(),
        }
    }
}

fn zstd_error(e: std::io::Error) -> Violation {
    let msg = e.to_string();
    let rule = if msg.contains("indow") {
        Rule::CompressionRatio
    } else {
        Rule::Corrupt
    };
    Violation {
        rule,
        entry: None,
        message: format!("the zstd stream cannot be decompressed: {msg}"),
    }
}

impl Unpacker {
    pub fn format(&self) -> Option<Format> {
        self.format
    }

    /// Feeds raw upload bytes; `ratio` checks the expansion after each step.
    pub fn feed<S: Sink<Error = Violation>>(
        &mut self,
        chunk: &[u8],
        sink: &mut S,
        ratio: impl Fn(u64, u64) -> Result<(), Violation>,
    ) -> Result<(), Violation> {
        use zstd::stream::raw::Operation;
        if chunk.is_empty() {
            return Ok(());
        }
        if self.compressed_in == 0 {
            for (magic, what) in [
                (&b"\x1f\x8b"[..], "gzip"),
                (b"BZh", "bzip2"),
                (b"\xfd7zXZ\0", "xz"),
                (b"PK\x03\x04", "zip"),
            ] {
                if chunk.starts_with(magic) {
                    return Err(Violation {
                        rule: Rule::Corrupt,
                        entry: None,
                        message: format!(
                            "{what} archives are not accepted: send a tar, or a tar compressed with zstd"
                        ),
                    });
                }
            }
        }
        self.compressed_in += chunk.len() as u64;
        let format = *self.format.get_or_insert_with(|| Format::sniff(chunk));
        if format == Format::Tar {
            // The tar is the upload: its hash is the upload's, computed by the store worker.
            self.unpacked_out += chunk.len() as u64;
            return self.scanner.feed(chunk, sink);
        }
        if self.zstd.is_none() {
            let mut d = zstd::stream::raw::Decoder::new().map_err(zstd_error)?;
            d.set_parameter(zstd::stream::raw::DParameter::WindowLogMax(
                ZSTD_WINDOW_LOG_MAX,
            ))
            .map_err(zstd_error)?;
            self.zstd = Some(d);
        }
        let mut input = chunk;
        loop {
            let dec = self.zstd.as_mut().expect("set above");
            let st = dec
                .run_on_buffers(input, &mut self.out)
                .map_err(zstd_error)?;
            input = &input[st.bytes_read..];
            let produced = &self.out[..st.bytes_written];
            // A call that neither read nor wrote (asking for more output after the buffer came
            // back full) says nothing about the frame: after a frame's end it already hints at
            // the next frame's header.
            if st.bytes_read > 0 || st.bytes_written > 0 {
                self.frame_done = st.remaining == 0;
            }
            if !produced.is_empty() {
                self.unpacked_out += produced.len() as u64;
                self.tar_hasher.update(produced);
                self.scanner.feed(produced, sink)?;
                ratio(self.compressed_in, self.unpacked_out)?;
            }
            if input.is_empty() && st.bytes_written < self.out.len() {
                return Ok(());
            }
        }
    }

    /// At the end of the upload: the tar and the zstd stream must both be complete. Returns the
    /// SHA-256 of the decompressed tar; `None` for a plain tar, whose hash is the upload's.
    pub fn finish(&mut self) -> Result<Option<String>, Violation> {
        if self.format == Some(Format::TarZstd) && !self.frame_done {
            return Err(Violation {
                rule: Rule::Truncated,
                entry: None,
                message: "the zstd stream ends inside a frame".into(),
            });
        }
        self.scanner.finish()?;
        if self.format == Some(Format::Tar) {
            return Ok(None);
        }
        Ok(Some(hex::encode(
            std::mem::take(&mut self.tar_hasher).finalize(),
        )))
    }
}

/// Validates entries, hashes their content, and runs the checks.
struct IngestSink {
    validator: Validator,
    checker: Checker,
    entries: Vec<ManifestEntry>,
    current: Option<Current>,
}

struct Current {
    entry: ManifestEntry,
    hasher: Sha256,
    prefix: Vec<u8>,
    /// Terminal controls in the file, looked for chunk by chunk.
    controls: ControlScan,
}

impl Sink for IngestSink {
    type Error = Violation;

    fn entry(&mut self, h: &Header) -> Result<(), Violation> {
        let Some(accepted) = self.validator.check_entry(h)? else {
            self.current = None;
            return Ok(());
        };
        self.current = Some(Current {
            entry: ManifestEntry {
                path: accepted.path,
                kind: if accepted.kind == EntryKind::Dir {
                    "directory"
                } else {
                    "file"
                }
                .into(),
                size: accepted.size,
                mode: accepted.mode,
                sha256: None,
            },
            hasher: Sha256::new(),
            prefix: Vec::new(),
            controls: ControlScan::default(),
        });
        Ok(())
    }

    fn data(&mut self, bytes: &[u8]) -> Result<(), Violation> {
        if let Some(c) = &mut self.current {
            c.hasher.update(bytes);
            c.controls.feed(bytes);
            if c.prefix.len() < PREFIX_BYTES {
                let n = (PREFIX_BYTES - c.prefix.len()).min(bytes.len());
                c.prefix.extend_from_slice(&bytes[..n]);
            }
        }
        Ok(())
    }

    fn end_entry(&mut self) -> Result<(), Violation> {
        if let Some(mut c) = self.current.take() {
            if c.entry.kind == "file" {
                c.entry.sha256 = Some(hex::encode(c.hasher.finalize()));
                self.checker
                    .file(&c.entry.path, c.entry.size, c.entry.mode, &c.prefix);
                self.checker
                    .terminal_controls(&c.entry.path, c.controls.finish());
            }
            self.entries.push(c.entry);
        }
        Ok(())
    }
}

pub(crate) fn scan_worker(
    mut rx: Receiver<Bytes>,
    limits: Limits,
    checks: CheckSettings,
) -> Result<Scanned, Violation> {
    let mut unpacker = Unpacker::default();
    let mut sink = IngestSink {
        validator: Validator::new(limits),
        checker: Checker::new(checks),
        entries: Vec::new(),
        current: None,
    };
    let limits = sink.validator.limits().clone();
    while let Some(chunk) = rx.blocking_recv() {
        unpacker.feed(&chunk, &mut sink, |up, out| limits.check_ratio(up, out))?;
    }
    let tar_sha256 = unpacker.finish()?;
    sink.validator.finish()?;
    Ok(Scanned {
        format: unpacker.format().unwrap_or(Format::Tar),
        tar_sha256,
        unpacked: unpacker.unpacked_out,
        entries: sink.entries,
        checks: sink.checker.finish(),
    })
}

//! The stages of a package's build, each on a thread of its own, joined by bounded pipes:
//!
//! ```text
//!                                          ┌─▶ zstd ─┐
//! tar (reads and re-hashes the sources) ───┤  pieces  ├──frames──▶ age, hash ──▶ write
//!                                          └─▶ zstd ─┘   (dealt and taken back in turn)
//! ```
//!
//! The tar is cut into pieces of [`FRAME`] bytes, and each is compressed on its own into a
//! whole zstd frame (with its checksum): a zstd stream may be any number of frames one after
//! the other, and every decoder (`zstd -d`, `tar --zstd`, [`super::open`]) reads them as one.
//! Compressing a whole piece at once takes zstd's fast path for data it cannot shrink (random
//! bytes, already compressed files), about five times faster than its streaming encoder,
//! which works on a window that wraps around and so always takes the slower path that matches
//! across two buffers. A piece is at most [`FRAME`] bytes: what the output lags behind the
//! input stays within a few pieces, whatever the files' sizes.

use std::io::{self, Read, Write};
use std::sync::mpsc::{Receiver, SyncSender, channel, sync_channel};

use sha2::{Digest, Sha256};

/// The tar bytes compressed at once, into one zstd frame.
pub(crate) const FRAME: usize = 1 << 20;
/// The encrypted package goes to the last stage (hash, write) in pieces of this size.
pub(crate) const OUT_PIECE: usize = 256 * 1024;
/// Pieces waiting between two stages.
const DEPTH: usize = 2;

/// The sending end of a pipe between two stages: buffers go one way full and come back empty
/// to be filled again (so a stage allocates at most a few).
pub(crate) struct Pipe {
    tx: Option<SyncSender<Vec<u8>>>,
    spare: Receiver<Vec<u8>>,
}

/// The receiving end: [`Returns`] sends each buffer back once it is used.
pub(crate) struct Returns {
    rx: Receiver<Vec<u8>>,
    back: std::sync::mpsc::Sender<Vec<u8>>,
}

pub(crate) fn pipe() -> (Pipe, Returns) {
    let (tx, rx) = sync_channel(DEPTH);
    let (back, spare) = channel();
    (
        Pipe {
            tx: Some(tx),
            spare,
        },
        Returns { rx, back },
    )
}

fn broken() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the next stage stopped")
}

impl Pipe {
    /// A buffer that came back, or a new one of `capacity`.
    fn spare(&self, capacity: usize) -> Vec<u8> {
        let mut b = self
            .spare
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(capacity));
        b.clear();
        b
    }

    fn send(&self, buf: Vec<u8>) -> io::Result<()> {
        self.tx
            .as_ref()
            .ok_or_else(broken)?
            .send(buf)
            .map_err(|_| broken())
    }
}

impl Returns {
    /// Each buffer in turn, handed to `f` and then given back, until the pipe is closed.
    pub(crate) fn each(self, f: impl FnMut(&[u8]) -> io::Result<()>) -> io::Result<()> {
        each_in_turn(vec![self], f)
    }
}

/// The buffers of several pipes, one from each in turn (as [`Pieces`] deals them), handed to
/// `f` and then given back, until the pipe whose turn it is is closed.
pub(crate) fn each_in_turn(
    pipes: Vec<Returns>,
    mut f: impl FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<()> {
    for r in pipes.iter().cycle() {
        let Ok(buf) = r.rx.recv() else {
            return Ok(());
        };
        f(&buf)?;
        // The sender is gone once its stage is done: nothing to give back to.
        let _ = r.back.send(buf);
    }
    Ok(())
}

/// A stage's output, cut into pieces of a fixed size: the tar in pieces of [`FRAME`], the
/// package in pieces of [`OUT_PIECE`]. Sources are read straight into the piece being filled
/// ([`Pieces::read_from`]), so their bytes are copied once, from the page cache, and hashed
/// where they are compressed from.
pub(crate) struct Pieces {
    /// Dealt a piece each in turn (`turn` is next).
    pipes: Vec<Pipe>,
    turn: usize,
    /// Always `size` long; `filled` of it is the output.
    buf: Vec<u8>,
    filled: usize,
    size: usize,
    /// Pieces sent so far.
    shipped: u64,
}

impl Pieces {
    pub(crate) fn new(pipes: Vec<Pipe>, size: usize) -> Self {
        Pieces {
            pipes,
            turn: 0,
            buf: vec![0; size],
            filled: 0,
            size,
            shipped: 0,
        }
    }

    /// Sends the piece if it is full (or, with `last`, whatever it holds).
    fn ship(&mut self, last: bool) -> io::Result<()> {
        if self.filled < self.size && !(last && self.filled > 0) {
            return Ok(());
        }
        let pipe = &self.pipes[self.turn];
        self.turn = (self.turn + 1) % self.pipes.len();
        let mut next = pipe.spare(self.size);
        next.resize(self.size, 0);
        let mut full = std::mem::replace(&mut self.buf, next);
        full.truncate(self.filled);
        self.filled = 0;
        self.shipped += 1;
        pipe.send(full)
    }

    /// Ends the piece being filled here (if it holds anything), so that what comes next
    /// begins a piece, and so a frame, of its own; answers that piece's number (from 0).
    pub(crate) fn cut(&mut self) -> io::Result<u64> {
        if self.filled > 0 {
            self.ship(true)?;
        }
        Ok(self.shipped)
    }

    /// Reads up to `want` bytes of `source` into the tar, hashing them; answers how many it
    /// read (fewer only at the source's end).
    pub(crate) fn read_from(
        &mut self,
        source: &mut impl Read,
        want: u64,
        hasher: &mut Sha256,
    ) -> io::Result<u64> {
        let mut read = 0u64;
        while read < want {
            self.ship(false)?;
            let room = ((self.size - self.filled) as u64).min(want - read) as usize;
            let into = &mut self.buf[self.filled..self.filled + room];
            let n = match source.read(into) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            hasher.update(&into[..n]);
            self.filled += n;
            read += n as u64;
        }
        Ok(read)
    }

    /// Sends what is left and closes the pipe.
    pub(crate) fn close(mut self) -> io::Result<()> {
        self.ship(true)?;
        self.pipes.clear();
        Ok(())
    }
}

impl Write for Pieces {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.ship(false)?;
        let n = data.len().min(self.size - self.filled);
        self.buf[self.filled..self.filled + n].copy_from_slice(&data[..n]);
        self.filled += n;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The second stage: each piece of tar from `input`, compressed at `level` into a frame of
/// its own (with its checksum), into `output`.
pub(crate) fn compress(input: Returns, output: Pipe, level: i32) -> io::Result<()> {
    let mut zstd = zstd::bulk::Compressor::new(level)?;
    zstd.include_checksum(true)?;
    let bound = zstd::zstd_safe::compress_bound(FRAME);
    input.each(|piece| {
        let mut frame = output.spare(bound);
        frame.reserve(bound);
        zstd.compress_to_buffer(piece, &mut frame)?;
        output.send(frame)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tar's bytes, sent through [`Pieces`] by both ways in (written, read from a
    /// source), come out in order, in pieces of [`FRAME`] but the last; the source's bytes
    /// are hashed, and a source shorter than asked for says so.
    #[test]
    fn pieces_carry_every_byte_in_order() {
        let (pipe, returns) = pipe();
        let source: Vec<u8> = (0..(2 * FRAME + 777)).map(|i| (i % 251) as u8).collect();
        let got = std::thread::scope(|s| {
            let reader = s.spawn(|| {
                let mut all = Vec::new();
                let mut sizes = Vec::new();
                returns
                    .each(|p| {
                        sizes.push(p.len());
                        all.extend_from_slice(p);
                        Ok(())
                    })
                    .unwrap();
                (all, sizes)
            });
            let mut pieces = Pieces::new(vec![pipe], FRAME);
            pieces.write_all(b"head").unwrap();
            let mut hasher = Sha256::new();
            let n = pieces
                .read_from(&mut &source[..], source.len() as u64 + 5, &mut hasher)
                .unwrap();
            assert_eq!(n, source.len() as u64, "short: it stops at the end");
            assert_eq!(hex::encode(hasher.finalize()), crate::sha256_hex(&source));
            pieces.write_all(&[9u8; FRAME]).unwrap();
            pieces.close().unwrap();
            reader.join().unwrap()
        });
        let (all, sizes) = got;
        let mut want = b"head".to_vec();
        want.extend_from_slice(&source);
        want.extend_from_slice(&[9u8; FRAME]);
        assert!(all == want, "the bytes differ");
        let (last, whole) = sizes.split_last().unwrap();
        assert!(whole.iter().all(|&s| s == FRAME), "{sizes:?}");
        assert_eq!(*last, want.len() - FRAME * whole.len());
    }

    /// Every piece becomes a frame of its own; the frames, one after the other, decompress
    /// to the tar, and each has its checksum.
    #[test]
    fn each_piece_is_a_whole_frame() {
        let (pipe_in, returns_in) = pipe();
        let (pipe_out, returns_out) = pipe();
        let text: Vec<u8> = (0..300_000u32)
            .flat_map(|i| format!("{i},{}\n", i % 13).into_bytes())
            .collect();
        assert!(text.len() > 2 * FRAME);
        let frames = std::thread::scope(|s| {
            let zstd = s.spawn(|| compress(returns_in, pipe_out, 3));
            let sink = s.spawn(|| {
                let mut frames = Vec::new();
                returns_out
                    .each(|f| {
                        frames.push(f.to_vec());
                        Ok(())
                    })
                    .unwrap();
                frames
            });
            let mut pieces = Pieces::new(vec![pipe_in], FRAME);
            pieces.write_all(&text).unwrap();
            pieces.close().unwrap();
            zstd.join().unwrap().unwrap();
            sink.join().unwrap()
        });
        assert_eq!(frames.len(), text.len().div_ceil(FRAME));
        let mut joined = Vec::new();
        for (i, f) in frames.iter().enumerate() {
            let alone = zstd::stream::decode_all(&f[..]).unwrap();
            let whole = if i + 1 < frames.len() {
                FRAME
            } else {
                text.len() % FRAME
            };
            assert_eq!(alone.len(), whole, "frame {i}");
            // The frame header's descriptor says a checksum follows.
            assert_ne!(f[4] & 0b100, 0, "frame {i} has no checksum");
            joined.extend_from_slice(f);
        }
        assert!(zstd::stream::decode_all(&joined[..]).unwrap() == text);
    }

    /// Pieces dealt in turn to two compressors come back, taken in the same turn, in the
    /// tar's order, whichever compressor is faster (an odd number of pieces, so that the
    /// first pipe carries the last).
    #[test]
    fn pieces_dealt_in_turn_come_back_in_order() {
        let tar: Vec<u8> = (0..5 * FRAME + 3).map(|i| (i / 4096) as u8).collect();
        let got = std::thread::scope(|s| {
            let (mut ins, mut outs, mut zstds) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..2 {
                let (to_zstd, zstd_in) = pipe();
                let (zstd_out, from_zstd) = pipe();
                zstds.push(s.spawn(move || compress(zstd_in, zstd_out, 1)));
                ins.push(to_zstd);
                outs.push(from_zstd);
            }
            let sink = s.spawn(move || {
                let mut joined = Vec::new();
                each_in_turn(outs, |f| {
                    joined.extend_from_slice(f);
                    Ok(())
                })
                .unwrap();
                joined
            });
            let mut pieces = Pieces::new(ins, FRAME);
            pieces.write_all(&tar).unwrap();
            pieces.close().unwrap();
            for z in zstds {
                z.join().unwrap().unwrap();
            }
            sink.join().unwrap()
        });
        assert!(zstd::stream::decode_all(&got[..]).unwrap() == tar);
    }

    /// A stage that stops breaks the pipe of the one before it, which stops too.
    #[test]
    fn a_stopped_stage_breaks_the_pipe() {
        let (pipe, returns) = pipe();
        drop(returns);
        let mut pieces = Pieces::new(vec![pipe], FRAME);
        let r = pieces.write_all(&vec![1u8; 3 * FRAME]);
        assert_eq!(r.unwrap_err().kind(), io::ErrorKind::BrokenPipe);
    }
}

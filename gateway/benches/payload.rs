//! Benchmark: an egress payload written and finished into its release, without the engine or
//! the HTTP around them (`bench/egress.sh` measures the whole way, beside `docker cp` and
//! `tar | zstd | age`).
//!
//! Run it with `cargo bench -p gateway --bench payload` (release build). It is a benchmark, not
//! a test: it prints figures and exits 0. Built as a test (`cargo test --all-targets`), it does
//! nothing.
//!
//! The files have the shape of the egress benchmark's: `VRE_BENCH_PAYLOAD_MIB` (default 1024)
//! of which 90% in three files of random bytes and the rest in tables of ~52 KiB. They are
//! made in memory first (not timed); then each finish below is timed three times, each on a
//! payload written anew (every write timed too) in a fresh folder of `VRE_BENCH_DIR` (default
//! the system's temporary folder, so: the disk it is on):
//! - **write**: `PayloadWriter` from `begin` to `finish`: the tar, zstd on two threads, the
//!   chunks sealed and written, the package's digest begun (a release prepared for a
//!   recipient), one fsync;
//! - **finish, prepared**: `release::finish` for that recipient: every chunk authenticated and
//!   every file re-hashed, the header and tail written, one fsync;
//! - **finish, another recipient**: the same for a recipient registered since the request,
//!   which hashes the chunks as it reads them too.
//!
//! Medians are printed with the rate in MiB/s of the files' bytes.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use gateway::egress::payload::{PayloadWriter, Unsealed};
use gateway::release::sealed::{PayloadKeys, ResumableSha256};
use gateway::release::{Approved, finish, new_identity};

const REPS: usize = 3;

fn main() -> anyhow::Result<()> {
    if !std::env::args().any(|a| a == "--bench") {
        return Ok(());
    }
    let mib: usize = std::env::var("VRE_BENCH_PAYLOAD_MIB")
        .unwrap_or_else(|_| "1024".into())
        .parse()?;
    let base = std::env::var_os("VRE_BENCH_DIR")
        .map(Into::into)
        .unwrap_or_else(std::env::temp_dir);
    let files = files(mib << 20);
    let bytes: usize = files.iter().map(|(_, b)| b.len()).sum();
    let approved: Vec<Approved> = files
        .iter()
        .map(|(name, b)| Approved {
            name: name.clone(),
            sha256: gateway::sha256_hex(b),
            size: b.len() as u64,
        })
        .collect();
    println!(
        "payload of {} files, {} MiB, in {}",
        files.len(),
        bytes >> 20,
        base.display()
    );
    let (_, recipient) = new_identity();
    let (_, other) = new_identity();
    let metadata = serde_json::json!({"@graph": []});
    let (mut write, mut prepared, mut unprepared) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..REPS {
        for (to, times) in [(&recipient, &mut prepared), (&other, &mut unprepared)] {
            let dir = tempfile::tempdir_in(&base)?;
            let path = dir.path().join("p.age");
            let keys = PayloadKeys::generate();
            let header = keys.header(&recipient).map_err(anyhow::Error::msg)?;
            let t = Instant::now();
            let mut w = PayloadWriter::start(
                std::fs::File::create_new(&path)?,
                keys.clone(),
                0,
                Some(&header),
            )?;
            for (name, b) in &files {
                w.begin(name, b.len() as u64)?;
                for piece in b.chunks(256 << 10) {
                    w.data(piece)?;
                }
                w.end()?;
            }
            let written = w.finish()?;
            write.push(t.elapsed());
            let seed = keys.seal_chunk(written.full_chunks, false, &written.held);
            let hash = ResumableSha256::from_bytes(written.package_hash.as_deref().unwrap())
                .expect("a digest state");
            let payload = Unsealed {
                path: path.clone(),
                keys,
                full_chunks: written.full_chunks,
                seed,
                prepared: Some((recipient.clone(), header, hash)),
            };
            let t = Instant::now();
            finish(
                &payload.at(),
                &approved,
                &metadata,
                to,
                0,
                &AtomicBool::new(false),
            )?;
            times.push(t.elapsed());
            check_size(&path, written.full_chunks)?;
        }
    }
    let rate = |d: Duration| bytes as f64 / (1 << 20) as f64 / d.as_secs_f64();
    for (what, mut times) in [
        ("write (tar, zstd, seal, digest, fsync)", write),
        ("finish, prepared for the recipient", prepared),
        ("finish, another recipient", unprepared),
    ] {
        times.sort();
        let median = times[times.len() / 2];
        println!(
            "{what:<42} {:>8.3} s {:>7.0} MiB/s   (all: {})",
            median.as_secs_f64(),
            rate(median),
            times
                .iter()
                .map(|d| format!("{:.3}", d.as_secs_f64()))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}

/// The finished file holds at least its whole chunks (a sanity check, not timed).
fn check_size(path: &Path, full_chunks: u64) -> anyhow::Result<()> {
    let len = std::fs::metadata(path)?.len();
    let least = gateway::release::sealed::PREFIX_LEN
        + full_chunks * gateway::release::sealed::SEALED_CHUNK as u64;
    anyhow::ensure!(
        len > least,
        "a release of {len} bytes, fewer than its chunks"
    );
    Ok(())
}

/// Three files of random bytes (90%) and tables of ~52 KiB (the rest).
fn files(total: usize) -> Vec<(String, Vec<u8>)> {
    let big = total * 9 / 10 / 3;
    let mut out: Vec<(String, Vec<u8>)> = (0..3)
        .map(|i| (format!("big/part-{i}.bin"), noise(big, i as u64 + 1)))
        .collect();
    let mut left = total - 3 * big;
    let mut i = 0;
    while left > 0 {
        let table: Vec<u8> = (0u32..)
            .flat_map(|r| {
                format!(
                    "north,{},{},{}.5,{}\n",
                    2000 + r % 20,
                    r % 2,
                    r,
                    10 + (r + i) % 900
                )
                .into_bytes()
            })
            .take((52 << 10).min(left))
            .collect();
        left -= table.len();
        out.push((format!("small/t-{i:04}.csv"), table));
        i += 1;
    }
    out
}

fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

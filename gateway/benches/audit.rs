//! Benchmark: `vre audit verify` over a long chain, and how much memory it takes.
//!
//! Run it with `cargo bench -p gateway --bench audit` (release build). It is a benchmark, not a
//! test: it prints figures and PASS/MISS against the targets and exits 0 either way. Built as a
//! test (`cargo test --all-targets`), it does nothing.
//!
//! For each size (`VRE_BENCH_AUDIT_EVENTS`, default `10000,100000,1000000`) and each engine
//! (SQLite always; PostgreSQL when `VRE_BENCH_POSTGRES_URL` names a server the benchmark may
//! create databases on), it makes a gateway's data dir (`Application::build`: keys, database,
//! migrations), appends that many events to the chain through the gateway's own write path
//! (`Db::begin_write` + `WriteTx::audit`, 5,000 events per transaction, with a detail of about
//! 200 bytes as real events carry), and signs checkpoints as the gateway's writer does: one per
//! transaction here, which is a checkpoint every 5,000 events (a running gateway coalesces
//! bursts the same way). Then it runs the real binary, `vre audit verify --data-dir DIR` (the
//! release `vre` next to this benchmark), as a child process, three times, and reports the
//! median wall time and the child's peak resident size (`getrusage(RUSAGE_CHILDREN)`).
//!
//! Targets (issue 16): 1M events in under 10 s, memory flat from 10k to 1M.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gateway::audit::NewEvent;

const TARGET_1M: Duration = Duration::from_secs(10);
const PER_TX: usize = 5_000;

fn main() -> anyhow::Result<()> {
    if !std::env::args().any(|a| a == "--bench") {
        return Ok(());
    }
    let sizes: Vec<usize> = std::env::var("VRE_BENCH_AUDIT_EVENTS")
        .unwrap_or_else(|_| "10000,100000,1000000".into())
        .split(',')
        .map(|s| s.trim().parse())
        .collect::<Result<_, _>>()?;
    let vre = vre_binary()?;
    let rt = tokio::runtime::Runtime::new()?;
    println!("audit verify (median of 3), vre = {}", vre.display());
    println!(
        "{:<10} {:>10} {:>12} {:>12} {:>12} {:>10}",
        "engine", "events", "verify s", "µs/event", "peak RSS MiB", "target"
    );
    let mut engines = vec![("sqlite", None)];
    if let Ok(url) = std::env::var("VRE_BENCH_POSTGRES_URL") {
        engines.push(("postgres", Some(url)));
    }
    for (name, pg) in &engines {
        for &n in &sizes {
            let dir = common::tempdir("audit")?;
            let url = match pg {
                Some(base) => {
                    Some(rt.block_on(common::fresh_pg(base, &format!("vre_audit_bench_{n}")))?)
                }
                None => None,
            };
            let fill = Instant::now();
            rt.block_on(fill_chain(&dir, url.as_deref(), n))?;
            let filled = fill.elapsed();
            let mut times = Vec::new();
            let mut peak = 0;
            for _ in 0..3 {
                let (t, rss) = verify(&vre, &dir, url.as_deref())?;
                times.push(t);
                peak = peak.max(rss);
            }
            times.sort();
            let t = times[1];
            let verdict = if n >= 1_000_000 {
                if t < TARGET_1M { "PASS" } else { "MISS" }
            } else {
                ""
            };
            println!(
                "{:<10} {:>10} {:>12.2} {:>12.1} {:>12.1} {:>10}",
                name,
                n,
                t.as_secs_f64(),
                t.as_secs_f64() * 1e6 / n as f64,
                peak as f64 / 1024.0,
                verdict
            );
            eprintln!("  (filling {n} events took {:.1} s)", filled.as_secs_f64());
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    Ok(())
}

/// The release `vre` beside this benchmark's executable (`target/release/vre`).
fn vre_binary() -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe()?;
    let dir = me
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| anyhow::anyhow!("no target dir"))?;
    let vre = dir.join("vre");
    anyhow::ensure!(
        vre.exists(),
        "{} is missing: run `cargo build --release -p gateway` first",
        vre.display()
    );
    Ok(vre)
}

/// A gateway's data dir holding a chain of `n` events with their checkpoints.
async fn fill_chain(dir: &Path, url: Option<&str>, n: usize) -> anyhow::Result<()> {
    let mut settings = gateway::config::Settings {
        data_dir: dir.to_path_buf(),
        listen: "127.0.0.1:0".parse()?,
        ..Default::default()
    };
    if let Some(u) = url {
        settings.database_url = gateway::config::Secret::new(u.to_owned());
    }
    // Makes the keys, the certificate and the migrated database, as a first start does.
    let app = gateway::startup::Application::build(settings.clone()).await?;
    let state = app.state().clone();
    let data = gateway::keys::DataDir::new(dir.to_path_buf());
    let key = gateway::keys::Ed25519Key::load_or_create(&data.audit_key())?;
    let detail = serde_json::json!({
        "project": "genome-1",
        "archive_sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "entries": 42,
        "checks": "pass",
        "comment": "the figures agree with the published tables; approved for release",
    });
    let mut done = 0;
    while done < n {
        let mut tx = state.db.begin_write().await?;
        let batch = PER_TX.min(n - done);
        for i in 0..batch {
            tx.audit(NewEvent {
                actor: "bench",
                action: "application.decision",
                subject: &format!("app-{:012}", done + i),
                detail: detail.clone(),
            })
            .await?;
        }
        let head = tx.commit().await?.expect("events were appended");
        gateway::audit::write_checkpoint(&settings.checkpoint_dir(), &key, &head)?;
        done += batch;
    }
    state.db.close().await;
    drop(app);
    Ok(())
}

/// Runs `vre audit verify` once; its wall time and peak resident size in KiB.
fn verify(vre: &Path, dir: &Path, url: Option<&str>) -> anyhow::Result<(Duration, i64)> {
    let mut c = std::process::Command::new(vre);
    c.arg("audit").arg("verify").arg("--data-dir").arg(dir);
    c.env_remove("VRE_DATABASE_URL");
    if let Some(u) = url {
        c.env("VRE_DATABASE_URL", u);
    }
    let start = Instant::now();
    let out = c.output()?;
    let t = start.elapsed();
    anyhow::ensure!(
        out.status.success(),
        "vre audit verify failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((t, children_peak_rss_kib()))
}

/// The largest peak resident size of the children waited for so far, in KiB.
fn children_peak_rss_kib() -> i64 {
    // SAFETY: getrusage writes one struct we own and reads nothing of ours.
    #[allow(unsafe_code)]
    unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut u);
        u.ru_maxrss
    }
}

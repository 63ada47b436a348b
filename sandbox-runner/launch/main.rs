//! `vre-launch`: the first program of a run's container, started before the run is asked for.
//!
//! It reads one payload (`payload.rs`) from standard input, puts `/dev/null` in its place and
//! replaces itself with the command (`execvp`, the image's `PATH`). Nothing of it is left once
//! the command runs: same process, same pid under the engine's init. The gateway builds it as
//! a static executable and mounts it read-only into the container.
//!
//! `vre-launch --usage DIR` prints the bytes DIR holds instead (`usage.rs`), or
//! `unmeasurable: WHY` when something in it cannot be measured: the gateway measures a
//! sandbox's volumes with it where the engine's host is not its own.

mod payload;
mod usage;

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio, exit};

fn main() {
    let mut argv = std::env::args_os().skip(1);
    if let (Some(mode), Some(dir)) = (argv.next(), argv.next()) {
        if mode == "--usage" {
            match usage::usage(std::path::Path::new(&dir)) {
                Ok(usage::Usage::Bytes(bytes)) => println!("{bytes}"),
                Ok(usage::Usage::Unmeasurable(why)) => println!("unmeasurable: {why}"),
                Err(e) => {
                    eprintln!("vre: cannot measure {}: {e}", dir.to_string_lossy());
                    exit(1);
                }
            }
            return;
        }
    }
    let launch = match payload::read(&mut std::io::stdin().lock()) {
        Ok(l) => l,
        Err(e) => {
            // The gateway went away before it handed over the command (or sent nonsense).
            eprintln!("vre: the run's command did not arrive: {e}");
            exit(125);
        }
    };
    let mut args = launch.args.into_iter().map(OsString::from_vec);
    let program = args.next().expect("the payload has a command");
    let mut cmd = Command::new(&program);
    cmd.args(args).stdin(Stdio::null());
    for kv in launch.env {
        let at = kv.iter().position(|b| *b == b'=').expect("checked in the payload");
        let (k, v) = kv.split_at(at);
        cmd.env(OsString::from_vec(k.to_vec()), OsString::from_vec(v[1..].to_vec()));
    }
    let e = cmd.exec();
    eprintln!("vre: cannot run {}: {e}", program.to_string_lossy());
    exit(if e.kind() == std::io::ErrorKind::NotFound { 127 } else { 126 });
}

//! Builds `launch/` (the launcher of runs started ahead) as a small static executable for the
//! target, embedded in the crate: it runs in any image, whatever its C library.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=launch");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let target = std::env::var("TARGET").expect("cargo sets TARGET");
    let status = Command::new(rustc)
        .args([
            "--edition=2024",
            "--crate-name=vre_launch",
            "--crate-type=bin",
            "-Copt-level=s",
            "-Cpanic=abort",
            "-Cstrip=symbols",
            "-Ctarget-feature=+crt-static",
            "--target",
            &target,
            "-o",
        ])
        .arg(out.join("vre-launch"))
        .arg("launch/main.rs")
        .status()
        .expect("rustc runs");
    assert!(status.success(), "building launch/main.rs failed");
}

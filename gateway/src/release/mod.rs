//! Release packages: what an approved egress hands its analyst.
//!
//! A package is one file, `<application>.tar.zst.age`:
//!
//! ```text
//! age (X25519, to the analyst's recipient)
//!  └─ zstd (frames of at most a MiB of tar, each with its checksum; from a payload, a
//!      │     frame also begins at each file)
//!      └─ tar (GNU headers; uid/gid 0, no user names, 0644 files, 0755 folders; mtime the
//!              request's time for the files of a payload, else the release time)
//!          ├─ files/…                   the released files, each folder before what it
//!          │                            holds (in the order they were copied out of the
//!          │                            sandbox; sorted by name when built from blobs)
//!          ├─ SHA256SUMS                "<hex>  files/<name>" per file (`sha256sum -c`)
//!          └─ ro-crate-metadata.json    RO-Crate 1.1: files, runs, checks, decisions
//! ```
//!
//! so it opens with standard tools (`age -d -i key.txt p.tar.zst.age | tar --zstd -xf -`,
//! then `sha256sum -c SHA256SUMS`) as well as with [`open`], which unpacks strictly and checks
//! the sums itself.
//!
//! - `package.rs`: [`build`], one streaming pass from the quarantined blobs to the age file,
//!   every source re-hashed as it is read, in bounded memory.
//! - `finish.rs`: [`finish`], a release made from its round's payload (`egress::payload`):
//!   the payload checked through, then the header and the metadata written around it.
//! - `stages.rs`: the build's stages on threads (tar; zstd on two, a frame per piece; age; write).
//! - `open.rs`: [`open`], the analyst's side: decrypt, decompress, unpack strictly, verify.
//! - `keys.rs`: [`new_identity`], [`parse_recipient`] (X25519 `age1…` only).
//! - `metadata.rs`: [`ro_crate`], the RO-Crate 1.1 metadata and its mapping.
//! - [`sealed`] (the `payload-seal` crate): an age payload written in pieces before its
//!   recipient is known, read at random.
//!
//! Everything here is blocking; async callers use `spawn_blocking`.

mod finish;
mod keys;
mod metadata;
mod open;
pub(crate) mod package;
pub(crate) mod stages;

#[cfg(test)]
pub(crate) mod tests;
#[cfg(test)]
mod tests_interop;
#[cfg(test)]
mod tests_open;

pub use finish::{Approved, PayloadAt, Prepared, finish};
pub use keys::{new_identity, parse_recipient};
pub use metadata::{
    AppInfo, CONTEXT, CrateDecision, CrateFile, CrateInput, CrateRun, file_id, ro_crate,
};
pub use open::{MAX_ENTRIES, OpenError, Opened, open};
pub use package::{BuildError, Built, PackageFile, build, sha256sums};
/// The payload format of the quarantine (its own crate, `payload-seal`).
pub use payload_seal as sealed;

/// The folder of the released files inside a package.
pub const FILES_DIR: &str = "files";
/// The checksum list inside a package, as `sha256sum` writes it.
pub const SUMS_NAME: &str = "SHA256SUMS";
/// The RO-Crate metadata file inside a package.
pub const METADATA_NAME: &str = "ro-crate-metadata.json";
/// The longest name (relative path, in bytes) a package holds, `files/` included.
pub const MAX_PATH_BYTES: usize = 4096;
/// The longest component of a name, in bytes (most file systems' limit).
pub const MAX_COMPONENT_BYTES: usize = 255;

/// Whether `name` may be a relative path in a package: non-empty components separated by `/`,
/// none of them `.` or `..`, no leading `/`, no control characters (a newline would break
/// `SHA256SUMS`) and no backslash (which `sha256sum` escapes and Windows reads as a
/// separator), within [`MAX_PATH_BYTES`] and [`MAX_COMPONENT_BYTES`].
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("an empty name".into());
    }
    if name.starts_with('/') {
        return Err(format!("{name:?} is an absolute path"));
    }
    if name.len() > MAX_PATH_BYTES {
        return Err(format!(
            "{:?}… is longer than {MAX_PATH_BYTES} bytes",
            name.chars().take(40).collect::<String>()
        ));
    }
    if let Some(c) = name.chars().find(|c| c.is_control() || *c == '\\') {
        return Err(format!("{name:?} holds the character {c:?}"));
    }
    for part in name.split('/') {
        match part {
            "" => return Err(format!("{name:?} has an empty component")),
            "." | ".." => return Err(format!("{name:?} has a {part:?} component")),
            _ if part.len() > MAX_COMPONENT_BYTES => {
                return Err(format!(
                    "{name:?} has a component longer than {MAX_COMPONENT_BYTES} bytes"
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

//! Egress: results leaving a sandbox's output folder, only through the committee's approval.
//!
//! `quarantine` takes the files a request names out of the folder (the tar stream of
//! `SandboxBackend::download_output`) into the round's payload (`payload`: already the
//! encrypted body of its release, in the store's `quarantine/` folder), each hashed and looked
//! at by the caller's checks on the way, refusing every entry that is not a regular file.
//! `builder` is the background worker that makes an approved request's release from it. The
//! workflows (request, review, download) are in `service::egress`.

pub mod builder;
pub mod payload;
pub mod quarantine;
